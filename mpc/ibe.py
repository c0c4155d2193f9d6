"""Identity-based encryption of app secrets to an app_id (Boneh-Franklin, design §3.6).

Anyone can encrypt to an app using only PK2 from chain, before the app exists and with no
KMS call. With H = hash_to_G1(DST_IBE, app_id) and r random:
    U = r·G2,  K = e(H, PK2)^r = e(r·H, PK2),
    key = HKDF-SHA256(ikm = K ‖ U, salt = "tkms-ibe-v1", info = frame("tkms-ibe:v1", app_id)),
    body = AES-256-GCM(key, nonce, plaintext, aad = header ‖ frame(app_id, aad)).
The app decrypts with its identity key s·H (obtained through a derivation with DST_IBE):
K = e(s·H, U).

Ciphertext v1: b"TKIBE" ‖ 0x01 ‖ U (96) ‖ nonce (12) ‖ AES-GCM ciphertext+tag (>= 16).
Every failure to open (tampering, wrong app, wrong key, bad U) is one `DecryptionError`.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpc.derive import KeyRequest
from mpc.encoding import frame
from mpc.errors import DecryptionError, EncodingError, ProtocolMisuse
from mpc.group import G1, G2, G2_SIZE, Rng, Scalar, pairing
from mpc.keyschedule import hkdf_sha256

MAGIC: Final = b"TKIBE"
VERSION: Final = 1
_NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_HEADER_SIZE: Final = len(MAGIC) + 1 + G2_SIZE + _NONCE_SIZE


def _key(k_bytes: bytes, u_bytes: bytes, app_id: bytes) -> bytes:
    return hkdf_sha256(
        k_bytes + u_bytes, salt=b"tkms-ibe-v1", info=frame(b"tkms-ibe:v1", app_id), length=32
    )


def identity_point(app_id: bytes) -> G1:
    """H = hash_to_G1(DST_IBE, app_id): the point whose x-multiple is the app's IBE key."""
    return KeyRequest.ibe_key(app_id).point()


def encrypt(
    group_key: G2, app_id: bytes, plaintext: bytes, *, aad: bytes = b"", rng: Rng = os.urandom
) -> bytes:
    """Encrypt `plaintext` so that only holders of app_id's identity key can read it."""
    if group_key.is_identity():
        raise ProtocolMisuse("the group key must not be the identity")
    if not app_id:
        raise ProtocolMisuse("app_id must not be empty")
    r = Scalar.random(rng)
    u = G2.base_mul(r).to_bytes()
    k = pairing(identity_point(app_id) * r, group_key).to_bytes()
    nonce = rng(_NONCE_SIZE)
    header = MAGIC + bytes([VERSION]) + u + nonce
    body = AESGCM(_key(k, u, app_id)).encrypt(nonce, plaintext, header + frame(app_id, aad))
    return header + body


def decrypt(identity_key: G1, app_id: bytes, ciphertext: bytes, *, aad: bytes = b"") -> bytes:
    """Open a v1 ciphertext with the app's identity key s·H; DecryptionError on any failure."""
    if len(ciphertext) < _HEADER_SIZE + _TAG_SIZE or not ciphertext.startswith(MAGIC):
        raise DecryptionError("not a tkms IBE ciphertext")
    if ciphertext[len(MAGIC)] != VERSION:
        raise DecryptionError(f"unsupported IBE ciphertext version {ciphertext[len(MAGIC)]}")
    u_start = len(MAGIC) + 1
    u = ciphertext[u_start : u_start + G2_SIZE]
    nonce = ciphertext[u_start + G2_SIZE : _HEADER_SIZE]
    try:
        u_point = G2.from_bytes(u, "IBE ciphertext U")
    except EncodingError:
        raise DecryptionError("IBE ciphertext does not open") from None
    k = pairing(identity_key, u_point).to_bytes()
    try:
        return AESGCM(_key(k, u, app_id)).decrypt(
            nonce, ciphertext[_HEADER_SIZE:], ciphertext[:_HEADER_SIZE] + frame(app_id, aad)
        )
    except InvalidTag:
        raise DecryptionError("IBE ciphertext does not open") from None
