"""The context of one DKG or reshare run, bound into every message of that run.

A `SessionContext` states everything the members must agree on before the run starts: chain
id, governance contract, epoch, kind, key generation, threshold and the ordered member list
(member k has index k). A reshare or refresh also states the previous committee explicitly:
its members, its threshold and its public polynomial and PK2. The old threshold is never taken
from a dealer's message: stating it here is what stops a downgrade (kyber's `OldThreshold`).

`session_id` = SHA-256(frame(b"tkms-session:v1", to_bytes())) is carried by every message; a
message with another session id comes from another run and is recorded as a fault.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Final

from mpc.encoding import frame, unframe
from mpc.errors import EncodingError, ProtocolMisuse
from mpc.group import G1, G2, G2_SIZE, pairing_product_is_one
from mpc.sharing import PublicPolynomial
from mpc.types import Epoch, Generation

ADDRESS_SIZE: Final = 20
SESSION_ID_SIZE: Final = 32
MAX_MEMBERS: Final = 0xFFFF
_SESSION_LABEL: Final = b"tkms-session:v1"


class SessionKind(enum.IntEnum):
    """What a run produces. The value is its one-byte encoding."""

    DKG = 1  # a fresh key: starts generation g (rotation)
    RESHARE = 2  # same key, new committee and/or threshold
    REFRESH = 3  # same key, same committee and threshold, every share changes


def _check_members(name: str, members: tuple[bytes, ...], threshold: int) -> None:
    if not members:
        raise ProtocolMisuse(f"{name}: the member list is empty")
    if len(members) > MAX_MEMBERS:
        raise ProtocolMisuse(f"{name}: at most {MAX_MEMBERS} members, got {len(members)}")
    for k, m in enumerate(members, start=1):
        if not isinstance(m, bytes) or len(m) != ADDRESS_SIZE:
            raise ProtocolMisuse(f"{name}[{k}] must be a {ADDRESS_SIZE}-byte address")
    if len(set(members)) != len(members):
        raise ProtocolMisuse(f"{name}: duplicate member addresses")
    if not 1 <= threshold <= len(members):
        raise ProtocolMisuse(f"threshold {threshold} outside 1..{len(members)} for {name}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousCommittee:
    """The committee a reshare starts from, as recorded on chain when it was activated."""

    members: tuple[bytes, ...]
    threshold: int
    public: PublicPolynomial  # A_0..A_{t-1} of the old committee; A_0 is PK1
    pk2: G2

    def __post_init__(self) -> None:
        _check_members("previous.members", self.members, self.threshold)
        if self.public.threshold != self.threshold:
            raise ProtocolMisuse(
                f"previous committee: threshold {self.threshold} but the public polynomial "
                f"has {self.public.threshold} commitments"
            )
        # Governance data that contradicts itself must stop the run before anyone deals.
        if not pairing_product_is_one(
            [(self.public.public_key, G2.generator()), (-G1.generator(), self.pk2)]
        ):
            raise ProtocolMisuse("previous committee: PK2 does not match A_0")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionContext:
    """Everything bound into a run; see the module docstring."""

    chain_id: int
    contract: bytes
    epoch: Epoch
    kind: SessionKind
    generation: Generation
    threshold: int
    members: tuple[bytes, ...]
    previous: PreviousCommittee | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.chain_id < 1 << 64:
            raise ProtocolMisuse(f"chain id must fit in 64 bits, got {self.chain_id}")
        if not isinstance(self.contract, bytes) or len(self.contract) != ADDRESS_SIZE:
            raise ProtocolMisuse("contract must be a 20-byte address")
        for name, value in (("epoch", self.epoch), ("generation", self.generation)):
            if not 0 <= value < 1 << 64:
                raise ProtocolMisuse(f"{name} must fit in 64 bits, got {value}")
        if not isinstance(self.kind, SessionKind):
            raise ProtocolMisuse(f"kind must be a SessionKind, got {self.kind!r}")
        _check_members("members", self.members, self.threshold)
        if self.kind is SessionKind.DKG and self.previous is not None:
            raise ProtocolMisuse("a DKG has no previous committee")
        if self.kind is not SessionKind.DKG and self.previous is None:
            raise ProtocolMisuse(f"a {self.kind.name} needs the previous committee")
        old = (self.previous.members, self.previous.threshold) if self.previous else None
        if self.kind is SessionKind.REFRESH and old != (self.members, self.threshold):
            raise ProtocolMisuse("a REFRESH keeps the committee and threshold unchanged")

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def dealer_count(self) -> int:
        """How many members deal: the previous committee in a reshare, else this one."""
        return len(self.previous.members) if self.previous is not None else self.n

    def to_bytes(self) -> bytes:
        """Canonical encoding (see docs/mpc-dkg.md); `from_bytes` inverts it strictly."""
        parts = [
            self.chain_id.to_bytes(8, "big"),
            self.contract,
            self.epoch.to_bytes(8, "big"),
            bytes([self.kind]),
            self.generation.to_bytes(8, "big"),
            self.threshold.to_bytes(2, "big"),
            b"".join(self.members),
        ]
        if self.previous is not None:
            parts += [
                self.previous.threshold.to_bytes(2, "big"),
                b"".join(self.previous.members),
                self.previous.public.to_bytes(),
                self.previous.pk2.to_bytes(),
            ]
        return frame(*parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionContext:
        parts = unframe(data, "session context")
        if len(parts) not in (7, 11):
            raise EncodingError("session context", f"expected 7 or 11 parts, got {len(parts)}")
        sizes = (8, ADDRESS_SIZE, 8, 1, 8, 2)
        for k, (part, size) in enumerate(zip(parts, sizes, strict=False)):
            if len(part) != size:
                raise EncodingError(f"session context part {k}", f"expected {size} bytes")
        try:
            kind = SessionKind(parts[3][0])
        except ValueError:
            raise EncodingError("session context kind", f"unknown kind {parts[3][0]}") from None
        previous = None
        if len(parts) == 11:
            old_t = int.from_bytes(_exact(parts[7], 2, "previous threshold"), "big")
            if old_t == 0:
                raise EncodingError("previous threshold", "must be >= 1")
            previous = PreviousCommittee(
                members=_addresses(parts[8], "previous members"),
                threshold=old_t,
                public=PublicPolynomial.from_bytes(parts[9], old_t, "previous public polynomial"),
                pk2=G2.from_bytes(_exact(parts[10], G2_SIZE, "previous PK2"), "previous PK2"),
            )
        try:
            return cls(
                chain_id=int.from_bytes(parts[0], "big"),
                contract=parts[1],
                epoch=Epoch(int.from_bytes(parts[2], "big")),
                kind=kind,
                generation=Generation(int.from_bytes(parts[4], "big")),
                threshold=int.from_bytes(parts[5], "big"),
                members=_addresses(parts[6], "members"),
                previous=previous,
            )
        except ProtocolMisuse as exc:
            raise EncodingError("session context", str(exc)) from None

    @property
    def session_id(self) -> bytes:
        return compute_session_id(self)


def compute_session_id(context: SessionContext) -> bytes:
    """SHA-256(frame(b"tkms-session:v1", context.to_bytes())): 32 bytes."""
    return hashlib.sha256(frame(_SESSION_LABEL, context.to_bytes())).digest()


def _exact(part: bytes, size: int, what: str) -> bytes:
    if len(part) != size:
        raise EncodingError(what, f"expected {size} bytes, got {len(part)}")
    return part


def _addresses(blob: bytes, what: str) -> tuple[bytes, ...]:
    if not blob or len(blob) % ADDRESS_SIZE:
        raise EncodingError(what, f"length {len(blob)} is not a positive multiple of 20")
    return tuple(blob[k : k + ADDRESS_SIZE] for k in range(0, len(blob), ADDRESS_SIZE))
