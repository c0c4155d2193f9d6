"""The node's health signal and its HTTP endpoint (`/health`, `/metrics`).

Normal: an active share, a fresh chain view, and every committee peer reachable.
Degraded: still serving, but fewer than n (and at least t) peers are reachable, or the chain
view is older than half the stale bound. Down: no active share, a stale chain view, fewer
than t reachable members (counting itself), or draining. The same value drives gRPC health
checking (SERVING iff not Down) and `tkms_health`.
"""

from __future__ import annotations

import enum
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Health(enum.IntEnum):
    DOWN = 0
    DEGRADED = 1
    NORMAL = 2


@dataclass(frozen=True, slots=True)
class HealthInputs:
    has_share: bool
    chain_head_age: float
    max_head_age: float
    members: int
    threshold: int
    peers_reachable: int  # other members reachable, not counting this node
    draining: bool = False


def compute_health(h: HealthInputs) -> tuple[Health, str]:
    """The health value and the reason for it."""
    if h.draining:
        return Health.DOWN, "draining"
    if not h.has_share:
        return Health.DOWN, "no active key share"
    if h.chain_head_age > h.max_head_age:
        return Health.DOWN, f"chain view stale ({h.chain_head_age:.0f}s > {h.max_head_age:.0f}s)"
    up = h.peers_reachable + 1
    if up < h.threshold:
        return Health.DOWN, f"only {up} of {h.members} members reachable, threshold {h.threshold}"
    if up < h.members:
        return Health.DEGRADED, f"{up} of {h.members} members reachable"
    if h.chain_head_age > h.max_head_age / 2:
        return Health.DEGRADED, f"chain view lagging ({h.chain_head_age:.0f}s)"
    return Health.NORMAL, "ok"


@dataclass(frozen=True, slots=True)
class HealthReport:
    health: str
    reason: str
    epoch: int
    generation: int


class StatusHttpServer:
    """A tiny threaded HTTP server for `/health` (JSON) and `/metrics` (Prometheus text)."""

    def __init__(
        self, host: str, port: int, report: Callable[[], HealthReport], metrics: Callable[[], bytes]
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, ctype, status = outer._metrics(), "text/plain; version=0.0.4", 200
                elif self.path == "/health":
                    r = outer._report()
                    body = json.dumps(asdict(r)).encode()
                    ctype, status = "application/json", 200 if r.health != "DOWN" else 503
                else:
                    body, ctype, status = b'{"error": "not found"}', "application/json", 404
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._report = report
        self._metrics = metrics
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tkms-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
