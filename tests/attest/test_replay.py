"""RTMR replay against the README's expectations, and the negative cases of its section 4."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from attest._ccel import parse_ccel
from attest._eventlog import DSTACK_RUNTIME_EVENT_TYPE, EventLogEntry, parse_event_log
from attest._replay import (
    ReplayError,
    replay_rtmrs,
    runtime_event_digest,
    runtime_event_hash_input,
    verify_replay,
)
from tests.attest.test_evidence_data import load_json, quote_rtmrs

ZERO = bytes(48)


def _dstack(base: Path, name: str) -> tuple[list[dict[str, Any]], bytes]:
    doc = load_json(base / "dstack" / name)
    return json.loads(doc["event_log"]), bytes.fromhex(doc["quote"])


@pytest.mark.parametrize(
    ("name", "counts"),
    [("quote-report.json", (13, 5, 2, 8)), ("tdx-lite-getquote.json", (13, 5, 2, 9))],
)
def test_dstack_logs_replay_all_four_rtmrs(
    attestation_data: Path, name: str, counts: tuple[int, ...]
) -> None:
    items, quote = _dstack(attestation_data, name)
    replayed = verify_replay(parse_event_log(items), quote_rtmrs(quote))
    assert replayed.counts == counts


def test_quote_report_rtmr3_matches_readme_value(attestation_data: Path) -> None:
    items, _ = _dstack(attestation_data, "quote-report.json")
    assert replay_rtmrs(parse_event_log(items))[3].hex() == (
        "0f787c3877f3e95095d5a4d13dd0fe0233803b30120d8469866719dc28f519ce"
        "021fe1e53459121e7a5a4443147185a8"
    )


def test_v1_digest_matches_sample(attestation_data: Path) -> None:
    payload = bytes.fromhex("3763bc34552cf3a27ff71ad5f7a90471562a1a2d")
    assert runtime_event_digest("app-id", payload)[:12].hex() == "837c2dd72f8a4c740159e5e0"
    expected = hashlib.sha384(b"\x01\x00\x00\x08:app-id:" + payload).digest()
    assert runtime_event_digest("app-id", payload) == expected


def test_v2_hash_input_is_dstack_canonical_json() -> None:
    # The strings below are the expectations in dstack's cc-eventlog unit tests.
    assert runtime_event_hash_input("compose-hash", b"\xab\xcd", 2) == (
        b'{"event":"compose-hash","event_type":134217729,"payload":"abcd","version":2}'
    )
    assert runtime_event_hash_input('event"with\\special\nchars', b"\xff", 2) == (
        b'{"event":"event\\"with\\\\special\\nchars","event_type":134217729,'
        b'"payload":"ff","version":2}'
    )
    assert b'"event":"\\b\\f\\n\\r\\t\\u0001"' in runtime_event_hash_input("\b\f\n\r\t\x01", b"", 2)
    assert "测试-🦀".encode() in runtime_event_hash_input("测试-🦀", b"", 2)


def test_v2_events_replay_with_their_own_digest() -> None:
    e1 = EventLogEntry(
        imr=3, event_type=DSTACK_RUNTIME_EVENT_TYPE, digest=b"", event="a", event_payload=b"1"
    )
    e2 = EventLogEntry(
        imr=3,
        event_type=DSTACK_RUNTIME_EVENT_TYPE,
        digest=b"",
        event="a",
        event_payload=b"1",
        version=2,
    )
    assert replay_rtmrs([e1]).rtmrs[3] != replay_rtmrs([e2]).rtmrs[3]
    expected = hashlib.sha384(ZERO + runtime_event_digest("a", b"1", 2)).digest()
    assert replay_rtmrs([e2]).rtmrs[3] == expected


def test_dstack_ccel_sample(attestation_data: Path) -> None:
    replayed = replay_rtmrs(parse_ccel((attestation_data / "dstack" / "ccel.bin").read_bytes()))
    assert replayed.rtmrs[0].hex().startswith("274c2344116db7c663470693b5ba62b8621eac28")
    assert replayed.rtmrs[1].hex().startswith("bdcf4ee0f7fdfe7c73fbb19ded73193aee23a672")
    assert replayed.rtmrs[2:] == (ZERO, ZERO)


def test_gcp_ccel_replays_cos113_quote(attestation_data: Path) -> None:
    base = attestation_data / "go-tdx-guest" / "ccel"
    entries = parse_ccel((base / "ccel_data.dat").read_bytes())
    rtmrs = quote_rtmrs((base / "cos-113-tdx-quote.dat").read_bytes())
    verify_replay(entries, rtmrs)
    assert rtmrs[2].hex().startswith("4969684dc87381fc")


@pytest.mark.parametrize(
    ("name", "prefixes"),
    [
        ("CCEL_data_ovmf", ("8566f998798db094", "775b9f6bfe99f8a3", "94eaf7a7bf398ed8")),
        ("CCEL_data_grub", ("cec0a104f691f60d", "6c289e0c62182d41", "08919d017ba0e52c")),
        ("CCEL_data_grub_gke", ("bc9945139042cf2c", "c17cb288a4dee302", "334aeba2c985f888")),
    ],
)
def test_trustee_ccels(attestation_data: Path, name: str, prefixes: tuple[str, ...]) -> None:
    data = (attestation_data / "trustee" / "eventlog" / name).read_bytes()
    replayed = replay_rtmrs(parse_ccel(data))
    assert tuple(r.hex()[:16] for r in replayed.rtmrs[:3]) == prefixes
    assert replayed.rtmrs[3] == ZERO


# --- negative cases (README section 4, last row) ------------------------------------------


def _index(items: list[dict[str, Any]], event: str) -> int:
    return next(i for i, e in enumerate(items) if e["event"] == event)


def test_changed_compose_hash_payload_is_caught(attestation_data: Path) -> None:
    items, quote = _dstack(attestation_data, "quote-report.json")
    i = _index(items, "compose-hash")
    payload = bytearray.fromhex(items[i]["event_payload"])
    payload[0] ^= 1
    items[i]["event_payload"] = payload.hex()
    with pytest.raises(ReplayError, match=r"event 22 \(RTMR3 'compose-hash'\): stated digest"):
        verify_replay(parse_event_log(items), quote_rtmrs(quote))
    items[i]["digest"] = ""  # without a stated digest the register itself disagrees
    with pytest.raises(ReplayError, match="RTMR3 mismatch: quote has 0f787c38") as info:
        verify_replay(parse_event_log(items), quote_rtmrs(quote))
    assert info.value.rtmr == 3


def test_changed_boot_digest_is_caught(attestation_data: Path) -> None:
    items, quote = _dstack(attestation_data, "quote-report.json")
    digest = bytearray.fromhex(items[0]["digest"])
    digest[5] ^= 0x80
    items[0]["digest"] = digest.hex()
    with pytest.raises(
        ReplayError,
        match=r"RTMR0 mismatch: quote has [0-9a-f]{96}, event log "
        r"\(13 events\) replays to [0-9a-f]{96}",
    ):
        verify_replay(parse_event_log(items), quote_rtmrs(quote))


def test_dropped_rtmr3_event_is_caught(attestation_data: Path) -> None:
    items, quote = _dstack(attestation_data, "quote-report.json")
    del items[_index(items, "instance-id")]
    with pytest.raises(ReplayError, match=r"RTMR3 mismatch.*\(7 events\)"):
        verify_replay(parse_event_log(items), quote_rtmrs(quote))


def test_reordered_rtmr3_events_are_caught(attestation_data: Path) -> None:
    items, quote = _dstack(attestation_data, "quote-report.json")
    a, b = _index(items, "app-id"), _index(items, "instance-id")
    items[a], items[b] = items[b], items[a]
    with pytest.raises(ReplayError, match="RTMR3 mismatch"):
        verify_replay(parse_event_log(items), quote_rtmrs(quote))


def test_only_requested_registers_are_compared(attestation_data: Path) -> None:
    items, quote = _dstack(attestation_data, "quote-report.json")
    del items[_index(items, "system-ready")]
    verify_replay(parse_event_log(items), quote_rtmrs(quote), indices=(0, 1, 2))
    with pytest.raises(ReplayError, match="expected the quote's 4 RTMRs, got 3"):
        verify_replay(parse_event_log(items), quote_rtmrs(quote)[:3])
