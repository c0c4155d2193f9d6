"""What one client, or all of them together, may hold of the gateway: connections, time, log lines.

Without bounds one client could open connections until the gateway runs out of file
descriptors (each routed connection holds two) and everyone else times out, keep routed
connections open forever, and make every refused connection a log line. So:

* `ProxyLimits`: the numbers (config `[limits]`, docs/gateway-proxy.md): connections in total
  and per client, the time allowed for the ClientHello, the TLS handshake and the backend
  connect, how long a relay may stay silent (`idle_timeout`) or open (`max_lifetime`), and how
  many refusal lines the log gets.
* `ConnectionSlots`: counts open connections per client and in total; a connection beyond
  either cap is refused at accept. A client is an IPv4 address, or an IPv6 /64 (one subscriber
  usually holds a whole /64).
* `RateLimit`: token buckets by key (log lines, registrations per peer).
* `ThrottledLog`: log lines through a `RateLimit`; lines beyond it are counted, and the next
  line written says how many were suppressed.
* `raise_open_files_limit`, `connection_budget`: at start the soft RLIMIT_NOFILE is raised
  towards the hard limit, and the connection cap is lowered to what the descriptors allow.
"""

from __future__ import annotations

import ipaddress
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

#: File descriptors kept for everything but proxied connections (registration, chain, logs).
FD_RESERVE = 256


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    """The proxy's bounds; every number positive (docs/gateway-proxy.md, Limits)."""

    max_connections: int = 8192
    max_connections_per_client: int = 128
    hello_timeout: float = 5.0
    handshake_timeout: float = 10.0
    connect_timeout: float = 2.0
    idle_timeout: float = 600.0
    max_lifetime: float = 86400.0
    log_burst: int = 20
    log_per_second: float = 1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{field.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{field.name} must be positive and finite, got {value!r}")


def client_of(host: str) -> str:
    """The key a peer's connections are counted under: its IPv4 address (IPv4-mapped IPv6
    included) or its IPv6 /64; anything that is not an address counts as itself."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ConnectionSlots:
    """Open connections per client and in total. Used from one event loop (no locks)."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._open = 0
        self._by_client: dict[str, int] = {}

    @property
    def open(self) -> int:
        return self._open

    def take(self, client: str) -> str | None:
        """Take a slot for `client`; None if taken, else which cap refused it."""
        if self._open >= self.total:
            return "total_limit"
        held = self._by_client.get(client, 0)
        if held >= self.per_client:
            return "client_limit"
        self._by_client[client] = held + 1
        self._open += 1
        return None

    def give_back(self, client: str) -> None:
        held = self._by_client.get(client, 0)
        if held <= 1:
            self._by_client.pop(client, None)
        else:
            self._by_client[client] = held - 1
        self._open = max(0, self._open - 1)


class RateLimit:
    """Token buckets by key: `burst` at once, refilled at `rate` per second.

    At most `max_keys` buckets are kept; past that, full buckets (keys that have been quiet)
    are dropped first, then the oldest."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def allow(self, key: str = "") -> bool:
        """Take one token for `key`; False if its bucket is empty."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._prune(now)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def _prune(self, now: float) -> None:
        full = [k for k in self._buckets if self._tokens(k, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) >= self._max_keys:
            del self._buckets[next(iter(self._buckets))]


class ThrottledLog:
    """A structlog logger whose lines pass through a `RateLimit` per event name."""

    def __init__(self, logger: Any, limit: RateLimit) -> None:
        self._logger = logger
        self._limit = limit
        self._suppressed: dict[str, int] = {}

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if not self._limit.allow(event):
            self._suppressed[event] = self._suppressed.get(event, 0) + 1
            return
        suppressed = self._suppressed.pop(event, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        getattr(self._logger, level)(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE to `wanted` (at most the hard limit); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if ceiling > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        return ceiling
    return soft


def connection_budget(limits: ProxyLimits, open_files: int) -> int:
    """How many connections fit in `open_files` descriptors, two each, after `FD_RESERVE`."""
    return max(1, min(limits.max_connections, (open_files - FD_RESERVE) // 2))
