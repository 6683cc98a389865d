"""Records as table rows, shared by the SQLite and PostgreSQL stores (one layout, one schema
version for both: docs/scale-out.md "Schema and migrations").

A row is a tuple in column order (:func:`row_of`); :data:`LOAD` turns a fetched row (anything
indexable by column name: ``sqlite3.Row``, ``asyncpg.Record``) back into its record.  Flows are
stored as their XML documents (``mcacm_sip.acm.codec``), so a store holds exactly what travels on
the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

SCHEMA_VERSION = 3
"""The record layout's version, the same in SQLite and PostgreSQL: 2 = leg ids and canonical
keys (issue 12), 3 = the partner's groups (issue 17).  PostgreSQL rows carry lease columns
besides (store/postgres.py)."""

TABLE = {Transaction.KIND: "transactions", PendingItem.KIND: "pending",
         Outgoing.KIND: "outgoing", Mapping.KIND: "mappings", PartnerGroup.KIND: "groups"}
"""Record kind -> table."""

COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    Transaction.KIND: (("key", "text"), ("role", "text"), ("transaction_id", "text"),
                       ("peer", "text"), ("state", "text"), ("created", "float8"),
                       ("deadline", "float8"), ("request", "text"), ("indication", "text"),
                       ("response", "text"), ("assignee", "text"), ("leg_id", "text")),
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


def row_of(record: Record) -> tuple[Any, ...]:
    """The row of ``record``, in :data:`COLUMNS` order."""
    match record:
        case Transaction():
            return (record.key, record.role.value, record.transaction_id, record.peer,
                    record.state.value, record.created, record.deadline, _xml(record.request),
                    _xml(record.indication), _xml(record.response), record.assignee,
                    record.leg_id)
        case PendingItem():
            return (record.key, record.owner, int(record.is_fa), record.created,
                    _xml(record.flow))
        case Outgoing():
            return (record.key, record.purpose.value, record.hop.value, record.to,
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


STATE_COLUMNS = ("state", "deadline", "assignee", "leg_id")
"""The transaction columns a step of its procedure changes; the rest of a row (its origin, id,
creation time and flows) only ever changes with these when a flow is added
(:func:`moved_only`)."""


def state_row(tx: Transaction) -> tuple[Any, ...]:
    """``tx``'s :data:`STATE_COLUMNS` values, then its key."""
    return (tx.state.value, tx.deadline, tx.assignee, tx.leg_id, tx.key)


def moved_only(old: Transaction, new: Transaction) -> bool:
    """Whether ``new``'s row differs from ``old``'s (same key) at most in
    :data:`STATE_COLUMNS`.  Flows are compared by identity: a flow is immutable and a step
    carries its transaction's flows over (``Transaction.evolve``), so the same object is the
    same document; an equal flow that is another object counts as a change (the row is
    written whole, never wrongly left)."""
    return (old.request is new.request and old.indication is new.indication
            and old.response is new.response and old.created == new.created
            and old.peer == new.peer and old.transaction_id == new.transaction_id
            and old.role is new.role)


@dataclass(slots=True)
class Batch:
    """What one group commit writes (:func:`last_changes`)."""

    puts: dict[str, list[tuple[Any, ...]]]
    """Kind -> whole rows to insert or replace."""
    removes: dict[str, list[str]]
    """Kind -> keys to delete."""
    moved: list[Transaction]
    """Transactions whose stored row differs only in :data:`STATE_COLUMNS` (an UPDATE of
    those); only when the caller said what its rows hold."""
    transactions: list[Transaction]
    """Every transaction written (whole or moved), for the caller's memory of its rows."""


def last_changes(changes: Sequence[StoreChange],
                 stored: dict[str, Transaction] | None = None) -> Batch:
    """The rows to write and the keys to delete, per kind: a group commit often changes one
    row several times, and inside one transaction only each row's last change matters.  Rows
    are encoded here, before any transaction opens: a bad record must not leave one open.
    ``stored``: the transactions as their rows hold them now (key -> record), if the caller
    knows; a transaction that only moved on from one of them is listed in ``moved``, not
    encoded again."""
    last: dict[tuple[str, str], StoreChange] = {}
    for change in changes:
        if isinstance(change, Put):
            last[(change.record.KIND, change.record.key)] = change
        else:
            last[(change.kind, change.key)] = change
    # our new flows (the transactions' and the sends'), checked together (codec.encode_all)
    flows: list[AcmFlow | None] = []
    whole: list[Record] = []
    moved: list[Transaction] = []
    transactions: list[Transaction] = []
    removes: dict[str, list[str]] = {}
    for change in last.values():
        if isinstance(change, Remove):
            removes.setdefault(change.kind, []).append(change.key)
            continue
        record = change.record
        if isinstance(record, Transaction):
            transactions.append(record)
            old = stored.get(record.key) if stored is not None else None
            if old is not None and moved_only(old, record):
                moved.append(record)
                continue
            flows += (record.request, record.indication, record.response)
        elif isinstance(record, Outgoing | PendingItem):
            flows.append(record.flow)
        whole.append(record)
    codec.encode_all(flows)
    puts: dict[str, list[tuple[Any, ...]]] = {}
    for record in whole:
        puts.setdefault(record.KIND, []).append(row_of(record))
    return Batch(puts, removes, moved, transactions)
