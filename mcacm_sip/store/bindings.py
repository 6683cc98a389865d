"""The registrar's bindings in the ACMS's SQLite file (a ``bindings`` table of its own), so a
restarted ACMS still knows who is logged on (TS 23.280 10.17.3.1) and through which proxies to
reach them (RFC 3327 Path)."""

from __future__ import annotations

import json

from mcacm_sip.sip.registrar import Binding
from mcacm_sip.sip.uri import Uri, address_of_record
from mcacm_sip.store.sqlite import open_db, write


class SqliteBindingStore:
    """A :class:`~mcacm_sip.sip.registrar.BindingStore` in SQLite.

    A row's ``aor`` is the canonical spelling of its AOR (``str(Uri)``, one text for every
    RFC 3261 19.1.4 spelling), so a lookup is one indexed equality.  Rows written in another
    spelling (files of earlier versions, whose AOR text only lower-cased the host) are rewritten
    to the canonical one when the file is opened; a row whose AOR is no SIP URI stays as it is
    and matches nothing."""

    def __init__(self, path: str) -> None:
        self._db = open_db(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS bindings (aor TEXT, contact TEXT, "
                         "expires_at REAL, call_id TEXT, cseq INTEGER, path TEXT)")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(bindings)")}
        if "path" not in columns:  # a file of an earlier version: its bindings had no Path
            self._db.execute("ALTER TABLE bindings ADD COLUMN path TEXT")
        self._canonicalise()

    def _canonicalise(self) -> None:
        respelled = []
        for (text,) in self._db.execute("SELECT DISTINCT aor FROM bindings").fetchall():
            aor = address_of_record(text)
            if aor is not None and str(aor) != text:
                respelled.append((str(aor), text))
        if respelled:
            with write(self._db):
                self._db.executemany("UPDATE bindings SET aor=? WHERE aor=?", respelled)

    def get(self, aor: Uri) -> tuple[Binding, ...]:
        rows = self._db.execute("SELECT contact, expires_at, call_id, cseq, path FROM bindings "
                                "WHERE aor=? ORDER BY rowid", (str(aor),))
        return tuple(Binding(contact, expires_at, call_id, cseq,
                             tuple(json.loads(path)) if path else ())
                     for contact, expires_at, call_id, cseq, path in rows)

    def put(self, aor: Uri, bindings: tuple[Binding, ...]) -> None:
        key = str(aor)
        with write(self._db):
            self._db.execute("DELETE FROM bindings WHERE aor=?", (key,))
            self._db.executemany(
                "INSERT INTO bindings (aor, contact, expires_at, call_id, cseq, path) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(key, b.contact, b.expires_at, b.call_id, b.cseq,
                  json.dumps(list(b.path)) if b.path else None) for b in bindings])

    def aors(self) -> list[Uri]:
        rows = self._db.execute("SELECT DISTINCT aor FROM bindings").fetchall()
        return [aor for (text,) in rows if (aor := address_of_record(text)) is not None]

    def close(self) -> None:
        self._db.close()
