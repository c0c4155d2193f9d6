"""The messages of a DKG or reshare run and their canonical byte encodings.

Every message starts with a version byte (1), a type byte and the 32-byte session id of its
run (`mpc.session`), so nothing replays across chains, contracts, epochs or committees.
Indices are u16 big-endian and 1-based; scalars and points use the encodings of `mpc.group`.

    DealPublic      01 01 sid dealer:u16 count:u16 C_0..C_{count-1} (48 B each)
                    P (96 B) proof (64 B: c, z)
    ShareBundle     01 02 sid dealer:u16 count:u16, then per member 1..count:
                    00 (no share: the member has no usable key) or 01 sealed share (1136 B)
    Complaint       01 03 sid accuser:u16 dealer:u16 ss_dh (48 B) DLEQ proof (64 B)
    Justification   01 04 sid dealer:u16 accuser:u16 ss_kem (32 B)
    Confirmation    01 05 sid member:u16 digest (32 B)

A complaint reveals only the accuser's Diffie-Hellman secret of that one pair and a
justification only the dealer's ML-KEM secret of that pair (`mpc.sharebox`): no message ever
carries a share in the clear.

Classes are frozen, slotted and keyword-only; constructors check their fields (raising
`ProtocolMisuse`, a caller bug) and `from_bytes` is strict (raising `EncodingError` that names
the field). The number of commitments is encoded, not assumed: a deal with the wrong number
is well-formed bytes and becomes a recorded fault of its dealer, not a decoding error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from mpc.errors import EncodingError, ProtocolMisuse
from mpc.group import G1, G1_SIZE, G2, G2_SIZE
from mpc.schnorr import PROOF_SIZE, SchnorrProof
from mpc.session import SESSION_ID_SIZE
from mpc.sharebox import (
    KEM_SECRET_SIZE,
    REVEAL_SIZE,
    SEALED_SHARE_SIZE,
    DhReveal,
    SealedShare,
)
from mpc.sharing import PublicPolynomial
from mpc.types import MemberIndex

VERSION: Final = 1
DIGEST_SIZE: Final = 32
_HEADER: Final = 2 + SESSION_ID_SIZE


class MessageType(enum.IntEnum):
    DEAL_PUBLIC = 1
    SHARE_BUNDLE = 2
    COMPLAINT = 3
    JUSTIFICATION = 4
    CONFIRMATION = 5


def _check_index(name: str, value: int) -> None:
    if not 1 <= value <= 0xFFFF:
        raise ProtocolMisuse(f"{name} must be a member index in 1..65535, got {value}")


def _check_session(session_id: bytes) -> None:
    if len(session_id) != SESSION_ID_SIZE:
        raise ProtocolMisuse(f"session_id must be {SESSION_ID_SIZE} bytes, got {len(session_id)}")


def _header(kind: MessageType, session_id: bytes) -> bytes:
    return bytes([VERSION, kind]) + session_id


class _Reader:
    """Reads one message; every failure names the message and the field."""

    __slots__ = ("_data", "_msg", "_pos")

    def __init__(self, data: bytes, kind: MessageType, msg: str) -> None:
        self._data, self._msg, self._pos = bytes(data), msg, 0
        if len(self._data) < _HEADER:
            raise EncodingError(msg, f"{len(self._data)} bytes is shorter than the header")
        if self._data[0] != VERSION:
            raise EncodingError(f"{msg}.version", f"unsupported version {self._data[0]}")
        if self._data[1] != kind:
            raise EncodingError(f"{msg}.type", f"expected type {int(kind)}, got {self._data[1]}")
        self._pos = 2

    def take(self, size: int, field: str) -> bytes:
        if self._pos + size > len(self._data):
            raise EncodingError(f"{self._msg}.{field}", "message is truncated")
        out = self._data[self._pos : self._pos + size]
        self._pos += size
        return out

    def index(self, field: str) -> MemberIndex:
        value = int.from_bytes(self.take(2, field), "big")
        if value == 0:
            raise EncodingError(f"{self._msg}.{field}", "member index 0 is not allowed")
        return MemberIndex(value)

    def finish(self) -> None:
        if self._pos != len(self._data):
            extra = len(self._data) - self._pos
            raise EncodingError(self._msg, f"{extra} trailing bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class DealPublic:
    """A dealer's public deal: Feldman commitments C in G1, P = a_0·G2, and its Schnorr proof."""

    session_id: bytes
    dealer: MemberIndex
    commitments: PublicPolynomial
    p: G2
    proof: SchnorrProof

    def __post_init__(self) -> None:
        _check_session(self.session_id)
        _check_index("dealer", self.dealer)
        if self.commitments.threshold > 0xFFFF:
            raise ProtocolMisuse("too many commitments")

    def to_bytes(self) -> bytes:
        return (
            _header(MessageType.DEAL_PUBLIC, self.session_id)
            + self.dealer.to_bytes(2, "big")
            + self.commitments.threshold.to_bytes(2, "big")
            + self.commitments.to_bytes()
            + self.p.to_bytes()
            + self.proof.to_bytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> DealPublic:
        r = _Reader(data, MessageType.DEAL_PUBLIC, "DealPublic")
        session_id = r.take(SESSION_ID_SIZE, "session_id")
        dealer = r.index("dealer")
        count = int.from_bytes(r.take(2, "count"), "big")
        if count == 0:
            raise EncodingError("DealPublic.count", "a deal needs at least one commitment")
        commitments = tuple(
            G1.from_bytes(r.take(G1_SIZE, f"commitments[{j}]"), f"DealPublic.commitments[{j}]")
            for j in range(count)
        )
        p = G2.from_bytes(r.take(G2_SIZE, "p"), "DealPublic.p")
        proof = SchnorrProof.from_bytes(r.take(PROOF_SIZE, "proof"), "DealPublic.proof")
        r.finish()
        return cls(
            session_id=session_id,
            dealer=dealer,
            commitments=PublicPolynomial(commitments),
            p=p,
            proof=proof,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareBundle:
    """A dealer's sealed shares, one slot per member of the new committee (`mpc.sharebox`).

    `entries[j-1]` is member j's share, or None where the dealer sealed nothing (a member
    without a usable epoch key, or the dealer itself in a DKG). Public: it goes on the board.
    """

    session_id: bytes
    dealer: MemberIndex
    entries: tuple[SealedShare | None, ...]

    def __post_init__(self) -> None:
        _check_session(self.session_id)
        _check_index("dealer", self.dealer)
        if not 1 <= len(self.entries) <= 0xFFFF:
            raise ProtocolMisuse(f"a bundle has 1..65535 slots, got {len(self.entries)}")

    def entry(self, recipient: int) -> SealedShare | None:
        return self.entries[recipient - 1] if 1 <= recipient <= len(self.entries) else None

    def to_bytes(self) -> bytes:
        slots = b"".join(b"\x00" if e is None else b"\x01" + e.to_bytes() for e in self.entries)
        return (
            _header(MessageType.SHARE_BUNDLE, self.session_id)
            + self.dealer.to_bytes(2, "big")
            + len(self.entries).to_bytes(2, "big")
            + slots
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ShareBundle:
        r = _Reader(data, MessageType.SHARE_BUNDLE, "ShareBundle")
        session_id = r.take(SESSION_ID_SIZE, "session_id")
        dealer = r.index("dealer")
        count = int.from_bytes(r.take(2, "count"), "big")
        if count == 0:
            raise EncodingError("ShareBundle.count", "a bundle needs at least one slot")
        entries: list[SealedShare | None] = []
        for j in range(1, count + 1):
            flag = r.take(1, f"entries[{j}].flag")[0]
            if flag == 0:
                entries.append(None)
            elif flag == 1:
                raw = r.take(SEALED_SHARE_SIZE, f"entries[{j}]")
                entries.append(SealedShare.from_bytes(raw, f"ShareBundle.entries[{j}]"))
            else:
                raise EncodingError(f"ShareBundle.entries[{j}].flag", f"must be 0 or 1, got {flag}")
        r.finish()
        return cls(session_id=session_id, dealer=dealer, entries=tuple(entries))

    def __repr__(self) -> str:
        present = [j for j, e in enumerate(self.entries, start=1) if e is not None]
        return f"ShareBundle(dealer={self.dealer}, recipients={present})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Complaint:
    """`accuser`'s share from `dealer` does not open or is not on the commitments.

    `reveal` is the accuser's ss_dh of the pair with its DLEQ proof: with the dealer's
    answer it lets everyone open that one share, and nothing else.
    """

    session_id: bytes
    accuser: MemberIndex
    dealer: MemberIndex
    reveal: DhReveal

    def __post_init__(self) -> None:
        _check_session(self.session_id)
        _check_index("accuser", self.accuser)
        _check_index("dealer", self.dealer)

    def to_bytes(self) -> bytes:
        return (
            _header(MessageType.COMPLAINT, self.session_id)
            + self.accuser.to_bytes(2, "big")
            + self.dealer.to_bytes(2, "big")
            + self.reveal.to_bytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Complaint:
        r = _Reader(data, MessageType.COMPLAINT, "Complaint")
        session_id = r.take(SESSION_ID_SIZE, "session_id")
        accuser = r.index("accuser")
        dealer = r.index("dealer")
        reveal = DhReveal.from_bytes(r.take(REVEAL_SIZE, "reveal"), "Complaint.reveal")
        r.finish()
        return cls(session_id=session_id, accuser=accuser, dealer=dealer, reveal=reveal)


@dataclass(frozen=True, slots=True, kw_only=True)
class Justification:
    """`dealer`'s answer to a complaint: the ML-KEM secret it sealed the accuser's share with.

    With the complaint's ss_dh everyone can open that one share and check it; the share of an
    honest accuser is never in question (it only complains about a dealer that cheated).
    """

    session_id: bytes
    dealer: MemberIndex
    accuser: MemberIndex
    kem_secret: bytes

    def __post_init__(self) -> None:
        _check_session(self.session_id)
        _check_index("dealer", self.dealer)
        _check_index("accuser", self.accuser)
        if len(self.kem_secret) != KEM_SECRET_SIZE:
            raise ProtocolMisuse(f"kem_secret must be {KEM_SECRET_SIZE} bytes")

    def to_bytes(self) -> bytes:
        return (
            _header(MessageType.JUSTIFICATION, self.session_id)
            + self.dealer.to_bytes(2, "big")
            + self.accuser.to_bytes(2, "big")
            + self.kem_secret
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Justification:
        r = _Reader(data, MessageType.JUSTIFICATION, "Justification")
        session_id = r.take(SESSION_ID_SIZE, "session_id")
        dealer = r.index("dealer")
        accuser = r.index("accuser")
        kem_secret = r.take(KEM_SECRET_SIZE, "kem_secret")
        r.finish()
        return cls(session_id=session_id, dealer=dealer, accuser=accuser, kem_secret=kem_secret)

    def __repr__(self) -> str:
        return f"Justification(dealer={self.dealer}, accuser={self.accuser}, <redacted>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Confirmation:
    """`member`'s confirmation digest of the run's outcome (see `mpc.dkg.compute_digest`)."""

    session_id: bytes
    member: MemberIndex
    digest: bytes

    def __post_init__(self) -> None:
        _check_session(self.session_id)
        _check_index("member", self.member)
        if len(self.digest) != DIGEST_SIZE:
            raise ProtocolMisuse(f"digest must be {DIGEST_SIZE} bytes, got {len(self.digest)}")

    def to_bytes(self) -> bytes:
        return (
            _header(MessageType.CONFIRMATION, self.session_id)
            + self.member.to_bytes(2, "big")
            + self.digest
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Confirmation:
        r = _Reader(data, MessageType.CONFIRMATION, "Confirmation")
        session_id = r.take(SESSION_ID_SIZE, "session_id")
        member = r.index("member")
        digest = r.take(DIGEST_SIZE, "digest")
        r.finish()
        return cls(session_id=session_id, member=member, digest=digest)
