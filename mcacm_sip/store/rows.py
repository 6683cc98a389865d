"""Records as table rows, shared by the SQLite and PostgreSQL stores (one layout, one schema
version for both: docs/scale-out.md "Schema and migrations").

A row is a tuple in column order (:func:`row_of`); :data:`LOAD` turns a fetched row (anything
indexable by column name: ``sqlite3.Row``, ``asyncpg.Record``) back into its record.  Flows are
stored as their XML documents (``mcacm_sip.acm.codec``), so a store holds exactly what travels on
the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    AcmResponse,
    ProcessIndication,
    UserProfile,
)
from mcacm_sip.core.events import Put, Remove, StoreChange
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.state import (
    Hop,
    Mapping,
    Outgoing,
    PendingItem,
    Purpose,
    Record,
    Role,
    Transaction,
    TxState,
)

SCHEMA_VERSION = 4
"""The record layout's version, the same in SQLite and PostgreSQL: 2 = leg ids and canonical
keys (issue 12), 3 = the partner's groups (issue 17), 4 = a transaction's sends in its own row
(issue 18, :func:`sends_text`).  PostgreSQL rows carry lease columns besides
(store/postgres.py)."""

TABLE = {Transaction.KIND: "transactions", PendingItem.KIND: "pending",
         Outgoing.KIND: "outgoing", Mapping.KIND: "mappings", PartnerGroup.KIND: "groups"}
"""Record kind -> table."""

COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    Transaction.KIND: (("key", "text"), ("role", "text"), ("transaction_id", "text"),
                       ("peer", "text"), ("state", "text"), ("created", "float8"),
                       ("deadline", "float8"), ("request", "text"), ("indication", "text"),
                       ("response", "text"), ("assignee", "text"), ("leg_id", "text"),
                       ("sends", "text")),
    PendingItem.KIND: (("key", "text"), ("owner", "text"), ("is_fa", "int4"),
                       ("created", "float8"), ("flow", "text")),
    Outgoing.KIND: (("key", "text"), ("purpose", "text"), ("hop", "text"), ("dest", "text"),
                    ("flow", "text"), ("tx_key", "text"), ("attempts", "int4"),
                    ("next_at", "float8"), ("give_up_at", "float8"), ("carries", "text")),
    Mapping.KIND: (("key", "text"), ("side", "text"), ("peer", "text"), ("primary_id", "text"),
                   ("partner_id", "text"), ("profile", "text"), ("removed", "int4")),
    PartnerGroup.KIND: (("key", "text"), ("peer", "text"), ("group_id", "text"),
                        ("provisioned", "int4"), ("members", "text"), ("updated", "float8")),
}
"""Record kind -> its columns in row order, with their PostgreSQL types."""


class StoreError(RuntimeError):
    """The database cannot be used (wrong schema version, corrupt row): the node stops
    (crash-only)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (PostgreSQL restarting, network): nothing was
    stored, the request is answered 503 with Retry-After and the commit retried."""


class RowLike(Protocol):
    def __getitem__(self, name: str, /) -> Any: ...


_F = TypeVar("_F")


_text = codec.document_text


def _xml(flow: AcmFlow | None) -> str | None:
    # a received flow is kept as the document that arrived, ours as encoded (codec.document);
    # the codec remembers the last flows' texts: a transaction row rewritten at every state
    # change, and a flow stored then sent, are encoded (and schema-checked) and decoded once
    return None if flow is None else codec.document_text(flow)


def _flow(text: str | None, kind: type[_F] | tuple[type[Any], ...]) -> Any:
    if text is None:
        return None
    flow = codec.decode(text.encode("utf-8"))
    if not isinstance(flow, kind):
        raise StoreError(f"stored flow {flow.FLOW} is not of the expected kind")
    return flow


_REQ = AcmRequest.__args__
_RESP = AcmResponse.__args__


def row_of(record: Record, sends: str = "", null: object = None) -> tuple[Any, ...]:
    """The row of ``record``, in :data:`COLUMNS` order; ``sends``: a transaction's sends
    column (:func:`sends_text`); ``null``: what a transaction's empty :data:`NULLABLE`
    column is bound as (:data:`NULL_BOUND` for the SQLite store).  An enum column is the
    member's ``_value_`` (what ``.value``, a Python-level property on Python 3.11,
    returns)."""
    match record:
        case Transaction():
            # (_xml inlined: three flows per row; a transaction always has its request)
            ind, resp, assignee = record.indication, record.response, record.assignee
            return (record.key, record.role._value_, record.transaction_id, record.peer,
                    record.state._value_, record.created, record.deadline,
                    _text(record.request), null if ind is None else _text(ind),
                    null if resp is None else _text(resp),
                    null if assignee is None else assignee, record.leg_id, sends)
        case PendingItem():
            return (record.key, record.owner, int(record.is_fa), record.created,
                    _xml(record.flow))
        case Outgoing():
            return (record.key, record.purpose._value_, record.hop._value_, record.to,
                    _xml(record.flow), record.tx_key, record.attempts, record.next_at,
                    record.give_up_at,
                    json.dumps(list(record.carries)) if record.carries else "[]")
        case Mapping():
            return (record.key, record.side.value, record.peer, record.primary_id,
                    record.partner_id, record.profile.xml if record.profile else None,
                    int(record.removed))
        case PartnerGroup():
            return (record.key, record.peer, record.group_id, int(record.provisioned),
                    json.dumps(list(record.members)), record.updated)
    raise TypeError(f"not a record: {record!r}")


LOAD: dict[str, Callable[[RowLike], Record]] = {
    Transaction.KIND: lambda r: Transaction(
        Role(r["role"]), r["transaction_id"], r["peer"], _flow(r["request"], _REQ),
        TxState(r["state"]), r["created"], r["deadline"],
        _flow(r["indication"], ProcessIndication), _flow(r["response"], _RESP), r["assignee"],
        r["leg_id"]),
    PendingItem.KIND: lambda r: PendingItem(
        r["key"], r["owner"], bool(r["is_fa"]), r["created"], _flow(r["flow"], _REQ + _RESP)),
    Outgoing.KIND: lambda r: Outgoing(
        r["key"], Purpose(r["purpose"]), Hop(r["hop"]), r["dest"], _flow(r["flow"], object),
        r["tx_key"], r["attempts"], r["next_at"], r["give_up_at"],
        tuple(json.loads(r["carries"]))),
    Mapping.KIND: lambda r: Mapping(
        Role(r["side"]), r["peer"], r["primary_id"], r["partner_id"],
        UserProfile(r["profile"]) if r["profile"] is not None else None, bool(r["removed"])),
    PartnerGroup.KIND: lambda r: PartnerGroup(
        r["peer"], r["group_id"], bool(r["provisioned"]), tuple(json.loads(r["members"])),
        r["updated"]),
}
"""Record kind -> a fetched row's record."""


_US, _RS = "\x1f", "\x1e"
"""Field and entry separators of the compact ``sends`` column: XML 1.0 excludes both from
a document (Char, 2.2), a URI from its text; a send whose text holds one anyway is written
as JSON instead (:func:`sends_text`)."""


def sends_text(tx: Transaction, sends: Iterable[Outgoing]) -> str:
    """The ``sends`` column of ``tx``'s row: the stored sends of ``tx`` (each with
    ``tx_key == tx.key``), "" for none.  Each send is ``send_id, purpose, hop, dest, flow,
    attempts, next_at, give_up_at``: ``flow`` is "0", "1" or "2" when the send's flow is the
    transaction's own request, indication or response object (the row holds its document
    already), else the flow's document; by identity only, so an equal flow that is another
    object is written in full (never a reference to a document that could differ).  Times
    are exact (``float.hex``).  Compact form: each send after a RS, its fields joined by US;
    a send carrying item keys, or a text holding a separator, makes the whole column a JSON
    array of ``[..., carries]`` instead (:func:`sends_in` reads both)."""
    docs = (tx.request, tx.indication, tx.response)
    entries = []
    for og in sends:
        flow = og.flow
        n, g, a = og.next_at, og.give_up_at, og.attempts
        try:
            entry = _US.join((og.send_id, og.purpose, og.hop, og.to,
                              "0" if flow is docs[0] else "1" if flow is docs[1] else "2"
                              if flow is docs[2] else codec.document_text(flow),
                              _DIGITS[a] if type(a) is int and 0 <= a <= 9 else str(a),
                              "" if n is None else n.hex(), "" if g is None else g.hex()))
        except (AttributeError, TypeError):  # (a time that is not a float)
            return _json_sends(docs, sends)
        if og.carries:
            return _json_sends(docs, sends)
        entries.append(entry)
    if not entries:
        return ""
    text = _RS + _RS.join(entries)
    # each entry joins 8 fields (7 US at least): 7 each and no RS but ours, or a field holds
    # a separator (two counts over the column, not two per send)
    if text.count(_US) != 7 * len(entries) or text.count(_RS) != len(entries):
        return _json_sends(docs, sends)
    return text


_DIGITS = tuple(str(n) for n in range(10))
"""``str(n)`` of the attempts a send usually has, without its call."""


def _json_sends(docs: tuple[AcmFlow | None, ...], sends: Iterable[Outgoing]) -> str:
    entries = []
    for og in sends:
        flow = og.flow
        ref: int | str = 0 if flow is docs[0] else 1 if flow is docs[1] else 2 \
            if flow is docs[2] else codec.document_text(flow)
        entries.append([og.send_id, og.purpose.value, og.hop.value, og.to, ref, og.attempts,
                        og.next_at, og.give_up_at, list(og.carries)])
    return json.dumps(entries)


def sends_in(tx: Transaction, text: str | None) -> list[Outgoing]:
    """The sends a row's ``sends`` column holds (:func:`sends_text`), of transaction ``tx``."""
    if not text:
        return []
    docs = (tx.request, tx.indication, tx.response)
    sends = []
    try:
        if text[0] == _RS:
            for entry in text[1:].split(_RS):
                send_id, purpose, hop, to, ref, attempts, next_at, give_up_at = entry.split(_US)
                flow = docs[int(ref)] if len(ref) == 1 else _flow(ref, object)
                if flow is None:
                    raise StoreError(f"send {send_id} names a flow transaction {tx.key} lacks")
                sends.append(Outgoing(
                    send_id, Purpose(purpose), Hop(hop), to, flow, tx.key, int(attempts),
                    float.fromhex(next_at) if next_at else None,
                    float.fromhex(give_up_at) if give_up_at else None))
            return sends
        for send_id, purpose, hop, to, ref, attempts, next_at, give_up_at, carries in (
                json.loads(text)):
            flow = _flow(ref, object) if isinstance(ref, str) else docs[ref]
            if flow is None:
                raise StoreError(f"send {send_id} names a flow transaction {tx.key} lacks")
            sends.append(Outgoing(send_id, Purpose(purpose), Hop(hop), to, flow, tx.key,
                                  attempts, next_at, give_up_at, tuple(carries)))
    except (ValueError, TypeError, IndexError) as exc:
        raise StoreError(f"transaction {tx.key}: unreadable sends: {exc}") from None
    return sends


NULLABLE = ("indication", "response", "assignee")
"""The transaction columns that may be NULL (all text)."""

NULL_BOUND = 0
"""What the SQLite store binds for a NULL of :data:`NULLABLE`; its statements read it back
as NULL with ``nullif(?, 0)``.  Binding None costs Python's sqlite3 module (3.11) a failed
adaptation each time (it looks up ``PrepareProtocol.__adapt__``, formatting an
AttributeError it then drops: about 3 k instructions, two per request); an int binds at
once.  Never a value of these columns: each holds text or NULL, and SQLite never finds a
text equal to an integer (a bound value has no affinity to convert it)."""

STATE_COLUMNS = ("state", "deadline", "assignee", "leg_id", "sends")
"""The transaction columns a step of its procedure, or a change of its sends, changes; the
rest of a row (its origin, id, creation time and flows) only ever changes with these when a
flow is added (:func:`last_changes` tells the two apart)."""

STEP_COLUMNS = ("state", "deadline", "sends")
"""Of :data:`STATE_COLUMNS`, those most steps change: a step that keeps its transaction's
assignee and leg id (the common request's move to done) updates only these (two values
fewer to bind: about 2 k instructions a request in SQLite; the same record written)."""


@dataclass(slots=True)
class RowSends:
    """Where a store's stored sends are, as of its last commit (or load): in their
    transaction's row (its ``sends`` column) or in the ``outgoing`` table.  A send is written
    into its transaction's row when that row is stored; one without a transaction, or whose
    transaction is not stored, goes to the table, and stays there until its outcome.  A
    transaction removed while sends of it are open moves them to the table."""

    of_tx: dict[str, dict[str, Outgoing]] = field(default_factory=dict)
    """Transaction key -> the sends its row holds (no entry: none)."""
    text: dict[str, str] = field(default_factory=dict)
    """Transaction key -> its row's ``sends`` column (no entry: "")."""
    row_of: dict[str, str] = field(default_factory=dict)
    """Send id -> the key of the transaction row holding it."""
    tabled: set[str] = field(default_factory=set)
    """Send ids in the ``outgoing`` table."""

    def hold(self, key: str, sends: dict[str, Outgoing], text: str) -> None:
        """Row ``key`` holds ``sends`` (its column ``text``) now."""
        self._hold_rows({key: sends}, {key: text})

    def committed(self, batch: Batch) -> None:
        """``batch`` is on disk."""
        self._hold_rows(batch.sends, batch.texts)
        if batch.untabled:
            self.tabled.difference_update(batch.untabled)
        if batch.tabled:
            self.tabled.update(batch.tabled)

    def _hold_rows(self, rows: dict[str, dict[str, Outgoing]], texts: dict[str, str]
                   ) -> None:
        """Each row ``key`` of ``rows`` holds ``rows[key]`` (its column ``texts[key]``, ""
        if absent) now (two rows per request: one gains its sends, one loses them)."""
        of_tx, text, row_of = self.of_tx, self.text, self.row_of
        for key, sends in rows.items():
            before = of_tx.pop(key, None)
            if before is not None:
                for send_id in before:
                    row_of.pop(send_id, None)
            text.pop(key, None)
            if sends:
                of_tx[key] = sends
                text[key] = texts.get(key, "")
                for send_id in sends:
                    row_of[send_id] = key


@dataclass(slots=True)
class Batch:
    """What one group commit writes (:func:`last_changes`)."""

    puts: dict[str, list[tuple[Any, ...]]]
    """Kind -> whole rows to insert or replace."""
    removes: dict[str, list[str]]
    """Kind -> keys to delete."""
    moved: list[Transaction]
    """Transactions whose stored row differs only in :data:`STATE_COLUMNS` (an UPDATE of
    those); only when the caller said what its rows hold.  Those of ``step_rows`` first."""
    move_rows: list[tuple[Any, ...]]
    """The UPDATE's values for the last ``len(move_rows)`` of ``moved``:
    :data:`STATE_COLUMNS`, then the key."""
    transactions: list[Transaction]
    """Every transaction written (whole or moved), for the caller's memory of its rows."""
    sends: dict[str, dict[str, Outgoing]] = field(default_factory=dict)
    """Transaction key -> the sends its row holds after this batch, for each row whose sends
    changed (empty: none, or the row is deleted)."""
    texts: dict[str, str] = field(default_factory=dict)
    """Transaction key -> its ``sends`` column after this batch (rows of ``sends`` kept)."""
    tabled: list[str] = field(default_factory=list)
    """Send ids written into the ``outgoing`` table."""
    untabled: list[str] = field(default_factory=list)
    """Send ids deleted from the ``outgoing`` table."""
    step_rows: list[tuple[Any, ...]] = field(default_factory=list)
    """The UPDATE's values for the first ``len(step_rows)`` of ``moved``, whose assignee and
    leg id are those their rows hold: :data:`STEP_COLUMNS`, then the key."""


def last_changes(changes: Sequence[StoreChange],
                 stored: dict[str, Transaction] | None = None,
                 held: RowSends | None = None, null: object = None) -> Batch:
    """The rows to write and the keys to delete, per kind: a group commit often changes one
    row several times, and inside one transaction only each row's last change matters.  Rows
    are encoded here, before any transaction opens: a bad record must not leave one open.
    ``stored``: the transactions as their rows hold them now (key -> record), if the caller
    knows; a transaction that only moved on from one of them is listed in ``moved``, not
    encoded again.  ``held`` (with ``stored``): where the caller's sends are
    (:class:`RowSends`): a send of a stored transaction is kept in its row, whose UPDATE (or
    whole row) carries it; without, every send is a row of the ``outgoing`` table.
    ``null``: what an empty column of a transaction's row, or its UPDATE, is bound as
    (:func:`row_of`)."""
    last: dict[tuple[str, str], StoreChange] = {}
    for change in changes:
        if isinstance(change, Put):
            record = change.record
            # (a send's key is its id: Outgoing.key is a Python-level property)
            last[(record.KIND, record.send_id if type(record) is Outgoing
                  else record.key)] = change
        else:
            last[(change.kind, change.key)] = change
    # our new flows (the transactions' and the sends'), checked together (codec.encode_all)
    flows: list[AcmFlow | None] = []
    whole: list[Record] = []
    rewritten: list[Transaction] = []
    moved: list[Transaction] = []
    transactions: list[Transaction] = []
    removes: dict[str, list[str]] = {}
    sends: list[Outgoing] = []
    settled: list[str] = []
    folding = held is not None and stored is not None
    for change in last.values():
        if isinstance(change, Remove):
            if folding and change.kind == Outgoing.KIND:
                settled.append(change.key)
            else:
                removes.setdefault(change.kind, []).append(change.key)
            continue
        record = change.record
        if isinstance(record, Transaction):
            transactions.append(record)
            old = stored.get(record.key) if stored is not None else None
            # whether its row differs from the stored one at most in STATE_COLUMNS.  Flows
            # are compared by identity: a flow is immutable and a step carries its
            # transaction's flows over (Transaction.evolve), so the same object is the same
            # document; an equal flow that is another object counts as a change (the row is
            # written whole, never wrongly left)
            if old is not None and (
                    old.request is record.request and old.indication is record.indication
                    and old.response is record.response and old.created == record.created
                    and old.peer == record.peer
                    and old.transaction_id == record.transaction_id
                    and old.role is record.role):
                moved.append(record)
                continue
            flows += (record.request, record.indication, record.response)
            rewritten.append(record)
            continue
        if isinstance(record, Outgoing):
            flows.append(record.flow)
            if folding:
                sends.append(record)
                continue
        elif isinstance(record, PendingItem):
            flows.append(record.flow)
        whole.append(record)
    codec.encode_all(flows)
    batch = Batch({}, removes, moved, [], transactions)
    if held is not None and stored is not None:
        _fold(batch, sends, settled, rewritten, stored, held)
    puts = batch.puts
    for record in whole:
        puts.setdefault(record.KIND, []).append(row_of(record))
    texts = batch.texts
    if held is None:
        for tx in rewritten:
            puts.setdefault(Transaction.KIND, []).append(row_of(tx, "", null))
        batch.move_rows = [(tx.state._value_, tx.deadline,
                            null if tx.assignee is None else tx.assignee, tx.leg_id, "", tx.key)
                           for tx in moved]
        return batch
    have = held.text
    for tx in rewritten:
        key = tx.key
        puts.setdefault(Transaction.KIND, []).append(
            row_of(tx, texts[key] if key in texts else have.get(key, ""), null))
    # (stored: each moved transaction's row as it is, its assignee and leg id among it)
    steps, move_rows = batch.step_rows, batch.move_rows
    stepped: list[Transaction] = []
    others: list[Transaction] = []
    if stored is None:  # (nothing moved)
        return batch
    for tx in moved:
        key = tx.key
        old = stored[key]
        if old.assignee == tx.assignee and old.leg_id == tx.leg_id:
            stepped.append(tx)
            steps.append((tx.state._value_, tx.deadline,
                          texts[key] if key in texts else have.get(key, ""), key))
        else:
            others.append(tx)
            move_rows.append((tx.state._value_, tx.deadline,
                              null if tx.assignee is None else tx.assignee, tx.leg_id,
                              texts[key] if key in texts else have.get(key, ""), key))
    if others and stepped:  # the step rows' transactions first
        moved[:] = stepped + others
    return batch


def _fold(batch: Batch, sends: list[Outgoing], settled: list[str],
          rewritten: list[Transaction], stored: dict[str, Transaction],
          held: RowSends) -> None:
    """:func:`last_changes`'s sends (``sends`` put, ``settled`` removed) into their
    transactions' rows, or the ``outgoing`` table (:class:`RowSends`)."""
    rows = batch.sends  # key -> the row's sends after the batch, for rows whose sends change
    gone = set(batch.removes.get(Transaction.KIND, ()))
    put = {tx.key: tx for tx in batch.transactions}
    table: list[Outgoing] = []
    row_of_send, tabled = held.row_of, held.tabled
    for send_id in settled:
        key = row_of_send.get(send_id)
        if key is None:
            batch.removes.setdefault(Outgoing.KIND, []).append(send_id)
            batch.untabled.append(send_id)
            continue
        of_row = rows.get(key)
        if of_row is None:
            of_row = rows[key] = dict(held.of_tx[key])
        del of_row[send_id]
    for og in sends:
        send_id = og.send_id
        key = row_of_send.get(send_id)
        if key is not None:  # in a row: kept there while it is its transaction's row
            of_row = rows.get(key)
            if of_row is None:
                of_row = rows[key] = dict(held.of_tx[key])
            if key == og.tx_key and key not in gone:
                of_row[send_id] = og
                continue
            del of_row[send_id]
        elif send_id in tabled:
            table.append(og)
            continue
        key = og.tx_key
        if key is not None and key not in gone and (key in put or key in stored):
            of_row = rows.get(key)
            if of_row is None:
                of_row = rows[key] = dict(held.of_tx.get(key, ()))
            of_row[send_id] = og
        else:
            table.append(og)
            batch.tabled.append(send_id)
    for key in gone:  # a transaction removed with sends open: they move to the table
        of_row = rows.get(key, held.of_tx.get(key))
        if of_row:
            table += of_row.values()
            batch.tabled += of_row
            rows[key] = {}
    for tx in rewritten:  # a new row: its references are to its own flows, written anew
        if tx.key not in rows and tx.key in held.of_tx:
            rows[tx.key] = dict(held.of_tx[tx.key])
    if table:
        batch.puts[Outgoing.KIND] = [row_of(og) for og in table]
    texts = batch.texts
    for key, of_row in rows.items():
        if key not in gone:
            tx = put.get(key) or stored[key]
            texts[key] = sends_text(tx, of_row.values()) if of_row else ""
            if key not in put:  # only its sends change: an UPDATE with its state as stored
                batch.moved.append(tx)
