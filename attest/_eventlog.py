"""dstack's JSON event log: the model shared by every log format, parsing and serialising.

A TDX event log is a list of measured events. Each event names the RTMR it extended (0-based,
0..3), its TCG event type, the SHA-384 digest that was extended, and the event data. dstack's
guest agent returns it as JSON (`GetQuote`'s `event_log`): a list of
``{imr, event_type, digest, event, event_payload}`` with hex digest and payload, plus an optional
``version`` (1 or 2) for dstack runtime events, whose digest formula it selects.

Parsing checks structure only (types, ranges, hex, digest length); it never decides whether the
digests are right: that is replay's job (`attest._replay`). Data read here is unverified.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from attest.errors import AttestError

__all__ = [
    "DSTACK_RUNTIME_EVENT_TYPE",
    "EventLogEntry",
    "EventLogError",
    "event_log_to_json",
    "parse_event_log",
]

#: TCG event type dstack uses for its runtime (RTMR3) events; not defined by the TCG.
DSTACK_RUNTIME_EVENT_TYPE = 0x08000001
SHA384_LEN = 48
#: Upper bound on entries: a real log has tens to a few hundred; this stops memory blow-ups.
MAX_EVENTS = 65536


class EventLogError(AttestError):
    """An event log is malformed. `where` names the entry (index) or byte offset that failed."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)

    def diagnostics(self) -> str:
        return f"malformed event log: {self}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventLogEntry:
    """One measured event.

    `imr` is the 0-based RTMR index (TCG MR index minus one). `digest` is the digest the log
    *states* was extended; for dstack runtime events it may be empty (dstack strips it in
    certificates) because replay recomputes it from `event` and `event_payload`.
    """

    imr: int
    event_type: int
    digest: bytes
    event: str = ""
    event_payload: bytes = b""
    version: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.imr <= 3:
            raise EventLogError(f"imr {self.imr} out of range 0..3")
        if not 0 <= self.event_type <= 0xFFFFFFFF:
            raise EventLogError(f"event_type {self.event_type} is not a u32")
        if self.version not in (1, 2):
            raise EventLogError(f"version {self.version} is not 1 or 2")
        if self.is_runtime_event:
            if self.digest and len(self.digest) != SHA384_LEN:
                raise EventLogError(f"digest has {len(self.digest)} bytes, expected 48 or none")
        elif len(self.digest) != SHA384_LEN:
            raise EventLogError(f"digest has {len(self.digest)} bytes, expected 48 (SHA-384)")

    @property
    def is_runtime_event(self) -> bool:
        """True for dstack runtime events, whose digest replay recomputes."""
        return self.event_type == DSTACK_RUNTIME_EVENT_TYPE


def _field(item: dict[str, object], name: str, kind: type, where: str) -> object:
    if name not in item:
        raise EventLogError(f"missing field {name!r}", where=where)
    value = item[name]
    # bool is an int in Python; a JSON true where a number belongs is still malformed.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise EventLogError(
            f"field {name!r} must be {kind.__name__}, got {type(value).__name__}", where=where
        )
    return value


def _hex(item: dict[str, object], name: str, where: str, *, default: bytes | None) -> bytes:
    if name not in item and default is not None:
        return default
    text = _field(item, name, str, where)
    assert isinstance(text, str)
    body = text[2:] if text.startswith("0x") else text
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise EventLogError(f"field {name!r} is not hex", where=where) from None


def _entry(item: object, index: int) -> EventLogEntry:
    where = f"event log entry {index}"
    if not isinstance(item, dict):
        raise EventLogError(f"expected an object, got {type(item).__name__}", where=where)
    imr = _field(item, "imr", int, where)
    event_type = _field(item, "event_type", int, where)
    event = item.get("event", "")
    if not isinstance(event, str):
        raise EventLogError("field 'event' must be str", where=where)
    version = item.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise EventLogError("field 'version' must be int", where=where)
    assert isinstance(imr, int) and isinstance(event_type, int)
    try:
        return EventLogEntry(
            imr=imr,
            event_type=event_type,
            digest=_hex(item, "digest", where, default=b""),
            event=event,
            event_payload=_hex(item, "event_payload", where, default=b""),
            version=version,
        )
    except EventLogError as exc:
        if exc.where is not None:
            raise
        raise EventLogError(str(exc), where=where) from None


def parse_event_log(data: str | bytes | Sequence[object]) -> tuple[EventLogEntry, ...]:
    """Parse dstack's JSON event log (text, bytes, or an already-decoded list).

    Raises `EventLogError` naming the entry and field on any structural problem.
    """
    items: object
    if isinstance(data, str | bytes):
        try:
            items = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise EventLogError(f"event log is not valid JSON: {exc}") from None
    else:
        items = data
    if not isinstance(items, list):
        raise EventLogError(f"event log must be a JSON list, got {type(items).__name__}")
    if len(items) > MAX_EVENTS:
        raise EventLogError(f"event log has {len(items)} entries, limit {MAX_EVENTS}")
    return tuple(_entry(item, i) for i, item in enumerate(items))


def event_log_to_json(entries: Sequence[EventLogEntry]) -> str:
    """Serialise entries in dstack's JSON form (hex fields; `version` only when 2)."""
    out: list[dict[str, object]] = []
    for e in entries:
        item: dict[str, object] = {
            "imr": e.imr,
            "event_type": e.event_type,
            "digest": e.digest.hex(),
            "event": e.event,
            "event_payload": e.event_payload.hex(),
        }
        if e.version != 1:
            item["version"] = e.version
        out.append(item)
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)
