"""The guest agent's HTTP servers on unix sockets (the endpoints: `guest.api`, `guest.tappd`).

POST (or GET) a route with a JSON object; JSON replies. A malformed request gets 400
`{"error": ...}` naming what is wrong, an unknown path 404, keys the agent does not serve now
the status `guest.serving` gives (403 revoked, 404 a generation not held, 410 retired, 503
cannot confirm) with the reason, and the server keeps serving.
Request lines and bodies are not logged: they may carry key material.

Routes, as dstack serves them: the dstack socket has `DstackGuest` at `/<Method>` (and, so
that a `TappdClient` pointed at it works too, `Tappd` at `/prpc/Tappd.<Method>`); the legacy
tappd socket has `Tappd` at `/prpc/Tappd.<Method>` and `/prpc/<Method>`.
"""

from __future__ import annotations

import json
import os
import socketserver
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from guest import keys, tappd
from guest.agent import Agent
from guest.api import ENDPOINTS, BadRequest, Body, Endpoint
from guest.serving import KeysWithheld

Routes = dict[str, Endpoint]

#: The dstack socket (`/var/run/dstack.sock`).
DSTACK_ROUTES: Routes = {
    **ENDPOINTS,
    **{f"prpc/Tappd.{name}": fn for name, fn in tappd.ENDPOINTS.items()},
}
#: The legacy tappd socket (`/var/run/tappd.sock`).
TAPPD_ROUTES: Routes = {
    **{f"prpc/Tappd.{name}": fn for name, fn in tappd.ENDPOINTS.items()},
    **{f"prpc/{name}": fn for name, fn in tappd.ENDPOINTS.items()},
}

_MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A garbage request line is answered with a status line and headers, not as HTTP/0.9.
    default_request_version = "HTTP/1.0"
    server: AgentServer

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines are not logged: paths and bodies may carry key material

    def _reply(self, status: int, doc: Body) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, headers, method) as JSON, then close."""
        self.close_connection = True
        data = json.dumps({"error": message or self.responses.get(code, ("error",))[0]}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200:
            self.wfile.write(data)

    def _body(self) -> Body:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise BadRequest("chunked bodies are not supported: send Content-Length")
        length_text = self.headers.get("Content-Length", "0")
        try:
            length = int(length_text)
        except ValueError:
            raise BadRequest(f"bad Content-Length {length_text[:20]!r}") from None
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            raise BadRequest(f"body must be at most {_MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise BadRequest("body must be a JSON object")
        return doc

    def _dispatch(self) -> None:
        name = self.path.split("?", 1)[0].strip("/")
        endpoint = self.server.routes.get(name)
        try:
            body = self._body()
        except BadRequest as exc:
            self.close_connection = True  # the rest of the stream cannot be trusted to frame
            self._reply(400, {"error": str(exc)})
            return
        if endpoint is None:
            self._reply(404, {"error": f"no such endpoint: {self.path[:100]}"})
            return
        try:
            self._reply(200, endpoint(self.server.agent, body))
        except (BadRequest, keys.KeyRequestError) as exc:
            self._reply(400, {"error": str(exc)})
        except KeysWithheld as exc:
            self._reply(exc.status, {"error": f"{name}: {exc}"})
        except Exception as exc:  # the agent must keep serving; the client learns what failed
            self._reply(500, {"error": f"{name} failed: {type(exc).__name__}: {exc}"})

    do_POST = _dispatch
    do_GET = _dispatch


class AgentServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, agent: Agent, routes: Routes = DSTACK_ROUTES) -> None:
        self.agent = agent
        self.routes = routes
        if path.is_socket():
            path.unlink()
        super().__init__(str(path), Handler)
        os.chmod(path, 0o660)
