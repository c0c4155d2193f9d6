"""DKG: every (n, t) agrees on one key that t shares recover; digest; reference cross-check."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from py_ecc.bls.point_compression import compress_G1, compress_G2
from py_ecc.optimized_bls12_381 import G1 as ECC_G1
from py_ecc.optimized_bls12_381 import G2 as ECC_G2
from py_ecc.optimized_bls12_381 import multiply

from mpc.dealing import FaultKind, Phase
from mpc.dkg import DkgMember, DkgResult, compute_digest
from mpc.epochkey import EpochKeyPair, EpochKeys
from mpc.errors import ProtocolMisuse
from mpc.session import SessionContext
from mpc.sharing import recover_secret
from mpc.types import MemberIndex
from tests.mpc.harness import (
    assert_consistent,
    epoch_key,
    make_context,
    run_dkg,
    seeded_rng,
)

ALL_N_T = [(n, t) for n in range(1, 10) for t in range(1, n + 1)]


@pytest.mark.parametrize(("n", "t"), ALL_N_T)
def test_every_n_and_t_gives_one_key_that_any_t_shares_recover(n: int, t: int) -> None:
    run = run_dkg(n, t, rng_seed=n * 10 + t)
    first = assert_consistent(run, expect_members=range(1, n + 1))
    assert first.qual == tuple(range(1, n + 1))
    assert all(r.share is not None and not r.faults for r in run.results.values())


@given(n=st.integers(1, 9), data=st.data())
def test_dkg_property_any_seed(n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n), label="t")
    seed = data.draw(st.integers(0, 2**32), label="seed")
    silent = data.draw(st.sets(st.integers(1, n), max_size=n - t), label="silent")
    run = run_dkg(n, t, rng_seed=seed, silent=silent)
    first = assert_consistent(run, expect_members=range(1, n + 1))
    assert set(first.qual) == set(range(1, n + 1)) - silent
    for r in run.results.values():
        assert {f.member for f in r.faults} == silent
        assert all(f.kind is FaultKind.MISSING_DEAL for f in r.faults)


def test_a_member_that_missed_the_deal_phase_is_not_in_qual_but_gets_a_share() -> None:
    run = run_dkg(5, 3, rng_seed=3, silent={2})
    first = assert_consistent(run, expect_members=range(1, 6))
    assert first.qual == (1, 3, 4, 5)
    late = run.results[2]
    assert late.share is not None and first.public.is_valid_share(late.share)
    assert any(f.member == 2 and f.kind is FaultKind.MISSING_DEAL for f in late.faults)


def test_too_few_dealers_fail_the_epoch_everywhere() -> None:
    run = run_dkg(5, 3, rng_seed=4, silent={1, 2, 3})
    assert not run.results and set(run.failures) == {1, 2, 3, 4, 5}
    for f in run.failures.values():
        assert f.reason == "only 2 qualified dealers, need 3"
        assert f.qual == (4, 5)


def test_the_same_seeds_give_the_same_key_and_other_seeds_another() -> None:
    a, b, c = (assert_consistent(run_dkg(4, 3, rng_seed=s)) for s in (7, 7, 8))
    assert a.public == b.public and a.digest == b.digest
    assert a.public != c.public


def test_the_group_key_matches_the_py_ecc_reference() -> None:
    run = run_dkg(4, 3, rng_seed=11)
    first = assert_consistent(run)
    shares = [r.share for r in run.results.values() if r.share is not None]
    secret = int(recover_secret(shares[1:], 3))
    assert compress_G1(multiply(ECC_G1, secret)).to_bytes(48, "big") == (
        first.public.public_key.to_bytes()
    )
    z1, z2 = compress_G2(multiply(ECC_G2, secret))
    assert z1.to_bytes(48, "big") + z2.to_bytes(48, "big") == first.pk2.to_bytes()
    for s in shares:
        vk = compress_G1(multiply(ECC_G1, int(s.value))).to_bytes(48, "big")
        assert first.verification_key(s.member).to_bytes() == vk


def test_the_confirmation_digest_follows_its_documented_formula() -> None:
    run = run_dkg(4, 2, rng_seed=12, silent={3})
    first = assert_consistent(run)

    def framed(*parts: bytes) -> bytes:
        return b"".join(len(p).to_bytes(4, "big") + p for p in parts)

    expected = hashlib.sha256(
        framed(
            b"tkms-dkg-confirm:v1",
            run.context.session_id,
            b"\x00\x01\x00\x02\x00\x04",
            first.public.commitments[0].to_bytes(),
            first.public.commitments[1].to_bytes(),
            first.pk2.to_bytes(),
        )
    ).digest()
    assert first.digest == expected
    assert compute_digest(run.context.session_id, (1, 2, 3, 4), first.public, first.pk2) != expected
    confirmation = first.confirmation()
    assert (confirmation.member, confirmation.digest) == (first.member, expected)


def test_results_never_print_the_share() -> None:
    first = assert_consistent(run_dkg(3, 2, rng_seed=13))
    assert first.share is not None
    assert str(int(first.share.value)) not in repr(first)
    assert first.share.value.to_bytes().hex() not in repr(first)


def board_keys(ctx: SessionContext, *skip: int) -> EpochKeys:
    posted = {
        a: epoch_key(ctx, a).public_key.to_bytes()
        for k, a in enumerate(ctx.members, start=1)
        if k not in skip
    }
    return EpochKeys.from_posted(ctx, posted)


def test_constructor_and_deal_arguments_are_checked() -> None:
    ctx = make_context(3, 2)
    key = epoch_key(ctx, ctx.members[0])
    with pytest.raises(ProtocolMisuse, match=r"member index 4 outside 1..3"):
        DkgMember(ctx, MemberIndex(4), key)
    member = DkgMember(ctx, MemberIndex(1), key, seeded_rng(1))
    keys = board_keys(ctx)
    with pytest.raises(ProtocolMisuse, match="need keys for 3 dealers and 3 members, got 2 and 3"):
        member.deal(EpochKeys(dealers=keys.dealers[:2], members=keys.members))
    with pytest.raises(ProtocolMisuse, match="our epoch key is not on the board"):
        member.deal(board_keys(ctx, 1))
    assert member.phase is Phase.DEAL  # unchanged: it can still deal
    out = member.deal(keys)
    assert [e is not None for e in out.bundle.entries] == [False, True, True]
    assert str(member.phase) == "Phase.DEALT"


def test_a_member_without_a_key_on_the_board_gets_no_share_and_costs_nobody_anything() -> None:
    # Member 3's key never made it to the board: dealers seal nothing to it, nobody complains.
    ctx = make_context(4, 2)
    run = run_dkg(
        4,
        2,
        rng_seed=15,
        tamper_keys=lambda posted: {a: k for a, k in posted.items() if a != ctx.members[2]},
    )
    first = assert_consistent(run)
    assert first.qual == (1, 2, 4)  # member 3 could not deal without a key either
    assert run.results[3].share is None and not run.complaints
    assert all(b.entry(3) is None for b in run.bundles)
    assert (3, FaultKind.MISSING_DEAL) in {(f.member, f.kind) for f in first.faults}


def test_other_members_keys_cannot_open_my_shares() -> None:
    # Everyone's sealed shares are on the board: only the addressed member opens its own.
    ctx = make_context(3, 2)
    keys = board_keys(ctx)
    outputs = [
        DkgMember(ctx, MemberIndex(i), epoch_key(ctx, ctx.members[i - 1]), seeded_rng(i)).deal(keys)
        for i in (1, 2, 3)
    ]
    stranger = EpochKeyPair.generate(ctx.session_id, ctx.members[0], member=True, rng=seeded_rng(9))
    member = DkgMember(ctx, MemberIndex(1), stranger, seeded_rng(5))
    complaints = member.on_deals(keys, [o.public for o in outputs], [o.bundle for o in outputs])
    # Our key is not the one on the board: nothing was sealed to us, so there is nothing to
    # complain about (a complaint could not prove anything either).
    assert complaints == () and not member.faults
    impostor = DkgMember(ctx, MemberIndex(2), epoch_key(ctx, ctx.members[0]), seeded_rng(6))
    complaints = impostor.on_deals(keys, [o.public for o in outputs], [o.bundle for o in outputs])
    assert {(c.accuser, c.dealer) for c in complaints} == set()  # key of member 1 != member 2's


def test_a_result_without_share_when_my_complaint_never_reached_the_board() -> None:
    from tests.mpc.harness import corrupt_ciphertext

    run = run_dkg(
        4,
        2,
        rng_seed=14,
        tamper_bundles=corrupt_ciphertext(dealer=1, holder=3),
        tamper_complaints=lambda cs: [c for c in cs if c.accuser != 3],
    )
    first = assert_consistent(run)
    assert first.qual == (1, 2, 3, 4)
    censored = run.results[3]
    assert isinstance(censored, DkgResult) and censored.share is None
    assert censored.digest == first.digest  # it still agrees on the public outcome
