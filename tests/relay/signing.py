"""A network's keys for relay tests: fixed secrets for generations 1 and 2, so envelopes are
real BLS signatures (any t partials combine to exactly these) and test vectors reproduce."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mpc.anchor import generation_statement, network_fingerprint
from mpc.group import G2, Scalar
from mpc.manifest import EpochManifest, ManifestMember, SignedManifest
from mpc.nodehealth import HealthNote, sign_note
from mpc.tsig import message_point

CHAIN_ID = 31337
GOVERNANCE = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")


def secret(label: str) -> Scalar:
    return Scalar(int.from_bytes(hashlib.sha512(label.encode()).digest(), "big") % (1 << 250))


def tls_key(member: int) -> ec.EllipticCurvePrivateKey:
    """Member `member`'s TLS identity key (P-256), fixed so vectors reproduce."""
    return ec.derive_private_key(0x7E57_0000 + member, ec.SECP256R1())


def tls_key_hash(key: ec.EllipticCurvePrivateKey) -> bytes:
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def sign(secret: Scalar, message: bytes) -> bytes:
    return (message_point(message) * secret).to_bytes()


@dataclass(frozen=True)
class KeyedNetwork:
    secrets: tuple[Scalar, ...]

    @property
    def keys(self) -> tuple[G2, ...]:
        return tuple(G2.generator() * x for x in self.secrets)

    @property
    def fingerprint(self) -> bytes:
        return network_fingerprint(CHAIN_ID, GOVERNANCE, self.keys[0])

    @property
    def links(self) -> tuple[bytes, ...]:
        keys = self.keys
        return tuple(
            sign(self.secrets[g - 2], generation_statement(CHAIN_ID, GOVERNANCE, g, keys[g - 1]))
            for g in range(2, len(keys) + 1)
        )

    def manifest(self, epoch: int, generation: int = 0, members: int = 3) -> EpochManifest:
        generation = generation or len(self.secrets)
        return EpochManifest(
            chain_id=CHAIN_ID,
            governance=GOVERNANCE,
            generation=generation,
            epoch=epoch,
            threshold=min(2, members),
            group_key=self.keys[generation - 1],
            members=tuple(
                ManifestMember(
                    address=bytes([k]) * 20,
                    endpoint=f"10.0.0.{k}:{7000 + k}",
                    tls_key_hash=tls_key_hash(tls_key(k)),
                )
                for k in range(1, members + 1)
            ),
        )

    def envelope(self, manifest: EpochManifest, *, signer: Scalar | None = None) -> bytes:
        """`manifest` signed by its generation's key (or by `signer`, to forge)."""
        g = manifest.generation
        secret = signer if signer is not None else self.secrets[g - 1]
        statement = manifest.encode()
        return SignedManifest(
            statement, sign(secret, statement), self.keys[:g], self.links[: g - 1]
        ).encode()


NETWORK = KeyedNetwork((secret("tkms relay test generation 1"), secret("generation 2")))
FORGER = secret("not the network")


def health_envelope(member: int, epoch: int, issued_ms: int, *, key: int = 0) -> bytes:
    """Member `member`'s NORMAL health note about `epoch`, signed with member `key`'s TLS key
    (its own unless `key` names another, to forge)."""
    note = HealthNote(
        chain_id=CHAIN_ID,
        governance=GOVERNANCE,
        address=bytes([member]) * 20,
        generation=2,
        epoch=epoch,
        health=2,
        reason="",
        head=99,
        issued_ms=issued_ms,
    )
    return sign_note(note, tls_key(key or member))
