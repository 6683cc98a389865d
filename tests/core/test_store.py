"""The stores: every record kind survives a round trip; apply is atomic; queues are by owner."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg import Blocking

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    Addressee,
    Party,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    Result,
    ResultCode,
)
from mcacm_sip.core.events import Put, Remove
from mcacm_sip.core.state import (
    Hop,
    Mapping,
    Outgoing,
    PendingItem,
    Purpose,
    Role,
    Snapshot,
    Transaction,
    TxState,
)
from mcacm_sip.store import MemoryStore, SqliteStore, Store

from .harness import PROFILE_XML

PROFILE = profile_from_xml(PROFILE_XML)
REQ = ProfileUpdateRequest("t-1", Party("sip:a@p.example"), Addressee("sip:d@q.example"),
                           "sip:m-1@q.example", PROFILE, "why")
RESP = ProfileUpdateResponse("t-1", Party("sip:d@q.example", "sip:duty@q.example"),
                             Addressee("sip:a@p.example"), "sip:m-1@q.example",
                             Result(ResultCode.SUCCESS, "ok"))
PI = ProcessIndication("t-1", "sip:acms@q.example", REQ.FLOW,
                       datetime(2030, 1, 1, tzinfo=UTC))
TX = Transaction(Role.PARTNER, "t-1", "sip:acms@p.example", REQ, TxState.RESPONDING, 1.5, 9.5,
                 PI, RESP, "sip:d@q.example")
ITEM = PendingItem(TX.key, "sip:d@q.example", False, 2.0, REQ)
OUT = Outgoing("s-1", Purpose.ANSWER, Hop.PEER, "sip:acms@p.example", RESP, TX.key, 3, 7.0,
               99.0, ("a", "b"))
MAP = Mapping(Role.PARTNER, "sip:acms@p.example", "sip:m@p.example", "sip:m-1@q.example",
              PROFILE, removed=True)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every engine behind one contract (the PostgreSQL one through :class:`pg.Blocking`)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        sqlite = SqliteStore(str(tmp_path / "s.sqlite"))
        yield sqlite
        sqlite.close()
        return
    from mcacm_sip.store.postgres import PostgresStore

    url = request.getfixturevalue("pg_url")
    pg = Blocking(PostgresStore(url, "w1"))
    pg.open()
    yield pg
    pg.close()


def test_every_record_kind_round_trips(store: Store) -> None:
    store.apply([Put(TX), Put(ITEM), Put(OUT), Put(MAP)])
    assert store.load() == Snapshot((TX,), (ITEM,), (OUT,), (MAP,))


def test_remove_and_replace(store: Store) -> None:
    store.apply([Put(TX), Put(ITEM)])
    store.apply([Put(replace(TX, state=TxState.DONE)), Remove(PendingItem.KIND, ITEM.key)])
    snap = store.load()
    assert [t.state for t in snap.transactions] == [TxState.DONE] and snap.pending == ()


def test_pending_for_one_owner_in_order(store: Store) -> None:
    items = [PendingItem(f"k{i}", f"sip:u{i % 3}@q.example", False, float(10 - i), REQ)
             for i in range(9)]
    store.apply([Put(i) for i in items])
    got = store.pending_for("sip:u1@q.example")
    assert [i.key for i in got] == ["k7", "k4", "k1"]


def test_sqlite_apply_is_atomic(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    store.apply([Put(MAP)])
    broken = Put(Outgoing("s-2", Purpose.FORWARD, Hop.PEER, "sip:x@y.example",
                          object(), None))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.apply([Remove(Mapping.KIND, MAP.key), broken])
    assert store.load().mappings == (MAP,)
    store.close()


def test_sqlite_persists_across_connections_and_uses_wal(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite")
    first = SqliteStore(path, synchronous="FULL")
    first.apply([Put(TX), Put(OUT)])
    first.close()
    second = SqliteStore(path)
    assert second.load().transactions == (TX,)
    mode = second._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    plan = " ".join(str(r[3]) for r in second._db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM pending WHERE owner=? ORDER BY created", ("x",)))
    assert "pending_by_owner" in plan
    second.close()


def test_one_apply_keeps_each_rows_last_change(store: Store) -> None:
    # a group commit hands the store several changes of one row in one transaction
    moved = replace(TX, state=TxState.DONE)
    store.apply([Put(TX), Put(ITEM), Put(moved), Remove(PendingItem.KIND, ITEM.key),
                 Put(OUT), Remove(Outgoing.KIND, OUT.key), Put(OUT), Put(MAP)])
    snap = store.load()
    assert snap.transactions == (moved,)
    assert snap.pending == ()
    assert snap.outgoing == (OUT,)
    assert snap.mappings == (MAP,)


# -- a transaction that only moves on: an UPDATE of its state columns (docs/decisions.md
# "Round 7 (issue 18), the store")

_STATES = tuple(TxState)


def _fresh(tid: str, n: int) -> Transaction:
    request = replace(REQ, transaction_id=tid, additional_info=f"why {n}")  # a new flow each time
    return Transaction(Role.PARTNER, tid, "sip:acms@p.example", request, TxState.RECEIVED,
                       1.5 + n % 2, 9.5)


@st.composite
def _histories(draw: st.DrawFn) -> list[list[tuple[str, str, int]]]:
    """Batches of (operation, transaction id, choice) over three transactions."""
    op = st.tuples(st.sampled_from(["put", "step", "flows", "remove", "restart"]),
                   st.sampled_from(["t-1", "t-2", "t-3"]), st.integers(0, 1000))
    return draw(st.lists(st.lists(op, min_size=1, max_size=6), min_size=1, max_size=8))


def _by_key(snap: Snapshot) -> list[Transaction]:
    return sorted(snap.transactions, key=lambda t: t.key)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=_histories())
def test_sqlite_rows_equal_the_records_after_any_steps(tmp_path_factory: pytest.TempPathFactory,
                                                       history: list[list[tuple[str, str, int]]]
                                                       ) -> None:
    """Whatever a transaction goes through (new, moved on with the same flows, given new
    flows, removed, the store reopened between batches), the SQLite rows load as the records
    last put: the state-only UPDATE leaves nothing out and is never taken for a flow change."""
    path = str(tmp_path_factory.mktemp("moves") / "s.sqlite")
    sqlite, memory = SqliteStore(path), MemoryStore()
    live: dict[str, Transaction] = {}
    try:
        for batch in history:
            changes: list[Put | Remove] = []
            for what, tid, n in batch:
                if what == "restart":
                    sqlite.close()
                    sqlite = SqliteStore(path)  # the node's start: load, then carry on
                    live = {tx.transaction_id: tx for tx in sqlite.load().transactions}
                    continue
                tx = live.get(tid)
                if what == "put" or (tx is None and what != "remove"):
                    tx = _fresh(tid, n)
                elif what == "step" and tx is not None:
                    tx = tx.evolve(state=_STATES[n % len(_STATES)], deadline=10.0 + n,
                                   assignee=None if n % 3 == 0 else f"sip:d{n}@q.example",
                                   leg_id="" if n % 2 else f"leg-{n}")
                elif what == "flows" and tx is not None:
                    # a new indication, response or both (new objects, maybe equal ones)
                    new = {"indication": replace(PI, transaction_id=tid),
                           "response": replace(RESP, transaction_id=tid)}
                    tx = tx.evolve(**{k: v for i, (k, v) in enumerate(new.items())
                                      if n % 3 in (i, 2)})
                if what == "remove":
                    if tx is not None:
                        changes.append(Remove(Transaction.KIND, tx.key))
                        del live[tid]
                    continue
                assert tx is not None
                live[tid] = tx
                changes.append(Put(tx))
            sqlite.apply(changes)
            memory.apply(changes)
            # read by another connection: this store's own load() would reset what it
            # remembers of its rows to the loaded records
            reader = SqliteStore(path)
            assert _by_key(reader.load()) == _by_key(memory.load())
            reader.close()
        sqlite.close()
        sqlite = SqliteStore(path)
        assert _by_key(sqlite.load()) == _by_key(memory.load())
    finally:
        sqlite.close()


def _statements(store: SqliteStore) -> list[str]:
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def test_a_transaction_that_only_moves_on_is_updated_not_rewritten(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    store.apply([Put(TX)])
    seen = _statements(store)
    done = TX.evolve(state=TxState.DONE, deadline=99.0)
    store.apply([Put(done)])
    written = [s for s in seen if "transactions" in s]
    assert len(written) == 1 and written[0].startswith("UPDATE transactions SET state="), seen
    # a new flow is a new row: written whole
    seen.clear()
    store.apply([Put(done.evolve(response=replace(RESP, transaction_id="t-9")))])
    assert any(s.startswith("INSERT OR REPLACE INTO transactions") for s in seen), seen
    store.close()
    assert SqliteStore(str(tmp_path / "s.sqlite")).load().transactions == (
        done.evolve(response=replace(RESP, transaction_id="t-9")),)


def test_a_moved_transaction_whose_row_went_missing_is_written_whole(tmp_path: Path) -> None:
    """The store remembers what its rows hold; if the file lost a row under it (another
    hand), the UPDATE finds nothing and the whole row is written instead."""
    path = str(tmp_path / "s.sqlite")
    store = SqliteStore(path)
    store.apply([Put(TX)])
    other = sqlite3.connect(path)
    other.execute("DELETE FROM transactions")
    other.commit()
    other.close()
    done = TX.evolve(state=TxState.DONE)
    store.apply([Put(done)])
    assert store.load().transactions == (done,)
    store.close()
