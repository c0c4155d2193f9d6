"""Shamir sharing, Feldman commitments and Lagrange interpolation."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc.errors import EncodingError, NotEnoughShares, ProtocolMisuse
from mpc.group import G1, Scalar
from mpc.sharing import (
    Polynomial,
    PublicPolynomial,
    Share,
    interpolate_g1_at_zero,
    lagrange_coefficients_at_zero,
    recover_secret,
    sum_public_polynomials,
)
from mpc.types import MemberIndex
from tests.mpc.dealer import seeded_rng


@given(n=st.integers(1, 9), data=st.data())
def test_any_t_of_n_shares_recover_the_secret(n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    f = Polynomial.random(t - 1, seeded_rng(data.draw(st.integers(0, 2**32))))
    shares = [f.share(MemberIndex(i)) for i in range(1, n + 1)]
    subset = data.draw(st.permutations(shares))[:t]
    assert recover_secret(subset, t) == f.secret
    if t > 1:
        # t-1 shares interpolate to something else (with overwhelming probability).
        assert recover_secret(subset[: t - 1], t - 1) != f.secret


def test_every_subset_recovers_for_small_case() -> None:
    f = Polynomial.random(2, seeded_rng(1))
    shares = [f.share(MemberIndex(i)) for i in range(1, 6)]
    for subset in itertools.combinations(shares, 3):
        assert recover_secret(list(subset), 3) == f.secret


def test_feldman_commitments_accept_valid_and_reject_invalid_shares() -> None:
    f = Polynomial.random(3, seeded_rng(2))
    pub = f.commitments()
    assert pub.threshold == 4
    assert pub.public_key == G1.base_mul(f.secret)
    for i in range(1, 8):
        share = f.share(MemberIndex(i))
        assert pub.is_valid_share(share)
        assert pub.verification_key(MemberIndex(i)) == G1.base_mul(share.value)
        assert not pub.is_valid_share(Share(MemberIndex(i), share.value + 1))
        assert not pub.is_valid_share(Share(MemberIndex(i + 1), share.value))


def test_summed_public_polynomials_commit_to_summed_shares() -> None:
    polys = [Polynomial.random(2, seeded_rng(10 + d)) for d in range(4)]
    total = sum_public_polynomials(p.commitments() for p in polys)
    for i in range(1, 6):
        summed = Share(MemberIndex(i), Scalar(sum(int(p.evaluate(i)) for p in polys)))
        assert total.is_valid_share(summed)


def test_interpolation_in_the_exponent() -> None:
    f = Polynomial.random(2, seeded_rng(3))
    points = {i: G1.base_mul(f.evaluate(i)) for i in (2, 4, 7)}
    assert interpolate_g1_at_zero(points) == G1.base_mul(f.secret)


def test_lagrange_rejects_duplicates_and_zero() -> None:
    with pytest.raises(ProtocolMisuse, match="duplicate"):
        lagrange_coefficients_at_zero([1, 2, 2])
    with pytest.raises(ProtocolMisuse, match="index 0"):
        lagrange_coefficients_at_zero([0, 1])


def test_too_few_shares() -> None:
    f = Polynomial.random(2, seeded_rng(4))
    with pytest.raises(NotEnoughShares, match="only 2 of 3"):
        recover_secret([f.share(MemberIndex(1)), f.share(MemberIndex(2))], 3)


def test_public_polynomial_bytes_round_trip_and_strictness() -> None:
    pub = Polynomial.random(2, seeded_rng(5)).commitments()
    data = pub.to_bytes()
    assert PublicPolynomial.from_bytes(data, 3) == pub
    with pytest.raises(EncodingError, match="expected 144 bytes"):
        PublicPolynomial.from_bytes(data[:-1], 3)
    corrupted = data[:48] + bytes([0xC0]) + bytes(47) + data[96:]
    with pytest.raises(EncodingError, match="commitments C_1.*identity"):
        PublicPolynomial.from_bytes(corrupted, 3)


def test_secret_types_hide_values() -> None:
    f = Polynomial.random(1, seeded_rng(6))
    share = f.share(MemberIndex(3))
    assert repr(share) == "Share(member=3, <redacted>)"
    assert str(int(share.value)) not in repr(f)
