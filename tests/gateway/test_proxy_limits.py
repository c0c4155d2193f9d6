"""What one client can cost the proxy: parse work for a dribbled hello, connections held,
idle relays, log lines per refused connection. Real sockets on 127.0.0.x."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from tests.gateway.test_proxy import APP, gateway, name, run
from tests.gateway.tlsfixtures import client_hello, closed_without_reply, resplit

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
