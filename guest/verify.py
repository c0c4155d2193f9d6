"""Checking the signature chain of a GetKey or Sign reply: dstack's way, and tkms's way.

For an app or a third party holding a reply of the agent (`key` or `public_key`,
`signature_chain`, and the extra `tkms` field dstack's SDKs ignore):

* dstack's check (`verify_key_chain`, `verify_sign_chain`), as its Go SDK test and its
  Python SDK's `verify_signature_chain` do it: recover the app key from chain[0] over
  keccak(purpose ":" hex(public key)), recover the KMS key from chain[1] over
  keccak("dstack-kms-issued:" ‖ app_id ‖ app key), and compare it with an anchor. Every
  signature must be 65 bytes with v in {0, 1} and low S (`mpc.k256.recover_signer`); a Sign
  reply has three elements, the first the signature itself (low S too for secp256k1).
* tkms's check (`verify_tkms_key_chain`, `verify_tkms_sign_chain`) needs no anchor but PK2 of
  the generation: the same dstack checks with the KMS root the network certified
  (`tkms-k256-root:v1`, under PK2), plus the network's own threshold signature over the app
  key (`tkms-app-pubkey:v1`), so the chain holds even if one node's TEE leaked the root.

The anchor must never come from the KMS or agent being checked: read it from governance
(`kms_root_from_chain`: `kmsRoot(g)`, whose certificate is checked under PK2 of the network
the caller's fingerprint names) or pin it. PK2 comes from `guest.committee.committee_from_chain`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts import GovernanceClient
from guest import keys
from mpc import G2, MpcError
from mpc.k256 import ORDER, decode_public_key, kms_issued_digest, purpose_digest, recover_signer
from mpc.kmsroot import verify_kms_root
from mpc.tsig import app_pubkey_statement, verify_signature


class ChainError(ValueError):
    """A signature chain that does not verify; the message says which link fails."""


@dataclass(frozen=True, slots=True)
class Certificates:
    """The `tkms` field of a GetKey or Sign reply (`guest.agent.Agent.certificates`)."""

    generation: int
    app_public_key: bytes
    app_key_certificate: bytes
    kms_root: bytes
    kms_root_certificate: bytes

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Certificates:
        try:
            generation = doc["generation"]
            if not isinstance(generation, int) or isinstance(generation, bool):
                raise ChainError("tkms.generation must be an integer")
            return cls(
                generation=generation,
                app_public_key=bytes.fromhex(doc["app_public_key"]),
                app_key_certificate=bytes.fromhex(doc["app_key_certificate"]),
                kms_root=bytes.fromhex(doc["kms_root"]),
                kms_root_certificate=bytes.fromhex(doc["kms_root_certificate"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ChainError):
                raise
            raise ChainError(f"malformed tkms field: {exc!r}") from None


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def verify_key_chain(
    purpose: str, public_key: bytes, chain: Sequence[bytes], *, app_id: bytes, kms_root: bytes
) -> bytes:
    """dstack's check of GetKey's chain for `public_key` (the derived key: compressed
    secp256k1 or raw ed25519) against the anchor `kms_root`; returns the app key."""
    if len(chain) != 2:
        raise ChainError(f"a GetKey chain has 2 signatures, got {len(chain)}")
    try:
        app = recover_signer(purpose_digest(purpose, public_key), chain[0], "chain[0]")
        kms = recover_signer(kms_issued_digest(app_id, app), chain[1], "chain[1]")
    except MpcError as exc:
        raise ChainError(str(exc)) from None
    if not _same(kms, kms_root):
        raise ChainError(f"chain[1] is signed by {kms.hex()}, not the KMS root {kms_root.hex()}")
    return app


def _check_signature(algorithm: str, data: bytes, signature: bytes, public_key: bytes) -> None:
    if algorithm in ("secp256k1", "secp256k1_prehashed"):
        if len(signature) != 64:
            raise ChainError(f"a secp256k1 signature is 64 bytes r‖s, got {len(signature)}")
        if 2 * int.from_bytes(signature[32:], "big") > ORDER:
            raise ChainError("high-S signature (s > n/2) refused")
    try:
        valid = keys.verify(algorithm, data, signature, public_key)
    except keys.KeyRequestError as exc:
        raise ChainError(str(exc)) from None
    if not valid:
        raise ChainError(f"the {algorithm} signature over the data does not verify")


def verify_sign_chain(
    algorithm: str,
    data: bytes,
    public_key: bytes,
    chain: Sequence[bytes],
    *,
    app_id: bytes,
    kms_root: bytes,
    purpose: str = keys.SIGN_PURPOSE,
) -> bytes:
    """dstack's check of Sign's chain [signature, app signature, KMS signature]; returns the
    app key."""
    if len(chain) != 3:
        raise ChainError(f"a Sign chain has 3 signatures, got {len(chain)}")
    _check_signature(algorithm, data, chain[0], public_key)
    return verify_key_chain(purpose, public_key, chain[1:], app_id=app_id, kms_root=kms_root)


def verify_certificates(
    certificates: Certificates,
    *,
    app_id: bytes,
    chain_id: int,
    governance: bytes,
    group_key: G2,
) -> None:
    """The KMS root and the app key of a reply are both certified under PK2 (`group_key`, of
    `certificates.generation`)."""
    try:
        verify_kms_root(
            group_key,
            chain_id=chain_id,
            governance=governance,
            generation=certificates.generation,
            public=certificates.kms_root,
            certificate=certificates.kms_root_certificate,
        )
    except MpcError as exc:
        raise ChainError(str(exc)) from None
    statement = app_pubkey_statement(chain_id, governance, app_id, certificates.app_public_key)
    if not verify_signature(group_key, statement, certificates.app_key_certificate):
        raise ChainError(
            f"the app key {certificates.app_public_key.hex()} of app 0x{app_id.hex()} is not "
            "certified by the network (tkms-app-pubkey:v1)"
        )


def verify_tkms_key_chain(
    purpose: str,
    public_key: bytes,
    chain: Sequence[bytes],
    certificates: Certificates,
    *,
    app_id: bytes,
    chain_id: int,
    governance: bytes,
    group_key: G2,
) -> bytes:
    """tkms's check of GetKey's chain (module docstring); returns the app key."""
    verify_certificates(
        certificates, app_id=app_id, chain_id=chain_id, governance=governance, group_key=group_key
    )
    app = verify_key_chain(
        purpose, public_key, chain, app_id=app_id, kms_root=certificates.kms_root
    )
    if not _same(app, certificates.app_public_key):
        raise ChainError(f"chain[0] is signed by {app.hex()}, not the certified app key")
    return app


def verify_tkms_sign_chain(
    algorithm: str,
    data: bytes,
    public_key: bytes,
    chain: Sequence[bytes],
    certificates: Certificates,
    *,
    app_id: bytes,
    chain_id: int,
    governance: bytes,
    group_key: G2,
) -> bytes:
    """tkms's check of Sign's chain; returns the app key."""
    if len(chain) != 3:
        raise ChainError(f"a Sign chain has 3 signatures, got {len(chain)}")
    _check_signature(algorithm, data, chain[0], public_key)
    return verify_tkms_key_chain(
        keys.SIGN_PURPOSE,
        public_key,
        chain[1:],
        certificates,
        app_id=app_id,
        chain_id=chain_id,
        governance=governance,
        group_key=group_key,
    )


def kms_root_from_chain(
    governance: GovernanceClient, generation: int, *, fingerprint: bytes
) -> bytes:
    """The anchor for dstack's check: generation `generation`'s KMS root as governance stores
    it (`kmsRoot(g)`), used only if its certificate verifies under that generation's PK2 in
    the network `fingerprint` names."""
    from guest.committee import CommitteeError, committee_from_chain

    committee = committee_from_chain(governance, generation, fingerprint=fingerprint)
    root, certificate = governance.get_kms_root(generation)
    if not root:
        raise CommitteeError(
            f"generation {generation} has no KMS root on chain yet (the governance owner "
            f"publishes it: tkms chain publish-kms-root --generation {generation})"
        )
    net = committee.network
    try:
        decode_public_key(root, "KMS root on chain")
        verify_kms_root(
            committee.group_key,
            chain_id=net.chain_id,
            governance=net.contract,
            generation=generation,
            public=root,
            certificate=certificate,
        )
    except MpcError as exc:
        raise ChainError(f"governance's KMS root of generation {generation}: {exc}") from None
    return root
