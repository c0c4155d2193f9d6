"""Coordinator-free, verifiable, encrypted key derivation for apps (design §3.4).

The app makes an ephemeral key pair (a, E = a·G1) and asks every node for a partial of the
same request. Node i computes H = hash_to_G1(dst, message), sigma_i = x_i·H, a DLEQ proof
that log_G1(V_i) == log_H(sigma_i), and ElGamal-encrypts sigma_i to E: Y = y·G1,
Z = sigma_i + y·E. The app decrypts sigma_i = Z - a·Y, verifies the proof against V_i from
chain data, and combines any t valid partials with Lagrange coefficients into
sigma = x·H, where x is the group secret nobody holds. A relay sees only ciphertexts; a
wrong partial fails its proof and names its node.

Verifying t proofs costs the app about as much as the nodes spend making them, so an app may
combine optimistically, as drand's clients do (`mpc._combiner.Combiner`): decrypt and combine
the t partials in one multi-scalar multiplication (`combine_unchecked`) and check the result
once against PK2 with a pairing equation, e(sigma, G2) == e(H, PK2)
(`are_consistent_with_group_key`). Only when that fails does it open each partial with its
proof (`open_partial`) to name the liar. Either way nothing unverified is returned: a
combination that passes the pairing check is x·H, whoever sent what.

The same partials serve identity-based encryption keys (dst = DST_IBE, message = app_id).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from mpc._fixedbase import PreparedPoint
from mpc._lagrange import integer_lagrange_at_zero, small_combination
from mpc.dleq import (
    PROOF_SIZE,
    DleqProof,
    DleqStatement,
    EncodedDleqProof,
    prove_dleq,
)
from mpc.dst import DST_IBE, DST_KDF, DST_KMS_ROOT
from mpc.encoding import frame
from mpc.errors import (
    EncodingError,
    InvalidPartial,
    NotEnoughShares,
    ProtocolMisuse,
)
from mpc.group import (
    G1,
    G1_SIZE,
    G2,
    Rng,
    Scalar,
    hash_to_g1_point,
    pairing_product_is_one,
)
from mpc.sharing import Share, lagrange_coefficients_at_zero
from mpc.types import Epoch, Generation, MemberIndex

_PARTIAL_LABEL = b"tkms-partial:v1"


class KeyKind(enum.IntEnum):
    """What a derived sigma is for; each kind hashes to G1 under its own DST."""

    KDF = 1
    IBE = 2
    #: The generation's KMS root (`mpc.kmsroot`): asked for only by committee nodes over
    #: the peer channel, never accepted in an app's request.
    KMS_ROOT = 3

    @property
    def dst(self) -> bytes:
        return _DSTS[self]


_DSTS: Final = {KeyKind.KDF: DST_KDF, KeyKind.IBE: DST_IBE, KeyKind.KMS_ROOT: DST_KMS_ROOT}


def kdf_message(app_id: bytes, purpose: bytes) -> bytes:
    """msg = encode(app_id, purpose) for app key derivation."""
    return frame(b"tkms-kdf-msg:v1", app_id, purpose)


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """One key an app asks for: `kind` selects the DST, `message` is what gets hashed."""

    kind: KeyKind
    message: bytes
    _point: list[G1] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def app_key(cls, app_id: bytes, purpose: bytes) -> KeyRequest:
        return cls(KeyKind.KDF, kdf_message(app_id, purpose))

    @classmethod
    def ibe_key(cls, app_id: bytes) -> KeyRequest:
        return cls(KeyKind.IBE, app_id)

    def point(self) -> G1:
        """H = hash_to_G1(dst, message), computed once per request object."""
        if not self._point:
            self._point.append(hash_to_g1_point(self.message, self.kind.dst))
        return self._point[0]


@dataclass(frozen=True, slots=True)
class NetworkContext:
    """Which network, key generation and committee epoch a partial belongs to."""

    chain_id: int
    contract: bytes
    generation: Generation
    epoch: Epoch

    def __post_init__(self) -> None:
        if len(self.contract) != 20:
            raise ProtocolMisuse(f"contract address must be 20 bytes, got {len(self.contract)}")


def _proof_context(
    network: NetworkContext, member: int, requester: bytes, request: KeyRequest
) -> bytes:
    return frame(
        _PARTIAL_LABEL,
        network.chain_id.to_bytes(32, "big"),
        network.contract,
        network.generation.to_bytes(8, "big"),
        network.epoch.to_bytes(8, "big"),
        member.to_bytes(4, "big"),
        requester,
        request.kind.dst,
        request.message,
    )


@dataclass(frozen=True, slots=True)
class EphemeralKey:
    """The requester's ElGamal key pair (a, E = a·G1). Secret: its repr hides `a`."""

    secret: Scalar
    public: G1

    @classmethod
    def generate(cls, rng: Rng) -> EphemeralKey:
        a = Scalar.random(rng)
        return cls(secret=a, public=G1.base_mul(a))

    def __repr__(self) -> str:
        return f"EphemeralKey(public={self.public!r}, <redacted>)"


_PARTIAL_SIZE = 8 + 8 + 4 + 2 * G1_SIZE + PROOF_SIZE


@dataclass(frozen=True, slots=True)
class EncryptedPartial:
    """A node's answer for one key request: (generation, epoch, member, Y, Z, proof).

    The proof may still be encoded (`EncodedDleqProof`, see `from_bytes`): its points are
    then decoded, strictly, by `decrypt_partial` before it is verified."""

    generation: Generation
    epoch: Epoch
    member: MemberIndex
    y: G1
    z: G1
    proof: DleqProof | EncodedDleqProof

    def to_bytes(self) -> bytes:
        return (
            self.generation.to_bytes(8, "big")
            + self.epoch.to_bytes(8, "big")
            + self.member.to_bytes(4, "big")
            + self.y.to_bytes()
            + self.z.to_bytes()
            + self.proof.to_bytes()
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, what: str = "partial", *, defer_proof: bool = False
    ) -> EncryptedPartial:
        """Strict; with `defer_proof` the proof's points are checked only when it is used."""
        if len(data) != _PARTIAL_SIZE:
            raise EncodingError(what, f"expected {_PARTIAL_SIZE} bytes, got {len(data)}")
        member = int.from_bytes(data[16:20], "big")
        if member == 0:
            raise EncodingError(what, "member index 0 is not valid")
        y_end = 20 + G1_SIZE
        z_end = y_end + G1_SIZE
        return cls(
            generation=Generation(int.from_bytes(data[0:8], "big")),
            epoch=Epoch(int.from_bytes(data[8:16], "big")),
            member=MemberIndex(member),
            y=G1.from_bytes(data[20:y_end], f"{what} Y"),
            z=G1.from_bytes(data[y_end:z_end], f"{what} Z"),
            proof=(
                EncodedDleqProof.from_bytes(data[z_end:], f"{what} proof")
                if defer_proof
                else DleqProof.from_bytes(data[z_end:], f"{what} proof")
            ),
        )


@dataclass(frozen=True, slots=True)
class VerifiedPartial:
    """A decrypted partial sigma_i = x_i·H whose DLEQ proof verified."""

    member: MemberIndex
    sigma: G1


def derive_partial(
    share: Share,
    request: KeyRequest,
    *,
    requester: G1 | PreparedPoint,
    network: NetworkContext,
    rng: Rng,
    verification_key: G1 | None = None,
) -> EncryptedPartial:
    """Node side: compute, prove and encrypt sigma_i for `request` to `requester` (E).

    A node that serves many requests for one E passes it as a `PreparedPoint`, so E is
    encoded once and y·E goes through a window table.
    """
    if isinstance(requester, PreparedPoint):
        prepared = requester
    else:
        prepared = PreparedPoint(requester, table_after=None)
    if prepared.point.is_identity():
        raise ProtocolMisuse("the requester key must not be the identity")
    h = request.point()
    x = share.value
    vk = verification_key if verification_key is not None else G1.base_mul(x)
    sigma = h * x
    context = _proof_context(network, share.member, prepared.encoded, request)
    proof = prove_dleq(x, h, vk=vk, sigma=sigma, context=context, rng=rng)
    y = Scalar.random(rng)
    return EncryptedPartial(
        generation=network.generation,
        epoch=network.epoch,
        member=share.member,
        y=G1.base_mul(y),
        z=sigma + prepared.mul(y),
        proof=proof,
    )


def _check_network(partial: EncryptedPartial, network: NetworkContext) -> None:
    if partial.generation != network.generation or partial.epoch != network.epoch:
        raise InvalidPartial(
            partial.member,
            f"for generation {partial.generation} epoch {partial.epoch}, "
            f"expected generation {network.generation} epoch {network.epoch}",
        )


#: Why a partial whose DLEQ proof fails is refused.
BAD_PARTIAL_PROOF: Final = "DLEQ proof does not verify against its key"


def open_partial(
    partial: EncryptedPartial,
    request: KeyRequest,
    *,
    ephemeral: EphemeralKey,
    verification_key: G1,
    network: NetworkContext,
) -> VerifiedPartial:
    """App side: decrypt a partial and verify its proof; InvalidPartial names the member."""
    opened, statement = decrypt_partial(
        partial, request, ephemeral=ephemeral, verification_key=verification_key, network=network
    )
    if not statement.holds():
        raise InvalidPartial(partial.member, BAD_PARTIAL_PROOF)
    return opened


def decrypt_partial(
    partial: EncryptedPartial,
    request: KeyRequest,
    *,
    ephemeral: EphemeralKey,
    verification_key: G1,
    network: NetworkContext,
) -> tuple[VerifiedPartial, DleqStatement]:
    """Decrypt a partial WITHOUT checking its proof: the returned partial counts as verified
    only once its statement does (`open_partial` one at a time, `mpc.dleq.invalid_dleqs` for
    several at once). InvalidPartial names the member for a wrong generation or epoch."""
    _check_network(partial, network)
    proof = partial.proof
    if isinstance(proof, EncodedDleqProof):
        try:
            proof = proof.decode()
        except EncodingError as exc:
            raise InvalidPartial(partial.member, f"malformed proof: {exc}") from None
    sigma = partial.z - partial.y * ephemeral.secret
    context = _proof_context(network, partial.member, ephemeral.public.to_bytes(), request)
    statement = DleqStatement(proof, request.point(), verification_key, sigma, context)
    return VerifiedPartial(member=partial.member, sigma=sigma), statement


def combine_partials(partials: Sequence[VerifiedPartial], threshold: int) -> G1:
    """sigma = Σ λ_i·sigma_i over the first `threshold` partials (distinct members)."""
    unique: dict[int, G1] = {}
    for p in partials:
        unique.setdefault(p.member, p.sigma)
    if len(unique) < threshold:
        raise NotEnoughShares(len(unique), threshold, "too few distinct valid partials")
    members = list(unique)[:threshold]
    lambdas = lagrange_coefficients_at_zero(members)
    return G1.msm([unique[m] for m in members], [lambdas[m] for m in members])


def is_consistent_with_group_key(sigma: G1, request: KeyRequest, group_key: G2) -> bool:
    """e(sigma, G2) == e(H, PK2): the combined value is x·H for the network's key."""
    return pairing_product_is_one([(sigma, G2.generator()), (-request.point(), group_key)])


def combine_unchecked(
    answers: Mapping[int, Sequence[EncryptedPartial]],
    requests: Sequence[KeyRequest],
    *,
    ephemeral: EphemeralKey,
    network: NetworkContext,
) -> list[G1]:
    """UNVERIFIED sigma_k = Σ λ_i·(Z_ik - a·Y_ik) over the members in `answers`, per request.

    `answers` maps each of t members to its partials, one per request, in order. Each key is
    one multi-scalar multiplication of the 2t points. Nothing here says the result is right:
    check it with `are_consistent_with_group_key` (or open each partial) before any use.
    Raises InvalidPartial for an answer of the wrong shape, member or epoch.
    """
    members = list(answers)
    if not members:
        raise ProtocolMisuse("combining needs at least one member's partials")
    for member, partials in answers.items():
        if len(partials) != len(requests):
            raise InvalidPartial(member, f"{len(partials)} partials for {len(requests)} keys")
        for p in partials:
            if p.member != member:
                raise InvalidPartial(member, f"answered as member {p.member}")
            _check_network(p, network)
    small = integer_lagrange_at_zero(members)
    sigmas = []
    if small is not None:
        # λ_i = μ_i / d with small integers: sigma = d⁻¹·Σ μ_i·Z_i - (a·d⁻¹)·Σ μ_i·Y_i.
        mus, d = small
        inverse = Scalar(1) if d == 1 else Scalar(d).inverse()
        for k in range(len(requests)):
            zs = small_combination([answers[m][k].z for m in members], mus)
            ys = small_combination([answers[m][k].y for m in members], mus)
            masked = zs if d == 1 else zs * inverse
            sigmas.append(masked - ys * (ephemeral.secret * inverse))
        return sigmas
    lambdas = lagrange_coefficients_at_zero(members)
    unmask = [-(ephemeral.secret * lambdas[m]) for m in members]
    for k in range(len(requests)):
        points = [answers[m][k].z for m in members] + [answers[m][k].y for m in members]
        sigmas.append(G1.msm(points, [lambdas[m] for m in members] + unmask))
    return sigmas


def are_consistent_with_group_key(
    sigmas: Sequence[G1], requests: Sequence[KeyRequest], group_key: G2, *, rng: Rng
) -> bool:
    """True iff every sigma_k == x·H_k for the network's key, checked in one pairing equation.

    A wrong sigma_k = x·H_k + Δ_k passes only if Σ w_k·Δ_k == 0 for weights the nodes cannot
    predict: probability below 2^-127 for 128-bit w_k.
    """
    if len(sigmas) != len(requests):
        raise ProtocolMisuse(f"{len(sigmas)} sigmas for {len(requests)} requests")
    if len(sigmas) == 1:
        return is_consistent_with_group_key(sigmas[0], requests[0], group_key)
    weights = [Scalar(int.from_bytes(rng(16), "big") | 1) for _ in sigmas]
    sigma = G1.msm(list(sigmas), weights)
    h = G1.msm([r.point() for r in requests], weights)
    return pairing_product_is_one([(sigma, G2.generator()), (-h, group_key)])
