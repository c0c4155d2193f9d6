"""Restarts on a real anvil: a node killed mid-DKG resumes from its journal; a node whose data
directory is lost comes back with a new identity and rejoins through a reshare."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from contracts import Anvil, EpochKind, EpochStatus
from node.journal import Outcome, Published
from tests.node.epoch_harness import (
    Network,
    assert_key_shared,
    chain,
    held_shares,
    run_scenario,
)

__all__ = ["chain"]


def test_node_killed_mid_dkg_resumes_with_the_same_key_and_deal(
    chain: Anvil, tmp_path: Path
) -> None:
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3", "n4", "n5")
    n2 = nodes[1]

    async def scenario() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            info = await net.propose(EpochKind.DKG, nodes, 3, phases=(6, 16, 6, 6, 10))
            epoch = info.epoch
            journal = n2.journal
            assert journal is not None
            await net.wait_until(
                lambda: journal.published(epoch, Published.DEAL) is not None, "n2's deal"
            )
            await net.stop(n2)
            with n2.open_journal() as reopened:
                payload = reopened.published(epoch, Published.DEAL)
                key = reopened.published(epoch, Published.EPOCH_KEY)
                assert reopened.secrets.epochs() == [epoch]  # key, seed, encapsulations
            view = net.watcher.view
            assert view is not None and view.head < info.deal_deadline - 2, "test too slow"
            with capture_logs() as logs:
                net.start(n2)  # a new manager from the same data dir
                settled = await net.wait_settled(epoch)
            assert settled.status is EpochStatus.ACTIVE
            committee, shares = held_shares(nodes)
            assert_key_shared(committee, shares)
            assert len(shares) == 5
            # The restarted node rebuilt the very deal on chain and opened its shares with the
            # key it had sealed: nobody complained, nothing was abandoned.
            assert net.governance.get_complaints(epoch) == []
            assert n2.journal is not None
            assert n2.journal.published(epoch, Published.DEAL) == payload
            assert n2.journal.published(epoch, Published.EPOCH_KEY) == key
            onchain = net.governance.get_deal(epoch, n2.address)
            assert payload is not None and onchain.commitments[0] in payload
            sealed = net.governance.fetch_deal_shares(epoch, n2.address, deal=onchain)
            assert sealed is not None and payload.endswith(sealed)
            assert not [e for e in logs if e["event"] in ("publish_failed", "epoch_abandoned")]
            assert n2.manager is not None and n2.manager.status().last_qual == (1, 2, 3, 4, 5)
            record = n2.journal.epoch(epoch)
            assert record is not None and record.outcome is Outcome.ACTIVE
            assert n2.journal.secrets.epochs() == []

    run_scenario(scenario())


def test_node_with_lost_data_dir_rejoins_through_a_reshare(chain: Anvil, tmp_path: Path) -> None:
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3", "n4", "n5")
    n5 = nodes[4]

    async def scenario() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            dkg = await net.propose(EpochKind.DKG, nodes, 3)
            await net.wait_settled(dkg.epoch)
            before, _ = held_shares(nodes)
            await net.stop(n5)
            shutil.rmtree(n5.data_dir)
            (fresh,) = await asyncio.to_thread(net.create_nodes, "n5-new")
            await asyncio.to_thread(net.governance.send_remove_node, n5.address)
            net.start(fresh)
            committee_nodes = [*nodes[:4], fresh]
            reshare = await net.propose(EpochKind.RESHARE, committee_nodes, 3)
            assert reshare.dealers == dkg.members  # the lost node is still a (silent) dealer
            assert (await net.wait_settled(reshare.epoch)).status is EpochStatus.ACTIVE
            committee, shares = held_shares(committee_nodes)
            assert committee.epoch == reshare.epoch
            assert (committee.public.public_key, committee.pk2) == (
                before.public.public_key,
                before.pk2,
            )
            assert_key_shared(committee, shares)
            assert {s.member for s in shares} == {1, 2, 3, 4, 5}
            assert committee.index_of(fresh.raw_address) == 5
            await net.wait_until(
                lambda: all(n.stored() == [(1, reshare.epoch)] for n in committee_nodes),
                "the old shares to be erased",
            )

    run_scenario(scenario())


def test_node_restarted_after_its_epoch_failed_abandons_it_and_joins_the_next(
    chain: Anvil, tmp_path: Path
) -> None:
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3")
    n1 = nodes[0]

    async def scenario() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            first = await net.propose(EpochKind.DKG, nodes, 2)
            journal = n1.journal
            assert journal is not None
            await net.wait_until(
                lambda: journal.published(first.epoch, Published.DEAL) is not None, "n1's deal"
            )
            await net.stop(n1)
            with n1.open_journal() as reopened:
                assert reopened.secrets.epochs() == [first.epoch]
            await asyncio.to_thread(net.governance.send_cancel_epoch, first.epoch)
            second = await net.propose(EpochKind.DKG, nodes, 2)
            with capture_logs() as logs:
                net.start(n1)
                assert (await net.wait_settled(second.epoch)).status is EpochStatus.ACTIVE
            assert n1.journal is not None
            record = n1.journal.epoch(first.epoch)
            assert record is not None
            assert (record.outcome, record.detail) == (Outcome.FAILED, "failed")
            assert first.epoch not in n1.journal.secrets.epochs()
            assert any(e["event"] == "epoch_failed" and e["epoch"] == first.epoch for e in logs)
            committee, shares = held_shares(nodes)
            assert committee.epoch == second.epoch and len(shares) == 3
            assert_key_shared(committee, shares)

    run_scenario(scenario())


def test_a_deal_mined_just_before_a_crash_is_recognised_not_sent_twice(
    chain: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3")
    n1 = nodes[0]

    async def scenario() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            journal = n1.journal
            assert journal is not None
            original = journal.mark_published

            def crash(epoch: int, kind: Published, target: int, payload: bytes, tx: str) -> None:
                if kind is Published.DEAL:  # the process dies after mining, before journaling
                    raise asyncio.CancelledError
                original(epoch, kind, target, payload, tx)

            monkeypatch.setattr(journal, "mark_published", crash)
            info = await net.propose(EpochKind.DKG, nodes, 2, phases=(6, 16, 6, 6, 10))
            await net.wait_until(
                lambda: net.governance.get_deal(info.epoch, n1.address).submitted_at != 0,
                "n1's deal on chain",
            )
            mined = net.governance.get_deal(info.epoch, n1.address)
            await net.wait_until(lambda: n1.task is not None and n1.task.done(), "n1 to die")
            await net.stop(n1)
            with n1.open_journal() as reopened:
                assert reopened.published(info.epoch, Published.DEAL) is None
            with capture_logs() as logs:
                net.start(n1)
                assert (await net.wait_settled(info.epoch)).status is EpochStatus.ACTIVE
            assert "published_before" in [e["event"] for e in logs if e.get("what") == "deal"]
            assert net.governance.get_deal(info.epoch, n1.address) == mined
            assert n1.journal is not None
            payload = n1.journal.published(info.epoch, Published.DEAL)
            assert payload is not None and mined.commitments[0] in payload
            assert net.governance.get_complaints(info.epoch) == []
            committee, shares = held_shares(nodes)
            assert_key_shared(committee, shares)
            assert n1.manager is not None and n1.manager.status().last_qual == (1, 2, 3)

    run_scenario(scenario())
