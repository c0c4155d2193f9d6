"""Faulty participants on a real anvil: a silent node, a bad sealed share answered in public, a
bad sealed share whose dealer goes down before answering, and a false complaint."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from structlog.testing import capture_logs

from contracts import Anvil, EpochKind, EpochStatus
from mpc.epochkey import EpochPublicKey
from mpc.sharebox import pair_context, reveal_dh
from node.journal import Published
from tests.node.epoch_harness import (
    Network,
    Node,
    assert_key_shared,
    chain,
    deal_constant,
    flip_last_byte,
    held_shares,
    run_scenario,
)

__all__ = ["chain"]


def false_complaint(net: Network, accuser: Node, accused: Node, epoch: int) -> None:
    """`accuser` complains about `accused` with a valid reveal although its share opened."""
    info = net.governance.get_epoch(epoch)
    with accuser.open_journal() as journal:
        key = journal.secrets.epoch_key(
            epoch, session_id=b"", address=b"", member=True, create=False
        )
    assert key is not None
    raw = net.governance.fetch_epoch_key(epoch, accused.address)
    assert raw is not None
    dealer = info.dealers.index(accused.address) + 1
    member = info.members.index(accuser.address) + 1
    board = _session_id(net, epoch)
    reveal = reveal_dh(
        key,
        EpochPublicKey.from_bytes(raw),
        pair=pair_context(board, dealer, member),
        rng=os.urandom,
    )
    accuser.client.send_complain(epoch, accused.address, reveal.to_bytes())


def _session_id(net: Network, epoch: int) -> bytes:
    view = net.watcher.view
    assert view is not None
    from node.board import read_setup

    return read_setup(net.governance, view, epoch).session_id


def test_silent_and_malicious_dealers_follow_the_complaint_rules(
    chain: Anvil, tmp_path: Path
) -> None:
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3", "n4", "n5", "n6")
    n1, n2, n3, n4, n5, n6 = nodes
    net.tamper[("n2", 4)] = flip_last_byte  # a bad share to member 4; n2 answers in public
    net.tamper[("n3", 1)] = flip_last_byte  # a bad share to member 1; n3 is down before answering

    async def scenario() -> None:
        with capture_logs() as logs:
            async with net.running():
                for node in (n1, n2, n3, n4, n6):  # n5 stays offline: no key, no deal
                    net.start(node)
                info = await net.propose(EpochKind.DKG, nodes, 3)
                epoch = info.epoch
                await net.wait_head(info.deal_deadline + net.confirmations)
                assert n3.journal is not None
                assert n3.journal.published(epoch, Published.DEAL) is not None
                await net.stop(n3)
                await net.wait_head(info.deal_deadline + net.confirmations + 1)
                await asyncio.to_thread(false_complaint, net, n6, n1, epoch)
                view = net.watcher.view
                assert view is not None and view.head < info.complaint_deadline, "test too slow"
                settled = await net.wait_settled(epoch)
                assert n1.manager is not None
                progress = (n1.manager.progress(epoch), n1.manager.progress(epoch + 7))
        assert settled.status is EpochStatus.ACTIVE
        committee, shares = held_shares([n1, n2, n4, n6])
        assert_key_shared(committee, shares)
        gov = net.governance
        expected = deal_constant(gov, epoch, n1) + deal_constant(gov, epoch, n4)
        assert committee.public.public_key == expected + deal_constant(gov, epoch, n6)
        assert gov.get_deal(epoch, n5.address).submitted_at == 0
        assert gov.get_epoch_key_hash(epoch, n5.address) == bytes(32)
        complaints = {(c.accuser, c.accused, c.justified) for c in gov.get_complaints(epoch)}
        assert complaints == {
            (n4.address, n2.address, True),  # answered, but the box does not open: excluded
            (n1.address, n3.address, False),  # never answered: excluded
            (n6.address, n1.address, True),  # false: n1's answer opens n6's share, n1 stays
        }
        assert n1.manager.status().last_qual == (1, 4, 6)
        assert progress == (("active", ()), ("unknown", ()))
        faults = {(e["member"], e["kind"]) for e in logs if e["event"] == "dkg_fault"}
        assert {
            (5, "MISSING_DEAL"),
            (2, "BAD_SHARE"),
            (2, "BAD_JUSTIFICATION"),
            (3, "BAD_SHARE"),
            (3, "UNANSWERED_COMPLAINT"),
        } <= faults
        assert not {(1, "BAD_JUSTIFICATION"), (1, "UNANSWERED_COMPLAINT")} & faults
        assert n1.metrics.faults.labels(kind="MISSING_DEAL", member="5")._value.get() == 1
        # What stays on n1's disk: no secret of the finished epoch.
        with n1.open_journal() as journal:
            assert journal.secrets.epochs() == []

    run_scenario(scenario(), timeout=150)
