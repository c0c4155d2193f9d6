"""The relay's HTTP endpoint for local clients (runs in .venv-relay).

    GET /v1/manifest?generation=G&after=N&wait=S
                                      the newest verified envelope of generation G (default:
                                      the newest generation; application/octet-stream, headers
                                      X-Tkms-Generation and X-Tkms-Epoch) once its epoch
                                      exceeds N, waiting up to S seconds (at most 30); 204 if
                                      none came
    GET /v1/health                    JSON: the newest epoch and, for each member that sent
                                      one, its newest verified health note (and the envelope,
                                      hex, to check against the manifest's TLS pins)
    GET /v1/revocations?generation=G  JSON: the verified revocation notices of generation G's
                                      newest epoch (default: the newest generation's; subject,
                                      envelope hex: verify against the manifest)
    GET /v1/status                    JSON: peer id, listen addresses, newest epoch, the newest
                                      epoch of each held generation, counts

A parameter that is not a number, negative or given twice gets 400 naming it. Clients never
trust this endpoint: they verify the envelope against their own fingerprint
(`guest.relay_check`). HTTP/1.0, one request per connection, bounded request size.
"""

from __future__ import annotations

import json
import math
from typing import Final
from urllib.parse import parse_qs, urlsplit

import trio

from relay.gossip import Relay

MAX_REQUEST: Final = 8192
MAX_WAIT: Final = 30.0


def _response(status: str, body: bytes, kind: str, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _text(status: str, message: str) -> bytes:
    return _response(status, message.encode() + b"\n", "text/plain; charset=utf-8")


async def _read_request(stream: trio.SocketStream) -> str:
    data = b""
    with trio.move_on_after(10):
        while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


class BadParameter(ValueError):
    """A query parameter the relay cannot use: the message names it."""


def _number(query: dict[str, list[str]], name: str, *, integer: bool) -> float:
    """Query parameter `name` (0 when absent): a non-negative integer, or finite number."""
    values = query.get(name, ["0"])
    if len(values) != 1:
        raise BadParameter(f"{name} is given {len(values)} times; give it once")
    try:
        value = int(values[0]) if integer else float(values[0])
    except ValueError:
        kind = "an integer" if integer else "a number of seconds"
        raise BadParameter(f"{name} must be {kind}, got {values[0][:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadParameter(f"{name} must not be negative, got {values[0][:40]!r}")
    return value


async def answer(relay: Relay, request_line: str) -> bytes:
    parts = request_line.split()
    if len(parts) != 3 or parts[0] != "GET":
        return _text("400 Bad Request", "only GET requests are served")
    url = urlsplit(parts[1])
    query = parse_qs(url.query, keep_blank_values=True)
    store = relay.store
    if url.path == "/v1/status":
        status = {
            "peer_id": relay.peer_id,
            "addrs": relay.addrs,
            "epoch": store.newest_epoch,
            "generations": {str(g): held.epoch for g, held in sorted(store.held.items())},
            "accepted": store.accepted,
            "dropped": store.dropped,
        }
        return _response("200 OK", json.dumps(status).encode(), "application/json")
    if url.path == "/v1/health":
        notes = [
            {
                "address": "0x" + note.address.hex(),
                "health": note.health_name,
                "reason": note.reason,
                "head": note.head,
                "issued_ms": note.issued_ms,
                "envelope": envelope.hex(),
            }
            for note, envelope in store.health.values()
        ]
        body = json.dumps({"epoch": store.newest_epoch, "nodes": notes}).encode()
        return _response("200 OK", body, "application/json")
    if url.path not in ("/v1/revocations", "/v1/manifest"):
        return _text("404 Not Found", f"no such path {url.path!r}")
    try:
        generation = int(_number(query, "generation", integer=True))
        after = int(_number(query, "after", integer=True))
        wait = min(_number(query, "wait", integer=False), MAX_WAIT)
    except BadParameter as exc:
        return _text("400 Bad Request", str(exc))
    if url.path == "/v1/revocations":
        generation = generation or store.newest_generation
        held = store.of(generation)
        notices = [
            {"kind": n.kind, "subject": "0x" + n.subject.hex(), "envelope": envelope.hex()}
            for n, envelope in store.revocations.get(generation, {}).values()
        ]
        doc = {"generation": generation, "epoch": 0 if held is None else held.epoch}
        body = json.dumps({**doc, "notices": notices}).encode()
        return _response("200 OK", body, "application/json")
    found = await relay.wait_newer(after, wait, generation)
    if found is None:
        return _response("204 No Content", b"", "application/octet-stream")
    headers = f"X-Tkms-Generation: {found.manifest.generation}\r\nX-Tkms-Epoch: {found.epoch}\r\n"
    return _response("200 OK", found.envelope, "application/octet-stream", headers)


async def serve_http(relay: Relay, host: str, port: int, ready: trio.Event | None = None) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                line = await _read_request(stream)
                await stream.send_all(await answer(relay, line))
            except trio.BrokenResourceError:
                pass  # the client went away

    listeners = await trio.open_tcp_listeners(port, host=host)
    relay.emit({"event": "http", "address": f"{host}:{listeners[0].socket.getsockname()[1]}"})
    await trio.serve_listeners(handle, listeners)
