"""The node's health signal and its HTTP endpoint (`/health`, `/metrics`).

Health is what the node can do now. Normal: an active share, a fresh chain view, and every
committee member answering. Degraded: still serving, but fewer than n (and at least t)
members answer, the chain view is older than half the stale bound, or an RPC endpoint
answered against the quorum in the last minute. Down: no active share, a stale chain view,
RPC endpoints that disagree (no quorum), fewer than t members answering (counting itself),
or draining. Members
"answer" when their probe (`node.liveness`) succeeded within the last few seconds, so killed
or silent members take the node DOWN within seconds. The same value drives gRPC health
checking (SERVING iff not Down) and `tkms_health`; `own_problem` alone (the node's own
share, view and drain state) drives the `SELF_SERVICE` answer the other members probe.

Reasons are stable while the state is (no ages or clocks in them): the daemon logs
`health_changed` when the value or the reason changes, so a log holds transitions only.
"""

from __future__ import annotations

import enum
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from node.logs import get_logger

log = get_logger("tkms.node.health")


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
    peers_reachable: int  # other members answering now, not counting this node
    draining: bool = False
    #: The RPC endpoints disagree about the chain (no quorum): no key is released.
    chain_disagreement: bool = False
    #: RPC endpoints (URLs redacted) that answered against the quorum recently.
    rpc_diverged: tuple[str, ...] = ()


def own_problem(h: HealthInputs) -> str | None:
    """Why this node cannot give partials on its own, or None if it can."""
    if h.draining:
        return "draining"
    if h.chain_disagreement:
        named = f": diverged {', '.join(h.rpc_diverged)}" if h.rpc_diverged else ""
        return f"chain RPC endpoints disagree (no quorum){named}"
    if not h.has_share:
        return "no active key share"
    if h.chain_head_age > h.max_head_age:
        return f"chain view stale (older than {h.max_head_age:g}s)"
    return None


def compute_health(h: HealthInputs) -> tuple[Health, str]:
    """The health value and the reason for it."""
    problem = own_problem(h)
    if problem is not None:
        return Health.DOWN, problem
    up = h.peers_reachable + 1
    if up < h.threshold:
        return Health.DOWN, f"only {up} of {h.members} members answer, threshold {h.threshold}"
    if up < h.members:
        return Health.DEGRADED, f"{up} of {h.members} members answer"
    if h.chain_head_age > h.max_head_age / 2:
        return Health.DEGRADED, f"chain view lagging (older than {h.max_head_age / 2:g}s)"
    if h.rpc_diverged:
        return (
            Health.DEGRADED,
            f"RPC endpoint diverged from the quorum: {', '.join(h.rpc_diverged)}",
        )
    return Health.NORMAL, "ok"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A log event, not socketserver's traceback on stderr (a JSON log stays JSON); a
        client that went away before its answer (a prober's timeout) is not an error."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return
        log.warning("status_http_error", client=str(client_address), error=repr(error))


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
        self._server = _Server((host, port), Handler)
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
