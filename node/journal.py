"""The journal of in-flight epochs: what we received and published, durable across restarts.

One SQLite database, normally `<data_dir>/journal.sqlite3` (WAL, one connection per node,
every change in a transaction). `PRAGMA application_id` marks it as ours and
`PRAGMA user_version` carries the schema version; anything else (a foreign or corrupt
file) is a StorageError naming the path.

Tables (schema version 1):

    epochs     (epoch PK, session_id, kind, generation, outcome NULL|active|failed|abandoned,
                detail)                       one row per epoch we take part in
    received   (epoch, dealer) PK, recipient, ciphertext
                                              encrypted shares delivered to us; first wins:
                                              the same bytes again are a duplicate, other bytes
                                              an equivocation (rejected)
    outgoing   (epoch, recipient) PK, ciphertext, delivered
                                              our encrypted shares, re-sent as the same bytes
    published  (epoch, kind, target) PK, payload, tx_hash
                                              our chain writes (deal, complaint, justification,
                                              confirmation, timeout), so a restart never
                                              publishes twice

Ciphertexts are not secret (each opens only with its recipient's deal key). The one secret of
an in-flight epoch, the seed our dealing polynomial is derived from, is sealed
(`node.sealing`) in `dealing/epoch-<n>.sealed` next to the database, never stored in SQLite, and
deleted when the epoch ends, together with the epoch's ciphertexts (`finish`).
"""

from __future__ import annotations

import enum
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from node.errors import InvalidRequest, StorageError
from node.sealing import Sealer, make_directory, read_sealed, remove_durably, write_sealed

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x746B6A31  # "tkj1"
DB_FILE: Final = "journal.sqlite3"
SEED_SIZE: Final = 32

_SCHEMA: Final = """
CREATE TABLE epochs (
    epoch INTEGER PRIMARY KEY,
    session_id BLOB NOT NULL,
    kind TEXT NOT NULL,
    generation INTEGER NOT NULL,
    outcome TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE received (
    epoch INTEGER NOT NULL REFERENCES epochs(epoch),
    dealer INTEGER NOT NULL,
    recipient INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    PRIMARY KEY (epoch, dealer)
);
CREATE TABLE outgoing (
    epoch INTEGER NOT NULL REFERENCES epochs(epoch),
    recipient INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (epoch, recipient)
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
    DEAL = "deal"  # target 0
    COMPLAINT = "complaint"  # target: the accused dealer's index
    JUSTIFICATION = "justification"  # target: the accuser's index
    CONFIRMATION = "confirmation"  # target 0
    TIMEOUT = "timeout"  # target 0


class ShareConflict(InvalidRequest):
    """A dealer delivered a different ciphertext for a slot it already filled (equivocation)."""


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

    def __init__(self, connection: sqlite3.Connection, path: Path, secrets: Path, sealer: Sealer):
        self._db, self.path, self._secrets, self._sealer = connection, path, secrets, sealer
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
        return cls(db, path, path.parent / "dealing", sealer)

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
        """Record the outcome; forget the epoch's ciphertexts and its sealed dealing seed.

        The ciphertexts go too: with our long-term deal key they would give back our share of
        a superseded epoch, which is exactly what erasure after a reshare must make
        impossible. The dealers' indices stay (for `received`-based status).
        """
        with self._tx() as db:
            db.execute(
                "UPDATE epochs SET outcome = ?, detail = ? WHERE epoch = ?",
                (outcome.value, detail, epoch),
            )
            db.execute("UPDATE received SET ciphertext = x'' WHERE epoch = ?", (epoch,))
            db.execute("DELETE FROM outgoing WHERE epoch = ?", (epoch,))
        with self._lock:
            try:  # move the overwritten pages out of the WAL file too
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: journal checkpoint failed: {exc}") from None
        self.erase_dealing_seed(epoch)

    # Received shares
    def record_share(self, epoch: int, dealer: int, recipient: int, ciphertext: bytes) -> bool:
        """Store a delivered share: True if new, False if the same bytes were already stored."""
        with self._tx() as db:
            row = db.execute(
                "SELECT recipient, ciphertext FROM received WHERE epoch = ? AND dealer = ?",
                (epoch, dealer),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO received (epoch, dealer, recipient, ciphertext) "
                    "VALUES (?, ?, ?, ?)",
                    (epoch, dealer, recipient, ciphertext),
                )
                return True
        if int(row[0]) == recipient and bytes(row[1]) == ciphertext:
            return False
        raise ShareConflict(
            f"epoch {epoch}: dealer {dealer} already delivered a different share to us "
            "(equivocation); the first one is kept"
        )

    def received(self, epoch: int) -> list[tuple[int, int, bytes]]:
        """(dealer, recipient, ciphertext) of every share delivered to us in `epoch`."""
        rows = self._query(
            "SELECT dealer, recipient, ciphertext FROM received WHERE epoch = ? ORDER BY dealer",
            (epoch,),
        )
        return [(int(d), int(r), bytes(c)) for d, r, c in rows]

    # Our outgoing shares
    def record_outgoing(self, epoch: int, shares: Mapping[int, bytes]) -> dict[int, bytes]:
        """Keep the first set of outgoing ciphertexts of `epoch`; return what is stored."""
        with self._tx() as db:
            for recipient, ciphertext in shares.items():
                db.execute(
                    "INSERT OR IGNORE INTO outgoing (epoch, recipient, ciphertext) "
                    "VALUES (?, ?, ?)",
                    (epoch, recipient, ciphertext),
                )
        return self.outgoing(epoch)

    def outgoing(self, epoch: int, *, undelivered_only: bool = False) -> dict[int, bytes]:
        where = " AND delivered = 0" if undelivered_only else ""
        rows = self._query(
            f"SELECT recipient, ciphertext FROM outgoing WHERE epoch = ?{where}", (epoch,)
        )
        return {int(r): bytes(c) for r, c in rows}

    def mark_delivered(self, epoch: int, recipient: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outgoing SET delivered = 1 WHERE epoch = ? AND recipient = ?",
                (epoch, recipient),
            )

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

    # The sealed dealing seed
    def _seed_path(self, epoch: int) -> Path:
        return self._secrets / f"epoch-{epoch}.sealed"

    def dealing_seed(self, epoch: int, *, create: bool) -> bytes | None:
        """The sealed seed of our dealing polynomial in `epoch`; made (and sealed) if asked."""
        path = self._seed_path(epoch)
        label = f"tkms-dealing:v1:{epoch}"
        if path.exists():
            seed = read_sealed(path, self._sealer, label)
            if len(seed) != SEED_SIZE:
                raise StorageError(f"{path}: dealing seed is {len(seed)} bytes")
            return seed
        if not create:
            return None
        make_directory(self._secrets)
        seed = os.urandom(SEED_SIZE)
        write_sealed(path, self._sealer, label, seed)
        return seed

    def erase_dealing_seed(self, epoch: int) -> None:
        remove_durably(self._seed_path(epoch))


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
    db.execute("PRAGMA secure_delete = ON")  # deleted ciphertexts are overwritten, not kept
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
