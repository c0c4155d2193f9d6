"""The gateway's TLS front: route each connection by the SNI of its ClientHello (design §8).

Per connection: read until a full ClientHello (within `hello_timeout`), parse its SNI as
`[i-]<target>[-<port>][s].<base_domain>`, take the table's candidates for the target (an app,
or with `i-` an instance), and connect
to the first that answers on the route's port (one that fails is marked dead and the next is
tried). With the `s` suffix the hello and everything after it go to the backend untouched: the
app terminates TLS itself and the gateway never sees plaintext. Otherwise the gateway terminates
TLS with its wildcard certificate and forwards plaintext.

A connection that cannot be routed is closed and logged with a reason, counted in `stats` as
`refused_<reason>` (see `REFUSALS`). Host names are logged cut to a bounded length; no payload
byte is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Final

import structlog

from gateway._relay import HandshakeFailed, TlsServer, splice
from gateway._tlsconfig import server_context
from gateway.clienthello import MAX_HELLO_BYTES, ClientHello, HelloError, parse_client_hello
from gateway.names import Route, RouteError, parse_server_name, shown
from gateway.table import Registration, RouteTable

log = structlog.get_logger("tkms.gateway.proxy")

REFUSALS: Final = (
    "hello_timeout",  # no complete ClientHello in time
    "hello_incomplete",  # the client closed before its ClientHello ended
    "hello_malformed",  # not a TLS ClientHello (HelloError)
    "no_sni",  # a hello without server_name
    "unknown_name",  # a server name that is not a route under the base domain
    "no_backend",  # no unexpired registration for the target
    "backend_unreachable",  # every candidate refused or timed out
    "no_certificate",  # termination asked before set_certificate
    "tls_handshake",  # the client failed the handshake with the gateway's certificate
)

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Proxy:
    """The TCP front: `await start(host, port)`, `set_certificate(...)`, `await close()`."""

    def __init__(
        self,
        table: RouteTable,
        base_domain: str,
        *,
        hello_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self._table = table
        self._base_domain = base_domain.lower().rstrip(".")
        self._hello_timeout = hello_timeout
        self._connect_timeout = connect_timeout
        self._context: ssl.SSLContext | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stats: dict[str, int] = dict.fromkeys(
            ["connections", "active", "passthrough", "terminated", "backend_connect_failures"], 0
        )
        self._stats.update((f"refused_{reason}", 0) for reason in REFUSALS)

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters (`active` is a gauge: connections open now)."""
        return dict(self._stats)

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 picks a free port); the bound port.

        `host` should be one address: a name that resolves to several gets one socket per
        address, and with port 0 each would have its own port (the first is returned)."""
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        self._server = await asyncio.start_server(self._accept, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        log.info("proxy listening", host=host, port=bound, base_domain=self._base_domain)
        return bound

    def set_certificate(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Use this chain and key for termination from the next connection on.

        Raises `ValueError` (and keeps the previous certificate) if they do not form a usable pair.
        """
        context, summary = server_context(chain_pem, key_pem)
        self._context = context
        log.info("termination certificate set", **summary)

    async def close(self) -> None:
        """Stop listening and end every open connection; returns when all of them are gone."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._stats["connections"] += 1
        self._stats["active"] += 1
        peer = _peer(writer)
        try:
            await self._guarded(reader, writer, peer)
        except asyncio.CancelledError:
            # close() cancels open connections and waits for them. The task must not end
            # cancelled: asyncio's stream callback would log that as an unhandled error.
            log.debug("connection closed by shutdown", peer=peer)
        finally:
            self._stats["active"] -= 1
            writer.close()
            self._tasks.discard(task)

    async def _guarded(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        """Serve one connection; a refusal is counted and logged, a peer's error ends it."""
        try:
            try:
                await self._serve(reader, writer, peer)
            except _Refused as refused:
                self._stats[f"refused_{refused.reason}"] += 1
                log.info(
                    "connection refused", reason=refused.reason, detail=refused.detail, peer=peer
                )
        except* OSError as errors:
            # A reset or a TLS alert mid-stream (inside a relay's TaskGroup or not) ends the
            # connection both ways; it is the peer's business, so only a debug line.
            log.debug("connection ended by an error", peer=peer, error=str(errors.exceptions[0]))

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        first, hello = await self._read_hello(reader)
        if hello.server_name is None:
            raise _Refused("no_sni", "the ClientHello has no server_name")
        try:
            route = parse_server_name(hello.server_name, self._base_domain)
        except RouteError as exc:
            raise _Refused("unknown_name", str(exc)) from None
        candidates = self._table.candidates(route.target, instance=route.instance)
        if not candidates:
            kind = "instance" if route.instance else "app"
            raise _Refused("no_backend", f"no live registration for {kind} {route.target}")
        if route.passthrough:
            backend, reg = await self._connect(candidates, route)
            self._stats["passthrough"] += 1
            log.debug("passthrough", peer=peer, target=route.target, instance=reg.instance_id.hex())
            try:
                await splice((reader, writer), backend, first)
            finally:
                backend[1].close()
            return
        context = self._context
        if context is None:
            raise _Refused("no_certificate", "no certificate is set yet for termination")
        tls = TlsServer(context, reader, writer, first)
        try:
            async with asyncio.timeout(self._hello_timeout):
                await tls.handshake()
        except (HandshakeFailed, TimeoutError) as exc:
            detail = str(exc) or f"handshake not complete within {self._hello_timeout} s"
            raise _Refused("tls_handshake", f"{shown(hello.server_name)}: {detail}") from None
        backend, reg = await self._connect(candidates, route)
        self._stats["terminated"] += 1
        log.debug("terminated", peer=peer, target=route.target, instance=reg.instance_id.hex())
        try:
            await tls.relay(backend)
        finally:
            backend[1].close()

    async def _read_hello(self, reader: asyncio.StreamReader) -> tuple[bytes, ClientHello]:
        buffer = bytearray()
        try:
            async with asyncio.timeout(self._hello_timeout):
                while True:
                    try:
                        hello = parse_client_hello(bytes(buffer))
                    except HelloError as exc:
                        raise _Refused("hello_malformed", str(exc)) from None
                    if hello is not None:
                        return bytes(buffer), hello
                    # The parser returns None only below MAX_HELLO_BYTES, so this reads >= 1 byte.
                    chunk = await reader.read(MAX_HELLO_BYTES - len(buffer))
                    if not chunk:
                        raise _Refused(
                            "hello_incomplete",
                            f"closed after {len(buffer)} bytes, before the ClientHello ended",
                        )
                    buffer += chunk
        except TimeoutError:
            raise _Refused(
                "hello_timeout",
                f"no complete ClientHello within {self._hello_timeout} s "
                f"({len(buffer)} bytes received)",
            ) from None

    async def _connect(
        self, candidates: list[Registration], route: Route
    ) -> tuple[Stream, Registration]:
        failures: list[str] = []
        for reg in candidates:
            where = f"{reg.host}:{route.backend_port}"
            try:
                async with asyncio.timeout(self._connect_timeout):
                    backend = await asyncio.open_connection(reg.host, route.backend_port)
            except (OSError, TimeoutError) as exc:
                error = str(exc) or f"no answer within {self._connect_timeout} s"
                self._stats["backend_connect_failures"] += 1
                self._table.mark_dead(reg.instance_id)
                log.warning(
                    "backend unreachable",
                    instance=reg.instance_id.hex(),
                    backend=where,
                    error=error,
                )
                failures.append(f"{where}: {error}")
                continue
            self._table.mark_alive(reg.instance_id)
            return backend, reg
        raise _Refused("backend_unreachable", "; ".join(failures))


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return f"{address[0]}:{address[1]}"
    return "unknown"
