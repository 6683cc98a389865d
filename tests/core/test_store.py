"""The stores: every record kind survives a round trip; apply is atomic; queues are by owner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
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
