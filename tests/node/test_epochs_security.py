"""Security review II on a real anvil with in-process nodes: F-02 (a member re-registering
cannot stop an epoch), F-04 (what an epoch leaves on disk), F-07 (board reads pinned to a
settled block), F-10 (nodes warn about phases shorter than their margin)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from contracts import Anvil, EpochKind, EpochStatus
from mpc.errors import DecryptionError
from node.journal import Journal, Published
from node.sealing import FileSealer
from tests.node.epoch_harness import (
    Network,
    Node,
    assert_key_shared,
    chain,
    held_shares,
    run_scenario,
)

__all__ = ["chain"]


def test_a_member_reregistering_a_bad_deal_key_after_the_proposal_stops_nothing(
    chain: Anvil, tmp_path: Path
) -> None:
    """F-02: before, dealers read every member's deal key from the registry when they opened
    the epoch; one undecodable key there and nobody dealt, so the epoch failed."""
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3", "n4", "n5")
    n5 = nodes[4]

    async def scenario() -> None:
        async with net.running():
            info = await net.propose(EpochKind.DKG, nodes, 3)
            # Mined before any honest node opens the epoch, as a back-run of the proposal.
            receipt = await asyncio.to_thread(
                n5.client.send_register_node,
                operator=n5.address,
                endpoint="kms=127.0.0.1:1,peer=127.0.0.1:2",
                tls_key_hash=n5.identity.tls_key_hash,
                deal_key=b"\x01",
                evidence_hash=bytes(32),
            )
            await net.wait_head(receipt.block)
            for node in nodes:
                net.start(node)
            settled = await net.wait_settled(info.epoch, timeout=60)
            assert settled.status is EpochStatus.ACTIVE, settled.status
            committee, shares = held_shares(nodes[:4])
            assert len(shares) == 4
            assert_key_shared(committee, shares)

    run_scenario(scenario())


class Recorder:
    """Wraps a node's board reads and notes (method, block argument, chain head then)."""

    BOARD = ("get_deal", "get_complaints", "fetch_epoch_key", "fetch_deal_shares")

    def __init__(self, net: Network, node: Node) -> None:
        self.calls: list[tuple[str, Any, int]] = []
        for name in self.BOARD:
            self._wrap(net, node, name)

    def _wrap(self, net: Network, node: Node, name: str) -> None:
        original = getattr(node.client, name, None)
        if original is None:  # a read this client does not have
            return

        def recorded(*args: Any, **kwargs: Any) -> Any:
            block = kwargs.get("block", kwargs["deal"].submitted_at if "deal" in kwargs else None)
            self.calls.append((name, block, int(net.w3.eth.block_number)))
            return original(*args, **kwargs)

        setattr(node.client, name, recorded)


def test_board_reads_are_pinned_to_a_settled_block_past_the_deadline(
    chain: Anvil, tmp_path: Path
) -> None:
    """F-07: deals and complaints were read at "latest" at the first head past a deadline, so
    a reorg across the deadline could give honest nodes different QUALs."""
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3")
    recorder = Recorder(net, nodes[0])

    async def scenario() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            info = await net.propose(EpochKind.DKG, nodes, 2)
            assert (await net.wait_settled(info.epoch)).status is EpochStatus.ACTIVE
            deals = [(b, h) for name, b, h in recorder.calls if name == "get_deal"]
            complaints = [(b, h) for name, b, h in recorder.calls if name == "get_complaints"]
            assert deals and complaints, recorder.calls
            for name, block, head in recorder.calls:
                assert isinstance(block, int), (name, block)
                assert block <= head - net.confirmations, (name, block, head)
            assert all(b >= info.deal_deadline for b, _ in deals), deals
            assert all(b >= info.complaint_deadline for b, _ in complaints), complaints

    run_scenario(scenario())


def test_nodes_warn_when_phases_are_shorter_than_their_margin(chain: Anvil, tmp_path: Path) -> None:
    """F-10: the contract refuses phases under 3 blocks; a node judging at depth 2 needs 4."""
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2")

    async def scenario() -> None:
        async with net.running():
            with capture_logs() as logs:
                net.start(nodes[0])
                info = await net.propose(EpochKind.DKG, nodes, 1, phases=(3, 8, 3, 8, 8))
                await net.wait_until(
                    lambda: any(e["event"] == "epoch_phases_short" for e in logs), "the warning"
                )
            (warning,) = [e for e in logs if e["event"] == "epoch_phases_short"]
            assert warning["epoch"] == info.epoch
            assert warning["phases"] == {"keys": 3, "complain": 3}
            assert (warning["confirmations"], warning["minimum"]) == (2, 4)

    run_scenario(scenario())


def test_an_ended_epoch_leaves_nothing_that_opens_its_shares(chain: Anvil, tmp_path: Path) -> None:
    """F-04: the journal kept the ciphertexts delivered to us, encrypted to our long-term
    deal key, so whoever later got that key (or the sealing key it is kept under) opened the
    shares of every epoch the host had copied. Now no ciphertext is on disk at any time, the
    ones on chain open only with the epoch's own key, and that key is erased with the epoch.
    A copy of the sealed key taken while the epoch ran still opens them: sealed secrets are
    only as forward-secret as the sealing key (docs/security.md)."""
    net = Network(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3")
    n1 = nodes[0]
    during = tmp_path / "copied-during-the-epoch"

    async def scenario() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            info = await net.propose(EpochKind.DKG, nodes, 2)
            journal = n1.journal
            assert journal is not None
            await net.wait_until(
                lambda: journal.published(info.epoch, Published.DEAL) is not None, "n1's deal"
            )
            await net.wait_head(info.deal_deadline + 1)
            shutil.copytree(n1.data_dir, during)  # what a host can copy while the epoch runs
            assert (await net.wait_settled(info.epoch)).status is EpochStatus.ACTIVE
            await net.wait_until(lambda: n1.stored() == [(1, info.epoch)], "n1's share")

        # 1. The journal (not sealed: the host reads it) never held a ciphertext for us.
        db = sqlite3.connect(during / "journal.sqlite3")
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = {str(r[0]) for r in db.execute(query)}
        rows = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
        db.close()
        extra = {t: n for t, n in rows.items() if t not in ("epochs", "published") and n}
        assert not extra, f"the journal holds what was sent to us: {extra}"
        # 2. After the epoch, nothing the node holds opens its sealed shares on chain.
        sealer = FileSealer.open(n1.data_dir, create=False)
        after = Journal.open(n1.data_dir / "journal.sqlite3", sealer)
        assert after.secrets.epochs() == []
        after.close()
        # 3. The copy taken during the epoch does (with the sealing key): the documented limit.
        copied = Journal.open(during / "journal.sqlite3", FileSealer.open(during, create=False))
        assert copied.secrets.epochs() == [info.epoch]
        opened = opened_with_copy(net, copied, info.epoch)
        copied.close()
        assert opened == 1  # n2's share for n1 (dealer 3's too, unless it is n1's own)

    run_scenario(scenario())


def opened_with_copy(net: Network, journal: Journal, epoch: int) -> int:
    """How many of member 1's sealed shares on chain the copied epoch key opens."""
    from mpc.epochkey import EpochPublicKey
    from mpc.messages import ShareBundle
    from mpc.sharebox import open_share, pair_context

    key = journal.secrets.epoch_key(epoch, session_id=b"", address=b"", member=True, create=False)
    assert key is not None
    info = net.governance.get_epoch(epoch)
    opened = 0
    for k, dealer in enumerate(info.dealers[1:2], start=2):
        raw = net.governance.fetch_deal_shares(
            epoch, dealer, deal=net.governance.get_deal(epoch, dealer)
        )
        posted = net.governance.fetch_epoch_key(epoch, dealer)
        assert raw is not None and posted is not None
        bundle = ShareBundle.from_bytes(raw)
        sealed = bundle.entry(1)
        assert sealed is not None
        try:
            open_share(
                sealed,
                me=key,
                dealer=EpochPublicKey.from_bytes(posted),
                pair=pair_context(bundle.session_id, k, 1),
            )
        except DecryptionError:
            continue
        opened += 1
    return opened
