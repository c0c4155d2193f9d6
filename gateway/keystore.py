"""The gateway's sealed store: its ACME account key, TLS key and certificate, encrypted at rest.

Every item is one file `<directory>/<name>.sealed`:

    b"TKGWSEAL" ‖ version (1 byte) ‖ nonce (12 bytes, random) ‖ AES-256-GCM ciphertext and tag

with the associated data `b"tkms-gateway-sealed\\x00" ‖ version ‖ name`, so a file renamed to
another item's name, or rewritten with another version byte, fails to open. The sealing key is
the caller's (the daemon derives it from its guest agent's `/GetKey`, which binds it to the
gateway's attested identity), so a copied data directory is useless elsewhere.

Private keys are generated in this process and written only sealed. Writes are atomic
(temporary file, fsync, rename, mode 0600). A wrong sealing key or a tampered file raises
`SealedStoreError` naming the file and leaves the store unchanged. As everywhere in Python,
key material cannot be wiped from memory; dropping a key means deleting its sealed file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC: Final = b"TKGWSEAL"
VERSION: Final = 1
_NONCE: Final = 12
_AAD_LABEL: Final = b"tkms-gateway-sealed\x00"
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SUFFIX: Final = ".sealed"


class SealedStoreError(Exception):
    """A sealed item cannot be read or written (wrong key, tampered file, bad name, I/O)."""


class SealedStore:
    """Items sealed with AES-256-GCM under `sealing_key` (32 bytes) in `directory`."""

    def __init__(self, directory: Path, sealing_key: bytes) -> None:
        if not isinstance(sealing_key, bytes) or len(sealing_key) != 32:
            raise SealedStoreError("sealing_key must be 32 bytes")
        self.directory = Path(directory)
        self._aead = AESGCM(sealing_key)

    def __repr__(self) -> str:
        return f"SealedStore({str(self.directory)!r}, <sealing key redacted>)"

    def path(self, name: str) -> Path:
        """The file that holds item `name`; the name must be a short lowercase file name."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SealedStoreError(f"item name {name!r} must match {_NAME.pattern}")
        return self.directory / (name + SUFFIX)

    def put(self, name: str, data: bytes) -> None:
        """Seal `data` as item `name`, replacing the old item atomically."""
        path = self.path(name)
        nonce = secrets.token_bytes(_NONCE)
        blob = MAGIC + bytes([VERSION]) + nonce + self._aead.encrypt(nonce, data, _aad(name))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, blob)
        except OSError as exc:
            raise SealedStoreError(f"{path}: cannot write: {exc.strerror}") from None

    def get(self, name: str) -> bytes | None:
        """Item `name` unsealed, or None if it was never stored."""
        path = self.path(name)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SealedStoreError(f"{path}: cannot read: {exc.strerror}") from None
        header = len(MAGIC) + 1 + _NONCE
        if len(blob) < header + 16 or not blob.startswith(MAGIC):
            raise SealedStoreError(f"{path}: not a sealed gateway item (bad header or too short)")
        if blob[len(MAGIC)] != VERSION:
            raise SealedStoreError(
                f"{path}: sealed format version {blob[len(MAGIC)]}, expected {VERSION}"
            )
        nonce = blob[len(MAGIC) + 1 : header]
        try:
            return self._aead.decrypt(nonce, blob[header:], _aad(name))
        except InvalidTag:
            # One message for both causes: telling them apart is impossible with AEAD.
            raise SealedStoreError(
                f"{path}: cannot unseal: wrong sealing key, or the file was modified"
            ) from None

    def load_or_create_key(self, name: str) -> ec.EllipticCurvePrivateKey:
        """The P-256 private key sealed as `name`, generated and sealed here on first use."""
        data = self.get(name)
        if data is None:
            key = ec.generate_private_key(ec.SECP256R1())
            self.put(name, _key_to_der(key))
            return key
        try:
            loaded = serialization.load_der_private_key(data, password=None)
        except ValueError:
            raise SealedStoreError(f"{self.path(name)}: sealed item is not a private key") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
            raise SealedStoreError(f"{self.path(name)}: sealed key is not a P-256 key")
        return loaded


def _aad(name: str) -> bytes:
    return _AAD_LABEL + bytes([VERSION]) + name.encode()


def _key_to_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    # The rename itself must survive a crash too.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
