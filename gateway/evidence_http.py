"""The gateway's own HTTPS site, `https://gateway.<base_domain>/` (docs/gateway-evidence.md).

The proxy terminates TLS for that name with the wildcard certificate, as dstack's gateway does
for its own name, and hands the plaintext end here instead of to a backend. One request per
connection (HTTP/1.1 with `Connection: close`), GET only, a request head of at most 8 KiB:

    GET /.dstack/index                 the paths served
    GET /.dstack/app-info              the gateway CVM's /Info (dstack's shape)
    GET /.dstack/acme-info             dstack's AcmeInfoResponse: account quote, quoted keys
    GET /.dstack/challenge?nonce=HEX   a quote made now over (nonce, live key, account)
    GET /health                        200

Everything is public evidence: answers carry `Access-Control-Allow-Origin: *` so that a
verification page in any browser can read them, and `Cache-Control: no-store`. Evidence that
cannot be produced is a 503 with `{"error": ...}`, never a 200 with empty fields. Challenges
cost a quote each: `rate` per client and second (`burst` at once), else 429.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from gateway._relay import End
from gateway.evidence import EvidenceError, GatewayEvidence
from gateway.limits import RateLimit

log = structlog.get_logger("tkms.gateway.evidence")

MAX_HEAD = 8192
PATHS = ("/index", "/app-info", "/acme-info", "/challenge")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_head(end: End) -> bytes:
    """The request head up to its blank line (BadRequest past MAX_HEAD or at EOF)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise BadRequest(431, f"request head longer than {MAX_HEAD} bytes")
        chunk = await end.read()
        if not chunk:
            raise BadRequest(400, "the connection ended before the request head did")
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0]


def parse_request_line(head: bytes) -> tuple[str, str, dict[str, list[str]]]:
    """(method, path, query) of the request line; BadRequest if it is not one."""
    line = head.split(b"\r\n", 1)[0]
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest(400, f"unsupported protocol {version[:16]!r}")
    url = urlsplit(target)
    return method, url.path, parse_qs(url.query, max_num_fields=8)


def _response(status: int, body: dict[str, Any] | list[Any]) -> bytes:
    payload = json.dumps(body, indent=1).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Cache-Control: no-store\r\n"
        "Access-Control-Allow-Origin: *\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + payload


class EvidenceSite:
    """`serve(end, client)` answers one request on a terminated `gateway.<base>` connection."""

    def __init__(
        self,
        evidence: GatewayEvidence,
        base_domain: str,
        *,
        challenges: RateLimit | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.evidence = evidence
        self.name = f"gateway.{base_domain.lower().rstrip('.')}"
        self.challenges = challenges or RateLimit(rate=2.0, burst=10)
        self.timeout = timeout

    async def serve(self, end: End, client: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                status, body = await self._answer(end, client)
                await end.write(_response(status, body))
                await end.write_eof()
        except TimeoutError:
            log.info("evidence request timed out", client=client)

    async def _answer(self, end: End, client: str) -> tuple[int, dict[str, Any] | list[Any]]:
        try:
            method, path, query = parse_request_line(await read_head(end))
            if method != "GET":
                raise BadRequest(405, f"{method[:16]} is not served here: GET only")
            return 200, await self._route(path, query, client)
        except BadRequest as exc:
            return exc.status, {"error": str(exc)}
        except EvidenceError as exc:
            log.error("evidence_unavailable", error=str(exc))
            return 503, {"error": str(exc)}

    async def _route(self, path: str, query: dict[str, list[str]], client: str) -> Any:
        if path == "/health":
            return {"status": "ok"}
        sub = path.removeprefix("/.dstack")
        if sub == path or sub not in PATHS:
            raise BadRequest(404, f"no such path {path[:64]!r}; see /.dstack/index")
        if sub == "/index":
            return {"type": "tkms gateway", "paths": list(PATHS)}
        if sub == "/app-info":
            return await asyncio.to_thread(self.evidence.app_info)
        if sub == "/acme-info":
            return self.evidence.acme_info()
        values = query.get("nonce", [])
        if len(values) != 1:
            raise BadRequest(400, "challenge needs exactly one nonce=HEX (16..64 bytes)")
        try:
            nonce = bytes.fromhex(values[0])
        except ValueError:
            raise BadRequest(400, "nonce is not hex") from None
        if not self.challenges.allow(client):
            raise BadRequest(429, "too many challenges from this client; try again in a second")
        try:
            return await asyncio.to_thread(self.evidence.challenge, nonce)
        except ValueError as exc:
            raise BadRequest(400, str(exc)) from None
