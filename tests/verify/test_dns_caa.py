"""CAA from a real DNS server (Knot), and the pinning rules of RFC 8659/8657 as the verifier
applies them; the wire format against hand-made answers (compression, truncation, strays)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.verify.knot import Knot
from verify.caa import check_pinned, parse_issue_value, relevant_records
from verify.dns import (
    Answer,
    CaaRecord,
    DnsError,
    encode_query,
    parse_response,
    query_caa,
)

ZONE = "verify.test"
ACCOUNT = "https://acme.example/acme/acct/1"
OTHER = "https://acme.example/acme/acct/666"


def pinned(uri: str = ACCOUNT) -> list[str]:
    value = f'"ca.example; accounturi={uri}"'
    return [f"0 issue {value}", f"0 issuewild {value}"]


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Knot]:
    server = Knot.start(tmp_path_factory.mktemp("knot"), ZONE, pinned())
    try:
        yield server
    finally:
        server.stop()


def test_caa_read_from_knot_pins_the_account_for_names_below_it(knot: Knot) -> None:
    knot.set_caa(pinned())
    answer = query_caa(knot.address, ZONE)
    assert {(r.tag, r.value) for r in answer.records} == {
        ("issue", f"ca.example; accounturi={ACCOUNT}"),
        ("issuewild", f"ca.example; accounturi={ACCOUNT}"),
    }
    # An app name has no records of its own: the relevant set is its parent's (NXDOMAIN there).
    owner, records = relevant_records(f"abc-443.{ZONE}", lambda n: query_caa(knot.address, n))
    assert owner == ZONE and len(records) == 2
    verdict = check_pinned(f"abc-443.{ZONE}", ACCOUNT, lambda n: query_caa(knot.address, n))
    assert verdict.pinned, verdict.reason


def test_a_record_pinning_another_account_fails_naming_both(knot: Knot) -> None:
    knot.set_caa([pinned()[0], pinned(OTHER)[1]])
    verdict = check_pinned(ZONE, ACCOUNT, lambda n: query_caa(knot.address, n))
    assert not verdict.pinned
    assert f"accounturi={OTHER}, not the quoted account {ACCOUNT}" in verdict.reason
    assert "issuewild" in verdict.reason


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([], "no CAA record"),
        (['0 issue "ca.example"'], "no accounturi"),
        ([pinned()[1]], "has no 'issue' record"),
    ],
    ids=["none", "no-accounturi", "wildcard-only"],
)
def test_records_that_do_not_pin_the_account_fail(
    knot: Knot, records: list[str], reason: str
) -> None:
    knot.set_caa(records)
    verdict = check_pinned(ZONE, ACCOUNT, lambda n: query_caa(knot.address, n))
    assert not verdict.pinned
    assert reason in verdict.reason


def test_a_record_granting_nothing_is_harmless(knot: Knot) -> None:
    knot.set_caa([*pinned(), '0 issue ";"'])
    assert check_pinned(ZONE, ACCOUNT, lambda n: query_caa(knot.address, n)).pinned


def test_a_server_that_does_not_answer_is_an_error_not_an_empty_set(tmp_path: Path) -> None:
    from tests.verify.knot import free_udp_tcp_port

    with pytest.raises(DnsError, match="no answer"):
        query_caa(f"127.0.0.1:{free_udp_tcp_port()}", ZONE, timeout=0.3)


def test_issue_values_parse_into_issuer_and_parameters() -> None:
    assert parse_issue_value(
        "letsencrypt.org; validationmethods=dns-01; accounturi=https://a/1"
    ) == (
        "letsencrypt.org",
        {"validationmethods": "dns-01", "accounturi": "https://a/1"},
    )
    assert parse_issue_value(";") == ("", {})


def _answer(query: bytes, records: list[tuple[int, bytes]], *, flags: int = 0x8180) -> bytes:
    """A response to `query` whose answers name the question by a compression pointer."""
    header = struct.pack(">HHHHHH", int.from_bytes(query[:2], "big"), flags, 1, len(records), 0, 0)
    body = query[12:]
    for rtype, rdata in records:
        body += b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 60, len(rdata)) + rdata
    return header + body


def test_answers_decode_through_compression_and_foreign_ids_are_refused() -> None:
    query = encode_query("a.example", 0x1234)
    rdata = bytes([128, 5]) + b"issue" + b"ca.example"
    answer, truncated = parse_response(_answer(query, [(257, rdata)]), "a.example", 0x1234)
    assert answer == Answer(0, (CaaRecord(128, "issue", "ca.example"),), None)
    assert answer.records[0].critical and not truncated
    with pytest.raises(DnsError, match="query id"):
        parse_response(_answer(query, []), "a.example", 0x4321)
    _, truncated = parse_response(_answer(query, [], flags=0x8380), "a.example", 0x1234)
    assert truncated


def test_pointer_loops_and_truncated_records_are_refused() -> None:
    query = encode_query("a.example", 7)
    looping = struct.pack(">HHHHHH", 7, 0x8180, 1, 1, 0, 0) + query[12:] + b"\xc0\x1b\xc0\x1b"
    with pytest.raises(DnsError):
        parse_response(looping, "a.example", 7)
    cut = _answer(query, [(257, bytes([0, 5]) + b"issue" + b"ca")])[:-3]
    with pytest.raises(DnsError, match="truncated"):
        parse_response(cut, "a.example", 7)
