"""The ACMS's records in memory and their indexes: transactions, pending items, the outbox,
migration mappings and what the partner applied of group-related ACM (10.17.4)
(:mod:`mcacm_sip.core.state` and :mod:`mcacm_sip.core.groups` define them), each keyed as the
store keys them.  Every change goes through :meth:`AcmsRecords._put` (memory and a store
action) or a ``_drop_*`` (both), and every state change through :meth:`AcmsRecords._move`
(or :meth:`~AcmsRecords._step`, when the same call stores a later state), which asks the
transition table.  The query methods of
:class:`~mcacm_sip.core.acms.AcmsCore` live here.
"""

from __future__ import annotations

import heapq
import logging
import uuid
from dataclasses import replace
from typing import Final

from mcacm_sip.acm.model import AcmRequest, AcmResponse, ModelError, ProcessIndication
from mcacm_sip.core.config import AcmsConfig, AuthorisedUser, PeerSystem
from mcacm_sip.core.events import AcmsActions, make_put, make_remove
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.identity import IdKey, id_key
from mcacm_sip.core.policy import Policy
from mcacm_sip.core.quota import QuotaBook, Quotas
from mcacm_sip.core.state import (
    DURABLE_PURPOSES,
    TRANSITIONS,
    Mapping,
    Outgoing,
    PendingItem,
    Purpose,
    Record,
    Role,
    Snapshot,
    Transaction,
    Trigger,
    TxState,
    new_transaction,
    transition,
    tx_key,
)

# Members as globals: Python 3.11 finds `Enum.MEMBER` through EnumType's __getattr__
# hook, far slower than a global's load (3.12 dropped the hook).
_NOTIFY: Final = Purpose.NOTIFY
_NEW: Final = TxState.NEW
_REQUEST: Final = Trigger.REQUEST
_DECISION: Final = Trigger.DECISION
_DONE: Final = TxState.DONE
_INFO: Final = logging.INFO

_OPENED: Final = {role: transition(role, _NEW, _REQUEST) for role in Role}
"""The table's ``request`` row of each role: the state a new transaction opens in, and why."""

log = logging.getLogger("mcacm.acms")
"""The one logger of the ACMS core (every module of the package logs to it)."""


class AcmsRecords:
    """State of one ACMS and the bookkeeping every procedure step shares."""

    # the seam to routing.py: the FA a partner transaction is routed by (indexed here)
    def _fa_route(self, req: AcmRequest) -> str | None:
        raise NotImplementedError

    def __init__(self, config: AcmsConfig, snapshot: Snapshot | None = None,
                 quotas: Quotas | None = None) -> None:
        self.config = config
        try:  # every process indication carries the PSI: checked here once (partner.py)
            ProcessIndication("psi-check", config.psi, ProcessIndication.FLOW)
            self._psi_checked = True
        except ModelError:  # (a configuration built in code) each indication checks it
            self._psi_checked = False
        self._policy = Policy(config.policy)
        self.quota = QuotaBook(quotas or Quotas())
        """What is retained for whom, against the ``[limits]`` quotas (core/quota.py)."""
        # identities are compared as URIs (RFC 3261 19.1.4): every dict/set below keyed by one
        # is keyed by its IdKey (identity.id_key), never by the text as written
        self._peers: dict[IdKey, PeerSystem] = {id_key(p.psi): p for p in config.peers}
        self._users: dict[IdKey, AuthorisedUser] = {id_key(u.id): u for u in config.users}
        self._tx: dict[str, Transaction] = {}
        # (role, leg id) -> tx key: primary, the id the partner answers under; partner, the id
        # our ACMC decides under (docs/decisions.md "Identity and authority", leg ids)
        self._legs: dict[tuple[Role, str], str] = {}
        self._via_fa: dict[IdKey, dict[str, None]] = {}       # FA -> partner tx keys routed by it
        self._pending: dict[str, PendingItem] = {}
        self._queues: dict[IdKey, dict[str, None]] = {}       # owner -> ordered item keys
        self._out: dict[str, Outgoing] = {}
        self._out_of_tx: dict[str, dict[str, None]] = {}      # tx key -> its send ids
        self._notifying: dict[IdKey, str] = {}  # user -> send id of its pending-data notification
        self._offered: dict[IdKey, set[str]] = {}  # user -> items sent in this round of pages
        self._lost_pages: dict[IdKey, int] = {}  # logged-on user -> pages refused in a row
        # (when, kind, key) of every transaction deadline and retry time, lazily deleted:
        # an entry is live while its record still has that time (get_timer is O(log n)).
        # Two heaps: the open transactions' deadlines and the retries, and (_kept_timers)
        # the ends of retention of done ones.  The second holds nearly every entry and grows
        # in time order (each push one comparison); a new transaction's short deadline goes
        # into the first, a heap the size of the open work, instead of being sifted up past
        # every retained transaction (and popped back down once it is dead).
        self._timers: list[tuple[float, str, str]] = []
        self._kept_timers: list[tuple[float, str, str]] = []
        self._maps: dict[str, Mapping] = {}
        self._groups: dict[str, PartnerGroup] = {}  # 10.17.4: (peer, group) -> what we applied
        self._by_partner_id: dict[tuple[Role, IdKey], str] = {}  # (side, partner id) -> map key
        self._assigned = 0  # mappings this system assigned ({n} of the id template)
        self._online: dict[IdKey, str] = {}                   # logged-on user -> as spelled
        self._holders: dict[IdKey, tuple[str, ...]] = {}
        self._fas_of: dict[IdKey, set[IdKey]] = {}            # holder -> FAs it holds
        self._subscribed: set[IdKey] = set()
        self._round_robin: dict[IdKey, int] = {}
        if snapshot is not None:
            records: tuple[Record, ...] = (*snapshot.transactions, *snapshot.pending,
                                           *snapshot.outgoing, *snapshot.mappings,
                                           *snapshot.groups)
            for record in records:
                self._remember(record)

    def get_timer(self) -> float | None:
        """The earliest deadline (transaction timers, retries), or None."""
        timers, kept = self._timers, self._kept_timers
        while timers and not self._live(*timers[0]):
            heapq.heappop(timers)
        while kept and not self._live(*kept[0]):
            heapq.heappop(kept)
        if not kept:
            return timers[0][0] if timers else None
        return timers[0][0] if timers and timers[0][0] < kept[0][0] else kept[0][0]

    def transaction(self, role: Role, transaction_id: str, origin: str | None = None
                    ) -> Transaction | None:
        """The transaction ``origin`` (primary: the requesting user; partner: the origin
        ACMS's PSI) opened under ``transaction_id``; without ``origin``, the only transaction
        of ``role`` with that id (O(n): tools and tests), None if there are several."""
        if origin is not None:
            return self._tx.get(tx_key(role, origin, transaction_id))
        found = [t for t in self._tx.values()
                 if t.role is role and t.transaction_id == transaction_id]
        return found[0] if len(found) == 1 else None

    def transactions(self) -> tuple[Transaction, ...]:
        return tuple(self._tx.values())

    def leg_key(self, role: Role, leg_id: str) -> str | None:
        """The key of the transaction of ``role`` that uses ``leg_id`` on its other leg (what
        an answer names: primary, the partner's; partner, our ACMC's decision), if any."""
        return self._legs.get((role, leg_id))

    def sends_of(self, tx_key: str) -> tuple[str, ...]:
        """The send ids of the transaction's sends without a known outcome."""
        return tuple(self._out_of_tx.get(tx_key, ()))

    def pending_for(self, owner: str) -> tuple[PendingItem, ...]:
        """The queue of a user or FA, oldest first: O(k) in its length."""
        return tuple(self._pending[k] for k in self._queues.get(id_key(owner), {}))

    def item_procedures(self, owner: str) -> frozenset[str]:
        """The ``X-CID`` values of the transactions of ``owner``'s pending items here."""
        return frozenset(tx.procedure for k in self._queues.get(id_key(owner), {})
                         if (tx := self._tx.get(k)) is not None)

    def mappings(self) -> tuple[Mapping, ...]:
        return tuple(self._maps.values())

    def groups(self) -> tuple[PartnerGroup, ...]:
        """Partner role, 10.17.4: what this system applied per primary system and group."""
        return tuple(self._groups.values())

    @property
    def logged_on(self) -> frozenset[str]:
        return frozenset(self._online.values())

    @property
    def sends_in_flight(self) -> int:
        """Sends whose outcome is not known yet (in progress or waiting for a retry): the
        runtime's overload measure."""
        return len(self._out)

    def _live(self, when: float, kind: str, key: str) -> bool:
        if kind == Transaction.KIND:
            tx = self._tx.get(key)
            return tx is not None and tx.deadline == when
        og = self._out.get(key)
        return og is not None and og.next_at == when

    def _timer_at(self, when: float, kind: str, key: str, retained: bool = False) -> None:
        """A timer at ``when`` for the record ``key`` of ``kind``; ``retained``: the end of
        a done transaction's retention (the heap of those)."""
        timers = self._kept_timers if retained else self._timers
        heapq.heappush(timers, (when, kind, key))
        if len(timers) > 64 + 4 * (len(self._tx) + len(self._out)):  # drop the dead entries
            live = [t for t in timers if self._live(*t)]
            heapq.heapify(live)
            if retained:
                self._kept_timers = live
            else:
                self._timers = live

    def _remember(self, record: Record) -> None:
        match record:
            case Transaction():
                self._keep_tx(record)
            case Outgoing():
                self._keep_send(record)
            case PendingItem():
                key = record.tx_key
                self._pending[key] = record
                self._queues.setdefault(id_key(record.owner), {})[key] = None
            case Mapping():
                key = record.key
                if key not in self._maps and record.side is Role.PARTNER:
                    self._assigned += 1
                self._maps[key] = record
                self._by_partner_id[(record.side, id_key(record.partner_id))] = key
            case PartnerGroup():
                self._groups[record.key] = record

    def _keep_tx(self, tx: Transaction) -> None:
        """:meth:`_remember` of a transaction: its record, quota, timer and leg."""
        key = tx.key
        old = self._tx.get(key)
        self._tx[key] = tx
        self.quota.track(tx)
        if old is None or old.deadline != tx.deadline:
            self._timer_at(tx.deadline, Transaction.KIND, key, tx.state is _DONE)
        if old is None:
            # a new transaction's leg id is free; two restored schema-1 rows (two peers,
            # one id) can share one: the open one keeps it, as the old lookup did
            leg = (tx.role, tx.leg)
            other = self._tx.get(self._legs.get(leg, ""))
            if other is None or other.state is _DONE:
                self._legs[leg] = key
            if tx.allows(_DECISION):  # partner, awaiting a decision
                fa = self._fa_route(tx.request)
                if fa is not None:
                    self._via_fa.setdefault(id_key(fa), {})[key] = None

    def _keep_send(self, og: Outgoing) -> None:
        """:meth:`_remember` of a send: the outbox and its indexes, its retry timer."""
        key = og.send_id
        old = self._out.get(key)
        self._out[key] = og
        if og.tx_key is not None:
            self._out_of_tx.setdefault(og.tx_key, {})[key] = None
        if og.purpose is _NOTIFY:
            self._notifying[id_key(og.to)] = key
        if og.next_at is not None and (old is None or old.next_at != og.next_at):
            self._timer_at(og.next_at, Outgoing.KIND, key)

    def _put(self, record: Record, out: AcmsActions) -> None:
        self._remember(record)
        if type(record) is not Outgoing or record.purpose in DURABLE_PURPOSES:
            out.change(make_put(record))

    def _drop_tx(self, tx: Transaction, out: AcmsActions) -> None:
        del self._tx[tx.key]
        self.quota.forget(tx.key)
        if self._legs.get((tx.role, tx.leg)) == tx.key:
            del self._legs[(tx.role, tx.leg)]
        out.change(make_remove(Transaction.KIND, tx.key))

    def _drop_item(self, key: str, out: AcmsActions) -> PendingItem | None:
        item = self._pending.pop(key, None)
        if item is not None:
            owner = id_key(item.owner)
            queue = self._queues[owner]
            del queue[key]
            if not queue:
                del self._queues[owner]
            out.change(make_remove(PendingItem.KIND, key))
        return item

    def _drop_out(self, og: Outgoing, out: AcmsActions) -> None:
        if og.tx_key is not None and (of_tx := self._out_of_tx.get(og.tx_key)) is not None:
            of_tx.pop(og.send_id, None)
            if not of_tx:
                del self._out_of_tx[og.tx_key]
        if og.purpose is _NOTIFY and self._notifying.get(id_key(og.to)) == og.send_id:
            del self._notifying[id_key(og.to)]
        if self._out.pop(og.send_id, None) is not None and og.purpose in DURABLE_PURPOSES:
            out.change(make_remove(Outgoing.KIND, og.send_id))

    def _drop_sends(self, tx: Transaction, purpose: Purpose, out: AcmsActions) -> None:
        for send_id in list(self._out_of_tx.get(tx.key, ())):
            if (og := self._out[send_id]).purpose is purpose:
                self._drop_out(og, out)

    def _open(self, role: Role, transaction_id: str, peer: str, request: AcmRequest,
              now: float, deadline: float, indication: ProcessIndication | None = None,
              leg_id: str = "", key: str | None = None) -> Transaction:
        """A new transaction, made in the state the table's ``request`` row gives it (``new``
        is never stored: no record of it is made) and the step logged as :meth:`_step` logs
        one.  Not stored here: by the caller, or by a later step of the same ``handle`` call.
        ``key``: its ``tx_key``, when the caller has it."""
        state, clause = _OPENED[role]
        tx = new_transaction(role, transaction_id, peer, request, state, now, deadline,
                             indication, leg_id, key)
        self._log_step(tx, _NEW, _REQUEST, clause)
        return tx

    def _move(self, tx: Transaction, trigger: Trigger, out: AcmsActions,
              deadline: float | None = None, indication: ProcessIndication | None = None,
              response: AcmResponse | None = None, assignee: str | None = None,
              done_at: float | None = None) -> Transaction:
        """Apply one row of the transition table (state.TRANSITIONS) and store the result."""
        moved = self._step(tx, trigger, deadline, indication, response, assignee, done_at)
        self._keep_tx(moved)
        out.change(make_put(moved))
        return moved

    def _step(self, tx: Transaction, trigger: Trigger, deadline: float | None = None,
              indication: ProcessIndication | None = None, response: AcmResponse | None = None,
              assignee: str | None = None, done_at: float | None = None) -> Transaction:
        """:meth:`_move` without storing: for a state the same ``handle`` call moves on from
        before it returns (its Put would be overwritten in the same store transaction), which
        then stores the later state itself.  The table is asked and the step logged alike.
        The fields given (None: kept) are those :meth:`Transaction.moved` sets; ``done_at``:
        a step that ends the transaction (``done``) keeps it ``retention`` from then."""
        row = TRANSITIONS.get((tx.role, tx.state, trigger))  # (transition(), without its call)
        state, clause = row if row is not None else transition(tx.role, tx.state, trigger)
        if done_at is not None and state is _DONE:
            deadline = done_at + self.config.timers.retention
        moved = tx.moved(state, deadline, indication, response, assignee)
        self._log_step(moved, tx.state, trigger, clause)
        return moved

    @staticmethod
    def _log_step(moved: Transaction, src: TxState, trigger: Trigger, clause: str) -> None:
        try:  # log.isEnabledFor(INFO) without its call: its cache (cleared by setLevel ...)
            enabled = not log.disabled and log._cache[_INFO]  # type: ignore[attr-defined]
        except KeyError:
            enabled = log.isEnabledFor(_INFO)
        if enabled:  # one structured event per procedure step, no contents
            # (the enums' values: the str() of each, without a call)
            # (Transaction.origin and .leg without their calls)
            tid, peer, role = moved.transaction_id, moved.peer, moved.role._value_
            origin = peer if role == "partner" else moved.request.requester.mc_service_id
            frm, dst, why = src._value_, moved.state._value_, trigger._value_
            log.info("%s %s from %s: %s -> %s (%s)", role, tid, origin, frm, dst, why, extra={
                "event": "procedure.step", "transaction_id": tid, "role": role,
                "peer": peer, "origin": origin, "leg_id": moved.leg_id or tid,
                "from_state": frm, "to_state": dst, "trigger": why, "clause": clause})

    def _new_leg(self, role: Role, transaction_id: str) -> str:
        """The id a new transaction uses on its other leg: the origin's own id unless another
        transaction of ``role`` uses it there, else a fresh one; "" means the origin's."""
        return "" if (role, transaction_id) not in self._legs else uuid.uuid4().hex

    def _fresh_leg(self, tx: Transaction, out: AcmsActions) -> Transaction:
        if self._legs.get((tx.role, tx.leg)) == tx.key:
            del self._legs[(tx.role, tx.leg)]
        tx = replace(tx, leg_id=uuid.uuid4().hex)
        self._legs[(tx.role, tx.leg)] = tx.key
        self._put(tx, out)
        return tx
