"""The HKDF key schedule from a combined sigma to an app's keys (design §3.4).

seed = HKDF-SHA256(ikm = compressed sigma, salt = "tkms-v1",
                   info = frame("tkms-app-seed:v1", generation, app_id, purpose)), 32 bytes.
Every further key (dstack GetKey paths, disk keys with the instance id, ...) is an HKDF
child of that seed: HKDF-SHA256(ikm = seed, salt = "tkms-v1",
info = frame("tkms-child:v1", label, *context)). HKDF itself is `cryptography`'s (RFC 5869).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mpc.encoding import frame
from mpc.errors import ProtocolMisuse
from mpc.group import G1
from mpc.types import Generation

SALT = b"tkms-v1"
SEED_SIZE = 32


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256 (extract then expand)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def derive_app_seed(sigma: G1, *, generation: Generation, app_id: bytes, purpose: bytes) -> bytes:
    """The 32-byte root secret of (generation, app_id, purpose)."""
    if sigma.is_identity():
        raise ProtocolMisuse("sigma must not be the identity")
    info = frame(b"tkms-app-seed:v1", generation.to_bytes(8, "big"), app_id, purpose)
    return hkdf_sha256(sigma.to_bytes(), salt=SALT, info=info, length=SEED_SIZE)


def derive_child_key(seed: bytes, label: bytes, *context: bytes, length: int = 32) -> bytes:
    """A child key of `seed` for `label` and context values (e.g. a path, an instance id)."""
    if len(seed) != SEED_SIZE:
        raise ProtocolMisuse(f"seed must be {SEED_SIZE} bytes, got {len(seed)}")
    if not label:
        raise ProtocolMisuse("a child key needs a non-empty label")
    info = frame(b"tkms-child:v1", label, *context)
    return hkdf_sha256(seed, salt=SALT, info=info, length=length)
