"""A restarted ACMS continues every open transaction from its SQLite store, exactly once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mcacm_sip.acm.model import Addressee, ResultCode
from mcacm_sip.core.events import ReportKind
from mcacm_sip.core.state import Role, Transaction, TxState
from mcacm_sip.store import SqliteStore
from mcacm_sip.store.rows import COLUMNS, LOAD, row_of, sends_in
from mcacm_sip.store.sqlite import SCHEMA_VERSION

from .harness import ALICE, DAVE, DUTY, PARTNER, PRIMARY, Net, migrate, two_systems, update


def sqlite_systems(tmp_path: Path) -> Net:
    return two_systems(primary_store=SqliteStore(str(tmp_path / "primary.sqlite")),
                       partner_store=SqliteStore(str(tmp_path / "partner.sqlite")))


def answers_sent(net: Net, tid: str) -> int:
    return sum(1 for r in net.ladder if r.src == PARTNER and r.dst == PRIMARY
               and r.flow == "profile-update-response" and r.transaction_id == tid
               and r.answer == "200")


def test_partner_restart_after_step_4_completes_exactly_once(tmp_path: Path) -> None:
    net = sqlite_systems(tmp_path)
    net.logon(ALICE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)  # DAVE offline: pending at the partner
    net.down.add(PARTNER)                       # SIGKILL after step 4
    net.restart(PARTNER)                        # a new core from the SQLite file
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.PENDING_USER
    net.logon(DAVE)
    net.decide(DAVE, True)
    assert net.results(ALICE) == [ResultCode.SUCCESS, ResultCode.SUCCESS]
    assert answers_sent(net, tid) == 1
    assert [r.kind for r in net.reports[ALICE] if r.transaction_id == tid] == [
        ReportKind.INDICATION, ReportKind.RESPONSE]


def _response_retried_when_the_partner_dies(net: Net) -> str:
    """A profile update whose response the partner could not deliver (the primary was down)
    and was retrying when it died; the primary is back.  The procedure's transaction id."""
    net.logon(ALICE)
    net.logon(DAVE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)
    net.down.add(PRIMARY)        # the response cannot be delivered ...
    net.decide(DAVE, True)
    net.down.add(PARTNER)        # ... and the partner dies while retrying
    net.down.discard(PRIMARY)
    return tid


def test_restart_resends_what_was_not_confirmed(tmp_path: Path) -> None:
    net = sqlite_systems(tmp_path)
    tid = _response_retried_when_the_partner_dies(net)
    net.restart(PARTNER)
    net.advance(120)             # the stored retry fires after the restart
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    assert answers_sent(net, tid) == 1
    assert len([r for r in net.reports[ALICE] if r.kind is ReportKind.RESPONSE
                and r.transaction_id == tid]) == 1


def test_primary_restart_keeps_the_answer_timer_and_mappings(tmp_path: Path) -> None:
    net = sqlite_systems(tmp_path)
    net.logon(ALICE)
    net.logon(DAVE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)
    net.restart(PRIMARY)
    assert net.acms[PRIMARY].mappings()[0].partner_id == mike
    net.advance(25 * 3600 + 1)  # nobody decides: the partner expires it, the primary delivers
    assert net.results(ALICE)[-1] == ResultCode.EXPIRED
    tx = net.acms[PRIMARY].transaction(Role.PRIMARY, tid)
    assert tx is not None and tx.state is TxState.DONE


def test_restart_resubscribes_to_functional_aliases_with_stored_requests(tmp_path: Path
                                                                        ) -> None:
    net = sqlite_systems(tmp_path)
    net.logon(ALICE)
    net.logon(DAVE)
    mike = migrate(net)
    tid = update(net, Addressee(functional_alias=DUTY), mike)
    net.restart(PARTNER)
    assert DUTY in net.subscriptions[PARTNER]
    net.set_holders(PARTNER, DUTY, (DAVE,))
    assert [r.transaction_id for r in net.to_decide[DAVE]] == [tid]
    net.decide(DAVE, False, "no")
    assert net.results(ALICE)[-1] == ResultCode.REJECTED_BY_USER


def _to_schema_3(path: Path) -> int:
    """Rewrite a schema-4 file as schema 3 stored it: every send a row of the outgoing table,
    no sends column.  How many sends it moved."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    moved = 0
    for r in db.execute("SELECT * FROM transactions WHERE sends != ''").fetchall():
        tx = LOAD[Transaction.KIND](r)
        assert isinstance(tx, Transaction)
        for og in sends_in(tx, r["sends"]):
            db.execute(f"INSERT INTO outgoing VALUES ({','.join('?' * len(COLUMNS['outgoing']))})",
                       row_of(og))
            moved += 1
    db.execute("ALTER TABLE transactions DROP COLUMN sends")
    db.execute("UPDATE meta SET value='3' WHERE name='schema'")
    db.commit()
    db.close()
    return moved


def _to_schema_1(path: Path) -> None:
    """Rewrite a schema-2 file as the previous release stored it: no leg id column, primary
    transactions keyed by id alone, partner ones and mappings by the peer as written."""
    _to_schema_3(path)
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    for r in db.execute("SELECT key, role, transaction_id, peer FROM transactions").fetchall():
        old = f"primary {r['transaction_id']}" if r["role"] == "primary" \
            else f"partner {r['peer']} {r['transaction_id']}"
        db.execute("UPDATE transactions SET key=? WHERE key=?", (old, r["key"]))
        db.execute("UPDATE pending SET key=? WHERE key=?", (old, r["key"]))
        db.execute("UPDATE outgoing SET tx_key=? WHERE tx_key=?", (old, r["key"]))
    for r in db.execute("SELECT key, side, peer, primary_id FROM mappings").fetchall():
        db.execute("UPDATE mappings SET key=? WHERE key=?",
                   (f"{r['side']} {r['peer']} {r['primary_id']}", r["key"]))
    db.execute("ALTER TABLE transactions DROP COLUMN leg_id")
    db.execute("UPDATE meta SET value='1' WHERE name='schema'")
    db.commit()
    db.close()


def test_a_schema_1_store_is_upgraded_and_its_transactions_complete(tmp_path: Path) -> None:
    """Rows stored before issue 12 (keys without the origin, no leg id) load after the
    upgrade, keep one row per record, and the open transactions finish exactly once."""
    net = sqlite_systems(tmp_path)
    net.logon(ALICE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)  # DAVE offline: pending at the partner
    for psi, name in ((PRIMARY, "primary"), (PARTNER, "partner")):
        net.stores[psi].close()
        _to_schema_1(tmp_path / f"{name}.sqlite")
        net.stores[psi] = SqliteStore(str(tmp_path / f"{name}.sqlite"))
        net.restart(psi)
    primary = net.acms[PRIMARY].transaction(Role.PRIMARY, tid, ALICE)
    partner = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert primary is not None and primary.state is TxState.INDICATED
    assert partner is not None and partner.state is TxState.PENDING_USER
    assert net.acms[PARTNER].pending_for(DAVE)[0].key == partner.key
    net.logon(DAVE)
    net.decide(DAVE, True)
    assert net.results(ALICE) == [ResultCode.SUCCESS, ResultCode.SUCCESS]
    assert answers_sent(net, tid) == 1
    for psi in (PRIMARY, PARTNER):  # one row per record: nothing left under an old key
        snap = net.stores[psi].load()
        assert len({t.key for t in snap.transactions}) == len(snap.transactions)
        assert len({m.key for m in snap.mappings}) == len(snap.mappings) == 1
        assert snap.pending == ()
    db = sqlite3.connect(tmp_path / "partner.sqlite")
    assert db.execute("SELECT value FROM meta WHERE name='schema'").fetchone() == (
        str(SCHEMA_VERSION),)


def test_a_schema_3_store_with_open_sends_is_upgraded_and_resends_them(tmp_path: Path) -> None:
    """A file of the previous release (schema 3: every send a row of the outgoing table) with
    a send not yet acknowledged: opened, it gains the sends column, the send is sent again
    after the restart exactly once, and its outcome deletes its row of the table."""
    net = sqlite_systems(tmp_path)
    tid = _response_retried_when_the_partner_dies(net)
    path = tmp_path / "partner.sqlite"
    net.stores[PARTNER].close()
    assert _to_schema_3(path) >= 1
    net.stores[PARTNER] = SqliteStore(str(path))
    net.restart(PARTNER)
    net.advance(120)             # the stored retry fires after the restart
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    assert answers_sent(net, tid) == 1
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE name='schema'").fetchone() == (
        str(SCHEMA_VERSION),)
    assert db.execute("SELECT count(*) FROM outgoing").fetchone() == (0,)
    assert "sends" in {r[1] for r in db.execute("PRAGMA table_info(transactions)")}
    db.close()
