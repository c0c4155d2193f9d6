"""The keys a dstack guest gets (mpc.dstack_keys): dstack's ra-tls KDF checked against an
independent HKDF (RFC 5869, `cryptography`), the app key as dstack's KMS derives it from its
root, and the CA keys bound to the network and generation."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from mpc.dstack_keys import (
    P256_ORDER,
    app_k256_secret,
    disk_crypt_key,
    dstack_ca_secret,
    dstack_kdf,
    dstack_temp_ca_secret,
    env_crypt_key,
    p256_child,
)
from mpc.errors import ProtocolMisuse
from mpc.k256 import ORDER


def _hkdf(ikm: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=b"RATLS", info=info).derive(ikm)


@given(ikm=st.binary(min_size=1, max_size=64), parts=st.lists(st.binary(max_size=24), max_size=4))
def test_the_kdf_is_hkdf_sha256_with_salt_ratls_and_the_parts_concatenated(
    ikm: bytes, parts: list[bytes]
) -> None:
    assert dstack_kdf(ikm, *parts) == _hkdf(ikm, b"".join(parts))


@given(seed=st.binary(min_size=32, max_size=32), app_id=st.binary(min_size=20, max_size=20))
def test_the_app_key_is_dstacks_derive_k256_key_from_the_seed(seed: bytes, app_id: bytes) -> None:
    key = app_k256_secret(seed, app_id)
    assert key == _hkdf(seed, app_id + b"app-key")  # kms/src/crypto.rs derive_k256_key
    assert 0 < int.from_bytes(key, "big") < ORDER


@given(parent=st.binary(min_size=32, max_size=32), app_id=st.binary(min_size=20, max_size=20))
def test_the_app_ca_key_is_dstacks_p256_child(parent: bytes, app_id: bytes) -> None:
    child = p256_child(parent, app_id, b"app-ca")
    assert child == _hkdf(parent, app_id + b"app-ca")
    assert 0 < int.from_bytes(child, "big") < P256_ORDER


def test_disk_keys_are_per_instance_and_env_keys_per_app() -> None:
    seed, other = b"\x01" * 32, b"\x02" * 32
    assert disk_crypt_key(seed, b"\x0a" * 20) != disk_crypt_key(seed, b"\x0b" * 20)
    assert disk_crypt_key(seed, b"\x0a" * 20) != disk_crypt_key(other, b"\x0a" * 20)
    assert env_crypt_key(seed) != env_crypt_key(other)
    assert len(env_crypt_key(seed)) == len(disk_crypt_key(seed, b"\x0a" * 20)) == 32


def test_the_ca_keys_are_bound_to_chain_governance_and_generation() -> None:
    root = (7).to_bytes(32, "big")
    gov = b"\x33" * 20
    ca = dstack_ca_secret(root, 1, gov, 1)
    assert ca == dstack_ca_secret(root, 1, gov, 1)  # every node derives the same CA
    others = {
        dstack_ca_secret(root, 2, gov, 1),
        dstack_ca_secret(root, 1, b"\x34" * 20, 1),
        dstack_ca_secret(root, 1, gov, 2),
        dstack_ca_secret((8).to_bytes(32, "big"), 1, gov, 1),
        dstack_temp_ca_secret(root, 1, gov, 1),
    }
    assert ca not in others and len(others) == 5
    with pytest.raises(ProtocolMisuse, match="generations start at 1"):
        dstack_ca_secret(root, 1, gov, 0)
    with pytest.raises(ProtocolMisuse, match="20 bytes"):
        dstack_ca_secret(root, 1, gov[:19], 1)
