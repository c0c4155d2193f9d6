"""Moving bytes for the proxy: raw splicing (passthrough) and a TLS server over memory BIOs.

Both directions run as tasks of one TaskGroup per connection. EOF in one direction is passed on
as a half-close (TCP FIN, or TLS close_notify then FIN) and the other direction keeps going until
it ends too; an error in either direction (a reset, a TLS alert) ends both. Every write is
followed by `drain()`, so a slow reader holds back its writer instead of filling memory.

Termination cannot use `start_tls`: the ClientHello has already been read from the socket to
route the connection, so the TLS server is an `SSLObject` whose incoming BIO is fed those bytes
first and then whatever the client sends next.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

CHUNK = 1 << 16


def _half_close(writer: asyncio.StreamWriter) -> None:
    """Pass an EOF on; the transport may already be gone, which ends the direction all the same."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until EOF, then half-close `writer`."""
    while chunk := await reader.read(CHUNK):
        writer.write(chunk)
        await writer.drain()
    _half_close(writer)


async def splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    backend: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    first: bytes,
) -> None:
    """Send `first` (the buffered hello) to the backend, then copy both ways untouched."""
    backend[1].write(first)
    await backend[1].drain()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(pipe(client[0], backend[1]))
        tg.create_task(pipe(backend[0], client[1]))


class HandshakeFailed(Exception):
    """The client did not complete a TLS handshake with the gateway; the message says how."""


class TlsServer:
    """One terminated client connection: TLS on the client side, plaintext to the backend."""

    def __init__(
        self,
        context: ssl.SSLContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        first: bytes,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._incoming.write(first)
        self._reader = reader
        self._writer = writer

    def _flush(self) -> None:
        """Send what TLS produced. No await sits between producing and writing, so the records
        of the two directions reach the client in the order the TLS object made them."""
        data = self._outgoing.read()
        if data:
            self._writer.write(data)

    async def handshake(self) -> str:
        """Complete the handshake; the negotiated version. `HandshakeFailed` if the client fails."""
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
                        "client closed the connection during the handshake"
                    ) from None
                self._incoming.write(data)
            except ssl.SSLError as exc:
                self._flush()  # the alert, so the client learns why
                raise HandshakeFailed(f"TLS handshake failed: {exc.reason or exc}") from None
        self._flush()
        await self._writer.drain()
        return self._tls.version() or "unknown"

    async def relay(self, backend: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        """Decrypt client to backend and encrypt backend to client until both directions end."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._client_to_backend(backend[1]))
            tg.create_task(self._backend_to_client(backend[0]))

    async def _client_to_backend(self, backend: asyncio.StreamWriter) -> None:
        # Decrypt before the first read: data the client sent along with its Finished message
        # is already in the TLS object, and waiting for more bytes first would stall it.
        # `incoming.eof`: the client's EOF is in and consumed, so no read can ever succeed.
        while not self._decrypt_into(backend) and not self._incoming.eof:
            self._flush()  # post-handshake messages (key updates) answered while reading
            await backend.drain()
            await self._writer.drain()
            data = await self._reader.read(CHUNK)
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
        self._flush()
        await backend.drain()
        await self._writer.drain()
        _half_close(backend)

    def _decrypt_into(self, backend: asyncio.StreamWriter) -> bool:
        """Write every plaintext byte available to `backend`; True once the client's side ended."""
        while True:
            try:
                plain = self._tls.read(CHUNK)
            except ssl.SSLWantReadError:
                return False
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # close_notify, or a TCP EOF without one: many clients end that way, and the
                # backend sees the same EOF it would see from a direct connection.
                return True
            if not plain:
                return True
            backend.write(plain)

    async def _backend_to_client(self, backend: asyncio.StreamReader) -> None:
        while chunk := await backend.read(CHUNK):
            self._tls.write(chunk)
            self._flush()
            await self._writer.drain()
        with contextlib.suppress(ssl.SSLWantReadError):
            self._tls.unwrap()  # sends close_notify; the client's own may come later or never
        self._flush()
        await self._writer.drain()
        _half_close(self._writer)
