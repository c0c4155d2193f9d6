"""Optimistic combining: one pairing check for honest answers, proofs only to name liars."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import pytest

from mpc import _combiner
from mpc._combiner import Combiner
from mpc.derive import (
    EncryptedPartial,
    EphemeralKey,
    KeyRequest,
    are_consistent_with_group_key,
    derive_partial,
)
from mpc.dleq import DleqProof, DleqStatement, verify_dleq_batch
from mpc.errors import InvalidProof, ProtocolMisuse
from mpc.group import G1, G2, Rng, Scalar
from mpc.sharing import lagrange_coefficients_at_zero
from mpc.types import Epoch, MemberIndex
from tests.mpc.dealer import DealtKeys, deal, seeded_rng
from tests.mpc.test_derive import APP, NET

REQUESTS = [KeyRequest.app_key(APP, b"disk"), KeyRequest.ibe_key(APP)]


@pytest.fixture(scope="module")
def keys() -> DealtKeys:
    return deal(5, 3, seed=11)


@pytest.fixture(scope="module")
def eph() -> EphemeralKey:
    return EphemeralKey.generate(seeded_rng(3))


def answer(keys: DealtKeys, member: int, eph: EphemeralKey) -> list[EncryptedPartial]:
    share = keys.shares[member - 1]
    rng = seeded_rng(member)
    return [derive_partial(share, r, requester=eph.public, network=NET, rng=rng) for r in REQUESTS]


def combiner(keys: DealtKeys, eph: EphemeralKey, group_key: G2 | None = None) -> Combiner:
    return Combiner(
        REQUESTS,
        ephemeral=eph,
        network=NET,
        group_key=group_key or keys.group_key_g2,
        threshold=keys.threshold,
        verification_keys={i: keys.public.verification_key(MemberIndex(i)) for i in range(1, 6)},
        rng=os.urandom,
    )


def expected(keys: DealtKeys) -> list[G1]:
    return [r.point() * keys.secret_poly.secret for r in REQUESTS]


def shifted(partials: list[EncryptedPartial], k: int, by: G1) -> list[EncryptedPartial]:
    out = list(partials)
    out[k] = dataclasses.replace(out[k], z=out[k].z + by)
    return out


def test_honest_answers_give_every_key_without_opening_a_proof(
    keys: DealtKeys, eph: EphemeralKey
) -> None:
    # Garbage proofs on correct partials: the combination verifies, so no proof is looked at.
    junk = DleqProof(a1=G1.generator(), a2=G1.generator(), z=Scalar(2))
    answers = {
        m: [dataclasses.replace(p, proof=junk) for p in answer(keys, m, eph)] for m in (1, 3, 5)
    }
    c = combiner(keys, eph)
    assert c.check(answers) == {}
    assert c.sigmas == expected(keys)


def test_a_liar_is_named_by_its_proof_and_replaced(keys: DealtKeys, eph: EphemeralKey) -> None:
    c = combiner(keys, eph)
    lying = shifted(answer(keys, 2, eph), 1, G1.generator())  # only its IBE partial is wrong
    wrong = c.check({1: answer(keys, 1, eph), 2: lying, 3: answer(keys, 3, eph)})
    assert list(wrong) == [2]
    assert wrong[2].member == 2
    assert "DLEQ proof does not verify" in str(wrong[2])
    with pytest.raises(ProtocolMisuse, match="no answers have been accepted"):
        _ = c.sigmas
    # Members 1 and 3 verified by proof already; member 4 replaces the liar.
    assert (
        c.check({1: answer(keys, 1, eph), 3: answer(keys, 3, eph), 4: answer(keys, 4, eph)}) == {}
    )
    assert c.sigmas == expected(keys)


def test_two_liars_are_both_named(keys: DealtKeys, eph: EphemeralKey) -> None:
    c = combiner(keys, eph)
    answers = {m: answer(keys, m, eph) for m in (1, 2, 3)}
    answers[1] = shifted(answers[1], 0, G1.generator())
    answers[3] = shifted(answers[3], 0, G1.base_mul(5))
    assert sorted(c.check(answers)) == [1, 3]


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every DLEQ batch the combiner checks, in order."""
    sizes: list[int] = []

    def recording(items: Sequence[DleqStatement], rng: Rng = os.urandom) -> bool:
        sizes.append(len(items))
        return verify_dleq_batch(items, rng)

    monkeypatch.setattr(_combiner, "verify_dleq_batch", recording)
    return sizes


def test_after_a_liar_new_answers_are_batched_and_only_a_new_liar_is_named(
    keys: DealtKeys, eph: EphemeralKey, batch_sizes: list[int]
) -> None:
    c = combiner(keys, eph)
    first = {m: answer(keys, m, eph) for m in (1, 2, 3)}
    first[1] = shifted(first[1], 1, G1.generator())
    assert list(c.check(first)) == [1]
    # The pairing check failed, so a batch over everyone would too: one batch per member.
    assert batch_sizes == [2, 2, 2]
    batch_sizes.clear()
    # Members 4 and 5 are new: one batch over both fails (5 lies), then one per member.
    second = {2: answer(keys, 2, eph), 4: answer(keys, 4, eph), 5: answer(keys, 5, eph)}
    second[5] = shifted(second[5], 0, G1.base_mul(3))
    assert list(c.check(second)) == [5]
    assert batch_sizes == [4, 2, 2]
    batch_sizes.clear()
    # 2, 3 and 4 are all verified already: no proof is checked again, the keys are right.
    third = {2: answer(keys, 2, eph), 3: answer(keys, 3, eph), 4: answer(keys, 4, eph)}
    assert c.check(third) == {}
    assert batch_sizes == []
    assert c.sigmas == expected(keys)


def test_honest_replacements_are_verified_in_one_batch(
    keys: DealtKeys, eph: EphemeralKey, batch_sizes: list[int]
) -> None:
    c = combiner(keys, eph)
    first = {m: answer(keys, m, eph) for m in (1, 2, 3)}
    first[2] = shifted(first[2], 0, G1.generator())
    first[3] = shifted(first[3], 1, G1.generator())
    assert sorted(c.check(first)) == [2, 3]
    batch_sizes.clear()
    second = {1: answer(keys, 1, eph), 4: answer(keys, 4, eph), 5: answer(keys, 5, eph)}
    assert c.check(second) == {}
    assert batch_sizes == [4]  # members 4 and 5, two keys each, in one batch
    assert c.sigmas == expected(keys)


def test_deferred_proofs_are_decoded_only_when_needed_and_a_bad_point_names_its_member(
    keys: DealtKeys, eph: EphemeralKey
) -> None:
    from tests.mpc.test_group import _point_outside_subgroup

    def wire(partials: list[EncryptedPartial], bad_a2: bool) -> list[EncryptedPartial]:
        out = []
        for p in partials:
            data = bytearray(p.to_bytes())
            if bad_a2:  # the proof's A2: after generation, epoch, member, Y, Z, version, A1
                start = 20 + 2 * 48 + 1 + 48
                data[start : start + 48] = _point_outside_subgroup()
            out.append(EncryptedPartial.from_bytes(bytes(data), defer_proof=True))
        return out

    # Correct partials with undecodable proofs: the key checks out, no proof is decoded.
    honest = {m: wire(answer(keys, m, eph), bad_a2=(m == 2)) for m in (1, 2, 3)}
    c = combiner(keys, eph)
    assert c.check(honest) == {}
    assert c.sigmas == expected(keys)
    # A wrong partial with such a proof: named, and the error says which field.
    lying = {m: wire(answer(keys, m, eph), bad_a2=(m == 2)) for m in (1, 2, 3)}
    lying[2] = shifted(lying[2], 0, G1.generator())
    wrong = combiner(keys, eph).check(lying)
    assert list(wrong) == [2]
    assert "malformed proof" in str(wrong[2]) and "A2: not in the prime-order subgroup" in str(
        wrong[2]
    )


def test_a_partial_for_another_epoch_is_named_without_a_pairing(
    keys: DealtKeys, eph: EphemeralKey
) -> None:
    answers = {m: answer(keys, m, eph) for m in (1, 2, 3)}
    answers[2] = [dataclasses.replace(p, epoch=Epoch(9)) for p in answers[2]]
    wrong = combiner(keys, eph).check(answers)
    assert list(wrong) == [2]
    assert "for generation 1 epoch 9, expected generation 1 epoch 4" in str(wrong[2])


def test_errors_that_cancel_out_still_give_the_right_key(
    keys: DealtKeys, eph: EphemeralKey
) -> None:
    # Two colluding members shift their partials so the combination is unchanged: they go
    # unnamed, but what the app gets is still exactly x·H (the documented limit).
    lambdas = lagrange_coefficients_at_zero([1, 2, 3])
    d = G1.base_mul(12345)
    answers = {m: answer(keys, m, eph) for m in (1, 2, 3)}
    answers[1] = shifted(answers[1], 0, d * lambdas[1].inverse())
    answers[2] = shifted(answers[2], 0, -(d * lambdas[2].inverse()))
    c = combiner(keys, eph)
    assert c.check(answers) == {}
    assert c.sigmas == expected(keys)


def test_verified_partials_that_pk2_does_not_confirm_raise(
    keys: DealtKeys, eph: EphemeralKey
) -> None:
    other = deal(5, 3, seed=12).group_key_g2  # committee data from two different key sets
    c = combiner(keys, eph, group_key=other)
    with pytest.raises(InvalidProof, match="committee's V_i and PK2 disagree"):
        c.check({m: answer(keys, m, eph) for m in (1, 2, 3)})


def test_check_takes_exactly_t_answers(keys: DealtKeys, eph: EphemeralKey) -> None:
    with pytest.raises(ProtocolMisuse, match="check takes 3 answers, got 2"):
        combiner(keys, eph).check({m: answer(keys, m, eph) for m in (1, 2)})


def test_one_pairing_equation_checks_every_key(keys: DealtKeys) -> None:
    x = keys.secret_poly.secret
    good = expected(keys)
    pk2 = keys.group_key_g2
    assert are_consistent_with_group_key(good, REQUESTS, pk2, rng=os.urandom)
    assert not are_consistent_with_group_key(good[::-1], REQUESTS, pk2, rng=os.urandom)
    assert not are_consistent_with_group_key(
        [good[0], good[1] + G1.generator()], REQUESTS, pk2, rng=os.urandom
    )
    assert not are_consistent_with_group_key(
        [r.point() * (x + 1) for r in REQUESTS], REQUESTS, pk2, rng=os.urandom
    )
    with pytest.raises(ProtocolMisuse, match="1 sigmas for 2 requests"):
        are_consistent_with_group_key(good[:1], REQUESTS, pk2, rng=os.urandom)
