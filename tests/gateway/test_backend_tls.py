"""Termination's second hop: the gateway speaks TLS to the backend and sends the client's
plaintext only to the key the backend registered (Security III G-02). Real sockets."""

from __future__ import annotations

import asyncio
import os
import ssl

import pytest

from gateway.backend_tls import BackendKeyMismatch, check_pinned_key, spki_sha256
from tests.gateway.test_proxy import APP, APP_CERT, APP_KEY, APP_TLS, CA, gateway, name, run
from tests.gateway.tlsfixtures import Backend, backend_context, echo_roundtrip, tls_connect

SECRET = b"Authorization: Bearer user-secret-token\r\nCookie: session=abc123\r\n"


class Recorder:
    """A plain TCP listener that keeps every byte it gets and answers like an HTTP server
    (what a host that intercepts the CVM's port would run)."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.port = 0

    async def start(self) -> Recorder:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.received += await reader.read(1 << 16)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{"balance": "forged by host"}')
        await writer.drain()
        self.received += await reader.read(1 << 16)
        writer.close()


async def _client_sends_secret(port: int, server_name: str) -> bytes:
    """Connect through the gateway (verifying its certificate), send SECRET; what comes back."""
    reader, writer, _ = await tls_connect(port, server_name, CA)
    writer.write(SECRET)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(1 << 16), 5)
    except (ConnectionResetError, OSError):
        return b""
    finally:
        writer.close()


def test_a_backend_with_another_key_gets_no_plaintext() -> None:
    async def scenario() -> None:
        impostor_cert = CA.issue("*.gw.example.test")  # same CA, same names, another key
        impostor = await Backend("127.0.0.1", backend_context(impostor_cert)).start()
        async with gateway() as gw:
            gw.register(1)  # the app registered APP_CERT's key
            answer = await _client_sends_secret(
                gw.port, name(APP, impostor.port, passthrough=False)
            )
            assert answer == b""
            assert all(SECRET not in bytes(r) and not r for r in impostor.received)
            assert gw.refusals() == {"refused_backend_tls": 1}
            assert gw.proxy.stats["backend_tls_failures"] == 1

    run(scenario())


def test_a_plain_tcp_backend_gets_no_plaintext_and_cannot_answer() -> None:
    async def scenario() -> None:
        host = await Recorder().start()
        async with gateway() as gw:
            gw.register(1)
            answer = await _client_sends_secret(gw.port, name(APP, host.port, passthrough=False))
            assert b"forged" not in answer
            assert SECRET not in host.received and b"secret" not in host.received
            assert host.received.startswith(b"\x16\x03")  # only the gateway's own ClientHello
            assert gw.refusals() == {"refused_backend_tls": 1}

    run(scenario())


def test_the_candidate_with_the_registered_key_is_used_and_an_impostor_goes_last() -> None:
    async def scenario() -> None:
        impostor = await Backend("127.0.0.1", backend_context(CA.issue("x.test"))).start()
        app = await Backend("127.0.0.2", APP_TLS).start(impostor.port)
        async with gateway() as gw:
            bad = gw.register(1, "127.0.0.1")
            gw.register(2, "127.0.0.2")
            for i in range(3):
                reader, writer, _ = await tls_connect(
                    gw.port, name(APP, app.port, passthrough=False), CA
                )
                data = os.urandom(1000) + b"%d" % i
                assert await echo_roundtrip(reader, writer, data) == data
                writer.close()
            assert [bytes(r) for r in impostor.received if r] == []
            assert len([r for r in app.received if r]) == 3
            assert gw.proxy.stats["backend_tls_failures"] == 1  # then it is tried last
            assert gw.table.candidates(APP.hex(), instance=False)[-1].instance_id == bad

    run(scenario())


def test_the_pin_is_the_hash_of_the_subject_public_key() -> None:
    reissued = CA.issue("other.name.test")
    assert spki_sha256(APP_CERT.cert_pem) == APP_KEY
    assert spki_sha256(APP_CERT.chain_pem) == APP_KEY  # the leaf of a chain
    assert spki_sha256(reissued.cert_pem) != APP_KEY
    check_pinned_key(ssl.PEM_cert_to_DER_cert(APP_CERT.cert_pem.decode()), APP_KEY)
    with pytest.raises(BackendKeyMismatch, match="its registration names"):
        check_pinned_key(ssl.PEM_cert_to_DER_cert(reissued.cert_pem.decode()), APP_KEY)
    with pytest.raises(BackendKeyMismatch, match="no certificate"):
        check_pinned_key(None, APP_KEY)
    with pytest.raises(BackendKeyMismatch, match="does not parse"):
        check_pinned_key(b"\x30\x03junk", APP_KEY)
    with pytest.raises(ValueError, match="not an X.509 certificate"):
        spki_sha256(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
