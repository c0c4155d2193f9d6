"""Moving bytes for the proxy: two kinds of connection ends, and the relay between two ends.

An end reads and writes plaintext: `PlainEnd` is a TCP stream as it is (passthrough, where
the bytes are the client's own TLS), `TlsEnd` is TLS over a TCP stream through memory BIOs,
either the server side of a client's connection (termination: the ClientHello has already been
read from the socket to route it, so `start_tls` cannot be used and the TLS object is fed those
bytes first) or the client side of the connection to a backend (termination re-encrypts to the
backend; its key is checked by the proxy).

`relay(a, b, ...)` copies both ways, each direction a task of one TaskGroup. EOF in one
direction is passed on as a half-close (TCP FIN, or TLS close_notify then FIN) and the other
direction keeps going until it ends too; an error in either direction (a reset, a TLS alert)
ends both. Every write is followed by `drain()`, so a slow reader holds back its writer instead
of filling memory. A relay with no byte in either direction for `idle_timeout` seconds, or open
for `max_lifetime` seconds, ends with `RelayTimedOut`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Protocol

CHUNK = 1 << 16


class HandshakeFailed(Exception):
    """The peer did not complete a TLS handshake; the message says how."""


class RelayTimedOut(Exception):
    """A relay ended by the proxy: `reason` is "idle" or "lifetime"."""

    def __init__(self, reason: str, seconds: float) -> None:
        what = "no byte either way" if reason == "idle" else "open"
        super().__init__(f"{what} for {seconds:g} s")
        self.reason = reason


class End(Protocol):
    """One side of a relay, in plaintext."""

    async def read(self) -> bytes:
        """The next bytes; b"" once this side will send no more."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None:
        """Tell this side nothing more comes (it may still send)."""
        ...


def _half_close(writer: asyncio.StreamWriter) -> None:
    """Pass an EOF on; the transport may already be gone, which ends the direction all the same."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()


class PlainEnd:
    """A TCP stream, bytes as they are."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        return await self._reader.read(CHUNK)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def write_eof(self) -> None:
        _half_close(self._writer)


class TlsEnd:
    """TLS over a TCP stream, as server (`server`) or client (`client`) through memory BIOs."""

    def __init__(
        self,
        tls: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        peer: str,
    ) -> None:
        self._tls = tls
        self._incoming = incoming
        self._outgoing = outgoing
        self._reader, self._writer = stream
        self._peer = peer
        self._eof_sent = False

    @classmethod
    def server(
        cls,
        context: ssl.SSLContext,
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        first: bytes,
    ) -> TlsEnd:
        """The gateway's side of a client's connection; `first` is what was already read."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        incoming.write(first)
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        return cls(tls, incoming, outgoing, stream, "client")

    @classmethod
    def client(
        cls,
        context: ssl.SSLContext,
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server_name: str | None,
    ) -> TlsEnd:
        """The gateway's side of a connection to a backend."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=server_name)
        return cls(tls, incoming, outgoing, stream, "backend")

    def _flush(self) -> None:
        """Send what TLS produced. No await sits between producing and writing, so the records
        of the two directions reach the peer in the order the TLS object made them."""
        data = self._outgoing.read()
        if data and not self._eof_sent:
            self._writer.write(data)

    async def handshake(self) -> str:
        """Complete the handshake; the negotiated version. `HandshakeFailed` if the peer fails."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                await self._writer.drain()
                data = await self._reader.read(CHUNK)
                if not data:
                    raise HandshakeFailed(
                        f"{self._peer} closed the connection during the handshake"
                    ) from None
                self._incoming.write(data)
            except ssl.SSLError as exc:
                self._flush()  # the alert, so the peer learns why
                raise HandshakeFailed(f"TLS handshake failed: {exc.reason or exc}") from None
        self._flush()
        await self._writer.drain()
        return self._tls.version() or "unknown"

    def peer_certificate(self) -> bytes | None:
        """The DER certificate the peer presented (after the handshake), if any."""
        return self._tls.getpeercert(binary_form=True)

    async def read(self) -> bytes:
        # Decrypt before reading the socket: data the peer sent along with its Finished message
        # is already in the TLS object, and waiting for more bytes first would stall it.
        while True:
            try:
                data = self._tls.read(CHUNK)
            except ssl.SSLWantReadError:
                if self._incoming.eof:  # the peer's EOF is in and consumed: nothing can follow
                    self._flush()
                    return b""
                self._flush()  # post-handshake messages (key updates) answered while reading
                await self._writer.drain()
                raw = await self._reader.read(CHUNK)
                if raw:
                    self._incoming.write(raw)
                else:
                    self._incoming.write_eof()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # close_notify, or a TCP EOF without one: many clients end that way, and the
                # other side sees the same EOF it would see from a direct connection.
                self._flush()
                return b""
            return data

    async def write(self, data: bytes) -> None:
        self._tls.write(data)
        self._flush()
        await self._writer.drain()

    async def write_eof(self) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            self._tls.unwrap()  # sends close_notify; the peer's own may come later or never
        self._flush()
        await self._writer.drain()
        self._eof_sent = True
        _half_close(self._writer)


async def relay(a: End, b: End, *, idle_timeout: float, max_lifetime: float) -> None:
    """Copy `a` to `b` and `b` to `a` until both directions end (or `RelayTimedOut`, inside the
    TaskGroup's exception group, with both directions stopped)."""
    loop = asyncio.get_running_loop()
    started = last = loop.time()

    async def pump(source: End, sink: End) -> None:
        nonlocal last
        while data := await source.read():
            last = loop.time()
            await sink.write(data)
        await sink.write_eof()

    async with asyncio.TaskGroup() as group:
        pumps = {group.create_task(pump(a, b)), group.create_task(pump(b, a))}
        while True:
            now = loop.time()
            if now - started >= max_lifetime:
                raise RelayTimedOut("lifetime", max_lifetime)
            if now - last >= idle_timeout:
                raise RelayTimedOut("idle", idle_timeout)
            wake = min(started + max_lifetime, last + idle_timeout) - now
            _, pending = await asyncio.wait(pumps, timeout=wake)
            if not pending:
                return
