"""Who gets a name's traffic, end to end: CVMs register over real gRPC with simulated TEE
evidence, a client connects through the real proxy, and the test sees which backend answers.

The attacks: an approved app picks its instance id equal to another app's id (or instance
name) to take that app's connections; an approved app registers a loopback, link-local or
private host so that the gateway relays clients into its own network.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from attest import create_ratls_certificate
from contracts._anvil import free_port
from gateway.backends import BackendPolicy, parse_networks
from gateway.client import GATEWAY_TLS_NAME, GatewayClient, default_gateway_check
from gateway.limits import ProxyLimits
from gateway.names import instance_route_id
from gateway.proxy import Proxy
from gateway.registration import GatewayServicer, Registrar
from gateway.table import RouteTable
from protos.tkms.v1 import gateway_pb2, gateway_pb2_grpc
from tests.gateway.test_registration import BASE, KEY, FakeGovernance, cvm
from tests.gateway.test_registration_grpc import GATEWAY_APP, SimulatedCvm
from tests.gateway.tlsfixtures import Backend, client_hello

T = TypeVar("T")
VICTIM = bytes.fromhex("5c" * 20)
ATTACKER = bytes.fromhex("a7" * 20)
LOOPBACK = BackendPolicy(parse_networks(["127.0.0.0/8"]))  # backends here all run on 127.0.0.x


@dataclass
class Stack:
    """The registration service and the proxy over one table, on one event loop thread."""

    loop: asyncio.AbstractEventLoop
    endpoint: str
    proxy_port: int
    table: RouteTable

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def backend(self, host: str, port: int = 0) -> Backend:
        return self.run(Backend(host).start(port))

    def register(
        self, app_id: bytes, instance_id: bytes, host: str
    ) -> gateway_pb2.RegisterResponse:
        machine = SimulatedCvm(cvm(app_id, instance_id).provider)
        check = default_gateway_check(simulator_allowed=True, app_id=GATEWAY_APP)
        return GatewayClient(self.endpoint, machine, check).register(host, KEY)

    def reach(self, server_name: str) -> bytes:
        """Connect through the proxy with a ClientHello for `server_name` (passthrough); what
        the backend echoes back (empty if the gateway closed the connection)."""
        hello = client_hello(server_name)
        with socket.create_connection(("127.0.0.1", self.proxy_port), timeout=5) as sock:
            sock.sendall(hello)
            echoed = bytearray()
            with contextlib.suppress(ConnectionResetError):
                while len(echoed) < len(hello) and (chunk := sock.recv(65536)):
                    echoed += chunk
        return bytes(echoed)


def _credentials() -> grpc.ServerCredentials:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = create_ratls_certificate(
        key, cvm(GATEWAY_APP).provider, alt_names=[GATEWAY_TLS_NAME], app_id=GATEWAY_APP
    )
    pem_key = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return grpc.ssl_server_credentials([(pem_key, cert.public_bytes(Encoding.PEM))])


@contextlib.contextmanager
def stack(**registrar_options: Any) -> Iterator[Stack]:
    governance = FakeGovernance(allowed={"0x" + VICTIM.hex(), "0x" + ATTACKER.hex()})
    table = RouteTable()
    registrar = Registrar(BASE, table, governance.view(), ttl=30, **registrar_options)
    creds = _credentials()
    port = free_port()
    loop = asyncio.new_event_loop()
    ready: list[int] = []
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        proxy = Proxy(table, BASE, limits=ProxyLimits(connect_timeout=1.0))
        ready.append(await proxy.start("127.0.0.1", 0))
        server = grpc.aio.server()
        servicer = GatewayServicer(registrar, proxy_port=lambda: ready[0], app_id=GATEWAY_APP)
        gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        server.add_secure_port(f"127.0.0.1:{port}", creds)
        await server.start()
        started.set()
        try:
            await stop.wait()
        finally:
            await server.stop(1)
            await proxy.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(15)
    try:
        yield Stack(loop, f"127.0.0.1:{port}", ready[0], table)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()


def test_an_instance_id_chosen_as_another_apps_id_does_not_take_its_traffic() -> None:
    with stack(backends=LOOPBACK) as gw:
        victim = gw.backend("127.0.0.1")
        attacker = gw.backend("127.0.0.2", victim.port)
        gw.register(VICTIM, b"\x01" * 20, "127.0.0.1")
        gw.register(ATTACKER, VICTIM, "127.0.0.2")  # its config says instance_id = the victim
        for _ in range(3):
            assert gw.reach(f"{VICTIM.hex()}-{victim.port}s.{BASE}")
        assert len(attacker.received) == 0, "the attacker received the victim's connections"
        assert len(victim.received) == 3


def with_port(name: str, port: int) -> str:
    """`name` (as a registration reply lists it) with `-<port>s`: passthrough to that port."""
    label, rest = name.split(".", 1)
    return f"{label}-{port}s.{rest}"


def test_an_instance_id_copied_from_another_app_neither_blocks_nor_takes_its_instance() -> None:
    with stack(backends=LOOPBACK) as gw:
        victim = gw.backend("127.0.0.1")
        attacker = gw.backend("127.0.0.2", victim.port)
        seen = b"\x0e" * 20  # the victim's instance id, public in its name
        gw.register(ATTACKER, seen, "127.0.0.2")  # first, e.g. right after a gateway restart
        reply = gw.register(VICTIM, seen, "127.0.0.1")
        [instance_name] = [n for n in reply.names if n != f"{VICTIM.hex()}.{BASE}"]
        for name in (instance_name, f"{VICTIM.hex()}.{BASE}"):
            assert gw.reach(with_port(name, victim.port))
        assert (len(victim.received), len(attacker.received)) == (2, 0)


def test_instance_names_are_derived_and_reach_only_their_instance() -> None:
    with stack(backends=LOOPBACK) as gw:
        first = gw.backend("127.0.0.1")
        second = gw.backend("127.0.0.2", first.port)
        gw.register(VICTIM, b"\x01" * 20, "127.0.0.1")
        reply = gw.register(VICTIM, b"\x02" * 20, "127.0.0.2")
        assert reply.instance_id == b"\x02" * 20  # what the CVM measured, as its agent says
        route_id = instance_route_id(VICTIM, b"\x02" * 20)
        assert list(reply.names) == [f"{VICTIM.hex()}.{BASE}", f"i-{route_id.hex()}.{BASE}"]
        for _ in range(3):
            assert gw.reach(with_port(reply.names[1], first.port))
        assert (len(first.received), len(second.received)) == (0, 3)
        # the same 40 hex characters without `i-` name an app, and no app has that id
        assert gw.reach(f"{route_id.hex()}-{first.port}s.{BASE}") == b""
        assert gw.reach(f"i-{'02' * 20}-{first.port}s.{BASE}") == b""  # the measured id
        assert len(second.received) == 3


def refusal(gw: Stack, host: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        gw.register(ATTACKER, b"\x02" * 20, host)
    return info.value


def test_a_loopback_backend_is_refused_so_the_gateway_relays_nothing_into_its_host() -> None:
    with stack() as gw:
        internal = gw.backend("127.0.0.1")  # a service on the gateway's own loopback
        error = refusal(gw, "127.0.0.1")
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert error.details() == (
            "backend: host 127.0.0.1 is loopback: this gateway relays only to public addresses "
            "and to its allowed_backend_networks (none)"
        )
        assert len(gw.table) == 0
        assert gw.reach(f"{ATTACKER.hex()}-{internal.port}s.{BASE}") == b""
        assert internal.received == []


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("169.254.169.254", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
    ],
)
def test_internal_backends_are_refused_by_default(host: str, kind: str) -> None:
    with stack() as gw:
        error = refusal(gw, host)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert f"is {kind}" in (error.details() or "")
        assert len(gw.table) == 0


def test_names_are_refused_as_backends() -> None:
    with stack(backends=LOOPBACK) as gw:
        error = refusal(gw, "localhost")
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "host 'localhost' is not an IP address" in (error.details() or "")
        assert len(gw.table) == 0


def test_an_allowed_range_admits_only_itself() -> None:
    with stack(backends=LOOPBACK) as gw:
        backend = gw.backend("127.0.0.3")
        gw.register(VICTIM, b"\x03" * 20, "127.0.0.3")
        assert gw.reach(f"{VICTIM.hex()}-{backend.port}s.{BASE}")
        assert len(backend.received) == 1
        for host in ("169.254.169.254", "10.1.2.3", "::1"):
            assert refusal(gw, host).code() is grpc.StatusCode.PERMISSION_DENIED
        assert len(gw.table) == 1
