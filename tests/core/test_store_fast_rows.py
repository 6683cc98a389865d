"""The SQLite store's cheaper ways of writing the same rows (issue 18, round 11): each checked
against the general way it replaces."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import ProcessIndication, ProfileUpdateResponse
from mcacm_sip.core.events import Put
from mcacm_sip.core.state import Hop, Outgoing, Purpose, Transaction, TxState
from mcacm_sip.store import SqliteStore
from mcacm_sip.store.rows import COLUMNS, _json_sends, row_of, sends_text

from .test_store import PI, REQ, RESP, TX

_US, _RS = "\x1f", "\x1e"


def _reference_sends_text(tx: Transaction, sends: Iterable[Outgoing]) -> str:
    """``sends_text`` as round 10 wrote it: ``str()`` of the attempts, and each entry checked
    for separators on its own (the JSON form, unchanged, is the store's)."""
    docs = (tx.request, tx.indication, tx.response)
    entries = []
    for og in sends:
        flow = og.flow
        n, g = og.next_at, og.give_up_at
        try:
            entry = _US.join((og.send_id, og.purpose, og.hop, og.to,
                              "0" if flow is docs[0] else "1" if flow is docs[1] else "2"
                              if flow is docs[2] else codec.document_text(flow),
                              str(og.attempts), "" if n is None else n.hex(),
                              "" if g is None else g.hex()))
        except (AttributeError, TypeError):
            return _json_sends(docs, sends)
        if og.carries or entry.count(_US) != 7 or _RS in entry:
            return _json_sends(docs, sends)
        entries.append(entry)
    return _RS + _RS.join(entries) if entries else ""


_text = st.text(alphabet=st.sampled_from(["a", "1", ":", "@", _US, _RS, "é"]), max_size=6)
_time = st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-3, 3))
_send = st.builds(
    lambda sid, purpose, hop, to, flow, attempts, n, g, carries: Outgoing(
        f"s-{sid}", purpose, hop, f"sip:{to}@q.example", flow, TX.key, attempts, n, g,
        carries),
    st.integers(0, 5) | _text, st.sampled_from(list(Purpose)), st.sampled_from(list(Hop)),
    _text, st.sampled_from([REQ, PI, RESP, replace(REQ, transaction_id="other")]),
    st.integers(-2, 12) | st.sampled_from([True, False, 10**20]), _time, _time,
    st.sampled_from([(), ("k-1",)]))


@settings(max_examples=400, deadline=None)
@given(sends=st.lists(_send, max_size=4), flows=st.sampled_from([(PI, RESP), (None, RESP),
                                                                 (PI, None)]))
def test_the_sends_column_is_the_text_the_per_send_rule_gives(
        sends: list[Outgoing], flows: tuple[ProcessIndication | None,
                                            ProfileUpdateResponse | None]) -> None:
    """The separators checked once over the column and the attempts' digits looked up give
    the text the per-send checks and ``str()`` gave, JSON included (checked to fail with the
    RS count left out, and with ``_DIGITS`` shifted by one)."""
    tx = replace(TX, indication=flows[0], response=flows[1])
    assert sends_text(tx, sends) == _reference_sends_text(tx, sends)


def test_an_empty_transaction_column_is_stored_as_null(tmp_path: Path) -> None:
    """A transaction's empty indication, response and assignee, bound as ``NULL_BOUND`` and
    read back by ``nullif``, are the rows binding None writes: NULL, whether the row is
    inserted or updated, and a text that looks like the bound value stays text (checked to
    fail with the statements' ``nullif`` left out)."""
    bare = replace(TX, indication=None, response=None, assignee=None, state=TxState.RECEIVED)
    zero = replace(TX, transaction_id="t-0", assignee="0")  # (not an MC service ID: a text)
    path = str(tmp_path / "s.sqlite")
    store = SqliteStore(path)
    store.apply([Put(bare), Put(zero)])
    db = sqlite3.connect(path)
    names = [c for c, _ in COLUMNS[Transaction.KIND]]
    plain = sqlite3.connect(":memory:")
    plain.execute(f"CREATE TABLE t ({', '.join(names)})")
    plain.executemany(f"INSERT INTO t VALUES ({','.join('?' * len(names))})",
                      [row_of(bare), row_of(zero)])
    typed = ", ".join(f"{c}, typeof({c})" for c in names)

    def rows(conn: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
        return conn.execute(f"SELECT {typed} FROM {table} ORDER BY key").fetchall()

    assert rows(db, "transactions") == rows(plain, "t")
    # the state-only UPDATE (no flow changes): the assignee stays NULL, then is set, then NULL
    for step in (replace(bare, state=TxState.DONE, deadline=20.0),
                 replace(bare, state=TxState.DONE, assignee="sip:d@q.example"),
                 replace(bare, state=TxState.DONE)):
        seen: list[str] = []
        store._db.set_trace_callback(seen.append)
        store.apply([Put(step)])
        assert any(s.startswith("UPDATE transactions") for s in seen)
        plain.execute("DELETE FROM t WHERE key=?", (step.key,))
        plain.execute(f"INSERT INTO t VALUES ({','.join('?' * len(names))})", row_of(step))
        assert rows(db, "transactions") == rows(plain, "t")
    store.close()
    again = SqliteStore(path)
    assert sorted(again.load().transactions, key=lambda t: t.key) == sorted(
        [replace(bare, state=TxState.DONE), zero], key=lambda t: t.key)
    again.close()
    db.close()

