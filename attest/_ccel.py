"""Binary CCEL / TCG event logs (TCG PC Client Platform Firmware Profile, crypto-agile format).

Layout (all integers little-endian):

* Spec ID header, in the legacy SHA-1 `TCG_PCClientPCREvent` form: pcrIndex u32, eventType u32
  (EV_NO_ACTION), digest[20], eventSize u32, event = `TCG_EfiSpecIDEvent` ("Spec ID Event03",
  platformClass u32, version u8 x3, uintnSize u8, numberOfAlgorithms u32, then
  {algorithmId u16, digestSize u16} per algorithm, vendorInfoSize u8, vendorInfo).
* Then `TCG_PCR_EVENT2` records: pcrIndex u32, eventType u32, digest count u32, per digest
  {algorithmId u16, digest[size from the header]}, eventSize u32, event[eventSize].
* The log ends at the end of the data or where a record would start with pcrIndex 0xFFFFFFFF
  (the ACPI CCEL area is padded with 0xFF bytes).

TDX maps MR index 1..4 to RTMR0..3 (index 0 is MRTD, never extended at run time). EV_NO_ACTION
records are informational and never extended, so they are skipped; so are the records on MR
index 0 (some firmware logs there; dstack skips them too). Every other record must carry a
SHA-384 digest.
"""

from __future__ import annotations

import struct

from attest._eventlog import MAX_EVENTS, SHA384_LEN, EventLogEntry, EventLogError

__all__ = ["EV_NO_ACTION", "TPM_ALG_SHA384", "parse_ccel"]

EV_NO_ACTION = 0x3
TPM_ALG_SHA1 = 0x4
TPM_ALG_SHA384 = 0xC
_SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
_END = 0xFFFFFFFF
#: Bounds that no honest log approaches; they keep a hostile log from forcing big allocations.
_MAX_ALGORITHMS = 16
_MAX_DIGEST_SIZE = 128


class _Reader:
    """Bounds-checked little-endian cursor; every failure names the byte offset."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise EventLogError(
                f"{what} needs {n} bytes, only {len(self.data) - self.pos} left",
                where=f"CCEL offset {self.pos}",
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        value: int = struct.unpack("<H", self.take(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = struct.unpack("<I", self.take(4, what))[0]
        return value


def _spec_id(r: _Reader) -> dict[int, int]:
    """Parse the Spec ID header event; return {algorithmId: digestSize}."""
    start = r.pos
    r.u32("header pcrIndex")
    event_type = r.u32("header eventType")
    if event_type != EV_NO_ACTION:
        raise EventLogError(
            f"first event has type {event_type:#x}, expected EV_NO_ACTION (Spec ID header)",
            where=f"CCEL offset {start + 4}",
        )
    r.take(20, "header SHA-1 digest")
    size = r.u32("header eventSize")
    body = _Reader(r.take(size, "Spec ID event"))
    base = r.pos - size
    signature = body.take(16, "Spec ID signature")
    if signature != _SPEC_ID_SIGNATURE:
        raise EventLogError(
            f"Spec ID signature {signature!r} is not 'Spec ID Event03' (not a crypto-agile log)",
            where=f"CCEL offset {base}",
        )
    body.take(4 + 4, "Spec ID platformClass/version/uintnSize")
    count = body.u32("numberOfAlgorithms")
    if not 1 <= count <= _MAX_ALGORITHMS:
        raise EventLogError(
            f"numberOfAlgorithms {count} out of range 1..{_MAX_ALGORITHMS}",
            where=f"CCEL offset {base + body.pos - 4}",
        )
    sizes: dict[int, int] = {}
    for _ in range(count):
        alg, size_ = body.u16("algorithmId"), body.u16("digestSize")
        if not 1 <= size_ <= _MAX_DIGEST_SIZE or alg in sizes:
            raise EventLogError(
                f"bad algorithm entry {alg:#x} with digest size {size_}",
                where=f"CCEL offset {base + body.pos - 4}",
            )
        sizes[alg] = size_
    vendor = body.u8("vendorInfoSize")
    body.take(vendor, "vendorInfo")
    if sizes.get(TPM_ALG_SHA384) not in (None, SHA384_LEN):
        raise EventLogError("Spec ID header gives SHA-384 a digest size other than 48")
    return sizes


def parse_ccel(data: bytes) -> tuple[EventLogEntry, ...]:
    """Parse a binary CCEL/TCG event log into RTMR events (EV_NO_ACTION and MR 0 skipped).

    Raises `EventLogError` with the byte offset on truncation or inconsistency.
    """
    r = _Reader(bytes(data))
    sizes = _spec_id(r)
    out: list[EventLogEntry] = []
    while r.pos + 4 <= len(r.data):
        start = r.pos
        mr_index = r.u32("pcrIndex")
        if mr_index == _END:
            break
        event_type = r.u32("eventType")
        count = r.u32("digest count")
        if count > len(sizes):
            raise EventLogError(
                f"record has {count} digests, the header declares {len(sizes)} algorithms",
                where=f"CCEL offset {start + 8}",
            )
        sha384: bytes | None = None
        seen: set[int] = set()
        for _ in range(count):
            alg_at = r.pos
            alg = r.u16("digest algorithmId")
            if alg in seen:
                raise EventLogError(
                    f"digest algorithm {alg:#x} appears twice in one record",
                    where=f"CCEL offset {alg_at}",
                )
            seen.add(alg)
            if alg not in sizes:
                raise EventLogError(
                    f"digest algorithm {alg:#x} not declared in the Spec ID header",
                    where=f"CCEL offset {alg_at}",
                )
            digest = r.take(sizes[alg], "digest")
            if alg == TPM_ALG_SHA384:
                sha384 = digest
        event = r.take(r.u32("eventSize"), "event data")
        if event_type == EV_NO_ACTION or mr_index == 0:
            continue
        if mr_index > 4:
            raise EventLogError(
                f"MR index {mr_index} is not a TDX RTMR (1..4)", where=f"CCEL offset {start}"
            )
        if sha384 is None:
            raise EventLogError("record has no SHA-384 digest", where=f"CCEL offset {start}")
        if len(out) >= MAX_EVENTS:
            raise EventLogError(f"more than {MAX_EVENTS} events", where=f"CCEL offset {start}")
        try:
            out.append(
                EventLogEntry(
                    imr=mr_index - 1, event_type=event_type, digest=sha384, event_payload=event
                )
            )
        except EventLogError as exc:
            raise EventLogError(str(exc), where=f"CCEL offset {start}") from None
    return tuple(out)
