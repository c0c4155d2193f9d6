"""Property tests: no input makes the parser raise anything but `QuoteParseError`."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attest import QuoteParseError, parse_quote

QUOTES = (
    "dcap-qvl/tdx_quote",
    "go-tdx-guest/quote_v5_sample.dat",
    "trustee/tdx_quote_4.dat",
)


def _parse_or_parse_error(data: bytes) -> None:
    try:
        quote = parse_quote(data)
    except QuoteParseError as exc:
        assert exc.offset >= 0 and exc.field
        return
    # whatever parsed must be self-consistent
    assert len(quote.raw) <= len(data)
    assert quote.signed_region == data[: quote.signed_length]


@given(st.binary(max_size=6000))
def test_random_bytes_never_crash(data: bytes) -> None:
    _parse_or_parse_error(data)


@given(
    prefix=st.sampled_from(
        [b"\x04\x00\x02\x00\x81\x00\x00\x00", b"\x05\x00\x02\x00\x81\x00\x00\x00"]
    ),
    rest=st.binary(max_size=5000),
)
def test_random_bodies_behind_a_valid_header_never_crash(prefix: bytes, rest: bytes) -> None:
    _parse_or_parse_error(prefix + rest)


@pytest.fixture(scope="module")
def real_quotes(attestation_data: Path) -> list[bytes]:
    return [(attestation_data / name).read_bytes() for name in QUOTES]


@given(which=st.integers(0, len(QUOTES) - 1), cut=st.integers(0, 5006))
def test_truncations_never_crash(real_quotes: list[bytes], which: int, cut: int) -> None:
    _parse_or_parse_error(real_quotes[which][:cut])


@given(
    which=st.integers(0, len(QUOTES) - 1),
    flips=st.lists(st.tuples(st.integers(0, 5005), st.integers(0, 7)), min_size=1, max_size=8),
)
def test_bit_flips_never_crash(
    real_quotes: list[bytes], which: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(real_quotes[which])
    for pos, bit in flips:
        if pos < len(data):
            data[pos] ^= 1 << bit
    _parse_or_parse_error(bytes(data))


@given(which=st.integers(0, len(QUOTES) - 1), pos=st.integers(0, 1300), value=st.integers(0, 255))
def test_header_and_length_field_edits_never_crash(
    real_quotes: list[bytes], which: int, pos: int, value: int
) -> None:
    data = bytearray(real_quotes[which])
    data[pos] = value
    _parse_or_parse_error(bytes(data))
