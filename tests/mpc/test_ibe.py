"""Identity-based encryption to an app_id, decrypted with a threshold-derived identity key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc import ibe
from mpc.derive import (
    EphemeralKey,
    KeyRequest,
    NetworkContext,
    combine_partials,
    derive_partial,
    open_partial,
)
from mpc.errors import DecryptionError, ProtocolMisuse
from mpc.group import G1, G2
from mpc.types import Epoch, Generation
from tests.mpc.dealer import DealtKeys, deal, seeded_rng

APP = b"\xaa" * 20
NET = NetworkContext(chain_id=1, contract=b"\x01" * 20, generation=Generation(1), epoch=Epoch(1))


def identity_key_via_network(keys: DealtKeys, app_id: bytes) -> G1:
    """The app's IBE key obtained exactly as an app would: t partials with DST_IBE."""
    eph = EphemeralKey.generate(seeded_rng(99))
    request = KeyRequest.ibe_key(app_id)
    rng = seeded_rng(98)
    verified = [
        open_partial(
            derive_partial(s, request, requester=eph.public, network=NET, rng=rng),
            request,
            ephemeral=eph,
            verification_key=keys.public.verification_key(s.member),
            network=NET,
        )
        for s in keys.shares[: keys.threshold]
    ]
    return combine_partials(verified, keys.threshold)


KEYS = deal(3, 2, seed=11)
SK = identity_key_via_network(KEYS, APP)


@settings(max_examples=5)
@given(plaintext=st.binary(max_size=300), aad=st.binary(max_size=16))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    ct = ibe.encrypt(KEYS.group_key_g2, APP, plaintext, aad=aad)
    assert ct.startswith(b"TKIBE\x01")
    assert ibe.decrypt(SK, APP, ct, aad=aad) == plaintext


def test_encrypting_twice_gives_different_ciphertexts() -> None:
    assert ibe.encrypt(KEYS.group_key_g2, APP, b"x") != ibe.encrypt(KEYS.group_key_g2, APP, b"x")


def test_every_tampered_byte_is_refused() -> None:
    ct = ibe.encrypt(KEYS.group_key_g2, APP, b"DATABASE_PASSWORD=hunter2")
    for i in range(len(ct)):
        tampered = ct[:i] + bytes([ct[i] ^ 0x01]) + ct[i + 1 :]
        with pytest.raises(DecryptionError):
            ibe.decrypt(SK, APP, tampered)


def test_other_app_other_key_other_aad_and_truncation_are_refused() -> None:
    ct = ibe.encrypt(KEYS.group_key_g2, APP, b"secret", aad=b"env")
    other_app = b"\xbb" * 20
    with pytest.raises(DecryptionError, match="does not open"):
        ibe.decrypt(identity_key_via_network(KEYS, other_app), APP, ct, aad=b"env")
    with pytest.raises(DecryptionError, match="does not open"):
        ibe.decrypt(SK, other_app, ct, aad=b"env")
    with pytest.raises(DecryptionError, match="does not open"):
        ibe.decrypt(SK, APP, ct, aad=b"other")
    with pytest.raises(DecryptionError, match="not a tkms IBE ciphertext"):
        ibe.decrypt(SK, APP, ct[:120])
    with pytest.raises(DecryptionError, match="unsupported IBE ciphertext version 2"):
        ibe.decrypt(SK, APP, ct[:5] + b"\x02" + ct[6:])


def test_ciphertext_to_another_network_key_is_refused() -> None:
    other = deal(3, 2, seed=12)
    ct = ibe.encrypt(other.group_key_g2, APP, b"secret")
    with pytest.raises(DecryptionError):
        ibe.decrypt(SK, APP, ct)


def test_bad_encrypt_inputs() -> None:
    with pytest.raises(ProtocolMisuse, match="identity"):
        ibe.encrypt(G2.identity(), APP, b"x")
    with pytest.raises(ProtocolMisuse, match="empty"):
        ibe.encrypt(KEYS.group_key_g2, b"", b"x")
