"""Sealing: encrypting node secrets at rest with a key only this TEE can obtain (design §6.1).

Providers:
* `file` (development only): the sealing key is 32 random bytes in `<data_dir>/sealing.key`
  (mode 0600). Anyone with the data directory can unseal; use it on testnets.
* `dstack`: the sealing key comes from the host CVM's dstack guest agent (`/GetKey` with path
  `tkms/sealing` over its unix socket), so it is bound to the node's measured identity and
  survives restarts and moves between machines, as any dstack app key does.

Sealed blob v1: b"TKSEAL" ‖ 0x01 ‖ nonce (12) ‖ AES-256-GCM(key_label, data, aad = label).
The AES key for each label is HKDF(sealing key, info = label), so blobs cannot be swapped
between labels. Writes are atomic (temp file, fsync, rename): a crash leaves the old or the
new file, never a torn one. Directory entries are made durable too: after the rename, after
deleting a file (`remove_durably`) and after creating a directory (`make_directory`) the
parent directory is fsynced, so a power loss cannot undo a save or an erasure that the node
has acted on (e.g. a share saved before the journal says the epoch is done).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpc.encoding import frame
from mpc.keyschedule import hkdf_sha256
from node.errors import StorageError

MAGIC: Final = b"TKSEAL"
VERSION: Final = 1
_NONCE: Final = 12
KEY_FILE: Final = "sealing.key"


class Sealer(Protocol):
    name: str

    def seal(self, label: str, data: bytes) -> bytes: ...

    def unseal(self, label: str, blob: bytes) -> bytes: ...


class _AeadSealer:
    name = "aead"

    def __init__(self, root_key: bytes) -> None:
        if len(root_key) != 32:
            raise StorageError(f"sealing key must be 32 bytes, got {len(root_key)}")
        self._root = root_key

    def _key(self, label: str) -> AESGCM:
        info = frame(b"tkms-seal:v1", label.encode())
        return AESGCM(hkdf_sha256(self._root, salt=b"tkms-v1", info=info, length=32))

    def seal(self, label: str, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return (
            MAGIC + bytes([VERSION]) + nonce + self._key(label).encrypt(nonce, data, label.encode())
        )

    def unseal(self, label: str, blob: bytes) -> bytes:
        header = len(MAGIC) + 1
        if len(blob) < header + _NONCE + 16 or not blob.startswith(MAGIC):
            raise StorageError(f"sealed {label}: not a sealed blob")
        if blob[len(MAGIC)] != VERSION:
            raise StorageError(f"sealed {label}: unsupported version {blob[len(MAGIC)]}")
        nonce = blob[header : header + _NONCE]
        try:
            return self._key(label).decrypt(nonce, blob[header + _NONCE :], label.encode())
        except InvalidTag:
            raise StorageError(
                f"sealed {label}: does not unseal (other sealing key, or corrupted)"
            ) from None


class FileSealer(_AeadSealer):
    """Development sealing with a key file in the data directory."""

    name = "file"

    @classmethod
    def open(cls, data_dir: Path, *, create: bool) -> FileSealer:
        path = data_dir / KEY_FILE
        if not path.exists():
            if not create:
                raise StorageError(f"{path}: no sealing key (run `tkms node init` first)")
            write_atomic(path, os.urandom(32), mode=0o600)
        key = path.read_bytes()
        return cls(key)


class DstackSealer(_AeadSealer):
    """Sealing with a key from the dstack guest agent of the CVM this node runs in."""

    name = "dstack"

    @classmethod
    def open(cls, socket_path: str | None = None) -> DstackSealer:
        path = socket_path or os.environ.get("DSTACK_SIMULATOR_ENDPOINT") or "/var/run/dstack.sock"
        reply = post_guest_agent(path, "/GetKey", {"path": "tkms/sealing", "purpose": "sealing"})
        try:
            key = bytes.fromhex(str(reply["key"]))
        except (KeyError, ValueError):
            raise StorageError(
                f"dstack guest agent at {path}: /GetKey returned no hex key"
            ) from None
        return cls(key[:32] if len(key) >= 32 else key)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def post_guest_agent(path: str, endpoint: str, body: dict[str, object]) -> dict[str, object]:
    """POST a JSON body to a dstack guest agent's unix socket and return its JSON object."""
    conn = _UnixHTTPConnection(path, timeout=10.0)
    try:
        conn.request("POST", endpoint, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
    except OSError as exc:
        raise StorageError(f"dstack guest agent at {path}: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise StorageError(f"dstack guest agent at {path}: {endpoint} answered {response.status}")
    try:
        decoded = json.loads(payload)
    except ValueError:
        raise StorageError(f"dstack guest agent at {path}: {endpoint} answered non-JSON") from None
    if not isinstance(decoded, dict):
        raise StorageError(f"dstack guest agent at {path}: {endpoint} answered a non-object")
    return decoded


def open_sealer(provider: str, data_dir: Path, *, create: bool = False) -> Sealer:
    if provider == "file":
        return FileSealer.open(data_dir, create=create)
    if provider == "dstack":
        return DstackSealer.open()
    raise StorageError(f"unknown sealing provider {provider!r} (use file or dstack)")


def fsync_directory(path: Path) -> None:
    """Make the entries of directory `path` durable: a rename, unlink or mkdir inside it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot sync directory {path}: {exc.strerror or exc}") from None


def make_directory(path: Path, *, mode: int = 0o700) -> None:
    """`mkdir -p path`, each directory it creates with `mode` and durable in its parent."""
    missing = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            if directory.is_dir():
                continue
            raise StorageError(f"cannot create {directory}: a file is in the way") from None
        except OSError as exc:
            raise StorageError(f"cannot create {directory}: {exc.strerror or exc}") from None
        fsync_directory(directory.parent)


def remove_durably(path: Path) -> bool:
    """Delete `path` and make the deletion durable; False if there was nothing to delete."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot delete {path}: {exc.strerror or exc}") from None
    fsync_directory(path.parent)
    return True


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new content,
    and once this returns, the new content (the rename is synced with the directory).

    The data goes to a new file with a random name (O_EXCL|O_NOFOLLOW: never into a file or
    through a symlink someone prepared in the directory), set to exactly `mode`, then renamed.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:  # not ours: leave whatever is there alone
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not loosen or tighten what was asked for
            view = memoryview(data)
            while view:  # a full disk can take part of a write without raising
                written = os.write(fd, view)
                if written == 0:
                    raise OSError(errno.ENOSPC, "short write")
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
    fsync_directory(path.parent)


def write_sealed(path: Path, sealer: Sealer, label: str, data: bytes) -> None:
    write_atomic(path, sealer.seal(label, data))


def read_sealed(path: Path, sealer: Sealer, label: str) -> bytes:
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return sealer.unseal(label, blob)
