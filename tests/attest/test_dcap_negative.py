"""README section 4 and go-tdx-guest's TestNegativeVerification: each must be rejected, and
for the stated reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from attest import (
    AttestError,
    Collateral,
    QuoteParseError,
    UnsupportedQuoteError,
    VerificationError,
    collateral_from_json,
    default_policy,
    load_collateral,
    verify_quote,
)

NOW_A = 1751328000  # 2025-07-01, set A
NOW_K = 1688173200  # 2023-07-01T01:00, sets J/K


def _xor(raw: bytes, offset: int, mask: int = 0x01) -> bytes:
    return raw[:offset] + bytes([raw[offset] ^ mask]) + raw[offset + 1 :]


def _set(raw: bytes, offset: int, value: int) -> bytes:
    return raw[:offset] + bytes([value]) + raw[offset + 1 :]


@pytest.fixture(scope="module")
def quote_a(attestation_data: Path) -> bytes:
    return (attestation_data / "dcap-qvl/tdx_quote").read_bytes()


@pytest.fixture(scope="module")
def collateral_a(attestation_data: Path) -> Collateral:
    return load_collateral(attestation_data / "dcap-qvl/tdx_quote_collateral.json")


def _reject(
    quote: bytes, collateral: Collateral, now: int, error: type[AttestError], match: str
) -> None:
    with pytest.raises(error, match=match):
        verify_quote(quote, collateral, now=now, policy=default_policy())


QUOTE_SIG = r"^quote signature invalid .*ISV enclave report signature is invalid"
QE_HASH = r"^QE report_data does not bind the attestation key.*QE report hash mismatch"
QE_SIG = r"^QE report signature invalid \(PCK key\)"


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        pytest.param(lambda q: _xor(q, 568), VerificationError, QUOTE_SIG, id="reportdata"),
        pytest.param(lambda q: _xor(q, 184), VerificationError, QUOTE_SIG, id="mrtd"),
        pytest.param(lambda q: _xor(q, 28), VerificationError, QUOTE_SIG, id="user-data"),
        pytest.param(lambda q: _xor(q, 636), VerificationError, QUOTE_SIG, id="quote-sig-r"),
        pytest.param(lambda q: _xor(q, 700), VerificationError, QE_HASH, id="attestation-key"),
        pytest.param(lambda q: _xor(q, 834), VerificationError, QE_SIG, id="qe-mrenclave"),
        pytest.param(lambda q: _xor(q, 1090), VerificationError, QE_SIG, id="qe-reportdata"),
        pytest.param(lambda q: _xor(q, 1154), VerificationError, QE_SIG, id="qe-report-sig"),
        pytest.param(lambda q: _xor(q, 1220), VerificationError, QE_HASH, id="qe-auth-data"),
        pytest.param(
            lambda q: _xor(q, 1358),
            QuoteParseError,
            r"^PCK certificate chain cannot be parsed as PEM X.509 certificates",
            id="pck-leaf-pem",
        ),
        pytest.param(
            lambda q: q[:1000],
            QuoteParseError,
            r"quote truncated at offset 1000 while reading signature data \(need 4936 bytes\)",
            id="truncated",
        ),
        pytest.param(
            lambda q: _set(q, 764, 5),
            QuoteParseError,
            r"certification data type 5 at offset 764 is not allowed",
            id="cert-type-6-to-5",
        ),
        pytest.param(
            lambda q: _set(q, 0, 3),
            UnsupportedQuoteError,
            r"unsupported quote version 3 for a TDX quote",
            id="version-4-to-3",
        ),
    ],
)
def test_set_a_byte_mutations(
    quote_a: bytes,
    collateral_a: Collateral,
    mutate: Callable[[bytes], bytes],
    error: type[AttestError],
    match: str,
) -> None:
    _reject(mutate(quote_a), collateral_a, NOW_A, error, match)


def test_padding_stripped_still_verifies(quote_a: bytes, collateral_a: Collateral) -> None:
    verified = verify_quote(quote_a[:4936], collateral_a, now=NOW_A, policy=default_policy())
    assert verified.tcb_status == "UpToDate"


def _edit(collateral: Collateral, field: str, change: Callable[[str], str]) -> Collateral:
    doc = json.loads(collateral.json_text)
    before = doc[field]
    doc[field] = change(before)
    assert doc[field] != before, f"edit of {field} changed nothing"
    return collateral_from_json(json.dumps(doc))


def _flip_hex(text: str) -> str:
    return f"{int(text[:2], 16) ^ 1:02x}{text[2:]}"


@pytest.mark.parametrize(
    ("field", "change", "match"),
    [
        pytest.param(
            "tcb_info",
            lambda t: t.replace('"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":16'),
            r"^TCB info signature invalid",
            id="tcb-info-edited",
        ),
        pytest.param(
            "tcb_info",
            lambda t: json.dumps(json.loads(t), indent=1),
            r"^TCB info signature invalid",
            id="tcb-info-reserialised",
        ),
        pytest.param("tcb_info_signature", _flip_hex, r"^TCB info signature invalid", id="tcb-sig"),
        pytest.param(
            "qe_identity",
            lambda t: t.replace('"isvprodid":2', '"isvprodid":3'),
            r"^QE identity signature invalid",
            id="qe-identity-edited",
        ),
        pytest.param(
            "qe_identity",
            lambda t: json.dumps(json.loads(t), indent=1),
            r"^QE identity signature invalid",
            id="qe-identity-reserialised",
        ),
        pytest.param(
            "qe_identity_signature", _flip_hex, r"^QE identity signature invalid", id="qe-sig"
        ),
        pytest.param(
            "pck_crl",
            lambda t: t[:100] + f"{int(t[100], 16) ^ 1:x}" + t[101:],
            r"^certificate chain invalid",
            id="pck-crl",
        ),
        pytest.param(
            "root_ca_crl",
            lambda t: t[:100] + f"{int(t[100], 16) ^ 1:x}" + t[101:],
            r"^certificate revocation list invalid",
            id="root-crl",
        ),
    ],
)
def test_collateral_edits(
    quote_a: bytes, collateral_a: Collateral, field: str, change: Callable[[str], str], match: str
) -> None:
    _reject(quote_a, _edit(collateral_a, field, change), NOW_A, VerificationError, match)


@pytest.mark.parametrize(
    ("now", "match"),
    [
        (1752969600, r"^collateral expired .* at now=1752969600"),  # 2025-07-20
        (1748736000, r"^collateral not yet valid .* at now=1748736000"),  # 2025-06-01
    ],
)
def test_time_outside_collateral_validity(
    quote_a: bytes, collateral_a: Collateral, now: int, match: str
) -> None:
    _reject(quote_a, collateral_a, now, VerificationError, match)


def test_fmspc_mismatch(attestation_data: Path, quote_a: bytes) -> None:
    other = load_collateral(attestation_data / "dcap-qvl/near-gas-test/quote_collateral.json")
    _reject(
        quote_a,
        other,
        1757894400,
        VerificationError,
        r"^FMSPC mismatch: quote is B0C06F000000, collateral is for 20A06F000000",
    )


ROOT = r"^PCK chain root certificate \(sha256 [0-9a-f]{64}\) is not the trusted root"
CHAIN_SIG = r"^certificate chain invalid .*InvalidSignatureForPublicKey"


@pytest.mark.parametrize(
    ("offset", "value", "error", "match"),
    [
        (0x00, 3, UnsupportedQuoteError, r"unsupported quote version 3"),
        (0x278, 0x10, QuoteParseError, r"signature_data_len at offset 632 is inconsistent"),
        (0x1343, 0x32, VerificationError, ROOT),
        (0x1329, 0x32, VerificationError, ROOT),
        (0xF5F, 0x32, VerificationError, CHAIN_SIG),
        (0xB77, 0x32, VerificationError, CHAIN_SIG),
        (0x1E, 0x32, VerificationError, QUOTE_SIG),
        (0x3C, 0x32, VerificationError, QUOTE_SIG),
    ],
    ids=lambda v: hex(v) if isinstance(v, int) else None,
)
def test_go_tdx_guest_negative_verification(
    attestation_data: Path, offset: int, value: int, error: type[AttestError], match: str
) -> None:
    raw = (attestation_data / "go-tdx-guest/tdx_prod_quote_SPR_E4.dat").read_bytes()
    collateral = load_collateral(
        attestation_data / "derived/go-tdx-guest_collateral_50806f000000_2023-06.json"
    )
    assert raw[offset] != value
    _reject(_set(raw, offset, value), collateral, NOW_K, error, match)


def test_custom_root_must_match_the_embedded_root(quote_a: bytes, collateral_a: Collateral) -> None:
    with pytest.raises(VerificationError, match=ROOT):
        verify_quote(
            quote_a, collateral_a, now=NOW_A, policy=default_policy(), root_ca_der=b"not a root"
        )


@pytest.mark.parametrize("now", [-1, 2**64, True, 1751328000.5, "1751328000"])
def test_now_must_be_unix_seconds(quote_a: bytes, collateral_a: Collateral, now: object) -> None:
    with pytest.raises(ValueError, match="now must be unix seconds as a non-negative int"):
        verify_quote(quote_a, collateral_a, now=now, policy=default_policy())  # type: ignore[arg-type]
