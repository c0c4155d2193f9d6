"""Batched DLEQ verification: one random linear combination for many proofs."""

from __future__ import annotations

import dataclasses
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from mpc.dleq import DleqProof, DleqStatement, invalid_dleqs, prove_dleq, verify_dleq_batch
from mpc.group import G1, Scalar, hash_to_g1_point
from tests.mpc.dealer import seeded_rng

BASES = [hash_to_g1_point(bytes([i]), b"TEST-DST") for i in range(3)]


def honest(i: int, h: G1 | None = None) -> DleqStatement:
    x = Scalar(1000 + 7 * i)
    h = h if h is not None else BASES[i % len(BASES)]
    vk, sigma = G1.base_mul(x), h * x
    context = b"ctx-%d" % i
    proof = prove_dleq(x, h, vk=vk, sigma=sigma, context=context, rng=seeded_rng(i))
    return DleqStatement(proof, h, vk, sigma, context)


POOL = [honest(i) for i in range(8)]
FIELDS = ["a1", "a2", "z", "h", "vk", "sigma", "context"]


def tampered(s: DleqStatement, field: str) -> DleqStatement:
    g = G1.generator()
    p = s.proof
    if field in ("a1", "a2", "z"):
        delta = {"a1": {"a1": p.a1 + g}, "a2": {"a2": p.a2 + g}, "z": {"z": p.z + 1}}[field]
        return dataclasses.replace(s, proof=dataclasses.replace(p, **delta))  # type: ignore[arg-type]
    if field == "context":
        return dataclasses.replace(s, context=s.context + b"!")
    return dataclasses.replace(s, **{field: getattr(s, field) + g})


def fixed_ones(n: int) -> bytes:
    """Every batch weight becomes 1: what a verifier with predictable weights would use."""
    return bytes(n - 1) + b"\x01"


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(range(len(POOL))), min_size=0, max_size=6))
def test_a_batch_of_honest_proofs_verifies(picks: list[int]) -> None:
    items = [POOL[i] for i in picks]
    assert verify_dleq_batch(items)
    assert invalid_dleqs(items) == []


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(POOL))), min_size=1, max_size=6),
    st.data(),
)
def test_any_tampered_proof_fails_the_batch_and_is_named(
    picks: list[int], data: st.DataObject
) -> None:
    items = [POOL[i] for i in picks]
    bad = data.draw(st.sets(st.sampled_from(range(len(items))), min_size=1), label="bad")
    for pos in bad:
        items[pos] = tampered(items[pos], data.draw(st.sampled_from(FIELDS), label=f"field {pos}"))
    assert not verify_dleq_batch(items)
    assert invalid_dleqs(items) == sorted(bad)


def test_two_wrong_proofs_that_cancel_under_fixed_weights_are_still_caught() -> None:
    # Same base H: shifting z by +d in one proof and -d in the other cancels in the plain sum
    # (weights all 1), so a batch with predictable weights would accept two false proofs.
    h = BASES[0]
    first, second = honest(1, h), honest(2, h)
    d = Scalar(123456789)
    items = [
        dataclasses.replace(first, proof=dataclasses.replace(first.proof, z=first.proof.z + d)),
        POOL[3],
        dataclasses.replace(second, proof=dataclasses.replace(second.proof, z=second.proof.z - d)),
    ]
    assert verify_dleq_batch(items, fixed_ones)  # the attack works on fixed weights
    assert not verify_dleq_batch(items, os.urandom)
    assert invalid_dleqs(items) == [0, 2]


def test_a_forged_proof_for_a_wrong_partial_fails_alone_and_in_a_batch() -> None:
    # A prover without x: a proof made with another exponent for the honest (vk, sigma).
    s = POOL[0]
    forged = prove_dleq(Scalar(5), s.h, vk=s.vk, sigma=s.sigma, context=s.context, rng=os.urandom)
    lie = dataclasses.replace(s, proof=forged)
    assert not verify_dleq_batch([lie])
    assert invalid_dleqs([POOL[1], lie, POOL[2]]) == [1]


def test_junk_proof_with_valid_points_is_named() -> None:
    junk = DleqProof(a1=G1.generator(), a2=G1.generator(), z=Scalar(2))
    items = [POOL[0], dataclasses.replace(POOL[1], proof=junk)]
    assert invalid_dleqs(items) == [1]
