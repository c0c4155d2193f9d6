"""Schnorr proofs of knowledge of a discrete logarithm in G1, bound to one dealer's deal.

A dealer publishes C_0 = a_0·G1 and proves it knows a_0, so nobody can copy another dealer's
commitments (or choose C_0 as a function of them: the rogue-key attack on joint Feldman).
The proof is bound to (chain id, contract, epoch, dealer, session id) by `compute_binding`,
so it cannot be replayed into another run, another chain or for another dealer.

Proof (Fiat-Shamir, challenge from `mpc.encoding.challenge` with DST TKMS-V1-CHALLENGE):
k = hedged nonce, R = k·G1, c = challenge("tkms-schnorr-pok:v1", binding, C_0, R),
z = k + c·a_0. Verification recomputes R = z·G1 - c·C_0 and compares the challenge.

The nonce is hedged: it hashes the secret, the binding and 32 bytes of `rng`, so a weak or
repeated rng (a reused seed, a cloned VM) never repeats a nonce for two different statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mpc.dst import DST_SCHNORR_NONCE
from mpc.encoding import (
    CHALLENGE_RESPONSE_SIZE,
    challenge,
    decode_challenge_response,
    frame,
    hash_to_scalar,
)
from mpc.errors import InvalidProof, ProtocolMisuse
from mpc.group import G1, Rng, Scalar

_LABEL: Final = b"tkms-schnorr-pok:v1"
_BINDING_LABEL: Final = b"tkms-dkg-pok:v1"
PROOF_SIZE: Final = CHALLENGE_RESPONSE_SIZE


@dataclass(frozen=True, slots=True, kw_only=True)
class SchnorrProof:
    """A proof (c, z) of knowledge of log_G1 of a public key; 64 bytes."""

    c: Scalar
    z: Scalar

    def to_bytes(self) -> bytes:
        return self.c.to_bytes() + self.z.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "Schnorr proof") -> SchnorrProof:
        c, z = decode_challenge_response(data, what)
        return cls(c=c, z=z)

    def __repr__(self) -> str:
        return f"SchnorrProof({self.to_bytes().hex()[:16]}…)"


def compute_binding(
    *, chain_id: int, contract: bytes, epoch: int, dealer: int, session_id: bytes
) -> bytes:
    """The statement context of a dealer's proof: frame(label, u64 chain id, contract,
    u64 epoch, u16 dealer, session id)."""
    if len(contract) != 20:
        raise ProtocolMisuse(f"contract address must be 20 bytes, got {len(contract)}")
    if not 1 <= dealer < 1 << 16:
        raise ProtocolMisuse(f"dealer index must be in 1..65535, got {dealer}")
    return frame(
        _BINDING_LABEL,
        chain_id.to_bytes(8, "big"),
        contract,
        epoch.to_bytes(8, "big"),
        dealer.to_bytes(2, "big"),
        session_id,
    )


def _challenge(binding: bytes, public: G1, r: G1) -> Scalar:
    return challenge(_LABEL, binding, public.to_bytes(), r.to_bytes())


def prove_knowledge(secret: Scalar, *, binding: bytes, rng: Rng) -> SchnorrProof:
    """Prove knowledge of `secret` = log_G1(secret·G1) for the statement `binding`."""
    if secret.is_zero():
        raise ProtocolMisuse("refusing to prove knowledge of a zero secret")
    public = G1.base_mul(secret)
    k = hash_to_scalar(frame(secret.to_bytes(), binding, rng(32)), DST_SCHNORR_NONCE)
    if k.is_zero():  # probability 2^-255; a zero nonce would reveal the secret
        k = Scalar.random(rng)
    r = G1.base_mul(k)
    c = _challenge(binding, public, r)
    return SchnorrProof(c=c, z=k + c * secret)


def is_valid_knowledge_proof(proof: SchnorrProof, public: G1, *, binding: bytes) -> bool:
    """True iff `proof` shows knowledge of log_G1(`public`) for the statement `binding`."""
    if public.is_identity():
        return False
    r = G1.base_mul(proof.z) - public * proof.c
    return _challenge(binding, public, r) == proof.c


def verify_knowledge_proof(proof: SchnorrProof, public: G1, *, binding: bytes) -> None:
    """Raise InvalidProof unless `proof` is valid (see `is_valid_knowledge_proof`)."""
    if not is_valid_knowledge_proof(proof, public, binding=binding):
        raise InvalidProof("Schnorr proof of knowledge does not verify")
