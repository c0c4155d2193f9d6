"""Integer Lagrange coefficients agree with the field ones, and combining with them is exact."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc._lagrange import integer_lagrange_at_zero, small_combination
from mpc.derive import EphemeralKey, KeyRequest, combine_unchecked, derive_partial
from mpc.errors import ProtocolMisuse
from mpc.group import G1, Scalar
from mpc.sharing import lagrange_coefficients_at_zero
from tests.mpc.dealer import deal, seeded_rng
from tests.mpc.test_derive import APP, NET

indices = st.lists(st.integers(1, 40), min_size=1, max_size=11, unique=True)


@settings(max_examples=60)
@given(members=indices)
def test_integer_coefficients_are_the_field_coefficients(members: list[int]) -> None:
    found = integer_lagrange_at_zero(members)
    assert found is not None
    mus, d = found
    assert d > 0
    expected = lagrange_coefficients_at_zero(members)
    inverse = Scalar(d).inverse()
    assert [Scalar(mu) * inverse for mu in mus] == [expected[m] for m in members]


def test_small_examples_and_limits() -> None:
    assert integer_lagrange_at_zero([1, 2, 3]) == ([3, -3, 1], 1)
    assert integer_lagrange_at_zero([1, 4, 5]) == ([5, -5, 3], 3)
    assert integer_lagrange_at_zero([7]) == ([1], 1)
    # Indices this large give coefficients no smaller than reduced ones: no integer form.
    assert integer_lagrange_at_zero([2**100, 2**101, 2**102 + 1]) is None
    with pytest.raises(ProtocolMisuse, match="distinct and positive"):
        integer_lagrange_at_zero([1, 1])
    with pytest.raises(ProtocolMisuse, match="distinct and positive"):
        integer_lagrange_at_zero([0, 2])


def test_small_combination_matches_the_backend() -> None:
    points = [G1.base_mul(11), G1.base_mul(12), G1.base_mul(13)]
    assert small_combination(points, [3, -3, 1]) == G1.msm(points, [3, -3, 1])
    assert small_combination(points, [0, 0, 0]).is_identity()


@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_combining_any_t_members_gives_sigma(data: st.DataObject) -> None:
    keys = deal(9, 4, seed=21)
    members = data.draw(st.lists(st.integers(1, 9), min_size=4, max_size=4, unique=True))
    eph = EphemeralKey.generate(os.urandom)
    request = KeyRequest.app_key(APP, b"lagrange")
    rng = seeded_rng(5)
    answers = {
        m: [derive_partial(keys.shares[m - 1], request, requester=eph.public, network=NET, rng=rng)]
        for m in members
    }
    (sigma,) = combine_unchecked(answers, [request], ephemeral=eph, network=NET)
    assert sigma == request.point() * keys.secret_poly.secret
