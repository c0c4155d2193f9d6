"""The relay's HTTP endpoint for local clients (runs in .venv-relay).

    GET /v1/manifest?after=N&wait=S   the newest verified envelope (application/octet-stream,
                                      header X-Tkms-Epoch) once its epoch exceeds N, waiting
                                      up to S seconds (at most 30); 204 if none came
    GET /v1/health                    JSON: the newest epoch and, for each member that sent
                                      one, its newest verified health note (and the envelope,
                                      hex, to check against the manifest's TLS pins)
    GET /v1/revocations               JSON: the newest epoch's verified revocation notices
                                      (subject, envelope hex: verify against the manifest)
    GET /v1/status                    JSON: peer id, listen addresses, newest epoch, counts

Clients never trust this endpoint: they verify the envelope against their own fingerprint
(`guest.relay_check`). HTTP/1.0, one request per connection, bounded request size.
"""

from __future__ import annotations

import json
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


async def answer(relay: Relay, request_line: str) -> bytes:
    parts = request_line.split()
    if len(parts) != 3 or parts[0] != "GET":
        return _text("400 Bad Request", "only GET requests are served")
    url = urlsplit(parts[1])
    query = parse_qs(url.query)
    if url.path == "/v1/status":
        store = relay.store
        status = {
            "peer_id": relay.peer_id,
            "addrs": relay.addrs,
            "epoch": store.newest_epoch,
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
            for note, envelope in relay.store.health.values()
        ]
        body = json.dumps({"epoch": relay.store.newest_epoch, "nodes": notes}).encode()
        return _response("200 OK", body, "application/json")
    if url.path == "/v1/revocations":
        notices = [
            {"kind": n.kind, "subject": "0x" + n.subject.hex(), "envelope": envelope.hex()}
            for n, envelope in relay.store.revocations.values()
        ]
        body = json.dumps({"epoch": relay.store.newest_epoch, "notices": notices}).encode()
        return _response("200 OK", body, "application/json")
    if url.path != "/v1/manifest":
        return _text("404 Not Found", f"no such path {url.path!r}")
    try:
        after = int(query.get("after", ["0"])[0])
        wait = min(float(query.get("wait", ["0"])[0]), MAX_WAIT)
    except ValueError:
        return _text("400 Bad Request", "after must be an integer and wait a number")
    if after < 0 or wait < 0:
        return _text("400 Bad Request", "after and wait must not be negative")
    envelope = await relay.wait_newer(after, wait)
    if not envelope:
        return _response("204 No Content", b"", "application/octet-stream")
    epoch = f"X-Tkms-Epoch: {relay.store.newest_epoch}\r\n"
    return _response("200 OK", envelope, "application/octet-stream", epoch)


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
