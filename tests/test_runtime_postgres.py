"""The ACMS node on PostgreSQL: stored before acknowledged, 503 + Retry-After while the
database is away and recovery by itself, and a surviving worker continuing a stopped worker's
transactions (docs/decisions.md "Scale-out").

Requests come as a burst of UDP datagrams from a bare socket (the foreign primary ACMS), as in
tests/test_store_batching.py; the database is a throwaway cluster (tests/pg.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from pg import PgCluster
from test_store_batching import TIDS, WAIT, Event, message, partner, udp_socket

from mcacm_sip.core.events import Put, StoreChange
from mcacm_sip.core.state import Role, Transaction
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.config import load_acms_node
from mcacm_sip.runtime.lab import DAVE, PRIMARY
from mcacm_sip.sip.registrar import Binding
from mcacm_sip.sip.uri import Uri, address_of_record
from mcacm_sip.store import StoreUnavailable
from mcacm_sip.store.pg_bindings import PgBindingStore
from mcacm_sip.store.postgres import PostgresStore


async def burst(node: AcmsNode, primary: socket.socket, tids: list[str], first: int = 0
                ) -> dict[str, tuple[int, bytes]]:
    """Send a request for each of ``tids`` at once; tid -> (status, answer)."""
    port = node.addresses["udp"][1]
    me = primary.getsockname()[1]
    for n, tid in enumerate(tids):
        primary.sendto(message(tid, me, first + n), ("127.0.0.1", port))
    loop = asyncio.get_running_loop()
    by_call = {f"batch-{first + n}": tid for n, tid in enumerate(tids)}
    got: dict[str, tuple[int, bytes]] = {}
    async with asyncio.timeout(WAIT):
        while len(got) < len(tids):
            data = await loop.sock_recv(primary, 65536)
            if not (data.startswith(b"SIP/2.0 ") and b"CSeq: 1 MESSAGE" in data):
                continue
            call = data.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
            if call in by_call:
                got[by_call[call]] = (int(data[8:11]), data)
    return got


async def stored_tids(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT transaction_id, worker FROM transactions")
    finally:
        await conn.close()
    return {r["transaction_id"]: r["worker"] for r in rows}


class RecordingPg(PostgresStore):
    """The real PostgreSQL store, noting each commit's partner transactions in a shared log."""

    def __init__(self, url: str, worker_id: str, log: list[Event]) -> None:
        super().__init__(url, worker_id)
        self.log = log

    async def apply(self, changes: Sequence[StoreChange]) -> frozenset[str]:
        tids = tuple(dict.fromkeys(
            c.record.transaction_id for c in changes
            if isinstance(c, Put) and isinstance(c.record, Transaction)))
        held = await super().apply(changes)
        self.log.append(("commit", tids))
        return held


def test_a_burst_is_stored_in_postgresql_in_one_commit_before_any_answer(pg_url: str) -> None:
    log: list[Event] = []

    async def main() -> None:
        with udp_socket() as primary:
            async with partner(RecordingPg(pg_url, "w1", log), log, primary) as node:
                got = await burst(node, primary, TIDS)
                assert {s for s, _ in got.values()} == {200}
                assert await stored_tids(pg_url) == dict.fromkeys(TIDS, "w1")
    asyncio.run(main())
    commits = [tids for kind, tids in log if kind == "commit" and tids]
    assert commits[0] == tuple(TIDS)  # one statement for the burst, in arrival order
    first_answer = next(i for i, (kind, _) in enumerate(log) if kind == "answer")
    first_commit = next(i for i, (kind, tids) in enumerate(log) if kind == "commit" and tids)
    assert first_commit < first_answer  # stored before acknowledged


def test_postgresql_restart_answers_503_then_recovers_losing_nothing(
        own_pg_cluster: PgCluster) -> None:
    url = own_pg_cluster.create_database()

    async def main() -> None:
        with udp_socket() as primary:
            async with partner(PostgresStore(url, "w1"), [], primary) as node:
                before = await burst(node, primary, TIDS[:2])
                assert {s for s, _ in before.values()} == {200}
                own_pg_cluster.stop()
                down = await burst(node, primary, TIDS[2:], first=10)
                assert {s for s, _ in down.values()} == {503}
                assert all(b"Retry-After: " in data and b"store unavailable" in data
                           for _, data in down.values())
                assert node.failed is not None and not node.failed.done()  # not a crash
                own_pg_cluster.start()
                # the requesters retry (as RFC 3261 21.5.4 asks) until the store is back
                answered: dict[str, tuple[int, bytes]] = {}
                for attempt in range(100):
                    answered = await burst(node, primary, TIDS[2:], first=100 + 10 * attempt)
                    if {s for s, _ in answered.values()} == {200}:
                        break
                    assert {s for s, _ in answered.values()} <= {200, 503}
                    await asyncio.sleep(0.2)
                assert {s for s, _ in answered.values()} == {200}
                assert not node.failed.done()
                assert set(await stored_tids(url)) == set(TIDS)  # every 200 is stored
    asyncio.run(main())


class AwayOnce(PostgresStore):
    """The real PostgreSQL store, away (as at a restart) for the first commit that writes a
    transaction: that commit stores nothing and raises, as a lost connection makes it."""

    away = True

    async def apply(self, changes: Sequence[StoreChange]) -> frozenset[str]:
        if self.away and any(isinstance(c, Put) and isinstance(c.record, Transaction)
                             for c in changes):
            self.away = False
            raise StoreUnavailable("connection was closed in the middle of operation")
        return await super().apply(changes)


def test_a_request_answered_503_is_not_done(pg_url: str) -> None:
    """The store goes away under the commit of a new request: its sender gets 503 (RFC 3261
    21.5.4: not processed, send it again) and so it is not processed -- no transaction is
    stored for it when the store is back, nothing of it is sent, and the worker does not
    hold it; the sender's repeat then opens it, once.  (Found by a probe of the PostgreSQL
    restart test: up to 54 of ~300 requests that ALICE had 503 for were carried out, their
    Results dropped by her ACMC as answers to requests that had failed.)"""
    tid = TIDS[0]

    async def main() -> None:
        with udp_socket() as primary:
            store = AwayOnce(pg_url, "w1")
            async with partner(store, [], primary) as node:
                status, data = (await burst(node, primary, [tid]))[tid]
                assert status == 503 and b"store unavailable" in data
                assert node.core.transaction(Role.PARTNER, tid, PRIMARY) is None
                async with asyncio.timeout(WAIT):  # the store is back
                    while node.store_down:
                        await asyncio.sleep(0.05)
                assert await stored_tids(pg_url) == {}
                await asyncio.sleep(0.3)  # what a kept send would have made arrive
                sent = []
                while True:
                    try:
                        sent.append(primary.recv(65536))
                    except BlockingIOError:
                        break
                assert not [m for m in sent if m.startswith(b"MESSAGE ")], sent
                # the repeat: opened now, and carried out
                status, _ = (await burst(node, primary, [tid], first=10))[tid]
                assert status == 200
                assert await stored_tids(pg_url) == {tid: "w1"}
                assert node.core.transaction(Role.PARTNER, tid, PRIMARY) is not None
    asyncio.run(main())


def test_an_outage_found_while_idle_ends_by_itself(own_pg_cluster: PgCluster) -> None:
    # no request in flight: the lease loop finds the database away, and must also find it back
    url = own_pg_cluster.create_database()

    async def until(node: AcmsNode, down: bool) -> None:
        async with asyncio.timeout(WAIT):
            while node.store_down != down:
                await asyncio.sleep(0.05)

    async def main() -> None:
        with udp_socket() as primary:
            async with partner(PostgresStore(url, "w1", lease_seconds=1), [], primary) as node:
                own_pg_cluster.stop()
                await until(node, True)
                got = await burst(node, primary, TIDS[:1])
                assert got[TIDS[0]][0] == 503 and b"Retry-After: " in got[TIDS[0]][1]
                own_pg_cluster.start()
                await until(node, False)
                got = await burst(node, primary, TIDS[:1], first=50)
                assert got[TIDS[0]][0] == 200
                assert node.failed is not None and not node.failed.done()
    asyncio.run(main())


def test_a_surviving_worker_continues_a_stopped_workers_transactions(pg_url: str) -> None:
    async def main() -> None:
        with udp_socket() as primary:
            async with partner(PostgresStore(pg_url, "w1", 30), [], primary) as w1:
                await burst(w1, primary, TIDS)
                # its sends to the primary (this socket, which never answers) are in flight
                assert all(w1.core.transaction(Role.PARTNER, t, PRIMARY) for t in TIDS)
            # w1 is gone; its leases run out (set on the database's clock, no waiting)
            conn = await asyncpg.connect(pg_url)
            await conn.execute("UPDATE transactions SET lease_until = 0")
            await conn.execute("UPDATE workers SET lease_until = 0 WHERE worker_id = 'w1'")
            await conn.close()
            while True:  # drop what w1 sent before it stopped
                try:
                    primary.recv(65536)
                except BlockingIOError:
                    break
            async with partner(PostgresStore(pg_url, "w2", 30), [], primary) as w2:
                assert await w2.claim_expired() == len(TIDS)
                assert all(w2.core.transaction(Role.PARTNER, t, PRIMARY) for t in TIDS)
                assert await stored_tids(pg_url) == dict.fromkeys(TIDS, "w2")
                # w2 re-sends what w1 had in flight: MESSAGEs for every transaction arrive
                loop = asyncio.get_running_loop()
                seen: set[str] = set()
                async with asyncio.timeout(WAIT):
                    while seen != set(TIDS):
                        data = await loop.sock_recv(primary, 65536)
                        if data.startswith(b"MESSAGE "):
                            seen |= {t for t in TIDS if f">{t}<".encode() in data}
                assert await w2.claim_expired() == 0
    asyncio.run(main())


def test_a_request_another_worker_holds_gets_503_until_taken_over(pg_url: str) -> None:
    # a retry the dispatcher sent to another worker than the one holding the transaction
    # must not make that worker stop (the commit leaves the row alone) nor answer 200
    tid = TIDS[0]

    async def main() -> None:
        with udp_socket() as primary:
            async with partner(PostgresStore(pg_url, "w1", 30), [], primary) as w1, \
                    partner(PostgresStore(pg_url, "w2", 30), [], primary) as w2:
                assert (await burst(w1, primary, [tid]))[tid][0] == 200
                status, data = (await burst(w2, primary, [tid], first=10))[tid]
                assert status == 503 and b"held by another worker" in data
                assert b"Retry-After: " in data
                assert w2.failed is not None and not w2.failed.done()
                assert w2.core.transaction(Role.PARTNER, tid, PRIMARY) is None
                assert await stored_tids(pg_url) == {tid: "w1"}
                # w1 dies and its lease runs out: the next retry at w2 makes w2 take it
                # over, and the one after is a duplicate of what w2 now holds
                await w1.stop()
                conn = await asyncpg.connect(pg_url)
                await conn.execute("UPDATE transactions SET lease_until = 0")
                await conn.execute("UPDATE workers SET lease_until = 0 WHERE worker_id = 'w1'")
                await conn.close()
                statuses = []
                for attempt in range(50):
                    status, _ = (await burst(w2, primary, [tid], first=20 + attempt))[tid]
                    statuses.append(status)
                    if status == 200:
                        break
                    await asyncio.sleep(0.1)
                assert statuses[-1] == 200 and set(statuses) <= {200, 503}
                assert await stored_tids(pg_url) == {tid: "w2"}
                assert not w2.failed.done()
    asyncio.run(main())


def test_a_registration_at_one_worker_logs_the_user_on_at_the_others(pg_url: str) -> None:
    # any worker delivers to any logged-on ACMC (docs/scale-out.md "What is shared where")
    dave = address_of_record(DAVE)
    assert dave is not None

    async def main() -> None:
        with udp_socket() as primary:
            async with partner(PostgresStore(pg_url, "w1"), [], primary) as w1, \
                    partner(PostgresStore(pg_url, "w2"), [], primary) as w2:
                seen = asyncio.Event()
                shared = w2.registrar.store
                assert isinstance(shared, PgBindingStore)
                told = shared.on_remote
                assert told is not None

                def spy(aor: Uri, before: tuple[Binding, ...],
                        after: tuple[Binding, ...]) -> None:
                    told(aor, before, after)
                    seen.set()
                shared.on_remote = spy
                contact = "sip:dave@127.0.0.1:5999"
                w1.registrar.store.put(dave, (Binding(contact, time.time() + 600, "c-1", 1),))
                async with asyncio.timeout(WAIT):
                    await seen.wait()
                assert [b.contact for b in w2.registrar.contacts(DAVE, time.time())] == [
                    contact]
                assert DAVE in w2.core.logged_on
                seen.clear()
                w1.registrar.store.put(dave, ())          # logged off at w1
                async with asyncio.timeout(WAIT):
                    await seen.wait()
                assert w2.registrar.contacts(DAVE, time.time()) == ()
                assert DAVE not in w2.core.logged_on
            # a worker started later reads the registrations from the database
            async with partner(PostgresStore(pg_url, "w1"), [], primary) as w1:
                w1.registrar.store.put(dave, (Binding(contact, time.time() + 600, "c-1", 2),))
                store = w1.registrar.store
                assert isinstance(store, PgBindingStore)
                await store.flush()
            async with partner(PostgresStore(pg_url, "w3"), [], primary) as w3:
                assert DAVE in w3.core.logged_on
    asyncio.run(main())


def test_the_toml_store_url_makes_a_worker(pg_url: str, tmp_path: Path) -> None:
    # what an operator writes (docs/scale-out.md), down to the worker's rows
    path = tmp_path / "acms.toml"
    path.write_text(
        'psi = "sip:acms@partner.example"\n'
        '[[listen]]\ntransport = "udp"\nhost = "127.0.0.1"\nport = 0\n'
        '[sip]\ntrust = "lab"\n'
        f'[store]\nurl = "{pg_url}"\nworker_id = "acms-7"\nlease_seconds = 4\n')
    config = load_acms_node(path)

    async def main() -> None:
        node = AcmsNode(config)
        await node.start()
        try:
            assert node.shared is not None and isinstance(node.shared, PostgresStore)
            assert (node.shared.worker_id, node.shared.lease_seconds) == ("acms-7", 4.0)
            assert isinstance(node.registrar.store, PgBindingStore)
            assert not node.store_down
        finally:
            await node.stop()
    asyncio.run(main())
