"""Token-bucket rate limiting for key release (design §6.3, step 8).

A bucket belongs to one (app_id, requester key) pair, where the requester key is what the
request's evidence binds in its report_data (E of a derivation, the key to certify of a
signature), as a 32-byte digest. It holds `burst` tokens refilled at `rate` per second; a
request for k keys takes k tokens. The clock is injected, so tests drive time by hand.

Why not one bucket per app: evidence can be replayed by anyone who saw it (a relay, or one of
the t-1 nodes the threat model allows to be malicious), and a replay verifies. Per app, a
replayer would spend the victim app's bucket and lock out its fresh requests; per (app, key),
it only spends the bucket of the key it replays, whose answers are encrypted to a key it does
not hold. An app that wants more throughput must make a fresh quote per key, which every node
verifies in full before any bucket is touched.

The table is bounded: at `max_buckets`, buckets that have refilled (they carry no state) are
dropped first, then the least recently used. Dropping a bucket can only ever give its owner
a full bucket again, never take tokens from anyone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
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
        max_buckets: int = 100_000,
    ) -> None:
        if max_buckets < 1:
            raise ValueError("max_buckets must be at least 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: OrderedDict[tuple[bytes, bytes], _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, app_id: bytes, requester: bytes, cost: int = 1) -> None:
        """Spend `cost` tokens of the (app_id, requester) bucket, or raise RateLimited (and
        spend nothing)."""
        now = self._clock()
        key = (app_id, requester)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_buckets:
                self._make_room(now)
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        else:
            self._buckets.move_to_end(key)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < cost:
            raise RateLimited(
                f"app 0x{app_id.hex()} exceeded {self._rate:g} key requests/s "
                f"(burst {self._burst:g}) with requester key {requester[:8].hex()}…; "
                "a fresh requester key has its own bucket"
            )
        bucket.tokens -= cost

    def _make_room(self, now: float) -> None:
        """Forget refilled buckets; if none has refilled, the least recently used one."""
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self._rate >= self._burst
        ]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self._max_buckets:
            self._buckets.popitem(last=False)
