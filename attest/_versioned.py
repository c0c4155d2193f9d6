"""dstack's `VersionedAttestation`, V0 wire format: what a dstack guest agent's `Attest` returns.

The V0 bytes are a SCALE encoding (the Parity codec dstack uses) of::

    enum VersionedAttestation { V0 { attestation: Attestation } }        -> 0x00, then
    struct Attestation {
        quote: enum AttestationQuote { DstackTdx(TdxQuote) = 0, .. },    -> 0x00, then
               struct TdxQuote { quote: Vec<u8>, event_log: Vec<TdxEvent> },
        runtime_events: Vec<RuntimeEvent { event: String, payload: Vec<u8> }>,
        report_data: [u8; 64],
        config: String,                                                   (the VM config JSON)
    }
    TdxEvent { imr: u32, event_type: u32, digest: Vec<u8>, event: String, event_payload: Vec<u8> }

`Vec`/`String` are a compact length then the bytes; `u32` is 4 bytes little-endian; a fixed
array is its bytes. The compact integer: 6-bit values in one byte (`n << 2`), 14-bit in two
(`n << 2 | 1`), 30-bit in four (`n << 2 | 2`), larger as `(len - 4) << 2 | 3` then `len`
little-endian bytes; only the shortest form is valid. V1 (a msgpack map, first byte
0x80-0x8f/0xde/0xdf) is dstack's newer format for V2 runtime events and is refused here.

Decoding is strict (canonical compact integers, UTF-8 strings, no trailing bytes, bounded
sizes) and checks structure only; `evidence_from_attestation` then checks the parts agree (the
report_data field is the quote's, the runtime events are the event log's RTMR3 events) before
the usual quote / replay / identity verification runs on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attest._eventlog import (
    DSTACK_RUNTIME_EVENT_TYPE,
    MAX_EVENTS,
    EventLogEntry,
    EventLogError,
    event_log_to_json,
)
from attest._quote import parse_quote
from attest.errors import AttestError

__all__ = [
    "AttestationFormatError",
    "VersionedAttestation",
    "decode_versioned_attestation",
    "encode_versioned_attestation",
    "evidence_from_attestation",
    "runtime_events_of",
]

#: dstack's own bound on encoded attestations (10 MiB), against memory blow-ups.
MAX_ATTESTATION_BYTES = 10 * 1024 * 1024
_V0 = 0x00
_DSTACK_TDX = 0x00
_MSGPACK_MAP_FIRST = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])


class AttestationFormatError(AttestError):
    """Bytes that are not a well-formed V0 VersionedAttestation; `offset` says where."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (byte offset {offset})")

    def diagnostics(self) -> str:
        return f"malformed dstack attestation: {self}"


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionedAttestation:
    """The content of a V0 attestation: a TDX quote with its evidence (unverified)."""

    quote: bytes
    event_log: tuple[EventLogEntry, ...]
    runtime_events: tuple[tuple[str, bytes], ...]
    report_data: bytes
    vm_config: str


def runtime_events_of(entries: Sequence[EventLogEntry]) -> tuple[tuple[str, bytes], ...]:
    """(name, payload) of the dstack runtime events in `entries`, in order."""
    return tuple((e.event, e.event_payload) for e in entries if e.is_runtime_event)


# -- encoding ---------------------------------------------------------------------------


def compact(n: int) -> bytes:
    """A SCALE compact integer (shortest form)."""
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return (n << 2 | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return (n << 2 | 2).to_bytes(4, "little")
    size = (n.bit_length() + 7) // 8
    return bytes([(size - 4) << 2 | 3]) + n.to_bytes(size, "little")


def bytes_field(data: bytes) -> bytes:
    """A SCALE `Vec<u8>`: compact length, then the bytes."""
    return compact(len(data)) + data


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def encode_versioned_attestation(att: VersionedAttestation) -> bytes:
    """The V0 bytes (module docstring). Raises ValueError for what V0 cannot carry."""
    if any(e.version != 1 for e in att.event_log):
        raise ValueError("V0 attestations carry version-1 events only")
    out = [bytes([_V0, _DSTACK_TDX]), bytes_field(att.quote), compact(len(att.event_log))]
    for e in att.event_log:
        out += [_u32(e.imr), _u32(e.event_type), bytes_field(e.digest)]
        out += [bytes_field(e.event.encode()), bytes_field(e.event_payload)]
    out.append(encode_attestation_tail(att.runtime_events, att.report_data, att.vm_config))
    return b"".join(out)


# -- decoding ---------------------------------------------------------------------------


class ScaleReader:
    """Bounds-checked reader of the SCALE types above (offsets in its errors)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise AttestationFormatError(
                f"truncated while reading {what}: need {n} bytes, {len(self.data) - self.pos} left",
                offset=self.pos,
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def compact(self, what: str) -> int:
        start = self.pos
        first = self.take(1, what)[0]
        mode = first & 3
        if mode == 0:
            return first >> 2
        if mode in (1, 2):
            size = 2 if mode == 1 else 4
            value = int.from_bytes(bytes([first]) + self.take(size - 1, what), "little") >> 2
            low = 1 << 6 if mode == 1 else 1 << 14
        else:
            size = (first >> 2) + 4
            value = int.from_bytes(self.take(size, what), "little")
            low = 1 << 30
            if value >> (8 * (size - 1)) == 0:  # a zero top byte: a shorter form exists
                raise AttestationFormatError(f"non-canonical length in {what}", offset=start)
        if value < low:
            raise AttestationFormatError(f"non-canonical length in {what}", offset=start)
        return value

    def vec(self, what: str) -> bytes:
        return self.take(self.compact(what), what)

    def text(self, what: str) -> str:
        start = self.pos
        raw = self.vec(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AttestationFormatError(f"{what} is not UTF-8", offset=start) from None

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")

    def count(self, what: str) -> int:
        start = self.pos
        n = self.compact(what)
        if n > MAX_EVENTS:
            raise AttestationFormatError(
                f"{what} has {n} entries, limit {MAX_EVENTS}", offset=start
            )
        return n


def read_attestation_tail(
    r: ScaleReader, *, to_end: bool = True
) -> tuple[tuple[tuple[str, bytes], ...], bytes, str]:
    """The fields after the quote, common to every quote kind: runtime events, report_data,
    config; then nothing may follow unless `to_end` is false (the attestation is a field of a
    larger SCALE value, e.g. dstack's certificate signing request)."""
    runtime = tuple(
        (r.text(f"runtime_events[{i}].event"), r.vec(f"runtime_events[{i}].payload"))
        for i in range(r.count("runtime_events"))
    )
    report_data = r.take(64, "report_data")
    config = r.text("config")
    if to_end and r.pos != len(r.data):
        raise AttestationFormatError(f"{len(r.data) - r.pos} trailing bytes", offset=r.pos)
    return runtime, report_data, config


def encode_attestation_tail(
    runtime_events: Sequence[tuple[str, bytes]], report_data: bytes, config: str
) -> bytes:
    """The encoding `read_attestation_tail` reads."""
    if len(report_data) != 64:
        raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
    out = [compact(len(runtime_events))]
    for name, payload in runtime_events:
        out += [bytes_field(name.encode()), bytes_field(payload)]
    out += [report_data, bytes_field(config.encode())]
    return b"".join(out)


def decode_versioned_attestation(data: bytes) -> VersionedAttestation:
    """Parse V0 bytes; `AttestationFormatError` names what is wrong and where."""
    if len(data) > MAX_ATTESTATION_BYTES:
        raise AttestationFormatError(
            f"attestation is {len(data)} bytes, limit {MAX_ATTESTATION_BYTES}"
        )
    if not data:
        raise AttestationFormatError("attestation is empty")
    if data[0] in _MSGPACK_MAP_FIRST:
        raise AttestationFormatError(
            "this is a V1 (msgpack) attestation; only V0 (SCALE, first byte 0x00) is supported"
        )
    r = ScaleReader(data)
    found = read_versioned_attestation(r)
    if r.pos != len(data):
        raise AttestationFormatError(f"{len(data) - r.pos} trailing bytes", offset=r.pos)
    return found


def read_versioned_attestation(r: ScaleReader) -> VersionedAttestation:
    """Read one V0 attestation at the reader's position (it may be a field of a larger SCALE
    value, e.g. dstack's certificate signing request)."""
    first = r.pos
    if r.take(1, "version")[0] != _V0:
        raise AttestationFormatError(
            f"unknown attestation version byte 0x{r.data[first]:02x}", offset=first
        )
    kind = r.take(1, "quote kind")[0]
    if kind != _DSTACK_TDX:
        raise AttestationFormatError(
            f"quote kind {kind} is not DstackTdx (0); SEV-SNP (3) is read by "
            "decode_snp_attestation, GCP and Nitro attestations are not supported",
            offset=first + 1,
        )
    quote = r.vec("quote")
    log: list[EventLogEntry] = []
    for i in range(r.count("event_log")):
        where = f"event_log[{i}]"
        start = r.pos
        imr, event_type = r.u32(f"{where}.imr"), r.u32(f"{where}.event_type")
        digest = r.vec(f"{where}.digest")
        event = r.text(f"{where}.event")
        payload = r.vec(f"{where}.event_payload")
        try:
            entry = EventLogEntry(
                imr=imr, event_type=event_type, digest=digest, event=event, event_payload=payload
            )
        except EventLogError as exc:
            raise AttestationFormatError(f"{where}: {exc}", offset=start) from None
        log.append(entry)
    runtime, report_data, vm_config = read_attestation_tail(r, to_end=False)
    return VersionedAttestation(
        quote=quote,
        event_log=tuple(log),
        runtime_events=runtime,
        report_data=report_data,
        vm_config=vm_config,
    )


def evidence_from_attestation(att: VersionedAttestation) -> tuple[bytes, str, str]:
    """(quote, event log JSON, vm_config) to verify, once the parts are seen to agree.

    dstack's verifier replays `runtime_events`, tkms' the event log's RTMR3 events, so the two
    must be the same list; `report_data` must be the quote's, which verification then binds.
    """
    quoted = parse_quote(att.quote).td_report.report_data
    if quoted != att.report_data:
        raise AttestationFormatError(
            f"report_data {att.report_data.hex()} is not the quote's {quoted.hex()}"
        )
    in_log = runtime_events_of(att.event_log)
    if in_log != att.runtime_events:
        raise AttestationFormatError(
            f"runtime_events ({len(att.runtime_events)}: "
            f"{', '.join(n for n, _ in att.runtime_events)}) are not the event log's runtime "
            f"events ({len(in_log)}: {', '.join(n for n, _ in in_log)})"
        )
    if any(e.imr != 3 for e in att.event_log if e.event_type == DSTACK_RUNTIME_EVENT_TYPE):
        raise AttestationFormatError("a runtime event in the event log is not on RTMR3")
    return att.quote, event_log_to_json(att.event_log), att.vm_config
