"""Rate limiting, health computation, metrics and the status HTTP endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from node.errors import RateLimited
from node.health import Health, HealthInputs, HealthReport, StatusHttpServer, compute_health
from node.metrics import NodeMetrics
from node.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


KEY, FRESH = b"\xe1" * 32, b"\xe2" * 32  # requester-key digests


def test_rate_limiter_allows_burst_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    app, other = b"\x01" * 20, b"\x02" * 20
    limiter.take(app, KEY, 2)
    limiter.take(app, KEY, 1)
    with pytest.raises(
        RateLimited, match=r"app 0x0101.* exceeded 2 key requests/s \(burst 3\) with requester"
    ):
        limiter.take(app, KEY)
    limiter.take(other, KEY, 3)  # apps have separate buckets
    clock.now += 0.5  # one token back
    limiter.take(app, KEY)
    with pytest.raises(RateLimited):
        limiter.take(app, KEY)
    clock.now += 100
    limiter.take(app, KEY, 3)  # refilled, but never beyond the burst
    with pytest.raises(RateLimited):
        limiter.take(app, KEY)


def test_an_exhausted_requester_key_leaves_the_apps_other_keys_alone() -> None:
    """A replay of one key's evidence can only spend that key's bucket (docs/security.md)."""
    limiter = RateLimiter(rate=1.0, burst=2, clock=Clock())
    app = b"\x01" * 20
    limiter.take(app, KEY, 2)
    with pytest.raises(RateLimited, match=r"requester key e1e1e1e1e1e1e1e1…"):
        limiter.take(app, KEY)
    limiter.take(app, FRESH, 2)


def test_rate_limiter_refusal_spends_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock)
    with pytest.raises(RateLimited):
        limiter.take(b"a", KEY, 3)
    limiter.take(b"a", KEY, 2)


def test_rate_limiter_forgets_idle_buckets_when_full() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock, max_buckets=2)
    limiter.take(b"a", KEY)
    limiter.take(b"b", KEY)
    clock.now += 10
    limiter.take(b"c", KEY)
    assert len(limiter) == 1


def test_the_bucket_table_never_outgrows_its_bound() -> None:
    """Even when no bucket has refilled, the least recently used one makes room."""
    limiter = RateLimiter(rate=0.001, burst=5, clock=Clock(), max_buckets=3)
    for i in range(50):
        limiter.take(b"app", bytes([i]) * 32)
        assert len(limiter) <= 3
    limiter.take(b"app", bytes([49]) * 32, 4)  # the most recent bucket survived: 1 token left
    with pytest.raises(RateLimited):
        limiter.take(b"app", bytes([49]) * 32)


BASE = HealthInputs(
    has_share=True, chain_head_age=1, max_head_age=30, members=5, threshold=3, peers_reachable=4
)


@pytest.mark.parametrize(
    ("changes", "health", "reason"),
    [
        ({}, Health.NORMAL, "ok"),
        ({"peers_reachable": 3}, Health.DEGRADED, "4 of 5 members answer"),
        ({"peers_reachable": 2}, Health.DEGRADED, "3 of 5 members answer"),
        ({"peers_reachable": 1}, Health.DOWN, "only 2 of 5 members answer, threshold 3"),
        ({"chain_head_age": 20}, Health.DEGRADED, "chain view lagging"),
        ({"chain_head_age": 31}, Health.DOWN, "chain view stale"),
        ({"has_share": False}, Health.DOWN, "no active key share"),
        ({"draining": True}, Health.DOWN, "draining"),
        (
            {"rpc_diverged": ("http://b:8545",)},
            Health.DEGRADED,
            "RPC endpoint diverged from the quorum: http://b:8545",
        ),
        (
            {"chain_disagreement": True, "rpc_diverged": ("http://a:8545", "http://b:8545")},
            Health.DOWN,
            "chain RPC endpoints disagree (no quorum): diverged http://a:8545, http://b:8545",
        ),
    ],
)
def test_health(changes: dict[str, object], health: Health, reason: str) -> None:
    import dataclasses

    got, why = compute_health(dataclasses.replace(BASE, **changes))  # type: ignore[arg-type]
    assert got is health
    assert reason in why


@pytest.mark.parametrize("ages", [(16, 29), (31, 3600)])
def test_a_health_reason_does_not_change_while_the_state_does_not(ages: tuple[int, int]) -> None:
    """The daemon logs health_changed when (value, reason) changes: a reason with the chain
    view's age in it logged a line every second while degraded."""
    import dataclasses

    first, second = (compute_health(dataclasses.replace(BASE, chain_head_age=age)) for age in ages)
    assert first == second and first[0] is not Health.NORMAL


def test_a_client_gone_before_its_answer_leaves_no_traceback_on_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """socketserver printed a traceback (plain text in a JSON log) whenever a /health poller
    timed out before a busy or stopped node answered."""
    import socket
    import struct
    import time

    def slow() -> HealthReport:
        time.sleep(0.3)
        return HealthReport("NORMAL", "ok", 1, 1)

    server = StatusHttpServer("127.0.0.1", 0, slow, lambda: b"")
    server.start()
    try:
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", server.port))
            client.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # reset: the answer finds no one
        time.sleep(0.8)
    finally:
        server.stop()
    assert capfd.readouterr().err == ""


def test_status_http_endpoint_serves_health_and_metrics() -> None:
    metrics = NodeMetrics()
    metrics.requests.labels("DerivePartial", "ok").inc(3)
    state = {"health": "NORMAL"}
    server = StatusHttpServer(
        "127.0.0.1", 0, lambda: HealthReport(state["health"], "why", 2, 1), metrics.render
    )
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert 'tkms_requests_total{method="DerivePartial",result="ok"} 3.0' in body
        health = json.loads(urllib.request.urlopen(f"{base}/health", timeout=5).read())
        assert health == {"health": "NORMAL", "reason": "why", "epoch": 2, "generation": 1}
        state["health"] = "DOWN"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/health", timeout=5)
        assert err.value.code == 503
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/nope", timeout=5)
        assert err.value.code == 404
    finally:
        server.stop()
