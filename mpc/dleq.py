"""Chaum-Pedersen proofs of discrete-log equality in G1, made non-interactive by Fiat-Shamir.

`prove_dleq` shows log_G1(vk) == log_H(sigma) without revealing the exponent: a node uses it
to prove that its partial sigma_i = x_i·H was computed with the same x_i as its public
verification key V_i = x_i·G1. The challenge hashes a caller-supplied `context` (which binds
protocol, epoch, member and request) together with every group element involved.

Two encodings (design §3.4):

* `DleqProof`, the commitment form (v2), for partials: k random, A1 = k·G1, A2 = k·H,
  c = challenge(context, G1, H, vk, sigma, A1, A2), z = k + c·x; the proof is (A1, A2, z).
  Verification checks z·G1 == A1 + c·vk and z·H == A2 + c·sigma. Because the commitments
  travel with the proof, n proofs are checked together (`verify_dleq_batch`) with one
  multi-scalar multiplication: random 128-bit weights r_i, s_i and
  Σ r_i·(z_i·G1 - A1_i - c_i·vk_i) + s_i·(z_i·H_i - A2_i - c_i·sigma_i) == O.
* `CompactDleqProof`, the challenge form (c, z) of v1, 64 bytes, only for the DKG complaint
  reveal: it sits in a fixed 112-byte on-chain field and complaints are judged one by one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from mpc.encoding import CHALLENGE_RESPONSE_SIZE, challenge, decode_challenge_response
from mpc.errors import EncodingError, InvalidProof
from mpc.group import G1, G1_SIZE, SCALAR_SIZE, Rng, Scalar

_LABEL: Final = b"tkms-dleq:v2"
_COMPACT_LABEL: Final = b"tkms-dleq:v1"
#: First byte of an encoded `DleqProof`.
PROOF_VERSION: Final = 2
#: version (1) || A1 (48) || A2 (48) || z (32).
PROOF_SIZE: Final = 1 + 2 * G1_SIZE + SCALAR_SIZE
COMPACT_PROOF_SIZE: Final = CHALLENGE_RESPONSE_SIZE
_G1_GENERATOR: Final = G1.generator().to_bytes()
_A2_START: Final = 1 + G1_SIZE
_Z_START: Final = _A2_START + G1_SIZE
#: Bytes per batch weight: a wrong proof survives a batch with probability below 2^-127.
_WEIGHT_BYTES: Final = 16


@dataclass(frozen=True, slots=True)
class DleqProof:
    """A DLEQ proof in commitment form (A1, A2, z), 129 bytes with its version byte."""

    a1: G1
    a2: G1
    z: Scalar

    def to_bytes(self) -> bytes:
        return bytes([PROOF_VERSION]) + self.a1.to_bytes() + self.a2.to_bytes() + self.z.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "DLEQ proof") -> DleqProof:
        """Strict: exact size, known version, A1 and A2 in G1's subgroup and not the
        identity, z canonical; EncodingError names the field."""
        return EncodedDleqProof.from_bytes(data, what).decode()

    def __repr__(self) -> str:
        return f"DleqProof({self.to_bytes().hex()[2:18]}…)"


@dataclass(frozen=True, slots=True)
class EncodedDleqProof:
    """A proof whose size, version and z are checked but whose points are not decoded yet.

    A client that checks the combined key first never looks at the proofs of honest answers,
    so it does not pay the subgroup checks of A1 and A2 (0.4 units each) until `decode`,
    which runs them (strictly, naming the field) before any verification.
    """

    data: bytes
    what: str = "DLEQ proof"

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "DLEQ proof") -> EncodedDleqProof:
        if len(data) != PROOF_SIZE:
            raise EncodingError(what, f"expected {PROOF_SIZE} bytes, got {len(data)}")
        if data[0] != PROOF_VERSION:
            raise EncodingError(
                f"{what} version", f"expected {PROOF_VERSION}, got {data[0]} (unknown format)"
            )
        Scalar.from_bytes(data[_Z_START:], f"{what} z")
        return cls(bytes(data), what)

    def to_bytes(self) -> bytes:
        return self.data

    def decode(self) -> DleqProof:
        """The proof with A1 and A2 decoded: on the curve, in the subgroup, not the identity."""
        d, what = self.data, self.what
        return DleqProof(
            a1=G1.from_bytes(d[1:_A2_START], f"{what} A1"),
            a2=G1.from_bytes(d[_A2_START:_Z_START], f"{what} A2"),
            z=Scalar.from_bytes(d[_Z_START:], f"{what} z"),
        )


@dataclass(frozen=True, slots=True)
class DleqStatement:
    """What one proof claims: log_G1(vk) == log_h(sigma), bound to `context`."""

    proof: DleqProof
    h: G1
    vk: G1
    sigma: G1
    context: bytes

    def challenge(self) -> Scalar:
        p = self.proof
        return challenge(
            _LABEL,
            self.context,
            _G1_GENERATOR,
            self.h.to_bytes(),
            self.vk.to_bytes(),
            self.sigma.to_bytes(),
            p.a1.to_bytes(),
            p.a2.to_bytes(),
        )

    def holds(self) -> bool:
        """True iff the proof shows log_G1(vk) == log_h(sigma) for this context."""
        neg_c = -self.challenge()
        p = self.proof
        # Two products each rather than a 2-point MSM: with blst on, two blst multiplications
        # are cheaper than arkworks' MSM (and the points are usually in blst already).
        return (
            G1.base_mul(p.z) + self.vk * neg_c == p.a1 and self.h * p.z + self.sigma * neg_c == p.a2
        )


def prove_dleq(x: Scalar, h: G1, *, vk: G1, sigma: G1, context: bytes, rng: Rng) -> DleqProof:
    """Prove log_G1(vk) == log_h(sigma) == x."""
    k = Scalar.random(rng)
    a1, a2 = G1.base_mul(k), h * k
    c = DleqStatement(DleqProof(a1, a2, Scalar(0)), h, vk, sigma, context).challenge()
    return DleqProof(a1=a1, a2=a2, z=k + c * x)


def is_valid_dleq(proof: DleqProof, h: G1, *, vk: G1, sigma: G1, context: bytes) -> bool:
    """True iff `proof` shows log_G1(vk) == log_h(sigma) for this `context`."""
    return DleqStatement(proof, h, vk, sigma, context).holds()


def verify_dleq(proof: DleqProof, h: G1, *, vk: G1, sigma: G1, context: bytes) -> None:
    """Raise InvalidProof unless `proof` is valid (see `is_valid_dleq`)."""
    if not is_valid_dleq(proof, h, vk=vk, sigma=sigma, context=context):
        raise InvalidProof("DLEQ proof does not verify")


def _weight(rng: Rng) -> Scalar:
    # Odd, so never zero: 127 random bits, a wrong proof passes with probability <= 2^-127.
    return Scalar(int.from_bytes(rng(_WEIGHT_BYTES), "big") | 1)


def verify_dleq_batch(items: Sequence[DleqStatement], rng: Rng = os.urandom) -> bool:
    """True only if every proof in `items` verifies, checked in one multi-scalar multiplication.

    `rng` must be unpredictable to the provers (os.urandom): a prover who knew the weights
    could make two wrong proofs cancel. Every point must come from a strict decoder (in the
    prime-order subgroup), which is what makes one random combination enough.
    """
    if not items:
        return True
    if len(items) == 1:
        return items[0].holds()
    points: list[G1] = [G1.generator()]
    scalars: list[Scalar] = [Scalar(0)]
    # One term per distinct base object: a derivation's t statements share H (and a
    # member's statements share V_i), so those scalars are summed, not multiplied twice.
    slot: dict[int, int] = {}

    def add(point: G1, scalar: Scalar) -> None:
        i = slot.setdefault(id(point), len(points))
        if i == len(points):
            points.append(point)
            scalars.append(scalar)
        else:
            scalars[i] = scalars[i] + scalar

    for s in items:
        c = s.challenge()
        rho, tau = _weight(rng), _weight(rng)
        scalars[0] = scalars[0] + rho * s.proof.z
        add(s.proof.a1, -rho)
        add(s.vk, -(rho * c))
        add(s.h, tau * s.proof.z)
        add(s.proof.a2, -tau)
        add(s.sigma, -(tau * c))
    return G1.msm(points, scalars).is_identity()


def invalid_dleqs(items: Sequence[DleqStatement], rng: Rng = os.urandom) -> list[int]:
    """Positions of the proofs in `items` that do not verify ([] if all do).

    The batch check runs first; only when it fails is each proof checked on its own, so
    every bad one is named.
    """
    if verify_dleq_batch(items, rng):
        return []
    return [i for i, s in enumerate(items) if not s.holds()]


@dataclass(frozen=True, slots=True)
class CompactDleqProof:
    """A DLEQ proof in challenge form (c, z), 64 bytes (v1; the DKG complaint reveal only)."""

    c: Scalar
    z: Scalar

    def to_bytes(self) -> bytes:
        return self.c.to_bytes() + self.z.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "DLEQ proof") -> CompactDleqProof:
        c, z = decode_challenge_response(data, what)
        return cls(c=c, z=z)

    def __repr__(self) -> str:
        return f"CompactDleqProof({self.to_bytes().hex()[:16]}…)"


def _compact_challenge(context: bytes, vk: G1, h: G1, sigma: G1, r1: G1, r2: G1) -> Scalar:
    parts = (vk, h, sigma, r1, r2)
    return challenge(_COMPACT_LABEL, context, *(p.to_bytes() for p in parts))


def prove_compact_dleq(
    x: Scalar, h: G1, *, vk: G1, sigma: G1, context: bytes, rng: Rng
) -> CompactDleqProof:
    """Prove log_G1(vk) == log_h(sigma) == x in the 64-byte (c, z) form."""
    k = Scalar.random(rng)
    c = _compact_challenge(context, vk, h, sigma, G1.base_mul(k), h * k)
    return CompactDleqProof(c=c, z=k + c * x)


def is_valid_compact_dleq(
    proof: CompactDleqProof, h: G1, *, vk: G1, sigma: G1, context: bytes
) -> bool:
    """True iff `proof` shows log_G1(vk) == log_h(sigma) for this `context`."""
    neg_c = -proof.c
    r1 = G1.base_mul(proof.z) + vk * neg_c
    r2 = G1.msm([h, sigma], [proof.z, neg_c])
    return _compact_challenge(context, vk, h, sigma, r1, r2) == proof.c
