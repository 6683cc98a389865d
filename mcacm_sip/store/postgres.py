"""The PostgreSQL store (asyncpg): several ACMS workers of one PSI on one database.

Chosen by ``[store] url = "postgresql://..."`` (docs/scale-out.md).  The records and their
columns are those of the SQLite store (store/rows.py, one schema version for both); each
transaction row also carries the **worker** that holds it and its own **lease** (set at each
write), and each worker has a lease in ``workers`` that it renews (docs/decisions.md
"Scale-out: leases"); a transaction can be taken over once both have run out:

- ``apply`` (the group commit) is ONE statement, so ONE round trip: per table an
  ``INSERT ... SELECT * FROM unnest($1::text[], ...) ON CONFLICT (key) DO UPDATE`` and a
  ``DELETE ... WHERE key = ANY($n)``, as data-modifying CTEs of one statement (atomic, like one
  SQLite transaction).  The same statement renews this worker's lease once a third of it is
  used (one row, however many transactions it holds), and leaves alone (and returns the keys
  of) transactions another worker holds, with their pending items and sends.
- ``claim`` takes over expired leases of other workers with ``SELECT ... FOR UPDATE SKIP
  LOCKED`` (two claimers never take the same transaction) and returns the claimed transactions
  with their pending items and sends, for ``AdoptRecords``.
- Lease times are the database's clock (``clock_timestamp()``): workers' clocks may differ.
- A lost connection raises :class:`StoreUnavailable` (nothing stored); the next call reconnects,
  after a bounded back-off (:attr:`retry_delay`).  Other failures raise :class:`StoreError`.

Pending items and sends follow their transaction (``pending.key`` / ``outgoing.tx_key``): they
are loaded and claimed with it.  Mappings and the partner's groups are shared by all workers (no
owner).

Interface used by the runtime and by the scale-out tests (stable; docs/scale-out.md):
``PostgresStore(url, worker_id, lease_seconds=10.0)``; ``await open()`` (connect, create or
migrate the schema); ``await load() -> Snapshot`` (this worker's rows, its lease renewed, and
every mapping); ``await apply(changes) -> frozenset[str]`` (the transactions held elsewhere, not
written); ``await renew() -> int``; ``await claim(limit) -> Snapshot``;
``await shared_since() -> Snapshot`` (mappings and groups); ``await workers() -> dict[str, int]``
(transaction rows per worker, for tools and tests); ``await close()``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from mcacm_sip.core.config import DEFAULT_LEASE_SECONDS
from mcacm_sip.core.events import StoreChange
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.state import (
    Mapping,
    Outgoing,
    PendingItem,
    Record,
    Role,
    Snapshot,
    Transaction,
)
from mcacm_sip.store.rows import (
    COLUMNS,
    LOAD,
    SCHEMA_VERSION,
    TABLE,
    StoreError,
    StoreUnavailable,
    last_changes,
    sends_in,
)

log = logging.getLogger("mcacm.store.postgres")


RETRY_MIN, RETRY_MAX = 0.1, 2.0
"""Reconnection back-off bounds (seconds): doubled after each failed attempt."""

COMMAND_TIMEOUT = 10.0
"""A statement that takes longer counts as the database being unavailable (retried)."""

MAPPING_LOOKBACK = 100

SHARED = (Mapping.KIND, PartnerGroup.KIND)
"""Records every worker holds (no owner, no lease): numbered by one sequence for the feed."""

_NOW = "extract(epoch FROM clock_timestamp())"

# schema_version holds one row; migrations[n] takes a schema n database to n + 1.  Version n is
# the SQLite store's schema n (same record columns) plus the lease columns and the shared tables;
# there never was a PostgreSQL schema 1, and an empty database is created at the current one.
_CREATE = f"""
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE transactions (
    key TEXT PRIMARY KEY, role TEXT NOT NULL, transaction_id TEXT NOT NULL, peer TEXT NOT NULL,
    state TEXT NOT NULL, created FLOAT8 NOT NULL, deadline FLOAT8 NOT NULL, request TEXT NOT NULL,
    indication TEXT, response TEXT, assignee TEXT, leg_id TEXT NOT NULL DEFAULT '',
    sends TEXT NOT NULL DEFAULT '', worker TEXT NOT NULL, lease_until FLOAT8 NOT NULL);
CREATE INDEX transactions_by_worker ON transactions (worker);
CREATE INDEX transactions_by_lease ON transactions (lease_until);
CREATE TABLE workers (worker_id TEXT PRIMARY KEY, lease_until FLOAT8 NOT NULL);
CREATE TABLE pending (
    key TEXT PRIMARY KEY, owner TEXT NOT NULL, is_fa INTEGER NOT NULL, created FLOAT8 NOT NULL,
    flow TEXT NOT NULL);
CREATE INDEX pending_by_owner ON pending (owner, created);
CREATE TABLE outgoing (
    key TEXT PRIMARY KEY, purpose TEXT NOT NULL, hop TEXT NOT NULL, dest TEXT NOT NULL,
    flow TEXT NOT NULL, tx_key TEXT, attempts INTEGER NOT NULL, next_at FLOAT8,
    give_up_at FLOAT8, carries TEXT NOT NULL);
CREATE INDEX outgoing_by_tx ON outgoing (tx_key);
CREATE SEQUENCE mappings_seq;
CREATE TABLE mappings (
    key TEXT PRIMARY KEY, side TEXT NOT NULL, peer TEXT NOT NULL, primary_id TEXT NOT NULL,
    partner_id TEXT NOT NULL, profile TEXT, removed INTEGER NOT NULL,
    seq BIGINT NOT NULL DEFAULT nextval('mappings_seq'), writer TEXT NOT NULL DEFAULT '');
CREATE INDEX mappings_by_partner_id ON mappings (side, partner_id);
CREATE INDEX mappings_by_seq ON mappings (seq);
CREATE TABLE groups (
    key TEXT PRIMARY KEY, peer TEXT NOT NULL, group_id TEXT NOT NULL,
    provisioned INTEGER NOT NULL, members TEXT NOT NULL, updated FLOAT8 NOT NULL,
    seq BIGINT NOT NULL DEFAULT nextval('mappings_seq'), writer TEXT NOT NULL DEFAULT '');
CREATE INDEX groups_by_seq ON groups (seq);
CREATE TABLE bindings (
    aor TEXT NOT NULL, contact TEXT NOT NULL, expires_at FLOAT8 NOT NULL, call_id TEXT NOT NULL,
    cseq BIGINT NOT NULL, path TEXT, seq INTEGER NOT NULL);
CREATE INDEX bindings_by_aor ON bindings (aor);
CREATE TABLE fa_holders (
    fa TEXT NOT NULL, "user" TEXT NOT NULL, activated_at FLOAT8 NOT NULL,
    expires_at FLOAT8 NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (fa, "user"));
INSERT INTO schema_version VALUES ({SCHEMA_VERSION});
"""
_MIGRATIONS: dict[int, str] = {
    2: """CREATE TABLE groups (
    key TEXT PRIMARY KEY, peer TEXT NOT NULL, group_id TEXT NOT NULL,
    provisioned INTEGER NOT NULL, members TEXT NOT NULL, updated FLOAT8 NOT NULL,
    seq BIGINT NOT NULL DEFAULT nextval('mappings_seq'), writer TEXT NOT NULL DEFAULT '');
CREATE INDEX groups_by_seq ON groups (seq);
""",  # issue 17: the partner's groups, shared like mappings
    3: "ALTER TABLE transactions ADD COLUMN sends TEXT NOT NULL DEFAULT '';",
    # issue 18: a transaction's sends in its row (store/rows.py RowSends); this store writes
    # its sends as rows of outgoing (it keeps no memory of its rows) and reads both
}
"""from-version -> DDL to the next version."""

_TX = Transaction.KIND


_HEARTBEAT = (f"INSERT INTO workers AS w VALUES ($1, {_NOW} + $2) ON CONFLICT (worker_id) "
              f"DO UPDATE SET lease_until = EXCLUDED.lease_until "
              f"WHERE w.lease_until < {_NOW} + $2 * 2 / 3")
"""Renew this worker's lease (``$1``, ``$2`` seconds) once a third of it is used: one row per
worker, however many transactions it holds."""

_HELD_ELSEWHERE = "EXISTS (SELECT 1 FROM transactions t WHERE t.key = {} AND t.worker <> $1)"
"""A row whose transaction another worker holds: this worker writes nothing of it."""
_TX_OF = {PendingItem.KIND: "key", Outgoing.KIND: "tx_key"}
"""The column naming a row's transaction (pending items and sends follow their transaction)."""


def _put_cte(kind: str, first: int) -> tuple[str, int]:
    """``put_<table>``: one upsert over one array parameter per column, from ``$first``."""
    table, cols = TABLE[kind], COLUMNS[kind]
    names = ", ".join(c for c, _ in cols)
    source = (f"unnest({', '.join(f'${first + i}::{t}[]' for i, (_, t) in enumerate(cols))}) "
              f"AS u({names})")
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c, _ in cols[1:])
    if kind == _TX:  # $1 worker, $2 lease seconds; a row another worker holds is left alone
        sql = (f"put_{table} AS (INSERT INTO {table} AS x ({names}, worker, lease_until) "
               f"SELECT u.*, $1, {_NOW} + $2 FROM {source} "
               f"ON CONFLICT (key) DO UPDATE SET {updates}, worker = EXCLUDED.worker, "
               f"lease_until = EXCLUDED.lease_until WHERE x.worker = $1 RETURNING key)")
    elif kind in SHARED:
        sql = (f"put_{table} AS (INSERT INTO {table} ({names}, writer) "
               f"SELECT u.*, $1 FROM {source} ON CONFLICT (key) DO UPDATE "
               f"SET {updates}, seq = nextval('mappings_seq'), writer = $1)")
    else:
        held = _HELD_ELSEWHERE.format(f"u.{_TX_OF[kind]}")
        sql = (f"put_{table} AS (INSERT INTO {table} ({names}) SELECT u.* FROM {source} "
               f"WHERE NOT {held} ON CONFLICT (key) DO UPDATE SET {updates})")
    return sql, first + len(cols)


def _commit_sql() -> str:
    """The group commit: $1 worker, $2 lease seconds, then the column arrays of each table's
    upsert ($3: the transaction keys), then each table's keys to delete.  Returns the keys of
    the transactions it did not write because another worker holds them."""
    ctes, n = [], 3
    for kind in TABLE:
        sql, n = _put_cte(kind, n)
        ctes.append(sql)
    for kind, table in TABLE.items():
        if kind == _TX:
            mine = " AND worker = $1"
        elif kind in _TX_OF:
            mine = " AND NOT " + _HELD_ELSEWHERE.format(f"r.{_TX_OF[kind]}")
        else:
            mine = ""
        ctes.append(f"del_{table} AS (DELETE FROM {table} AS r "
                    f"WHERE r.key = ANY(${n}::text[]){mine})")
        n += 1
    # renewal (docs/decisions.md, lease rule 2): this worker's lease, once a third is used
    ctes.append(f"renew AS ({_HEARTBEAT})")
    return ("WITH " + ",\n".join(ctes) + "\nSELECT array(SELECT k FROM unnest($3::text[]) "
            "AS k EXCEPT SELECT key FROM put_transactions)")


_COMMIT = _commit_sql()
_RENEW = _HEARTBEAT + " RETURNING 1"
# a transaction is claimable once its own lease (set at each write) and its worker's have both
# run out; FOR UPDATE OF t SKIP LOCKED: rows another claimer (or a restarting holder) has
# locked are passed over, never taken twice
_CLAIM = (f"WITH c AS (SELECT t.key FROM transactions t LEFT JOIN workers w "
          f"ON w.worker_id = t.worker WHERE t.worker <> $1 AND t.lease_until < {_NOW} "
          f"AND (w.lease_until IS NULL OR w.lease_until < {_NOW}) "
          f"ORDER BY t.lease_until LIMIT $3 FOR UPDATE OF t SKIP LOCKED) "
          f"UPDATE transactions t SET worker = $1, lease_until = {_NOW} + $2 FROM c "
          f"WHERE t.key = c.key RETURNING t.*")
# a restarted worker: its lease first (no claim starts after it), then its rows, locked, so a
# claim already under way finishes first and its rows are left out
_TAKE_BACK = ("INSERT INTO workers VALUES ($1, " + _NOW + " + $2) ON CONFLICT (worker_id) "
              "DO UPDATE SET lease_until = EXCLUDED.lease_until")
_MINE = "SELECT * FROM transactions WHERE worker = $1 FOR UPDATE"
_LEG = "(CASE WHEN leg_id = '' THEN transaction_id ELSE leg_id END)"
"""A transaction's id on its other leg (``Transaction.leg``): what an answer names."""
_LEG_INDEX = f"CREATE INDEX IF NOT EXISTS transactions_by_leg ON transactions (role, {_LEG})"
"""Not part of the record schema (no version step): made at every connect if missing."""
_PENDING_OF = "SELECT * FROM pending WHERE key = ANY($1::text[]) ORDER BY created"
_OUTGOING_OF = "SELECT * FROM outgoing WHERE tx_key = ANY($1::text[])"

def redact(url: str) -> str:
    """``url`` fit for a log line: no user information, no ``password=`` parameter."""
    scheme, _, rest = url.partition("://")
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", f"{scheme}://{rest.rpartition('@')[2]}")


_TRANSIENT_CLASSES = ("08", "57", "53")  # connection exception, operator intervention, resources
_T = TypeVar("_T")


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                        asyncpg.InternalClientError,
                        asyncpg.exceptions.ConnectionDoesNotExistError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in _TRANSIENT_CLASSES
    return False


def _records(kind: str, rows: Sequence[Any]) -> list[Record]:
    return [LOAD[kind](r) for r in rows]


class PostgresStore:
    """The ACMS store in PostgreSQL, for worker ``worker_id`` (see the module docstring).

    Not safe for concurrent calls from several tasks: the runtime serialises them (one
    connection, one statement at a time; an internal lock enforces it)."""

    def __init__(self, url: str, worker_id: str,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        if not worker_id:
            raise StoreError("a PostgreSQL store needs a worker id")
        self.url = url
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._mapping_seq = 0
        self.commits = 0
        """Successful group commits (tests, bench)."""

    # ------------------------------------------------------------------ connection

    @property
    def retry_delay(self) -> float:
        """How long the next reconnection waits: 0 while connected, else the back-off."""
        if self._failures == 0:
            return 0.0
        return min(RETRY_MAX, RETRY_MIN * 2.0 ** (self._failures - 1))

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def open(self) -> None:
        """Connect and create or migrate the schema; a database that cannot be reached raises
        :class:`StoreUnavailable`, one of another schema :class:`StoreError`."""
        await self._run(lambda c: asyncio.sleep(0))

    async def _connect(self) -> asyncpg.Connection[asyncpg.Record]:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise StoreUnavailable(f"PostgreSQL unreachable, next attempt in {wait:.1f} s")
        try:
            conn = await asyncpg.connect(self.url, command_timeout=COMMAND_TIMEOUT)
        except Exception as exc:
            if isinstance(exc, asyncpg.InvalidCatalogNameError | asyncpg.InvalidPasswordError):
                raise StoreError(f"cannot use {self._where()}: {exc}") from None
            self._failed()
            raise StoreUnavailable(f"cannot connect to {self._where()}: {exc}") from None
        try:
            await self._migrate(conn)
        except Exception as exc:
            conn.terminate()
            if isinstance(exc, StoreError) or not _transient(exc):
                raise StoreError(f"cannot use {self._where()}: {exc}") from None
            self._failed()
            raise StoreUnavailable(f"cannot use {self._where()}: {exc}") from None
        if self._failures:
            log.warning("PostgreSQL %s reachable again", self._where(),
                        extra={"event": "store.reconnected"})
        self._failures = 0
        self._conn = conn
        return conn

    def _failed(self) -> None:
        self._failures += 1
        self._retry_at = time.monotonic() + self.retry_delay

    def _where(self) -> str:
        return redact(self.url)

    async def _migrate(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        async with conn.transaction():
            # one migrator at a time: workers started together must not both create the schema
            await conn.execute("SELECT pg_advisory_xact_lock(2328010)")
            exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
            if not exists:
                await conn.execute(_CREATE)
            else:
                version = await conn.fetchval("SELECT version FROM schema_version")
                while version in _MIGRATIONS:
                    await conn.execute(_MIGRATIONS[version])
                    version += 1
                    await conn.execute("UPDATE schema_version SET version = $1", version)
                if version != SCHEMA_VERSION:
                    raise StoreError(f"{self._where()}: schema version {version}, "
                                     f"expected {SCHEMA_VERSION}")
            await conn.execute(_LEG_INDEX)

    async def _run(self, work: Callable[[asyncpg.Connection[asyncpg.Record]], Awaitable[_T]]
                   ) -> _T:
        """``work`` on the connection (reconnecting first if needed); a connection failure
        drops the connection and raises :class:`StoreUnavailable`."""
        async with self._lock:
            conn = await self._connect()
            try:
                return await work(conn)
            except StoreError:
                raise
            except Exception as exc:
                # a connection the server closed (shutdown) can fail in the client's state
                # machine first (InternalClientError): a closed connection is transient
                if not _transient(exc) and not conn.is_closed():
                    raise StoreError(f"{self._where()}: {exc}") from exc
                self._conn = None
                conn.terminate()
                self._failed()
                log.warning("PostgreSQL %s unavailable: %s", self._where(), exc,
                            extra={"event": "store.unavailable"})
                raise StoreUnavailable(f"{self._where()}: {exc}") from None

    # ------------------------------------------------------------------ Store

    async def apply(self, changes: Sequence[StoreChange]) -> frozenset[str]:
        """The group commit of ``changes`` (one statement, atomic; see the module docstring);
        with no changes, only the lease renewal.  Returns the keys of the transactions it did
        not write, with none of their pending items and sends, because another worker holds
        them (taken over while this one stalled, or opened there first): the caller forgets
        them (``ReleaseRecords``)."""
        batch = last_changes(changes)
        puts, removes = batch.puts, batch.removes
        args: list[Any] = [self.worker_id, self.lease_seconds]
        for kind in TABLE:
            rows = puts.get(kind, [])
            args += [list(col) for col in zip(*rows, strict=True)] if rows else \
                [[] for _ in COLUMNS[kind]]
        for kind in TABLE:
            args.append(removes.get(kind, []))
        skipped = await self._run(lambda c: c.fetchval(_COMMIT, *args))
        self.commits += 1
        if skipped:
            log.warning("%d transactions are held by another worker: not written",
                        len(skipped), extra={"event": "store.held_elsewhere",
                                             "count": len(skipped)})
        return frozenset(skipped or ())

    async def load(self) -> Snapshot:
        """What this worker holds (its leases renewed: a restarted worker takes back what was
        not claimed meanwhile) and every mapping."""
        async def work(c: asyncpg.Connection[asyncpg.Record]) -> Snapshot:
            async with c.transaction():
                await c.execute(_TAKE_BACK, self.worker_id, self.lease_seconds)
            async with c.transaction():
                rows = await c.fetch(_MINE, self.worker_id)
                snap = await self._with_parts(c, rows)
                shared = await self._shared(c, "seq > $1", 0)
            return Snapshot(snap.transactions, snap.pending, snap.outgoing,
                            shared.mappings, shared.groups)
        return await self._run(work)

    async def _with_parts(self, c: asyncpg.Connection[asyncpg.Record],
                          rows: Sequence[asyncpg.Record]) -> Snapshot:
        keys = [r["key"] for r in rows]
        pending = await c.fetch(_PENDING_OF, keys) if keys else []
        outgoing = await c.fetch(_OUTGOING_OF, keys) if keys else []
        transactions = [t for t in _records(_TX, rows) if isinstance(t, Transaction)]
        in_rows = [og for t, r in zip(transactions, rows, strict=True)
                   for og in sends_in(t, r["sends"])]
        return Snapshot(
            transactions=tuple(transactions),
            pending=tuple(p for p in _records(PendingItem.KIND, pending)
                          if isinstance(p, PendingItem)),
            outgoing=tuple(in_rows + [o for o in _records(Outgoing.KIND, outgoing)
                                      if isinstance(o, Outgoing)]))

    async def renew(self) -> int:
        """Renew this worker's lease if a third of it is used (an idle worker: a busy one
        renews in its commits); 1 if it did, else 0."""
        status = await self._run(
            lambda c: c.execute(_RENEW, self.worker_id, self.lease_seconds))
        return int(status.rpartition(" ")[2] or 0)

    async def claim(self, limit: int = 1000) -> Snapshot:
        """Take over up to ``limit`` transactions whose lease expired (another worker's),
        with their pending items and sends, in one database transaction; ``SKIP LOCKED``: a
        row another claimer is taking is skipped, never taken twice."""
        async def work(c: asyncpg.Connection[asyncpg.Record]) -> Snapshot:
            async with c.transaction():
                rows = await c.fetch(_CLAIM, self.worker_id, self.lease_seconds, limit)
                return await self._with_parts(c, rows)
        snap = await self._run(work)
        if snap.transactions:
            log.info("claimed %d transactions with expired leases", len(snap.transactions),
                     extra={"event": "store.claimed", "count": len(snap.transactions)})
        return snap

    async def _shared(self, c: asyncpg.Connection[asyncpg.Record], where: str,
                      *args: object) -> Snapshot:
        """Mappings and groups matching ``where``; moves the feed's cursor past them."""
        rows = {kind: await c.fetch(f"SELECT * FROM {TABLE[kind]} WHERE {where} ORDER BY seq",
                                    *args) for kind in SHARED}
        self._mapping_seq = max([self._mapping_seq,
                                 *(r["seq"] for kind in SHARED for r in rows[kind])])
        return Snapshot(
            mappings=tuple(m for m in _records(Mapping.KIND, rows[Mapping.KIND])
                           if isinstance(m, Mapping)),
            groups=tuple(g for g in _records(PartnerGroup.KIND, rows[PartnerGroup.KIND])
                         if isinstance(g, PartnerGroup)))

    async def shared_since(self) -> Snapshot:
        """Mappings and groups other workers wrote since the last :meth:`load` or call (this
        worker's own are in its core already, possibly newer than the row)."""
        # a sequence number is taken at write, visible at commit: a later number can become
        # visible first, so each poll looks back MAPPING_LOOKBACK numbers (re-adopting a
        # mapping or group is idempotent)
        return await self._run(lambda c: self._shared(
            c, "seq > $1 AND writer <> $2", self._mapping_seq - MAPPING_LOOKBACK,
            self.worker_id))

    async def pending_for(self, owner: str) -> list[PendingItem]:
        """One user's (or FA's) pending items held by any worker, oldest first."""
        rows = await self._run(lambda c: c.fetch(
            "SELECT * FROM pending WHERE owner = $1 ORDER BY created", owner))
        return [p for p in _records(PendingItem.KIND, rows) if isinstance(p, PendingItem)]

    async def pending_elsewhere(self, owners: Sequence[str]) -> list[Transaction]:
        """The transactions of the pending items of ``owners`` (spellings of one user) that
        other workers hold: where that user's pending-data download belongs (10.17.3.1)."""
        rows = await self._run(lambda c: c.fetch(
            "SELECT t.* FROM pending p JOIN transactions t ON t.key = p.key "
            "WHERE p.owner = ANY($1::text[]) AND t.worker <> $2 ORDER BY p.created",
            list(owners), self.worker_id))
        return [t for t in _records(Transaction.KIND, rows) if isinstance(t, Transaction)]

    async def holds_leg(self, role: Role, leg_id: str) -> bool:
        """Whether some worker holds a transaction of ``role`` that uses ``leg_id`` on its
        other leg (what an answer names): False means it exists nowhere (never, or pruned)."""
        return bool(await self._run(lambda c: c.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM transactions WHERE role = $1 AND {_LEG} = $2)",
            role.value, leg_id)))

    async def workers(self) -> dict[str, int]:
        """Worker id -> transaction rows it holds (tools and tests)."""
        rows = await self._run(lambda c: c.fetch(
            "SELECT worker, count(*) AS n FROM transactions GROUP BY worker"))
        return {r["worker"]: r["n"] for r in rows}

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    await asyncio.wait_for(conn.close(), 5.0)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    conn.terminate()
