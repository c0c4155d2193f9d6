"""Per-app token-bucket rate limiting for key release (design §6.3, step 7).

Each app_id has a bucket of `burst` tokens refilled at `rate` per second; a request for k keys
takes k tokens. The clock is injected, so tests drive time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from node.errors import RateLimited


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_apps: int = 100_000,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._max_apps = max_apps
        self._buckets: dict[bytes, _Bucket] = {}

    def take(self, app_id: bytes, cost: int = 1) -> None:
        """Spend `cost` tokens of `app_id`'s bucket or raise RateLimited (and spend nothing)."""
        now = self._clock()
        bucket = self._buckets.get(app_id)
        if bucket is None:
            if len(self._buckets) >= self._max_apps:
                self._evict_full(now)
            bucket = self._buckets[app_id] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < cost:
            raise RateLimited(
                f"app 0x{app_id.hex()} exceeded {self._rate:g} key requests/s "
                f"(burst {self._burst:g})"
            )
        bucket.tokens -= cost

    def _evict_full(self, now: float) -> None:
        """Forget apps whose bucket has refilled: they carry no state worth keeping."""
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self._rate >= self._burst
        ]
        for k in full:
            del self._buckets[k]
