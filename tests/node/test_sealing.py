"""Sealed storage and the node identity."""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from attest import BindingLabel, compute_report_data, node_binding_content
from node.errors import StorageError
from node.identity import IDENTITY_FILE, create_identity, load_identity
from node.sealing import DstackSealer, FileSealer, read_sealed, write_atomic, write_sealed


def test_file_sealer_round_trip_and_label_binding(tmp_path: Path) -> None:
    sealer = FileSealer.open(tmp_path, create=True)
    assert (tmp_path / "sealing.key").stat().st_mode & 0o777 == 0o600
    blob = sealer.seal("share:1", b"secret share")
    assert b"secret share" not in blob
    assert sealer.unseal("share:1", blob) == b"secret share"
    with pytest.raises(StorageError, match="sealed share:2: does not unseal"):
        sealer.unseal("share:2", blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(StorageError, match="does not unseal"):
        sealer.unseal("share:1", tampered)
    with pytest.raises(StorageError, match="not a sealed blob"):
        sealer.unseal("share:1", b"plain")


def test_another_data_dir_cannot_unseal(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = FileSealer.open(tmp_path / "a", create=True)
    b = FileSealer.open(tmp_path / "b", create=True)
    with pytest.raises(StorageError, match="does not unseal"):
        b.unseal("x", a.seal("x", b"data"))


def test_missing_key_without_create(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no sealing key"):
        FileSealer.open(tmp_path, create=False)


def test_atomic_write_failure_leaves_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"old")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StorageError, match="cannot write .*f: No space left on device"):
        write_atomic(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temporary file left
    with pytest.raises(StorageError, match="cannot write"):
        write_atomic(tmp_path / "no-such-dir" / "f", b"x")


def test_atomic_write_never_goes_through_a_prepared_tmp_file_or_symlink(tmp_path: Path) -> None:
    """Security III G-10: the temporary name was fixed (`.f.tmp`) and opened without O_EXCL,
    so a file prepared there kept its mode (0644 after the rename) and a symlink was followed
    (the plaintext landed at its target)."""
    target, leak = tmp_path / "f", tmp_path / "leak"
    (tmp_path / ".f.tmp").write_bytes(b"")
    (tmp_path / ".f.tmp").chmod(0o644)
    (tmp_path / ".g.tmp").symlink_to(leak)
    write_atomic(target, b"secret", mode=0o600)
    write_atomic(tmp_path / "g", b"secret", mode=0o600)
    assert target.read_bytes() == b"secret" and target.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "g").stat().st_mode & 0o777 == 0o600 and not (tmp_path / "g").is_symlink()
    assert not leak.exists()


def test_identity_is_sealed_and_reloads(tmp_path: Path) -> None:
    sealer = FileSealer.open(tmp_path, create=True)
    identity = create_identity(tmp_path, sealer)
    raw = (tmp_path / IDENTITY_FILE).read_bytes()
    assert bytes(identity.eth_account.key) not in raw
    again = load_identity(tmp_path, sealer)
    assert again.eth_address == identity.eth_address
    assert again.deal_public_key == identity.deal_public_key
    assert again.tls_spki_der == identity.tls_spki_der
    content = node_binding_content(
        identity.tls_spki_der, identity.deal_public_key, identity.eth_address
    )
    assert again.report_data() == compute_report_data(BindingLabel.NODE_V1, content)
    assert "redacted" in repr(identity) and identity.eth_account.key.hex() not in repr(identity)
    with pytest.raises(StorageError, match="already has an identity"):
        create_identity(tmp_path, sealer)


def test_identity_does_not_load_with_another_sealing_key(tmp_path: Path) -> None:
    create_identity(tmp_path, FileSealer.open(tmp_path, create=True))
    other = FileSealer(os.urandom(32))
    with pytest.raises(StorageError, match="does not unseal"):
        load_identity(tmp_path, other)
    write_sealed(tmp_path / "junk", other, "x", b"x")
    assert read_sealed(tmp_path / "junk", other, "x") == b"x"


class _FakeGuestAgent(BaseHTTPRequestHandler):
    key_hex = "11" * 32

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["path"] == "tkms/sealing"
        payload = json.dumps({"key": self.key_hex, "signature_chain": []}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


class _UnixHTTPServer(HTTPServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)

    def get_request(self):  # type: ignore[no-untyped-def]
        request, _ = self.socket.accept()
        return request, ("local", 0)


def test_dstack_sealer_gets_its_key_from_the_guest_agent(tmp_path: Path) -> None:
    path = str(tmp_path / "dstack.sock")
    server = _UnixHTTPServer(path, _FakeGuestAgent)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sealer = DstackSealer.open(path)
        assert FileSealer(bytes.fromhex("11" * 32)).unseal("x", sealer.seal("x", b"v")) == b"v"
    finally:
        server.shutdown()
        server.server_close()


def test_dstack_sealer_reports_an_absent_agent(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="dstack guest agent at .*absent.sock"):
        DstackSealer.open(str(tmp_path / "absent.sock"))
