"""The FA controlling server's holders in SQLite (WAL): what survives a restart.

Stored information per FA (TS 24.379 9A.2.2.3.2): its holders with activation and expiration
times, in activation order (the ACMS "first" policy relies on it).  Only holders are stored;
subscriptions are not (their subscribers re-subscribe when their dialog ends).  Each change
rewrites one FA's rows in one transaction (``synchronous=FULL``: activations are rare, and an
accepted one must survive a power loss too).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from mcacm_sip.core.fa_server import Holder
from mcacm_sip.store.sqlite import StoreError, open_db, write

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS fa_holders (
    fa TEXT NOT NULL, user TEXT NOT NULL, activated_at REAL NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (fa, user));
"""


def load_holders(db: sqlite3.Connection) -> dict[str, tuple[Holder, ...]]:
    """fa -> its holders in activation order, from an open database (also read-only: ``mcacm
    inspect``).  Raises sqlite3.Error."""
    out: dict[str, list[Holder]] = {}
    rows = db.execute(
        "SELECT fa, user, activated_at, expires_at FROM fa_holders ORDER BY rowid").fetchall()
    for fa, user, activated_at, expires_at in rows:
        out.setdefault(fa, []).append(Holder(user, activated_at, expires_at))
    return {fa: tuple(hs) for fa, hs in out.items()}


class FaStore:
    """Holders of every FA in one SQLite file; every error is a :class:`StoreError`."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = open_db(path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        try:
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StoreError(f"{path}: schema version {version}, expected {SCHEMA_VERSION}")
            # a real write at open: a read-only or corrupt file fails now, not at the first PUBLISH
            with write(self._db):
                self._db.execute(_DDL)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot use {path}: {exc}") from None
        except StoreError:
            self._db.close()
            raise

    def load(self) -> dict[str, tuple[Holder, ...]]:
        """fa -> its holders, oldest activation first (rows are rewritten in that order)."""
        try:
            return load_holders(self._db)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def save(self, fa: str, holders: Sequence[Holder]) -> None:
        """Replace the holders of ``fa`` (one transaction)."""
        try:
            with write(self._db):
                self._db.execute("DELETE FROM fa_holders WHERE fa=?", (fa,))
                self._db.executemany(
                    "INSERT INTO fa_holders VALUES (?, ?, ?, ?)",
                    [(fa, h.user, h.activated_at, h.expires_at) for h in holders])
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()
