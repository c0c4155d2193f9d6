"""Scenario 3: a node killed at each phase of a DKG and of a reshare, then restarted.

In-process epoch managers on a real anvil (`tests.reliability.harness`); killing a manager
cancels its task mid-step, so what survives is exactly what its journal and share store had
made durable, as after a SIGKILL. After every run: the epoch is Active, every member (the
killed ones too) holds a share on the activated public polynomial, any t shares recover the
group key, every node computed the same QUAL, and a reshare keeps the group key.

`make test` runs one DKG with a different node killed in each phase; the long variants
(TKMS_SLOW=1) do the same for a DKG and then a reshare, and kill one node per run, for every
phase of both kinds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from contracts import Anvil, EpochInfo, EpochKind, EpochStatus
from node.chainview import ChainView
from tests.node.epoch_harness import Node, assert_key_shared, chain, held_shares, run_scenario
from tests.reliability.harness import FaultNetwork

__all__ = ["chain"]

PHASES = ("keys", "deal", "complain", "justify", "confirm")
DOWN_SECONDS = 0.5  # two blocks


def moment(info: EpochInfo, phase: str) -> Callable[[ChainView], bool]:
    """The first head inside `phase` at which the kill happens."""
    head = {
        "keys": info.proposed_at + 2,  # our key just posted (or being posted)
        "deal": info.deal_deadline - 5,  # after our deal went out, before the deadline
        "complain": info.deal_deadline + 3,  # deals just judged, complaints being sent
        "justify": info.complaint_deadline + 3,  # complaints judged, answers owed
        "confirm": info.justify_deadline + 3,  # outcome known, confirmation being sent
    }[phase]
    return lambda view: view.head >= head


async def run_with_kills(
    net: FaultNetwork, kind: EpochKind, members: list[Node], kills: dict[str, Node]
) -> EpochInfo:
    info = await net.propose_slow(kind, members, 3)
    for phase in PHASES:
        victim = kills.get(phase)
        if victim is None:
            continue
        view = await net.kill_when(victim, moment(info, phase))
        assert view.head <= info.confirm_deadline, "test too slow: the epoch timed out"
        await asyncio.sleep(DOWN_SECONDS)
        net.start(victim)
    settled = await net.settle(info.epoch)
    assert settled.status is EpochStatus.ACTIVE, f"{kind.name} epoch ended {settled.status}"
    return info


def check_epoch(net: FaultNetwork, nodes: list[Node], epoch: int) -> None:
    committee, shares = held_shares(nodes)
    assert committee.epoch == epoch
    assert len(shares) == len(nodes), "a killed node lost its share"
    assert_key_shared(committee, shares)
    quals = {n.name: n.manager.status().last_qual for n in nodes if n.manager is not None}
    assert len(set(quals.values())) == 1, f"nodes disagree on QUAL: {quals}"
    assert not net.crashed, net.crashed


def scenario(tmp_path: Path, chain: Anvil, plan: dict[EpochKind, dict[str, int]]) -> None:
    """Run a DKG (and a reshare if planned), killing `plan[kind][phase]` (a node's position)."""
    net = FaultNetwork(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3", "n4", "n5")

    async def go() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            kills = {p: nodes[i] for p, i in plan.get(EpochKind.DKG, {}).items()}
            dkg = await run_with_kills(net, EpochKind.DKG, nodes, kills)
            check_epoch(net, nodes, dkg.epoch)
            if EpochKind.RESHARE not in plan:
                return
            before, _ = held_shares(nodes)
            kills = {p: nodes[i] for p, i in plan[EpochKind.RESHARE].items()}
            reshare = await run_with_kills(net, EpochKind.RESHARE, nodes, kills)
            check_epoch(net, nodes, reshare.epoch)
            after, _ = held_shares(nodes)
            assert (after.public.public_key, after.pk2) == (before.public.public_key, before.pk2)
            await net.wait_until(
                lambda: all(n.stored() == [(1, reshare.epoch)] for n in nodes),
                "the old shares to be erased",
            )

    run_scenario(go(), timeout=240)


def test_a_node_killed_in_each_phase_of_a_dkg_keeps_its_share(chain: Anvil, tmp_path: Path) -> None:
    staggered = {p: i for i, p in enumerate(PHASES)}  # n1 in Keys, n2 in Deal, ...
    scenario(tmp_path, chain, {EpochKind.DKG: staggered})


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TKMS_SLOW") != "1", reason="slow: set TKMS_SLOW=1")
def test_a_node_killed_in_each_phase_of_a_dkg_and_a_reshare_keeps_its_share(
    chain: Anvil, tmp_path: Path
) -> None:
    staggered = {p: i for i, p in enumerate(PHASES)}  # n1 in Keys, n2 in Deal, ...
    shifted = {p: (i + 1) % 5 for i, p in enumerate(PHASES)}  # n2 in Keys, ...
    scenario(tmp_path, chain, {EpochKind.DKG: staggered, EpochKind.RESHARE: shifted})


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TKMS_SLOW") != "1", reason="slow: set TKMS_SLOW=1")
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("kind", [EpochKind.DKG, EpochKind.RESHARE], ids=["dkg", "reshare"])
def test_one_node_killed_in_one_phase(
    chain: Anvil, tmp_path: Path, kind: EpochKind, phase: str
) -> None:
    plan: dict[EpochKind, dict[str, int]] = {EpochKind.DKG: {}}
    plan[kind] = {phase: 2}
    scenario(tmp_path, chain, plan)
