"""The ACMS's registrar bindings in its SQLite file: a restarted ACMS still knows who is logged
on (10.17.3.1) and through which proxies to reach them (RFC 3327 Path)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mcacm_sip.sip.registrar import Binding, Registrar
from mcacm_sip.sip.uri import identity
from mcacm_sip.store.bindings import SqliteBindingStore

AOR = identity("sip:alice@primary.example")
VECTOR = ("<sip:127.0.0.1:5060;transport=tcp;lr>", "<sip:edge.primary.example;lr>")


def test_bindings_and_their_path_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "acms.sqlite")
    store = SqliteBindingStore(path)
    bindings = (Binding("sip:alice@127.0.0.1:5062", 100.0, "c1", 1, VECTOR),
                Binding("sip:alice@127.0.0.1:5063;transport=tcp", 200.0, "c2", 4))
    store.put(AOR, bindings)
    store.close()
    again = SqliteBindingStore(path)
    assert again.get(AOR) == bindings
    assert again.aors() == [AOR]
    again.put(AOR, ())
    assert again.get(AOR) == () and again.aors() == []
    again.close()


def test_a_file_of_the_earlier_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    """Files written before Path support have no path column: their bindings load with an
    empty Path (they were registered without one), and new ones keep theirs."""
    path = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE bindings (aor TEXT, contact TEXT, expires_at REAL, call_id TEXT, "
               "cseq INTEGER)")
    db.execute("INSERT INTO bindings VALUES (?, ?, ?, ?, ?)",
               (str(AOR), "sip:alice@127.0.0.1:5062", 100.0, "c1", 1))
    db.commit()
    db.close()
    store = SqliteBindingStore(path)
    assert store.get(AOR) == (Binding("sip:alice@127.0.0.1:5062", 100.0, "c1", 1),)
    store.put(AOR, (Binding("sip:alice@127.0.0.1:5062", 300.0, "c1", 2, VECTOR),))
    assert store.get(AOR)[0].path == VECTOR
    store.close()


def test_rows_in_another_spelling_are_found_by_every_spelling(tmp_path: Path) -> None:
    """A file whose AOR texts are not in the canonical spelling (an earlier version only
    lower-cased the host; a hand-edited file anything): its bindings still count for their
    user after a restart, whichever RFC 3261 19.1.4 spelling asks."""
    path = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE bindings (aor TEXT, contact TEXT, expires_at REAL, call_id TEXT, "
               "cseq INTEGER, path TEXT)")
    db.executemany("INSERT INTO bindings VALUES (?, ?, ?, ?, ?, NULL)", [
        ("sip:%61lice@Primary.Example", "sip:alice@127.0.0.1:5062", 100.0, "c1", 1),
        ("sip:alice@primary.example", "sip:alice@127.0.0.1:5063", 100.0, "c2", 1),
        ("not a uri", "sip:x@127.0.0.1", 100.0, "c3", 1)])
    db.commit()
    db.close()
    store = SqliteBindingStore(path)
    assert store.aors() == [AOR]
    registrar = Registrar(store)
    for spelling in ("sip:alice@primary.example", "SIP:%61lice@PRIMARY.example;transport=tcp"):
        assert [b.contact for b in registrar.contacts(spelling, 50.0)] == [
            "sip:alice@127.0.0.1:5062", "sip:alice@127.0.0.1:5063"]
    store.close()
