"""Epoch life cycle on a real anvil: DKG, reshare 5 -> 6 (t 3 -> 4), refresh, rotation."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from contracts import Anvil, EpochKind, EpochStatus
from tests.node.epoch_harness import (
    Network,
    assert_key_shared,
    chain,
    held_shares,
    run_scenario,
)

__all__ = ["chain"]


def test_dkg_reshare_refresh_rotate_and_retire(chain: Anvil, tmp_path: Path) -> None:
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3", "n4", "n5", "n6")
    first5 = nodes[:5]

    async def scenario() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            # DKG: 5 nodes, t = 3; all members agree and any 3 shares recover PK1.
            dkg = await net.propose(EpochKind.DKG, first5, 3)
            info = await net.wait_settled(dkg.epoch)
            assert info.status is EpochStatus.ACTIVE
            committee, shares = held_shares(first5)
            assert (committee.generation, committee.epoch, committee.threshold) == (1, dkg.epoch, 3)
            assert sorted(s.member for s in shares) == [1, 2, 3, 4, 5]
            assert_key_shared(committee, shares)
            assert nodes[5].manager is not None and nodes[5].manager.share_for() is None
            pk1, pk2 = committee.public.public_key, committee.pk2

            # Reshare to 6 nodes, t = 4: same PK1/PK2, new shares, old ones erased.
            reshare = await net.propose(EpochKind.RESHARE, nodes, 4)
            assert (await net.wait_settled(reshare.epoch)).status is EpochStatus.ACTIVE
            committee, shares = held_shares(nodes)
            assert (committee.epoch, committee.threshold, len(shares)) == (reshare.epoch, 4, 6)
            assert (committee.public.public_key, committee.pk2) == (pk1, pk2)
            assert_key_shared(committee, shares)
            await net.wait_until(
                lambda: all(n.stored() == [(1, reshare.epoch)] for n in nodes),
                "the DKG shares to be erased",
            )
            before = {s.member: s.value for s in shares}

            # Refresh: same committee and key, every share changes.
            refresh = await net.propose(EpochKind.REFRESH, nodes, 4)
            assert (await net.wait_settled(refresh.epoch)).status is EpochStatus.ACTIVE
            committee, shares = held_shares(nodes)
            assert committee.epoch == refresh.epoch
            assert (committee.public.public_key, committee.pk2) == (pk1, pk2)
            assert_key_shared(committee, shares)
            assert all(before[s.member] != s.value for s in shares)

            # Rotate: generation 2 with a new key; generation 1 stays until retired.
            rotate = await net.propose(EpochKind.ROTATE, first5, 3)
            assert (await net.wait_settled(rotate.epoch)).status is EpochStatus.ACTIVE
            new, new_shares = held_shares(first5, 2)
            assert (new.generation, new.epoch) == (2, rotate.epoch)
            assert new.public.public_key != pk1
            assert_key_shared(new, new_shares)
            old, old_shares = held_shares(nodes, 1)
            assert (old.epoch, old.public.public_key) == (refresh.epoch, pk1)
            assert_key_shared(old, old_shares)
            assert nodes[0].stored() == [(1, refresh.epoch), (2, rotate.epoch)]
            metrics = nodes[0].metrics
            assert (metrics.generation._value.get(), metrics.epoch._value.get()) == (
                2,
                rotate.epoch,
            )
            assert nodes[5].stored() == [(1, refresh.epoch)]

            await asyncio.to_thread(net.governance.send_retire_generation, 1)
            await net.wait_until(
                lambda: (
                    all(n.stored() == [(2, rotate.epoch)] for n in first5)
                    and nodes[5].stored() == []
                ),
                "generation 1 shares to be erased",
            )
            assert all(n.manager is not None and n.manager.share_for(1) is None for n in nodes)

    run_scenario(scenario(), timeout=150)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TKMS_SLOW") != "1", reason="slow: set TKMS_SLOW=1")
def test_dkg_with_16_nodes(chain: Anvil, tmp_path: Path) -> None:
    net = Network(chain, tmp_path)
    nodes = net.create_nodes(*(f"n{k}" for k in range(1, 17)))

    async def scenario() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            started = time.monotonic()
            info = await net.propose(EpochKind.DKG, nodes, 11, phases=(30, 60, 40, 40, 40))
            assert (await net.wait_settled(info.epoch, timeout=120)).status is EpochStatus.ACTIVE
            elapsed = time.monotonic() - started
            committee, shares = held_shares(nodes)
            assert len(shares) == 16 and committee.threshold == 11
            for share in shares:
                assert committee.public.is_valid_share(share)
            print(f"DKG 16 nodes t=11: {elapsed:.1f} s on anvil ({net.anvil.block_time} s blocks)")

    run_scenario(scenario(), timeout=200)
