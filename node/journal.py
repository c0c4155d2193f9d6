"""The journal of in-flight epochs: what we published, durable across restarts.

One SQLite database, normally `<data_dir>/journal.sqlite3` (WAL, one connection per node,
every change in a transaction). `PRAGMA application_id` marks it as ours and
`PRAGMA user_version` carries the schema version; anything else (a foreign or corrupt
file) is a StorageError naming the path.

Tables (schema version 2):

    epochs     (epoch PK, session_id, kind, generation, outcome NULL|active|failed|abandoned,
                detail)                       one row per epoch we take part in
    published  (epoch, kind, target) PK, payload, tx_hash
                                              our chain writes (epoch key, deal, complaint,
                                              justification, confirmation, timeout), so a
                                              restart never publishes twice

Nothing here is secret: every payload is (or is about to be) public on chain, and shares
travel only as sealed shares on the board. The secrets of an in-flight epoch (our per-epoch
key, our dealing seed, our deal's ML-KEM encapsulations) are sealed files kept by
`node.epoch_secrets` next to the database, and `finish` erases them with the epoch.
(Version 1 also journaled encrypted shares delivered peer to peer; a version-1 file is
refused with its path, like any other schema.)
"""

from __future__ import annotations

import enum
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from node.epoch_secrets import DIR_NAME, EpochSecrets
from node.errors import StorageError
from node.sealing import Sealer

SCHEMA_VERSION: Final = 2
APPLICATION_ID: Final = 0x746B6A31  # "tkj1"
DB_FILE: Final = "journal.sqlite3"

_SCHEMA: Final = """
CREATE TABLE epochs (
    epoch INTEGER PRIMARY KEY,
    session_id BLOB NOT NULL,
    kind TEXT NOT NULL,
    generation INTEGER NOT NULL,
    outcome TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE published (
    epoch INTEGER NOT NULL REFERENCES epochs(epoch),
    kind TEXT NOT NULL,
    target INTEGER NOT NULL,
    payload BLOB NOT NULL,
    tx_hash TEXT NOT NULL,
    PRIMARY KEY (epoch, kind, target)
);
"""


class Outcome(enum.Enum):
    ACTIVE = "active"  # activated on chain; our share (if any) is stored
    FAILED = "failed"  # failed on chain (timeout or cancel)
    ABANDONED = "abandoned"  # we stopped following it (moved on, or our data did not match)


class Published(enum.Enum):
    EPOCH_KEY = "epoch_key"  # target 0
    DEAL = "deal"  # target 0
    COMPLAINT = "complaint"  # target: the accused dealer's index
    JUSTIFICATION = "justification"  # target: the accuser's index
    CONFIRMATION = "confirmation"  # target 0
    TIMEOUT = "timeout"  # target 0


@dataclass(frozen=True, slots=True)
class EpochRecord:
    epoch: int
    session_id: bytes
    kind: str
    generation: int
    outcome: Outcome | None
    detail: str


class Journal:
    """The journal of one node; see the module docstring. Not shared between processes."""

    def __init__(self, connection: sqlite3.Connection, path: Path, secrets: EpochSecrets):
        self._db, self.path, self.secrets = connection, path, secrets
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, sealer: Sealer) -> Journal:
        """Open (or create) the journal database at `path` (`<data_dir>/journal.sqlite3`)."""
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open the journal: {exc}") from None
        try:
            _prepare(db, path)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StorageError(f"{path}: not a usable tkms journal: {exc}") from None
        except StorageError:
            db.close()
            raise
        return cls(db, path, EpochSecrets(path.parent / DIR_NAME, sealer))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: journal write failed: {exc}") from None

    def _query(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: journal read failed: {exc}") from None

    # Epochs
    def begin_epoch(self, epoch: int, session_id: bytes, kind: str, generation: int) -> None:
        """Record that we take part in `epoch`; idempotent for the same session."""
        with self._tx() as db:
            row = db.execute("SELECT session_id FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO epochs (epoch, session_id, kind, generation) VALUES (?, ?, ?, ?)",
                    (epoch, session_id, kind, generation),
                )
            elif bytes(row[0]) != session_id:
                raise StorageError(
                    f"{self.path}: epoch {epoch} is journaled for another session "
                    "(was this data directory used with another chain or contract?)"
                )

    def epoch(self, epoch: int) -> EpochRecord | None:
        rows = self._query(
            "SELECT epoch, session_id, kind, generation, outcome, detail FROM epochs "
            "WHERE epoch = ?",
            (epoch,),
        )
        if not rows:
            return None
        e, sid, kind, generation, outcome, detail = rows[0]
        return EpochRecord(
            epoch=int(e),
            session_id=bytes(sid),
            kind=str(kind),
            generation=int(generation),
            outcome=None if outcome is None else Outcome(outcome),
            detail=str(detail),
        )

    def open_epochs(self) -> list[int]:
        """Epochs with no outcome yet, oldest first."""
        rows = self._query("SELECT epoch FROM epochs WHERE outcome IS NULL ORDER BY epoch", ())
        return [int(r[0]) for r in rows]

    def finish(self, epoch: int, outcome: Outcome, detail: str = "") -> None:
        """Record the outcome, then erase the epoch's sealed secrets (`node.epoch_secrets`).

        From here on nothing on this node opens the epoch's sealed shares on chain.
        """
        with self._tx() as db:
            db.execute(
                "UPDATE epochs SET outcome = ?, detail = ? WHERE epoch = ?",
                (outcome.value, detail, epoch),
            )
        self.secrets.erase(epoch)

    # Published chain writes
    def published(self, epoch: int, kind: Published, target: int = 0) -> bytes | None:
        """The payload we published for (kind, target), or None if we did not."""
        rows = self._query(
            "SELECT payload FROM published WHERE epoch = ? AND kind = ? AND target = ?",
            (epoch, kind.value, target),
        )
        return bytes(rows[0][0]) if rows else None

    def mark_published(
        self, epoch: int, kind: Published, target: int, payload: bytes, tx_hash: str
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO published (epoch, kind, target, payload, tx_hash) "
                "VALUES (?, ?, ?, ?, ?)",
                (epoch, kind.value, target, payload, tx_hash),
            )


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """Check the file is ours (or new and empty), create the schema, switch to WAL."""
    app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    tables = int(db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
    if app_id == 0 and version == 0 and tables == 0:
        db.execute("BEGIN IMMEDIATE")  # the schema and its markers appear together or not at all
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    elif app_id != APPLICATION_ID:
        raise StorageError(f"{path}: not a tkms journal (application_id {app_id:#x})")
    elif version != SCHEMA_VERSION:
        raise StorageError(
            f"{path}: journal schema version {version}, this node reads {SCHEMA_VERSION}"
        )
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
