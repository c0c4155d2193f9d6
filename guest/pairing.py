"""The KMS client's batched check of derived keys against PK2 (see `PairingBatch`)."""

from __future__ import annotations

import asyncio
import os

from mpc import G1, G2, KeyRequest
from mpc.derive import are_consistent_with_group_key


class PairingBatch:
    """One pairing equation for the keys of several concurrent derivations.

    A derivation's optimistic check, e(sigma, G2) == e(H, PK2), is one pairing check: most
    of the client's CPU for a derivation. Concurrent derivations of one client queue their
    proposed keys here; they are checked together, with random weights, in one equation
    (`are_consistent_with_group_key`), and only if that fails each on its own, so a wrong
    one never makes another fail. A lone derivation is checked at once; while others are in
    flight the batch waits up to `window` seconds for them (or until `size` are queued).
    """

    def __init__(self, group_key: G2, *, window: float = 0.005, size: int = 16) -> None:
        self._group_key = group_key
        self._window = window
        self._size = size
        self._queue: list[tuple[list[G1], list[KeyRequest], asyncio.Future[bool]]] = []
        self._timer: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.running = 0  # derivations in flight, kept by the client

    async def holds(self, sigmas: list[G1], requests: list[KeyRequest]) -> bool:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a client reused under a new event loop starts afresh
            self._loop, self._queue, self._timer = loop, [], None
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.append((sigmas, requests, future))
        if len(self._queue) >= min(self.running, self._size):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_soon(self._run)
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._run)
        return await future

    def _check(self, sigmas: list[G1], requests: list[KeyRequest]) -> bool:
        return are_consistent_with_group_key(sigmas, requests, self._group_key, rng=os.urandom)

    def _run(self) -> None:
        batch, self._queue, self._timer = self._queue, [], None
        if not batch:
            return
        try:
            if self._check([s for e in batch for s in e[0]], [r for e in batch for r in e[1]]):
                outcomes = [True] * len(batch)
            elif len(batch) == 1:
                outcomes = [False]
            else:
                outcomes = [self._check(sigmas, requests) for sigmas, requests, _ in batch]
        except Exception as exc:  # reach every waiter, whatever went wrong
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():  # its derivation may have been cancelled meanwhile
                future.set_result(outcome)
