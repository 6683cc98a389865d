"""The PostgreSQL store beyond the shared contract (tests/core/test_store.py runs that on every
engine): schema versions, leases (claim after expiry, renewal, SKIP LOCKED, fencing), the
mapping feed, and a database that goes away (docs/decisions.md "Scale-out")."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from core.test_store import ITEM, MAP, OUT, TX
from pg import PgCluster

from mcacm_sip.core.events import Put, Remove
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.state import (
    Mapping,
    Outgoing,
    PendingItem,
    Role,
    Snapshot,
    Transaction,
    TxState,
)
from mcacm_sip.store import postgres
from mcacm_sip.store.postgres import PostgresStore
from mcacm_sip.store.rows import SCHEMA_VERSION, StoreError, StoreUnavailable

GROUP = PartnerGroup("sip:acms@p.example", "sip:team@p.example", True,
                     ("sip:d@q.example",), 4.5)


def tx(n: int) -> Transaction:
    return replace(TX, transaction_id=f"t-{n}")


async def opened(url: str, worker: str, lease: float = 30.0) -> PostgresStore:
    store = PostgresStore(url, worker, lease)
    await store.open()
    return store


async def sql(url: str, query: str, *args: object) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.execute(query, *args))
    finally:
        await conn.close()


async def expire(url: str, worker: str) -> None:
    """Let ``worker``'s leases run out (the database's clock decides; no waiting)."""
    await sql(url, "UPDATE transactions SET lease_until = 0 WHERE worker = $1", worker)
    await sql(url, "UPDATE workers SET lease_until = 0 WHERE worker_id = $1", worker)


async def worker_lease_left(url: str, worker: str) -> float:
    """Seconds left on ``worker``'s lease, on the database's clock."""
    conn = await asyncpg.connect(url)
    try:
        return float(await conn.fetchval(
            "SELECT lease_until - extract(epoch FROM clock_timestamp()) FROM workers "
            "WHERE worker_id = $1", worker))
    finally:
        await conn.close()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_schema_is_created_at_the_shared_version(pg_url: str) -> None:
    async def main() -> None:
        store = await opened(pg_url, "w1")
        conn = await asyncpg.connect(pg_url)
        assert await conn.fetchval("SELECT version FROM schema_version") == SCHEMA_VERSION
        await conn.close()
        await store.close()
        again = await opened(pg_url, "w2")  # an existing schema is used as it is
        await again.close()
    run(main())


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    async def main() -> None:
        await (await opened(pg_url, "w1")).close()
        await sql(pg_url, "UPDATE schema_version SET version = 99")
        with pytest.raises(StoreError, match=f"schema version 99, expected {SCHEMA_VERSION}"):
            await opened(pg_url, "w1")
    run(main())


def test_a_migration_runs_once_for_workers_starting_together(pg_url: str,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    async def main() -> None:
        await (await opened(pg_url, "w0")).close()
        await sql(pg_url, "UPDATE schema_version SET version = 1")
        monkeypatch.setitem(postgres._MIGRATIONS, 1,
                            "ALTER TABLE pending ADD COLUMN migrated_once INTEGER")
        for version in range(2, SCHEMA_VERSION):
            monkeypatch.setitem(postgres._MIGRATIONS, version, "SELECT 1")
        stores = [PostgresStore(pg_url, f"w{i}") for i in range(4)]
        await asyncio.gather(*(s.open() for s in stores))  # a second ALTER would fail
        conn = await asyncpg.connect(pg_url)
        assert await conn.fetchval("SELECT version FROM schema_version") == SCHEMA_VERSION
        await conn.close()
        for s in stores:
            await s.close()
    run(main())


def test_a_schema_3_database_gains_the_sends_column(pg_url: str) -> None:
    """Schema 4 (issue 18): a transaction's sends may be kept in its row; a schema-3 database
    gains the (empty) column when a worker connects, and its sends (rows of outgoing) load."""
    async def main() -> None:
        w1 = await opened(pg_url, "w1")
        await w1.apply([Put(TX), Put(ITEM), Put(OUT)])
        await w1.close()
        await sql(pg_url, "ALTER TABLE transactions DROP COLUMN sends")
        await sql(pg_url, "UPDATE schema_version SET version = 3")
        again = await opened(pg_url, "w1")
        got = await again.load()
        assert (got.transactions, got.pending, got.outgoing) == ((TX,), (ITEM,), (OUT,))
        conn = await asyncpg.connect(pg_url)
        assert await conn.fetchval("SELECT version FROM schema_version") == SCHEMA_VERSION
        await conn.close()
        await again.close()
    run(main())


def test_expired_leases_are_claimed_with_their_items_and_sends(pg_url: str) -> None:
    async def main() -> None:
        w1, w2 = await opened(pg_url, "w1"), await opened(pg_url, "w2")
        await w1.apply([Put(TX), Put(ITEM), Put(OUT), Put(MAP)])
        assert (await w2.claim()).transactions == ()  # w1's lease runs
        await expire(pg_url, "w1")
        got = await w2.claim()
        assert (got.transactions, got.pending, got.outgoing) == ((TX,), (ITEM,), (OUT,))
        assert await w2.workers() == {"w2": 1}
        assert (await w2.claim()).transactions == ()   # claimed once
        assert (await w1.load()).transactions == ()    # w1, restarted, no longer holds it
        await w1.close()
        await w2.close()
    run(main())


def test_renewal_prevents_a_claim(pg_url: str) -> None:
    async def main() -> None:
        w1, w2 = await opened(pg_url, "w1", lease=30), await opened(pg_url, "w2", lease=30)
        await w1.apply([Put(tx(1)), Put(tx(2))])
        # the rows' own leases ran out, the worker's has not: nothing to claim
        await sql(pg_url, "UPDATE transactions SET lease_until = 0")
        two_thirds_used = ("UPDATE workers SET lease_until = "
                           "extract(epoch FROM clock_timestamp()) + 5 WHERE worker_id = 'w1'")
        await sql(pg_url, two_thirds_used)
        assert (await w2.claim()).transactions == ()
        await w1.apply([Put(tx(3))])          # a busy worker renews in its group commit
        assert await worker_lease_left(pg_url, "w1") > 25
        await sql(pg_url, two_thirds_used)
        assert await w1.renew() == 1          # an idle worker's renewal
        assert await w1.renew() == 0          # a fresh lease is left alone
        assert await worker_lease_left(pg_url, "w1") > 25
        await sql(pg_url, "UPDATE transactions SET lease_until = 0")
        assert (await w2.claim()).transactions == ()
        await expire(pg_url, "w1")            # w1 stops renewing: now they can be taken
        assert len((await w2.claim()).transactions) == 3
        await w1.close()
        await w2.close()
    run(main())


def test_renewal_is_one_row_per_worker(pg_url: str) -> None:
    # however many transactions a worker holds, renewing its lease writes one row, not theirs
    async def main() -> None:
        w1 = await opened(pg_url, "w1", lease=30)
        await w1.apply([Put(tx(n)) for n in range(50)])

        async def row_leases() -> list[float]:
            conn = await asyncpg.connect(pg_url)
            try:
                return [r[0] for r in await conn.fetch(
                    "SELECT lease_until FROM transactions ORDER BY key")]
            finally:
                await conn.close()

        before = await row_leases()
        await sql(pg_url, "UPDATE workers SET lease_until = 0")
        assert await w1.renew() == 1
        await w1.apply([Put(MAP)])            # and a commit's renewal neither
        assert await row_leases() == before and len(before) == 50
        assert await worker_lease_left(pg_url, "w1") > 25
        await w1.close()
    run(main())


def test_concurrent_claimers_never_take_one_transaction_twice(pg_url: str) -> None:
    async def main() -> None:
        dead = await opened(pg_url, "dead")
        await dead.apply([Put(tx(n)) for n in range(300)])
        await dead.close()
        await expire(pg_url, "dead")
        claimers = [await opened(pg_url, f"c{i}") for i in range(3)]

        async def drain(store: PostgresStore) -> list[str]:
            keys: list[str] = []
            while got := (await store.claim(limit=7)).transactions:
                keys += [t.key for t in got]
            return keys

        taken = await asyncio.gather(*(drain(c) for c in claimers))
        every = list(itertools.chain(*taken))
        assert len(every) == len(set(every)) == 300
        assert sum(1 for t in taken if t) >= 2, "the claimers ran concurrently"
        for c in claimers:
            await c.close()
    run(main())


def test_skip_locked_passes_over_rows_another_claimer_holds(pg_url: str) -> None:
    async def main() -> None:
        dead = await opened(pg_url, "dead")
        await dead.apply([Put(tx(n)) for n in range(4)])
        await expire(pg_url, "dead")
        other = await asyncpg.connect(pg_url)
        locked = tx(0).key
        async with other.transaction():  # a claimer in the middle of its claim
            await other.execute("SELECT key FROM transactions WHERE key = $1 FOR UPDATE",
                                locked)
            w2 = await opened(pg_url, "w2")
            got = await asyncio.wait_for(w2.claim(), 10)  # does not wait for the lock
            assert sorted(t.key for t in got.transactions) == sorted(
                tx(n).key for n in (1, 2, 3))
        again = await w2.claim()
        assert [t.key for t in again.transactions] == [locked]
        await other.close()
        await w2.close()
        await dead.close()
    run(main())


def test_a_worker_that_lost_its_lease_writes_none_of_those_rows(pg_url: str) -> None:
    async def main() -> None:
        w1, w2 = await opened(pg_url, "w1"), await opened(pg_url, "w2")
        await w1.apply([Put(TX), Put(ITEM), Put(OUT)])
        await expire(pg_url, "w1")
        await w2.claim()
        done = replace(TX, state=TxState.DONE)
        moved = replace(OUT, attempts=9)
        # w1 stalled and does not know yet: its rows of TX are w2's now, the rest is its own
        held = await w1.apply([Put(done), Put(replace(ITEM, owner="sip:x@q.example")),
                               Put(moved), Put(tx(7)), Put(MAP)])
        assert held == {TX.key}
        await w1.apply([Remove(PendingItem.KIND, ITEM.key), Remove(Outgoing.KIND, OUT.key),
                        Remove(Transaction.KIND, TX.key)])
        snap = await w2.load()
        assert (snap.transactions, snap.pending, snap.outgoing) == ((TX,), (ITEM,), (OUT,))
        assert snap.mappings == (MAP,)  # the rest of the batch was written
        assert await w2.workers() == {"w1": 1, "w2": 1}
        await w1.close()
        await w2.close()
    run(main())


def test_a_restarted_worker_takes_back_what_it_holds(pg_url: str) -> None:
    async def main() -> None:
        w1 = await opened(pg_url, "w1")
        await w1.apply([Put(TX), Put(ITEM), Put(OUT)])
        await w1.close()
        await expire(pg_url, "w1")
        again = await opened(pg_url, "w1")
        snap = await again.load()
        assert (snap.transactions, snap.pending, snap.outgoing) == ((TX,), (ITEM,), (OUT,))
        w2 = await opened(pg_url, "w2")
        assert (await w2.claim()).transactions == ()  # the load renewed the leases
        await again.close()
        await w2.close()
    run(main())


def test_removing_a_transaction_and_its_parts(pg_url: str) -> None:
    async def main() -> None:
        w1 = await opened(pg_url, "w1")
        await w1.apply([Put(TX), Put(ITEM), Put(OUT)])
        await w1.apply([Remove(Transaction.KIND, TX.key), Remove(PendingItem.KIND, ITEM.key),
                        Remove(Outgoing.KIND, OUT.key)])
        assert await w1.workers() == {}
        await w1.close()
    run(main())


def test_other_workers_mappings_and_groups_reach_a_worker(pg_url: str) -> None:
    async def main() -> None:
        w1, w2 = await opened(pg_url, "w1"), await opened(pg_url, "w2")
        await w2.load()
        await w1.apply([Put(MAP), Put(GROUP)])
        assert await w2.shared_since() == Snapshot(mappings=(MAP,), groups=(GROUP,))
        assert await w1.shared_since() == Snapshot()  # its own are in its core already
        withdrawn = replace(MAP, removed=False, partner_id="sip:m-2@q.example")
        await w1.apply([Put(withdrawn)])
        assert (await w2.shared_since()).mappings == (withdrawn,)
        other = Mapping(Role.PRIMARY, "sip:acms@q.example", "sip:x@p.example",
                        "sip:x-1@q.example", None)
        await w2.apply([Put(other)])
        snap = await w1.load()
        assert (snap.mappings, snap.groups) == ((withdrawn, other), (GROUP,))
        await w1.close()
        await w2.close()
    run(main())


def test_a_schema_2_database_is_migrated_to_3_and_on(pg_url: str) -> None:
    # what a PostgreSQL store of schema 2 (before issue 17's groups) had: no groups table
    # (nor schema 4's sends column)
    async def main() -> None:
        await (await opened(pg_url, "w0")).close()
        await sql(pg_url, "DROP TABLE groups")
        await sql(pg_url, "ALTER TABLE transactions DROP COLUMN sends")
        await sql(pg_url, "UPDATE schema_version SET version = 2")
        w1 = await opened(pg_url, "w1")
        await w1.apply([Put(GROUP)])
        assert (await w1.load()).groups == (GROUP,)
        conn = await asyncpg.connect(pg_url)
        assert await conn.fetchval("SELECT version FROM schema_version") == SCHEMA_VERSION
        await conn.close()
        await w1.close()
    run(main())


def test_whether_anyone_holds_the_transaction_an_answer_names(pg_url: str) -> None:
    """``holds_leg``: by role and the id on the other leg (the origin's id, or the leg id the
    request went on under), whoever holds it; an existing database gets the index too."""
    async def main() -> None:
        await (await opened(pg_url, "w0")).close()
        await sql(pg_url, "DROP INDEX transactions_by_leg")  # a database from before it
        w1, w2 = await opened(pg_url, "w1"), await opened(pg_url, "w2")
        fresh = replace(tx(2), leg_id="leg-2")
        await w1.apply([Put(tx(1)), Put(fresh)])
        assert await w2.holds_leg(TX.role, "t-1") and await w1.holds_leg(TX.role, "t-1")
        assert await w2.holds_leg(TX.role, "leg-2")
        assert not await w2.holds_leg(TX.role, "t-2")  # that id is not on its other leg
        other = Role.PARTNER if TX.role is Role.PRIMARY else Role.PRIMARY
        assert not await w2.holds_leg(other, "t-1")
        await w1.apply([Remove(Transaction.KIND, tx(1).key)])
        assert not await w2.holds_leg(TX.role, "t-1")  # pruned: exists nowhere
        index = await sql(pg_url, "SELECT 1 FROM pg_indexes WHERE indexname = "
                                  "'transactions_by_leg'")
        assert index == "SELECT 1", index
        for s in (w1, w2):
            await s.close()
    run(main())


def test_an_unreachable_database_is_unavailable_then_back(own_pg_cluster: PgCluster) -> None:
    url = own_pg_cluster.create_database()

    async def main() -> None:
        w1 = await opened(url, "w1")
        await w1.apply([Put(tx(1))])
        own_pg_cluster.stop()
        with pytest.raises(StoreUnavailable):
            await w1.apply([Put(tx(2))])
        assert w1.retry_delay > 0
        with pytest.raises(StoreUnavailable):  # during the back-off: no attempt at all
            await w1.apply([Put(tx(2))])
        own_pg_cluster.start()
        for _ in range(200):  # the back-off is bounded (2 s): a few attempts at most
            try:
                await w1.apply([Put(tx(2))])
                break
            except StoreUnavailable:
                await asyncio.sleep(w1.retry_delay)
        assert w1.retry_delay == 0
        assert sorted(t.transaction_id for t in (await w1.load()).transactions) == [
            "t-1", "t-2"]
        await w1.close()
    run(main())
