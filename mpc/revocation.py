"""Revocation notices: the network's threshold-signed word that a member may no longer be used.

A committee lists its members for the whole epoch; when the governance removes one (its host
compromised, its operator gone) before a reshare replaces it, clients should stop sending it
their evidence and requests at once. t members each sign a notice only when their own chain
view no longer shows the subject approved (SignPartial KIND_REVOCATION), so the combined
signature under the epoch's PK2 is the network's word. Relays gossip notices beside the
manifests (docs/relay.md); a notice is bound to one epoch and checked against that epoch's
verified manifest (its group key), so it needs no key chain of its own.

    notice   = frame("tkms-revocation:v1", chain id (u256), governance (20), generation (u64),
                     epoch (u64), kind (1 byte: 1 = node removed), subject (kind 1: the node's
                     20-byte address))
    envelope = frame("tkms-relay-revocation:v1", notice, signature (48, G1))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mpc.encoding import frame, unframe
from mpc.errors import EncodingError, InvalidSignature
from mpc.group import G1_SIZE
from mpc.manifest import EpochManifest
from mpc.tsig import verify_signature

NOTICE_LABEL: Final = b"tkms-revocation:v1"
ENVELOPE_LABEL: Final = b"tkms-relay-revocation:v1"
NODE_REMOVED: Final = 1
MAX_ENVELOPE: Final = 1024


@dataclass(frozen=True, slots=True)
class RevocationNotice:
    chain_id: int
    governance: bytes
    generation: int
    epoch: int
    kind: int
    subject: bytes

    def __post_init__(self) -> None:
        what = "revocation notice"
        if not 0 <= self.chain_id < 1 << 256 or len(self.governance) != 20:
            raise EncodingError(what, "chain id must be a u256 and governance 20 bytes")
        if not 1 <= self.generation < 1 << 64 or not 1 <= self.epoch < 1 << 64:
            raise EncodingError(what, "generation and epoch must be >= 1")
        if self.kind != NODE_REMOVED:
            raise EncodingError(what, f"kind {self.kind} is not 1 (node removed)")
        if len(self.subject) != 20:
            raise EncodingError(what, f"a node address is 20 bytes, got {len(self.subject)}")

    def encode(self) -> bytes:
        return frame(
            NOTICE_LABEL,
            self.chain_id.to_bytes(32, "big"),
            self.governance,
            self.generation.to_bytes(8, "big"),
            self.epoch.to_bytes(8, "big"),
            bytes([self.kind]),
            self.subject,
        )


def decode_notice(data: bytes) -> RevocationNotice:
    parts = unframe(data, "revocation notice")
    if len(parts) != 7 or parts[0] != NOTICE_LABEL:
        raise EncodingError("revocation notice", "not a tkms-revocation:v1 notice")
    _, chain_id, governance, generation, epoch, kind, subject = parts
    for raw, size in ((chain_id, 32), (generation, 8), (epoch, 8), (kind, 1)):
        if len(raw) != size:
            raise EncodingError("revocation notice", f"a field of {len(raw)} bytes, not {size}")
    notice = RevocationNotice(
        chain_id=int.from_bytes(chain_id, "big"),
        governance=governance,
        generation=int.from_bytes(generation, "big"),
        epoch=int.from_bytes(epoch, "big"),
        kind=kind[0],
        subject=subject,
    )
    if notice.encode() != data:
        raise EncodingError("revocation notice", "not in canonical form")
    return notice


def notice_envelope(notice: RevocationNotice, signature: bytes) -> bytes:
    return frame(ENVELOPE_LABEL, notice.encode(), signature)


def verify_notice(data: bytes, manifest: EpochManifest) -> RevocationNotice:
    """The notice in `data` if the network signed it for `manifest`'s (verified) epoch."""
    if len(data) > MAX_ENVELOPE:
        raise EncodingError("revocation envelope", f"{len(data)} bytes, at most {MAX_ENVELOPE}")
    parts = unframe(data, "revocation envelope")
    if len(parts) != 3 or parts[0] != ENVELOPE_LABEL or len(parts[2]) != G1_SIZE:
        raise EncodingError("revocation envelope", "not a tkms-relay-revocation:v1 envelope")
    notice = decode_notice(parts[1])
    if (notice.chain_id, notice.governance) != (manifest.chain_id, manifest.governance):
        raise InvalidSignature("revocation notice of another network")
    if (notice.generation, notice.epoch) != (manifest.generation, manifest.epoch):
        raise InvalidSignature(
            f"revocation notice of epoch {notice.epoch}, not the current epoch {manifest.epoch}"
        )
    if not verify_signature(manifest.group_key, parts[1], parts[2]):
        raise InvalidSignature(
            f"revocation of 0x{notice.subject.hex()} is not signed by epoch {notice.epoch}'s key"
        )
    return notice
