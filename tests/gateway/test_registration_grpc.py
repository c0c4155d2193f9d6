"""Registration over real gRPC: the client attests and pins the gateway's RA-TLS certificate,
then registers with evidence from its (simulated) TEE; refusals arrive as gRPC statuses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from attest import create_ratls_certificate, event_log_to_json
from attest.providers import SimulatorProvider
from contracts._anvil import free_port
from gateway._selfsigned import ThrowawayCA
from gateway.backends import BackendPolicy, parse_networks
from gateway.client import (
    GATEWAY_TLS_NAME,
    GatewayClient,
    GatewayUnavailable,
    default_gateway_check,
)
from gateway.limits import RateLimit
from gateway.registration import GatewayServicer, Registrar
from gateway.table import RouteTable
from guest.measure import measure_app_boot
from protos.tkms.v1 import gateway_pb2_grpc
from tests.gateway.test_registration import APP, BASE, KEY, FakeGovernance

GATEWAY_APP = bytes.fromhex("6a" * 20)


def booted(app_id: bytes) -> SimulatorProvider:
    provider = SimulatorProvider()
    measure_app_boot(
        provider,
        app_id=app_id,
        compose=b'{"services": {}}',
        instance_id=os.urandom(20),
        kms_id="0x" + "42" * 20,
        os_image=b"\x11" * 32,
    )
    return provider


@dataclass
class SimulatedCvm:
    """What a CVM's guest agent gives the client: quotes over chosen report data."""

    provider: SimulatorProvider

    def get_quote(self, report_data: bytes) -> tuple[bytes, str, str]:
        quote = self.provider.get_quote(report_data)
        return quote, event_log_to_json(self.provider.event_log()), ""


@dataclass
class Server:
    endpoint: str
    table: RouteTable
    governance: FakeGovernance


@contextlib.contextmanager
def running(peer_limit: RateLimit | None = None) -> Iterator[Server]:
    """The registration service on a free port, in an event loop thread, stopped on exit."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = create_ratls_certificate(
        key, booted(GATEWAY_APP), alt_names=[GATEWAY_TLS_NAME], app_id=GATEWAY_APP
    )
    creds = grpc.ssl_server_credentials(
        [
            (
                key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
                cert.public_bytes(Encoding.PEM),
            )
        ]
    )
    table, governance = RouteTable(), FakeGovernance()
    backends = BackendPolicy(parse_networks(["10.0.0.0/8"]))
    registrar = Registrar(BASE, table, governance.view(), ttl=30, backends=backends)
    servicer = GatewayServicer(
        registrar, proxy_port=lambda: 4433, app_id=GATEWAY_APP, peer_limit=peer_limit
    )
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        grpc_server = grpc.aio.server()
        gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, grpc_server)  # type: ignore[no-untyped-call]
        grpc_server.add_secure_port(f"127.0.0.1:{port}", creds)
        await grpc_server.start()
        started.set()
        await stop.wait()
        await grpc_server.stop(1)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield Server(f"127.0.0.1:{port}", table, governance)
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running() as gateway:
        yield gateway


def client(
    server: Server, app_id: bytes = APP, expect: bytes | None = GATEWAY_APP
) -> GatewayClient:
    return GatewayClient(
        server.endpoint,
        SimulatedCvm(booted(app_id)),
        default_gateway_check(simulator_allowed=True, app_id=expect),
    )


def test_an_approved_cvm_registers_through_an_attested_pinned_channel(server: Server) -> None:
    reply = client(server).register("10.1.2.3", KEY)
    assert reply.app_id == APP
    assert f"{APP.hex()}.{BASE}" in reply.names
    assert any(b.host == "10.1.2.3" for b in server.table.candidates(APP.hex(), instance=False))


def test_an_unapproved_cvm_is_refused_with_permission_denied(server: Server) -> None:
    stranger = bytes.fromhex("0d" * 20)
    with pytest.raises(grpc.RpcError) as info:
        client(server, app_id=stranger).register("10.9.9.9", KEY)
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "approval: app 0x" + "0d" * 20 in (info.value.details() or "").lower()
    assert server.table.candidates(stranger.hex(), instance=False) == []


def test_a_gateway_running_another_app_is_not_trusted(server: Server) -> None:
    with pytest.raises(GatewayUnavailable, match="expected " + "77" * 20):
        client(server, expect=b"\x77" * 20).register("10.1.2.3", KEY)


def test_a_gateway_without_simulator_trust_is_not_trusted(server: Server) -> None:
    picky = GatewayClient(
        server.endpoint,
        SimulatedCvm(booted(APP)),
        default_gateway_check(simulator_allowed=False, app_id=GATEWAY_APP),
    )
    with pytest.raises(GatewayUnavailable, match="does not verify"):
        picky.register("10.1.2.3", KEY)


def test_nothing_listening_is_a_clear_error() -> None:
    lonely = GatewayClient(
        f"127.0.0.1:{free_port()}",
        SimulatedCvm(booted(APP)),
        default_gateway_check(simulator_allowed=True, app_id=GATEWAY_APP),
        timeout=2,
    )
    with pytest.raises(GatewayUnavailable, match="gateway 127.0.0.1:"):
        lonely.register("10.1.2.3", KEY)


def test_registrations_beyond_the_rate_of_a_peer_are_refused() -> None:
    with running(peer_limit=RateLimit(rate=0.01, burst=2)) as gateway:
        codes = []
        for _ in range(4):
            try:
                client(gateway).register("10.1.2.3", KEY)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert "rate: more than 0.01 registrations per second from 127.0.0.1" in (
                        exc.details() or ""
                    )
        assert codes == [grpc.StatusCode.OK] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
        asked = len(gateway.governance.asked)
        assert asked == 2  # the refused ones cost no chain read


def _register_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tkms",
            "gateway",
            "register",
            "--endpoint",
            "127.0.0.1:9",
            "--host",
            "10.1.2.3",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_register_command_requires_the_gateway_app_id(tmp_path: Path) -> None:
    """G-08: without --gateway-app-id any attested app was accepted as the gateway."""
    cert = tmp_path / "app.pem"
    cert.write_bytes(ThrowawayCA.create().issue("app.test").chain_pem)
    refused = _register_cli("--tls-cert", str(cert))
    assert refused.returncode == 2
    assert "--gateway-app-id is required" in refused.stderr
    bad = _register_cli("--tls-cert", str(cert), "--gateway-app-id", "0x1234")
    assert bad.returncode == 2 and "is not a 20-byte hex app id" in bad.stderr
    both = _register_cli(
        "--tls-cert", str(cert), "--gateway-app-id", "0x" + "6a" * 20, "--any-gateway"
    )
    assert both.returncode == 2 and "not both" in both.stderr
    # Given (or waived for development), it goes on: here to a gateway that is not there.
    for choice in (["--gateway-app-id", "0x" + "6a" * 20], ["--any-gateway"]):
        tried = _register_cli("--tls-cert", str(cert), *choice)
        assert tried.returncode == 1 and "gateway 127.0.0.1:9" in tried.stderr
    missing = _register_cli("--tls-cert", str(tmp_path / "none.pem"), "--any-gateway")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
