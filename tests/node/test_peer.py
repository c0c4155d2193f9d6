"""The Peer service over real mutual RA-TLS on 127.0.0.1: who gets in, who is refused, and why.

Every node here is simulator-attested, serves its certificate on a real peer port (port 0),
and sees the chain through its own `ChainView` (so a test can change one node's view).
Refusals are asserted by their reason, both in the caller's error and in the server's
``peer_refused`` log event.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc import aio
from structlog.testing import capture_logs

from node.chainview import ChainView
from node.errors import InvalidRequest, NotReady, Unauthenticated
from node.identity import NodeIdentity
from node.peer_client import PeerClient
from node.peer_service import EpochRoster, EpochStatusReply, PeerServer
from node.ratls import PEER_TLS_NAME, fetch_context, fetch_peer_certificate, make_node_certificate
from protos.tkms.v1 import kms_pb2, peer_pb2, peer_pb2_grpc
from tests.node.test_ratls import (
    AllowList,
    OtherKeyProvider,
    PeerNode,
    attested_node,
    attested_provider,
    key_pem_of,
    make_view,
    mr_aggregated_of,
    self_signed,
)

EPOCH = 7
STATUS = EpochStatusReply(EPOCH, "deal", (1,))


class Inbox:
    """Stands in for EpochManager.progress: answers status calls and counts them."""

    def __init__(self, me: int) -> None:
        self.me = me
        self.calls: list[int] = []
        self.refuse = ""  # a reason to refuse with (InvalidRequest), "" to answer
        self.roots: list[tuple[int, int, bytes]] = []

    def status(self, epoch: int) -> EpochStatusReply:
        self.calls.append(epoch)
        if self.refuse:
            raise InvalidRequest(self.refuse)
        return EpochStatusReply(epoch=epoch, phase="deal", deals_received_from=(1,))

    def root_partial(self, generation: int, epoch: int, requester: bytes) -> kms_pb2.Partial:
        """Stands in for KmsRoots.partial_for: records the request, answers a marker."""
        self.roots.append((generation, epoch, requester))
        return kms_pb2.Partial(generation=generation, epoch=epoch, member=self.me, y=requester)


class Net:
    """Nodes with peer servers and clients; one view per node; one roster for epoch 7."""

    def __init__(self) -> None:
        self.views: dict[bytes, ChainView] = {}
        self.servers: dict[bytes, PeerServer] = {}
        self.clients: dict[bytes, PeerClient] = {}
        self.inboxes: dict[bytes, Inbox] = {}
        # every attested_provider() boots the same way: one approved KMS measurement
        self.allow = AllowList(mr_aggregated_of(attested_node().cert_pem))
        self.roster: EpochRoster | None = None

    async def add(self, node: PeerNode, member: int = 0, **options: Any) -> PeerNode:
        addr = node.address
        inbox = self.inboxes[addr] = Inbox(member)
        server = PeerServer(
            identity=node.identity,
            cert_pem=node.cert_pem,
            key_pem=node.key_pem,
            view=lambda: self.views.get(addr),
            epoch_status=inbox.status,
            roster=lambda e: self.roster if self.roster and e == self.roster.epoch else None,
            kms_allowed=self.allow,
            accept_simulator=True,
            root_partial=inbox.root_partial if options.get("roots", True) else None,
            fetch_timeout=2.0,
            poll_interval=0.05,
            retry_interval=0.2,
        )
        port = await server.start(str(options.get("listen", "127.0.0.1:0")))
        node.endpoint = f"127.0.0.1:{port}"
        self.servers[addr] = server
        self.clients[addr] = PeerClient(
            identity=node.identity,
            cert_pem=node.cert_pem,
            key_pem=node.key_pem,
            view=lambda: self.views.get(addr),
            kms_allowed=self.allow,
            accept_simulator=True,
            rpc_timeout=2.0,
            deadline=options.get("deadline", 0.6),
            root_deadline=options.get("deadline", 0.6),
            backoff_initial=0.05,
            backoff_max=0.3,
        )
        return node

    def publish(self, *nodes: PeerNode, simulator_allowed: bool = True) -> ChainView:
        """Register `nodes` and give every node the same view."""
        view = make_view(
            {n.address: n.record() for n in nodes}, simulator_allowed=simulator_allowed
        )
        for addr in self.servers:
            self.views[addr] = view
        return view

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        await asyncio.gather(*(s.stop(None) for s in self.servers.values()))


@asynccontextmanager
async def network() -> AsyncIterator[Net]:
    net = Net()
    try:
        yield net
    finally:
        await net.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 25))


async def two_nodes(net: Net) -> tuple[PeerNode, PeerNode]:
    """A receives (member 1), B deals (dealer 1); both registered, attested, trusted by A."""
    a = await net.add(attested_node(), member=1)
    b = await net.add(attested_node(), member=2)
    net.publish(a, b)
    net.roster = EpochRoster(EPOCH, dealers=(b.address, a.address), members=(a.address, b.address))
    await net.servers[a.address].refresh()
    return a, b


def refusals(logs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(e["reason"]) for e in logs if e["event"] == "peer_refused"]


# -- the accepted path ----------------------------------------------------------------------------


def test_an_attested_registered_participant_gets_an_answer() -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            client = net.clients[b.address]
            assert await client.epoch_status(a.record(), EPOCH) == STATUS
            assert await client.epoch_status(a.record(), EPOCH) == STATUS
            assert net.inboxes[a.address].calls == [EPOCH, EPOCH]
            assert client.reachable_count() == 1
            assert net.servers[a.address].reachable_count() == 1

    run(test)


def test_a_dealer_with_a_long_boot_log_gets_through() -> None:
    """Regression: a 9 KB client certificate (evidence written twice) made every connection
    fail after the handshake (grpc's TLS buffer vs. session tickets carrying it)."""

    async def test() -> None:
        async with network() as net:
            provider = attested_provider()
            provider.extend_rtmr(3, "app-note", b"n" * 1500)  # a chattier boot
            b = attested_node(provider)
            net.allow.allowed.add(mr_aggregated_of(b.cert_pem))
            a = await net.add(attested_node(), member=1)
            await net.add(b, member=2)
            net.publish(a, b)
            net.roster = EpochRoster(EPOCH, dealers=(b.address,), members=(a.address,))
            await net.servers[a.address].refresh()
            assert await net.clients[b.address].epoch_status(a.record(), EPOCH) == STATUS

    run(test)


def test_a_request_refused_by_the_epoch_manager_is_invalid_argument_and_not_retried() -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            net.inboxes[a.address].refuse = "epoch 7: not ours (test)"
            refused = r"INVALID_ARGUMENT: epoch status for 0x[0-9a-f]{40}: epoch 7: not ours"
            with pytest.raises(InvalidRequest, match=refused):
                await net.clients[b.address].epoch_status(a.record(), EPOCH)
            assert len(net.inboxes[a.address].calls) == 1

    run(test)


def test_a_dealer_not_yet_trusted_gets_in_once_the_bundle_refreshes() -> None:
    async def test() -> None:
        async with network() as net:
            a = await net.add(attested_node(), member=1)
            b = await net.add(attested_node(), member=2, deadline=10.0)
            net.roster = EpochRoster(EPOCH, dealers=(b.address,), members=(a.address,))
            net.publish(a, b)  # A has not fetched B's certificate: B's handshakes fail
            refresher = asyncio.create_task(net.servers[a.address].run())
            try:
                status = await net.clients[b.address].epoch_status(a.record(), EPOCH)
            finally:
                refresher.cancel()
            assert status == STATUS
            assert set(net.servers[a.address].bundle.trusted()) == {b.address}

    run(test)


def test_a_restarted_peer_with_a_new_certificate_gets_back_in() -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            assert await net.clients[b.address].epoch_status(a.record(), EPOCH) == STATUS
            # B restarts: same sealed key and endpoint, fresh quote, so a new certificate
            await net.servers[b.address].stop(None)
            await net.clients[b.address].close()
            port = int(b.endpoint.rpartition(":")[2])
            cert, key = make_node_certificate(b.identity, attested_provider())
            restarted = PeerNode(b.identity, cert, key, b.registered_key_hash)
            await net.add(restarted, member=2, deadline=10.0, listen=f"127.0.0.1:{port}")
            net.views[b.address] = net.views[a.address]
            server_a = net.servers[a.address]
            server_a.refresh_interval = 0.2
            refresher = asyncio.create_task(server_a.run())
            try:
                client = net.clients[b.address]
                assert await client.epoch_status(a.record(), EPOCH) == STATUS
            finally:
                refresher.cancel()
            assert server_a.bundle.trusted()[b.address].cert_pem == cert

    run(test)


def test_periodic_refresh_reverifies_an_unchanged_certificate_only_when_due() -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            server = net.servers[a.address]
            calls = net.allow.calls
            net.publish(a, b)  # an equal but new view: the verifier's cache cannot answer
            await server.refresh(force=False)
            assert net.allow.calls == calls
            server.reverify_interval = 0.0
            await server.refresh(force=False)
            assert net.allow.calls == calls + 1
            net.publish(a, b)
            await server.refresh()
            assert net.allow.calls == calls + 2

    run(test)


# -- refusals at the call (certificate in the bundle, but the request or the view says no) --------


def test_node_outside_the_epoch_is_refused() -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            c = await net.add(attested_node())
            net.publish(a, b, c)
            await net.servers[a.address].refresh()
            client = net.clients[c.address]
            with (
                capture_logs() as logs,
                pytest.raises(
                    Unauthenticated, match=r"is neither a dealer nor a member of epoch 7"
                ),
            ):
                await client.epoch_status(a.record(), EPOCH)
            assert net.inboxes[a.address].calls == []
            assert [r.split(":")[0] for r in refusals(logs)] == ["authorization"]

    run(test)


def test_only_members_of_the_epoch_get_kms_root_partials() -> None:
    """The KMS root lives only in committee TEEs: a registered, attested node that deals in the
    epoch but is not its member, or is outside it, gets nothing."""

    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            c = await net.add(attested_node())
            d = await net.add(attested_node(), roots=False)
            net.publish(a, b, c, d)
            # c deals in epoch 7 but does not stay a member (a node leaving by reshare)
            net.roster = EpochRoster(
                EPOCH, dealers=(b.address, a.address, c.address), members=(a.address, b.address)
            )
            for server in net.servers.values():
                await server.refresh()
            requester = b"\x0e" * 48
            partial = await net.clients[b.address].kms_root_partial(a.record(), 3, EPOCH, requester)
            assert (partial.generation, partial.epoch, partial.member, partial.y) == (
                3,
                EPOCH,
                1,
                requester,
            )
            assert net.inboxes[a.address].roots == [(3, EPOCH, requester)]
            with capture_logs() as logs:
                with pytest.raises(
                    Unauthenticated, match=r"is not a member of epoch 7: only the committee"
                ):
                    await net.clients[c.address].kms_root_partial(a.record(), 3, EPOCH, requester)
                with pytest.raises(NotReady, match=r"epoch 8 is not known to this node"):
                    await net.clients[b.address].kms_root_partial(a.record(), 3, 8, requester)
            assert net.inboxes[a.address].roots == [(3, EPOCH, requester)]
            # UNAVAILABLE is retried until the deadline: the unknown epoch is refused each time
            assert {r.split(":")[0] for r in refusals(logs)} == {
                "authorization",
                "epoch 8 is not known to this node (yet)",
            }
            net.roster = EpochRoster(EPOCH, dealers=(), members=(a.address, d.address))
            with pytest.raises(NotReady, match="does not serve KMS root partials"):
                await net.clients[a.address].kms_root_partial(d.record(), 3, EPOCH, requester)

    run(test)


def test_unknown_epoch_is_unavailable_so_the_caller_retries() -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            with pytest.raises(
                NotReady, match=r"UNAVAILABLE: peer refused: epoch 8 is not known to this node"
            ):
                await net.clients[b.address].epoch_status(a.record(), 8)

    run(test)


def test_view_change_is_enforced_before_the_bundle_refreshes() -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            client = net.clients[b.address]
            # governance turns simulators off: A's gate refuses at once, its bundle later
            net.views[a.address] = make_view(
                {n.address: n.record() for n in (a, b)}, simulator_allowed=False
            )
            with capture_logs() as logs:
                with pytest.raises(
                    Unauthenticated,
                    match=r"evidence: simulator quote refused: governance has simulatorAllowed = "
                    r"false",
                ):
                    await client.epoch_status(a.record(), EPOCH)
                # B is deregistered: its key is no longer any approved node's
                net.views[a.address] = make_view({a.address: a.record()})
                with pytest.raises(
                    Unauthenticated,
                    match=r"registry: TLS key [0-9a-f]{64} is not the key of any approved node",
                ):
                    await client.epoch_status(a.record(), EPOCH)
                await net.servers[a.address].refresh()
                # the bundle only guards new handshakes: B's open connection meets the gate
                with pytest.raises(Unauthenticated, match=r"registry: TLS key"):
                    await client.epoch_status(a.record(), EPOCH)
            assert net.inboxes[a.address].calls == []
            assert len(refusals(logs)) == 3  # deregistered: dropped from the bundle silently
            assert net.servers[a.address].bundle.trusted() == {}
            await client.close()  # a new connection fails the handshake
            unavailable = rf"to peer 0x{a.address.hex()} at {a.endpoint} failed: UNAVAILABLE"
            with pytest.raises(NotReady, match=unavailable):
                await client.epoch_status(a.record(), EPOCH)

    run(test)


# -- refusals at the handshake (the certificate never enters the bundle; the reason is logged) ----


async def _refused_at_handshake(
    net: Net, a: PeerNode, bad: PeerNode, reason: str, *, simulator_allowed: bool = True
) -> None:
    net.roster = EpochRoster(EPOCH, dealers=(bad.address,), members=(a.address,))
    net.publish(a, bad, simulator_allowed=simulator_allowed)
    # the bad node's own client trusts A (its view allows simulators), so only A can refuse
    net.views[bad.address] = make_view({n.address: n.record() for n in (a, bad)})
    with capture_logs() as logs:
        await net.servers[a.address].refresh()
        await net.servers[a.address].refresh()  # the same reason is logged once, not per retry
    assert bad.address not in net.servers[a.address].bundle.trusted()
    entries = [e for e in logs if e["event"] == "peer_refused"]
    assert len(entries) == 1
    assert entries[0]["peer"] == f"0x{bad.address.hex()}" and entries[0]["stage"] == "trust-bundle"
    assert reason in entries[0]["reason"]
    with pytest.raises(NotReady, match="UNAVAILABLE"):
        await net.clients[bad.address].epoch_status(a.record(), EPOCH)
    assert net.inboxes[a.address].calls == []


def test_self_signed_certificate_without_evidence_is_refused() -> None:
    async def test() -> None:
        async with network() as net:
            a = await net.add(attested_node(), member=1)
            identity = NodeIdentity.generate()
            bad = PeerNode(
                identity, self_signed(identity.tls_key), key_pem_of(identity), identity.tls_key_hash
            )
            await net.add(bad)
            await _refused_at_handshake(net, a, bad, "evidence: certificate carries no attestation")

    run(test)


def test_evidence_bound_to_another_key_is_refused() -> None:
    async def test() -> None:
        async with network() as net:
            a = await net.add(attested_node(), member=1)
            other = NodeIdentity.generate()
            bad = await net.add(
                attested_node(OtherKeyProvider(attested_provider(), other.tls_spki_der))
            )
            await _refused_at_handshake(net, a, bad, "step 4 (report_data binding)")

    run(test)


def test_certificate_whose_key_is_not_registered_is_refused() -> None:
    async def test() -> None:
        async with network() as net:
            a = await net.add(attested_node(), member=1)
            bad = attested_node()
            bad.registered_key_hash = NodeIdentity.generate().tls_key_hash  # chain has another key
            await net.add(bad)
            await _refused_at_handshake(net, a, bad, "is not the key of any approved node")

    run(test)


def test_simulator_evidence_is_refused_where_simulators_are_not_allowed() -> None:
    async def test() -> None:
        async with network() as net:
            a = await net.add(attested_node(), member=1)
            bad = await net.add(attested_node())
            await _refused_at_handshake(
                net, a, bad, "simulatorAllowed = false", simulator_allowed=False
            )

    run(test)


def test_caller_without_a_client_certificate_or_unregistered_fails_the_handshake(
    capfd: pytest.CaptureFixture[str],
) -> None:
    async def grpc_core_log_after(call: Awaitable[object], reason: str) -> None:
        """Run `call`; the refusal never reaches Python, so find `reason` in grpc's TLS log."""
        capfd.readouterr()
        await call
        if os.environ.get("GRPC_VERBOSITY", "").upper() in ("ERROR", "NONE"):
            return  # grpc was told not to log handshake failures
        seen = ""
        for _ in range(20):
            seen += capfd.readouterr().err
            if reason in seen:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"grpc logged no {reason}: {seen!r}")

    async def test() -> None:
        async with network() as net:
            a, _ = await two_nodes(net)
            stranger = await net.add(attested_node())  # attested, but not registered
            net.views[stranger.address] = net.views[a.address]
            await net.clients[stranger.address]._stub(a.record())  # fetch and pin A first
            credentials = grpc.ssl_channel_credentials(root_certificates=a.cert_pem)
            options = [("grpc.ssl_target_name_override", PEER_TLS_NAME)]
            request = peer_pb2.EpochStatusRequest(epoch=EPOCH)

            async def without_certificate() -> None:
                async with aio.secure_channel(a.endpoint, credentials, options=options) as ch:
                    stub = peer_pb2_grpc.PeerStub(ch)  # type: ignore[no-untyped-call]
                    with pytest.raises(aio.AioRpcError) as info:
                        await stub.EpochStatus(request, timeout=2)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE

            async def unregistered() -> None:
                client = net.clients[stranger.address]
                with pytest.raises(NotReady, match="UNAVAILABLE"):
                    await client.epoch_status(a.record(), EPOCH)

            await grpc_core_log_after(without_certificate(), "PEER_DID_NOT_RETURN_A_CERTIFICATE")
            await grpc_core_log_after(unregistered(), "CERTIFICATE_VERIFY_FAILED")
            assert net.inboxes[a.address].calls == []

    run(test)


def test_fetch_presenting_a_trusted_certificate_is_a_clean_handshake(
    capfd: pytest.CaptureFixture[str],
) -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            capfd.readouterr()
            trusted = fetch_context(b.cert_pem, b.key_pem)
            started = time.monotonic()
            pem = await fetch_peer_certificate(a.endpoint, timeout=2, context=trusted)
            assert time.monotonic() - started < 1.0  # regression: no wait for close_notify
            assert x509.load_pem_x509_certificate(pem) == x509.load_pem_x509_certificate(a.cert_pem)
            await asyncio.sleep(0.2)
            assert "Handshake failed" not in capfd.readouterr().err
            await fetch_peer_certificate(a.endpoint, timeout=2)  # no client certificate
            await asyncio.sleep(0.2)
            if os.environ.get("GRPC_VERBOSITY", "").upper() not in ("ERROR", "NONE"):
                assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in capfd.readouterr().err

    run(test)


# -- the client side --------------------------------------------------------------------------


def test_client_refuses_a_server_whose_certificate_does_not_verify() -> None:
    async def test() -> None:
        async with network() as net:
            a = await net.add(attested_node(), member=1)
            identity = NodeIdentity.generate()
            bad = await net.add(
                PeerNode(
                    identity,
                    self_signed(identity.tls_key),
                    key_pem_of(identity),
                    identity.tls_key_hash,
                )
            )
            net.publish(a, bad)
            started = time.monotonic()
            refused = rf"peer 0x{bad.address.hex()} at {bad.endpoint}: server certificate refused: "
            refused += "evidence: certificate carries no attestation"
            with capture_logs() as logs, pytest.raises(Unauthenticated, match=refused):
                await net.clients[a.address].epoch_status(bad.record(), EPOCH)
            assert time.monotonic() - started < 1.0  # final, not retried
            assert net.inboxes[bad.address].calls == []
            assert [e["stage"] for e in logs if e["event"] == "peer_refused"] == [
                "server-certificate"
            ]
            # an endpoint that serves another registered node's certificate is refused too
            impostor = bad.record().__class__(
                **{**_fields(bad.record()), "peer_endpoint": a.endpoint}
            )
            with pytest.raises(
                Unauthenticated, match=rf"serves the certificate of 0x{a.address.hex()}"
            ):
                await net.clients[a.address].epoch_status(impostor, EPOCH)

    run(test)


def test_client_rechecks_a_pinned_server_when_the_view_changes() -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            client = net.clients[b.address]
            assert await client.epoch_status(a.record(), EPOCH) == STATUS
            # B learns that A's measurement is no longer allowed: B stops talking to A
            net.allow.allowed.clear()
            net.views[b.address] = make_view({n.address: n.record() for n in (a, b)})
            with pytest.raises(Unauthenticated, match=r"server certificate refused: measurement"):
                await client.epoch_status(a.record(), EPOCH)
            assert len(net.inboxes[a.address].calls) == 1

    run(test)


def test_unreachable_peer_gives_up_at_the_deadline_naming_peer_and_endpoint() -> None:
    async def test() -> None:
        async with network() as net:
            a, b = await two_nodes(net)
            assert net.servers[b.address].reachable_count() == 0  # B never refreshed
            await net.servers[b.address].refresh()
            assert net.servers[b.address].reachable_count() == 1
            await net.servers[a.address].stop(None)
            await net.servers[b.address].refresh()
            assert net.servers[b.address].reachable_count() == 0
            assert a.address in net.servers[b.address].bundle.trusted()  # kept until it is back
            started = time.monotonic()
            gave_up = rf"to peer 0x{a.address.hex()} at {a.endpoint} failed: .*cannot fetch the"
            with capture_logs() as logs, pytest.raises(NotReady, match=gave_up + " certificate"):
                await net.clients[b.address].epoch_status(a.record(), EPOCH)
            assert 0.3 < time.monotonic() - started < 3.0
            assert sum(e["event"] == "peer_call_retry" for e in logs) >= 2

    run(test)


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}
