"""RTMR replay: recompute RTMR0-3 from an event log and compare them with a quote.

Every event extends its register: ``RTMR = SHA384(RTMR || digest)``, from 48 zero bytes.
For dstack runtime events (type 0x08000001) the digest is never taken from the log: it is
recomputed from the event name and payload, as dstack's `cc-eventlog` crate does
(`runtime_events.rs`, `RuntimeEvent::hash_input`):

* version 1: ``SHA384(u32le(0x08000001) || ":" || event || ":" || payload)``
* version 2: ``SHA384(JCS({"event": event, "event_type": 134217729, "payload": hex(payload),
  "version": 2}))`` (RFC 8785 canonical JSON, UTF-8)

A runtime event whose stated digest differs from the recomputed one is rejected: the log would
show one payload while the register measured another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from attest._eventlog import DSTACK_RUNTIME_EVENT_TYPE, SHA384_LEN, EventLogEntry, EventLogError
from attest.errors import AttestError

__all__ = [
    "ReplayError",
    "ReplayedRtmrs",
    "replay_rtmrs",
    "runtime_event_digest",
    "runtime_event_hash_input",
    "verify_replay",
]


class ReplayError(AttestError):
    """The event log does not reproduce the quote's RTMRs, or an event's digest is inconsistent.

    `rtmr` is the register index concerned (None when the failure is not about one register).
    """

    def __init__(self, message: str, *, rtmr: int | None = None) -> None:
        self.rtmr = rtmr
        super().__init__(message)

    def diagnostics(self) -> str:
        return (
            f"event log does not match the quote: {self}; the log may be incomplete, "
            "reordered or altered"
        )


@dataclass(frozen=True, slots=True)
class ReplayedRtmrs:
    """RTMR0-3 recomputed from an event log, plus the events per register."""

    rtmrs: tuple[bytes, bytes, bytes, bytes]
    counts: tuple[int, int, int, int]

    def __getitem__(self, index: int) -> bytes:
        return self.rtmrs[index]


def runtime_event_hash_input(event: str, payload: bytes, version: int = 1) -> bytes:
    """The exact bytes dstack hashes for a runtime event (see the module docstring)."""
    if version == 1:
        try:
            name = event.encode("utf-8")
        except UnicodeEncodeError:
            raise EventLogError(f"event name {event!r} is not valid UTF-8") from None
        return DSTACK_RUNTIME_EVENT_TYPE.to_bytes(4, "little") + b":" + name + b":" + payload
    if version == 2:
        canonical = {
            "event": event,
            "event_type": DSTACK_RUNTIME_EVENT_TYPE,
            "payload": payload.hex(),
            "version": 2,
        }
        # For string and integer values, sorted keys, no whitespace and lowercase \u escapes of
        # control characters (json's default) is exactly RFC 8785 output.
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise EventLogError(f"event name {event!r} is not valid UTF-8") from None
    raise EventLogError(f"runtime event version {version} is not 1 or 2")


def runtime_event_digest(event: str, payload: bytes, version: int = 1) -> bytes:
    """SHA-384 digest dstack extends into RTMR3 for a runtime event."""
    return hashlib.sha384(runtime_event_hash_input(event, payload, version)).digest()


def _digest(index: int, entry: EventLogEntry) -> bytes:
    if entry.event_type != DSTACK_RUNTIME_EVENT_TYPE:
        return entry.digest
    computed = runtime_event_digest(entry.event, entry.event_payload, entry.version)
    if entry.digest and not hmac.compare_digest(entry.digest, computed):
        raise ReplayError(
            f"event {index} (RTMR{entry.imr} {entry.event!r}): stated digest "
            f"{entry.digest.hex()} does not match the digest of its payload {computed.hex()}",
            rtmr=entry.imr,
        )
    return computed


def replay_rtmrs(entries: Sequence[EventLogEntry]) -> ReplayedRtmrs:
    """Replay `entries` from zeroed registers; runtime-event digests are recomputed."""
    regs = [bytes(SHA384_LEN)] * 4
    counts = [0, 0, 0, 0]
    for i, entry in enumerate(entries):
        regs[entry.imr] = hashlib.sha384(regs[entry.imr] + _digest(i, entry)).digest()
        counts[entry.imr] += 1
    return ReplayedRtmrs(
        rtmrs=(regs[0], regs[1], regs[2], regs[3]),
        counts=(counts[0], counts[1], counts[2], counts[3]),
    )


def verify_replay(
    entries: Sequence[EventLogEntry],
    quote_rtmrs: Sequence[bytes],
    *,
    indices: Sequence[int] = (0, 1, 2, 3),
) -> ReplayedRtmrs:
    """Replay `entries` and require RTMR[i] == quote_rtmrs[i] for every i in `indices`.

    Raises `ReplayError` naming the first register that differs with both values.
    """
    if len(quote_rtmrs) != 4:
        raise ReplayError(f"expected the quote's 4 RTMRs, got {len(quote_rtmrs)} values")
    replayed = replay_rtmrs(entries)
    for i in indices:
        if not hmac.compare_digest(replayed.rtmrs[i], bytes(quote_rtmrs[i])):
            raise ReplayError(
                f"RTMR{i} mismatch: quote has {bytes(quote_rtmrs[i]).hex()}, event log "
                f"({replayed.counts[i]} events) replays to {replayed.rtmrs[i].hex()}",
                rtmr=i,
            )
    return replayed
