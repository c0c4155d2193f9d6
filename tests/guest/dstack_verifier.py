"""dstack's published verification of a key's signature chain, reimplemented for tests only.

From dstack's recipes (no package ships them): the Go SDK test
`TestGetKeySignatureVerification` (recover chain[0] over `purpose:hex(derived public key)`,
compress it; recover chain[1] over `"dstack-kms-issued:" ‖ app_id ‖ app key`; compare with
the expected KMS key; verify the app signature) and the Python SDK's `verify_signature_chain`
after 0.5.4 (a Sign chain has 3 elements, the signature first; low S only; recovery id 0 or
1; the anchor is `kmsInfo().k256Pubkey` or pinned, never read from the KMS being checked).

Written with eth_keys / eth_utils / pyca only: nothing here imports tkms code, so it checks
our chains as a dstack verifier would.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ed25519
from eth_keys import datatypes as eth
from eth_utils.crypto import keccak

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class Rejected(Exception):
    """The chain does not verify; the message says why."""


def _recover(message: bytes, signature: bytes) -> eth.PublicKey:
    if len(signature) != 65:
        raise Rejected(f"signature of {len(signature)} bytes, expected 65")
    if signature[64] > 1:
        raise Rejected(f"recovery id {signature[64]}")
    if int.from_bytes(signature[32:64], "big") > N // 2:
        raise Rejected("high-S signature")
    digest = keccak(message)
    try:
        key = eth.Signature(signature_bytes=signature).recover_public_key_from_msg_hash(digest)
    except Exception as exc:
        raise Rejected(f"does not recover: {exc}") from None
    if not key.verify_msg_hash(digest, eth.Signature(signature_bytes=signature)):
        raise Rejected("recovered key does not verify the signature")
    return key


def derived_public_key(key: bytes, algorithm: str = "secp256k1") -> bytes:
    """The public key of a GetKey `key`: compressed secp256k1, or raw ed25519."""
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(key).public_key().public_bytes_raw()
    return bytes(eth.PrivateKey(key).public_key.to_compressed_bytes())


def verify_key_chain(
    public_key: bytes, chain: list[bytes], *, purpose: str, app_id: bytes, kms_root: bytes
) -> bytes:
    """The Go SDK test's checks; returns the recovered app key (compressed)."""
    if len(chain) != 2:
        raise Rejected(f"chain of {len(chain)} elements, expected 2")
    app = _recover(f"{purpose}:{public_key.hex()}".encode(), chain[0])
    app_compressed = bytes(app.to_compressed_bytes())
    kms = _recover(b"dstack-kms-issued:" + app_id + app_compressed, chain[1])
    if bytes(kms.to_compressed_bytes()) != kms_root:
        raise Rejected(f"KMS key {kms.to_compressed_bytes().hex()} is not the anchor")
    return app_compressed


def verify_sign_chain(
    algorithm: str,
    data: bytes,
    public_key: bytes,
    chain: list[bytes],
    *,
    app_id: bytes,
    kms_root: bytes,
    purpose: str = "signing",
) -> bytes:
    """`verify_signature_chain`'s checks for a Sign reply; returns the app key."""
    if len(chain) != 3:
        raise Rejected(f"chain of {len(chain)} elements, expected 3")
    signature = chain[0]
    if algorithm == "ed25519":
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
        except Exception:
            raise Rejected("ed25519 signature does not verify") from None
    else:
        digest = hashlib.sha256(data).digest() if algorithm == "secp256k1" else data
        if len(signature) != 64 or int.from_bytes(signature[32:], "big") > N // 2:
            raise Rejected("not a low-S 64-byte secp256k1 signature")
        vrs = (0, int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        key = eth.PublicKey.from_compressed_bytes(public_key)
        if not key.verify_msg_hash(digest, eth.Signature(vrs=vrs)):
            raise Rejected("secp256k1 signature does not verify")
    return verify_key_chain(
        public_key, chain[1:], purpose=purpose, app_id=app_id, kms_root=kms_root
    )
