"""The peer channel against real governance on anvil: registry, roster and KMS measurement
come from the chain (ChainWatcher, `chain_roster`, `isKmsAllowed`), not from stand-ins.

Two nodes register themselves (endpoint string, TLS key hash, deal key), the owner approves
them, allows their measurement and OS image, and proposes a DKG. Then a status call goes
through; then the owner removes the measurement and the next call is refused with the chain's
reason.
A second approved registration carrying a node's TLS key hash makes that node's certificate
ambiguous: refused both as a server (client pin) and as a caller (server gate).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from structlog.testing import capture_logs
from web3 import Web3

from attest import VerifiedEvidence
from attest.providers import SimulatorProvider
from contracts import Anvil, EpochKind, GovernanceClient, Transactor, anvil_account, deploy
from node.authz import boot_info
from node.chainview import ChainView, ChainWatcher, NodeRecord
from node.errors import NotReady, PolicyDenied, Unauthenticated
from node.identity import NodeIdentity
from node.peer_client import PeerClient
from node.peer_service import PeerServer, chain_roster
from node.ratls import make_node_certificate
from node.tee import SIMULATED_OS_IMAGE
from tests.node.test_peer import Inbox
from tests.node.test_ratls import mr_aggregated_of

#: What the simulated TD claims as its image; governance approves what its registers measure.
CLAIMED_OS_IMAGE = bytes.fromhex("5e" * 32)


def booted_kms() -> SimulatorProvider:
    """A simulated TD booted like a dstack KMS CVM, with an os-image-hash event (a claim)."""
    p = SimulatorProvider()
    p.extend_rtmr(3, "app-id", b"\x4b" * 20)
    p.extend_rtmr(3, "compose-hash", b"\x01" * 32)
    p.extend_rtmr(3, "os-image-hash", CLAIMED_OS_IMAGE)
    p.extend_rtmr(3, "system-ready", b"")
    return p


def asks_governance(
    client: GovernanceClient, view: Callable[[], ChainView | None]
) -> Callable[[VerifiedEvidence], None]:
    def kms_allowed(evidence: VerifiedEvidence) -> None:
        current = view()
        assert current is not None
        decision = client.is_kms_allowed(boot_info(evidence), block=current.head)
        if not decision.allowed:
            raise PolicyDenied(decision.reason)

    return kms_allowed


@dataclass
class ChainNodes:
    """Nodes with their own watcher, peer server and client, registered and approved on chain."""

    ids: list[NodeIdentity]
    certs: list[tuple[bytes, bytes]]
    watchers: list[ChainWatcher]
    inboxes: list[Inbox]
    servers: list[PeerServer]
    clients: list[PeerClient]

    async def poll(self) -> None:
        for watcher in self.watchers:
            await watcher.poll_once()

    def record(self, k: int) -> NodeRecord:
        """Node k as the view of the other node(s) shows it."""
        view = self.watchers[k].view
        assert view is not None
        return view.nodes[self.ids[k].eth_address]

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for server in self.servers:
            await server.stop(None)


def register(
    w3: Web3, owner: GovernanceClient, identity: NodeIdentity, endpoint: str, tls_key_hash: bytes
) -> None:
    """`identity` registers itself (funded by anvil) and the owner approves it."""
    address = identity.eth_account.address
    w3.provider.make_request("anvil_setBalance", [address, hex(10**20)])  # type: ignore[arg-type]
    node = GovernanceClient(w3, owner.address, Transactor(w3, identity.eth_account))
    owner.send_allow_node_registration(address)
    node.send_register_node(
        operator=address,
        endpoint=endpoint,
        tls_key_hash=tls_key_hash,
        deal_key=identity.deal_public_key,
        evidence_hash=bytes(32),
    )
    owner.send_approve_node(address, owner.get_node(address).registration_hash)


async def start_nodes(
    w3: Web3, owner: GovernanceClient, reader: GovernanceClient, count: int
) -> ChainNodes:
    ids = [NodeIdentity.generate() for _ in range(count)]
    certs = [make_node_certificate(i, booted_kms()) for i in ids]
    owner.send_add_kms_measurement(mr_aggregated_of(certs[0][0]))
    owner.send_add_os_image(SIMULATED_OS_IMAGE)
    # each node has its own watcher, so the test decides when a node sees a change
    nodes = ChainNodes(
        ids, certs, [ChainWatcher(reader, poll_interval=1.0) for _ in ids], [], [], []
    )
    for k, (identity, (cert, key), watcher) in enumerate(
        zip(ids, certs, nodes.watchers, strict=True), start=1
    ):
        view = (lambda w: lambda: w.view)(watcher)
        allowed = asks_governance(reader, view)
        inbox = Inbox(k)
        server = PeerServer(
            identity=identity,
            cert_pem=cert,
            key_pem=key,
            view=view,
            epoch_status=inbox.status,
            roster=chain_roster(reader),
            kms_allowed=allowed,
            accept_simulator=True,
        )
        port = await server.start("127.0.0.1:0")
        nodes.inboxes.append(inbox)
        nodes.servers.append(server)
        nodes.clients.append(
            PeerClient(
                identity=identity,
                cert_pem=cert,
                key_pem=key,
                view=view,
                kms_allowed=allowed,
                accept_simulator=True,
                deadline=1.0,
                backoff_initial=0.05,
            )
        )
        register(
            w3, owner, identity, f"kms=127.0.0.1:1,peer=127.0.0.1:{port}", identity.tls_key_hash
        )
    return nodes


@asynccontextmanager
async def anvil_with_nodes(
    count: int,
) -> AsyncIterator[tuple[Web3, GovernanceClient, GovernanceClient, ChainNodes]]:
    """Anvil with governance deployed and `count` approved nodes; (w3, owner, reader, nodes)."""
    with Anvil() as chain:
        w3 = chain.web3()
        deployment = deploy(Transactor(w3, anvil_account(0)), allow_simulator=True)
        owner = GovernanceClient(w3, deployment.governance, Transactor(w3, anvil_account(0)))
        reader = GovernanceClient(w3, deployment.governance)
        nodes = await start_nodes(w3, owner, reader, count)
        try:
            yield w3, owner, reader, nodes
        finally:
            await nodes.close()


def test_the_peer_channel_follows_governance_on_anvil() -> None:
    async def test() -> None:
        async with anvil_with_nodes(2) as (_, owner, reader, nodes):
            ids, certs, clients = nodes.ids, nodes.certs, nodes.clients
            members = [i.eth_account.address for i in ids]
            _, epoch = owner.send_propose_epoch(EpochKind.DKG, members, 2, (50,) * 5)
            await nodes.poll()
            await nodes.servers[0].refresh()
            a = nodes.record(0)
            roster = chain_roster(reader)(epoch)
            assert roster is not None
            assert roster.dealers == (ids[0].eth_address, ids[1].eth_address)
            assert (await clients[1].epoch_status(a, epoch)).deals_received_from == (1,)

            # governance removes the measurement; A sees it, B has not polled yet
            owner.send_remove_kms_measurement(mr_aggregated_of(certs[0][0]))
            await nodes.watchers[0].poll_once()
            refused = r"UNAUTHENTICATED: peer refused: measurement: .*KMS measurement not allowed"
            with pytest.raises(Unauthenticated, match=refused):
                await clients[1].epoch_status(a, epoch)
            # once B sees it too, B no longer talks to A at all
            await nodes.watchers[1].poll_once()
            refused = r"server certificate refused: measurement: .*KMS measurement not allowed"
            with pytest.raises(Unauthenticated, match=refused):
                await clients[1].epoch_status(a, epoch)
            assert len(nodes.inboxes[0].calls) == 1

    asyncio.run(asyncio.wait_for(test(), 60))


def test_a_second_approved_node_with_the_same_tls_key_makes_it_ambiguous_on_anvil() -> None:
    """An approved registration carrying A's (public) TLS key hash must not make A's
    certificate resolve to it: both the client pin (B calling A) and the server gate (A
    calling B) refuse A's certificate as ambiguous, whatever the registry order."""

    async def test() -> None:
        async with anvil_with_nodes(2) as (w3, owner, _, nodes):
            a, b = nodes.ids
            _, epoch = owner.send_propose_epoch(
                EpochKind.DKG, [a.eth_account.address, b.eth_account.address], 2, (50,) * 5
            )
            await nodes.poll()
            await nodes.servers[0].refresh()
            assert await nodes.clients[1].epoch_status(nodes.record(0), epoch)

            register(
                w3,
                owner,
                NodeIdentity.generate(),
                "kms=127.0.0.1:1,peer=127.0.0.1:1",
                a.tls_key_hash,
            )
            await nodes.poll()
            view = nodes.watchers[1].view
            assert view is not None
            assert sum(r.tls_key_hash == a.tls_key_hash for r in view.nodes.values()) == 2
            ambiguous = rf"TLS key {a.tls_key_hash.hex()} is registered by 2 approved nodes .*ambig"
            # B calling A: B's pin refuses A's certificate
            with pytest.raises(
                Unauthenticated, match="certificate refused: registry: " + ambiguous
            ):
                await nodes.clients[1].epoch_status(nodes.record(0), epoch)
            # A calling B: B's gate (its trust bundle) no longer admits A's certificate
            with capture_logs() as logs:
                await nodes.servers[1].refresh()
            assert a.eth_address not in nodes.servers[1].bundle.trusted()
            reasons = [str(e["reason"]) for e in logs if e["event"] == "peer_refused"]
            assert any(re.search(ambiguous, r) for r in reasons), reasons
            with pytest.raises(NotReady, match="UNAVAILABLE"):
                await nodes.clients[0].epoch_status(nodes.record(1), epoch)
            assert len(nodes.inboxes[0].calls) == 1 and nodes.inboxes[1].calls == []

    asyncio.run(asyncio.wait_for(test(), 60))
