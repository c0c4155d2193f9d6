"""The network's secp256k1 KMS root of a key generation, derived inside the threshold scheme.

dstack's verifiers end a key's signature chain at one secp256k1 "KMS root" key: it signs
`"dstack-kms-issued:" ‖ app_id ‖ app key` (`mpc.k256`), and a verifier compares the signer
with an anchor it trusts. Threshold ECDSA is out of scope, so tkms derives that key the way it
derives an app key (design §3.5):

    sigma_root = x·hash_to_G1(DST_KMS_ROOT, frame("tkms-kms-root:v1", chain id, governance, g))
    root       = HKDF-SHA256(ikm = sigma_root, salt = "tkms-v1",
                             info = frame("tkms-kms-root-key:v1", chain id, governance, g)),
                 48 bytes reduced into [1, n-1]

sigma_root comes out of t partials exactly like an app's sigma, under its own DST, so no app's
request reaches it, and PK2 checks it (`is_consistent_with_group_key`). Whoever gathers t
partials learns the root: nodes hand theirs only to attested committee nodes of the
generation, so the root lives in node TEEs (dstack's model for this one key; app keys stay
threshold). The network certifies the root's public key with a threshold BLS signature over
`kms_root_statement` under PK2 of generation g (`verify_kms_root`), published in governance
(`kmsRoot(g)`) as the anchor dstack-style verifiers compare with.
"""

from __future__ import annotations

from typing import Final

from mpc.derive import KeyKind, KeyRequest
from mpc.encoding import frame
from mpc.errors import InvalidSignature, ProtocolMisuse
from mpc.group import G1, G2
from mpc.k256 import decode_public_key, scalar_from_wide
from mpc.keyschedule import SALT, hkdf_sha256
from mpc.tsig import verify_signature

_REQUEST_LABEL: Final = b"tkms-kms-root:v1"
_KEY_LABEL: Final = b"tkms-kms-root-key:v1"
_STATEMENT_LABEL: Final = b"tkms-k256-root:v1"


def _context(chain_id: int, governance: bytes, generation: int) -> tuple[bytes, bytes, bytes]:
    if len(governance) != 20:
        raise ProtocolMisuse(f"governance address must be 20 bytes, got {len(governance)}")
    if generation < 1:
        raise ProtocolMisuse(f"key generations start at 1, got {generation}")
    return chain_id.to_bytes(32, "big"), governance, generation.to_bytes(8, "big")


def kms_root_request(chain_id: int, governance: bytes, generation: int) -> KeyRequest:
    """The derivation request whose sigma is generation `generation`'s KMS root material."""
    message = frame(_REQUEST_LABEL, *_context(chain_id, governance, generation))
    return KeyRequest(KeyKind.KMS_ROOT, message)


def derive_kms_root(sigma: G1, chain_id: int, governance: bytes, generation: int) -> bytes:
    """The 32-byte secp256k1 secret of the KMS root, from the combined (and checked) sigma."""
    if sigma.is_identity():
        raise ProtocolMisuse("sigma must not be the identity")
    info = frame(_KEY_LABEL, *_context(chain_id, governance, generation))
    return scalar_from_wide(hkdf_sha256(sigma.to_bytes(), salt=SALT, info=info, length=48))


def kms_root_statement(chain_id: int, governance: bytes, generation: int, public: bytes) -> bytes:
    """`tkms-k256-root:v1` ‖ chain id ‖ governance ‖ generation ‖ compressed root key."""
    key = decode_public_key(public, "KMS root public key")
    return frame(_STATEMENT_LABEL, *_context(chain_id, governance, generation), key)


def verify_kms_root(
    group_key: G2,
    *,
    chain_id: int,
    governance: bytes,
    generation: int,
    public: bytes,
    certificate: bytes,
) -> None:
    """Raise InvalidSignature unless `certificate` is the network's signature (under PK2 of
    `generation`) certifying `public` as that generation's KMS root."""
    statement = kms_root_statement(chain_id, governance, generation, public)
    if not verify_signature(group_key, statement, certificate):
        raise InvalidSignature(
            f"the KMS root {public.hex()} is not certified by generation {generation}'s key "
            "(missing or invalid tkms-k256-root:v1 certificate)"
        )
