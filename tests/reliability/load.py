"""Sustained key-derivation load from KmsClients, in a thread, checking every returned key.

Each worker loops over a fixed set of purposes whose keys were derived (and checked against
the group key) before the load started; every answer is compared with that expected key.
A request that raises is a failure, recorded with its start and end time and the error, so a
test can tell failures in flight at a crash from the ones after it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from guest.kms_client import AppKeyRequest, Committee
from mpc import G1
from tests.reliability.apps import App

__all__ = ["LoadGenerator", "LoadReport", "Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    started: float  # time.monotonic()
    ended: float
    error: str  # "" if the request succeeded
    correct: bool  # the key equals the expected one (False on error)


@dataclass
class LoadReport:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.error]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error]

    @property
    def wrong(self) -> list[Outcome]:
        return [o for o in self.ok if not o.correct]

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.started < end]

    def p50(self) -> float:
        times = sorted(o.ended - o.started for o in self.ok)
        return times[len(times) // 2] if times else float("nan")


class LoadGenerator:
    """`workers` concurrent clients deriving keys until `stop()`."""

    def __init__(
        self, app: App, committee: Committee, expected: dict[bytes, G1], workers: int = 4
    ) -> None:
        self._app, self._committee, self._expected = app, committee, expected
        self._workers = workers
        self._stop = threading.Event()
        self.report = LoadReport()
        self._thread = threading.Thread(target=self._main, name="load", daemon=True)

    def start(self) -> LoadGenerator:
        self._thread.start()
        return self

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "load generator did not stop"
        return self.report

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        await asyncio.gather(*(self._worker(w) for w in range(self._workers)))

    async def _worker(self, w: int) -> None:
        purposes = sorted(self._expected)
        client = self._app.client(self._committee, timeout=10.0)
        i = w
        try:
            while not self._stop.is_set():
                purpose = purposes[i % len(purposes)]
                i += 1
                started = time.monotonic()
                try:
                    result = await client.derive([AppKeyRequest(self._app.app_id, purpose)])
                except Exception as exc:  # every failure counts; the test reads the reasons
                    self.report.outcomes.append(Outcome(started, time.monotonic(), str(exc), False))
                    continue
                correct = result.sigmas == [self._expected[purpose]]
                self.report.outcomes.append(Outcome(started, time.monotonic(), "", correct))
        finally:
            await client.close()
