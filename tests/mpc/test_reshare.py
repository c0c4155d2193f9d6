"""Resharing and refresh: the group key survives committee and threshold changes; bad old
dealers are excluded; too few old dealers fail the run."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.dealing import DealOutput, FaultKind, make_deal
from mpc.dst import DST_KDF
from mpc.epochkey import EpochKeys
from mpc.errors import ProtocolMisuse
from mpc.group import G1, hash_to_g1_point
from mpc.messages import DealPublic, ShareBundle
from mpc.reshare import ReshareDealer, ReshareReceiver
from mpc.session import SessionKind
from mpc.sharebox import mlkem_encapsulate
from mpc.sharing import Polynomial, Share, recover_secret
from mpc.types import MemberIndex
from tests.mpc.harness import (
    Run,
    address,
    answer_with,
    assert_consistent,
    bad_proof,
    bogus_kem,
    drop_from,
    epoch_key,
    inconsistent_p,
    make_context,
    participants,
    previous_committee,
    run_dkg,
    run_reshare,
    seeded_rng,
    wrong_share,
)


def secret_of(run: Run) -> int:
    first = assert_consistent(run)
    shares = [r.share for r in run.results.values() if r.share is not None]
    return int(recover_secret(shares, first.threshold))


def test_reshare_5_3_to_7_4_to_4_2_keeps_the_group_key() -> None:
    start = run_dkg(5, 3, rng_seed=41)
    first = assert_consistent(start)
    secret = secret_of(start)
    h = hash_to_g1_point(b"app-1/disk", DST_KDF)
    runs = [start]
    for n, t in ((7, 4), (4, 2)):
        runs.append(run_reshare(runs[-1], n, t, rng_seed=42 + n))
        now = assert_consistent(runs[-1], expect_members=range(1, n + 1))
        assert now.threshold == t and len(now.public.commitments) == t
        assert now.public.public_key == first.public.public_key
        assert now.pk2 == first.pk2
        assert secret_of(runs[-1]) == secret
        # So every derived key is unchanged: sigma = x·H for the same x.
        shares = [r.share for r in runs[-1].results.values() if r.share is not None]
        assert h * recover_secret(shares[-t:], t) == h * secret
    assert runs[1].results[1].digest != runs[2].results[1].digest


def test_refresh_changes_every_share_and_keeps_the_key() -> None:
    start = run_dkg(5, 3, rng_seed=43)
    first = assert_consistent(start)
    refreshed = run_reshare(start, 5, 3, rng_seed=44, kind=SessionKind.REFRESH)
    again = assert_consistent(refreshed, expect_members=range(1, 6))
    assert refreshed.context.kind is SessionKind.REFRESH
    assert again.public.public_key == first.public.public_key and again.pk2 == first.pk2
    assert again.public.commitments[1:] != first.public.commitments[1:]
    for i in range(1, 6):
        old, new = start.results[i].share, refreshed.results[i].share
        assert old is not None and new is not None and old.value != new.value
        assert not first.public.is_valid_share(new)
    assert secret_of(refreshed) == secret_of(start)


@settings(max_examples=8)
@given(data=st.data())
def test_reshare_property(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 6), label="n")
    t = data.draw(st.integers(1, n), label="t")
    n2 = data.draw(st.integers(1, 6), label="new n")
    t2 = data.draw(st.integers(1, n2), label="new t")
    silent = data.draw(st.sets(st.integers(1, n), max_size=n - t), label="silent old dealers")
    start = run_dkg(n, t, rng_seed=data.draw(st.integers(0, 2**16)))
    run = run_reshare(start, n2, t2, rng_seed=data.draw(st.integers(0, 2**16)), silent=silent)
    now = assert_consistent(run, expect_members=range(1, n2 + 1))
    assert set(now.qual) == set(range(1, n + 1)) - silent
    assert now.public.public_key == assert_consistent(start).public.public_key
    assert secret_of(run) == secret_of(start)


def test_the_lambda_set_is_the_first_old_threshold_qualified_dealers() -> None:
    start = run_dkg(5, 3, rng_seed=45)
    everyone = run_reshare(start, 4, 2, rng_seed=46)
    without_4_5 = run_reshare(start, 4, 2, rng_seed=46, silent={4, 5})
    without_1 = run_reshare(start, 4, 2, rng_seed=46, silent={1})
    a, b, c = (assert_consistent(r) for r in (everyone, without_4_5, without_1))
    assert a.qual == (1, 2, 3, 4, 5) and b.qual == (1, 2, 3) and c.qual == (2, 3, 4, 5)
    # Dealers 4 and 5 are qualified but outside the λ set: the outcome is the same without them.
    assert a.public == b.public
    assert a.share is not None and b.share is not None and a.share.value == b.share.value
    assert a.public != c.public


@pytest.mark.parametrize("silent", [{1, 2, 3}, {2, 4, 5}])
def test_fewer_than_the_old_threshold_of_dealers_fails(silent: set[int]) -> None:
    start = run_dkg(5, 3, rng_seed=47)
    run = run_reshare(start, 7, 6, rng_seed=48, silent=silent)
    assert not run.results and set(run.failures) == set(range(1, 8))
    failure = run.failures[1]
    assert failure.reason == "only 2 qualified old dealers, need the old threshold 3"


def impostor(before: Run, n: int, t: int, dealer: int) -> DealOutput:
    """Old member `dealer` deals a fresh random secret instead of its share."""
    prev, _ = previous_committee(before)
    ctx = make_context(
        n, t, epoch=before.context.epoch + 1, kind=SessionKind.RESHARE, previous=prev
    )
    posted = {a: epoch_key(ctx, a).public_key.to_bytes() for a in participants(ctx)}
    poly = Polynomial.random(t - 1, seeded_rng(7))
    out, _ = make_deal(
        ctx,
        ctx.session_id,
        MemberIndex(dealer),
        poly,
        dealer_key=epoch_key(ctx, prev.members[dealer - 1]),
        keys=EpochKeys.from_posted(ctx, posted),
        rng=seeded_rng(8),
        encapsulate=mlkem_encapsulate,
    )
    return out


def test_a_dealer_that_does_not_deal_its_own_share_is_excluded() -> None:
    start = run_dkg(5, 3, rng_seed=49)
    out = impostor(start, 4, 3, dealer=2)

    def swap_deal(deals: list[DealPublic]) -> list[DealPublic]:
        return [out.public if d.dealer == 2 else d for d in deals]

    def swap_bundle(bundles: list[ShareBundle]) -> list[ShareBundle]:
        return [out.bundle if b.dealer == 2 else b for b in bundles]

    run = run_reshare(start, 4, 3, rng_seed=50, tamper_deals=swap_deal, tamper_bundles=swap_bundle)
    now = assert_consistent(run, expect_members=range(1, 5))
    assert now.qual == (1, 3, 4, 5)
    fault = next(f for f in run.outcomes[1].faults if f.member == 2)
    assert fault.kind is FaultKind.WRONG_CONSTANT_TERM
    assert now.public.public_key == assert_consistent(start).public.public_key


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bad proof", FaultKind.BAD_PROOF),
        ("inconsistent P", FaultKind.INCONSISTENT_G2),
        ("wrong share", FaultKind.UNANSWERED_COMPLAINT),
    ],
)
def test_bad_old_dealers_are_excluded_like_in_the_dkg(name: str, expected: FaultKind) -> None:
    start = run_dkg(5, 3, rng_seed=51)
    prev, _ = previous_committee(start)
    ctx = make_context(6, 4, epoch=2, kind=SessionKind.RESHARE, previous=prev)
    hooks = {
        "bad proof": {"tamper_deals": bad_proof(3)},
        "inconsistent P": {"tamper_deals": inconsistent_p(3)},
        "wrong share": {
            "tamper_bundles": wrong_share(ctx, 3, 6),
            "tamper_justifications": drop_from({3}),
        },
    }[name]
    run = run_reshare(start, 6, 4, rng_seed=52, context=ctx, **hooks)  # type: ignore[arg-type]
    now = assert_consistent(run, expect_members=range(1, 7))
    assert now.qual == (1, 2, 4, 5)
    assert (3, expected) in {(f.member, f.kind) for f in run.outcomes[2].faults}


def test_a_share_the_new_member_cannot_open_is_opened_by_the_old_dealers_answer() -> None:
    start = run_dkg(4, 2, rng_seed=53)
    prev, _ = previous_committee(start)
    ctx = make_context(5, 3, epoch=2, kind=SessionKind.RESHARE, previous=prev)
    run = run_reshare(
        start,
        5,
        3,
        rng_seed=54,
        context=ctx,
        tamper_bundles=bogus_kem(ctx, 1, 5),
        tamper_justifications=answer_with(ctx, 1, 5),
    )
    now = assert_consistent(run, expect_members=range(1, 6))
    assert now.qual == (1, 2, 3, 4)
    assert [(j.dealer, j.accuser) for j in run.justifications] == [(1, 5)]
    assert run.results[5].share is not None


def test_join_and_leave_are_reshares_to_another_member_list() -> None:
    start = run_dkg(4, 3, rng_seed=55)
    # Node 2 leaves, node 9 joins: the new list is (1, 3, 4, 9).
    members = [address(k) for k in (1, 3, 4, 9)]
    run = run_reshare(start, 4, 3, rng_seed=56, members=members)
    now = assert_consistent(run, expect_members=range(1, 5))
    assert now.public.public_key == assert_consistent(start).public.public_key


def test_role_arguments_are_checked() -> None:
    start = run_dkg(3, 2, rng_seed=57)
    prev, shares = previous_committee(start)
    ctx = make_context(3, 2, epoch=2, kind=SessionKind.RESHARE, previous=prev)
    key = epoch_key(ctx, address(1))
    with pytest.raises(ProtocolMisuse, match="share of member 2 given to dealer 1"):
        ReshareDealer(ctx, MemberIndex(1), shares[2], key)
    forged = Share(MemberIndex(1), shares[1].value + 1)
    with pytest.raises(ProtocolMisuse, match="not on the previous committee's public polynomial"):
        ReshareDealer(ctx, MemberIndex(1), forged, key)
    with pytest.raises(ProtocolMisuse, match=r"old member index 4 outside 1..3"):
        ReshareDealer(
            ctx, MemberIndex(4), dataclasses.replace(shares[1], member=MemberIndex(4)), key
        )
    with pytest.raises(ProtocolMisuse, match="resharing needs a RESHARE or REFRESH session"):
        ReshareReceiver(start.context, MemberIndex(1), key)
    with pytest.raises(ProtocolMisuse, match=r"new member index 4 outside 1..3"):
        ReshareReceiver(ctx, MemberIndex(4), key)
    assert G1.base_mul(shares[1].value) == prev.public.evaluate(1)
