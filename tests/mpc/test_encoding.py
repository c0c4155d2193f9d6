"""Framing and RFC 9380 expand_message_xmd / hash_to_field."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from py_ecc.bls.hash_to_curve import expand_message_xmd as ref_expand

from mpc.encoding import challenge, expand_message_xmd, frame, hash_to_scalar
from mpc.group import R
from tests.mpc.vectors import load_vectors


@pytest.mark.parametrize(
    "vector",
    load_vectors("rfc9380_expand_message_xmd_sha256"),
    ids=lambda v: f"{v['msg'][:8]}-{v['len_in_bytes']}",
)
def test_expand_message_xmd_matches_rfc9380(vector: dict[str, object]) -> None:
    out = expand_message_xmd(
        str(vector["msg"]).encode(), str(vector["dst"]).encode(), int(str(vector["len_in_bytes"]))
    )
    assert out.hex() == vector["uniform_bytes"]


@given(msg=st.binary(max_size=200), length=st.integers(min_value=1, max_value=255))
def test_expand_message_xmd_agrees_with_py_ecc(msg: bytes, length: int) -> None:
    dst = b"TKMS-V1-CHALLENGE"
    assert expand_message_xmd(msg, dst, length) == ref_expand(msg, dst, length, hashlib.sha256)


def test_expand_message_xmd_limits() -> None:
    with pytest.raises(ValueError, match="too long"):
        expand_message_xmd(b"", b"dst", 256 * 32 + 1)
    with pytest.raises(ValueError, match="1..255 bytes"):
        expand_message_xmd(b"", b"", 32)


@given(a=st.lists(st.binary(max_size=8), max_size=4), b=st.lists(st.binary(max_size=8), max_size=4))
def test_frame_is_injective(a: list[bytes], b: list[bytes]) -> None:
    if a != b:
        assert frame(*a) != frame(*b)


def test_hash_to_scalar_is_reduced_and_domain_separated() -> None:
    x = hash_to_scalar(b"m")
    assert 0 <= int(x) < R
    assert hash_to_scalar(b"m", b"OTHER-DST") != x
    assert challenge(b"label-a", b"m") != challenge(b"label-b", b"m")
    # Framing: moving a byte between parts changes the challenge.
    assert challenge(b"l", b"ab", b"c") != challenge(b"l", b"a", b"bc")
