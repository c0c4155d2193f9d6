"""Schnorr proofs of knowledge: completeness, binding to the statement, strict encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc.errors import EncodingError, InvalidProof, ProtocolMisuse
from mpc.group import G1, R, Scalar
from mpc.schnorr import (
    SchnorrProof,
    compute_binding,
    is_valid_knowledge_proof,
    prove_knowledge,
    verify_knowledge_proof,
)
from tests.mpc.harness import seeded_rng

CONTRACT = bytes(range(20))
SID = bytes(32)


def binding(**changes: object) -> bytes:
    args: dict[str, object] = {
        "chain_id": 1,
        "contract": CONTRACT,
        "epoch": 7,
        "dealer": 3,
        "session_id": SID,
    }
    args.update(changes)
    return compute_binding(**args)  # type: ignore[arg-type]


@given(seed=st.integers(0, 2**32))
def test_an_honest_proof_verifies_and_round_trips(seed: int) -> None:
    secret = Scalar.random(seeded_rng(seed))
    proof = prove_knowledge(secret, binding=binding(), rng=seeded_rng(seed + 1))
    public = G1.base_mul(secret)
    verify_knowledge_proof(proof, public, binding=binding())
    again = SchnorrProof.from_bytes(proof.to_bytes())
    assert again == proof
    assert is_valid_knowledge_proof(again, public, binding=binding())


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 2},
        {"contract": bytes(19) + b"\x01"},
        {"epoch": 8},
        {"dealer": 4},
        {"session_id": b"\x01" * 32},
    ],
)
def test_a_proof_does_not_verify_for_another_statement(change: dict[str, object]) -> None:
    secret = Scalar(123456789)
    proof = prove_knowledge(secret, binding=binding(), rng=seeded_rng(1))
    with pytest.raises(InvalidProof, match="Schnorr proof of knowledge does not verify"):
        verify_knowledge_proof(proof, G1.base_mul(secret), binding=binding(**change))


def test_a_proof_does_not_verify_for_another_key_or_when_altered() -> None:
    secret = Scalar(42)
    proof = prove_knowledge(secret, binding=binding(), rng=seeded_rng(1))
    assert not is_valid_knowledge_proof(proof, G1.base_mul(43), binding=binding())
    assert not is_valid_knowledge_proof(proof, G1.identity(), binding=binding())
    bent = SchnorrProof(c=proof.c, z=proof.z + 1)
    assert not is_valid_knowledge_proof(bent, G1.base_mul(secret), binding=binding())


def test_a_reused_rng_gives_different_nonces_for_different_statements() -> None:
    # Hedged nonces: the same rng output with two statements must not leak the secret.
    secret = Scalar(99)
    p1 = prove_knowledge(secret, binding=binding(epoch=1), rng=seeded_rng(5))
    p2 = prove_knowledge(secret, binding=binding(epoch=2), rng=seeded_rng(5))
    # With equal nonces, z1 - z2 == (c1 - c2)·secret; hedging makes that fail.
    assert p1.z - p2.z != (p1.c - p2.c) * secret


def test_zero_secret_and_bad_binding_arguments_are_refused() -> None:
    with pytest.raises(ProtocolMisuse, match="zero secret"):
        prove_knowledge(Scalar(0), binding=binding(), rng=seeded_rng(1))
    with pytest.raises(ProtocolMisuse, match="contract address must be 20 bytes"):
        binding(contract=b"short")
    with pytest.raises(ProtocolMisuse, match="dealer index must be in 1..65535"):
        binding(dealer=0)


def test_decoding_is_strict() -> None:
    with pytest.raises(EncodingError, match="Schnorr proof: expected 64 bytes, got 63"):
        SchnorrProof.from_bytes(bytes(63))
    with pytest.raises(EncodingError, match="Schnorr proof z: not canonical"):
        SchnorrProof.from_bytes(bytes(32) + R.to_bytes(32, "big"))
    assert "redacted" not in repr(SchnorrProof(c=Scalar(1), z=Scalar(2)))  # proofs are public
