"""Binary CCEL/TCG event log parsing: real logs from four sources, bounds, and fuzzing."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest._ccel import parse_ccel
from attest._eventlog import EventLogError

DSTACK_CCEL = ("dstack", "ccel.bin")
GCP_CCEL = ("go-tdx-guest", "ccel", "ccel_data.dat")
GKE_CCEL = ("trustee", "eventlog", "CCEL_data_grub_gke")


def _read(base: Path, parts: tuple[str, ...]) -> bytes:
    return base.joinpath(*parts).read_bytes()


def _spec_header(algs: list[tuple[int, int]]) -> bytes:
    body = b"Spec ID Event03\x00" + bytes(4) + bytes([0, 2, 0, 2]) + struct.pack("<I", len(algs))
    body += b"".join(struct.pack("<HH", a, s) for a, s in algs) + b"\x00"
    return struct.pack("<II", 0, 3) + bytes(20) + struct.pack("<I", len(body)) + body


def _record(mr: int, etype: int, digests: list[tuple[int, bytes]], event: bytes) -> bytes:
    out = struct.pack("<III", mr, etype, len(digests))
    out += b"".join(struct.pack("<H", a) + d for a, d in digests)
    return out + struct.pack("<I", len(event)) + event


def test_dstack_sample_event_count_and_acpi_events(attestation_data: Path) -> None:
    entries = parse_ccel(_read(attestation_data, DSTACK_CCEL))
    assert len(entries) == 18
    assert [e.imr for e in entries if e.event_type == 0xA] == [0, 0, 0]
    assert all(e.event_payload == b"ACPI DATA" for e in entries if e.event_type == 0xA)


def test_gcp_log_has_ipl_events_on_rtmr2(attestation_data: Path) -> None:
    entries = parse_ccel(_read(attestation_data, GCP_CCEL))
    assert len(entries) == 43
    ipl = [e for e in entries if e.event_type == 0xD]
    assert len(ipl) == 20 and {e.imr for e in ipl} == {2}


def test_gke_log_skips_no_action_events_on_mr0(attestation_data: Path) -> None:
    data = _read(attestation_data, GKE_CCEL)
    assert data.count(b"SP800-155 Event3") == 2  # present in the bytes...
    entries = parse_ccel(data)
    assert all(e.event_type != 3 for e in entries)  # ...but never replayed
    assert not any(b"SP800-155" in e.event_payload for e in entries)


def test_multi_algorithm_records_keep_sha384() -> None:
    d1, d384 = b"\x11" * 20, b"\x22" * 48
    log = _spec_header([(4, 20), (0xC, 48)]) + _record(2, 7, [(4, d1), (0xC, d384)], b"ev")
    (entry,) = parse_ccel(log + b"\xff" * 8)
    assert (entry.imr, entry.digest, entry.event_payload) == (1, d384, b"ev")


def test_record_without_sha384_is_rejected() -> None:
    log = _spec_header([(4, 20)]) + _record(1, 7, [(4, b"\x11" * 20)], b"")
    with pytest.raises(EventLogError, match=r"CCEL offset \d+: record has no SHA-384 digest"):
        parse_ccel(log)


def test_undeclared_algorithm_is_rejected_with_offset() -> None:
    header = _spec_header([(0xC, 48)])
    log = header + _record(1, 7, [(0xB, b"\x00" * 32)], b"")
    with pytest.raises(
        EventLogError, match=f"CCEL offset {len(header) + 12}: digest algorithm 0xb"
    ):
        parse_ccel(log)


def test_mr_index_beyond_rtmr3_is_rejected() -> None:
    header = _spec_header([(0xC, 48)])
    with pytest.raises(EventLogError, match=f"CCEL offset {len(header)}: MR index 5"):
        parse_ccel(header + _record(5, 7, [(0xC, bytes(48))], b""))


def test_non_agile_header_is_rejected() -> None:
    bad = _spec_header([(0xC, 48)]).replace(b"Spec ID Event03", b"Spec ID Event02")
    with pytest.raises(EventLogError, match="not a crypto-agile log"):
        parse_ccel(bad)


def test_truncation_reports_offset(attestation_data: Path) -> None:
    data = _read(attestation_data, DSTACK_CCEL)[:1000]
    with pytest.raises(EventLogError, match=r"CCEL offset \d+: .* needs \d+ bytes, only \d+ left"):
        parse_ccel(data)


@settings(max_examples=60)
@given(st.data())
def test_truncated_real_logs_raise_only_event_log_error(
    attestation_data: Path, data: st.DataObject
) -> None:
    raw = _read(attestation_data, data.draw(st.sampled_from([DSTACK_CCEL, GCP_CCEL, GKE_CCEL])))
    end = raw.index(b"\xff\xff\xff\xff")
    cut = data.draw(st.integers(0, end))
    flip = data.draw(st.integers(0, end - 1))
    mutated = bytearray(raw[:cut])
    if flip < cut and data.draw(st.booleans()):
        mutated[flip] ^= 0xFF
    with contextlib.suppress(EventLogError):
        parse_ccel(bytes(mutated))


@given(st.binary(max_size=400))
def test_random_bytes_raise_only_event_log_error(data: bytes) -> None:
    with contextlib.suppress(EventLogError):
        parse_ccel(_spec_header([(0xC, 48)]) + data)


def test_duplicate_digest_in_one_record_is_rejected() -> None:
    header = _spec_header([(4, 20), (0xC, 48)])
    rec = _record(1, 7, [(0xC, b"\x01" * 48), (0xC, b"\x02" * 48)], b"")
    with pytest.raises(EventLogError, match=f"CCEL offset {len(header) + 62}: .* appears twice"):
        parse_ccel(header + rec)
