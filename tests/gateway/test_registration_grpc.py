"""Registration over real gRPC: the client attests and pins the gateway's RA-TLS certificate,
then registers with evidence from its (simulated) TEE; refusals arrive as gRPC statuses."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from attest import create_ratls_certificate, event_log_to_json
from attest.providers import SimulatorProvider
from contracts._anvil import free_port
from gateway.backends import BackendPolicy, parse_networks
from gateway.client import (
    GATEWAY_TLS_NAME,
    GatewayClient,
    GatewayUnavailable,
    default_gateway_check,
)
from gateway.registration import GatewayServicer, Registrar
from gateway.table import RouteTable
from guest.measure import measure_app_boot
from protos.tkms.v1 import gateway_pb2_grpc
from tests.gateway.test_registration import APP, BASE, FakeGovernance

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


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
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
    registrar = Registrar(BASE, table, governance, ttl=30, backends=backends)
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        grpc_server = grpc.aio.server()
        gateway_pb2_grpc.add_GatewayServicer_to_server(  # type: ignore[no-untyped-call]
            GatewayServicer(registrar, proxy_port=lambda: 4433, app_id=GATEWAY_APP), grpc_server
        )
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


def client(
    server: Server, app_id: bytes = APP, expect: bytes | None = GATEWAY_APP
) -> GatewayClient:
    return GatewayClient(
        server.endpoint,
        SimulatedCvm(booted(app_id)),
        default_gateway_check(simulator_allowed=True, app_id=expect),
    )


def test_an_approved_cvm_registers_through_an_attested_pinned_channel(server: Server) -> None:
    reply = client(server).register("10.1.2.3")
    assert reply.app_id == APP
    assert f"{APP.hex()}.{BASE}" in reply.names
    assert any(b.host == "10.1.2.3" for b in server.table.candidates(APP.hex(), instance=False))


def test_an_unapproved_cvm_is_refused_with_permission_denied(server: Server) -> None:
    stranger = bytes.fromhex("0d" * 20)
    with pytest.raises(grpc.RpcError) as info:
        client(server, app_id=stranger).register("10.9.9.9")
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "approval: app 0x" + "0d" * 20 in (info.value.details() or "").lower()
    assert server.table.candidates(stranger.hex(), instance=False) == []


def test_a_gateway_running_another_app_is_not_trusted(server: Server) -> None:
    with pytest.raises(GatewayUnavailable, match="expected " + "77" * 20):
        client(server, expect=b"\x77" * 20).register("10.1.2.3")


def test_a_gateway_without_simulator_trust_is_not_trusted(server: Server) -> None:
    picky = GatewayClient(
        server.endpoint,
        SimulatedCvm(booted(APP)),
        default_gateway_check(simulator_allowed=False),
    )
    with pytest.raises(GatewayUnavailable, match="does not verify"):
        picky.register("10.1.2.3")


def test_nothing_listening_is_a_clear_error() -> None:
    lonely = GatewayClient(
        f"127.0.0.1:{free_port()}",
        SimulatedCvm(booted(APP)),
        default_gateway_check(simulator_allowed=True),
        timeout=2,
    )
    with pytest.raises(GatewayUnavailable, match="gateway 127.0.0.1:"):
        lonely.register("10.1.2.3")
