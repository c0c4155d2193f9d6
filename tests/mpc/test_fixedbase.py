"""PreparedPoint multiplies exactly like the point itself, before and after its table exists."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mpc._fixedbase import PreparedPoint
from mpc.derive import EphemeralKey, KeyRequest, derive_partial, open_partial
from mpc.group import G1, R, Scalar
from tests.mpc.dealer import deal, seeded_rng
from tests.mpc.test_derive import APP, NET

E = G1.base_mul(0xE11E)


def test_the_table_is_built_only_after_enough_uses() -> None:
    prepared = PreparedPoint(E, table_after=3)
    for k in (1, 2):
        assert prepared.mul(Scalar(k)) == E * k
        assert not prepared.has_table
    assert prepared.mul(Scalar(3)) == E * 3
    assert prepared.has_table
    assert prepared.encoded == E.to_bytes()
    never = PreparedPoint(E, table_after=None)
    for k in range(20):
        never.mul(Scalar(k))
    assert not never.has_table


@settings(max_examples=40)
@given(k=st.one_of(st.integers(0, 2**12), st.integers(R - 2**12, R - 1), st.integers(0, R - 1)))
def test_table_multiplication_matches_the_backend(k: int) -> None:
    prepared = PreparedPoint(E, table_after=1)
    assert prepared.mul(Scalar(k)) == E * k
    assert prepared.has_table


def test_a_partial_for_a_prepared_requester_is_the_same_partial() -> None:
    keys = deal(3, 2, seed=4)
    eph = EphemeralKey.generate(seeded_rng(8))
    request = KeyRequest.app_key(APP, b"p")
    prepared = PreparedPoint(eph.public, table_after=1)
    share = keys.shares[0]
    plain = derive_partial(share, request, requester=eph.public, network=NET, rng=seeded_rng(1))
    fast = derive_partial(share, request, requester=prepared, network=NET, rng=seeded_rng(1))
    assert prepared.has_table
    assert fast == plain
    opened = open_partial(
        fast,
        request,
        ephemeral=eph,
        verification_key=keys.public.verification_key(share.member),
        network=NET,
    )
    assert opened.sigma == request.point() * share.value
