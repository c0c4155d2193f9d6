"""secp256k1 recoverable signatures in dstack's format, and the messages of its key chain.

dstack links keys with secp256k1 ECDSA over a Keccak-256 digest, shipped as 65 bytes
r ‖ s ‖ v with the recovery id v in {0, 1} (not Ethereum's 27/28). A verifier recovers the
signer from the signature and compares it with the key it trusts. Two messages are signed:

* `kms_issued_digest`: keccak256("dstack-kms-issued" ‖ ":" ‖ app_id ‖ SEC1-compressed app
  key), signed by the KMS root (dstack's `sign_message` shape, `kms_message_digest`, which
  also signs other app-bound values under other prefixes);
* `purpose_digest`: keccak256(purpose ‖ ":" ‖ lowercase hex of a derived public key), signed
  by the app key (element 0 of GetKey's chain).

Signing is RFC 6979 deterministic and low-S (eth_keys). `recover_signer` is as strict as
dstack's strictest published verifier: exactly 65 bytes, v in {0, 1}, 1 <= r < n and
1 <= s <= n/2, so the high-S twin of a valid signature is refused (no malleability).
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_hash.auto import keccak
from eth_keys.datatypes import PrivateKey, Signature

from mpc.errors import EncodingError, InvalidSignature, ProtocolMisuse

#: The order n of secp256k1's group.
ORDER: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECRET_SIZE: Final = 32
PUBLIC_SIZE: Final = 33
SIGNATURE_SIZE: Final = 65
KMS_ISSUED: Final = b"dstack-kms-issued"


def scalar_from_wide(material: bytes) -> bytes:
    """A 32-byte secret in [1, n-1] from >= 48 bytes of key material (bias below 2^-128)."""
    if len(material) < 48:
        raise ProtocolMisuse(f"a wide reduction needs at least 48 bytes, got {len(material)}")
    value = int.from_bytes(material, "big") % (ORDER - 1) + 1
    return value.to_bytes(SECRET_SIZE, "big")


def check_secret(secret: bytes) -> bytes:
    """`secret` if it is a 32-byte scalar in [1, n-1] (k256's `SigningKey::from_slice` rule)."""
    if len(secret) != SECRET_SIZE or not 0 < int.from_bytes(secret, "big") < ORDER:
        raise EncodingError("secp256k1 secret", "not a 32-byte scalar in [1, n-1]")
    return secret


def public_key(secret: bytes) -> bytes:
    """The SEC1-compressed (33-byte) public key of a secret."""
    key = ec.derive_private_key(int.from_bytes(check_secret(secret), "big"), ec.SECP256K1())
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def decode_public_key(data: bytes, what: str = "secp256k1 public key") -> bytes:
    """`data` if it is a SEC1-compressed point on secp256k1, else EncodingError naming `what`."""
    if len(data) != PUBLIC_SIZE or data[0] not in (2, 3):
        raise EncodingError(what, f"expected 33 bytes SEC1-compressed, got {len(data)} bytes")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), data)
    except ValueError:
        raise EncodingError(what, "not a point on secp256k1") from None
    return data


def kms_message_digest(prefix: bytes, app_id: bytes, message: bytes) -> bytes:
    """keccak256(prefix ‖ ":" ‖ app_id ‖ message): what dstack's KMS signs about an app."""
    return keccak(prefix + b":" + app_id + message)


def kms_issued_digest(app_id: bytes, app_public_key: bytes) -> bytes:
    """The digest the KMS root signs for an app key (element 1 of GetKey's chain)."""
    return kms_message_digest(KMS_ISSUED, app_id, app_public_key)


def purpose_digest(purpose: str, public_key: bytes) -> bytes:
    """keccak256(f"{purpose}:{public_key.hex()}"), what the app key signs (element 0)."""
    return keccak(f"{purpose}:{public_key.hex()}".encode())


def sign_recoverable(secret: bytes, digest: bytes) -> bytes:
    """65 bytes r ‖ s ‖ v (v in {0, 1}, s <= n/2) over a 32-byte digest."""
    if len(digest) != 32:
        raise ProtocolMisuse(f"a digest is 32 bytes, got {len(digest)}")
    signature = PrivateKey(check_secret(secret)).sign_msg_hash(digest)
    return bytes(signature.to_bytes())


def recover_signer(digest: bytes, signature: bytes, what: str = "signature") -> bytes:
    """The compressed public key that made `signature` over `digest`; InvalidSignature (naming
    `what`) for a malformed, high-S or unrecoverable one."""
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature(f"{what}: expected {SIGNATURE_SIZE} bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v > 1:
        raise InvalidSignature(f"{what}: recovery id {v}, expected 0 or 1")
    if not 0 < r < ORDER or not 0 < s < ORDER:
        raise InvalidSignature(f"{what}: r or s is not in [1, n-1]")
    if 2 * s > ORDER:
        raise InvalidSignature(f"{what}: high-S signature (s > n/2) refused")
    try:
        recovered = Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(digest)
    except Exception:  # eth_keys raises several unrelated types for an unrecoverable one
        raise InvalidSignature(f"{what}: does not recover a public key") from None
    return bytes(recovered.to_compressed_bytes())
