"""What one client can cost the proxy: parse work for a dribbled hello, connections held,
idle relays, log lines per refused connection. Real sockets on 127.0.0.x."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.limits import ProxyLimits, client_of
from tests.gateway.test_proxy import APP, gateway, name, run
from tests.gateway.tlsfixtures import Backend, client_hello, closed_without_reply, resplit

_GATEWAY = str(Path(__file__).resolve().parents[2] / "gateway")


class LineCounter:
    """Counts the Python lines executed in gateway/ on this thread (settrace): parse work, in a
    unit that does not depend on the machine's speed or load."""

    def __init__(self) -> None:
        self.lines = 0

    def _local(self, frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        if event == "line":
            self.lines += 1
        return self._local

    def _global(self, frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        return self._local if frame.f_code.co_filename.startswith(_GATEWAY) else None

    def __enter__(self) -> LineCounter:
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)


async def _send_hello(port: int, records: list[bytes], pause: float) -> None:
    """Send `records` one per write (a pause after each, so each arrives in its own read),
    until the gateway closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in records:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(pause)
        writer.write_eof()
        await closed_without_reply(reader)
    except OSError:
        pass  # the gateway gave up on this hello and reset the connection
    finally:
        writer.close()


def _records(hello: bytes) -> list[bytes]:
    """`hello`'s handshake message in one-byte records, each a bytes object of its own."""
    split = resplit(hello, list(range(1, len(hello))))
    return [split[i : i + 6] for i in range(0, len(split), 6)]


def test_a_hello_dribbled_in_one_byte_records_costs_no_more_than_a_whole_one() -> None:
    """G-04: re-parsing the whole buffer after every read made a hello in n one-byte records
    cost O(n^2) on the event loop (2 s of CPU for 16 KiB). Measured in lines executed."""
    hello = client_hello(name(APP, 443, passthrough=True))

    async def scenario() -> tuple[int, int, dict[str, int]]:
        async with gateway() as gw:
            with LineCounter() as whole:
                await _send_hello(gw.port, [hello], 0.0)
            with LineCounter() as dribbled:
                await _send_hello(gw.port, _records(hello), 0.002)
            return whole.lines, dribbled.lines, gw.refusals()

    whole, dribbled, refusals = run(scenario())
    assert len(_records(hello)) > 400
    assert dribbled <= 3 * whole, f"{dribbled} lines for the dribbled hello, {whole} whole"
    # Whole: parsed once, refused as no_backend. Dribbled: refused after a few records.
    assert refusals == {"refused_no_backend": 1, "refused_hello_malformed": 1}


async def _open(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_a_client_at_its_cap_is_refused_while_another_client_gets_in() -> None:
    """G-05: nothing limited connections per client; ~505 idle ones from one client locked
    everyone out at a 1024-descriptor limit."""

    async def scenario() -> None:
        backend = await Backend("127.0.0.1").start()
        async with gateway(max_connections_per_client=5) as gw:
            gw.register(1)
            held = [await _open(gw.port, "127.0.0.2") for _ in range(5)]
            await _until(lambda: gw.proxy.stats["active"] == 5)
            with capture_logs() as logs:
                reader, _ = await _open(gw.port, "127.0.0.2")  # the sixth
                assert await closed_without_reply(reader)
            assert gw.refusals() == {"refused_client_limit": 1}
            refused = [e for e in logs if e["event"] == "connection refused"]
            assert refused[0]["reason"] == "client_limit"
            # another client is served meanwhile, and the first gets in again once one closes
            reader, writer = await _open(gw.port, "127.0.0.1")
            hello = client_hello(name(APP, backend.port, passthrough=True))
            writer.write(hello)
            assert await reader.readexactly(len(hello)) == hello  # echoed by the backend
            writer.close()
            held[0][1].close()
            await _until(lambda: gw.proxy.stats["active"] == 4)
            reader, writer = await _open(gw.port, "127.0.0.2")
            writer.write(hello)
            assert await reader.readexactly(len(hello)) == hello
            for _, w in [*held, (reader, writer)]:
                w.close()

    run(scenario())


def test_the_total_cap_holds_across_clients() -> None:
    async def scenario() -> None:
        async with gateway(max_connections=3) as gw:
            held = [await _open(gw.port, f"127.0.0.{i}") for i in (2, 3, 4)]
            await _until(lambda: gw.proxy.stats["active"] == 3)
            reader, _ = await _open(gw.port, "127.0.0.5")
            assert await closed_without_reply(reader)
            assert gw.refusals() == {"refused_total_limit": 1}
            for _, writer in held:
                writer.close()

    run(scenario())


def test_an_idle_relay_is_closed_and_a_busy_one_is_not() -> None:
    """G-05: a routed connection with no traffic was never closed."""

    async def scenario() -> None:
        backend = await Backend("127.0.0.1").start()
        async with gateway(idle_timeout=0.4) as gw:
            gw.register(1)
            hello = client_hello(name(APP, backend.port, passthrough=True))
            idle_reader, idle = await _open(gw.port, "127.0.0.2")
            busy_reader, busy = await _open(gw.port, "127.0.0.3")
            for reader, writer in ((idle_reader, idle), (busy_reader, busy)):
                writer.write(hello)
                assert await reader.readexactly(len(hello)) == hello
            for _ in range(8):  # 1.2 s of traffic, a byte every 0.15 s
                await asyncio.sleep(0.15)
                busy.write(b"x")
                assert await busy_reader.readexactly(1) == b"x"
            assert await idle_reader.read() == b""  # closed by the gateway, well before
            assert gw.proxy.stats["closed_idle"] == 1
            assert not busy.is_closing()
            busy.close()

    run(scenario())


def test_a_relay_is_closed_at_its_maximum_lifetime_however_busy() -> None:
    async def scenario() -> None:
        backend = await Backend("127.0.0.1").start()
        async with gateway(max_lifetime=0.5) as gw:
            gw.register(1)
            hello = client_hello(name(APP, backend.port, passthrough=True))
            reader, writer = await _open(gw.port, "127.0.0.2")
            writer.write(hello)
            assert await reader.readexactly(len(hello)) == hello
            loop = asyncio.get_running_loop()
            started = loop.time()
            with contextlib.suppress(ConnectionResetError, asyncio.IncompleteReadError):
                while loop.time() - started < 5:
                    writer.write(b"y")
                    await reader.readexactly(1)
                    await asyncio.sleep(0.05)
            assert loop.time() - started < 2
            assert gw.proxy.stats["closed_lifetime"] == 1

    run(scenario())


def test_refused_connections_do_not_grow_the_log_beyond_its_rate() -> None:
    """G-05: every refused connection was a log line (56 MB in 35 s under attack)."""

    async def scenario() -> None:
        async with gateway(log_burst=5, log_per_second=0.01) as gw:
            with capture_logs() as logs:
                for _ in range(60):
                    reader, writer = await _open(gw.port, "127.0.0.2")
                    writer.write(b"GET / HTTP/1.1\r\n\r\n")
                    assert await closed_without_reply(reader)
                    writer.close()
            assert gw.refusals() == {"refused_hello_malformed": 60}  # every one counted
            lines = [e for e in logs if e["event"] == "connection refused"]
            assert len(lines) == 5

    run(scenario())


def test_clients_are_addresses_and_ipv6_slash_64s() -> None:
    assert client_of("192.0.2.7") == "192.0.2.7"
    assert client_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_of("2001:db8:1:2:aaaa::1") == client_of("2001:db8:1:2:bbbb::9")
    assert client_of("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_of("2001:db8:1:3::1") != client_of("2001:db8:1:2::1")
    assert client_of("fe80::1%eth0") == "fe80::/64"


@pytest.mark.parametrize("field", ["max_connections", "idle_timeout", "log_burst"])
@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), True, "5"])
def test_limits_must_be_positive_numbers(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ProxyLimits(**{field: value})  # type: ignore[arg-type]


_FD_PROBE = """
import json, resource, sys
from gateway.daemon import fitted_limits
from gateway.limits import ProxyLimits
resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[1])))
limits = fitted_limits(ProxyLimits(max_connections=8192, max_connections_per_client=500))
print(json.dumps([resource.getrlimit(resource.RLIMIT_NOFILE)[0], limits.max_connections,
                  limits.max_connections_per_client]))
"""


def _fitted(hard: int) -> list[int]:
    """[soft limit, connection cap, per-client cap] after `fitted_limits` under `hard`."""
    out = subprocess.run(
        [sys.executable, "-c", _FD_PROBE, str(hard)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(out.stdout.splitlines()[-1]))


def test_the_open_files_limit_is_raised_and_the_cap_fits_it() -> None:
    """G-05: the gateway ran at the inherited soft limit (1024 under systemd)."""
    assert _fitted(1024) == [1024, 384, 384]  # the cap shrinks to what the descriptors allow
    hard = min(20000, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    soft = min(hard, 2 * 8192 + 256)  # two descriptors a connection, plus the reserve
    cap = min(8192, (soft - 256) // 2)
    assert _fitted(hard) == [soft, cap, min(500, cap)]


def test_the_load_bench_shows_a_hoarder_held_to_its_cap_and_no_request_lost() -> None:
    """The bounded load run behind docs/gateway-proxy.md's numbers: one client tries to hold
    many idle connections while another makes requests (loopback, fixed counts)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.loadbench",
            "--requests",
            "10",
            "--hold",
            "120",
            "--per-client",
            "40",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout)
    assert (result["hoarder_held"], result["hoarder_refused"]) == (40, 80)
    assert result["proxy_refused_client_limit"] == 80
    assert (result["legit_requests"], result["legit_failures"]) == (20, 0)
    assert 0 < result["baseline_p50_ms"] <= result["baseline_p99_ms"]
    assert 0 < result["hoarded_p50_ms"] <= result["hoarded_p99_ms"]
