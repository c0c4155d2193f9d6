"""The proxy over real sockets on 127.0.0.1: passthrough, termination (TLS again to the backend,
pinned to its registered key), refusals, balancing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from gateway._selfsigned import Issued, ThrowawayCA
from gateway.backend_tls import spki_sha256
from gateway.limits import ProxyLimits
from gateway.proxy import REFUSALS, Proxy
from gateway.table import Registration, RouteTable
from tests.gateway.tlsfixtures import (
    BASE,
    Backend,
    MemoryTls,
    MemoryTlsClient,
    Sink,
    backend_context,
    client_hello,
    closed_without_reply,
    echo_roundtrip,
    resplit,
    tls_connect,
)

T = TypeVar("T")
APP = bytes.fromhex("a1" * 20)
CA = ThrowawayCA.create()
GATEWAY_CERT = CA.issue("*." + BASE)
APP_CERT = CA.issue("*." + BASE)  # same names, its own key: the fingerprint tells them apart
APP_KEY = spki_sha256(APP_CERT.cert_pem)  # what the app registers
APP_TLS = backend_context(APP_CERT)


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 15)

    return asyncio.run(bounded())


@dataclass
class Gateway:
    proxy: Proxy
    port: int
    table: RouteTable

    def register(
        self, instance: int, host: str = "127.0.0.1", ttl: float = 60.0, key: bytes = APP_KEY
    ) -> bytes:
        instance_id = bytes([instance]) * 20
        reg = Registration(APP, instance_id, host, time.time() + ttl, key)
        self.table.upsert(reg)
        return instance_id

    def refusals(self) -> dict[str, int]:
        return {k: v for k, v in self.proxy.stats.items() if k.startswith("refused_") and v}


@contextlib.asynccontextmanager
async def gateway(
    *, certificate: Issued | None = GATEWAY_CERT, **options: Any
) -> AsyncIterator[Gateway]:
    table = RouteTable()
    proxy = Proxy(table, BASE, limits=ProxyLimits(**options))
    port = await proxy.start("127.0.0.1", 0)
    if certificate is not None:
        proxy.set_certificate(certificate.chain_pem, certificate.key_pem)
    try:
        yield Gateway(proxy, port, table)
    finally:
        await proxy.close()
        assert proxy.stats["active"] == 0


def name(target: bytes, port: int, *, passthrough: bool, instance: bool = False) -> str:
    prefix = "i-" if instance else ""
    return f"{prefix}{target.hex()}-{port}{'s' if passthrough else ''}.{BASE}"


def test_passthrough_reaches_the_app_with_its_own_certificate() -> None:
    async def scenario() -> None:
        backend = await Backend("127.0.0.1", backend_context(APP_CERT)).start()
        async with gateway() as gw:
            gw.register(1)
            reader, writer, seen = await tls_connect(
                gw.port, name(APP, backend.port, passthrough=True), CA
            )
            assert seen == APP_CERT.sha256
            data = os.urandom(3 << 20)
            assert await echo_roundtrip(reader, writer, data) == data
            writer.close()
            assert gw.proxy.stats["passthrough"] == 1
            assert backend.received[0] == data  # decrypted by the app itself

    run(scenario())


def test_termination_presents_the_gateway_certificate_and_re_encrypts_to_the_app() -> None:
    async def scenario() -> None:
        backend = await Backend("127.0.0.1", APP_TLS).start()
        async with gateway() as gw:
            gw.register(1)
            reader, writer, seen = await tls_connect(
                gw.port, name(APP, backend.port, passthrough=False), CA
            )
            assert seen == GATEWAY_CERT.sha256
            data = os.urandom(3 << 20)
            assert await echo_roundtrip(reader, writer, data) == data
            writer.close()
            assert gw.proxy.stats["terminated"] == 1
            await asyncio.sleep(0.05)
            assert bytes(backend.received[0]) == data  # decrypted by the app's own TLS

    run(scenario())


def test_passthrough_half_close_keeps_the_other_direction_open() -> None:
    async def scenario() -> None:
        sink = await Sink().start()
        async with gateway() as gw:
            gw.register(1)
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            hello = client_hello(name(APP, sink.port, passthrough=True))
            writer.write(hello + b"x" * 100_000)
            writer.write_eof()  # the sink answers only after this EOF reaches it
            assert await reader.read() == b"got %d" % (len(hello) + 100_000)
            assert sink.received == [hello + b"x" * 100_000]

    run(scenario())


def test_a_hello_in_several_records_and_reads_is_forwarded_byte_for_byte() -> None:
    async def scenario() -> None:
        sink = await Sink().start()
        async with gateway() as gw:
            gw.register(1)
            hello = resplit(client_hello(name(APP, sink.port, passthrough=True)), [7, 100, 101])
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            for start, end in itertools.pairwise([0, 3, 9, 120, len(hello)]):
                writer.write(hello[start:end])
                await writer.drain()
                await asyncio.sleep(0.02)
            writer.write_eof()
            assert await reader.read() == b"got %d" % len(hello)
            assert sink.received == [hello]

    run(scenario())


def test_termination_half_close_both_ways() -> None:
    async def scenario() -> None:
        sink = await Sink(tls=APP_TLS).start()
        async with gateway() as gw:
            gw.register(1)
            client = MemoryTlsClient(
                await asyncio.open_connection("127.0.0.1", gw.port),
                CA,
                name(APP, sink.port, passthrough=False),
            )
            assert await client.handshake() == GATEWAY_CERT.sha256
            await client.send(b"y" * 50_000)
            await client.close_write()  # close_notify + FIN; the reply still comes back
            assert await client.read_until_eof() == b"got 50000"
            assert sink.received == [b"y" * 50_000]

    run(scenario())


def test_data_sent_with_the_client_finished_is_forwarded_at_once() -> None:
    """Regression: the relay used to wait for more bytes before decrypting what the handshake
    had left in the TLS object, so a client that spoke first (and then waited) hung."""

    async def scenario() -> None:
        backend = await Backend("127.0.0.1", APP_TLS).start()
        async with gateway() as gw:
            gw.register(1)
            client = MemoryTlsClient(
                await asyncio.open_connection("127.0.0.1", gw.port),
                CA,
                name(APP, backend.port, passthrough=False),
            )
            await client.handshake(first_data=b"ping")
            reply = client.read_until_eof()
            for _ in range(100):
                if backend.received and backend.received[0] == b"ping":
                    break
                await asyncio.sleep(0.01)
            assert backend.received == [bytearray(b"ping")]
            await client.close_write()
            assert await reply == b"ping"

    run(scenario())


def test_a_client_eof_without_close_notify_reaches_the_backend_as_eof() -> None:
    async def scenario() -> None:
        sink = await Sink(tls=APP_TLS).start()
        async with gateway() as gw:
            gw.register(1)
            client = MemoryTlsClient(
                await asyncio.open_connection("127.0.0.1", gw.port),
                CA,
                name(APP, sink.port, passthrough=False),
            )
            await client.handshake()
            await client.send(b"abrupt")
            client.writer.write_eof()  # FIN with no close_notify before it
            assert await client.read_until_eof() == b"got 6"
            assert sink.received == [b"abrupt"]

    run(scenario())


def test_a_reset_client_ends_both_directions() -> None:
    async def scenario() -> None:
        backend = await Backend("127.0.0.1", backend_context(APP_CERT)).start()
        async with gateway() as gw:
            gw.register(1)
            reader, writer, _ = await tls_connect(
                gw.port, name(APP, backend.port, passthrough=True), CA
            )
            assert await echo_roundtrip(reader, writer, b"x") == b"x"
            writer.transport.abort()  # RST, not FIN
            for _ in range(100):
                if gw.proxy.stats["active"] == 0:
                    break
                await asyncio.sleep(0.02)
            assert gw.proxy.stats["active"] == 0
            assert gw.refusals() == {}

    run(scenario())


def test_the_backend_closing_first_leaves_the_client_direction_open() -> None:
    received: list[bytes] = []

    async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = MemoryTls((reader, writer), APP_TLS, server_side=True)
        await tls.handshake()
        await tls.send(b"hello then EOF")
        await tls.close_write()
        received.append(await tls.read_until_eof())
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(greeter, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with gateway() as gw, server:
            gw.register(1)
            client = MemoryTlsClient(
                await asyncio.open_connection("127.0.0.1", gw.port),
                CA,
                name(APP, port, passthrough=False),
            )
            await client.handshake()
            assert await client.read_until_eof() == b"hello then EOF"
            await client.send(b"still talking")  # after the gateway's close_notify
            await client.close_write()
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.02)
            assert received == [b"still talking"]

    run(scenario())


@pytest.mark.parametrize(
    ("server_name", "reason", "detail"),
    [
        (None, "no_sni", "the ClientHello has no server_name"),
        (f"{APP.hex()}-80.other.test", "unknown_name", "is not under 'gw.example.test'"),
        (f"x.{APP.hex()}-80.{BASE}", "unknown_name", "has extra labels"),
        (f"{'cd' * 20}-80.{BASE}", "no_backend", f"no live registration for app {'cd' * 20}"),
        (f"{APP.hex()}-80.{BASE}", "no_backend", f"no live registration for app {APP.hex()}"),
        (f"i-{'01' * 20}-80.{BASE}", "no_backend", f"registration for instance {'01' * 20}"),
        (f"i-{APP.hex()}-80.{BASE}", "no_backend", f"registration for instance {APP.hex()}"),
    ],
)
def test_unroutable_hellos_are_closed_with_a_reason(
    server_name: str | None, reason: str, detail: str
) -> None:
    async def scenario() -> None:
        async with gateway() as gw:
            gw.register(1, ttl=-1.0)  # expired: never routed
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            with capture_logs() as logs:
                writer.write(client_hello(server_name))
                assert await closed_without_reply(reader)
            assert gw.refusals() == {f"refused_{reason}": 1}
            refused = [e for e in logs if e["event"] == "connection refused"]
            assert refused[0]["reason"] == reason
            assert detail in refused[0]["detail"]

    run(scenario())


@pytest.mark.parametrize(
    ("data", "reason", "detail"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "hello_malformed", "content type 0x47 at offset 0"),
        (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "hello_malformed", "is not ClientHello"),
        (b"\x16\x03\x01\x02\x00\x01", "hello_incomplete", "closed after 6 bytes"),
        (b"", "hello_incomplete", "closed after 0 bytes"),
    ],
)
def test_garbage_is_closed_with_a_reason(data: bytes, reason: str, detail: str) -> None:
    async def scenario() -> None:
        async with gateway() as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            with capture_logs() as logs:
                writer.write(data)
                writer.write_eof()
                assert await closed_without_reply(reader)
            assert gw.refusals() == {f"refused_{reason}": 1}
            assert detail in next(e["detail"] for e in logs if e["event"] == "connection refused")

    run(scenario())


def test_a_silent_client_times_out() -> None:
    async def scenario() -> None:
        async with gateway(hello_timeout=0.2) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(client_hello("a.example")[:10])
            assert await closed_without_reply(reader)
            assert gw.refusals() == {"refused_hello_timeout": 1}

    run(scenario())


def test_termination_before_a_certificate_is_refused_and_passthrough_still_works() -> None:
    async def scenario() -> None:
        backend = await Backend("127.0.0.1", backend_context(APP_CERT)).start()
        async with gateway(certificate=None) as gw:
            gw.register(1)
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(client_hello(name(APP, backend.port, passthrough=False)))
            assert await closed_without_reply(reader)
            assert gw.refusals() == {"refused_no_certificate": 1}
            _, writer, seen = await tls_connect(
                gw.port, name(APP, backend.port, passthrough=True), CA
            )
            assert seen == APP_CERT.sha256
            writer.close()

    run(scenario())


def test_the_certificate_can_be_swapped_and_a_bad_one_changes_nothing() -> None:
    async def scenario() -> None:
        backend = await Backend("127.0.0.1", APP_TLS).start()
        renewed = CA.issue("*." + BASE)
        async with gateway() as gw:
            gw.register(1)
            target = name(APP, backend.port, passthrough=False)
            with pytest.raises(ValueError, match="does not belong to the first certificate"):
                gw.proxy.set_certificate(renewed.chain_pem, GATEWAY_CERT.key_pem)
            with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
                gw.proxy.set_certificate(renewed.chain_pem, b"junk")
            with pytest.raises(ValueError, match="not PEM certificates"):
                gw.proxy.set_certificate(b"junk", renewed.key_pem)
            expired = CA.issue("*." + BASE, expired=True)
            with pytest.raises(ValueError, match="the certificate expired at"):
                gw.proxy.set_certificate(expired.chain_pem, expired.key_pem)
            assert (await tls_connect(gw.port, target, CA))[2] == GATEWAY_CERT.sha256
            gw.proxy.set_certificate(renewed.chain_pem, renewed.key_pem)
            assert (await tls_connect(gw.port, target, CA))[2] == renewed.sha256

    run(scenario())


def test_a_client_that_rejects_the_certificate_is_counted() -> None:
    async def scenario() -> None:
        backend = await Backend("127.0.0.1", APP_TLS).start()
        async with gateway() as gw:
            gw.register(1)
            with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
                await tls_connect(
                    gw.port, name(APP, backend.port, passthrough=False), ThrowawayCA.create()
                )
            for _ in range(50):
                if gw.refusals():
                    break
                await asyncio.sleep(0.02)
            assert gw.refusals() == {"refused_tls_handshake": 1}

    run(scenario())


def test_instances_of_an_app_take_turns() -> None:
    async def scenario() -> None:
        first = await Backend("127.0.0.1", APP_TLS).start()
        second = await Backend("127.0.0.2", APP_TLS).start(first.port)
        async with gateway() as gw:
            gw.register(1, "127.0.0.1")
            gw.register(2, "127.0.0.2")
            for i in range(4):
                reader, writer, _ = await tls_connect(
                    gw.port, name(APP, first.port, passthrough=False), CA
                )
                assert await echo_roundtrip(reader, writer, b"%d" % i) == b"%d" % i
                writer.close()
            assert sorted(bytes(r) for r in first.received) == [b"0", b"2"]
            assert sorted(bytes(r) for r in second.received) == [b"1", b"3"]

    run(scenario())


def test_an_instance_id_reaches_that_instance() -> None:
    async def scenario() -> None:
        first = await Backend("127.0.0.1", APP_TLS).start()
        second = await Backend("127.0.0.2", APP_TLS).start(first.port)
        async with gateway() as gw:
            gw.register(1, "127.0.0.1")
            chosen = gw.register(2, "127.0.0.2")
            for _ in range(3):
                reader, writer, _ = await tls_connect(
                    gw.port, name(chosen, first.port, passthrough=False, instance=True), CA
                )
                assert await echo_roundtrip(reader, writer, b"z") == b"z"
                writer.close()
            assert (len(first.received), len(second.received)) == (0, 3)

    run(scenario())


def test_a_killed_backend_is_skipped() -> None:
    async def scenario() -> None:
        first = await Backend("127.0.0.1", APP_TLS).start()
        second = await Backend("127.0.0.2", APP_TLS).start(first.port)
        async with gateway() as gw:
            gw.register(1, "127.0.0.1")
            dead = gw.register(2, "127.0.0.2")
            target = name(APP, first.port, passthrough=False)
            reader, writer, _ = await tls_connect(gw.port, target, CA)
            assert await echo_roundtrip(reader, writer, b"before") == b"before"
            await second.kill()
            with capture_logs() as logs:
                for _ in range(4):
                    reader, writer, _ = await tls_connect(gw.port, target, CA)
                    assert await echo_roundtrip(reader, writer, b"after") == b"after"
                    writer.close()
            assert len(first.received) == 5
            assert gw.proxy.stats["backend_connect_failures"] == 1  # then it goes last
            assert gw.table.candidates(APP.hex(), instance=False)[-1].instance_id == dead
            warning = next(e for e in logs if e["event"] == "backend unreachable")
            assert warning["instance"] == dead.hex()
            assert warning["backend"] == f"127.0.0.2:{first.port}"

    run(scenario())


def test_every_backend_down_is_refused() -> None:
    async def scenario() -> None:
        backend = await Backend("127.0.0.1", APP_TLS).start()
        await backend.kill()
        async with gateway() as gw:
            gw.register(1)
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(client_hello(name(APP, backend.port, passthrough=True)))
            assert await closed_without_reply(reader)
            assert gw.refusals() == {"refused_backend_unreachable": 1}

    run(scenario())


def test_close_ends_open_connections() -> None:
    async def scenario() -> None:
        backend = await Backend("127.0.0.1", APP_TLS).start()
        async with gateway() as gw:
            gw.register(1)
            reader, _, _ = await tls_connect(
                gw.port, name(APP, backend.port, passthrough=False), CA
            )
            idle, _ = await asyncio.open_connection("127.0.0.1", gw.port)  # no hello yet
            for _ in range(100):
                if gw.proxy.stats["active"] == 2:
                    break
                await asyncio.sleep(0.02)
            assert gw.proxy.stats["active"] == 2
            await gw.proxy.close()
            assert gw.proxy.stats["active"] == 0
            assert await closed_without_reply(reader)
            assert await closed_without_reply(idle)
        ours = [t for t in asyncio.all_tasks() if "gateway" in repr(t.get_coro())]
        assert ours == []

    run(scenario())


def test_every_refusal_has_a_counter() -> None:
    stats = Proxy(RouteTable(), BASE).stats
    assert {f"refused_{r}" for r in REFUSALS} <= set(stats)
    assert set(stats.values()) == {0}


def test_the_bench_runs_every_path_and_prints_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.bench", "--connections", "3", "--megabytes", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc = json.loads(result.stdout)
    assert (doc["connections"], doc["megabytes"]) == (3, 1)
    assert set(doc["paths"]) == {"direct", "passthrough", "termination"}
    assert doc["paths"]["direct"]["added_p50_ms"] == 0
    for numbers in doc["paths"].values():
        assert 0 < numbers["p50_ms"] <= numbers["p99_ms"]
        assert numbers["upload_mb_s"] > 0 and numbers["download_mb_s"] > 0
    assert "termination: 1 MiB up and down" in result.stderr
