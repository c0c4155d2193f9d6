"""Concurrent derivations' requests to one member, sent as one DerivePartial (`DeriveBatcher`).

A `KmsClient` holds one ephemeral key and one quote, so the DerivePartial requests of its
concurrent derivations differ only in their keys, and one request may carry up to 16 keys.
Each RPC costs the node and the client about as much CPU as the cryptography of a partial
(gRPC, TLS, HTTP/2, the evidence's ~5 KB, authorization from cache: docs/perf.md), so a busy
client (a guest agent serving several containers, a load) asks each member once for the keys
of every derivation that wants that member at the same moment.

It is group commit, not a timer: a derivation whose member has no request of this client in
flight is sent at once, alone, so a lone derivation waits for nothing; while one is in flight,
the keys of derivations that arrive meanwhile queue, and go together as soon as it returns.
Each derivation gets the partials of its own keys (the node answers one per key, in order)
and checks them as before. A failure of the member (unreachable, timed out, an answer of the
wrong length) is each of the request's derivations' failure of that member; any other refusal
may be about one derivation's keys (an app_id the evidence does not own, a purpose too long, a
rate limit that a smaller request fits), so each derivation is then asked again alone and
gets its own answer: one derivation's bad request never fails another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from mpc import InvalidPartial
from protos.tkms.v1 import kms_pb2

#: Keys in one request: the nodes' default `[limits] max_keys_per_request`.
MAX_KEYS: int = 16

Send = Callable[[int, list[kms_pb2.KeyRequest]], Awaitable[kms_pb2.DerivePartialResponse]]
"""(member index, keys) -> that member's answer to one DerivePartial with these keys."""

MemberFault = Callable[[Exception], bool]
"""Whether a failed request failed because of the member or the way to it (not its keys)."""


@dataclass(slots=True)
class _Waiting:
    keys: Sequence[kms_pb2.KeyRequest]
    future: asyncio.Future[list[kms_pb2.Partial]]


@dataclass(slots=True)
class _Lane:
    """One member's queue and whether a request to it is in flight."""

    queue: list[_Waiting] = field(default_factory=list)
    #: The task sending this member's requests, while there are any (the loop keeps only
    #: weak references to tasks).
    sender: asyncio.Task[None] | None = None


class DeriveBatcher:
    """Send each member the keys of all derivations waiting for it in one request.

    `send(member, keys)` performs the RPC. `partials(member, keys)` returns the member's
    partials for `keys`, in order, or raises what the RPC raised: for every derivation it
    carried if `member_fault` says the member failed, else what the derivation's own request
    raised when sent alone. A request carries whole derivations up to `max_keys` keys (a
    derivation with more goes alone, and the node names the limit).
    """

    def __init__(self, send: Send, member_fault: MemberFault, *, max_keys: int = MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._send = send
        self._member_fault = member_fault
        self._max_keys = max_keys
        self._lanes: dict[int, _Lane] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Requests sent and keys they carried, for tests and benchmarks.
        self.requests = 0
        self.keys = 0
        #: When a list: each answered request's (sent, answered) `time.perf_counter()`s.
        self.timings: list[tuple[float, float]] | None = None

    async def partials(
        self, member: int, keys: Sequence[kms_pb2.KeyRequest]
    ) -> list[kms_pb2.Partial]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a client reused under a new event loop starts afresh
            self._loop, self._lanes = loop, {}
        lane = self._lanes.setdefault(member, _Lane())
        waiting = _Waiting(keys, loop.create_future())
        lane.queue.append(waiting)
        if lane.sender is None:
            lane.sender = loop.create_task(self._drain(member, lane))
        return await waiting.future

    def _take(self, lane: _Lane) -> list[_Waiting]:
        """Whole derivations from the queue's head, up to `max_keys` keys (at least one)."""
        lane.queue = [w for w in lane.queue if not w.future.done()]  # cancelled meanwhile
        taken: list[_Waiting] = []
        count = 0
        while lane.queue:
            size = len(lane.queue[0].keys)
            if taken and count + size > self._max_keys:
                break
            taken.append(lane.queue.pop(0))
            count += size
        return taken

    async def _drain(self, member: int, lane: _Lane) -> None:
        try:
            while batch := self._take(lane):
                await self._one(member, batch)
        except BaseException:
            for w in lane.queue:
                w.future.cancel()
            lane.queue.clear()
            raise
        finally:
            lane.sender = None

    async def _one(self, member: int, batch: list[_Waiting]) -> None:
        keys = [k for w in batch for k in w.keys]
        self.requests += 1
        self.keys += len(keys)
        sent = time.perf_counter()
        try:
            reply = await self._send(member, keys)
            if self.timings is not None:
                self.timings.append((sent, time.perf_counter()))
            if len(reply.partials) != len(keys):
                raise InvalidPartial(member, f"{len(reply.partials)} partials for {len(keys)} keys")
        except Exception as exc:
            alive = [w for w in batch if not w.future.done()]
            fault = isinstance(exc, InvalidPartial) or self._member_fault(exc)
            if len(alive) > 1 and not fault:
                await asyncio.gather(*(self._one(member, [w]) for w in alive))
                return
            for w in alive:
                w.future.set_exception(exc)
            return
        except BaseException:  # the sender itself was cancelled (the loop is closing)
            for w in batch:
                w.future.cancel()
            raise
        start = 0
        for w in batch:
            end = start + len(w.keys)
            if not w.future.done():  # its derivation may have finished without this member
                w.future.set_result(list(reply.partials[start:end]))
            start = end
