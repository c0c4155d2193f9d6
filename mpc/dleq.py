"""Chaum-Pedersen proofs of discrete-log equality in G1, made non-interactive by Fiat-Shamir.

`prove_dleq` shows log_G1(vk) == log_H(sigma) without revealing the exponent: a node uses it
to prove that its partial sigma_i = x_i·H was computed with the same x_i as its public
verification key V_i = x_i·G1. The challenge hashes a caller-supplied `context` (which binds
protocol, epoch, member and request) together with every group element involved.

Proof: k random, R1 = k·G1, R2 = k·H, c = challenge(context, vk, H, sigma, R1, R2),
z = k + c·x. Verification recomputes R1 = z·G1 - c·vk and R2 = z·H - c·sigma.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpc.encoding import CHALLENGE_RESPONSE_SIZE, challenge, decode_challenge_response
from mpc.errors import InvalidProof
from mpc.group import G1, Rng, Scalar

_LABEL = b"tkms-dleq:v1"
PROOF_SIZE = CHALLENGE_RESPONSE_SIZE


@dataclass(frozen=True, slots=True)
class DleqProof:
    """A DLEQ proof (c, z), 64 bytes."""

    c: Scalar
    z: Scalar

    def to_bytes(self) -> bytes:
        return self.c.to_bytes() + self.z.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "DLEQ proof") -> DleqProof:
        c, z = decode_challenge_response(data, what)
        return cls(c=c, z=z)

    def __repr__(self) -> str:
        return f"DleqProof({self.to_bytes().hex()[:16]}…)"


def _challenge(context: bytes, vk: G1, h: G1, sigma: G1, r1: G1, r2: G1) -> Scalar:
    return challenge(
        _LABEL,
        context,
        vk.to_bytes(),
        h.to_bytes(),
        sigma.to_bytes(),
        r1.to_bytes(),
        r2.to_bytes(),
    )


def prove_dleq(x: Scalar, h: G1, *, vk: G1, sigma: G1, context: bytes, rng: Rng) -> DleqProof:
    """Prove log_G1(vk) == log_h(sigma) == x."""
    k = Scalar.random(rng)
    r1 = G1.base_mul(k)
    r2 = h * k
    c = _challenge(context, vk, h, sigma, r1, r2)
    return DleqProof(c=c, z=k + c * x)


def is_valid_dleq(proof: DleqProof, h: G1, *, vk: G1, sigma: G1, context: bytes) -> bool:
    """True iff `proof` shows log_G1(vk) == log_h(sigma) for this `context`."""
    neg_c = -proof.c
    r1 = G1.base_mul(proof.z) + vk * neg_c
    r2 = G1.msm([h, sigma], [proof.z, neg_c])
    return _challenge(context, vk, h, sigma, r1, r2) == proof.c


def verify_dleq(proof: DleqProof, h: G1, *, vk: G1, sigma: G1, context: bytes) -> None:
    """Raise InvalidProof unless `proof` is valid (see `is_valid_dleq`)."""
    if not is_valid_dleq(proof, h, vk=vk, sigma=sigma, context=context):
        raise InvalidProof("DLEQ proof does not verify")
