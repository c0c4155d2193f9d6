"""Node health notes: what one node says about itself, signed by its own TLS identity key.

Relays gossip them beside the epoch manifests (docs/relay.md). The key is the node's TLS key
(ECDSA P-256), whose SHA-256 SubjectPublicKeyInfo hash the chain registers and the signed
manifest states for every member: a note is believed only from a member of the manifest, with
that member's pinned key.

    note     = frame("tkms-node-health:v1", chain id (u256), governance (20), address (20),
                     generation (u64), epoch (u64), health (1 byte: 0 DOWN, 1 DEGRADED,
                     2 NORMAL), reason (printable ASCII, <= 200), chain head (u64),
                     issued at (u64, unix milliseconds))
    envelope = frame("tkms-relay-health:v1", note, SubjectPublicKeyInfo DER (P-256),
                     signature (DER ECDSA-SHA256 over the note))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature as _BadEcdsa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mpc.encoding import frame, unframe
from mpc.errors import EncodingError, InvalidSignature
from mpc.manifest import EpochManifest

NOTE_LABEL: Final = b"tkms-node-health:v1"
ENVELOPE_LABEL: Final = b"tkms-relay-health:v1"
HEALTH_NAMES: Final = ("DOWN", "DEGRADED", "NORMAL")
MAX_REASON: Final = 200
MAX_ENVELOPE: Final = 2048


@dataclass(frozen=True, slots=True)
class HealthNote:
    chain_id: int
    governance: bytes
    address: bytes
    generation: int
    epoch: int
    health: int  # index into HEALTH_NAMES
    reason: str
    head: int
    issued_ms: int

    def __post_init__(self) -> None:
        what = "health note"
        if not 0 <= self.chain_id < 1 << 256:
            raise EncodingError(what, "chain id is not a u256")
        if len(self.governance) != 20 or len(self.address) != 20:
            raise EncodingError(what, "governance and address must be 20 bytes")
        for name in ("generation", "epoch", "head", "issued_ms"):
            if not 0 <= getattr(self, name) < 1 << 64:
                raise EncodingError(what, f"{name} is not a u64")
        if not 0 <= self.health < len(HEALTH_NAMES):
            raise EncodingError(what, f"health {self.health} is not 0, 1 or 2")
        printable = self.reason.isascii() and self.reason.isprintable()
        if len(self.reason) > MAX_REASON or not printable:
            raise EncodingError(what, f"reason must be printable ASCII, <= {MAX_REASON}")

    @property
    def health_name(self) -> str:
        return HEALTH_NAMES[self.health]

    def encode(self) -> bytes:
        return frame(
            NOTE_LABEL,
            self.chain_id.to_bytes(32, "big"),
            self.governance,
            self.address,
            self.generation.to_bytes(8, "big"),
            self.epoch.to_bytes(8, "big"),
            bytes([self.health]),
            self.reason.encode("ascii"),
            self.head.to_bytes(8, "big"),
            self.issued_ms.to_bytes(8, "big"),
        )


def _int(raw: bytes, size: int) -> int:
    if len(raw) != size:
        raise EncodingError("health note", f"a field of {len(raw)} bytes, expected {size}")
    return int.from_bytes(raw, "big")


def decode_note(data: bytes) -> HealthNote:
    parts = unframe(data, "health note")
    if len(parts) != 10 or parts[0] != NOTE_LABEL:
        raise EncodingError("health note", "not a tkms-node-health:v1 note")
    _, chain_id, governance, address, generation, epoch, health, reason, head, issued = parts
    try:
        text = reason.decode("ascii")
    except UnicodeDecodeError:
        raise EncodingError("health note", "reason is not ASCII") from None
    note = HealthNote(
        chain_id=_int(chain_id, 32),
        governance=governance,
        address=address,
        generation=_int(generation, 8),
        epoch=_int(epoch, 8),
        health=_int(health, 1),
        reason=text,
        head=_int(head, 8),
        issued_ms=_int(issued, 8),
    )
    if note.encode() != data:
        raise EncodingError("health note", "not in canonical form")
    return note


def sign_note(note: HealthNote, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The envelope of `note` signed with the node's TLS key."""
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    statement = note.encode()
    signature = key.sign(statement, ec.ECDSA(hashes.SHA256()))
    return frame(ENVELOPE_LABEL, statement, spki, signature)


def verify_note(data: bytes, manifest: EpochManifest) -> HealthNote:
    """The note in `data` if a member of `manifest` signed it with its pinned TLS key, about
    that manifest's network and epoch. Freshness is the caller's (it knows the clock)."""
    if len(data) > MAX_ENVELOPE:
        raise EncodingError("health envelope", f"{len(data)} bytes, at most {MAX_ENVELOPE}")
    parts = unframe(data, "health envelope")
    if len(parts) != 4 or parts[0] != ENVELOPE_LABEL:
        raise EncodingError("health envelope", "not a tkms-relay-health:v1 envelope")
    _, statement, spki, signature = parts
    note = decode_note(statement)
    if (note.chain_id, note.governance) != (manifest.chain_id, manifest.governance):
        raise InvalidSignature("health note of another network")
    if (note.generation, note.epoch) != (manifest.generation, manifest.epoch):
        raise InvalidSignature(
            f"health note about epoch {note.epoch}, not the current epoch {manifest.epoch}"
        )
    member = next((m for m in manifest.members if m.address == note.address), None)
    if member is None:
        raise InvalidSignature(f"0x{note.address.hex()} is not a member of epoch {note.epoch}")
    if hashlib.sha256(spki).digest() != member.tls_key_hash:
        raise InvalidSignature(f"0x{note.address.hex()} signed with a key other than its pin")
    try:
        key = serialization.load_der_public_key(spki)
    except ValueError:
        raise EncodingError("health envelope", "key is not a DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise EncodingError("health envelope", "key is not ECDSA P-256")
    try:
        key.verify(signature, statement, ec.ECDSA(hashes.SHA256()))
    except _BadEcdsa:
        raise InvalidSignature(f"health note of 0x{note.address.hex()}: bad signature") from None
    return note
