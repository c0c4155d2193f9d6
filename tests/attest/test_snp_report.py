"""SEV-SNP report parsing: the three vendored reports, and every malformed input named."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest import AttestError, SnpProduct, SnpReportError, SnpTcb, parse_snp_report
from attest.errors import QuoteParseError, UnsupportedQuoteError
from tests.attest.snp_data import SET_IDS, SETS, SnpSet


def _set(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


@pytest.mark.parametrize("s", SETS, ids=SET_IDS)
def test_real_reports_parse_to_their_published_values(s: SnpSet) -> None:
    r = parse_snp_report(s.report)
    assert r.version == s.version
    assert r.measurement.hex().startswith(s.measurement)
    assert r.vmpl == 0 and r.signature_algo == 1 and r.signing_key == 0
    assert r.signed_region == s.report[:0x2A0]
    assert r.signature_r > 0 and r.signature_s > 0


def test_field_values_of_the_dstack_and_virtee_reports() -> None:
    virtee, trustee, dstack = (parse_snp_report(s.report) for s in SETS)
    # virtee/sev tests/certs_data: chip d49554ec…, policy 0x30000, no CPUID (v2)
    assert virtee.chip_id.hex().startswith("d49554ec717f4e5b")
    assert virtee.policy == 0x30000 and virtee.cpuid is None and virtee.product is None
    # trustee: reported TCB 0300000000000873 = bl 3, tee 0, snp 8, ucode 0x73 (README)
    assert trustee.reported_tcb.hex() == "0300000000000873"
    assert SnpTcb.decode(trustee.reported_tcb, SnpProduct.MILAN).spls() == {
        "blSPL": 3,
        "teeSPL": 0,
        "snpSPL": 8,
        "ucodeSPL": 0x73,
    }
    # dstack fixture README: host_data 783f0057…, report_data "attest-test-fixture-2026"
    assert dstack.host_data.hex() == (
        "783f0057820acb99249af56cc3b07b4e8d80f65183167cba9cf437bb680f742f"
    )
    assert dstack.report_data == b"attest-test-fixture-2026".ljust(64, b"\0")
    assert dstack.chip_id.hex().startswith("38d174589d2dff97a6d40cb9f9d90b95")
    assert dstack.cpuid == (0x19, 0x01, 0x01) and dstack.product is SnpProduct.MILAN


def test_turin_tcb_layout_differs_from_milan() -> None:
    raw = bytes([1, 2, 3, 4, 0, 0, 0, 9])
    assert SnpTcb.decode(raw, SnpProduct.TURIN).spls() == {
        "blSPL": 2,
        "teeSPL": 3,
        "snpSPL": 4,
        "ucodeSPL": 9,
        "fmcSPL": 1,
    }
    assert SnpTcb.decode(raw, SnpProduct.GENOA).spls()["snpSPL"] == 0


REPORT = SETS[2].report


@pytest.mark.parametrize(
    ("raw", "error", "offset", "field", "match"),
    [
        (REPORT[:1000], SnpReportError, 1000, "report", "1184 bytes, got 1000"),
        (REPORT + b"\0", SnpReportError, 1184, "report", "got 1185"),
        (_set(REPORT, 0, b"\x01"), UnsupportedQuoteError, 0, "version", "version 1"),
        (_set(REPORT, 0, b"\x06"), UnsupportedQuoteError, 0, "version", "version 6"),
        (_set(REPORT, 0x34, b"\x02"), UnsupportedQuoteError, 0x34, "signature_algo", "algorithm 2"),
        (_set(REPORT, 0x2A0 + 50, b"\x01"), SnpReportError, 0x2D0, "signature.r", "above the 48"),
        (_set(REPORT, 0x2E8 + 71, b"\x01"), SnpReportError, 0x318, "signature.s", "above the 48"),
        (_set(REPORT, 0x400, b"\x01"), SnpReportError, 0x400, "signature", "reserved bytes"),
        (_set(REPORT, 0x188, b"\x17"), UnsupportedQuoteError, 0x188, "cpuid", "family 0x17"),
    ],
    ids=[
        "truncated",
        "trailing",
        "version-1",
        "version-6",
        "sig-algo",
        "r-high",
        "s-high",
        "sig-reserved",
        "cpuid",
    ],
)
def test_malformed_reports_name_field_and_offset(
    raw: bytes, error: type[QuoteParseError], offset: int, field: str, match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        parse_snp_report(raw)
    assert info.value.offset == offset
    assert info.value.field == field
    assert f"0x{offset:x}" in info.value.diagnostics() or error is UnsupportedQuoteError


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=1300))
def test_arbitrary_bytes_parse_or_raise_an_attest_error(data: bytes) -> None:
    with contextlib.suppress(AttestError):
        parse_snp_report(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 1183), st.integers(1, 255))
def test_mutated_reports_parse_or_raise_an_attest_error(offset: int, mask: int) -> None:
    raw = bytearray(REPORT)
    raw[offset] ^= mask
    with contextlib.suppress(AttestError):
        parse_snp_report(bytes(raw))
