"""Faulty dealers on a real anvil: a silent dealer, a bad share that is justified, a bad share
whose dealer goes down before the justify phase, and what `on_deal` refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from contracts import Anvil, EpochKind, EpochStatus
from mpc.dealenc import CIPHERTEXT_SIZE
from node.errors import InvalidRequest, NotReady
from node.journal import Published, ShareConflict
from tests.node.epoch_harness import (
    Network,
    assert_key_shared,
    chain,
    deal_constant,
    flip_last_byte,
    held_shares,
    run_scenario,
)

__all__ = ["chain"]


def test_silent_and_malicious_dealers_follow_the_complaint_rules(
    chain: Anvil, tmp_path: Path
) -> None:
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3", "n4", "n5")
    n1, n2, n3, n4, n5 = nodes
    net.tamper[("n2", 4)] = flip_last_byte  # bad share to member 4; n2 then justifies it
    net.tamper[("n3", 1)] = flip_last_byte  # bad share to member 1; n3 is down before justifying
    net.attempts = 5  # n5 is offline: give up on it quickly

    async def scenario() -> None:
        with capture_logs() as logs:
            async with net.running():
                for node in (n1, n2, n3, n4):
                    net.start(node)
                info = await net.propose(EpochKind.DKG, nodes, 3)
                epoch = info.epoch
                assert n1.journal is not None and n1.manager is not None
                await net.wait_until(
                    lambda: {d for d, _, _ in n1.journal.received(epoch)} >= {2, 3, 4},  # type: ignore[union-attr]
                    "n1 to receive the shares of n2, n3 and n4",
                )
                check_on_deal_refusals(net, epoch)
                await net.wait_head(info.deal_deadline + 1)
                assert n3.journal is not None
                assert n3.journal.published(epoch, Published.DEAL) is not None
                await net.stop(n3)
                view = net.watcher.view
                assert view is not None and view.head < info.complaint_deadline, "test too slow"
                settled = await net.wait_settled(epoch)
                progress = (n1.manager.progress(epoch), n1.manager.progress(epoch + 7))
        assert settled.status is EpochStatus.ACTIVE
        committee, shares = held_shares([n1, n2, n4])
        assert_key_shared(committee, shares)
        gov = net.governance
        expected = deal_constant(gov, epoch, n1) + deal_constant(gov, epoch, n2)
        assert committee.public.public_key == expected + deal_constant(gov, epoch, n4)
        assert gov.get_deal(epoch, n5.address).submitted_at == 0
        complaints = {(c.accuser, c.accused, c.justified) for c in gov.get_complaints(epoch)}
        assert complaints == {(n4.address, n2.address, True), (n1.address, n3.address, False)}
        assert n1.manager.status().last_qual == (1, 2, 4)
        assert progress == (("active", (2, 3, 4)), ("unknown", ()))  # dealers kept, bytes gone
        faults = {(e["member"], e["kind"]) for e in logs if e["event"] == "dkg_fault"}
        assert {
            (5, "MISSING_DEAL"),
            (2, "BAD_SHARE"),
            (3, "BAD_SHARE"),
            (3, "UNANSWERED_COMPLAINT"),
        } <= faults
        assert (2, "UNANSWERED_COMPLAINT") not in faults
        assert n1.metrics.faults.labels(kind="MISSING_DEAL", member="5")._value.get() == 1

    run_scenario(scenario())


def check_on_deal_refusals(net: Network, epoch: int) -> None:
    """What the Peer servicer gets back from `on_deal` for bad deliveries (n1 is member 1)."""
    n1 = net.nodes["n1"]
    assert n1.manager is not None and n1.journal is not None
    on_deal = n1.manager.on_deal
    stored = {d: c for d, _, c in n1.journal.received(epoch)}
    ok = bytes(CIPHERTEXT_SIZE)
    assert on_deal(epoch, 2, 1, stored[2]) is False  # a re-delivery is a duplicate
    with pytest.raises(ShareConflict, match="dealer 2 already delivered a different share"):
        on_deal(epoch, 2, 1, ok)
    with pytest.raises(InvalidRequest, match="recipient 2 is not us"):
        on_deal(epoch, 3, 2, ok)
    with pytest.raises(InvalidRequest, match=r"dealer 6 outside 1\.\.5"):
        on_deal(epoch, 6, 1, ok)
    with pytest.raises(InvalidRequest, match=f"ciphertext is 3 bytes, expected {CIPHERTEXT_SIZE}"):
        on_deal(epoch, 5, 1, b"abc")
    with pytest.raises(NotReady, match=f"epoch {epoch + 1} is not set up"):
        on_deal(epoch + 1, 2, 1, ok)
    assert {d: c for d, _, c in n1.journal.received(epoch)}[2] == stored[2]
    assert 5 not in {d for d, _, _ in n1.journal.received(epoch)}
