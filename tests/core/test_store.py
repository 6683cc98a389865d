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
    tx_key,
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
    op = st.tuples(st.sampled_from(["put", "step", "flows", "remove", "restart", "reopen",
                                    "send", "send", "retry", "ack"]),
                   st.sampled_from(["t-1", "t-2", "t-3"]), st.integers(0, 1000))
    return draw(st.lists(st.lists(op, min_size=1, max_size=6), min_size=1, max_size=8))


def _by_key(snap: Snapshot) -> tuple[list[Transaction], list[Outgoing]]:
    return (sorted(snap.transactions, key=lambda t: t.key),
            sorted(snap.outgoing, key=lambda o: o.send_id))


_DURABLE = (Purpose.FORWARD, Purpose.INDICATE, Purpose.ANSWER, Purpose.DELIVER)


def _send(tid: str, n: int, tx: Transaction | None) -> Outgoing:
    """A send of transaction ``tid`` (``tx``: as it is now, or None: not stored), of no
    transaction (n % 7 == 0), whose flow is one of the transaction's own (the same object)
    or another flow."""
    own = [f for f in (tx.request, tx.indication, tx.response) if f is not None] if tx else []
    flow = own[n % 4] if n % 4 < len(own) else replace(REQ, transaction_id=f"s-{n}")
    return Outgoing(f"s-{n}", _DURABLE[n % 4], Hop.PEER if n % 2 else Hop.ACMC,
                    f"sip:to{n % 3}@q.example", flow,
                    None if n % 7 == 0 else tx_key(Role.PARTNER, "sip:acms@p.example", tid),
                    1 + n % 3, None if n % 2 else 5.0 + n, None if n % 5 == 0 else 50.0 + n,
                    ("k-1", f"k-{n}") if n % 6 == 0 else ())


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=_histories())
def test_sqlite_rows_equal_the_records_after_any_steps(tmp_path_factory: pytest.TempPathFactory,
                                                       history: list[list[tuple[str, str, int]]]
                                                       ) -> None:
    """Whatever a transaction goes through (new, moved on with the same flows, given new
    flows, removed, the store reopened between batches) and whatever its sends do (put in
    the batch of their transaction or later, with its own flows or others, retried, settled,
    left open when their transaction is removed, put before their transaction is stored or
    with none), the SQLite rows load as the records last put: the state-only UPDATE leaves
    nothing out and is never taken for a flow change, and a send kept in its transaction's
    row (docs/decisions.md "Round 8 (issue 18), the store") loads as the same record."""
    path = str(tmp_path_factory.mktemp("moves") / "s.sqlite")
    sqlite, memory = SqliteStore(path), MemoryStore()
    live: dict[str, Transaction] = {}
    sends: dict[str, Outgoing] = {}
    try:
        for batch in history:
            changes: list[Put | Remove] = []
            for what, tid, n in batch:
                if what in ("restart", "reopen"):
                    sqlite.close()
                    sqlite = SqliteStore(path)
                    if what == "restart":  # the node's start: load, then carry on
                        snap = sqlite.load()
                        live = {tx.transaction_id: tx for tx in snap.transactions}
                        sends = {og.send_id: og for og in snap.outgoing}
                    continue  # reopen: carry on without loading (a tool, a test)
                tx = live.get(tid)
                if what in ("send", "retry", "ack"):
                    old = next((o for o in sends.values() if o.send_id.endswith(
                        str(n % 10))), None) if what != "send" else None
                    if what == "ack" and old is not None:
                        changes.append(Remove(Outgoing.KIND, old.send_id))
                        del sends[old.send_id]
                        continue
                    og = replace(old, attempts=old.attempts + 1, next_at=n + 0.5) \
                        if old is not None else _send(tid, n, tx)
                    sends[og.send_id] = og
                    changes.append(Put(og))
                    continue
                if what == "put" or (tx is None and what != "remove"):
                    tx = _fresh(tid, n)
                elif what == "step" and tx is not None:
                    tx = tx.evolve(state=_STATES[n % len(_STATES)], deadline=10.0 + n,
                                   assignee=None if n % 3 == 0 else f"sip:d{n}@q.example",
                                   leg_id="" if n % 2 else f"leg-{n}")
                elif what == "flows" and tx is not None:
                    # a new indication, response or both (new objects, maybe equal ones)
                    new = {"indication": replace(PI, transaction_id=tid,
                                                 expires=datetime(2030, 1, 1 + n % 2,
                                                                  tzinfo=UTC)),
                           "response": replace(RESP, transaction_id=tid,
                                               result=Result(ResultCode.SUCCESS, f"ok {n % 2}"))}
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


def test_a_step_keeping_assignee_and_leg_id_updates_three_columns(tmp_path: Path) -> None:
    """A step that keeps its transaction's assignee and leg id updates state, deadline and
    sends only (issue 18, round 12); one changing either, all five; and when rows went
    missing under the store, each moved transaction is written whole with its own sends
    (the two kinds of UPDATE rows in one batch: checked to fail with the rows paired with
    the wrong transactions)."""
    path = str(tmp_path / "s.sqlite")
    store = SqliteStore(path)
    other_tx = replace(TX, transaction_id="t-2", assignee=None)
    store.apply([Put(TX), Put(other_tx), Put(replace(IND, tx_key=other_tx.key, flow=PI))])
    seen = _statements(store)
    kept = TX.evolve(state=TxState.DONE, deadline=99.0)  # same assignee, same leg id
    changed = other_tx.evolve(state=TxState.DONE, assignee="sip:e@q.example", leg_id="l-2")
    store.apply([Put(changed), Put(kept)])
    updates = [s for s in seen if s.startswith("UPDATE transactions")]
    assert [u.split(" WHERE")[0] for u in updates] == [
        "UPDATE transactions SET state='done', deadline=99.0, sends=''",
        "UPDATE transactions SET state='done', deadline=9.5, assignee=nullif('sip:e@q.example',0),"
        " leg_id='l-2', sends=" + updates[1].split("sends=")[1].split(" WHERE")[0]], updates
    assert sorted(SqliteStore(path).load().transactions, key=lambda t: t.key) == sorted(
        [kept, changed], key=lambda t: t.key)
    # the rows gone under the store: both moved transactions written whole, each as itself
    other = sqlite3.connect(path)
    other.execute("DELETE FROM transactions")
    other.commit()
    other.close()
    again = (kept.evolve(deadline=100.0), changed.evolve(assignee=None, deadline=101.0))
    store.apply([Put(again[1]), Put(again[0])])
    snap = store.load()
    assert sorted(snap.transactions, key=lambda t: t.key) == sorted(again, key=lambda t: t.key)
    assert [og.tx_key for og in snap.outgoing] == [other_tx.key]
    store.close()


# -- a transaction's sends kept in its own row (schema 4; docs/decisions.md "Round 8 (issue
# 18), the store")

IND = Outgoing("s-i", Purpose.INDICATE, Hop.PEER, "sip:acms@p.example", PI, TX.key,
               give_up_at=9.5)
ANS = Outgoing("s-a", Purpose.ANSWER, Hop.PEER, "sip:acms@p.example", RESP, TX.key,
               give_up_at=9.5)


def _outgoing_rows(store: SqliteStore) -> list[str]:
    return [r[0] for r in store._db.execute("SELECT key FROM outgoing")]


def test_a_requests_sends_are_kept_in_its_row_not_the_outbox_table(tmp_path: Path) -> None:
    """The common request: its row INSERT carries its two sends (their flows by reference to
    the row's own documents), and their outcomes are an UPDATE of that row: no outgoing
    INSERT or DELETE."""
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    seen = _statements(store)
    store.apply([Put(TX), Put(IND), Put(ANS)])
    written = [s for s in seen if s not in ("BEGIN IMMEDIATE", "COMMIT")]
    assert len(written) == 1 and written[0].startswith("INSERT OR REPLACE INTO transactions")
    [(sends,)] = store._db.execute("SELECT sends FROM transactions").fetchall()
    assert "<" not in sends and "s-i" in sends and "s-a" in sends  # no document again
    snap = store.load()  # (the store remembers the loaded records: the node's restart)
    assert sorted(snap.outgoing, key=lambda o: o.send_id) == [ANS, IND]
    seen.clear()
    done = snap.transactions[0].evolve(state=TxState.DONE, deadline=99.0)
    store.apply([Remove(Outgoing.KIND, "s-i")])
    store.apply([Remove(Outgoing.KIND, "s-a"), Put(done)])
    written = [s for s in seen if s not in ("BEGIN IMMEDIATE", "COMMIT")]
    assert len(written) == 2 and all(s.startswith("UPDATE transactions SET") for s in written)
    assert store.load() == Snapshot((done,))
    store.close()


def test_a_send_whose_flow_is_not_its_transactions_own_is_kept_whole(tmp_path: Path) -> None:
    """A send's flow is written by reference only when it is the transaction's own flow
    object; another flow (the request under another leg id, an equal copy) is written in
    full, and loads as itself."""
    leg = replace(REQ, transaction_id="t-leg")
    copy = replace(RESP)
    sends = [Outgoing("s-1", Purpose.DELIVER, Hop.ACMC, "sip:d@q.example", leg, TX.key),
             Outgoing("s-2", Purpose.ANSWER, Hop.PEER, "sip:acms@p.example", copy, TX.key)]
    path = str(tmp_path / "s.sqlite")
    store = SqliteStore(path)
    store.apply([Put(TX), *map(Put, sends)])
    [(text,)] = store._db.execute("SELECT sends FROM transactions").fetchall()
    assert text.count("<?xml") == 2
    store.close()
    again = SqliteStore(path)
    assert sorted(again.load().outgoing, key=lambda o: o.send_id) == sends
    again.close()


def test_a_transaction_removed_with_a_send_open_keeps_the_send(tmp_path: Path) -> None:
    """Its row goes, its open send moves to the outgoing table (with the document it named
    by reference), until its outcome."""
    path = str(tmp_path / "s.sqlite")
    store = SqliteStore(path)
    store.apply([Put(TX), Put(ANS)])
    store.apply([Remove(Transaction.KIND, TX.key)])
    assert _outgoing_rows(store) == ["s-a"]
    store.close()
    store = SqliteStore(path)
    assert store.load() == Snapshot(outgoing=(ANS,))
    retried = replace(ANS, attempts=2, next_at=5.0)
    store.apply([Put(TX), Put(retried)])  # the key in use again: the send stays where it is
    assert _outgoing_rows(store) == ["s-a"] and store.load().outgoing == (retried,)
    store.apply([Remove(Outgoing.KIND, "s-a")])
    assert _outgoing_rows(store) == [] and store.load() == Snapshot((TX,))
    store.close()


def test_inspect_shows_the_sends_kept_in_rows_and_in_the_table(tmp_path: Path) -> None:
    from mcacm_sip.store.inspect import read_store

    path = tmp_path / "s.sqlite"
    store = SqliteStore(str(path))
    alone = Outgoing("s-n", Purpose.DELIVER, Hop.ACMC, "sip:d@q.example", REQ, None)
    store.apply([Put(TX), Put(IND), Put(ANS), Put(alone)])
    store.close()
    view = read_store(path)
    assert view.schema == "4" and view.unreadable == []
    assert sorted(view.outgoing, key=lambda o: o.send_id) == [ANS, IND, alone]


@pytest.mark.parametrize(("send", "as_json"), [
    (replace(ANS, to="sip:a\x1fb@p.example"), True),   # a field holding a separator
    (replace(ANS, to="sip:a\x1eb@p.example"), True),
    (replace(ANS, carries=("k-1", "")), True),           # item keys (JSON keeps them exact)
    (replace(ANS, next_at=7, give_up_at=10**20), True),  # times that are not floats
    (replace(ANS, next_at=float("inf"), give_up_at=1e-300, attempts=12), False),
    (replace(ANS, next_at=1796553560.1152325, give_up_at=-0.0), False),
], ids=["us", "rs", "carries", "ints", "inf", "exact"])
def test_the_sends_column_keeps_every_send_exactly(tmp_path: Path, send: Outgoing,
                                                   as_json: bool) -> None:
    """The compact column (float times as ``float.hex``, exact) or, for what it cannot hold,
    JSON: either way the send loads as itself."""
    path = str(tmp_path / "s.sqlite")
    store = SqliteStore(path)
    store.apply([Put(TX), Put(IND), Put(send)])
    [(text,)] = store._db.execute("SELECT sends FROM transactions").fetchall()
    assert text.startswith("[") is as_json
    store.close()
    again = SqliteStore(path)
    assert sorted(again.load().outgoing, key=lambda o: o.send_id) == [send, IND]
    again.close()
