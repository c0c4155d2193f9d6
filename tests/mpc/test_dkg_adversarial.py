"""DKG against misbehaving dealers and accusers: faults are recorded, QUAL excludes the bad
dealers, and all members still agree on one key."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.dealing import FaultKind
from mpc.messages import DealPublic, EncryptedShare, Justification
from mpc.session import SessionContext
from mpc.types import MemberIndex
from tests.mpc.harness import (
    Run,
    Tamper,
    add_complaint,
    assert_consistent,
    bad_proof,
    compose,
    corrupt_ciphertext,
    corrupt_justification,
    drop_from,
    equivocate,
    extra_commitment,
    inconsistent_p,
    make_context,
    rewrite_deal,
    run_dkg,
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
    hooks: dict[str, Any] = {
        "wrong share": {"tamper_shares": wrong_share(ctx, dealer, holder)},
        "undecryptable share": {"tamper_shares": corrupt_ciphertext(dealer, holder)},
        "missing share": {
            "tamper_shares": lambda ss: [
                s for s in ss if (s.dealer, s.recipient) != (dealer, holder)
            ]
        },
        "inconsistent P": {"tamper_deals": inconsistent_p(dealer)},
        "bad proof": {"tamper_deals": bad_proof(dealer)},
        "wrong commitment count": {"tamper_deals": extra_commitment(dealer)},
        "equivocation": {"tamper_deals": equivocate(dealer)},
        "another session": {"tamper_deals": rewrite_deal(dealer, session_id=OTHER_SESSION)},
        "silence": {"tamper_deals": drop_from({dealer}), "tamper_shares": drop_from({dealer})},
    }[kind]
    return {**hooks, "tamper_justifications": no_justification}


EXPECTED = {
    "wrong share": FaultKind.UNANSWERED_COMPLAINT,
    "undecryptable share": FaultKind.UNANSWERED_COMPLAINT,
    "missing share": FaultKind.UNANSWERED_COMPLAINT,
    "inconsistent P": FaultKind.INCONSISTENT_G2,
    "bad proof": FaultKind.BAD_PROOF,
    "wrong commitment count": FaultKind.WRONG_COMMITMENT_COUNT,
    "equivocation": FaultKind.EQUIVOCATION,
    "another session": FaultKind.WRONG_SESSION,
    "silence": FaultKind.MISSING_DEAL,
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_one_bad_dealer_is_excluded_with_its_fault_and_the_rest_agree(kind: str) -> None:
    run = run_dkg(N, T, rng_seed=21, **misbehave(kind, dealer=2, holder=4))
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 3, 4, 5)
    for i in range(1, N + 1):
        assert (2, EXPECTED[kind]) in faults_of(run, i), f"member {i}: {run.outcomes[i].faults}"


@pytest.mark.parametrize(
    ("kind", "local"),
    [
        ("wrong share", FaultKind.BAD_SHARE),
        ("undecryptable share", FaultKind.BAD_SHARE),
        ("missing share", FaultKind.MISSING_SHARE),
    ],
)
def test_only_the_holder_sees_the_bad_share_itself(kind: str, local: FaultKind) -> None:
    run = run_dkg(N, T, rng_seed=22, **misbehave(kind, dealer=2, holder=4))
    assert (2, local) in faults_of(run, 4)
    assert all((2, local) not in faults_of(run, i) for i in (1, 3, 5))
    bad = [f for f in run.outcomes[1].faults if f.member == 2]
    assert bad[0].detail == "no justification for the complaint of member 4"


def test_a_falsely_accused_dealer_that_justifies_stays_in_qual() -> None:
    run = run_dkg(N, T, rng_seed=23, tamper_complaints=add_complaint(CTX.session_id, 4, 2))
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 2, 3, 4, 5)
    assert [(j.dealer, j.accuser) for j in run.justifications] == [(2, 4)]
    assert not any(f.member == 2 for f in run.outcomes[1].faults)


def test_a_wrong_share_that_is_justified_correctly_is_replaced_and_the_dealer_stays() -> None:
    run = run_dkg(N, T, rng_seed=24, tamper_shares=wrong_share(CTX, 2, 4))
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 2, 3, 4, 5)
    holder = run.results[4]
    assert holder.share is not None and first.public.is_valid_share(holder.share)
    assert (2, FaultKind.BAD_SHARE) in faults_of(run, 4)


def test_a_wrong_justification_excludes_the_dealer() -> None:
    run = run_dkg(
        N,
        T,
        rng_seed=25,
        tamper_shares=wrong_share(CTX, 2, 4),
        tamper_justifications=corrupt_justification(2),
    )
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 3, 4, 5)
    fault = next(f for f in run.outcomes[3].faults if f.member == 2)
    assert fault.kind is FaultKind.BAD_JUSTIFICATION
    assert fault.detail == "share revealed for member 4 is not on the commitments"


def test_complaints_from_outside_the_committee_or_session_are_faults_and_get_no_answer() -> None:
    stray = compose(
        add_complaint(CTX.session_id, 9, 2),
        add_complaint(OTHER_SESSION, 3, 1),
    )
    run = run_dkg(N, T, rng_seed=26, tamper_complaints=stray)
    first = assert_consistent(run, expect_members=range(1, N + 1))
    assert first.qual == (1, 2, 3, 4, 5)
    assert run.justifications == []  # a share for index 9 would leak a point of f_2
    assert {(9, FaultKind.UNKNOWN_MEMBER), (3, FaultKind.WRONG_SESSION)} <= faults_of(run, 1)


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


def test_duplicate_shares_one_valid_are_accepted() -> None:
    def twice(shares: list[EncryptedShare]) -> list[EncryptedShare]:
        return wrong_share(CTX, 2, 4)(shares) + shares

    run = run_dkg(N, T, rng_seed=31, tamper_shares=twice)
    assert assert_consistent(run).qual == (1, 2, 3, 4, 5)
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
    for dealer in sorted(bad):
        kind = data.draw(st.sampled_from(KINDS), label=f"dealer {dealer}")
        others = [h for h in range(1, n + 1) if h != dealer]
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
    assert {k for k in FaultKind if k.is_local} == {FaultKind.BAD_SHARE, FaultKind.MISSING_SHARE}
    run = run_dkg(N, T, rng_seed=33, tamper_shares=corrupt_ciphertext(3, 1))
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
