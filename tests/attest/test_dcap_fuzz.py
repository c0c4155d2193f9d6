"""Property: flipping any bit of a genuine quote never yields an accepted quote with different
content. The only accepted flips are whitespace changes inside the PEM PCK chain, which no
signature covers and which leave the decoded certificates byte-identical (an exhaustive run
over set A found exactly those: '\\n' -> '\\v')."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attest import AttestError, Collateral, default_policy, load_collateral, parse_quote
from attest import verify_quote as verify

NOW_A = 1751328000
PEM_START, SIG_END = 1258, 4936  # set A layout (README section 4)


@pytest.fixture(scope="module")
def genuine(attestation_data: Path) -> tuple[bytes, Collateral]:
    raw = (attestation_data / "dcap-qvl/tdx_quote").read_bytes()[:SIG_END]
    return raw, load_collateral(attestation_data / "dcap-qvl/tdx_quote_collateral.json")


@given(offset=st.integers(0, SIG_END - 1), bit=st.integers(0, 7))
def test_single_bit_flips_are_rejected_or_content_preserving(
    genuine: tuple[bytes, Collateral], offset: int, bit: int
) -> None:
    raw, collateral = genuine
    mutated = bytearray(raw)
    mutated[offset] ^= 1 << bit
    try:
        verify(bytes(mutated), collateral, now=NOW_A, policy=default_policy())
    except AttestError:
        return
    assert PEM_START <= offset < SIG_END, f"flip at {offset} (bit {bit}) was accepted"
    original, accepted = parse_quote(raw), parse_quote(bytes(mutated))
    assert accepted.signed_region == original.signed_region
    assert accepted.pck_certificates() == original.pck_certificates()


@pytest.mark.parametrize("offset", [1285, 3004, 4014])
def test_pem_newline_variation_is_the_known_accepted_flip(
    genuine: tuple[bytes, Collateral], offset: int
) -> None:
    raw, collateral = genuine
    assert raw[offset] == 0x0A
    mutated = raw[:offset] + b"\x0b" + raw[offset + 1 :]
    verified = verify(mutated, collateral, now=NOW_A, policy=default_policy())
    assert verified.quote.pck_certificates() == parse_quote(raw).pck_certificates()
