"""The keys dstack's KMS hands a CVM, derived from tkms secrets (docs/dstack-kms.md).

dstack's KMS derives everything from two root keys with its `ra-tls` KDF, HKDF-SHA256 with
salt "RATLS" and the context parts plainly concatenated as info (`dstack_kdf`):

* the app's secp256k1 key: `dstack_kdf(root k256, app_id, "app-key")`, 32 bytes, a scalar in
  [1, n-1] (`app_k256_secret`); tkms uses the app's threshold seed (purpose
  `APP_ROOT_PURPOSE`, `mpc.keyschedule`) as the root, so the key is the same whether the
  guest agent derives it or a node assembles it for a dstack guest;
* an app CA (P-256): `dstack_kdf(root CA scalar, app_id, "app-ca")` (`p256_child`), here
  under the network's dstack CA key, as dstack derives it under its root CA.

Keys with no tkms equivalent get tkms-labelled HKDF children of the app seed
(`mpc.keyschedule.derive_child_key`): the disk key (with the instance id, as dstack's) and
the X25519 env key. The network's dstack CA and its public temporary CA are P-256 keys derived
from the generation's KMS root, so every node that gathered the root has the same CA and every
dstack guest of the network measures the same key provider.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mpc.encoding import frame
from mpc.errors import EncodingError, ProtocolMisuse
from mpc.k256 import check_secret
from mpc.keyschedule import SALT, derive_child_key, hkdf_sha256

#: The purpose of the app seed every dstack-style key comes from (the guest agent's too).
APP_ROOT_PURPOSE: Final = b"dstack-app-root"
#: dstack's `ra-tls` KDF salt.
DSTACK_KDF_SALT: Final = b"RATLS"
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_CA_LABEL: Final = b"tkms-dstack-ca:v1"
_TEMP_CA_LABEL: Final = b"tkms-dstack-temp-ca:v1"


def dstack_kdf(ikm: bytes, *context: bytes, length: int = 32) -> bytes:
    """dstack's `ra_tls::kdf::derive_key`: HKDF-SHA256(salt "RATLS", ikm, info = concat)."""
    return hkdf_sha256(ikm, salt=DSTACK_KDF_SALT, info=b"".join(context), length=length)


def app_k256_secret(seed: bytes, app_id: bytes) -> bytes:
    """The app's secp256k1 key (dstack's `k256_key`), its seed standing in for dstack's root.

    An output outside [1, n-1] (probability 2^-128) is refused, as k256 refuses it."""
    return check_secret(dstack_kdf(seed, app_id, b"app-key"))


def p256_child(parent: bytes, *context: bytes) -> bytes:
    """dstack's `derive_p256_key_pair_from_bytes`: a 32-byte P-256 scalar from a parent one;
    an output outside [1, n-1] is refused (p256's `SecretKey::from_slice` rule)."""
    value = dstack_kdf(parent, *context)
    if not 0 < int.from_bytes(value, "big") < P256_ORDER:
        raise EncodingError("P-256 secret", "the derived value is not in [1, n-1]")
    return value


def disk_crypt_key(seed: bytes, instance_id: bytes) -> bytes:
    """GetAppKey's `disk_crypt_key`: 32 bytes per (app, instance), as dstack scopes it."""
    return derive_child_key(seed, b"dstack-disk-crypt-key", instance_id)


def env_crypt_key(seed: bytes) -> bytes:
    """GetAppKey's `env_crypt_key`: a 32-byte X25519 secret per app."""
    return derive_child_key(seed, b"dstack-env-crypt-key")


def _p256_from_root(root: bytes, label: bytes, chain_id: int, governance: bytes, g: int) -> bytes:
    check_secret(root)
    if len(governance) != 20:
        raise ProtocolMisuse(f"governance address must be 20 bytes, got {len(governance)}")
    if g < 1:
        raise ProtocolMisuse(f"key generations start at 1, got {g}")
    info = frame(label, chain_id.to_bytes(32, "big"), governance, g.to_bytes(8, "big"))
    wide = int.from_bytes(hkdf_sha256(root, salt=SALT, info=info, length=48), "big")
    return (wide % (P256_ORDER - 1) + 1).to_bytes(32, "big")


def dstack_ca_secret(root: bytes, chain_id: int, governance: bytes, generation: int) -> bytes:
    """The network's dstack root CA key (P-256) of a generation, from its KMS root secret."""
    return _p256_from_root(root, _CA_LABEL, chain_id, governance, generation)


def dstack_temp_ca_secret(root: bytes, chain_id: int, governance: bytes, generation: int) -> bytes:
    """The temporary CA key dstack's KMS gives every caller (public by design: a certificate
    it signs proves nothing; the attestation inside does)."""
    return _p256_from_root(root, _TEMP_CA_LABEL, chain_id, governance, generation)


def p256_public_spki(secret: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of a P-256 secret (what dstack's key-provider id hexes)."""
    key = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
