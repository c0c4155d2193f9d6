"""App keys below the network-derived seed: dstack's GetKey/Sign keys and their signature chain.

The agent derives one app seed from the network (design §3.4, purpose `dstack-app-root`);
every key it hands out comes from that seed, so it is the same in every instance of the app
and after restarts, and differs between apps and paths:

    GetKey(path, algorithm)  child("dstack-get-key", algorithm, path)   (`mpc.derive_child_key`)
    Sign keys                GetKey("vms", algorithm), as dstack's Sign
    app key (k256)           HKDF-SHA256(salt "RATLS", ikm seed, info app_id ‖ "app-key"), as
                             dstack's KMS derives an app's key from its root (the seed stands in
                             for the root: it is the app's own threshold-derived secret)
    app CA key (P-256)       child("app-ca-p256")
    Tappd DeriveKey(path)    child("dstack-derive-key", path)   (P-256)

As in dstack, the purpose of GetKey does not change the key; it is what the signature chain
signs. The chain is dstack's [app signature, KMS signature]:

  0. 65 bytes r‖s‖v: the app key's recoverable secp256k1 signature over
     keccak256(f"{purpose}:{hex(public key)}") (`mpc.k256.purpose_digest`);
  1. 65 bytes r‖s‖v: the generation's KMS root's signature over
     keccak256("dstack-kms-issued:" ‖ app_id ‖ app key) (`mpc.k256.kms_issued_digest`),
     from a node (`guest.agent`); `guest.verify` checks whole chains.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mpc import derive_child_key
from mpc.dstack_keys import APP_ROOT_PURPOSE, app_k256_secret
from mpc.k256 import ORDER as _K256_ORDER
from mpc.k256 import purpose_digest, recover_signer, sign_recoverable

ALGORITHMS = ("secp256k1", "ed25519")
SIGN_ALGORITHMS = ("secp256k1", "secp256k1_prehashed", "ed25519")
ROOT_PURPOSE = APP_ROOT_PURPOSE
#: dstack's Sign signs with GetKey(path="vms", purpose="signing").
SIGN_PATH = "vms"
SIGN_PURPOSE = "signing"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class KeyRequestError(ValueError):
    """A request names an unsupported algorithm or carries a malformed key or signature."""


@dataclass(frozen=True, slots=True)
class DerivedKey:
    algorithm: str
    private: bytes = field(repr=False)
    public: bytes


def _scalar(material: bytes, order: int) -> int:
    # 48 bytes of HKDF output reduced mod n-1 has negligible bias and is never zero.
    return int.from_bytes(material, "big") % (order - 1) + 1


def _k256(seed: bytes, label: bytes, *context: bytes) -> ec.EllipticCurvePrivateKey:
    value = _scalar(derive_child_key(seed, label, *context, length=48), _K256_ORDER)
    return ec.derive_private_key(value, ec.SECP256K1())


def _k256_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def _derive(seed: bytes, label: bytes, algorithm: str, *context: bytes) -> DerivedKey:
    if algorithm in ("secp256k1", "secp256k1_prehashed"):
        key = _k256(seed, label, b"secp256k1", *context)
        private = key.private_numbers().private_value.to_bytes(32, "big")
        return DerivedKey("secp256k1", private, _k256_public(key))
    if algorithm == "ed25519":
        raw = derive_child_key(seed, label, b"ed25519", *context)
        pub = ed25519.Ed25519PrivateKey.from_private_bytes(raw).public_key()
        return DerivedKey("ed25519", raw, pub.public_bytes(Encoding.Raw, PublicFormat.Raw))
    raise KeyRequestError(f"unsupported algorithm {algorithm!r} (use {' or '.join(ALGORITHMS)})")


def get_key(seed: bytes, path: str, algorithm: str) -> DerivedKey:
    """The GetKey key for `path`: a 32-byte private key (secp256k1 scalar or ed25519 seed)."""
    if algorithm not in ALGORITHMS:
        raise KeyRequestError(
            f"unsupported algorithm {algorithm!r} (use {' or '.join(ALGORITHMS)})"
        )
    return _derive(seed, b"dstack-get-key", algorithm, path.encode())


def signing_key(seed: bytes, algorithm: str) -> DerivedKey:
    """Sign's key: GetKey("vms") for the algorithm (secp256k1_prehashed uses secp256k1's)."""
    if algorithm not in SIGN_ALGORITHMS:
        raise KeyRequestError(
            f"unsupported algorithm {algorithm!r} (use {', '.join(SIGN_ALGORITHMS)})"
        )
    base = "secp256k1" if algorithm == "secp256k1_prehashed" else algorithm
    return get_key(seed, SIGN_PATH, base)


def app_key(seed: bytes, app_id: bytes) -> DerivedKey:
    """The app's secp256k1 key (dstack's `k256_key`): signs element 0 of every chain.

    dstack's KMS: HKDF-SHA256(salt "RATLS", ikm root, info app_id ‖ "app-key", 32 bytes),
    refused outside [1, n-1] (probability 2^-128); a node serving dstack's GetAppKey derives
    the same key (`mpc.dstack_keys`)."""
    private = app_k256_secret(seed, app_id)
    key = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256K1())
    return DerivedKey("secp256k1", private, _k256_public(key))


def _p256(seed: bytes, label: bytes, *context: bytes) -> ec.EllipticCurvePrivateKey:
    value = _scalar(derive_child_key(seed, label, *context, length=48), _P256_ORDER)
    return ec.derive_private_key(value, ec.SECP256R1())


def ca_key(seed: bytes) -> ec.EllipticCurvePrivateKey:
    return _p256(seed, b"app-ca-p256")


def tappd_tls_key(seed: bytes, path: str) -> ec.EllipticCurvePrivateKey:
    """The legacy Tappd DeriveKey key for `path` (P-256, the same in every instance)."""
    return _p256(seed, b"dstack-derive-key", path.encode())


def app_signature(app: DerivedKey, purpose: str, public_key: bytes) -> bytes:
    """Element 0 of the chain: 65-byte r‖s‖v (v in {0, 1}, low-S) over `purpose_digest`."""
    return sign_recoverable(app.private, purpose_digest(purpose, public_key))


def recover_app_key(purpose: str, public_key: bytes, signature: bytes) -> bytes:
    """The compressed app key that made `signature` (element 0 of a chain)."""
    return recover_signer(purpose_digest(purpose, public_key), signature, "app signature")


def sign(key: DerivedKey, algorithm: str, data: bytes) -> bytes:
    """secp256k1: 64-byte r‖s over SHA-256(data) (prehashed: data is the 32-byte digest);
    ed25519: the 64-byte signature of data."""
    if key.algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(key.private).sign(data)
    digest = hashlib.sha256(data).digest() if algorithm == "secp256k1" else data
    if len(digest) != 32:
        raise KeyRequestError(
            f"secp256k1_prehashed needs a 32-byte digest, got {len(digest)} bytes"
        )
    private = ec.derive_private_key(int.from_bytes(key.private, "big"), ec.SECP256K1())
    der = private.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r, s = utils.decode_dss_signature(der)
    # Low-S, as dstack's k256 signs and as its verifiers require.
    s = min(s, _K256_ORDER - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(algorithm: str, data: bytes, signature: bytes, public_key: bytes) -> bool:
    """True iff `signature` is valid; a malformed key or signature raises KeyRequestError."""
    if algorithm == "ed25519":
        try:
            pub = ed25519.Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError:
            raise KeyRequestError("ed25519 public key must be 32 bytes") from None
        try:
            pub.verify(signature, data)
            return True
        except InvalidSignature:
            return False
    if algorithm not in ("secp256k1", "secp256k1_prehashed"):
        raise KeyRequestError(
            f"unsupported algorithm {algorithm!r} (use {', '.join(SIGN_ALGORITHMS)})"
        )
    digest = hashlib.sha256(data).digest() if algorithm == "secp256k1" else data
    if len(digest) != 32:
        raise KeyRequestError(
            f"secp256k1_prehashed needs a 32-byte digest, got {len(digest)} bytes"
        )
    if len(signature) not in (64, 65):
        raise KeyRequestError(f"secp256k1 signature must be 64 or 65 bytes, got {len(signature)}")
    try:
        point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public_key)
    except ValueError:
        raise KeyRequestError("secp256k1 public key is not a valid SEC1 point") from None
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    )
    try:
        point.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        return True
    except InvalidSignature:
        return False
