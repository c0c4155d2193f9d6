"""dstack JSON event log parsing: real logs, field validation, and fuzzed input."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attest._eventlog import (
    DSTACK_RUNTIME_EVENT_TYPE,
    EventLogEntry,
    EventLogError,
    event_log_to_json,
    parse_event_log,
)
from tests.attest.test_evidence_data import load_json

GOOD = {"imr": 0, "event_type": 4, "digest": "ab" * 48, "event": "", "event_payload": "00"}


def test_quote_report_log_parses(attestation_data: Path) -> None:
    doc = load_json(attestation_data / "dstack" / "quote-report.json")
    entries = parse_event_log(doc["event_log"])
    assert len(entries) == 28
    runtime = [e.event for e in entries if e.is_runtime_event]
    assert runtime[:3] == ["system-preparing", "app-id", "compose-hash"]
    assert entries[-1].event == "LIUM_MINER_HOTKEY"
    assert entries[21].event_payload.hex() == "3763bc34552cf3a27ff71ad5f7a90471562a1a2d"


def test_tdx_lite_log_parses_with_stripped_payloads(attestation_data: Path) -> None:
    doc = load_json(attestation_data / "dstack" / "tdx-lite-getquote.json")
    entries = parse_event_log(doc["event_log"])
    assert len(entries) == 29
    assert entries[0].event_payload == b""  # boot payloads stripped, digests kept
    assert [e.event for e in entries if e.imr == 0 and e.event_type == 0xA] == [
        "acpi-loader",
        "acpi-rsdp",
        "acpi-tables",
    ]


def test_json_round_trip_keeps_every_field() -> None:
    entries = (
        EventLogEntry(imr=1, event_type=0x80000003, digest=bytes(range(48)), event_payload=b"x"),
        EventLogEntry(
            imr=3,
            event_type=DSTACK_RUNTIME_EVENT_TYPE,
            digest=b"",
            event="compose-hash",
            event_payload=b"\x01\x02",
            version=2,
        ),
    )
    text = event_log_to_json(entries)
    assert json.loads(text)[1]["version"] == 2
    assert "version" not in json.loads(text)[0]
    assert parse_event_log(text) == entries


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"imr": 4}, r"entry 0: imr 4 out of range 0\.\.3"),
        ({"imr": True}, r"entry 0: field 'imr' must be int, got bool"),
        ({"digest": "zz"}, r"entry 0: field 'digest' is not hex"),
        ({"digest": "ab" * 32}, r"entry 0: digest has 32 bytes, expected 48"),
        ({"event_type": 2**32}, r"entry 0: event_type 4294967296 is not a u32"),
        ({"version": 3}, r"entry 0: version 3 is not 1 or 2"),
        ({"event": 5}, r"entry 0: field 'event' must be str"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(EventLogError, match=message):
        parse_event_log([{**GOOD, **change}])


def test_missing_digest_only_allowed_for_runtime_events() -> None:
    boot = {k: v for k, v in GOOD.items() if k != "digest"}
    with pytest.raises(EventLogError, match="entry 0: digest has 0 bytes"):
        parse_event_log([boot])
    runtime = {**boot, "imr": 3, "event_type": DSTACK_RUNTIME_EVENT_TYPE, "event": "app-id"}
    assert parse_event_log([runtime])[0].digest == b""


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "not valid JSON"), ('{"a": 1}', "must be a JSON list, got dict"), ("[1]", "entry 0")],
)
def test_bad_documents(text: str, message: str) -> None:
    with pytest.raises(EventLogError, match=message):
        parse_event_log(text)


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_event_log_error(data: bytes) -> None:
    with contextlib.suppress(EventLogError):
        parse_event_log(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "imr": json_values | st.integers(-1, 5),
                "event_type": json_values,
                "digest": json_values | st.just("ab" * 48),
                "event": json_values,
                "event_payload": json_values | st.just("00"),
                "version": json_values,
            },
        ),
        max_size=4,
    )
)
def test_random_json_raises_only_event_log_error(items: list[dict[str, object]]) -> None:
    with contextlib.suppress(EventLogError):
        parse_event_log(json.dumps(items))
