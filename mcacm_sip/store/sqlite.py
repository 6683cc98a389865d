"""The SQLite store (WAL): the embedded default of an ACMS.

One table per record kind; flows are stored as their XML documents (``mcacm_sip.acm.codec``), so
the store holds exactly what travels on the wire.  ``synchronous=NORMAL`` by default (in WAL mode
a commit survives a process crash; a power loss may lose the last commits), ``FULL`` on request.
Indexes: pending items by owner (notifying or downloading one user's k items is O(k)), mappings
by partner id.

Schema 4 (issue 18) keeps a transaction's sends in its own row (the ``sends`` column,
:class:`~mcacm_sip.store.rows.RowSends`): the common request is one row INSERT and its later
UPDATEs, no outbox INSERT and DELETE.  Sends without a stored transaction stay rows of the
``outgoing`` table.  An older file gains the column when opened (its sends stay in the table
until their outcomes).

Schema 3 (issue 17) adds the ``groups`` table: per primary system and MC service group, what the
partner applied of group-related ACM (10.17.4); a schema-2 file gains it when opened (the table
is new and empty, nothing else changes).

Schema 2 (issue 12) adds the transaction's leg id and keys transactions and mappings by their
origin in canonical spelling; a schema-1 file is upgraded in place when opened (:func:`_upgrade`).
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Literal

from mcacm_sip.core.events import StoreChange
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.state import (
    Mapping,
    Outgoing,
    PendingItem,
    Record,
    Snapshot,
    Transaction,
)
from mcacm_sip.store.rows import (
    COLUMNS,
    LOAD,
    NULL_BOUND,
    NULLABLE,
    SCHEMA_VERSION,
    STATE_COLUMNS,
    STEP_COLUMNS,
    TABLE,
    RowSends,
    StoreError,
    last_changes,
    row_of,
    sends_in,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore", "StoreError", "open_db", "read_groups", "write"]

CHECKPOINT_INTERVAL = 0.5
"""Seconds between two WAL checkpoints of a :class:`SqliteStore`'s checkpointer thread."""
COMMIT_CHECKPOINT_PAGES = 10_000
"""WAL pages (4 KiB) after which a commit checkpoints by itself (``wal_autocheckpoint``): only
if the checkpointer thread has fallen that far behind; SQLite's default is 1 000."""

_DDL = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    key TEXT PRIMARY KEY, role TEXT NOT NULL, transaction_id TEXT NOT NULL, peer TEXT NOT NULL,
    state TEXT NOT NULL, created REAL NOT NULL, deadline REAL NOT NULL, request TEXT NOT NULL,
    indication TEXT, response TEXT, assignee TEXT, leg_id TEXT NOT NULL DEFAULT '',
    sends TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS pending (
    key TEXT PRIMARY KEY, owner TEXT NOT NULL, is_fa INTEGER NOT NULL, created REAL NOT NULL,
    flow TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pending_by_owner ON pending (owner, created);
CREATE TABLE IF NOT EXISTS outgoing (
    key TEXT PRIMARY KEY, purpose TEXT NOT NULL, hop TEXT NOT NULL, dest TEXT NOT NULL,
    flow TEXT NOT NULL, tx_key TEXT, attempts INTEGER NOT NULL, next_at REAL, give_up_at REAL,
    carries TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mappings (
    key TEXT PRIMARY KEY, side TEXT NOT NULL, peer TEXT NOT NULL, primary_id TEXT NOT NULL,
    partner_id TEXT NOT NULL, profile TEXT, removed INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS mappings_by_partner_id ON mappings (side, partner_id);
CREATE TABLE IF NOT EXISTS groups (
    key TEXT PRIMARY KEY, peer TEXT NOT NULL, group_id TEXT NOT NULL,
    provisioned INTEGER NOT NULL, members TEXT NOT NULL, updated REAL NOT NULL);
"""

def _bound(kind: str, column: str) -> str:
    """A value's place in a statement: a transaction's empty column is bound as
    :data:`NULL_BOUND`, read back as NULL (rows.py)."""
    return f"nullif(?,{NULL_BOUND})" if kind == Transaction.KIND and column in NULLABLE else "?"


_PUT_SQL = {kind: f"INSERT OR REPLACE INTO {table} VALUES "
                  f"({','.join(_bound(kind, c) for c, _ in COLUMNS[kind])})"
            for kind, table in TABLE.items()}
_REMOVE_SQL = {kind: f"DELETE FROM {table} WHERE key=?" for kind, table in TABLE.items()}
_MOVE_SQL = (f"UPDATE transactions SET "
             f"{', '.join(f'{c}={_bound(Transaction.KIND, c)}' for c in STATE_COLUMNS)} "
             f"WHERE key=?")
_STEP_SQL = f"UPDATE transactions SET {', '.join(f'{c}=?' for c in STEP_COLUMNS)} WHERE key=?"


def open_db(path: str) -> sqlite3.Connection:
    """A WAL database in autocommit mode: every write is an explicit :func:`write`.
    StoreError naming the file if it cannot be opened (no such folder, no permission)."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    return db


@contextmanager
def write(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (BEGIN IMMEDIATE ... COMMIT); rolled back if the body raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _upgrade(db: sqlite3.Connection, version: str) -> None:
    """An older file to :data:`SCHEMA_VERSION` in one write transaction.  Schema 1 -> 2
    (:func:`_rekey`); 2 -> 3: the groups table (made by the DDL); 3 -> 4: the ``sends``
    column, empty (the sends stored so far stay in the ``outgoing`` table, which schema 4
    reads as well)."""
    with write(db):
        if version == "1":
            _rekey(db)
        columns = {r[1] for r in db.execute("PRAGMA table_info(transactions)")}
        if "sends" not in columns:
            db.execute("ALTER TABLE transactions ADD COLUMN sends TEXT NOT NULL DEFAULT ''")
        db.execute("UPDATE meta SET value=? WHERE name='schema'", (str(SCHEMA_VERSION),))


def _rekey(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the leg id column (every stored transaction used its origin's id on both
    legs: ""), and every transaction, pending item, send and mapping re-keyed by
    :attr:`Transaction.key` / :attr:`Mapping.key` (origin plus id, identities canonical).
    Primary transactions were keyed by id alone; two rows can only meet under one new key if
    the old core had kept two -- it could not."""
    db.execute("ALTER TABLE transactions ADD COLUMN leg_id TEXT NOT NULL DEFAULT ''")
    for r in db.execute("SELECT * FROM transactions").fetchall():
        new = LOAD[Transaction.KIND](r).key
        if new != r["key"]:
            db.execute("UPDATE transactions SET key=? WHERE key=?", (new, r["key"]))
            db.execute("UPDATE pending SET key=? WHERE key=?", (new, r["key"]))
            # (download sends, the only ones carrying item keys, are never stored)
            db.execute("UPDATE outgoing SET tx_key=? WHERE tx_key=?", (new, r["key"]))
    for r in db.execute("SELECT * FROM mappings").fetchall():
        new = LOAD[Mapping.KIND](r).key
        if new != r["key"]:
            db.execute("UPDATE mappings SET key=? WHERE key=?", (new, r["key"]))


class _Checkpointer:
    """Checkpoints a WAL database from a thread of its own (docs/decisions.md "Round 12 (issue
    18), the tail: WAL checkpoints off the event loop").

    SQLite's automatic checkpoint runs inside the COMMIT that makes the WAL reach 1 000 pages:
    it copies them into the database file and syncs both files, 1-2 ms of CPU and 2-6 ms of
    syncs on the event loop's thread during which no request moves (every 70 procedures of
    bench/procedure.py: the slowest 1 % waited on one).  This thread runs
    ``wal_checkpoint(PASSIVE)`` on a connection of its own instead: a passive checkpoint never
    waits for or blocks a writer, and the sqlite3 module releases the GIL while SQLite works.
    Nothing of durability changes: a commit is durable in the WAL (as before), a checkpoint
    only moves committed pages into the database file."""

    def __init__(self, path: str, interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, interval),
                                        name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self, path: str, interval: float) -> None:
        try:
            db = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error:  # the commits' own checkpoints (COMMIT_CHECKPOINT_PAGES) remain
            return
        try:
            while not self._stop.wait(interval):
                # (locked, I/O error: tried again at the next tick); the next commit starts
                # the WAL over from its beginning if this checkpoint moved all of it
                with suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def stop_soon(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class SqliteStore:
    """A :class:`~mcacm_sip.store.Store` in one SQLite file (WAL).

    It remembers the transaction records its rows hold (written or loaded by it): a
    transaction that only moves on to another state (the same flows) is written as an UPDATE
    of its state columns, not its whole row with its flows again (docs/decisions.md "Round 7
    (issue 18), the store"); and where each stored send is (:class:`RowSends`): a stored
    transaction's sends are kept in its row (docs/decisions.md "Round 8 (issue 18), the
    store")."""

    def __init__(self, path: str, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> None:
        self.path = path
        self._rows: dict[str, Transaction] = {}
        """Transaction key -> the record its row holds, as of the last commit (or load)."""
        self._sends = RowSends()
        self._db = open_db(path)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        self._db.execute(f"PRAGMA wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}")
        self._db.executescript(_DDL)
        row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row["value"] in ("1", "2", "3"):
            _upgrade(self._db, row["value"])
        elif row["value"] != str(SCHEMA_VERSION):
            raise StoreError(f"{path}: schema version {row['value']}, expected {SCHEMA_VERSION}")
        # what the rows hold is known from the start of an empty file, else from load()
        self._known = self._db.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM transactions) "
            "AND NOT EXISTS (SELECT 1 FROM outgoing)").fetchone()[0] == 1
        wal = self._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        self._checkpointer = _Checkpointer(path, CHECKPOINT_INTERVAL) if wal else None
        if self._checkpointer is not None:  # a store dropped unclosed: its thread ends too
            weakref.finalize(self, self._checkpointer.stop_soon)

    def apply(self, changes: Sequence[StoreChange]) -> None:
        if not changes:
            return
        if not self._known:  # a file written before, not loaded by this store: learn it
            self.load()
        sends = self._sends
        # docs/decisions.md "Benchmarks"
        batch = last_changes(changes, self._rows, sends, NULL_BOUND)
        moved = batch.moved
        with write(self._db):
            for kind, values in batch.puts.items():
                self._db.executemany(_PUT_SQL[kind], values)
            if moved:
                steps, move_rows = batch.step_rows, batch.move_rows
                found = self._db.executemany(_STEP_SQL, steps).rowcount if steps else 0
                if move_rows:
                    found += self._db.executemany(_MOVE_SQL, move_rows).rowcount
                if found != len(moved):
                    # a row that is not there (the file was changed by another hand): whole
                    # rows (each UPDATE row ends with the sends column and the key)
                    self._db.executemany(_PUT_SQL[Transaction.KIND], [
                        row_of(t, r[-2], NULL_BOUND)
                        for t, r in zip(moved, steps + move_rows, strict=True)])
            for kind, keys in batch.removes.items():
                self._db.executemany(_REMOVE_SQL[kind], [(k,) for k in keys])
        rows = self._rows  # what the rows hold now that the commit is done
        for tx in batch.transactions:
            rows[tx.key] = tx
        for key in batch.removes.get(Transaction.KIND, ()):
            rows.pop(key, None)
        sends.committed(batch)

    def _all(self, kind: str) -> list[Record]:
        cur = self._db.execute(f"SELECT * FROM {TABLE[kind]}")
        return [LOAD[kind](r) for r in cur]

    def load(self) -> Snapshot:
        held = RowSends()
        transactions, outgoing = read_transactions(self._db, held)
        self._rows = {tx.key: tx for tx in transactions}
        self._sends = held
        self._known = True
        return Snapshot(
            transactions=tuple(transactions),
            pending=tuple(sorted((r for r in self._all(PendingItem.KIND)
                                  if isinstance(r, PendingItem)), key=lambda i: i.created)),
            outgoing=tuple(outgoing),
            mappings=tuple(r for r in self._all(Mapping.KIND) if isinstance(r, Mapping)),
            groups=tuple(r for r in self._all(PartnerGroup.KIND)
                         if isinstance(r, PartnerGroup)),
        )

    def pending_for(self, owner: str) -> list[PendingItem]:
        cur = self._db.execute(
            "SELECT * FROM pending WHERE owner=? ORDER BY created", (owner,))
        return [r for r in map(LOAD[PendingItem.KIND], cur) if isinstance(r, PendingItem)]

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._db.close()


def read_transactions(db: sqlite3.Connection, held: RowSends | None = None
                      ) -> tuple[list[Transaction], list[Outgoing]]:
    """The transactions and the sends stored in ``db`` (a schema 2-4 file): the sends in
    their transactions' rows, then those of the ``outgoing`` table; ``held``: told where each
    send is."""
    transactions: list[Transaction] = []
    outgoing: list[Outgoing] = []
    for r in db.execute("SELECT * FROM transactions"):
        tx = LOAD[Transaction.KIND](r)
        assert isinstance(tx, Transaction)
        transactions.append(tx)
        text = r["sends"]
        if text:
            sends = sends_in(tx, text)
            outgoing += sends
            if held is not None:
                held.hold(tx.key, {og.send_id: og for og in sends}, text)
    for r in db.execute("SELECT * FROM outgoing"):
        og = LOAD[Outgoing.KIND](r)
        assert isinstance(og, Outgoing)
        outgoing.append(og)
        if held is not None:
            held.tabled.add(og.send_id)
    return transactions, outgoing


def read_groups(path: str) -> list[PartnerGroup]:
    """The partner groups (10.17.4) kept in the store at ``path``, read-only: safe while the
    ACMS runs (WAL readers do not block it) and never upgrades or creates the file.  A store
    older than schema 3 holds none.  :class:`StoreError` if the file cannot be read."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {exc}") from None
    try:
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT * FROM groups ORDER BY peer, group_id").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table: groups" in str(exc):
                return []
            raise StoreError(f"{path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: {exc}") from None
        return [g for g in map(LOAD[PartnerGroup.KIND], rows) if isinstance(g, PartnerGroup)]
    finally:
        db.close()
