"""The gateway's TLS front: route each connection by the SNI of its ClientHello (design §8).

Per connection: take a connection slot (`limits.ConnectionSlots`: per client and in total),
read until a full ClientHello (within `hello_timeout`), parse its SNI as
`[i-]<target>[-<port>][s].<base_domain>`, take the table's candidates for the target (an app,
or with `i-` an instance), and connect to the first that answers on the route's port (one that
fails is marked dead and the next is tried). With the `s` suffix the hello and everything after
it go to the backend untouched: the app terminates TLS itself and the gateway never sees
plaintext. Otherwise the gateway terminates TLS with its wildcard certificate and speaks TLS
again to the backend, which must present the key its registration named
(`gateway.backend_tls`): the client's plaintext exists only inside the gateway and the CVM.

A relay silent for `idle_timeout` or open for `max_lifetime` is closed; `close_instances` ends
the relays of instances whose approval is gone. A connection that cannot be routed is closed
and logged with a reason, counted in `stats` as `refused_<reason>` (see `REFUSALS`); refusal and
backend-failure lines are rate limited (`limits.ThrottledLog`). Host names are logged cut to a
bounded length; no payload byte is ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from typing import Final, Protocol

import structlog

from gateway._relay import End, HandshakeFailed, PlainEnd, RelayTimedOut, TlsEnd, relay
from gateway._tlsconfig import server_context
from gateway.backend_tls import BackendKeyMismatch, backend_context, check_pinned_key
from gateway.clienthello import MAX_HELLO_BYTES, ClientHello, HelloError, HelloReader
from gateway.limits import ConnectionSlots, ProxyLimits, RateLimit, ThrottledLog, client_of
from gateway.names import Route, RouteError, parse_server_name, shown
from gateway.table import Registration, RouteTable

log = structlog.get_logger("tkms.gateway.proxy")

REFUSALS: Final = (
    "client_limit",  # the client already holds max_connections_per_client connections
    "total_limit",  # the proxy already holds max_connections connections
    "hello_timeout",  # no complete ClientHello in time
    "hello_incomplete",  # the client closed before its ClientHello ended
    "hello_malformed",  # not a TLS ClientHello (HelloError)
    "no_sni",  # a hello without server_name
    "unknown_name",  # a server name that is not a route under the base domain
    "no_backend",  # no unexpired registration for the target
    "backend_unreachable",  # every candidate refused or timed out
    "backend_tls",  # termination: no candidate completed TLS with its registered key
    "no_certificate",  # termination asked before set_certificate
    "tls_handshake",  # the client failed the handshake with the gateway's certificate
)
#: Why a routed connection was ended by the gateway (`stats["closed_<reason>"]`).
CLOSURES: Final = ("idle", "lifetime", "revoked")

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LocalSite(Protocol):
    """A site the gateway serves itself on one name (`gateway.<base>`, its evidence)."""

    @property
    def name(self) -> str:
        """The server name it answers (lower case, no trailing dot)."""
        ...

    async def serve(self, end: End, client: str) -> None:
        """Answer the terminated connection `end` from `client` (an address)."""
        ...


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
        limits: ProxyLimits | None = None,
        site: LocalSite | None = None,
    ) -> None:
        self._table = table
        self.site = site  # served on its own name; may be set before start()
        self._base_domain = base_domain.lower().rstrip(".")
        self.limits = limits or ProxyLimits()
        self._slots = ConnectionSlots(
            self.limits.max_connections, self.limits.max_connections_per_client
        )
        self._log = ThrottledLog(log, RateLimit(self.limits.log_per_second, self.limits.log_burst))
        self._backend_context = backend_context()
        self._context: ssl.SSLContext | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._routed: dict[bytes, set[asyncio.Task[None]]] = {}  # instance id -> its relays
        self._revoked: set[asyncio.Task[None]] = set()
        self._stats: dict[str, int] = dict.fromkeys(
            [
                "connections",
                "active",
                "passthrough",
                "terminated",
                "backend_connect_failures",
                "backend_tls_failures",
                "site",
            ],
            0,
        )
        self._stats.update((f"refused_{reason}", 0) for reason in REFUSALS)
        self._stats.update((f"closed_{reason}", 0) for reason in CLOSURES)

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
        log.info(
            "proxy listening",
            host=host,
            port=bound,
            base_domain=self._base_domain,
            max_connections=self.limits.max_connections,
            max_connections_per_client=self.limits.max_connections_per_client,
        )
        return bound

    def set_certificate(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Use this chain and key for termination from the next connection on.

        Raises `ValueError` (and keeps the previous certificate) if they do not form a usable pair.
        """
        context, summary = server_context(chain_pem, key_pem)
        self._context = context
        log.info("termination certificate set", **summary)

    def close_instances(self, instance_ids: Iterable[bytes]) -> int:
        """End every open connection relayed to these instances (their approval is gone);
        how many were ended. Returns at once; the connections close as their tasks unwind."""
        ended = 0
        for instance_id in instance_ids:
            for task in self._routed.pop(instance_id, set()):
                self._revoked.add(task)
                task.cancel()
                ended += 1
        return ended

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
        host, peer = _peer(writer)
        client = client_of(host)
        self._stats["connections"] += 1
        full = self._slots.take(client)
        if full is not None:
            # Refused before anything is read: the descriptor is released at once (RST).
            self._stats[f"refused_{full}"] += 1
            cap = self._slots.total if full == "total_limit" else self._slots.per_client
            self._log.info(
                "connection refused", reason=full, detail=f"{cap} connections open", peer=peer
            )
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._stats["active"] += 1
        try:
            await self._guarded(reader, writer, host, peer)
        except asyncio.CancelledError:
            # close() or close_instances() cancels open connections. The task must not end
            # cancelled: asyncio's stream callback would log that as an unhandled error.
            if task in self._revoked:
                self._stats["closed_revoked"] += 1
                self._log.info("connection closed", reason="revoked", peer=peer)
            else:
                log.debug("connection closed by shutdown", peer=peer)
        finally:
            self._revoked.discard(task)
            self._slots.give_back(client)
            self._stats["active"] -= 1
            writer.close()
            self._tasks.discard(task)

    async def _guarded(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, peer: str
    ) -> None:
        """Serve one connection; a refusal is counted and logged, a peer's error ends it."""
        try:
            try:
                await self._serve((reader, writer), host, peer)
            except _Refused as refused:
                self._stats[f"refused_{refused.reason}"] += 1
                self._log.info(
                    "connection refused", reason=refused.reason, detail=refused.detail, peer=peer
                )
        except* RelayTimedOut as timed_out:
            reason = timed_out.exceptions[0]
            assert isinstance(reason, RelayTimedOut)
            self._stats[f"closed_{reason.reason}"] += 1
            log.debug("connection closed", reason=reason.reason, detail=str(reason), peer=peer)
        except* OSError as errors:
            # A reset or a TLS alert mid-stream (inside a relay's TaskGroup or not) ends the
            # connection both ways; it is the peer's business, so only a debug line.
            log.debug("connection ended by an error", peer=peer, error=str(errors.exceptions[0]))

    async def _serve(self, client: Stream, host: str, peer: str) -> None:
        first, hello = await self._read_hello(client[0])
        if hello.server_name is None:
            raise _Refused("no_sni", "the ClientHello has no server_name")
        site = self.site
        if site is not None and hello.server_name.lower().rstrip(".") == site.name:
            tls = await self._terminate(client, first, hello.server_name)
            self._stats["site"] += 1
            await site.serve(tls, host)
            return
        try:
            route = parse_server_name(hello.server_name, self._base_domain)
        except RouteError as exc:
            raise _Refused("unknown_name", str(exc)) from None
        candidates = self._table.candidates(route.target, instance=route.instance)
        if not candidates:
            kind = "instance" if route.instance else "app"
            raise _Refused("no_backend", f"no live registration for {kind} {route.target}")
        if route.passthrough:
            backend, reg, backend_writer = await self._connect(candidates, route, None)
            self._stats["passthrough"] += 1
            log.debug("passthrough", peer=peer, target=route.target, instance=reg.instance_id.hex())
            try:
                await backend.write(first)
                await self._relay(PlainEnd(*client), backend, reg)
            finally:
                backend_writer.close()
            return
        tls = await self._terminate(client, first, hello.server_name)
        backend, reg, backend_writer = await self._connect(candidates, route, hello.server_name)
        self._stats["terminated"] += 1
        log.debug("terminated", peer=peer, target=route.target, instance=reg.instance_id.hex())
        try:
            await self._relay(tls, backend, reg)
        finally:
            backend_writer.close()

    async def _terminate(self, client: Stream, first: bytes, server_name: str) -> TlsEnd:
        """The client's TLS, ended here with the wildcard certificate."""
        context = self._context
        if context is None:
            raise _Refused("no_certificate", "no certificate is set yet for termination")
        tls = TlsEnd.server(context, client, first)
        try:
            async with asyncio.timeout(self.limits.handshake_timeout):
                await tls.handshake()
        except (HandshakeFailed, TimeoutError) as exc:
            detail = str(exc) or f"handshake not complete within {self.limits.handshake_timeout} s"
            raise _Refused("tls_handshake", f"{shown(server_name)}: {detail}") from None
        return tls

    async def _relay(self, a: End, b: End, reg: Registration) -> None:
        """`relay` within the limits, known as a connection to `reg`'s instance meanwhile."""
        task = asyncio.current_task()
        assert task is not None
        routed = self._routed.setdefault(reg.instance_id, set())
        routed.add(task)
        try:
            await relay(
                a, b, idle_timeout=self.limits.idle_timeout, max_lifetime=self.limits.max_lifetime
            )
        finally:
            routed.discard(task)
            if not routed and self._routed.get(reg.instance_id) is routed:
                del self._routed[reg.instance_id]

    async def _read_hello(self, reader: asyncio.StreamReader) -> tuple[bytes, ClientHello]:
        hello_reader = HelloReader()
        try:
            async with asyncio.timeout(self.limits.hello_timeout):
                while True:
                    # HelloReader refuses a hello that runs to MAX_HELLO_BYTES, so this reads >= 1.
                    chunk = await reader.read(MAX_HELLO_BYTES - hello_reader.received)
                    if not chunk:
                        raise _Refused(
                            "hello_incomplete",
                            f"closed after {hello_reader.received} bytes, "
                            "before the ClientHello ended",
                        )
                    try:
                        hello = hello_reader.feed(chunk)
                    except HelloError as exc:
                        raise _Refused("hello_malformed", str(exc)) from None
                    if hello is not None:
                        return hello_reader.data, hello
        except TimeoutError:
            raise _Refused(
                "hello_timeout",
                f"no complete ClientHello within {self.limits.hello_timeout} s "
                f"({hello_reader.received} bytes received)",
            ) from None

    async def _connect(
        self, candidates: list[Registration], route: Route, tls_name: str | None
    ) -> tuple[End, Registration, asyncio.StreamWriter]:
        """The first candidate that answers on the route's port: plain TCP for passthrough, or
        (termination, `tls_name` is the client's SNI) TLS with the candidate's registered key."""
        failures: list[str] = []
        tls_failed = False
        timeout = self.limits.connect_timeout
        for reg in candidates:
            where = f"{reg.host}:{route.backend_port}"
            try:
                async with asyncio.timeout(timeout):
                    stream = await asyncio.open_connection(reg.host, route.backend_port)
            except (OSError, TimeoutError) as exc:
                error = str(exc) or f"no answer within {timeout} s"
                self._stats["backend_connect_failures"] += 1
                failures.append(self._backend_failed(reg, where, "backend unreachable", error))
                continue
            if route.passthrough:
                self._table.mark_alive(reg.instance_id)
                return PlainEnd(*stream), reg, stream[1]
            backend = TlsEnd.client(self._backend_context, stream, tls_name)
            try:
                async with asyncio.timeout(timeout):
                    await backend.handshake()
                check_pinned_key(backend.peer_certificate(), reg.tls_key_sha256)
            except (HandshakeFailed, BackendKeyMismatch, OSError, TimeoutError) as exc:
                stream[1].transport.abort()
                error = str(exc) or f"no TLS handshake within {timeout} s"
                self._stats["backend_tls_failures"] += 1
                tls_failed = True
                failures.append(self._backend_failed(reg, where, "backend TLS refused", error))
                continue
            self._table.mark_alive(reg.instance_id)
            return backend, reg, stream[1]
        reason = "backend_tls" if tls_failed else "backend_unreachable"
        raise _Refused(reason, "; ".join(failures))

    def _backend_failed(self, reg: Registration, where: str, event: str, error: str) -> str:
        """Mark the candidate dead (tried last for a while), log it; the refusal's part."""
        self._table.mark_dead(reg.instance_id)
        self._log.warning(event, instance=reg.instance_id.hex(), backend=where, error=error)
        return f"{where}: {error}"


def _peer(writer: asyncio.StreamWriter) -> tuple[str, str]:
    """The peer's address, and address:port for log lines."""
    address = writer.get_extra_info("peername")
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return str(address[0]), f"{address[0]}:{address[1]}"
    return "unknown", "unknown"
