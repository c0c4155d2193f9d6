"""Which committee members can answer now: a health probe of each member every second.

A node's health says what it can do now (docs/node-design.md, "Health"): a derivation needs t
members that answer, so the node asks every other member of its committee, every
`interval` seconds, for the gRPC health of `SELF_SERVICE` on the member's public Kms port, with
a `timeout` deadline. The channel is TLS pinned to the key the member registered on chain (as
a guest's is: `attest.fetch_certificate`, `attest.check_key_pin`), so an impostor at the
member's address does not count. `SELF_SERVICE` is SERVING when the member could give partials
on its own (an active share, a fresh chain view, not draining): what it thinks of *its*
peers does not matter here, so members never wait on each other's health.

A member counts as answering while its last SERVING answer is at most `window` seconds old
and no probe since said otherwise outright (connection refused, NOT_SERVING, a certificate for
another key). A probe that only times out (a stopped process, a lost route) lets the member
count until `window` runs out, so one slow answer on a loaded machine does not flap the
health. Changes are logged as `member_unreachable` / `member_reachable`, once each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from attest import (
    NODE_TLS_NAME,
    AttestError,
    CertificateFetchError,
    check_key_pin,
    fetch_certificate,
)
from node.logs import get_logger

__all__ = ["SELF_SERVICE", "Liveness", "Member"]

log = get_logger("tkms.node.liveness")

#: The health-checking service name under which a node says whether it can serve on its own.
SELF_SERVICE = "tkms.v1.Kms/self"
_CHANNEL_OPTIONS = [
    ("grpc.ssl_target_name_override", NODE_TLS_NAME),
    # gRPC's default reconnect backoff grows to 120 s: a restarted member would stay "down".
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class Member(Protocol):
    """What a probe needs of a committee member (`node.chainview.NodeRecord`)."""

    @property
    def address(self) -> bytes: ...
    @property
    def kms_endpoint(self) -> str: ...
    @property
    def tls_key_hash(self) -> bytes: ...


@dataclass(slots=True)
class _State:
    last_ok: float = float("-inf")
    refused: bool = True  # the last probe said no outright (or none answered yet)
    reason: str = "not probed yet"
    logged: bool | None = None  # what was last logged: True reachable, False unreachable


@dataclass(slots=True)
class _Channel:
    endpoint: str
    tls_key_hash: bytes
    channel: grpc.aio.Channel
    stub: health_pb2_grpc.HealthStub


class _Refused(Exception):
    """The member said no outright (as opposed to not answering in time)."""


class Liveness:
    """Probes the members `members()` returns (self excluded) and counts who answers."""

    def __init__(
        self,
        members: Callable[[], Sequence[Member]],
        *,
        me: bytes,
        interval: float = 1.0,
        timeout: float = 1.0,
        window: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._members, self._me = members, me
        self.interval, self.timeout, self.window = interval, timeout, window
        self._clock = clock
        self._states: dict[bytes, _State] = {}
        self._channels: dict[bytes, _Channel] = {}
        #: Set when a member starts or stops counting (the health loop waits on it).
        self.changed = asyncio.Event()

    # -- what health reads ---------------------------------------------------------------

    def answering(self) -> int:
        """Other members that answered SERVING within `window` and did not refuse since."""
        now = self._clock()
        others = {m.address for m in self._members() if m.address != self._me}
        return sum(1 for a in others if self._counts(self._states.get(a), now))

    def _counts(self, state: _State | None, now: float) -> bool:
        return state is not None and not state.refused and now - state.last_ok <= self.window

    # -- probing -------------------------------------------------------------------------

    def record(self, member: Member, ok: bool, *, refused: bool = False, reason: str = "") -> None:
        """Note one probe's outcome (and log the member's change, if it changed)."""
        state = self._states.setdefault(member.address, _State())
        now = self._clock()
        if ok:
            state.last_ok, state.refused, state.reason = now, False, ""
        else:
            state.refused = state.refused or refused
            state.reason = reason
        counts = self._counts(state, now)
        if counts != state.logged:
            peer = "0x" + member.address.hex()
            if counts:
                log.info("member_reachable", member=peer, endpoint=member.kms_endpoint)
            else:
                log.warning(
                    "member_unreachable",
                    member=peer,
                    endpoint=member.kms_endpoint,
                    reason=state.reason or f"no answer for {self.window:g} s",
                )
            state.logged = counts
            self.changed.set()

    async def probe_all(self) -> None:
        """One round: every other member at once, each within `timeout` (plus a fetch)."""
        members = [m for m in self._members() if m.address != self._me]
        current = {m.address for m in members}
        for gone in [a for a in self._channels if a not in current]:
            await self._drop(gone)
        for gone in [a for a in self._states if a not in current]:
            del self._states[gone]
        await asyncio.gather(*(self._probe(m) for m in members))

    async def run(self) -> None:
        """Forever: a round of probes every `interval` seconds."""
        try:
            while True:
                started = self._clock()
                await self.probe_all()
                await asyncio.sleep(max(0.0, self.interval - (self._clock() - started)))
        finally:
            for address in list(self._channels):
                await self._drop(address)

    async def _probe(self, member: Member) -> None:
        try:
            await self._check(member)
        except _Refused as exc:
            await self._drop(member.address)  # a restarted member serves a new certificate
            self.record(member, False, refused=True, reason=str(exc))
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            self.record(member, False, reason=f"no answer within {self.timeout:g} s ({exc})")
        except Exception as exc:  # a bug must not stop the probes; the member just does not count
            self.record(member, False, refused=True, reason=f"probe failed: {exc!r}")
        else:
            self.record(member, True)

    async def _check(self, member: Member) -> None:
        channel = await self._channel(member)
        try:
            reply = await channel.stub.Check(
                health_pb2.HealthCheckRequest(service=SELF_SERVICE), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            raise _Refused(f"{exc.code().name}: {exc.details()}") from None
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            raise _Refused(f"answers {status}: cannot serve on its own")

    async def _channel(self, member: Member) -> _Channel:
        endpoint, key = member.kms_endpoint, member.tls_key_hash
        cached = self._channels.get(member.address)
        if cached is not None and (cached.endpoint, cached.tls_key_hash) == (endpoint, key):
            return cached
        await self._drop(member.address)
        if not endpoint:
            raise _Refused("no Kms endpoint registered")
        try:
            pem = await fetch_certificate(endpoint, timeout=self.timeout)
            check_key_pin(pem, key)
        except CertificateFetchError as exc:
            raise _Refused(str(exc)) from None
        except AttestError as exc:
            raise _Refused(f"{endpoint} does not serve the registered key: {exc}") from None
        credentials = grpc.ssl_channel_credentials(root_certificates=pem)
        channel = grpc.aio.secure_channel(endpoint, credentials, options=_CHANNEL_OPTIONS)
        stub = health_pb2_grpc.HealthStub(channel)
        found = self._channels[member.address] = _Channel(endpoint, key, channel, stub)
        return found

    async def _drop(self, address: bytes) -> None:
        found = self._channels.pop(address, None)
        if found is not None:
            await found.channel.close()
