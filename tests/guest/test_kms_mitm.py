"""A man in the middle of the Kms channel cannot get an honest member named as a liar.

Member 2 of a 3-of-4 committee (fake nodes over real TLS on 127.0.0.1, `test_kms_client`)
is reached through an attacker at its registered endpoint, who alters the partials it
returns or the bytes on the wire. The client pins each member's registered TLS key, so the
attacker's answer never reaches the proof check: member 2 fails as "unavailable" or
"unauthenticated" (a channel failure, retried at the next request), never "proof invalid".
Without the pin (plaintext Kms port) the same attacker got member 2 named as a liar.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from guest.kms_channel import ChannelRefused, KmsChannels, fetch_pinned, open_channel
from guest.kms_client import AppKeyRequest, Committee, DerivationError, KmsClient
from mpc import G1, KeyRequest
from protos.tkms.v1 import kms_pb2, kms_pb2_grpc
from tests.guest.test_kms_client import (
    APP,
    FakeNode,
    TlsIdentity,
    committee,
    no_evidence,
    serve,
    start,
)
from tests.mpc.dealer import DealtKeys, deal


class TamperingProxy(kms_pb2_grpc.KmsServicer):
    """Forwards DerivePartial to the real member (over its pinned channel) and shifts Z."""

    def __init__(self, endpoint: str, tls_key_hash: bytes) -> None:
        self._target = (endpoint, tls_key_hash)
        self.forwarded = 0

    async def DerivePartial(
        self,
        request: kms_pb2.DerivePartialRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> kms_pb2.DerivePartialResponse:
        async with await open_channel(*self._target) as channel:
            stub = kms_pb2_grpc.KmsStub(channel)  # type: ignore[no-untyped-call]
            reply: kms_pb2.DerivePartialResponse = await stub.DerivePartial(request, timeout=5)
        for p in reply.partials:
            p.z = (G1.from_bytes(p.z) + G1.generator()).to_bytes()
        self.forwarded += 1
        return reply


class TcpProxy:
    """Relays TCP to `target`; once `armed`, flips the last byte of every chunk it relays
    back to the client (TLS records of the answers, or of a later handshake)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.armed = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, tamper: bool) -> None:
            with contextlib.suppress(OSError):
                while chunk := await src.read(65536):
                    if tamper and self.armed:
                        chunk = chunk[:-1] + bytes([chunk[-1] ^ 0x01])
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        tasks = [
            asyncio.ensure_future(pipe(reader, up_writer, False)),
            asyncio.ensure_future(pipe(up_reader, writer, True)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
def keys() -> DealtKeys:
    return deal(4, 3, seed=11)


def behind(c: Committee, index: int, port: int) -> Committee:
    """`c` with member `index` reached at 127.0.0.1:port (its registered key unchanged)."""
    members = tuple(
        dataclasses.replace(m, endpoint=f"127.0.0.1:{port}") if m.index == index else m
        for m in c.members
    )
    return dataclasses.replace(c, members=members)


def only(c: Committee, indices: set[int]) -> Committee:
    return dataclasses.replace(c, members=tuple(m for m in c.members if m.index in indices))


async def derive(c: Committee, purpose: bytes) -> list[G1]:
    client = KmsClient(c, no_evidence, timeout=3)
    try:
        return (await client.derive([AppKeyRequest(APP, purpose)])).sigmas
    finally:
        await client.close()


def expected(keys: DealtKeys, purpose: bytes) -> G1:
    return KeyRequest.app_key(APP, purpose).point() * keys.secret_poly.secret


@asynccontextmanager
async def fake_network(keys: DealtKeys) -> AsyncIterator[tuple[Committee, list[int]]]:
    nodes = [FakeNode(keys, i) for i in range(1, 5)]
    servers, ports = await start(nodes)
    try:
        yield committee(keys, nodes, ports), ports
    finally:
        for server in servers:
            await server.stop(None)


@pytest.mark.parametrize(
    ("attacker", "reason"),
    [
        ("plaintext", r"unavailable: cannot fetch the certificate of 127\.0\.0\.1:\d+"),
        ("own certificate", r"unauthenticated: 127\.0\.0\.1:\d+ does not serve the member's"),
        ("member 3's endpoint", r"unauthenticated: .* is for TLS key [0-9a-f]{64}, not the"),
    ],
)
def test_a_tampering_man_in_the_middle_is_a_channel_failure_not_a_liar(
    keys: DealtKeys, attacker: str, reason: str
) -> None:
    async def go() -> None:
        async with fake_network(keys) as (honest, ports):
            member2 = honest.members[1]
            proxy = TamperingProxy(member2.endpoint, member2.tls_key_hash)
            if attacker == "member 3's endpoint":
                server, port = None, ports[2]  # a real member's TLS, but not member 2's key
            else:
                tls = TlsIdentity.generate() if attacker == "own certificate" else None
                server, port = await serve(proxy, tls)
            try:
                mitm = behind(honest, 2, port)
                with pytest.raises(DerivationError) as err:
                    await derive(only(mitm, {1, 2, 3}), b"disk")
                assert set(err.value.failures) == {2}
                assert re.match(reason, err.value.failures[2]), err.value.failures[2]
                assert "proof invalid" not in str(err.value)
                assert proxy.forwarded == 0  # nothing the attacker altered was even read
                # the other members still give the right key
                assert await derive(mitm, b"disk") == [expected(keys, b"disk")]
            finally:
                if server is not None:
                    await server.stop(None)

    asyncio.run(go())


def test_flipped_bytes_on_the_wire_are_a_channel_failure_not_a_liar(keys: DealtKeys) -> None:
    async def go() -> None:
        async with fake_network(keys) as (honest, ports):
            relay = TcpProxy(ports[1])
            mitm = only(behind(honest, 2, await relay.start()), {1, 2, 3})
            client = KmsClient(mitm, no_evidence, timeout=3)
            try:
                # untouched, the relay is invisible: member 2 answers through it
                result = await client.derive([AppKeyRequest(APP, b"a")])
                assert result.sigmas == [expected(keys, b"a")] and 2 in result.answered
                relay.armed = True  # now every answer (and handshake) it relays is altered
                with pytest.raises(DerivationError) as err:
                    await client.derive([AppKeyRequest(APP, b"b")])
                assert set(err.value.failures) == {2}
                # gRPC reports the broken record as UNKNOWN "TSI_DATA_CORRUPTED" (or, for a
                # broken handshake, UNAVAILABLE): the transport's failure, not an answer
                assert re.match(r"(unknown|unavailable): ", err.value.failures[2]), err.value
                assert "proof invalid" not in str(err.value)
            finally:
                await client.close()
                await relay.stop()

    asyncio.run(go())


def test_pin_refuses_another_key_and_names_both(keys: DealtKeys) -> None:
    async def go() -> None:
        async with fake_network(keys) as (honest, _):
            one, two = honest.members[0], honest.members[1]
            with pytest.raises(ChannelRefused) as err:
                await fetch_pinned(one.endpoint, two.tls_key_hash, timeout=2)
            assert not err.value.transient
            assert one.tls_key_hash.hex() in str(err.value)
            assert two.tls_key_hash.hex() in str(err.value)
            pem = await fetch_pinned(one.endpoint, one.tls_key_hash, timeout=2)
            assert pem.startswith(b"-----BEGIN CERTIFICATE-----")

    asyncio.run(go())


def test_a_restarted_member_with_a_new_certificate_for_its_key_is_used_again(
    keys: DealtKeys,
) -> None:
    """A node makes a new certificate for its sealed key at every start: the pin is the key,
    so after UNAVAILABLE the client fetches and pins the new certificate."""

    async def go() -> None:
        nodes = [FakeNode(keys, i) for i in range(1, 4)]
        servers, ports = await start(nodes)
        c = Committee(
            network=committee(keys, nodes, ports).network,
            threshold=3,
            members=committee(keys, nodes, ports).members,
            group_key=keys.group_key_g2,
        )
        client = KmsClient(c, no_evidence, timeout=5)
        try:
            assert (await client.derive([AppKeyRequest(APP, b"x")])).sigmas == [
                expected(keys, b"x")
            ]
            await servers[1].stop(None)
            old = nodes[1].tls
            renewed = old.reissued()
            assert renewed.cert_pem != old.cert_pem
            servers[1], _ = await serve(nodes[1], renewed, port=ports[1])
            result = await client.derive([AppKeyRequest(APP, b"y")])
            assert result.sigmas == [expected(keys, b"y")]
        finally:
            await client.close()
            for server in servers:
                await server.stop(None)

    asyncio.run(go())


def test_channels_are_shared_and_closed(keys: DealtKeys) -> None:
    async def go() -> None:
        async with fake_network(keys) as (honest, _):
            member = honest.members[0]
            channels = KmsChannels()
            first, second = await asyncio.gather(
                channels.get(member.endpoint, member.tls_key_hash),
                channels.get(member.endpoint, member.tls_key_hash),
            )
            assert first is second  # one fetch, one channel for concurrent callers
            channels.retire(first)
            third = await channels.get(member.endpoint, member.tls_key_hash)
            assert third is not first
            await channels.close()
            with pytest.raises(grpc.aio.UsageError, match="closed"):
                await third.stub.GetMeta(kms_pb2.GetMetaRequest(), timeout=1)

    asyncio.run(go())
