"""The FA controlling server's holders in PostgreSQL (``[store] url`` of the FA server):
the same stored information as store/fa.py (TS 24.379 9A.2.2.3.2: each FA's holders with
activation and expiration times, in activation order), in the ``fa_holders`` table of the
shared schema (store/postgres.py), so the FA server needs no local disk and a standby
started on another machine continues from it.

The FA server stays ONE process (its subscriptions and the holders it decides on are in its
memory; docs/scale-out.md "What is shared where").  Its interface is synchronous, like
:class:`~mcacm_sip.store.fa.FaStore`: activations are rare and an accepted one must be stored
before its 200, so each :meth:`save` waits for its commit, run on a private event loop in a
helper thread (asyncpg is async).  Every error is a :class:`StoreError`: the node stops, as
with SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import asyncpg

from mcacm_sip.core.fa_server import Holder
from mcacm_sip.store.postgres import COMMAND_TIMEOUT, PostgresStore
from mcacm_sip.store.rows import StoreError

_T = TypeVar("_T")

_SAVE = """INSERT INTO fa_holders (fa, "user", activated_at, expires_at, seq)
SELECT $1, u.usr, u.activated_at, u.expires_at, u.seq
FROM unnest($2::text[], $3::float8[], $4::float8[], $5::int4[])
     AS u(usr, activated_at, expires_at, seq)"""


class PgFaStore:
    """Holders of every FA in PostgreSQL; the interface of :class:`~mcacm_sip.store.fa.FaStore`
    (``load``, ``save``, ``close``), every error a :class:`StoreError`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="mcacm-pg-fa")
        self._thread.start()
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        try:
            self._call(self._open())
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(COMMAND_TIMEOUT + 5)
        except StoreError:
            raise
        except Exception as exc:
            future.cancel()
            raise StoreError(f"FA holders in PostgreSQL: {exc}") from None

    async def _open(self) -> None:
        schema = PostgresStore(self.url, "fa-server")  # creates or migrates the schema
        await schema.open()
        await schema.close()
        self._conn = await asyncpg.connect(self.url, command_timeout=COMMAND_TIMEOUT)

    def load(self) -> dict[str, tuple[Holder, ...]]:
        """fa -> its holders, oldest activation first."""
        async def work() -> list[asyncpg.Record]:
            assert self._conn is not None
            return await self._conn.fetch(
                'SELECT fa, "user", activated_at, expires_at FROM fa_holders ORDER BY fa, seq')
        out: dict[str, list[Holder]] = {}
        for r in self._call(work()):
            out.setdefault(r["fa"], []).append(
                Holder(r["user"], r["activated_at"], r["expires_at"]))
        return {fa: tuple(hs) for fa, hs in out.items()}

    def save(self, fa: str, holders: Sequence[Holder]) -> None:
        """Replace the holders of ``fa`` (one transaction), waiting for the commit."""
        async def work() -> None:
            assert self._conn is not None
            async with self._conn.transaction():  # (a CTE's DELETE would not free the keys)
                await self._conn.execute("DELETE FROM fa_holders WHERE fa = $1", fa)
                await self._conn.execute(
                        _SAVE, fa, [h.user for h in holders], [h.activated_at for h in holders],
                    [h.expires_at for h in holders], list(range(len(holders))))
        self._call(work())

    def close(self) -> None:
        async def work() -> None:
            if self._conn is not None:
                await self._conn.close()
        with contextlib.suppress(StoreError):
            self._call(work())
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
