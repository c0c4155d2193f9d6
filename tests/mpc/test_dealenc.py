"""The registered long-term deal key: serialization and strict decoding (shares do not use it)."""

from __future__ import annotations

import pytest

from mpc.dealenc import PRIVATE_KEY_SIZE, PUBLIC_KEY_SIZE, DealKeyPair, DealPublicKey
from mpc.errors import EncodingError
from tests.mpc.harness import seeded_rng


@pytest.fixture(scope="module")
def alice() -> DealKeyPair:
    return DealKeyPair.generate(seeded_rng(1))


def test_key_pairs_serialize_and_are_deterministic_from_rng(alice: DealKeyPair) -> None:
    raw = alice.private_bytes()
    assert len(raw) == PRIVATE_KEY_SIZE
    again = DealKeyPair.from_private_bytes(raw)
    assert again.public_key == alice.public_key
    assert DealKeyPair.generate(seeded_rng(1)).public_key == alice.public_key
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
