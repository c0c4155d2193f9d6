"""TLS material and real-socket peers for the proxy tests: a throwaway CA, backends, clients.

Everything listens on 127.0.0.x with a free port and lives inside the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway._selfsigned import Issued, ThrowawayCA
from gateway._tlsconfig import server_context

BASE = "gw.example.test"


def client_hello(server_name: str | None, alpn: Iterable[str] = ()) -> bytes:
    """The first flight Python's own TLS client sends for this server name and ALPN list."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    protocols = list(alpn)
    if protocols:
        context.set_alpn_protocols(protocols)
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def record(fragment: bytes, content_type: int = 0x16) -> bytes:
    return bytes([content_type, 3, 1]) + len(fragment).to_bytes(2, "big") + fragment


def resplit(data: bytes, cuts: list[int]) -> bytes:
    """The same handshake message carried in several records, cut at `cuts`."""
    length = int.from_bytes(data[3:5], "big")
    message, rest = data[5 : 5 + length], data[5 + length :]
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(message)}), len(message)]
    return b"".join(record(message[a:b]) for a, b in itertools.pairwise(bounds)) + rest


def backend_context(issued: Issued) -> ssl.SSLContext:
    """A server context for a test backend, built by the gateway's in-memory loader."""
    return server_context(issued.chain_pem, issued.key_pem)[0]


def client_context(ca: ThrowawayCA) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    return context


@dataclass
class Backend:
    """An echo server: each connection's received bytes are kept, and echoed back."""

    host: str
    tls: ssl.SSLContext | None = None
    port: int = 0
    received: list[bytearray] = field(default_factory=list)
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self, port: int = 0) -> Backend:
        self.server = await asyncio.start_server(self._echo, self.host, port, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        self.received.append(got)
        self.writers.append(writer)
        try:
            while chunk := await reader.read(1 << 16):
                got += chunk
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            pass
        finally:
            writer.close()

    async def kill(self) -> None:
        """Stop listening and drop every connection, as a crashed backend would."""
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


@dataclass
class Sink:
    """A TCP server (TLS with `tls`) that reads until EOF, then answers with the byte count and
    closes."""

    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None
    port: int = 0
    received: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> Sink:
        self.server = await asyncio.start_server(self._sink, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _sink(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.tls is not None:
            tls = MemoryTls((reader, writer), self.tls, server_side=True)
            await tls.handshake()
            data = await tls.read_until_eof()  # until the client's close_notify or FIN
            self.received.append(data)
            await tls.send(b"got %d" % len(data))
            await tls.close_write()
            writer.close()
            return
        data = await reader.read()  # until the client's half-close
        self.received.append(data)
        writer.write(b"got %d" % len(data))
        await writer.drain()
        writer.close()


async def tls_connect(
    port: int, server_name: str, ca: ThrowawayCA
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A verified TLS connection to 127.0.0.1:port; also the SHA-256 of the peer's certificate."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(ca), server_hostname=server_name
    )
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True)
    return reader, writer, hashlib.sha256(der).digest()


async def echo_roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    """Send `data` and read as many bytes back (concurrently, so large sizes cannot deadlock)."""

    async def send() -> None:
        writer.write(data)
        await writer.drain()

    sender = asyncio.create_task(send())
    received = await reader.readexactly(len(data))
    await sender
    return received


async def closed_without_reply(reader: asyncio.StreamReader) -> bool:
    """True if the peer closes without sending a byte (within 5 s)."""
    try:
        return await asyncio.wait_for(reader.read(1), 5) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


class MemoryTls:
    """TLS over a plain stream (an `SSLObject`), either side, which, unlike asyncio's TLS
    streams, can half-close: send close_notify and FIN, then keep reading."""

    def __init__(
        self,
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        name: str | None = None,
    ) -> None:
        self.reader, self.writer = stream
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=name
        )

    async def _flush(self) -> None:
        self.writer.write(self.outgoing.read())
        await self.writer.drain()

    async def _feed(self) -> bool:
        data = await self.reader.read(1 << 16)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        return bool(data)

    async def handshake(self, first_data: bytes = b"") -> bytes:
        """Complete the handshake; the SHA-256 of the peer's certificate (b"" without one).

        `first_data` goes out in the same write as the client's Finished message."""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
        if first_data:
            self.tls.write(first_data)
        await self._flush()
        der = self.tls.getpeercert(binary_form=True)
        return hashlib.sha256(der).digest() if der is not None else b""

    async def send(self, data: bytes) -> None:
        self.tls.write(data)
        await self._flush()

    async def close_write(self) -> None:
        """close_notify, then FIN: the server may still answer."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        await self._flush()
        self.writer.write_eof()

    async def read_until_eof(self) -> bytes:
        """Everything the server sends until its close_notify (or its FIN)."""
        out = bytearray()
        while True:
            try:
                chunk = self.tls.read(1 << 16)
            except ssl.SSLWantReadError:
                await self._feed()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return bytes(out)
            if not chunk:
                return bytes(out)
            out += chunk


class MemoryTlsClient(MemoryTls):
    """A client that trusts `ca` and sends `name` as its SNI."""

    def __init__(
        self, stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], ca: ThrowawayCA, name: str
    ) -> None:
        super().__init__(stream, client_context(ca), name=name)
