"""The registrar's bindings in PostgreSQL, shared by every ACMS worker of one PSI, so any worker
delivers to any logged-on ACMC (TS 23.280 10.17.3.1: an ACMC logs on by REGISTER; RFC 3327
Path kept with each contact).

The registrar reads its :class:`~mcacm_sip.sip.registrar.BindingStore` synchronously, so each
worker keeps a copy of every binding in memory (as the SQLite store's registrar reads a local
file) and keeps it current:

- its own changes: the copy first, then written behind, in order, one statement per AOR
  (delete + insert) with a ``pg_notify('mcacm_bindings', '<worker> <aor>')`` in the same
  transaction;
- the others' changes: on each notification it re-reads that AOR and tells the node
  (``on_remote(aor, before, after)``), which feeds the core its logon or logoff;
- after a lost connection (notifications missed) it re-reads every binding.

Written behind (docs/decisions.md "Scale-out: shared registrations"): a REGISTER is answered
from memory and its row follows within a round trip; a worker killed in between loses that
binding until the ACMC's next REGISTER refresh.  While the database is away the writes wait
and are retried in order (bounded back-off); the worker's own copy stays authoritative for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from mcacm_sip.sip.registrar import Binding, MemoryBindingStore
from mcacm_sip.sip.uri import Uri, address_of_record
from mcacm_sip.store.postgres import RETRY_MAX, RETRY_MIN, PostgresStore

log = logging.getLogger("mcacm.store.bindings")

CHANNEL = "mcacm_bindings"

RemoteChange = Callable[[Uri, tuple[Binding, ...], tuple[Binding, ...]], None]
"""(AOR, bindings before, bindings after) of a change another worker made."""

_PUT = """WITH gone AS (DELETE FROM bindings WHERE aor = $1),
new AS (INSERT INTO bindings (aor, contact, expires_at, call_id, cseq, path, seq)
        SELECT $1, u.contact, u.expires_at, u.call_id, u.cseq, u.path, u.seq
        FROM unnest($2::text[], $3::float8[], $4::text[], $5::int8[], $6::text[], $7::int4[])
             AS u(contact, expires_at, call_id, cseq, path, seq))
SELECT pg_notify($8, $9)"""


def _bindings(rows: list[Any]) -> tuple[Binding, ...]:
    return tuple(Binding(r["contact"], r["expires_at"], r["call_id"], r["cseq"],
                         tuple(json.loads(r["path"])) if r["path"] else ())
                 for r in sorted(rows, key=lambda r: r["seq"]))


class PgBindingStore(MemoryBindingStore):
    """A :class:`~mcacm_sip.sip.registrar.BindingStore` shared through PostgreSQL (see the
    module docstring): the registrar reads the in-memory copy; each change of ours is also
    queued for its row.  ``await open()`` before the registrar reads it; ``await close()``."""

    def __init__(self, url: str, worker_id: str, on_remote: RemoteChange | None = None) -> None:
        super().__init__()
        self.url = url
        self.worker_id = worker_id
        self.on_remote = on_remote
        self._queue: asyncio.Queue[Uri] = asyncio.Queue()
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._reloads: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._unwritten: dict[Uri, int] = {}
        """AOR -> changes of ours not yet written (our copy is newer than the row)."""

    # ------------------------------------------------------------------ BindingStore

    def put(self, aor: Uri, bindings: tuple[Binding, ...]) -> None:
        super().put(aor, bindings)
        self._unwritten[aor] = self._unwritten.get(aor, 0) + 1
        self._queue.put_nowait(aor)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect (creating the schema if needed, as the record store does) and read every
        binding; then keep the copy current in the background."""
        await self._connect()
        self._tasks = [asyncio.get_running_loop().create_task(self._write_behind()),
                       asyncio.get_running_loop().create_task(self._watch())]

    async def _connect(self) -> None:
        # the record store's connect creates or migrates the schema (one code path)
        schema = PostgresStore(self.url, self.worker_id)
        await schema.open()
        await schema.close()
        conn = await asyncpg.connect(self.url)
        await conn.add_listener(CHANNEL, self._notified)
        self._conn = conn
        await self._reload_all()
        self._connected.set()

    async def _reload_all(self) -> None:
        assert self._conn is not None
        async with self._lock:
            rows = await self._conn.fetch("SELECT * FROM bindings")
        by_aor: dict[str, list[Any]] = {}
        for r in rows:
            by_aor.setdefault(r["aor"], []).append(r)
        fresh: dict[Uri, tuple[Binding, ...]] = {}
        for text, aor_rows in by_aor.items():
            aor = address_of_record(text)
            if aor is not None:
                fresh[aor] = _bindings(aor_rows)
        for aor in set(fresh) | set(self._data):
            self._set(aor, fresh.get(aor, ()))

    def _set(self, aor: Uri, after: tuple[Binding, ...]) -> None:
        if aor in self._unwritten:
            return  # ours, not yet written: our copy is the newer
        before = self._data.get(aor, ())
        if after:
            self._data[aor] = after
        else:
            self._data.pop(aor, None)
        if before != after and self.on_remote is not None:
            self.on_remote(aor, before, after)

    def _notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        worker, _, text = str(payload).partition(" ")
        if worker == self.worker_id:
            return
        aor = address_of_record(text)
        if aor is not None:  # (kept referenced until done: the loop holds tasks weakly)
            task = asyncio.get_running_loop().create_task(self._reload(aor))
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def _reload(self, aor: Uri) -> None:
        if self._conn is None:
            return  # the reconnection re-reads everything
        try:
            async with self._lock:
                rows = await self._conn.fetch("SELECT * FROM bindings WHERE aor = $1",
                                              str(aor))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("cannot read bindings of %s: %s", aor, exc)
            return
        self._set(aor, _bindings(list(rows)))

    async def _write_behind(self) -> None:
        delay = RETRY_MIN
        while True:
            aor = await self._queue.get()
            while True:
                await self._connected.wait()
                try:
                    await self._write(aor)
                    delay = RETRY_MIN
                    left = self._unwritten.pop(aor, 1) - 1
                    if left:
                        self._unwritten[aor] = left
                    self._queue.task_done()
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                        asyncpg.InternalClientError, TimeoutError) as exc:
                    log.warning("bindings of %s not written yet: %s", aor, exc,
                                extra={"event": "store.unavailable"})
                    self._lost()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)

    async def _write(self, aor: Uri) -> None:
        assert self._conn is not None
        bindings = self._data.get(aor, ())
        cols = ([b.contact for b in bindings], [b.expires_at for b in bindings],
                [b.call_id for b in bindings], [b.cseq for b in bindings],
                [json.dumps(list(b.path)) if b.path else None for b in bindings],
                list(range(len(bindings))))
        async with self._lock:
            await self._conn.fetchval(_PUT, str(aor), *cols, CHANNEL,
                                      f"{self.worker_id} {aor}")

    def _lost(self) -> None:
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is not None:
            conn.terminate()

    async def _watch(self) -> None:
        """Reconnect after a lost connection (bounded back-off) and re-read every binding."""
        delay = RETRY_MIN
        while True:
            await asyncio.sleep(1.0 if self._connected.is_set() else delay)
            if self._conn is not None and not self._conn.is_closed():
                delay = RETRY_MIN
                continue
            self._lost()
            try:
                await self._connect()
                delay = RETRY_MIN
            except Exception as exc:
                log.warning("bindings: PostgreSQL unreachable: %s", exc)
                delay = min(delay * 2, RETRY_MAX)

    async def flush(self) -> None:
        """Wait until every change made so far is written (tests, stop)."""
        await self._queue.join()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
