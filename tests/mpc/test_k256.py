"""secp256k1 recoverable signatures in dstack's format: published vectors, an independent
ECDSA verifier (pyca/cryptography), and the canonical-form rules of dstack's verifiers."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from eth_hash.auto import keccak
from eth_keys.datatypes import PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc import k256
from mpc.errors import EncodingError, InvalidSignature

secrets_ = st.integers(1, k256.ORDER - 1).map(lambda v: v.to_bytes(32, "big"))
digests = st.binary(min_size=32, max_size=32)


def test_rfc6979_vector_private_key_one() -> None:
    """Deterministic ECDSA (RFC 6979) on secp256k1, d = 1, SHA-256("Satoshi Nakamoto"): the
    vector of Bitcoin's deterministic-signature test suites (already low-S)."""
    signature = k256.sign_recoverable(
        (1).to_bytes(32, "big"), hashlib.sha256(b"Satoshi Nakamoto").digest()
    )
    assert signature[:64].hex() == (
        "934b1ea10a4b3c1757e2b0c017d0b6143ce3c9a7e6a4a49860d7a6ab210ee3d8"
        "2442ce9d2b916064108014783e923ec36b49743e2ffa1c4496f01a512aafd9e5"
    )


def test_ecrecover_vector() -> None:
    """The classic ecrecover test vector (go-ethereum, Solidity docs): v = 28, i.e. recid 1."""
    digest = bytes.fromhex("456e9aea5e197a1f1af7a3e85a3212fa4049a3ba34c2289b4c860fc0b0c64ef3")
    signature = bytes.fromhex(
        "9242685bf161793cc25603c231bc2f568eb630ea16aa137d2664ac8038825608"
        "4f8ae3bd7535248d0bd448298cc2e2071e56992d0774dc340c368ae950852ada01"
    )
    signer = PublicKey.from_compressed_bytes(k256.recover_signer(digest, signature))
    assert signer.to_checksum_address() == "0x7156526fbD7a3C72969B54f64e42c10fbb768C8a"


@settings(max_examples=25, deadline=None)
@given(secret=secrets_, digest=digests)
def test_signatures_are_low_s_recover_their_key_and_verify_independently(
    secret: bytes, digest: bytes
) -> None:
    signature = k256.sign_recoverable(secret, digest)
    assert len(signature) == 65 and signature[64] in (0, 1)
    s = int.from_bytes(signature[32:64], "big")
    assert 2 * s <= k256.ORDER
    public = k256.public_key(secret)
    assert k256.recover_signer(digest, signature) == public
    # pyca/cryptography (OpenSSL) as an independent ECDSA verifier over the prehashed digest.
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), public)
    der = utils.encode_dss_signature(int.from_bytes(signature[:32], "big"), s)
    key.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    with pytest.raises(CryptoInvalidSignature):
        key.verify(
            der,
            bytes(32) if digest != bytes(32) else b"\x01" * 32,
            ec.ECDSA(utils.Prehashed(hashes.SHA256())),
        )


@settings(max_examples=10, deadline=None)
@given(secret=secrets_, digest=digests)
def test_the_high_s_twin_and_other_recovery_ids_are_refused(secret: bytes, digest: bytes) -> None:
    signature = k256.sign_recoverable(secret, digest)
    s = int.from_bytes(signature[32:64], "big")
    # (r, n - s) with the other parity is the same ECDSA signature: valid, but not canonical.
    twin = signature[:32] + (k256.ORDER - s).to_bytes(32, "big") + bytes([signature[64] ^ 1])
    with pytest.raises(InvalidSignature, match="high-S"):
        k256.recover_signer(digest, twin)
    for v in (2, 3, 27, 28):
        with pytest.raises(InvalidSignature, match=f"recovery id {v}"):
            k256.recover_signer(digest, signature[:64] + bytes([v]))
    # The other recovery id gives another key, never the signer.
    other = signature[:64] + bytes([signature[64] ^ 1])
    with contextlib.suppress(InvalidSignature):
        assert k256.recover_signer(digest, other) != k256.public_key(secret)


def test_malformed_signatures_are_refused_with_a_reason() -> None:
    digest = bytes(range(32))
    good = k256.sign_recoverable(b"\x07" * 32, digest)
    with pytest.raises(InvalidSignature, match="expected 65 bytes, got 64"):
        k256.recover_signer(digest, good[:64])
    zero_r = bytes(32) + good[32:]
    with pytest.raises(InvalidSignature, match=r"r or s is not in \[1, n-1\]"):
        k256.recover_signer(digest, zero_r)
    big_r = k256.ORDER.to_bytes(32, "big") + good[32:]
    with pytest.raises(InvalidSignature, match=r"r or s"):
        k256.recover_signer(digest, big_r)


def test_messages_are_dstacks() -> None:
    app_id, app_key = b"\xaa" * 20, k256.public_key(b"\x05" * 32)
    assert k256.kms_issued_digest(app_id, app_key) == keccak(
        b"dstack-kms-issued:" + app_id + app_key
    )
    assert k256.kms_message_digest(b"dstack-env-encrypt-pubkey", app_id, b"pk") == keccak(
        b"dstack-env-encrypt-pubkey:" + app_id + b"pk"
    )
    assert k256.purpose_digest("wallet", app_key) == keccak(b"wallet:" + app_key.hex().encode())


def test_secrets_and_public_keys_are_checked() -> None:
    with pytest.raises(EncodingError, match="secp256k1 secret"):
        k256.public_key(bytes(32))
    with pytest.raises(EncodingError, match="secp256k1 secret"):
        k256.public_key(k256.ORDER.to_bytes(32, "big"))
    assert k256.check_secret((k256.ORDER - 1).to_bytes(32, "big"))
    key = k256.public_key(b"\x05" * 32)
    assert k256.decode_public_key(key) == key
    with pytest.raises(EncodingError, match="33 bytes SEC1-compressed"):
        k256.decode_public_key(b"\x04" + key[1:])
    with pytest.raises(EncodingError, match="not a point"):
        k256.decode_public_key(b"\x02" + b"\xff" * 32)
    assert int.from_bytes(k256.scalar_from_wide(b"\xff" * 48), "big") < k256.ORDER
