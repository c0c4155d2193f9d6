"""The gateway's sealed store: round trips, key generation, and refusal of wrong keys or edits."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.keystore import MAGIC, SealedStore, SealedStoreError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_put_get_round_trip_with_private_files_and_no_leftovers(tmp_path: Path) -> None:
    store = SealedStore(tmp_path / "sealed", KEY)
    assert store.get("tls-chain") is None
    store.put("tls-chain", b"chain one")
    store.put("tls-chain", b"chain two")
    assert store.get("tls-chain") == b"chain two"
    assert SealedStore(tmp_path / "sealed", KEY).get("tls-chain") == b"chain two"
    path = tmp_path / "sealed" / "tls-chain.sealed"
    assert [p.name for p in path.parent.iterdir()] == ["tls-chain.sealed"]  # no temp files
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    blob = path.read_bytes()
    assert blob.startswith(MAGIC + b"\x01")
    assert b"chain" not in blob


def test_nonces_are_fresh(tmp_path: Path) -> None:
    store = SealedStore(tmp_path, KEY)
    store.put("a", b"same")
    first = (tmp_path / "a.sealed").read_bytes()
    store.put("a", b"same")
    assert (tmp_path / "a.sealed").read_bytes() != first


def test_key_is_generated_once_and_stored_only_sealed(tmp_path: Path) -> None:
    key = SealedStore(tmp_path, KEY).load_or_create_key("acme-account")
    assert isinstance(key.curve, ec.SECP256R1)
    again = SealedStore(tmp_path, KEY).load_or_create_key("acme-account")
    assert again.private_numbers() == key.private_numbers()
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for blob in snapshot(tmp_path).values():
        assert secret not in blob
        assert der not in blob
    assert SealedStore(tmp_path, KEY).load_or_create_key("tls-key") != key


def test_wrong_sealing_key_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    SealedStore(tmp_path, KEY).load_or_create_key("tls-key")
    before = snapshot(tmp_path)
    wrong = SealedStore(tmp_path, OTHER_KEY)
    message = rf"{tmp_path}/tls-key\.sealed: cannot unseal: wrong sealing key, or .*modified"
    with pytest.raises(SealedStoreError, match=message):
        wrong.load_or_create_key("tls-key")
    with pytest.raises(SealedStoreError, match=message):
        wrong.get("tls-key")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (0, "not a sealed gateway item"),
        (len(MAGIC), "sealed format version 2, expected 1"),
        (len(MAGIC) + 1, "cannot unseal"),  # nonce
        (-1, "cannot unseal"),  # tag
        (-20, "cannot unseal"),  # ciphertext
    ],
)
def test_tampered_file_is_refused(tmp_path: Path, offset: int, expected: str) -> None:
    store = SealedStore(tmp_path, KEY)
    store.put("tls-chain", b"x" * 40)
    path = tmp_path / "tls-chain.sealed"
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x03
    path.write_bytes(bytes(blob))
    with pytest.raises(SealedStoreError, match=rf"{path}: {expected}"):
        store.get("tls-chain")
    assert path.read_bytes() == bytes(blob)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    store = SealedStore(tmp_path, KEY)
    store.put("a", b"data")
    path = tmp_path / "a.sealed"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(SealedStoreError, match=r"a\.sealed: not a sealed gateway item"):
        store.get("a")


def test_an_item_moved_to_another_name_is_refused(tmp_path: Path) -> None:
    store = SealedStore(tmp_path, KEY)
    store.put("tls-chain", b"attacker's chain")
    os.replace(tmp_path / "tls-chain.sealed", tmp_path / "acme-account-uri.sealed")
    with pytest.raises(SealedStoreError, match=r"acme-account-uri\.sealed: cannot unseal"):
        store.get("acme-account-uri")


def test_a_sealed_item_that_is_not_a_p256_key_is_refused(tmp_path: Path) -> None:
    store = SealedStore(tmp_path, KEY)
    store.put("tls-key", b"not a key")
    with pytest.raises(SealedStoreError, match=r"tls-key\.sealed: sealed item is not a private"):
        store.load_or_create_key("tls-key")
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    store.put("tls-key", p384)
    with pytest.raises(SealedStoreError, match=r"tls-key\.sealed: sealed key is not a P-256"):
        store.load_or_create_key("tls-key")


@pytest.mark.parametrize("name", ["", "../escape", "Upper", "a/b", ".hidden", "x" * 65])
def test_bad_item_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SealedStoreError, match="item name .* must match"):
        SealedStore(tmp_path, KEY).put(name, b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33)])
def test_sealing_key_must_be_32_bytes(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(SealedStoreError, match="sealing_key must be 32 bytes"):
        SealedStore(tmp_path, key)


def test_repr_does_not_show_the_sealing_key(tmp_path: Path) -> None:
    assert KEY.hex() not in repr(SealedStore(tmp_path, KEY))
    assert "redacted" in repr(SealedStore(tmp_path, KEY))
