"""The epoch journal: idempotent shares, equivocation, publication records, sealed seeds, and
refusal of foreign, corrupt or newer databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from node.errors import InvalidRequest, StorageError
from node.journal import APPLICATION_ID, SCHEMA_VERSION, Journal, Outcome, Published, ShareConflict
from node.sealing import FileSealer

SID = b"\x11" * 32


@pytest.fixture
def sealer(tmp_path: Path) -> FileSealer:
    return FileSealer.open(tmp_path, create=True)


@pytest.fixture
def journal(tmp_path: Path, sealer: FileSealer) -> Journal:
    j = Journal.open(tmp_path / "journal.sqlite3", sealer)
    j.begin_epoch(4, SID, "DKG", 1)
    return j


def test_a_new_journal_is_marked_as_ours_and_in_wal_mode(journal: Journal) -> None:
    db = sqlite3.connect(journal.path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_shares_are_idempotent_and_a_different_ciphertext_is_equivocation(
    journal: Journal,
) -> None:
    assert journal.record_share(4, 2, 1, b"first") is True
    assert journal.record_share(4, 2, 1, b"first") is False
    with pytest.raises(ShareConflict, match="epoch 4: dealer 2 already delivered a different"):
        journal.record_share(4, 2, 1, b"second")
    assert issubclass(ShareConflict, InvalidRequest)
    assert journal.record_share(4, 3, 1, b"other") is True
    assert journal.received(4) == [(2, 1, b"first"), (3, 1, b"other")]
    assert journal.received(5) == []


def test_outgoing_shares_keep_the_first_ciphertexts_until_delivered(journal: Journal) -> None:
    assert journal.record_outgoing(4, {1: b"a", 2: b"b"}) == {1: b"a", 2: b"b"}
    # a restarted dealer re-encrypts: the journaled bytes win, so peers see no equivocation
    assert journal.record_outgoing(4, {1: b"x", 2: b"y"}) == {1: b"a", 2: b"b"}
    journal.mark_delivered(4, 2)
    assert journal.outgoing(4, undelivered_only=True) == {1: b"a"}


def test_publications_and_outcomes_survive_a_reopen(
    tmp_path: Path, sealer: FileSealer, journal: Journal
) -> None:
    assert journal.published(4, Published.DEAL) is None
    journal.mark_published(4, Published.DEAL, 0, b"deal-bytes", "0xabc")
    journal.mark_published(4, Published.COMPLAINT, 3, b"c", "0xdef")
    journal.begin_epoch(5, b"\x22" * 32, "RESHARE", 1)
    journal.finish(5, Outcome.FAILED, "timeout")
    journal.close()
    again = Journal.open(tmp_path / "journal.sqlite3", sealer)
    assert again.published(4, Published.DEAL) == b"deal-bytes"
    assert again.published(4, Published.COMPLAINT, 3) == b"c"
    assert again.published(4, Published.COMPLAINT, 2) is None
    assert again.open_epochs() == [4]
    record = again.epoch(5)
    assert record is not None
    assert (record.outcome, record.detail, record.kind) == (Outcome.FAILED, "timeout", "RESHARE")
    again.begin_epoch(4, SID, "DKG", 1)  # idempotent
    with pytest.raises(StorageError, match="epoch 4 is journaled for another session"):
        again.begin_epoch(4, b"\x33" * 32, "DKG", 1)


def test_the_dealing_seed_is_sealed_outside_sqlite_and_erased_at_the_end(
    tmp_path: Path, sealer: FileSealer, journal: Journal
) -> None:
    assert journal.dealing_seed(4, create=False) is None
    seed = journal.dealing_seed(4, create=True)
    assert seed is not None and len(seed) == 32
    assert journal.dealing_seed(4, create=True) == seed
    sealed = tmp_path / "dealing" / "epoch-4.sealed"
    assert sealed.exists() and seed not in sealed.read_bytes()
    journal.close()
    database = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
    assert seed not in database
    other = FileSealer(b"\x01" * 32)
    with pytest.raises(StorageError, match="does not unseal"):
        Journal.open(tmp_path / "journal.sqlite3", other).dealing_seed(4, create=False)
    again = Journal.open(tmp_path / "journal.sqlite3", sealer)
    assert again.dealing_seed(4, create=False) == seed
    again.finish(4, Outcome.ACTIVE)
    assert not sealed.exists()
    assert again.open_epochs() == []


def test_a_corrupt_file_is_a_storage_error_naming_the_path(
    tmp_path: Path, sealer: FileSealer
) -> None:
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=f"{path}: not a usable tkms journal"):
        Journal.open(path, sealer)


def test_a_foreign_database_is_refused(tmp_path: Path, sealer: FileSealer) -> None:
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match=r"not a tkms journal \(application_id 0x0\)"):
        Journal.open(path, sealer)


def test_a_newer_schema_is_refused(tmp_path: Path, sealer: FileSealer) -> None:
    path = tmp_path / "journal.sqlite3"
    Journal.open(path, sealer).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}, this node"):
        Journal.open(path, sealer)


def test_finishing_an_epoch_forgets_its_ciphertexts_on_disk(
    tmp_path: Path, journal: Journal
) -> None:
    secret_looking = bytes(range(256)) * 4
    journal.record_share(4, 2, 1, secret_looking)
    journal.record_outgoing(4, {3: secret_looking[::-1]})
    journal.finish(4, Outcome.ACTIVE)
    assert journal.received(4) == [(2, 1, b"")]
    assert journal.outgoing(4) == {}
    journal.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
    assert secret_looking[:64] not in on_disk and secret_looking[::-1][:64] not in on_disk
