"""dstack's VersionedAttestation V0 (`attest._versioned`) against dstack's own bytes.

`spec_decode` below is an independent reading of the format, written from dstack's type
definitions (dstack-attest `attestation.rs`, cc-eventlog `tdx.rs`/`runtime_events.rs`) and the
SCALE codec's published rules, sharing no code with `attest._versioned`. The real bytes are
dstack's guest-agent fixture (tests/data/attestation/README.md).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attest import (
    DSTACK_RUNTIME_EVENT_TYPE,
    AttestationFormatError,
    EventLogEntry,
    VersionedAttestation,
    decode_versioned_attestation,
    encode_versioned_attestation,
    evidence_from_attestation,
    parse_quote,
    runtime_events_of,
)
from attest._quote_input import EvidenceInputError, load_evidence
from attest.providers import SimulatorProvider
from tests.conftest import ATTESTATION_DATA, REPO_ROOT

FIXTURE = ATTESTATION_DATA / "dstack" / "versioned-attestation-v0.bin"


def spec_compact(data: bytes, pos: int) -> tuple[int, int]:
    """SCALE compact integer at `pos`: (value, next position). Low two bits pick the mode."""
    mode = data[pos] & 0b11
    if mode == 0b00:
        return data[pos] >> 2, pos + 1
    if mode == 0b01:
        return int.from_bytes(data[pos : pos + 2], "little") >> 2, pos + 2
    if mode == 0b10:
        return int.from_bytes(data[pos : pos + 4], "little") >> 2, pos + 4
    n = (data[pos] >> 2) + 4
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "little"), pos + 1 + n


def spec_decode(data: bytes) -> dict[str, Any]:
    """VersionedAttestation::V0 { Attestation { quote: DstackTdx(TdxQuote), runtime_events,
    report_data: [u8; 64], config: String, report: () } }."""
    pos = 0

    def vec() -> bytes:
        nonlocal pos
        n, pos = spec_compact(data, pos)
        out = data[pos : pos + n]
        assert len(out) == n, "truncated"
        pos += n
        return out

    def u32() -> int:
        nonlocal pos
        pos += 4
        return int.from_bytes(data[pos - 4 : pos], "little")

    assert data[0] == 0, "enum LegacyVersionedAttestation variant V0"
    assert data[1] == 0, "enum AttestationQuote variant DstackTdx"
    pos = 2
    quote = vec()
    count, pos = spec_compact(data, pos)
    events = []
    for _ in range(count):
        imr, event_type = u32(), u32()
        digest, name, payload = vec(), vec().decode(), vec()
        events.append((imr, event_type, digest, name, payload))
    count, pos = spec_compact(data, pos)
    runtime = [(vec().decode(), vec()) for _ in range(count)]
    report_data = data[pos : pos + 64]
    pos += 64
    config = vec().decode()
    assert pos == len(data), "trailing bytes"
    return {
        "quote": quote,
        "events": events,
        "runtime": runtime,
        "report_data": report_data,
        "config": config,
    }


def as_spec(att: VersionedAttestation) -> dict[str, Any]:
    return {
        "quote": att.quote,
        "events": [
            (e.imr, e.event_type, e.digest, e.event, e.event_payload) for e in att.event_log
        ],
        "runtime": list(att.runtime_events),
        "report_data": att.report_data,
        "config": att.vm_config,
    }


def test_dstacks_own_attestation_decodes_and_re_encodes_byte_for_byte() -> None:
    raw = FIXTURE.read_bytes()
    att = decode_versioned_attestation(raw)
    assert as_spec(att) == spec_decode(raw)
    assert encode_versioned_attestation(att) == raw
    assert parse_quote(att.quote).version == 4 and len(att.quote) == 5010
    assert len(att.event_log) == 33 and {e.imr for e in att.event_log} == {0, 1, 2, 3}
    assert [n for n, _ in att.runtime_events][:3] == ["system-preparing", "app-id", "compose-hash"]
    assert att.runtime_events == runtime_events_of(att.event_log)
    assert att.report_data == bytes(64)
    assert "vm_config" in json.loads(att.vm_config)  # older agents: the whole sys-config


def simulated(report_data: bytes = bytes(range(64))) -> VersionedAttestation:
    sim = SimulatorProvider()
    for name, payload in (("system-preparing", b""), ("app-id", b"\x11" * 20)):
        sim.extend_rtmr(3, name, payload)
    log = sim.event_log()
    return VersionedAttestation(
        quote=sim.get_quote(report_data),
        event_log=log,
        runtime_events=runtime_events_of(log),
        report_data=report_data,
        vm_config='{"os_image_hash":"' + "ab" * 32 + '","cpu_count":1}',
    )


def test_what_tkms_encodes_reads_back_under_the_spec() -> None:
    att = simulated()
    raw = encode_versioned_attestation(att)
    assert raw[:2] == b"\x00\x00"
    assert spec_decode(raw) == as_spec(att)
    assert decode_versioned_attestation(raw) == att
    quote, log, vm_config = evidence_from_attestation(att)
    assert quote == att.quote and vm_config == att.vm_config
    assert [e["event"] for e in json.loads(log)][-2:] == ["system-preparing", "app-id"]


@pytest.mark.parametrize(
    ("value", "encoded"),
    [  # the SCALE codec's documented examples
        (0, "00"),
        (1, "04"),
        (42, "a8"),
        (69, "1501"),
        (65535, "feff0300"),
        (1 << 30, "0300000040"),
        (100000000000000, "0b00407a10f35a"),
    ],
)
def test_compact_lengths_follow_the_scale_vectors(value: int, encoded: str) -> None:
    att = VersionedAttestation(
        quote=b"\x07" * value if value < 70000 else b"",
        event_log=(),
        runtime_events=(),
        report_data=bytes(64),
        vm_config="",
    )
    if value < 70000:
        raw = encode_versioned_attestation(att)
        assert raw[2 : 2 + len(encoded) // 2].hex() == encoded
    assert spec_compact(bytes.fromhex(encoded), 0) == (value, len(encoded) // 2)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"\x81\xa1a\x01", "V1 \\(msgpack\\)"),
        (b"\x01\x00", "unknown attestation version byte 0x01"),
        (b"\x00\x01", "quote kind 1 is not DstackTdx"),
        (b"\x00\x00\x01\x00", "non-canonical length in quote"),  # 0 in two-byte mode
        (b"\x00\x00\x03\x00\x00\x00\x00", "non-canonical length in quote"),
        (b"\x00\x00\x07\x00\x00\x00\x00\x00", "non-canonical length in quote"),
        (b"\x00\x00\x08", "truncated while reading quote"),
        (b"\x00\x00\x00\x00\x00" + bytes(63), "truncated while reading report_data"),
        (b"\x00\x00\x00\x00\x00" + bytes(64) + b"\x04\xff", "config is not UTF-8"),
        (b"\x00\x00\x00\x00\x00" + bytes(64) + b"\x00\x00", "1 trailing bytes"),
        (b"\x00\x00\x00\x06\x00\x04\x00", "event_log has 65537 entries, limit"),
    ],
)
def test_malformed_bytes_are_refused_with_what_and_where(raw: bytes, message: str) -> None:
    with pytest.raises(AttestationFormatError, match=message):
        decode_versioned_attestation(raw)


def test_an_event_with_a_bad_digest_is_named() -> None:
    entry = b"\x00\x00\x00\x00" + b"\x01\x00\x00\x00" + b"\x04\x01" + b"\x00\x00"
    raw = b"\x00\x00\x00\x04" + entry + b"\x00" + bytes(64) + b"\x00"
    with pytest.raises(AttestationFormatError, match=r"event_log\[0\]: digest has 1 bytes"):
        decode_versioned_attestation(raw)


def test_every_truncation_of_dstacks_bytes_is_refused() -> None:
    raw = FIXTURE.read_bytes()
    for cut in range(0, len(raw), 97):
        with pytest.raises(AttestationFormatError):
            decode_versioned_attestation(raw[:cut])


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_format_errors(data: bytes) -> None:
    for blob in (data, b"\x00\x00" + data):
        with contextlib.suppress(AttestationFormatError):
            decode_versioned_attestation(blob)


events = st.builds(
    EventLogEntry,
    imr=st.integers(0, 3),
    event_type=st.sampled_from([1, 0x80000003, DSTACK_RUNTIME_EVENT_TYPE]),
    digest=st.just(bytes(48)),
    event=st.text(max_size=20),
    event_payload=st.binary(max_size=100),
)


@given(
    st.lists(events, max_size=8),
    st.binary(max_size=300),
    st.binary(min_size=64, max_size=64),
    st.text(max_size=50),
)
def test_encode_then_decode_is_the_identity(
    log: list[EventLogEntry], quote: bytes, report_data: bytes, config: str
) -> None:
    att = VersionedAttestation(
        quote=quote,
        event_log=tuple(log),
        runtime_events=runtime_events_of(log),
        report_data=report_data,
        vm_config=config,
    )
    raw = encode_versioned_attestation(att)
    assert decode_versioned_attestation(raw) == att
    assert spec_decode(raw) == as_spec(att)


def test_parts_that_disagree_are_refused() -> None:
    att = simulated()
    other_data = VersionedAttestation(**{**_fields(att), "report_data": bytes(64)})
    with pytest.raises(AttestationFormatError, match="is not the quote's"):
        evidence_from_attestation(other_data)
    dropped = VersionedAttestation(**{**_fields(att), "runtime_events": att.runtime_events[:1]})
    with pytest.raises(AttestationFormatError, match="not the event log's runtime events"):
        evidence_from_attestation(dropped)


def _fields(att: VersionedAttestation) -> dict[str, Any]:
    return {name: getattr(att, name) for name in VersionedAttestation.__dataclass_fields__}


def test_tkms_attest_verify_reads_an_attest_response(tmp_path: Path) -> None:
    raw = encode_versioned_attestation(simulated())
    response = tmp_path / "attest.json"
    response.write_text(json.dumps({"attestation": raw.hex()}))
    (tmp_path / "attest.bin").write_bytes(raw)
    (tmp_path / "attest.hex").write_text(raw.hex())
    for name in ("attest.json", "attest.bin", "attest.hex"):
        loaded = load_evidence(tmp_path / name)
        assert loaded.source_format == "attestation" and loaded.vm_config is not None
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "attest.cli",
            "attest",
            "verify",
            "--json",
            "--allow-simulator",
            str(response),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["accepted"] and report["replayed"]
    assert report["report_data"] == bytes(range(64)).hex()
    assert report["identity"]["app_id"] == "11" * 20
    assert report["identity"]["claimed_os_image_hash"] == "ab" * 32


def test_a_broken_attestation_file_is_unusable_input(tmp_path: Path) -> None:
    bad = tmp_path / "attest.json"
    bad.write_text(json.dumps({"attestation": "0000ff"}))
    with pytest.raises(EvidenceInputError, match="dstack attestation: truncated"):
        load_evidence(bad)
