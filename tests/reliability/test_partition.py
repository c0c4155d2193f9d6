"""Scenario 2: one node cut off from its peers during a reshare (the chain stays reachable).

In-process epoch managers on a real anvil; the partition drops every peer delivery from and
to the node (`FaultNetwork.partitioned`) for the whole Deal and Complain phases. The rules
then run on chain: every peer complains that the partitioned dealer's share is missing and the
partitioned member complains against every peer; each accused dealer justifies in the clear,
so the partitioned node catches up from the chain and stays in QUAL. The new epoch activates
with the group key unchanged and every member, the partitioned one too, holds a valid share.
A node cut off for good (it also misses the Justify phase) is excluded by the same rules,
which `tests/node/test_epochs_faults.py` shows for a DKG.
"""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from contracts import Anvil, EpochKind, EpochStatus
from tests.node.epoch_harness import assert_key_shared, chain, held_shares, run_scenario
from tests.reliability.harness import FaultNetwork

__all__ = ["chain"]


def test_a_node_partitioned_during_a_reshare_catches_up_from_the_chain(
    chain: Anvil, tmp_path: Path
) -> None:
    net = FaultNetwork(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3", "n4", "n5")
    n3 = nodes[2]
    net.attempts = 20  # deliveries across the partition give up within the Deal phase

    async def go() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            dkg = await net.propose_slow(EpochKind.DKG, nodes, 3)
            await net.settle(dkg.epoch)
            before, _ = held_shares(nodes)
            net.partitioned.add("n3")
            with capture_logs() as logs:
                info = await net.propose_slow(EpochKind.RESHARE, nodes, 3)
                await net.wait_head(info.complaint_deadline + 1)
                net.partitioned.clear()
                settled = await net.settle(info.epoch)
            assert settled.status is EpochStatus.ACTIVE
            after, shares = held_shares(nodes)
            assert after.epoch == info.epoch and len(shares) == 5
            assert (after.public.public_key, after.pk2) == (before.public.public_key, before.pk2)
            assert_key_shared(after, shares)
            complaints = net.governance.get_complaints(info.epoch)
            against_n3 = {c.accuser for c in complaints if c.accused == n3.address}
            by_n3 = {c.accused for c in complaints if c.accuser == n3.address}
            others = {n.address for n in nodes if n is not n3}
            assert against_n3 == others and by_n3 == others
            assert all(c.justified for c in complaints), "an accused dealer did not justify"
            quals = {n.manager.status().last_qual for n in nodes if n.manager is not None}
            assert quals == {(1, 2, 3, 4, 5)}
            failed = [e for e in logs if e["event"] == "deal_delivery_failed"]
            assert failed, "the partition dropped nothing"
            faults = {(e["member"], e["kind"]) for e in logs if e["event"] == "dkg_fault"}
            assert (3, "MISSING_SHARE") in faults
            for node in nodes:  # each other node blames n3 by address, and no one else
                if node is not n3:
                    blamed = {
                        (s.labels["peer"], s.labels["kind"], s.value)
                        for m in node.metrics.peer_faults.collect()
                        for s in m.samples
                        if s.name.endswith("_total")
                    }
                    assert blamed == {(n3.address, "MISSING_SHARE", 1.0)}, (node.name, blamed)

    run_scenario(go(), timeout=300)
