"""blst and arkworks agree: the hybrid backend of mpc.group checked against arkworks alone.

Points built through blst (hash to G1, decoding, full-size multiplication) are compared,
through their encodings, with the same computation done by arkworks only; mixed arithmetic
(one operand in each library) must give the same points as either library alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import py_arkworks_bls12381 as ark
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.errors import EncodingError
from mpc.group import (
    G1,
    G2,
    P,
    R,
    Scalar,
    hash_to_g1_point,
    pairing,
    pairing_product_is_one,
    use_blst,
)
from tests.mpc.vectors import load_vectors

scalars = st.integers(min_value=0, max_value=R - 1)
messages = st.binary(max_size=80)
dsts = st.binary(min_size=1, max_size=255)
T = TypeVar("T")


@contextmanager
def backend(blst: bool) -> Iterator[None]:
    previous = use_blst(blst)
    try:
        yield
    finally:
        use_blst(previous)


def both(fn: Callable[[], T]) -> tuple[T, T]:
    """fn() with the blst path on, then with arkworks alone."""
    with backend(True):
        fast = fn()
    with backend(False):
        slow = fn()
    return fast, slow


@pytest.mark.parametrize("vector", load_vectors("rfc9380_g1_ro"), ids=lambda v: v["msg"][:8])
def test_blst_hash_to_g1_matches_rfc9380_vectors(vector: dict[str, str]) -> None:
    with backend(True):
        point = hash_to_g1_point(vector["msg"].encode(), vector["dst"].encode())
    assert point._b is not None and point._a is None  # it really went through blst
    x = int(vector["x"], 16)
    y = int(vector["y"], 16)
    sign = 0x20 if y > (P - 1) // 2 else 0
    assert point.to_bytes() == bytes([0x80 | sign | (x >> 376)]) + (x % (1 << 376)).to_bytes(
        47, "big"
    )


@given(msg=messages, dst=dsts)
def test_hash_to_g1_agrees(msg: bytes, dst: bytes) -> None:
    fast, slow = both(lambda: hash_to_g1_point(msg, dst).to_bytes())
    assert fast == slow


@given(msg=messages, k=scalars)
def test_g1_multiplication_agrees(msg: bytes, k: int) -> None:
    fast, slow = both(lambda: (hash_to_g1_point(msg, b"T") * k).to_bytes())
    assert fast == slow


@given(k=scalars, j=st.integers(min_value=1, max_value=R - 1))
def test_g2_multiplication_agrees(k: int, j: int) -> None:
    encoded = G2.base_mul(j).to_bytes()
    fast, slow = both(lambda: (G2.from_bytes(encoded) * k).to_bytes())
    assert fast == slow


@given(msg=messages, k=scalars, j=scalars)
def test_mixed_arithmetic_agrees(msg: bytes, k: int, j: int) -> None:
    """One operand in blst, the other in arkworks: +, -, ==, msm and pairings still agree."""

    def compute() -> list[bytes]:
        h = hash_to_g1_point(msg, b"T")
        a = h * k  # blst when on
        b = G1.base_mul(j)  # always arkworks (window table)
        out = [(a + b).to_bytes(), (b + a).to_bytes(), (a - b).to_bytes(), (-a).to_bytes()]
        out.append(G1.msm([a, b, h], [3, j, k]).to_bytes())
        out.append(bytes([a == G1.from_bytes(a.to_bytes(), allow_identity=True)]))
        out.append(bytes([a + b == b + a, (a - a).is_identity()]))
        out.append(pairing(a, G2.generator()).to_bytes())
        return out

    fast, slow = both(compute)
    assert fast == slow


@given(msg=messages, k=st.integers(min_value=-(2**130), max_value=2**130))
def test_short_and_negative_scalars_agree(msg: bytes, k: int) -> None:
    fast, slow = both(lambda: (hash_to_g1_point(msg, b"T") * Scalar(k)).to_bytes())
    assert fast == slow


def test_identity_crosses_between_backends() -> None:
    with backend(True):
        h = hash_to_g1_point(b"m", b"T")
        zero = h - h
        assert zero._b is not None and zero.is_identity()
        assert zero == G1.identity() and G1.identity() == zero
        assert (zero + G1.generator()) == G1.generator()
        assert G1.msm([zero, h], [5, 1]) == h
        assert h * 0 == G1.identity() and h * R == G1.identity()


@settings(max_examples=200)
@given(data=st.binary(min_size=48, max_size=48))
def test_decoding_accepts_and_rejects_the_same_bytes(data: bytes) -> None:
    """Random compressed-looking bytes: both libraries decode the same point or both refuse."""
    data = bytes([data[0] | 0x80]) + data[1:]

    def decode() -> bytes | str:
        try:
            return G1.from_bytes(data, allow_identity=True).to_bytes()
        except EncodingError as exc:
            return exc.problem

    fast, slow = both(decode)
    assert fast == slow


def test_g2_point_outside_subgroup_rejected_by_blst() -> None:
    """A point on the G2 curve outside the subgroup: blst's uncompress refuses it."""
    # x = 0 is not on E'; search small x for a curve point whose order is not r.
    for x0 in range(1, 200):
        data = bytes([0x80]) + bytes(47) + x0.to_bytes(48, "big")
        try:
            point = ark.G2Point.from_compressed_bytes_unchecked(data)
        except ValueError:
            continue
        if point.is_in_subgroup():
            continue
        with backend(True), pytest.raises(EncodingError, match="not in the prime-order subgroup"):
            G2.from_bytes(data)
        with backend(False), pytest.raises(EncodingError, match="not in the prime-order subgroup"):
            G2.from_bytes(data)
        return
    raise AssertionError("no G2 curve point outside the subgroup found")


@settings(max_examples=25, deadline=None)
@given(
    a=st.integers(min_value=1, max_value=R - 1),
    b=st.integers(min_value=1, max_value=R - 1),
    tweak=st.integers(min_value=0, max_value=2),
    via_wire=st.booleans(),
)
def test_pairing_products_agree(a: int, b: int, tweak: int, via_wire: bool) -> None:
    """e(a·G1, b·G2)·e(-ab·G1, G2) == 1, and not with a tweak; 2 and 3 pairs; both libraries."""

    def check() -> tuple[bool, bool, bool]:
        pa = G1.base_mul(a)
        qb = G2.base_mul(b)
        if via_wire:  # G2 from the wire lives in blst; G1 times a full scalar too
            qb = G2.from_bytes(qb.to_bytes())
            pa = hash_to_g1_point(b"g", b"T") * 0 + pa
        ab = G1.base_mul(a * b % R + tweak)
        two = pairing_product_is_one([(pa, qb), (-ab, G2.generator())])
        half = G1.base_mul(a * b * pow(2, -1, R) % R)
        three = pairing_product_is_one([(pa, qb), (-half, G2.generator()), (-half, G2.generator())])
        with_identity = pairing_product_is_one([(G1.identity(), qb), (ab - ab, G2.generator())])
        return two, three, with_identity

    fast, slow = both(check)
    assert fast == slow == (tweak == 0, True, True)


def test_blst_pairing_path_is_taken_for_blst_points() -> None:
    """The fast path really runs (a wrong product is refused by blst's final_verify)."""
    with backend(True):
        h = hash_to_g1_point(b"m", b"T")
        pk = G2.from_bytes(G2.base_mul(R - 5).to_bytes())
        sigma = h * (R - 5)  # a full-size scalar: multiplied in blst
        assert sigma._b is not None and pk._b is not None
        assert pairing_product_is_one([(sigma, G2.generator()), (-h, pk)])
        assert not pairing_product_is_one([(sigma + h, G2.generator()), (-h, pk)])
        assert G2.generator()._b is not None  # brought into blst once, and kept


@settings(max_examples=200)
@given(data=st.binary(min_size=96, max_size=96))
def test_g2_decoding_accepts_and_rejects_the_same_bytes(data: bytes) -> None:
    data = bytes([data[0] | 0x80]) + data[1:]

    def decode() -> bytes | str:
        try:
            return G2.from_bytes(data, allow_identity=True).to_bytes()
        except EncodingError as exc:
            return exc.problem

    fast, slow = both(decode)
    assert fast == slow


def test_small_multiples_of_a_blst_point_by_additions_agree() -> None:
    """Every scalar 0..300 (the addition chain covers 1..255) on a point that is only in blst."""
    encoded = hash_to_g1_point(b"small", b"T").to_bytes()
    with backend(False):
        expected = [(G1.from_bytes(encoded) * k).to_bytes() for k in range(301)]
    with backend(True):
        point = G1.from_bytes(encoded)
        assert point._b is not None and point._a is None  # wire G1 points are decoded by blst
        got = [point * k for k in range(301)]
        assert [p.to_bytes() for p in got] == expected
        assert [k for k in range(1, 256) if got[k]._a is not None] == []  # stayed in blst


@pytest.mark.parametrize("field", ["Y", "Z"])
def test_a_partial_with_a_point_outside_the_subgroup_is_refused_by_blst(field: str) -> None:
    """The wire path that now decodes G1 in blst still refuses points outside G1, by name."""
    from mpc.derive import EncryptedPartial
    from mpc.dleq import DleqProof
    from tests.mpc.test_group import _point_outside_subgroup

    data = bytearray(bytes(20) + G1.base_mul(3).to_bytes() + G1.base_mul(5).to_bytes())
    data[16:20] = (1).to_bytes(4, "big")
    offset = 20 if field == "Y" else 68
    data[offset : offset + 48] = _point_outside_subgroup()
    proof = DleqProof(a1=G1.base_mul(7), a2=G1.base_mul(8), z=Scalar(2))
    data += proof.to_bytes()  # well-formed, so the decoder reaches the point
    with backend(True), pytest.raises(EncodingError, match="not in the prime-order subgroup"):
        EncryptedPartial.from_bytes(bytes(data), "partial")
    with backend(True), pytest.raises(EncodingError, match=f"partial {field}"):
        EncryptedPartial.from_bytes(bytes(data), "partial")
