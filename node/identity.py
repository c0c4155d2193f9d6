"""A node's long-term identity: its TLS key, deal key and Ethereum key, sealed on disk.

* TLS key (ECDSA P-256): the key of its RA-TLS certificate; peers pin its hash from chain.
* Deal key (HPKE ML-KEM-768 + X25519): shares of DKGs and reshares are encrypted to it.
* Ethereum key (secp256k1): signs the node's governance transactions (deals, confirmations).

All three are bound into the node's evidence by report_data = SHA-512("tkms-node:v1:" ‖ framed
keys) (design §4.4). They are stored together as one sealed blob, `identity.sealed`:
frame(b"tkms-identity:v1", tls PKCS#8 DER, deal private key, ethereum private key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eth_account import Account
from eth_account.signers.local import LocalAccount

from attest import BindingLabel, compute_report_data, node_binding_content
from mpc.dealenc import DealKeyPair
from mpc.encoding import frame
from node.errors import StorageError
from node.sealing import Sealer, read_sealed, write_sealed

IDENTITY_FILE: Final = "identity.sealed"
_LABEL: Final = "tkms-identity:v1"


def _unframe(data: bytes, count: int) -> list[bytes]:
    parts, offset = [], 0
    for _ in range(count):
        if offset + 4 > len(data):
            raise StorageError("identity blob is truncated")
        size = int.from_bytes(data[offset : offset + 4], "big")
        offset += 4
        if offset + size > len(data):
            raise StorageError("identity blob is truncated")
        parts.append(data[offset : offset + size])
        offset += size
    if offset != len(data):
        raise StorageError("identity blob has trailing bytes")
    return parts


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    tls_key: ec.EllipticCurvePrivateKey
    deal_key: DealKeyPair
    eth_account: LocalAccount

    @classmethod
    def generate(cls) -> NodeIdentity:
        return cls(
            tls_key=ec.generate_private_key(ec.SECP256R1()),
            deal_key=DealKeyPair.generate(),
            eth_account=Account.create(),
        )

    @property
    def tls_spki_der(self) -> bytes:
        return self.tls_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def tls_key_hash(self) -> bytes:
        """SHA-256 of the TLS SubjectPublicKeyInfo, as registered on chain."""
        return hashlib.sha256(self.tls_spki_der).digest()

    @property
    def deal_public_key(self) -> bytes:
        return self.deal_key.public_key.to_bytes()

    @property
    def eth_address(self) -> bytes:
        return bytes.fromhex(self.eth_account.address[2:])

    def report_data(self) -> bytes:
        content = node_binding_content(self.tls_spki_der, self.deal_public_key, self.eth_address)
        return compute_report_data(BindingLabel.NODE_V1, content)

    def to_bytes(self) -> bytes:
        tls = self.tls_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return frame(
            _LABEL.encode(), tls, self.deal_key.private_bytes(), bytes(self.eth_account.key)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> NodeIdentity:
        label, tls, deal, eth = _unframe(data, 4)
        if label != _LABEL.encode():
            raise StorageError(f"identity blob has label {label!r}, expected {_LABEL!r}")
        key = serialization.load_der_private_key(tls, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise StorageError("identity TLS key is not an EC key")
        return cls(
            tls_key=key,
            deal_key=DealKeyPair.from_private_bytes(deal),
            eth_account=Account.from_key(eth),
        )

    def __repr__(self) -> str:
        return f"NodeIdentity(eth_address=0x{self.eth_address.hex()}, <keys redacted>)"


def create_identity(data_dir: Path, sealer: Sealer) -> NodeIdentity:
    """Generate and seal a new identity; refuses to overwrite an existing one."""
    path = data_dir / IDENTITY_FILE
    if path.exists():
        raise StorageError(f"{path} exists: this data directory already has an identity")
    identity = NodeIdentity.generate()
    write_sealed(path, sealer, _LABEL, identity.to_bytes())
    return identity


def load_identity(data_dir: Path, sealer: Sealer) -> NodeIdentity:
    return NodeIdentity.from_bytes(read_sealed(data_dir / IDENTITY_FILE, sealer, _LABEL))
