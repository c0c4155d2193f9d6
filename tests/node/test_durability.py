"""Crash consistency of sealed storage: renames, deletions and new directories are synced.

A file's own fsync does not make its directory entry durable: after a power loss a renamed
share file, a deleted one or a new directory can be back to what it was. Every such change
must be followed by an fsync of the directory that holds it. Recorded here by wrapping
`os.fsync`, `os.replace`, `os.unlink` and `os.mkdir` (no strace), on the real file system.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mpc.group import Scalar
from mpc.sharing import Share
from mpc.types import MemberIndex
from node.cli import init_node_dir
from node.errors import StorageError
from node.journal import Journal
from node.sealing import FileSealer, write_atomic
from node.shares import ShareStore

Event = tuple[str, Path]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Event]]:
    """What the code under test asks of the file system, in order."""
    seen: list[Event] = []

    def fsync(fd: int) -> None:
        kind = "fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file"
        seen.append((kind, Path(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def recording(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            target = args[1] if name == "replace" else args[0]
            seen.append((name, Path(os.path.abspath(target))))
            return result

        return call

    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", recording("replace", os.replace))
    monkeypatch.setattr(os, "unlink", recording("unlink", os.unlink))
    monkeypatch.setattr(os, "mkdir", recording("mkdir", os.mkdir))
    yield seen


def synced_after(events: list[Event], op: str, path: Path) -> bool:
    """`op` on `path` happened and its directory was fsynced after it."""
    path = path.resolve()
    done = [i for i, event in enumerate(events) if event == (op, path)]
    return bool(done) and ("fsync-dir", path.parent) in events[done[-1] + 1 :]


def test_a_saved_share_is_durable_with_its_new_directory(
    tmp_path: Path, events: list[Event]
) -> None:
    store = ShareStore(tmp_path / "shares", FileSealer.open(tmp_path, create=True))
    events.clear()
    store.save(1, 2, Share(MemberIndex(3), Scalar(99)))
    share = tmp_path / "shares" / "g1-e2.sealed"
    # The data went to a temporary file (random name) that was synced before the rename.
    temporaries = [
        path
        for kind, path in events
        if kind == "fsync-file"
        and path.parent == (tmp_path / "shares").resolve()
        and path.name.startswith(".g1-e2.sealed.")
        and path.name.endswith(".tmp")
    ]
    assert len(temporaries) == 1, events
    assert synced_after(events, "replace", share)
    assert synced_after(events, "mkdir", tmp_path / "shares")
    assert store.load(1, 2).value == Scalar(99)


def test_an_erased_share_stays_erased(tmp_path: Path, events: list[Event]) -> None:
    store = ShareStore(tmp_path / "shares", FileSealer.open(tmp_path, create=True))
    store.save(1, 2, Share(MemberIndex(3), Scalar(99)))
    events.clear()
    assert store.erase(1, 2) is True
    assert synced_after(events, "unlink", tmp_path / "shares" / "g1-e2.sealed")
    events.clear()
    assert store.erase(1, 2) is False
    assert events == []  # nothing deleted, nothing to sync


def test_epoch_secrets_are_durable_when_made_and_when_erased(
    tmp_path: Path, events: list[Event]
) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite3", FileSealer.open(tmp_path, create=True))
    try:
        events.clear()
        seed = journal.secrets.dealing_seed(5, create=True)
        folder = tmp_path / "epoch-secrets"
        path = folder / "epoch-5.seed.sealed"
        assert seed is not None and path.exists()
        assert synced_after(events, "mkdir", folder)
        assert synced_after(events, "replace", path)
        events.clear()
        journal.secrets.erase(5)
        assert not path.exists()
        assert synced_after(events, "unlink", path)
    finally:
        journal.close()


def test_node_init_makes_its_data_directory_and_files_durable(
    tmp_path: Path, events: list[Event]
) -> None:
    data_dir = tmp_path / "a" / "node"
    init_node_dir(data_dir, tee="simulator", sealing="file")
    assert synced_after(events, "mkdir", tmp_path / "a")
    assert synced_after(events, "mkdir", data_dir)
    written = [p for op, p in events if op == "replace"]
    assert {p.name for p in written} >= {"sealing.key", "registration.json"}
    assert all(synced_after(events, "replace", p) for p in written)


def test_a_directory_that_cannot_be_synced_fails_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageError, match=rf"cannot sync directory {tmp_path}: Input/output"):
        write_atomic(tmp_path / "f", b"data")
