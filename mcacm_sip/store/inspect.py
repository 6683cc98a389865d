"""Read an ACMS's or an FA server's SQLite store while the node runs (``mcacm inspect``).

The file is opened read-only (``mode=ro`` URI, ``PRAGMA query_only``) and read in ONE deferred
read transaction: in WAL mode a reader takes no lock the writer waits for, and the snapshot is
consistent (a transaction, its pending item and its sends as of one commit).  Nothing is
written to the database, not even a checkpoint (of a stopped node's file SQLite may leave the
empty ``-wal`` / ``-shm`` companions a WAL reader needs).  Rows are decoded by the store's own
loaders (:mod:`.sqlite`); a row that cannot be decoded is reported, not fatal.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from mcacm_sip.core.fa_server import Holder
from mcacm_sip.core.state import (
    Mapping,
    Outgoing,
    PendingItem,
    Record,
    Transaction,
    TxState,
)
from mcacm_sip.store.fa import load_holders
from mcacm_sip.store.rows import LOAD, TABLE, sends_in
from mcacm_sip.store.sqlite import SCHEMA_VERSION, StoreError

WAITING_FOR: dict[TxState, str] = {
    TxState.FORWARDING: "the partner ACMS's SIP answer to the forwarded request (10.17.7.2 "
                        "step 3); retried until the answer timer",
    TxState.FORWARDED: "the partner's process indication (10.17.7.2 step 4)",
    TxState.INDICATED: "the partner's response (10.17.7.2 step 8); the answer timer expires it",
    TxState.ANSWERED: "routing the response to the requesting ACMC (10.17.7.2 step 10)",
    TxState.RECEIVED: "verification and routing (10.17.7.2 step 4)",
    TxState.WITH_ACMC: "the deciding ACMC's response (10.17.7.2 steps 6-7); the decision timer "
                       "expires it",
    TxState.RESPONDING: "the primary ACMS's SIP answer to our response (10.17.7.2 step 8); "
                        "retried until the retry limit",
    TxState.DELIVERING: "the ACMC's SIP answer to the delivered flow (10.17.7.2 step 5 / 10)",
    TxState.PENDING_USER: "the user to log on and download it (10.17.3.1 pending)",
    TxState.PENDING_FA: "the functional alias to get a holder (10.17.7.2 step 4)",
    TxState.DONE: "nothing: finished, kept until pruned",
}
"""What a transaction in each state waits for; its ``deadline`` is that wait's timer."""


class NotAStore(Exception):
    """The file is missing, not SQLite, or not an mcacm-sip store."""


@dataclass(slots=True)
class StoreView:
    """One consistent read of a store."""

    path: str
    schema: str
    transactions: list[Transaction] = field(default_factory=list)
    pending: list[PendingItem] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    mappings: list[Mapping] = field(default_factory=list)
    registrations: list[tuple[str, str, float]] = field(default_factory=list)
    """(AOR, contact, expires_at) of the registrar's bindings (who is logged on)."""
    unreadable: list[str] = field(default_factory=list)
    """``table key: reason`` of rows that could not be decoded."""


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection that never creates the file (``mode=ro``)."""
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    uri = "file:" + quote(str(Path(path).resolve())) + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA query_only=1")
    db.execute("PRAGMA busy_timeout=2000")  # only a WAL recovery by the writer makes us wait
    return db


def read_store(path: str | Path) -> StoreView:
    """Everything in the store at ``path``, as one snapshot.  Raises FileNotFoundError,
    :class:`NotAStore`, or sqlite3.Error (e.g. permission denied)."""
    db = connect_read_only(path)
    try:
        db.execute("BEGIN")  # deferred: a WAL read snapshot, no write lock
        try:
            row = db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        except sqlite3.DatabaseError as exc:  # not a database, or no meta table
            raise NotAStore(f"{path}: not an mcacm-sip store ({exc})") from None
        readable = [str(v) for v in range(1, SCHEMA_VERSION + 1)]
        if row is None or row["value"] not in readable:
            raise NotAStore(f"{path}: unknown store schema "
                            f"{row['value'] if row else '(none)'}")
        if row["value"] == "1":
            raise NotAStore(f"{path}: schema 1; start the ACMS once to upgrade it to "
                            f"{SCHEMA_VERSION}")
        view = StoreView(str(path), row["value"])
        for kind, target in ((Transaction.KIND, view.transactions),
                             (PendingItem.KIND, view.pending),
                             (Outgoing.KIND, view.outgoing), (Mapping.KIND, view.mappings)):
            for r in db.execute(f"SELECT * FROM {TABLE[kind]}"):
                try:
                    record: Record = LOAD[kind](r)
                except (StoreError, ValueError) as exc:
                    view.unreadable.append(f"{TABLE[kind]} {r['key']}: {exc}")
                    continue
                target.append(record)  # type: ignore[arg-type]  # LOAD[kind] builds kind
                if isinstance(record, Transaction) and view.schema == str(SCHEMA_VERSION):
                    try:  # schema 4: its sends kept in its row
                        view.outgoing += sends_in(record, r["sends"])
                    except (StoreError, ValueError) as exc:
                        view.unreadable.append(f"transactions {r['key']} sends: {exc}")
        has_bindings = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' "
                                  "AND name='bindings'").fetchone()
        if has_bindings:
            view.registrations = [
                (r["aor"], r["contact"], r["expires_at"]) for r in db.execute(
                    "SELECT aor, contact, expires_at FROM bindings ORDER BY aor, rowid")]
        db.execute("COMMIT")
    finally:
        db.close()
    view.transactions.sort(key=lambda t: t.created)
    view.pending.sort(key=lambda p: p.created)
    return view


@dataclass(slots=True)
class FaView:
    """One consistent read of an FA server's store (24.379 9A.2.2.3.2 stored information:
    the holders; subscriptions live in memory only)."""

    path: str
    schema: str
    holders: dict[str, tuple[Holder, ...]]
    """FA -> its holders, oldest activation first."""


def is_fa_store(path: str | Path) -> bool:
    """True if ``path`` is an FA server's store (its ``fa_holders`` table), False for anything
    else (an ACMS's store, not a database).  Raises FileNotFoundError."""
    db = connect_read_only(path)
    try:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                          "name='fa_holders'").fetchone() is not None
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()


def read_fa_store(path: str | Path) -> FaView:
    """The holders in the FA server's store at ``path``, as one snapshot.  Raises
    FileNotFoundError, :class:`NotAStore`, or sqlite3.Error."""
    db = connect_read_only(path)
    try:
        db.execute("BEGIN")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            holders = load_holders(db)
        except sqlite3.DatabaseError as exc:  # not a database, or no fa_holders table
            raise NotAStore(f"{path}: not an mcacm-sip FA server store ({exc})") from None
        db.execute("COMMIT")
    finally:
        db.close()
    return FaView(str(path), str(version), holders)


__all__ = ["WAITING_FOR", "FaView", "NotAStore", "StoreView", "connect_read_only",
           "is_fa_store", "read_fa_store", "read_store"]
