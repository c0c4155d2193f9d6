"""`python -m gateway.bench`: what the proxy adds, measured against direct connections in one run.

One process starts, on 127.0.0.1, a bench backend (TLS with a throwaway certificate)
and the proxy with its own throwaway wildcard certificate, in an event loop on a second thread.
The client (blocking sockets on the main thread, verifying certificates) measures, per path:

- latency: TCP connect + TLS handshake + one byte echoed, per fresh connection (p50, p99);
- throughput: MB/s uploading and downloading `--megabytes` on one connection.

Paths: `direct` (TLS straight to the backend), `passthrough` (`<app>-<port>s`, the backend
terminates) and `termination` (`<app>-<port>`, the gateway terminates and speaks TLS again to
the backend, pinned to its registered key). The added latency is each path's percentile minus
the direct one. Client, proxy and backend share one machine and one Python process, so these are
lower bounds on the proxy's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import ssl
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import structlog

from gateway._selfsigned import ThrowawayCA
from gateway._tlsconfig import server_context
from gateway.backend_tls import spki_sha256
from gateway.limits import ProxyLimits
from gateway.proxy import Proxy
from gateway.table import Registration, RouteTable

T = TypeVar("T")
BASE = "bench.gateway.test"
APP = bytes.fromhex("be" * 20)
_BLOCK = os.urandom(1 << 20)
MIB = 1 << 20


async def _bench_backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """`E`: echo to EOF; `U<n>`: read n bytes, answer `ok`; `D<n>`: send n bytes."""
    try:
        command = await reader.readexactly(1)
        if command == b"E":
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
        elif command in (b"U", b"D"):
            size = int.from_bytes(await reader.readexactly(8), "big")
            if command == b"U":
                while size > 0:
                    chunk = await reader.read(min(size, 1 << 18))
                    if not chunk:
                        return
                    size -= len(chunk)
                writer.write(b"ok")
            else:
                view = memoryview(_BLOCK)
                while size > 0:
                    writer.write(view[: min(size, len(view))])
                    size -= len(view)
                    await writer.drain()
            await writer.drain()
            await reader.read()  # until the client closes
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@dataclass(frozen=True)
class PathResult:
    """One path's numbers (milliseconds and MB/s, MB = 10^6 bytes)."""

    p50_ms: float
    p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    upload_mb_s: float
    download_mb_s: float


class Rig:
    """The backend and the proxy, on an event loop in a background thread."""

    def __init__(self, limits: ProxyLimits | None = None) -> None:
        ca = ThrowawayCA.create("tkms bench CA")
        self.client = ssl.create_default_context(cadata=ca.cert_pem.decode())
        app_cert = ca.issue("*." + BASE)
        gateway_cert = ca.issue("*." + BASE)
        self._app_cert = app_cert
        self._backend_tls = server_context(app_cert.chain_pem, app_cert.key_pem)[0]
        self._gateway_cert = gateway_cert
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.Server] = []
        self.table = RouteTable()
        self.proxy = Proxy(self.table, BASE, limits=limits)
        self.ports: dict[str, int] = {}

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> Rig:
        self._thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _start(self) -> None:
        server = await asyncio.start_server(_bench_backend, "127.0.0.1", 0, ssl=self._backend_tls)
        self._servers.append(server)
        self.ports["tls"] = server.sockets[0].getsockname()[1]
        key = spki_sha256(self._app_cert.cert_pem)
        self.table.upsert(Registration(APP, b"\x01" * 20, "127.0.0.1", time.time() + 3600, key))
        self.proxy.set_certificate(self._gateway_cert.chain_pem, self._gateway_cert.key_pem)
        self.ports["proxy"] = await self.proxy.start("127.0.0.1", 0)

    async def _stop(self) -> None:
        await self.proxy.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()

    def paths(self) -> dict[str, tuple[int, str]]:
        """Path name -> (port to connect to, SNI)."""
        tls = self.ports["tls"]
        return {
            "direct": (tls, f"{APP.hex()}-{tls}s.{BASE}"),
            "passthrough": (self.ports["proxy"], f"{APP.hex()}-{tls}s.{BASE}"),
            "termination": (self.ports["proxy"], f"{APP.hex()}-{tls}.{BASE}"),
        }

    def connect(self, port: int, name: str, source: str = "127.0.0.1") -> ssl.SSLSocket:
        """A TLS connection to 127.0.0.1:port from the address `source` (127.0.0.x)."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.client.wrap_socket(sock, server_hostname=name)


def first_byte(rig: Rig, port: int, name: str) -> float:
    start = time.perf_counter()
    with rig.connect(port, name) as tls:
        tls.sendall(b"Ex")
        if tls.recv(1) != b"x":
            raise RuntimeError(f"{name}: the echo did not come back")
        return time.perf_counter() - start


def _upload(rig: Rig, port: int, name: str, size: int) -> float:
    with rig.connect(port, name) as tls:
        start = time.perf_counter()
        tls.sendall(b"U" + size.to_bytes(8, "big"))
        for offset in range(0, size, len(_BLOCK)):
            tls.sendall(memoryview(_BLOCK)[: min(len(_BLOCK), size - offset)])
        if tls.recv(2) != b"ok":
            raise RuntimeError(f"{name}: the upload was not acknowledged")
        return time.perf_counter() - start


def _download(rig: Rig, port: int, name: str, size: int) -> float:
    with rig.connect(port, name) as tls:
        start = time.perf_counter()
        tls.sendall(b"D" + size.to_bytes(8, "big"))
        buffer = bytearray(1 << 18)
        got = 0
        while got < size:
            n = tls.recv_into(buffer)
            if n == 0:
                raise RuntimeError(f"{name}: the download ended after {got} bytes")
            got += n
        return time.perf_counter() - start


def percentile(samples: list[float], q: int) -> float:
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def run(connections: int, megabytes: int, progress: Callable[[str], None]) -> dict[str, PathResult]:
    """Measure every path; `progress` gets a line as each one starts."""
    size = megabytes * MIB
    latencies: dict[str, list[float]] = {}
    rates: dict[str, tuple[float, float]] = {}
    with Rig() as rig:
        paths = rig.paths()
        for port, name in paths.values():  # warm up: imports, first handshakes, page faults
            first_byte(rig, port, name)
        # Interleaved, so that drift in machine load hits every path alike.
        for _ in range(connections):
            for path, (port, name) in paths.items():
                latencies.setdefault(path, []).append(first_byte(rig, port, name))
        for path, (port, name) in paths.items():
            progress(f"{path}: {megabytes} MiB up and down")
            up = _upload(rig, port, name, size)
            down = _download(rig, port, name, size)
            rates[path] = (size / up / 1e6, size / down / 1e6)
        stats = rig.proxy.stats
    expected = 2 * (connections + 1) + 4
    if stats["passthrough"] + stats["terminated"] != expected:
        raise RuntimeError(f"the proxy routed {stats} connections, expected {expected}")
    base50 = percentile(latencies["direct"], 50)
    base99 = percentile(latencies["direct"], 99)
    results = {}
    for path, samples in latencies.items():
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        results[path] = PathResult(
            p50_ms=round(p50 * 1e3, 3),
            p99_ms=round(p99 * 1e3, 3),
            added_p50_ms=round((p50 - base50) * 1e3, 3),
            added_p99_ms=round((p99 - base99) * 1e3, 3),
            upload_mb_s=round(rates[path][0], 1),
            download_mb_s=round(rates[path][1], 1),
        )
    return results


def _table(results: dict[str, PathResult]) -> str:
    header = ("path", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "up MB/s", "down MB/s")
    rows = [header] + [
        (path, *(f"{v:.2f}" if "ms" in k else f"{v:.0f}" for k, v in asdict(r).items()))
        for path, r in results.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--connections", type=int, default=200, help="connections per path (latency)"
    )
    parser.add_argument(
        "--megabytes", type=int, default=32, help="MiB each way per path (throughput)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.megabytes < 1:
        parser.error("--connections and --megabytes must be at least 1")

    # Per-connection debug lines would flood the output and slow the proxy being measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    progress(f"{args.connections} connections per path, interleaved")
    results = run(args.connections, args.megabytes, progress)
    if args.json:
        doc = {
            "connections": args.connections,
            "megabytes": args.megabytes,
            "paths": {path: asdict(r) for path, r in results.items()},
        }
        print(json.dumps(doc, indent=2))
    else:
        print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
