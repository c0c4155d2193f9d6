"""The group backend: RFC 9380 vectors, strict decoding, and cross-checks against py_ecc.

Every test here runs twice: with the blst path on (production) and with arkworks alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import py_ecc.optimized_bls12_381 as ref
import pytest
from hypothesis import given
from hypothesis import strategies as st
from py_ecc.bls.hash_to_curve import hash_to_G1 as ref_hash_to_g1
from py_ecc.bls.point_compression import compress_G1, compress_G2

from mpc.errors import EncodingError
from mpc.group import (
    G1,
    G2,
    P,
    R,
    Scalar,
    hash_to_g1,
    hash_to_g1_point,
    pairing,
    pairing_product_is_one,
    use_blst,
)
from tests.mpc.vectors import load_vectors


# Module scope: hypothesis refuses function-scoped fixtures around @given tests.
@pytest.fixture(autouse=True, scope="module", params=["blst", "arkworks"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    previous = use_blst(request.param == "blst")
    yield str(request.param)
    use_blst(previous)


scalars = st.integers(min_value=1, max_value=R - 1)


def ref_g1_bytes(point: tuple[object, object, object]) -> bytes:
    return int(compress_G1(point)).to_bytes(48, "big")


def ref_g2_bytes(point: tuple[object, object, object]) -> bytes:
    c1, c0 = compress_G2(point)
    return int(c1).to_bytes(48, "big") + int(c0).to_bytes(48, "big")


@pytest.mark.parametrize("vector", load_vectors("rfc9380_g1_ro"), ids=lambda v: v["msg"][:8])
def test_hash_to_g1_matches_rfc9380_vectors(vector: dict[str, str]) -> None:
    point = hash_to_g1(vector["msg"].encode(), vector["dst"].encode())
    x = int(vector["x"], 16)
    y = int(vector["y"], 16)
    # Compressed form: x with the compression flag, and the sign flag iff y > (p-1)/2.
    sign = 0x20 if y > (P - 1) // 2 else 0
    expected = bytes([0x80 | sign | (x >> 376)]) + (x % (1 << 376)).to_bytes(47, "big")
    assert point == expected


@given(msg=st.binary(max_size=64))
def test_hash_to_g1_agrees_with_py_ecc(msg: bytes) -> None:
    import hashlib

    dst = b"TKMS-V1-KDF-BLS12381G1_XMD:SHA-256_SSWU_RO_"
    assert hash_to_g1(msg, dst) == ref_g1_bytes(ref_hash_to_g1(msg, dst, hashlib.sha256))


@given(k=scalars)
def test_g1_multiplication_agrees_with_py_ecc(k: int) -> None:
    expected = ref_g1_bytes(ref.multiply(ref.G1, k))
    assert (G1.generator() * k).to_bytes() == expected
    assert G1.base_mul(k).to_bytes() == expected


@given(k=scalars)
def test_g2_multiplication_agrees_with_py_ecc(k: int) -> None:
    expected = ref_g2_bytes(ref.multiply(ref.G2, k))
    assert (G2.generator() * k).to_bytes() == expected
    assert G2.base_mul(k).to_bytes() == expected


@given(a=scalars, b=scalars)
def test_g1_addition_and_msm_agree_with_py_ecc(a: int, b: int) -> None:
    pa, pb = ref.multiply(ref.G1, a), ref.multiply(ref.G1, b)
    expected = ref_g1_bytes(ref.add(pa, pb))
    assert (G1.base_mul(a) + G1.base_mul(b)).to_bytes() == expected
    assert G1.msm([G1.generator(), G1.generator()], [a, b]).to_bytes() == expected


def test_pairing_agrees_with_py_ecc_bilinearity() -> None:
    # py_ecc pairings take ~0.6 s each, so one structural cross-check: e(aG1, bG2) == e(abG1, G2)
    a, b = 0x1234567, 0x7654321
    lhs_ref = ref.pairing(ref.multiply(ref.G2, b), ref.multiply(ref.G1, a))
    rhs_ref = ref.pairing(ref.G2, ref.multiply(ref.G1, a * b))
    assert lhs_ref == rhs_ref
    assert pairing(G1.base_mul(a), G2.base_mul(b)) == pairing(G1.base_mul(a * b), G2.generator())
    assert pairing(G1.base_mul(a), G2.base_mul(b)) != pairing(G1.base_mul(a + 1), G2.base_mul(b))


def test_pairing_product_check() -> None:
    x = Scalar.random()
    assert pairing_product_is_one(
        [(G1.base_mul(x), G2.generator()), (-G1.generator(), G2.base_mul(x))]
    )
    assert not pairing_product_is_one(
        [(G1.base_mul(x), G2.generator()), (-G1.generator(), G2.base_mul(x + 1))]
    )


@given(k=scalars)
def test_points_round_trip(k: int) -> None:
    p1, p2 = G1.base_mul(k), G2.base_mul(k)
    assert G1.from_bytes(p1.to_bytes()) == p1
    assert G2.from_bytes(p2.to_bytes()) == p2


def test_identity_rejected_unless_allowed() -> None:
    ident = G1.identity().to_bytes()
    assert ident == bytes([0xC0]) + bytes(47)
    with pytest.raises(EncodingError, match="identity is not allowed"):
        G1.from_bytes(ident)
    assert G1.from_bytes(ident, allow_identity=True).is_identity()
    with pytest.raises(EncodingError, match="identity is not allowed"):
        G2.from_bytes(G2.identity().to_bytes())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00" * 47, "expected 48 bytes, got 47"),
        (bytes([0x00]) + bytes(47), "compression flag unset"),
        (bytes([0xC0, 1]) + bytes(46), "non-canonical identity"),
        (bytes([0xE0]) + bytes(47), "non-canonical identity"),
        # x = p: a non-canonical coordinate even though x mod p == 0 would be on no curve point
        (bytes([0x80 | (P >> 376)]) + (P % (1 << 376)).to_bytes(47, "big"), ">= field modulus"),
        (bytes([0x9F]) + b"\xff" * 47, ">= field modulus"),
    ],
)
def test_malformed_g1_encodings_rejected(data: bytes, message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        G1.from_bytes(data)


def _x_not_on_curve() -> bytes:
    # x^3 + 4 must be a non-square mod p for x to be off the curve.
    for x in range(1, 1000):
        if pow((x**3 + 4) % P, (P - 1) // 2, P) == P - 1:
            return bytes([0x80]) + x.to_bytes(47, "big")
    raise AssertionError("no off-curve x found")


def _point_outside_subgroup() -> bytes:
    # On the curve (x^3 + 4 is a square) but, with overwhelming probability, not of order r.
    for x in range(1, 1000):
        rhs = (x**3 + 4) % P
        if pow(rhs, (P - 1) // 2, P) == 1:
            y = pow(rhs, (P + 1) // 4, P)
            candidate = (ref.FQ(x), ref.FQ(y), ref.FQ(1))
            if not ref.is_inf(ref.multiply(candidate, R)):
                return bytes([0x80]) + x.to_bytes(47, "big")
    raise AssertionError("no point outside the subgroup found")


def test_off_curve_point_rejected() -> None:
    with pytest.raises(EncodingError, match="not a point on the curve"):
        G1.from_bytes(_x_not_on_curve())


def test_point_outside_subgroup_rejected() -> None:
    with pytest.raises(EncodingError, match="not in the prime-order subgroup"):
        G1.from_bytes(_point_outside_subgroup())


def test_malformed_g2_encodings_rejected() -> None:
    good = G2.base_mul(7).to_bytes()
    with pytest.raises(EncodingError, match="expected 96 bytes"):
        G2.from_bytes(good[:48])
    second_coordinate_p = good[:48] + P.to_bytes(48, "big")
    with pytest.raises(EncodingError, match=">= field modulus"):
        G2.from_bytes(second_coordinate_p)
    with pytest.raises(EncodingError, match="G2 point"):
        G2.from_bytes(good[:95] + bytes([good[95] ^ 1]))


@given(scalars)
def test_eip2537_encoding_agrees_with_py_ecc_and_round_trips(k: int) -> None:
    """EIP-2537: 64-byte big-endian coordinates, G2 as x.c0, x.c1, y.c0, y.c1."""
    x, y = ref.normalize(ref.multiply(ref.G1, k))
    g1 = G1.base_mul(k)
    assert g1.to_eip2537() == int(x).to_bytes(64, "big") + int(y).to_bytes(64, "big")
    assert G1.from_eip2537(g1.to_eip2537()) == g1
    x2, y2 = ref.normalize(ref.multiply(ref.G2, k))
    coords = (x2.coeffs[0], x2.coeffs[1], y2.coeffs[0], y2.coeffs[1])
    g2 = G2.base_mul(k)
    assert g2.to_eip2537() == b"".join(int(c).to_bytes(64, "big") for c in coords)
    assert G2.from_eip2537(g2.to_eip2537()) == g2


def test_eip2537_decoding_is_strict() -> None:
    good = G1.base_mul(7).to_eip2537()
    cases = {
        "expected 128 bytes": good[:127],
        "padding or >= p": bytes([1]) + good[1:],
        "padding or >= p ": P.to_bytes(64, "big") + good[64:],
        "identity": bytes(128),
        "not a point on the curve": (1).to_bytes(64, "big") * 2,
    }
    for message, data in cases.items():
        with pytest.raises(EncodingError, match=message.strip()):
            G1.from_eip2537(data)
    raw = _point_outside_subgroup()  # compressed: recover y to encode it uncompressed
    x = int.from_bytes(bytes([raw[0] & 0x1F]) + raw[1:], "big")
    y = pow(x**3 + 4, (P + 1) // 4, P)
    with pytest.raises(EncodingError, match="not in the prime-order subgroup"):
        G1.from_eip2537(x.to_bytes(64, "big") + y.to_bytes(64, "big"))
    with pytest.raises(EncodingError, match="expected 256 bytes"):
        G2.from_eip2537(G2.base_mul(3).to_eip2537()[:255])


def test_scalar_decoding_is_strict() -> None:
    assert int(Scalar.from_bytes((R - 1).to_bytes(32, "big"))) == R - 1
    with pytest.raises(EncodingError, match="not canonical"):
        Scalar.from_bytes(R.to_bytes(32, "big"))
    with pytest.raises(EncodingError, match="expected 32 bytes, got 31"):
        Scalar.from_bytes(bytes(31))
    with pytest.raises(EncodingError, match="zero is not allowed"):
        Scalar.from_bytes(bytes(32), allow_zero=False)


def test_scalar_repr_hides_the_value() -> None:
    s = Scalar(0xDEADBEEF)
    assert "deadbeef" not in repr(s).lower() and str(0xDEADBEEF) not in repr(s)


@given(a=scalars, b=scalars)
def test_scalar_field_arithmetic(a: int, b: int) -> None:
    sa, sb = Scalar(a), Scalar(b)
    assert int(sa + sb) == (a + b) % R
    assert int(sa - sb) == (a - b) % R
    assert int(sa * sb) == (a * b) % R
    assert sa * sa.inverse() == Scalar(1)
    assert G1.base_mul(sa * sb) == G1.base_mul(sa) * sb


def test_random_scalars_use_the_injected_rng() -> None:
    seeded = iter([bytes([7]) * 64, bytes([9]) * 64])
    a = Scalar.random(lambda n: next(seeded))
    assert int(a) == int.from_bytes(bytes([7]) * 64, "big") % R
    assert Scalar.random(os.urandom) != Scalar.random(os.urandom)


def test_hash_to_g1_rejects_bad_dst() -> None:
    with pytest.raises(ValueError, match="1..255 bytes"):
        hash_to_g1_point(b"m", b"")
    with pytest.raises(ValueError, match="1..255 bytes"):
        hash_to_g1_point(b"m", b"x" * 256)
