"""An in-process network of epoch managers on a real anvil (interval mining, short phases).

Every node is real: it has its own identity (sealed in its own data directory), its own
funded Ethereum account and GovernanceClient, journal and share store. There is no network
between them to fake: everything of an epoch goes through the chain. A test makes a dealer
malicious by tampering with what its client sends (`Network.tamper`: the sealed share one
dealer puts on chain for one member is rewritten before the transaction is signed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contracts import (
    Anvil,
    EpochInfo,
    EpochKind,
    EpochStatus,
    GovernanceClient,
    Transactor,
    anvil_account,
    deploy,
)
from mpc.group import G1
from mpc.messages import ShareBundle
from mpc.sharebox import SealedShare
from mpc.sharing import Share, recover_secret
from node.chainview import ChainWatcher, Committee
from node.epochs import EpochManager
from node.identity import NodeIdentity, create_identity, load_identity
from node.journal import Journal
from node.metrics import NodeMetrics
from node.sealing import FileSealer
from node.shares import ShareStore

BLOCK_TIME = 0.25
PHASES = (5, 12, 8, 8, 10)  # blocks of Keys, Deal, Complain, Justify, Confirm
RETIREMENT_WINDOW = 4
Tamper = Callable[[SealedShare], SealedShare]


def flip_last_byte(sealed: SealedShare) -> SealedShare:
    """The box no longer opens (for the recipient, and for everyone once it is disputed)."""
    return SealedShare(sealed.kem_ciphertext, sealed.box[:-1] + bytes([sealed.box[-1] ^ 1]))


def tampered_bundle(raw: bytes, tamper: dict[int, Tamper]) -> bytes:
    """`raw` (a ShareBundle) with the sealed share of each member in `tamper` rewritten."""
    bundle = ShareBundle.from_bytes(raw)
    entries = list(bundle.entries)
    for member, change in tamper.items():
        sealed = entries[member - 1]
        if sealed is not None:
            entries[member - 1] = change(sealed)
    return dataclasses.replace(bundle, entries=tuple(entries)).to_bytes()


@dataclass(eq=False)
class Node:
    name: str
    data_dir: Path
    identity: NodeIdentity
    client: GovernanceClient
    journal: Journal | None = None
    shares: ShareStore | None = None
    manager: EpochManager | None = None
    task: asyncio.Task[None] | None = None
    metrics: NodeMetrics = field(default_factory=NodeMetrics)

    @property
    def address(self) -> str:
        return str(self.identity.eth_account.address)

    @property
    def raw_address(self) -> bytes:
        return self.identity.eth_address

    @contextlib.contextmanager
    def open_journal(self) -> Iterator[Journal]:
        """The node's journal, opened on its own (as after a restart)."""
        sealer = FileSealer.open(self.data_dir, create=False)
        journal = Journal.open(self.data_dir / "journal.sqlite3", sealer)
        try:
            yield journal
        finally:
            journal.close()

    def stored(self) -> list[tuple[int, int]]:
        """The (generation, epoch) of every sealed share in the node's data dir."""
        return ShareStore(
            self.data_dir / "shares", FileSealer.open(self.data_dir, create=False)
        ).list()


class Network:
    """A fresh deployment on `anvil` and the nodes of one test."""

    def __init__(self, anvil: Anvil, root: Path) -> None:
        self.anvil, self.root = anvil, root
        self.w3 = anvil.web3()
        self.owner = Transactor(self.w3, anvil_account(0))
        deployment = deploy(self.owner, retirement_window=RETIREMENT_WINDOW)
        self.governance = GovernanceClient(self.w3, deployment.governance, self.owner)
        self.watcher = ChainWatcher(
            GovernanceClient(anvil.web3(), deployment.governance), poll_interval=0.1
        )
        self.nodes: dict[str, Node] = {}
        self.live: dict[bytes, EpochManager] = {}
        #: (dealer node, member index) -> how its sealed share for that member is rewritten
        self.tamper: dict[tuple[str, int], Tamper] = {}
        self.confirmations = 2
        self._group: asyncio.TaskGroup | None = None

    # Nodes
    def create_nodes(self, *names: str) -> list[Node]:
        """New identities and data dirs, funded, registered and approved on chain."""
        made = []
        for name in names:
            data_dir = self.root / name
            data_dir.mkdir(parents=True)
            identity = create_identity(data_dir, FileSealer.open(data_dir, create=True))
            w3 = self.anvil.web3()
            client = GovernanceClient(
                w3, self.governance.address, Transactor(w3, identity.eth_account)
            )
            fund = [identity.eth_account.address, hex(10**20)]
            self.w3.provider.make_request("anvil_setBalance", fund)  # type: ignore[arg-type]
            node = Node(name=name, data_dir=data_dir, identity=identity, client=client)
            self._tamper_deals(node)
            self.nodes[name] = node
            made.append(node)
        for node in made:
            self.governance.send_allow_node_registration(node.address)
            node.client.send_register_node(
                operator=node.address,
                endpoint="kms=127.0.0.1:1,peer=127.0.0.1:2",
                tls_key_hash=node.identity.tls_key_hash,
                deal_key=node.identity.deal_public_key,
                evidence_hash=hashlib.sha256(node.name.encode()).digest(),
            )
        for node in made:
            info = self.governance.get_node(node.address)
            self.governance.send_approve_node(node.address, info.registration_hash)
        return made

    def _tamper_deals(self, node: Node) -> None:
        """Route the node's `submitDeal` through `self.tamper` (a malicious dealer's bytes)."""
        send = node.client.send_submit_deal

        def submit(
            epoch: int, commitments: Any, pk2_part: bytes, proof: bytes, shares: bytes
        ) -> Any:
            changes = {m: t for (n, m), t in self.tamper.items() if n == node.name}
            if changes:
                shares = tampered_bundle(shares, changes)
            return send(epoch, commitments, pk2_part, proof, shares)

        node.client.send_submit_deal = submit  # type: ignore[method-assign]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Network]:
        async with asyncio.TaskGroup() as group:
            self._group = group
            watcher = group.create_task(self.watcher.run())
            try:
                await self.watcher.wait_for_view(lambda v: True)
                yield self
            finally:
                for node in self.nodes.values():
                    await self.stop(node)
                watcher.cancel()

    def start(self, node: Node) -> EpochManager:
        """Build the node's manager from its data dir (as a restarted process would)."""
        assert self._group is not None and node.task is None
        sealer = FileSealer.open(node.data_dir, create=False)
        identity = load_identity(node.data_dir, sealer)
        node.journal = Journal.open(node.data_dir / "journal.sqlite3", sealer)
        node.shares = ShareStore(node.data_dir / "shares", sealer)
        node.manager = EpochManager(
            identity=identity,
            client=node.client,
            watcher=self.watcher,
            journal=node.journal,
            shares=node.shares,
            metrics=node.metrics,
            confirmations=self.confirmations,
        )
        self.live[node.raw_address] = node.manager
        node.task = self._group.create_task(node.manager.run())
        return node.manager

    async def stop(self, node: Node) -> None:
        """Kill the node's manager (cancel its task) and close its journal."""
        if node.task is None:
            return
        self.live.pop(node.raw_address, None)
        node.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await node.task
        node.task = None
        assert node.journal is not None
        node.journal.close()

    # Epochs
    async def propose(
        self,
        kind: EpochKind,
        members: list[Node],
        threshold: int,
        phases: tuple[int, int, int, int, int] = PHASES,
    ) -> EpochInfo:
        addresses = [m.address for m in members]
        _, epoch = await asyncio.to_thread(
            self.governance.send_propose_epoch, kind, addresses, threshold, phases
        )
        return await asyncio.to_thread(self.governance.get_epoch, epoch)

    async def wait_head(self, block: int, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.watcher.wait_for_view(lambda v: v.head >= block), timeout)

    async def wait_settled(self, epoch: int, timeout: float = 40.0) -> EpochInfo:
        """Wait until `epoch` left Running and every live node involved has settled it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = await asyncio.to_thread(self.governance.get_epoch, epoch)
            if info.status is not EpochStatus.RUNNING:
                involved = {a.lower() for a in (*info.members, *info.dealers)}
                pending = [
                    n.name
                    for n in self.nodes.values()
                    if n.manager is not None
                    and n.task is not None
                    and n.address.lower() in involved
                    and n.manager.status().last_epoch < epoch
                ]
                if not pending:
                    return info
            await asyncio.sleep(0.2)
        raise AssertionError(f"epoch {epoch} did not settle within {timeout} s: {info}")

    async def wait_until(
        self, predicate: Callable[[], bool], what: str, timeout: float = 20.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)


def held_shares(nodes: list[Node], generation: int = 0) -> tuple[Committee, list[Share]]:
    """The committee every node sees for `generation` and the shares they hold for it."""
    found = [n.manager.share_for(generation) for n in nodes if n.manager is not None]
    held = [f for f in found if f is not None]
    assert held, f"no node holds a share of generation {generation}"
    committee = held[0][0]
    for other, _ in held:
        assert other == committee, "nodes disagree on the committee"
    return committee, [s for _, s in held]


def assert_key_shared(committee: Committee, shares: list[Share]) -> None:
    """Every share is on the public polynomial; any t of them recover A_0 = PK1; t-1 do not."""
    t = committee.threshold
    assert len({s.member for s in shares}) == len(shares)
    for s in shares:
        assert committee.public.is_valid_share(s), f"share of member {s.member} is not on A"
    assert len(shares) >= t
    for subset in itertools.combinations(shares, t):
        assert G1.base_mul(recover_secret(list(subset), t)) == committee.public.public_key
    if t > 1:
        assert G1.base_mul(recover_secret(shares[: t - 1], t - 1)) != committee.public.public_key


def deal_constant(governance: GovernanceClient, epoch: int, dealer: Node) -> G1:
    """C_0 of `dealer`'s deal on chain."""
    return G1.from_bytes(governance.get_deal(epoch, dealer.address).commitments[0])


@pytest.fixture(scope="module")
def chain() -> Iterator[Anvil]:
    """One anvil per test module, mining a block every BLOCK_TIME seconds."""
    with Anvil(block_time=BLOCK_TIME) as anvil:
        yield anvil


def run_scenario(scenario: Coroutine[Any, Any, None], timeout: float = 120.0) -> None:
    """Run a scenario; its nodes share one process, so give them enough threads.

    Every node blocks a thread while its transaction is mined; with asyncio's default pool
    (cores + 4) six nodes would queue the chain reads behind each other's transactions.
    """

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=32))
        await asyncio.wait_for(scenario, timeout)

    asyncio.run(main())
