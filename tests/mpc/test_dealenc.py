"""Deal encryption: HPKE round trip, binding of member and epoch, strict key encodings."""

from __future__ import annotations

import pytest

from mpc.dealenc import (
    CIPHERTEXT_SIZE,
    PRIVATE_KEY_SIZE,
    PUBLIC_KEY_SIZE,
    DealKeyPair,
    DealPublicKey,
    compute_deal_info,
    decrypt_share,
    encrypt_share,
)
from mpc.errors import DecryptionError, EncodingError, ProtocolMisuse
from mpc.group import R, Scalar
from tests.mpc.harness import seeded_rng

CONTRACT = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
SHARE = Scalar(0x1234_5678_9ABC)


def info(**changes: int | bytes) -> bytes:
    args: dict[str, int | bytes] = {
        "chain_id": 1,
        "contract": CONTRACT,
        "epoch": 5,
        "dealer": 2,
        "recipient": 3,
    }
    args.update(changes)
    return compute_deal_info(**args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def alice() -> DealKeyPair:
    return DealKeyPair.generate(seeded_rng(1))


@pytest.fixture(scope="module")
def bob() -> DealKeyPair:
    return DealKeyPair.generate(seeded_rng(2))


def test_a_share_opens_for_its_recipient_and_context(alice: DealKeyPair) -> None:
    ct = encrypt_share(SHARE, alice.public_key, info=info())
    assert len(ct) == CIPHERTEXT_SIZE
    assert decrypt_share(ct, alice, info=info()) == SHARE
    # HPKE is randomized: the same share encrypts differently each time.
    assert encrypt_share(SHARE, alice.public_key, info=info()) != ct


def test_a_share_for_one_member_cannot_be_opened_by_another(
    alice: DealKeyPair, bob: DealKeyPair
) -> None:
    ct = encrypt_share(SHARE, alice.public_key, info=info())
    with pytest.raises(DecryptionError, match="deal share does not decrypt"):
        decrypt_share(ct, bob, info=info())
    # Nor by claiming to be another recipient index with the right key.
    with pytest.raises(DecryptionError, match="deal share does not decrypt"):
        decrypt_share(ct, alice, info=info(recipient=4))


@pytest.mark.parametrize(
    "change",
    [{"epoch": 6}, {"epoch": 4}, {"dealer": 1}, {"chain_id": 2}, {"contract": bytes(20)}],
)
def test_a_share_cannot_be_opened_in_another_epoch_or_context(
    alice: DealKeyPair, change: dict[str, int | bytes]
) -> None:
    ct = encrypt_share(SHARE, alice.public_key, info=info())
    with pytest.raises(DecryptionError, match="deal share does not decrypt"):
        decrypt_share(ct, alice, info=info(**change))


def test_tampered_and_truncated_ciphertexts_are_rejected(alice: DealKeyPair) -> None:
    ct = encrypt_share(SHARE, alice.public_key, info=info())
    for position in (0, 1119, 1120, len(ct) - 1):
        bent = bytearray(ct)
        bent[position] ^= 0x80
        with pytest.raises(DecryptionError, match="deal share does not decrypt"):
            decrypt_share(bytes(bent), alice, info=info())
    with pytest.raises(DecryptionError, match="deal share does not decrypt"):
        decrypt_share(ct[:-1], alice, info=info())


def test_key_pairs_serialize_and_are_deterministic_from_rng(alice: DealKeyPair) -> None:
    raw = alice.private_bytes()
    assert len(raw) == PRIVATE_KEY_SIZE
    again = DealKeyPair.from_private_bytes(raw)
    assert again.public_key == alice.public_key
    assert DealKeyPair.generate(seeded_rng(1)).public_key == alice.public_key
    ct = encrypt_share(SHARE, again.public_key, info=info())
    assert decrypt_share(ct, alice, info=info()) == SHARE
    assert raw.hex() not in repr(alice) and "redacted" in repr(alice)


def test_public_key_decoding_is_strict(alice: DealKeyPair) -> None:
    raw = alice.public_key.to_bytes()
    assert len(raw) == PUBLIC_KEY_SIZE
    assert DealPublicKey.from_bytes(raw) == alice.public_key
    with pytest.raises(EncodingError, match="deal public key: expected 1216 bytes, got 1215"):
        DealPublicKey.from_bytes(raw[:-1])
    high_bit = raw[:-1] + bytes([raw[-1] | 0x80])
    with pytest.raises(EncodingError, match="X25519 part is not canonical"):
        DealPublicKey.from_bytes(high_bit)
    p_plus_1 = (2**255 - 18).to_bytes(32, "little")
    with pytest.raises(EncodingError, match="X25519 part is not canonical"):
        DealPublicKey.from_bytes(raw[:1184] + p_plus_1)
    # ML-KEM coefficients are 12-bit values < q = 3329; 0xFFF is out of range.
    with pytest.raises(EncodingError, match="ML-KEM-768 part is not a valid encapsulation key"):
        DealPublicKey.from_bytes(b"\xff" * 1184 + raw[1184:])
    with pytest.raises(EncodingError, match="deal private key: expected 96 bytes"):
        DealKeyPair.from_private_bytes(bytes(95))


def test_a_plaintext_that_is_not_a_canonical_scalar_is_a_decryption_error(
    alice: DealKeyPair,
) -> None:
    # A dealer encrypting garbage must look like any other bad share (it leads to a complaint).
    from mpc import dealenc

    ct = dealenc._SUITE.encrypt(R.to_bytes(32, "big"), alice.public_key._key, info=info())
    with pytest.raises(DecryptionError, match="deal share does not decrypt"):
        decrypt_share(ct, alice, info=info())


def test_info_arguments_are_checked() -> None:
    with pytest.raises(ProtocolMisuse, match="recipient index must be in 1..65535"):
        info(recipient=0)
    with pytest.raises(ProtocolMisuse, match="contract address must be 20 bytes"):
        info(contract=b"\x00")
    with pytest.raises(ProtocolMisuse, match="fit in 64 bits"):
        info(epoch=2**64)
    assert info(dealer=2, recipient=3) != info(dealer=3, recipient=2)
