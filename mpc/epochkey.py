"""Per-epoch keys: what each participant of a DKG or reshare run posts in its Keys phase.

Every dealer and member of an epoch draws a fresh key for that epoch only (docs/mpc-dkg.md):

* x, X = x·G1: a static Diffie-Hellman key. Dealer i and member j share x_i·X_j = x_j·X_i,
  the classical half of the key that encrypts s_ij (`mpc.sharebox`).
* a Schnorr proof of knowledge of x bound to (session id, the participant's address). Without
  it a dealer could post X_i = X_d + a·G1 for an honest dealer d, and an honest member's
  complaint against it (which reveals x_j·X_i) would hand out x_j·X_d, the classical half of
  the honest pair (d, j).
* members only: an ML-KEM-768 key pair, the post-quantum half of the hybrid.

Public encoding: X (48) ‖ proof (64) [‖ ML-KEM-768 encapsulation key (1184)]: 112 bytes for a
dealer that is not a member, 1296 for a member. Private encoding: x (32) ‖ proof (64)
[‖ ML-KEM-768 seed (64)]. The proof is kept with the private key so the same public key can be
posted again after a restart. The private half lives only as long as its epoch: the node seals
it for restarts and erases it when the epoch ends, so the ciphertexts on chain (which stay
there forever) no longer open with anything a node holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import mlkem

from mpc.encoding import frame
from mpc.errors import EncodingError, ProtocolMisuse
from mpc.group import G1, G1_SIZE, SCALAR_SIZE, Rng, Scalar
from mpc.schnorr import PROOF_SIZE, SchnorrProof, is_valid_knowledge_proof, prove_knowledge
from mpc.session import ADDRESS_SIZE, SessionContext

_BINDING_LABEL: Final = b"tkms-epoch-key:v1"
KEM_PUBLIC_SIZE: Final = 1184
KEM_SEED_SIZE: Final = 64
DEALER_KEY_SIZE: Final = G1_SIZE + PROOF_SIZE
MEMBER_KEY_SIZE: Final = DEALER_KEY_SIZE + KEM_PUBLIC_SIZE
_PRIVATE_DEALER_SIZE: Final = SCALAR_SIZE + PROOF_SIZE
_PRIVATE_MEMBER_SIZE: Final = _PRIVATE_DEALER_SIZE + KEM_SEED_SIZE


def key_binding(session_id: bytes, address: bytes) -> bytes:
    """What the proof of knowledge of x is bound to: frame(label, session id, address)."""
    if len(address) != ADDRESS_SIZE:
        raise ProtocolMisuse(f"address must be {ADDRESS_SIZE} bytes, got {len(address)}")
    return frame(_BINDING_LABEL, session_id, address)


def _decode_kem(data: bytes, what: str) -> mlkem.MLKEM768PublicKey:
    try:
        kem = mlkem.MLKEM768PublicKey.from_public_bytes(data)
    except ValueError:
        raise EncodingError(what, "ML-KEM-768 part is not a valid encapsulation key") from None
    if kem.public_bytes_raw() != data:
        raise EncodingError(what, "ML-KEM-768 part is not canonical")
    return kem


class EpochPublicKey:
    """A participant's posted key: X, its proof, and (members) the ML-KEM key. Immutable."""

    __slots__ = ("_kem", "_proof", "_raw", "_x")

    def __init__(
        self, x: G1, proof: SchnorrProof, kem: mlkem.MLKEM768PublicKey | None, raw: bytes
    ) -> None:
        self._x, self._proof, self._kem, self._raw = x, proof, kem, raw

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "epoch key") -> EpochPublicKey:
        """Strictly decode 112 or 1296 bytes (X in the subgroup, not the identity)."""
        data = bytes(data)
        if len(data) not in (DEALER_KEY_SIZE, MEMBER_KEY_SIZE):
            raise EncodingError(
                what, f"expected {DEALER_KEY_SIZE} or {MEMBER_KEY_SIZE} bytes, got {len(data)}"
            )
        x = G1.from_bytes(data[:G1_SIZE], f"{what}: X")
        proof = SchnorrProof.from_bytes(data[G1_SIZE:DEALER_KEY_SIZE], f"{what}: proof")
        kem = _decode_kem(data[DEALER_KEY_SIZE:], what) if len(data) == MEMBER_KEY_SIZE else None
        return cls(x, proof, kem, data)

    @property
    def dh(self) -> G1:
        return self._x

    @property
    def kem(self) -> mlkem.MLKEM768PublicKey | None:
        return self._kem

    @property
    def kem_bytes(self) -> bytes:
        return self._raw[DEALER_KEY_SIZE:]

    def proves_possession(self, session_id: bytes, address: bytes) -> bool:
        """Whether the proof shows knowledge of x for this session and poster."""
        return is_valid_knowledge_proof(
            self._proof, self._x, binding=key_binding(session_id, address)
        )

    def to_bytes(self) -> bytes:
        return self._raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EpochPublicKey):
            return NotImplemented
        return self._raw == other._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        kind = "member" if self._kem is not None else "dealer"
        return f"EpochPublicKey({kind}, X={self._x!r})"


class EpochKeyPair:
    """Our key for one epoch. Secret: the repr hides it; bytes only via `private_bytes()`.

    Python cannot wipe memory: erasing it means deleting its sealed copy and dropping every
    reference to the object.
    """

    __slots__ = ("_kem", "_proof", "_public", "_x")

    def __init__(
        self, x: Scalar, proof: SchnorrProof, kem: mlkem.MLKEM768PrivateKey | None
    ) -> None:
        if x.is_zero():
            raise ProtocolMisuse("an epoch key cannot be zero")
        self._x, self._proof, self._kem = x, proof, kem
        kem_raw = kem.public_key().public_bytes_raw() if kem is not None else b""
        raw = G1.base_mul(x).to_bytes() + proof.to_bytes() + kem_raw
        self._public = EpochPublicKey.from_bytes(raw)

    @classmethod
    def generate(cls, session_id: bytes, address: bytes, *, member: bool, rng: Rng) -> EpochKeyPair:
        """A fresh key for the run `session_id`, posted by `address` (with ML-KEM if `member`)."""
        x = Scalar.random(rng)
        proof = prove_knowledge(x, binding=key_binding(session_id, address), rng=rng)
        kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(rng(KEM_SEED_SIZE)) if member else None
        return cls(x, proof, kem)

    @classmethod
    def from_private_bytes(cls, data: bytes, what: str = "epoch private key") -> EpochKeyPair:
        if len(data) not in (_PRIVATE_DEALER_SIZE, _PRIVATE_MEMBER_SIZE):
            raise EncodingError(
                what,
                f"expected {_PRIVATE_DEALER_SIZE} or {_PRIVATE_MEMBER_SIZE} bytes, got {len(data)}",
            )
        x = Scalar.from_bytes(bytes(data[:SCALAR_SIZE]), f"{what}: x", allow_zero=False)
        proof = SchnorrProof.from_bytes(
            bytes(data[SCALAR_SIZE:_PRIVATE_DEALER_SIZE]), f"{what}: proof"
        )
        kem = None
        if len(data) == _PRIVATE_MEMBER_SIZE:
            seed = bytes(data[_PRIVATE_DEALER_SIZE:])
            kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
        return cls(x, proof, kem)

    def private_bytes(self) -> bytes:
        """x ‖ proof [‖ ML-KEM seed]. Secret."""
        seed = self._kem.private_bytes_raw() if self._kem is not None else b""
        return self._x.to_bytes() + self._proof.to_bytes() + seed

    @property
    def public_key(self) -> EpochPublicKey:
        return self._public

    @property
    def secret(self) -> Scalar:
        return self._x

    @property
    def kem(self) -> mlkem.MLKEM768PrivateKey | None:
        return self._kem

    def __repr__(self) -> str:
        return f"EpochKeyPair(public={self._public!r}, <redacted>)"


@dataclass(frozen=True, slots=True)
class EpochKeys:
    """The keys on the board of one run, by dealer and by member index; None where unusable.

    A dealer key is usable if it decodes and its proof holds for the dealer's address; a
    member key also needs its ML-KEM part. `problems` says why each posted key was refused.
    """

    dealers: tuple[EpochPublicKey | None, ...]
    members: tuple[EpochPublicKey | None, ...]
    problems: tuple[str, ...] = ()

    @classmethod
    def from_posted(cls, context: SessionContext, posted: Mapping[bytes, bytes]) -> EpochKeys:
        """Decode what each address posted (strictly, with the proof checked)."""
        session_id = context.session_id
        dealer_addresses = context.previous.members if context.previous else context.members
        decoded: dict[bytes, EpochPublicKey | None] = {}
        problems: list[str] = []
        for address in dict.fromkeys((*dealer_addresses, *context.members)):
            raw = posted.get(address)
            if raw is None:
                decoded[address] = None
                continue
            try:
                key = EpochPublicKey.from_bytes(raw, f"epoch key of 0x{address.hex()}")
            except EncodingError as exc:
                problems.append(str(exc))
                decoded[address] = None
                continue
            if not key.proves_possession(session_id, address):
                problems.append(f"epoch key of 0x{address.hex()}: proof of knowledge fails")
                decoded[address] = None
                continue
            decoded[address] = key
        members: list[EpochPublicKey | None] = []
        for address in context.members:
            usable = decoded[address]
            if usable is not None and usable.kem is None:
                problems.append(f"epoch key of member 0x{address.hex()} has no ML-KEM key")
                usable = None
            members.append(usable)
        return cls(
            dealers=tuple(decoded[a] for a in dealer_addresses),
            members=tuple(members),
            problems=tuple(problems),
        )

    def dealer(self, index: int) -> EpochPublicKey | None:
        return self.dealers[index - 1] if 1 <= index <= len(self.dealers) else None

    def member(self, index: int) -> EpochPublicKey | None:
        return self.members[index - 1] if 1 <= index <= len(self.members) else None

    def check(self, context: SessionContext) -> None:
        """Raise ProtocolMisuse unless the lists fit `context` (a caller's bug)."""
        if len(self.members) != context.n or len(self.dealers) != context.dealer_count:
            raise ProtocolMisuse(
                f"need keys for {context.dealer_count} dealers and {context.n} members, got "
                f"{len(self.dealers)} and {len(self.members)}"
            )
