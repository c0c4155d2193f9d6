"""The peer channel against real governance on anvil: registry, roster and KMS measurement
come from the chain (ChainWatcher, `chain_roster`, `isKmsAllowed`), not from stand-ins.

Two nodes register themselves (endpoint string, TLS key hash, deal key), the owner approves
them, allows their measurement and OS image, and proposes a DKG. Then a status call goes
through; then the owner removes the measurement and the next call is refused with the chain's
reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from attest import VerifiedEvidence
from attest.providers import SimulatorProvider
from contracts import Anvil, EpochKind, GovernanceClient, Transactor, anvil_account, deploy
from node.authz import boot_info
from node.chainview import ChainView, ChainWatcher
from node.errors import PolicyDenied, Unauthenticated
from node.identity import NodeIdentity
from node.peer_client import PeerClient
from node.peer_service import PeerServer, chain_roster
from node.ratls import make_node_certificate
from tests.node.test_peer import Inbox
from tests.node.test_ratls import mr_aggregated_of

OS_IMAGE = bytes.fromhex("5e" * 32)


def booted_kms() -> SimulatorProvider:
    """A simulated TD booted like a dstack KMS CVM, with a measured OS image hash."""
    p = SimulatorProvider()
    p.extend_rtmr(3, "app-id", b"\x4b" * 20)
    p.extend_rtmr(3, "compose-hash", b"\x01" * 32)
    p.extend_rtmr(3, "os-image-hash", OS_IMAGE)
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


def test_the_peer_channel_follows_governance_on_anvil() -> None:
    async def test() -> None:
        with Anvil() as chain:
            w3 = chain.web3()
            deployment = deploy(Transactor(w3, anvil_account(0)), allow_simulator=True)
            owner = GovernanceClient(w3, deployment.governance, Transactor(w3, anvil_account(0)))
            reader = GovernanceClient(w3, deployment.governance)
            ids = [NodeIdentity.generate() for _ in range(2)]
            certs = [make_node_certificate(i, booted_kms()) for i in ids]
            owner.send_add_kms_measurement(mr_aggregated_of(certs[0][0]))
            owner.send_add_os_image(OS_IMAGE)
            # each node has its own watcher, so the test decides when a node sees a change
            watchers = [ChainWatcher(reader, poll_interval=1.0) for _ in ids]
            inboxes = [Inbox(k) for k in (1, 2)]
            servers, clients = [], []
            for identity, (cert, key), watcher, inbox in zip(
                ids, certs, watchers, inboxes, strict=True
            ):
                view = (lambda w: lambda: w.view)(watcher)
                allowed = asks_governance(reader, view)
                server = PeerServer(
                    identity=identity,
                    cert_pem=cert,
                    key_pem=key,
                    view=view,
                    epoch_status=inbox.status,
                    roster=chain_roster(reader),
                    kms_allowed=allowed,
                )
                port = await server.start("127.0.0.1:0")
                servers.append(server)
                clients.append(
                    PeerClient(
                        identity=identity,
                        cert_pem=cert,
                        key_pem=key,
                        view=view,
                        kms_allowed=allowed,
                        deadline=1.0,
                        backoff_initial=0.05,
                    )
                )
                address = identity.eth_account.address
                w3.provider.make_request("anvil_setBalance", [address, hex(10**20)])  # type: ignore[arg-type]
                node = GovernanceClient(
                    w3, deployment.governance, Transactor(w3, identity.eth_account)
                )
                node.send_register_node(
                    operator=address,
                    endpoint=f"kms=127.0.0.1:1,peer=127.0.0.1:{port}",
                    tls_key_hash=identity.tls_key_hash,
                    deal_key=identity.deal_public_key,
                    evidence_hash=bytes(32),
                )
                owner.send_approve_node(address, owner.get_node(address).registration_hash)
            members = [i.eth_account.address for i in ids]
            _, epoch = owner.send_propose_epoch(EpochKind.DKG, members, 2, (50, 50, 50, 50, 50))
            try:
                for watcher in watchers:
                    await watcher.poll_once()
                await servers[0].refresh()
                a_view = watchers[0].view
                assert a_view is not None
                a = a_view.nodes[ids[0].eth_address]
                roster = chain_roster(reader)(epoch)
                assert roster is not None
                assert roster.dealers == (ids[0].eth_address, ids[1].eth_address)
                assert (await clients[1].epoch_status(a, epoch)).deals_received_from == (1,)

                # governance removes the measurement; A sees it, B has not polled yet
                owner.send_remove_kms_measurement(mr_aggregated_of(certs[0][0]))
                await watchers[0].poll_once()
                refused = (
                    r"UNAUTHENTICATED: peer refused: measurement: .*KMS measurement not allowed"
                )
                with pytest.raises(Unauthenticated, match=refused):
                    await clients[1].epoch_status(a, epoch)
                # once B sees it too, B no longer talks to A at all
                await watchers[1].poll_once()
                refused = r"server certificate refused: measurement: .*KMS measurement not allowed"
                with pytest.raises(Unauthenticated, match=refused):
                    await clients[1].epoch_status(a, epoch)
                assert len(inboxes[0].calls) == 1
            finally:
                for client in clients:
                    await client.close()
                for server in servers:
                    await server.stop(None)

    asyncio.run(asyncio.wait_for(test(), 60))
