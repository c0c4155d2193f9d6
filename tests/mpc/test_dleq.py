"""Chaum-Pedersen DLEQ proofs."""

from __future__ import annotations

import pytest

from mpc.dleq import DleqProof, is_valid_dleq, prove_dleq, verify_dleq
from mpc.errors import EncodingError, InvalidProof
from mpc.group import G1, R, Scalar, hash_to_g1_point
from tests.mpc.dealer import seeded_rng

H = hash_to_g1_point(b"request", b"TEST-DST")


def make(x: int = 12345, context: bytes = b"ctx") -> tuple[DleqProof, G1, G1]:
    s = Scalar(x)
    vk, sigma = G1.base_mul(s), H * s
    return prove_dleq(s, H, vk=vk, sigma=sigma, context=context, rng=seeded_rng(1)), vk, sigma


def test_valid_proof_verifies() -> None:
    proof, vk, sigma = make()
    assert is_valid_dleq(proof, H, vk=vk, sigma=sigma, context=b"ctx")
    verify_dleq(proof, H, vk=vk, sigma=sigma, context=b"ctx")


def test_proof_fails_for_a_different_exponent() -> None:
    proof, vk, sigma = make()
    wrong_sigma = sigma + H
    assert not is_valid_dleq(proof, H, vk=vk, sigma=wrong_sigma, context=b"ctx")
    with pytest.raises(InvalidProof, match="does not verify"):
        verify_dleq(proof, H, vk=vk + G1.generator(), sigma=sigma, context=b"ctx")


def test_proof_is_bound_to_its_context_and_base() -> None:
    proof, vk, sigma = make()
    assert not is_valid_dleq(proof, H, vk=vk, sigma=sigma, context=b"other")
    other_h = hash_to_g1_point(b"other", b"TEST-DST")
    assert not is_valid_dleq(proof, other_h, vk=vk, sigma=other_h * 12345, context=b"ctx")


def test_a_prover_without_the_secret_cannot_forge() -> None:
    # Proving with x' != x for the honest (vk, sigma) yields an invalid proof.
    _, vk, sigma = make()
    forged = prove_dleq(Scalar(999), H, vk=vk, sigma=sigma, context=b"ctx", rng=seeded_rng(2))
    assert not is_valid_dleq(forged, H, vk=vk, sigma=sigma, context=b"ctx")


def test_proof_bytes_round_trip_and_strictness() -> None:
    proof, _, _ = make()
    data = proof.to_bytes()
    assert len(data) == 64
    assert DleqProof.from_bytes(data) == proof
    with pytest.raises(EncodingError, match="expected 64 bytes"):
        DleqProof.from_bytes(data[:63])
    with pytest.raises(EncodingError, match="DLEQ proof z.*not canonical"):
        DleqProof.from_bytes(data[:32] + R.to_bytes(32, "big"))
