"""DKG against misbehaving dealers and accusers: faults are recorded, QUAL excludes the bad
dealers, and all members still agree on one key."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.dealing import FaultKind
from mpc.errors import DecryptionError
from mpc.messages import DealPublic, Justification, ShareBundle
from mpc.session import SessionContext
from mpc.sharebox import open_revealed, pair_context
from mpc.types import MemberIndex
from tests.mpc.harness import (
    Run,
    Tamper,
    answer_with,
    assert_consistent,
    bad_proof,
    bogus_kem,
    compose,
    corrupt_ciphertext,
    corrupt_justification,
    drop_from,
    epoch_key,
    equivocate,
    extra_commitment,
    false_complaint,
    inconsistent_p,
    make_context,
    replace_entry,
    rewrite_deal,
    run_dkg,
    stray_complaint,
    wrong_share,
)

N, T = 5, 3
CTX = make_context(N, T)
OTHER_SESSION = make_context(N, T, epoch=99).session_id


def faults_of(run: Run, member: int) -> set[tuple[int, FaultKind]]:
    return {(f.member, f.kind) for f in run.outcomes[member].faults}


def misbehave(kind: str, dealer: int, holder: int, ctx: SessionContext = CTX) -> dict[str, Any]:
    """Hooks that make `dealer` misbehave as `kind` (and never justify)."""
    no_justification: Tamper[Justification] = drop_from({dealer})
    table: dict[str, dict[str, Any]] = {
        "wrong share": {"tamper_bundles": wrong_share(ctx, dealer, holder)},
        "undecryptable share": {"tamper_bundles": corrupt_ciphertext(dealer, holder)},
        "missing slot": {"tamper_bundles": drop_slot(dealer, holder)},
        "missing ciphertexts": {"tamper_bundles": drop_from({dealer})},
        "inconsistent P": {"tamper_deals": inconsistent_p(dealer)},
        "bad proof": {"tamper_deals": bad_proof(dealer)},
        "wrong commitment count": {"tamper_deals": extra_commitment(dealer)},
        "equivocation": {"tamper_deals": equivocate(dealer)},
        "another session": {"tamper_deals": rewrite_deal(dealer, session_id=OTHER_SESSION)},
        "silence": {"tamper_deals": drop_from({dealer}), "tamper_bundles": drop_from({dealer})},
        "no key": {"tamper_keys": drop_key(ctx, dealer)},
    }
    hooks = table[kind]
    return {**hooks, "tamper_justifications": no_justification}


def drop_slot(dealer: int, holder: int) -> Tamper[ShareBundle]:
    """The dealer leaves holder's slot empty although holder posted a key."""

    return lambda bundles: replace_entry(bundles, dealer, holder, None)


def drop_key(ctx: SessionContext, dealer: int) -> Any:
    return lambda posted: {a: k for a, k in posted.items() if a != ctx.members[dealer - 1]}


EXPECTED = {
    "wrong share": FaultKind.UNANSWERED_COMPLAINT,
    "undecryptable share": FaultKind.UNANSWERED_COMPLAINT,
    "missing slot": FaultKind.BAD_CIPHERTEXTS,
    "missing ciphertexts": FaultKind.MISSING_CIPHERTEXTS,
    "inconsistent P": FaultKind.INCONSISTENT_G2,
    "bad proof": FaultKind.BAD_PROOF,
    "wrong commitment count": FaultKind.WRONG_COMMITMENT_COUNT,
    "equivocation": FaultKind.EQUIVOCATION,
    "another session": FaultKind.WRONG_SESSION,
    "silence": FaultKind.MISSING_DEAL,
    "no key": FaultKind.MISSING_DEAL,  # without a key on the board the dealer cannot deal
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_one_bad_dealer_is_excluded_with_its_fault_and_the_rest_agree(kind: str) -> None:
    run = run_dkg(N, T, rng_seed=21, **misbehave(kind, dealer=2, holder=4))
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 3, 4, 5)
    for i in range(1, N + 1):
        assert (2, EXPECTED[kind]) in faults_of(run, i), f"member {i}: {run.outcomes[i].faults}"


@pytest.mark.parametrize("kind", ["wrong share", "undecryptable share"])
def test_only_the_holder_sees_the_bad_share_itself(kind: str) -> None:
    run = run_dkg(N, T, rng_seed=22, **misbehave(kind, dealer=2, holder=4))
    assert (2, FaultKind.BAD_SHARE) in faults_of(run, 4)
    assert all((2, FaultKind.BAD_SHARE) not in faults_of(run, i) for i in (1, 3, 5))
    bad = [f for f in run.outcomes[1].faults if f.member == 2]
    assert bad[0].detail == "no justification for the complaint of member 4"


@pytest.mark.parametrize("kind", ["wrong share", "undecryptable share"])
def test_a_bad_ciphertext_answered_in_public_excludes_the_dealer_everywhere(kind: str) -> None:
    # The dealer answers (its honest machine reveals the ML-KEM secret of what it sealed), but
    # the box on the board is not that one: everyone opens it and finds no valid share.
    hooks = misbehave(kind, dealer=2, holder=4)
    del hooks["tamper_justifications"]
    run = run_dkg(N, T, rng_seed=35, **hooks)
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 3, 4, 5)
    assert [(j.dealer, j.accuser) for j in run.justifications] == [(2, 4)]
    for i in range(1, N + 1):
        assert (2, FaultKind.BAD_JUSTIFICATION) in faults_of(run, i)


def test_a_false_complaint_excludes_nobody() -> None:
    run = run_dkg(N, T, rng_seed=23, tamper_complaints=false_complaint(CTX, 4, 2))
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 2, 3, 4, 5)
    assert [(j.dealer, j.accuser) for j in run.justifications] == [(2, 4)]
    assert not any(f.member == 2 for f in run.outcomes[1].faults)


def test_the_accuser_of_a_dealer_with_a_bogus_kem_ciphertext_gets_its_share_from_the_answer() -> (
    None
):
    run = run_dkg(
        N,
        T,
        rng_seed=24,
        tamper_bundles=bogus_kem(CTX, 2, 4),
        tamper_justifications=answer_with(CTX, 2, 4),
    )
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 2, 3, 4, 5)
    holder = run.results[4]
    assert holder.share is not None and first.public.is_valid_share(holder.share)
    assert (2, FaultKind.BAD_SHARE) in faults_of(run, 4)


def test_a_wrong_answer_excludes_the_dealer() -> None:
    run = run_dkg(
        N,
        T,
        rng_seed=25,
        tamper_bundles=bogus_kem(CTX, 2, 4),
        tamper_justifications=corrupt_justification(2),
    )
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 3, 4, 5)
    fault = next(f for f in run.outcomes[3].faults if f.member == 2)
    assert fault.kind is FaultKind.BAD_JUSTIFICATION
    assert fault.detail == "the share for member 4 does not open or is not on the commitments"


def test_complaints_that_prove_nothing_are_faults_and_get_no_answer() -> None:
    stray = compose(
        stray_complaint(CTX, CTX.session_id, 9, 2),  # index outside the committee
        stray_complaint(CTX, OTHER_SESSION, 3, 1),  # another session
        stray_complaint(CTX, CTX.session_id, 3, 2),  # member 1's reveal under member 3's name
    )
    run = run_dkg(N, T, rng_seed=26, tamper_complaints=stray)
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 2, 3, 4, 5)
    assert run.justifications == []  # an answer would open a share for everyone
    assert {
        (9, FaultKind.UNKNOWN_MEMBER),
        (3, FaultKind.WRONG_SESSION),
        (3, FaultKind.BAD_COMPLAINT),
    } <= faults_of(run, 1)


def test_deals_replayed_from_another_epoch_count_for_nothing() -> None:
    old = make_context(N, T, epoch=1)
    new = make_context(N, T, epoch=2)
    replayed = run_dkg(N, T, rng_seed=27, context=old).deals

    def replay(deals: list[DealPublic]) -> list[DealPublic]:
        return [*deals[:2], *replayed[2:]]

    run = run_dkg(N, T, rng_seed=28, context=new, tamper_deals=replay)
    assert not run.results
    for failure in run.failures.values():
        assert failure.reason == "only 2 qualified dealers, need 3"
        assert {(3, FaultKind.WRONG_SESSION), (3, FaultKind.MISSING_DEAL)} <= {
            (f.member, f.kind) for f in failure.faults
        }


def test_a_deal_from_an_index_outside_the_committee_is_a_fault() -> None:
    def stranger(deals: list[DealPublic]) -> list[DealPublic]:
        return [*deals, dataclasses.replace(deals[0], dealer=MemberIndex(6))]

    run = run_dkg(N, T, rng_seed=29, tamper_deals=stranger)
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 2, 3, 4, 5)
    assert (6, FaultKind.UNKNOWN_MEMBER) in faults_of(run, 2)


def test_an_identical_duplicate_deal_is_not_equivocation() -> None:
    run = run_dkg(N, T, rng_seed=30, tamper_deals=lambda ds: ds + ds[:1])
    assert assert_consistent(run).qual == (1, 2, 3, 4, 5)


def test_two_different_bundles_from_one_dealer_are_equivocation() -> None:
    def twice(bundles: list[ShareBundle]) -> list[ShareBundle]:
        return wrong_share(CTX, 2, 4)(bundles) + bundles

    run = run_dkg(N, T, rng_seed=31, tamper_bundles=twice)
    assert assert_consistent(run).qual == (1, 3, 4, 5)
    assert (2, FaultKind.EQUIVOCATION) in faults_of(run, 1)
    assert not run.complaints


KINDS = sorted(EXPECTED)


@settings(max_examples=12)
@given(data=st.data())
def test_up_to_t_minus_1_bad_dealers_are_all_excluded(data: st.DataObject) -> None:
    n = data.draw(st.integers(3, 7), label="n")
    t = data.draw(st.integers(2, n), label="t")
    # Keep at least t honest dealers so the epoch can succeed.
    bad = data.draw(st.sets(st.integers(1, n), max_size=min(t - 1, n - t)), label="bad")
    ctx = make_context(n, t)
    hooks: dict[str, list[Any]] = {}
    kinds = {d: data.draw(st.sampled_from(KINDS), label=f"dealer {d}") for d in sorted(bad)}
    # A share (or its absence) aimed at a holder is misbehaviour only if the holder posted a
    # key: to a member without one, an empty slot is what an honest dealer leaves.
    keyless = {d for d, kind in kinds.items() if kind == "no key"}
    for dealer, kind in kinds.items():
        others = [h for h in range(1, n + 1) if h != dealer and h not in keyless]
        holder = data.draw(st.sampled_from(others), label="holder")
        for name, hook in misbehave(kind, dealer, holder, ctx).items():
            hooks.setdefault(name, []).append(hook)
    composed: dict[str, Any] = {name: compose(*hs) for name, hs in hooks.items()}
    run = run_dkg(n, t, rng_seed=data.draw(st.integers(0, 2**16)), **composed)
    first = assert_consistent(run, expect_members=range(1, n + 1))
    assert set(first.qual) == set(range(1, n + 1)) - bad


def test_the_batched_pairing_check_finds_each_inconsistent_dealer() -> None:
    # Two bad P among seven deals: the batch fails, the per-dealer fallback names both.
    run = run_dkg(7, 3, rng_seed=32, tamper_deals=compose(inconsistent_p(2), inconsistent_p(6)))
    first = assert_consistent(run, expect_members=range(1, 8))
    assert first.qual == (1, 3, 4, 5, 7)
    bad = {(f.member, f.kind) for f in run.outcomes[1].faults}
    assert bad == {(2, FaultKind.INCONSISTENT_G2), (6, FaultKind.INCONSISTENT_G2)}


def test_local_faults_alone_exclude_nobody() -> None:
    assert {k for k in FaultKind if k.is_local} == {FaultKind.BAD_SHARE}
    run = run_dkg(
        N,
        T,
        rng_seed=33,
        tamper_bundles=bogus_kem(CTX, 3, 1),
        tamper_justifications=answer_with(CTX, 3, 1),
    )
    assert assert_consistent(run).qual == (1, 2, 3, 4, 5)
    assert (3, FaultKind.BAD_SHARE) in faults_of(run, 1)


def test_copying_another_dealers_deal_fails_the_proof_of_knowledge() -> None:
    # The rogue-key defence: dealer 3 republishes dealer 2's commitments and proof as its own.
    def copy(deals: list[DealPublic]) -> list[DealPublic]:
        two = next(d for d in deals if d.dealer == 2)
        return [
            dataclasses.replace(two, dealer=MemberIndex(3)) if d.dealer == 3 else d for d in deals
        ]

    run = run_dkg(N, T, rng_seed=34, tamper_deals=copy)
    assert assert_consistent(run).qual == (1, 2, 4, 5)
    assert (3, FaultKind.BAD_PROOF) in faults_of(run, 5)


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_nothing_an_honest_pair_exchanges_is_ever_opened_from_board_data(
    data: st.DataObject,
) -> None:
    """Bad dealers and lying accusers together: every secret the board reveals belongs to a
    pair with a dishonest end, and no honest pair's share opens from anything on the board."""
    n = data.draw(st.integers(4, 6), label="n")
    t = data.draw(st.integers(2, n - 2), label="t")
    ctx = make_context(n, t)
    bad = data.draw(st.sets(st.integers(1, n), min_size=1, max_size=min(t - 1, n - t)), label="bad")
    hooks: dict[str, list[Any]] = {}
    for dealer in sorted(bad):
        kind = data.draw(st.sampled_from(["wrong share", "undecryptable share"]), label="kind")
        holder = data.draw(st.sampled_from([h for h in range(1, n + 1) if h != dealer]))
        for name, hook in misbehave(kind, dealer, holder, ctx).items():
            hooks.setdefault(name, []).append(hook)
        # The same corrupted node also lies as an accuser against an honest dealer.
        honest = [d for d in range(1, n + 1) if d not in bad]
        target = data.draw(st.sampled_from(honest), label="falsely accused")
        hooks.setdefault("tamper_complaints", []).append(false_complaint(ctx, dealer, target))
    composed: dict[str, Any] = {name: compose(*hs) for name, hs in hooks.items()}
    run = run_dkg(n, t, rng_seed=data.draw(st.integers(0, 2**16)), **composed)
    assert_consistent(run)
    honest_nodes = set(range(1, n + 1)) - bad
    revealed = [c.reveal.shared for c in run.complaints]
    secrets = [j.kem_secret for j in run.justifications]
    for c in run.complaints:
        assert c.accuser in bad or c.dealer in bad, "an honest pair was disputed"
    assert run.keys is not None
    for bundle in run.bundles:
        i = bundle.dealer
        for j in sorted(honest_nodes - {i}) if i in honest_nodes else []:
            sealed = bundle.entry(j)
            assert sealed is not None
            dealer_key, member_key = run.keys.dealer(i), run.keys.member(j)
            assert dealer_key is not None and member_key is not None
            true_dh = dealer_key.dh * epoch_key(ctx, ctx.members[j - 1]).secret
            assert true_dh not in revealed
            for ss_dh in revealed:
                for secret in secrets:
                    with pytest.raises(DecryptionError):
                        open_revealed(
                            sealed,
                            ss_dh=ss_dh,
                            kem_secret=secret,
                            dealer=dealer_key,
                            recipient=member_key,
                            pair=pair_context(ctx.session_id, i, j),
                        )
