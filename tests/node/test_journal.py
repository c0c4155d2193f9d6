"""The epoch journal and the sealed secrets of an epoch: publication records, outcomes, the
seed, key and encapsulations sealed outside SQLite and erased with the epoch, and refusal of
foreign, corrupt, older or newer databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mpc.epochkey import EpochKeyPair
from node.errors import StorageError
from node.journal import APPLICATION_ID, SCHEMA_VERSION, Journal, Outcome, Published
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


def test_epoch_secrets_are_sealed_outside_sqlite_and_erased_with_the_epoch(
    tmp_path: Path, sealer: FileSealer, journal: Journal
) -> None:
    secrets = journal.secrets
    assert secrets.dealing_seed(4, create=False) is None
    seed = secrets.dealing_seed(4, create=True)
    assert seed is not None and len(seed) == 32
    assert secrets.dealing_seed(4, create=True) == seed
    args = {"session_id": SID, "address": b"\x07" * 20, "member": True}
    assert secrets.epoch_key(4, **args, create=False) is None  # type: ignore[arg-type]
    key = secrets.epoch_key(4, **args, create=True)  # type: ignore[arg-type]
    assert key is not None and key.public_key.proves_possession(SID, b"\x07" * 20)
    made = {2: (b"\x01" * 32, b"\x02" * 1088), 5: (b"\x03" * 32, b"\x04" * 1088)}
    secrets.save_encapsulations(4, made)
    folder = tmp_path / "epoch-secrets"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["epoch-4.kem.sealed", "epoch-4.key.sealed", "epoch-4.seed.sealed"]
    assert folder.stat().st_mode & 0o777 == 0o700
    blobs = b"".join(p.read_bytes() for p in folder.iterdir())
    assert seed not in blobs and key.private_bytes()[:32] not in blobs and b"\x01" * 32 not in blobs
    journal.close()
    database = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
    assert seed not in database
    other = FileSealer(b"\x01" * 32)
    with pytest.raises(StorageError, match="does not unseal"):
        Journal.open(tmp_path / "journal.sqlite3", other).secrets.dealing_seed(4, create=False)
    again = Journal.open(tmp_path / "journal.sqlite3", sealer)
    assert again.secrets.dealing_seed(4, create=False) == seed
    reloaded = again.secrets.epoch_key(4, **args, create=True)  # type: ignore[arg-type]
    assert isinstance(reloaded, EpochKeyPair) and reloaded.public_key == key.public_key
    assert again.secrets.encapsulations(4) == made
    assert again.secrets.epochs() == [4]
    again.finish(4, Outcome.ACTIVE)
    assert list(folder.iterdir()) == [] and again.secrets.epochs() == []
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


def test_a_version_1_journal_is_refused_with_its_path(tmp_path: Path, sealer: FileSealer) -> None:
    path = tmp_path / "journal.sqlite3"
    Journal.open(path, sealer).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match=f"{path}: journal schema version 1, this node reads 2"):
        Journal.open(path, sealer)


def test_a_restarted_dealer_rebuilds_its_deal_byte_for_byte(
    tmp_path: Path, sealer: FileSealer
) -> None:
    """ML-KEM draws its own randomness; the sealed encapsulations make a rebuilt deal identical."""
    from mpc.dkg import DkgMember
    from mpc.epochkey import EpochKeys
    from mpc.types import MemberIndex
    from node.epoch_secrets import recording_kem
    from node.epoch_state import SeededRng
    from tests.mpc.harness import epoch_key, make_context

    ctx = make_context(4, 3)
    keys = EpochKeys.from_posted(
        ctx, {a: epoch_key(ctx, a).public_key.to_bytes() for a in ctx.members}
    )
    own = epoch_key(ctx, ctx.members[1])

    def deal(journal: Journal) -> bytes:
        seed = journal.secrets.dealing_seed(9, create=True)
        assert seed is not None
        kem = recording_kem(journal.secrets, 9)
        out = DkgMember(ctx, MemberIndex(2), own, SeededRng(seed), kem).deal(keys)
        journal.secrets.save_encapsulations(9, kem.made)
        return out.public.to_bytes() + out.bundle.to_bytes()

    first = Journal.open(tmp_path / "journal.sqlite3", sealer)
    before = deal(first)
    first.close()
    again = Journal.open(tmp_path / "journal.sqlite3", sealer)
    assert deal(again) == before
    again.secrets.erase(9)
    assert deal(again) != before  # without the sealed record the ML-KEM part differs
