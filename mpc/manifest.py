"""Epoch manifests: the committee of an epoch, signed by the network's threshold key.

A client that reads its committee from one JSON-RPC trusts that RPC for everything PK2 does
not cover (members, endpoints, TLS pins, threshold, which epoch is active). A manifest states
all of it in canonical bytes, and t members each sign it only as their own chain view shows
it (SignPartial KIND_EPOCH_MANIFEST), so the combined BLS signature under PK2 says "the
network saw this committee active". Relays gossip manifests (docs/relay.md); nobody trusts a
relay, since every envelope carries the key chain from the network fingerprint to PK2.

    manifest = frame("tkms-epoch-manifest:v1", chain id (u256), governance (20),
                     generation (u64), epoch (u64), threshold (u32), PK2 (96, compressed G2),
                     member_1, ..., member_n)
    member_k = frame(address (20), kms endpoint (ASCII host:port), TLS key hash (32))
    envelope = frame("tkms-relay-manifest:v1", manifest, signature (48, G1),
                     frame(PK2 of generations 1..g), frame(links of generations 2..g))

The signature is the network's BLS signature (DST_SIG, `mpc.tsig`) over the manifest bytes
themselves; their label keeps them apart from every other signed statement. Decoding is strict:
re-encoding gives the same bytes, or the input is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from mpc.anchor import verify_key_chain
from mpc.encoding import frame, unframe
from mpc.errors import EncodingError, InvalidSignature
from mpc.group import G1_SIZE, G2, G2_SIZE
from mpc.tsig import verify_signature

MANIFEST_LABEL: Final = b"tkms-epoch-manifest:v1"
ENVELOPE_LABEL: Final = b"tkms-relay-manifest:v1"
ADDRESS_SIZE: Final = 20
HASH_SIZE: Final = 32
MAX_ENDPOINT: Final = 255
MAX_MEMBERS: Final = 256
#: Key generations an envelope may chain through (each costs a pairing check).
MAX_GENERATIONS: Final = 256
#: No envelope is larger (gossip validators refuse bigger messages before decoding).
MAX_ENVELOPE: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class ManifestMember:
    address: bytes  # 20 bytes, the node's Ethereum address
    endpoint: str  # the public KMS endpoint, host:port
    tls_key_hash: bytes  # SHA-256 of the TLS SubjectPublicKeyInfo DER: clients pin it

    def encode(self) -> bytes:
        return frame(self.address, self.endpoint.encode("ascii"), self.tls_key_hash)


@dataclass(frozen=True, slots=True)
class EpochManifest:
    chain_id: int
    governance: bytes
    generation: int
    epoch: int
    threshold: int
    group_key: G2  # PK2 of the generation
    members: tuple[ManifestMember, ...]

    def __post_init__(self) -> None:
        _check(self)

    def encode(self) -> bytes:
        """The canonical bytes, which are also the statement the network signs."""
        return frame(
            MANIFEST_LABEL,
            self.chain_id.to_bytes(32, "big"),
            self.governance,
            self.generation.to_bytes(8, "big"),
            self.epoch.to_bytes(8, "big"),
            self.threshold.to_bytes(4, "big"),
            self.group_key.to_bytes(),
            *(m.encode() for m in self.members),
        )


def _check(m: EpochManifest) -> None:
    what = "epoch manifest"
    if not 0 <= m.chain_id < 1 << 256:
        raise EncodingError(what, f"chain id {m.chain_id} is not a u256")
    if len(m.governance) != ADDRESS_SIZE:
        raise EncodingError(what, f"governance must be 20 bytes, got {len(m.governance)}")
    if not 1 <= m.generation < 1 << 64 or not 1 <= m.epoch < 1 << 64:
        raise EncodingError(what, f"generation {m.generation} and epoch {m.epoch} must be >= 1")
    if not 1 <= len(m.members) <= MAX_MEMBERS:
        raise EncodingError(what, f"{len(m.members)} members (1..{MAX_MEMBERS} allowed)")
    if not 1 <= m.threshold <= len(m.members):
        raise EncodingError(what, f"threshold {m.threshold} of {len(m.members)} members")
    if len({member.address for member in m.members}) != len(m.members):
        raise EncodingError(what, "a member address appears twice")
    for k, member in enumerate(m.members, start=1):
        if len(member.address) != ADDRESS_SIZE or len(member.tls_key_hash) != HASH_SIZE:
            raise EncodingError(what, f"member {k}: address 20 bytes and TLS hash 32 bytes")
        endpoint = member.endpoint
        if not (
            0 < len(endpoint) <= MAX_ENDPOINT and endpoint.isascii() and endpoint.isprintable()
        ):
            raise EncodingError(what, f"member {k}: endpoint {endpoint!r} is not printable ASCII")


def _uint(raw: bytes, size: int, what: str) -> int:
    if len(raw) != size:
        raise EncodingError("epoch manifest", f"{what} must be {size} bytes, got {len(raw)}")
    return int.from_bytes(raw, "big")


def decode_manifest(data: bytes) -> EpochManifest:
    """Parse canonical manifest bytes (EncodingError names what is wrong)."""
    parts = unframe(data, "epoch manifest")
    if len(parts) < 8 or parts[0] != MANIFEST_LABEL:
        raise EncodingError("epoch manifest", "not a tkms-epoch-manifest:v1 statement")
    _, chain_id, governance, generation, epoch, threshold, key, *members = parts
    decoded = []
    for k, raw in enumerate(members, start=1):
        fields = unframe(raw, f"manifest member {k}")
        if len(fields) != 3:
            raise EncodingError(f"manifest member {k}", f"{len(fields)} fields, expected 3")
        try:
            endpoint = fields[1].decode("ascii")
        except UnicodeDecodeError:
            raise EncodingError(f"manifest member {k}", "endpoint is not ASCII") from None
        decoded.append(ManifestMember(fields[0], endpoint, fields[2]))
    if len(key) != G2_SIZE:
        raise EncodingError("epoch manifest", f"group key must be {G2_SIZE} bytes")
    manifest = EpochManifest(
        chain_id=_uint(chain_id, 32, "chain id"),
        governance=governance,
        generation=_uint(generation, 8, "generation"),
        epoch=_uint(epoch, 8, "epoch"),
        threshold=_uint(threshold, 4, "threshold"),
        group_key=G2.from_bytes(key, "manifest group key"),
        members=tuple(decoded),
    )
    if manifest.encode() != data:
        raise EncodingError("epoch manifest", "not in canonical form")
    return manifest


@dataclass(frozen=True, slots=True)
class SignedManifest:
    """What relays gossip: a manifest, the network's signature, and the key chain to check it."""

    manifest: bytes
    signature: bytes  # 48 bytes, the BLS signature under PK2 of the manifest's generation
    keys: tuple[G2, ...]  # PK2 of generations 1..g
    links: tuple[bytes, ...]  # tkms-generation:v1 signatures of generations 2..g

    def encode(self) -> bytes:
        return frame(
            ENVELOPE_LABEL,
            self.manifest,
            self.signature,
            frame(*(k.to_bytes() for k in self.keys)),
            frame(*self.links),
        )


def decode_envelope(data: bytes) -> SignedManifest:
    what = "manifest envelope"
    if len(data) > MAX_ENVELOPE:
        raise EncodingError(what, f"{len(data)} bytes, at most {MAX_ENVELOPE}")
    parts = unframe(data, what)
    if len(parts) != 5 or parts[0] != ENVELOPE_LABEL:
        raise EncodingError(what, "not a tkms-relay-manifest:v1 envelope")
    _, manifest, signature, keys, links = parts
    if len(signature) != G1_SIZE:
        raise EncodingError(what, f"signature must be {G1_SIZE} bytes, got {len(signature)}")
    raw_keys, raw_links = unframe(keys, "envelope keys"), unframe(links, "envelope links")
    if not 1 <= len(raw_keys) <= MAX_GENERATIONS or len(raw_links) != len(raw_keys) - 1:
        raise EncodingError(what, f"{len(raw_keys)} keys need {len(raw_keys) - 1} links")
    return SignedManifest(
        manifest=manifest,
        signature=signature,
        keys=tuple(G2.from_bytes(k, f"PK2 of generation {g}") for g, k in enumerate(raw_keys, 1)),
        links=tuple(raw_links),
    )


def sign_envelope(
    manifest: EpochManifest, signature: bytes, keys: Sequence[G2], links: Sequence[bytes]
) -> SignedManifest:
    """The envelope of a freshly signed manifest (checked like any received one by callers)."""
    return SignedManifest(manifest.encode(), signature, tuple(keys), tuple(links))


def verify_envelope(data: bytes, fingerprint: bytes) -> EpochManifest:
    """The manifest in `data` if the network named by `fingerprint` signed it.

    Raises EncodingError (malformed), AnchorMismatch (another network, a broken key chain) or
    InvalidSignature (not signed by the key of the manifest's generation)."""
    envelope = decode_envelope(data)
    manifest = decode_manifest(envelope.manifest)
    if len(envelope.keys) != manifest.generation:
        raise EncodingError(
            "manifest envelope",
            f"carries {len(envelope.keys)} generation keys for generation {manifest.generation}",
        )
    verify_key_chain(
        fingerprint,
        chain_id=manifest.chain_id,
        governance=manifest.governance,
        keys=envelope.keys,
        links=envelope.links,
    )
    if manifest.group_key != envelope.keys[-1]:
        raise InvalidSignature(
            f"the manifest's group key is not generation {manifest.generation}'s key"
        )
    if not verify_signature(manifest.group_key, envelope.manifest, envelope.signature):
        raise InvalidSignature(
            f"epoch {manifest.epoch}'s manifest is not signed by generation "
            f"{manifest.generation}'s key"
        )
    return manifest
