"""The ACMS core's facade: :class:`AcmsCore`, one instance per MC system.

It plays the primary role for requests of its own ACMCs and the partner role for requests from
peer ACMSs (TS 23.280 10.17.7.2 steps 1-10, 10.17.5 add/remove user configuration, 10.17.3.1
pending requests, 10.17.3.2 automatic handling).  ``handle(event)`` returns actions
(:mod:`mcacm_sip.core.events` documents their order); ``get_timer()`` is the next deadline.
All state is in memory and every change is also emitted as a store action, so a restarted ACMS
is ``AcmsCore(config, store.load())`` followed by ``start(now)``.  The steps themselves live in
the package's modules (``primary``, ``partner``, ``routing``, ``intake``, ``outbox``,
``records``).
"""

from __future__ import annotations

from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    AcmResponse,
    PendingDataDownloadRequest,
    ProcessIndication,
    ResultCode,
)
from mcacm_sip.core.acms.partner import AcmsPartner
from mcacm_sip.core.acms.primary import AcmsPrimary
from mcacm_sip.core.config import AcmsConfig
from mcacm_sip.core.events import (
    AcmsAction,
    AcmsActions,
    AcmsEvent,
    AdoptRecords,
    DeliveryOutcome,
    FaHoldersChanged,
    FlowFromAcmc,
    FlowFromPeer,
    ReleaseRecords,
    TimerTick,
    UserLoggedOff,
    UserLoggedOn,
)
from mcacm_sip.core.identity import id_key
from mcacm_sip.core.quota import Quotas
from mcacm_sip.core.state import (
    Outgoing,
    PendingItem,
    Purpose,
    Record,
    Role,
    Snapshot,
    Transaction,
    Trigger,
    TxState,
    result_of,
)


class AcmsCore(AcmsPrimary, AcmsPartner):
    """One ACMS.  Construct from its configuration and, after a restart, the stored snapshot."""

    @classmethod
    def restore(cls, config: AcmsConfig, snapshot: Snapshot, quotas: Quotas | None = None
                ) -> AcmsCore:
        """The core of a restarted ACMS; call :meth:`start` next."""
        return cls(config, snapshot, quotas)

    def start(self, now: float) -> list[AcmsAction]:
        """Subscribe to the FAs we need and re-send everything whose outcome was not known
        when the ACMS stopped (continuing every open transaction)."""
        out = AcmsActions()
        for fa in self.config.functional_aliases:
            self._subscribe(fa, out)
        self._resume(now, list(self._tx.values()), list(self._pending.values()),
                     list(self._out.values()), out)
        return out.result()

    def _resume(self, now: float, txs: list[Transaction], pending: list[PendingItem],
                outgoing: list[Outgoing], out: AcmsActions) -> None:
        """Continue restored or adopted records: FA subscriptions for FA queues, re-sends of
        what had no known outcome (retries keep their stored times)."""
        for fa in [i.owner for i in pending if i.is_fa]:
            self._subscribe(fa, out)
        for og in outgoing:
            if og.next_at is None:
                out.add(self._send_of(og))
        for tx in [t for t in txs if t.role is Role.PRIMARY and t.state is TxState.PENDING_FA]:
            # stored before responses were routed to their requester (decision): do so now
            self._drop_item(tx.key, out)
            self._deliver_or_queue(now, tx, tx.origin, out)

    def _adopt(self, now: float, records: Snapshot, out: AcmsActions) -> None:
        # records held already stay as they are: this core's copy is the newer one
        txs = [t for t in records.transactions if t.key not in self._tx]
        pending = [p for p in records.pending if p.key not in self._pending]
        outgoing = [o for o in records.outgoing if o.key not in self._out]
        adopted: list[Record] = [*txs, *pending, *outgoing, *records.mappings,
                                 *records.groups]
        for record in adopted:
            self._remember(record)
        self._resume(now, txs, pending, outgoing, out)
        # 10.17.3.1 (decision, "Scale-out"): items taken over for a user who is logged on
        # already were never notified by this worker: notify now, as at a logon
        for owner in dict.fromkeys(i.owner for i in pending
                                   if not i.is_fa and id_key(i.owner) in self._online):
            self._notify(self._addr(owner), out)

    def _release(self, keys: frozenset[str]) -> None:
        scratch = AcmsActions()  # the Removes are not stored: the rows are another worker's
        for key in keys:
            for send_id in list(self._out_of_tx.get(key, ())):
                self._drop_out(self._out[send_id], scratch)
            self._drop_item(key, scratch)
            for offered in self._offered.values():
                offered.discard(key)
            for routed in self._via_fa.values():
                routed.pop(key, None)
            if (tx := self._tx.get(key)) is not None:
                self._drop_tx(tx, scratch)

    def handle(self, event: AcmsEvent) -> list[AcmsAction]:
        out = AcmsActions()
        match event:  # the frequent first: flows and each send's outcome
            case FlowFromPeer():
                self._from_peer(event.now, event.origin, event.flow, out)
            case DeliveryOutcome():
                self._outcome(event, out)
            case FlowFromAcmc():
                self._from_acmc(event.now, event.sender, event.flow, out)
            case UserLoggedOn():
                self._logon(event.now, event.user, out)
            case UserLoggedOff():
                self._online.pop(id_key(event.user), None)
                self._lost_pages.pop(id_key(event.user), None)
            case FaHoldersChanged():
                self._fa_changed(event.now, event.fa, event.holders, out)
            case TimerTick():
                self._tick(event.now, out)
            case AdoptRecords():
                self._adopt(event.now, event.records, out)
            case ReleaseRecords():
                self._release(event.tx_keys)
        return out.result()

    def _from_acmc(self, now: float, sender: str, flow: AcmFlow, out: AcmsActions) -> None:
        if id_key(sender) not in self._users:
            # decision: a stranger learns nothing (not even whether a transaction exists)
            out.refuse(403, f"not-authorised: {sender} is not an authorised ACM user")
        elif isinstance(flow, AcmRequest):
            self._primary_request(now, sender, flow, out)
        elif isinstance(flow, AcmResponse):
            self._partner_decision(now, sender, flow, out)
        elif isinstance(flow, PendingDataDownloadRequest):
            self._download(now, sender, flow, out)
        else:
            out.refuse(400, f"unexpected-flow: an ACMC does not send {flow.FLOW}")

    def _from_peer(self, now: float, origin: str, flow: AcmFlow, out: AcmsActions) -> None:
        peer = self._peers.get(id_key(origin))
        if peer is None:
            # decision: an unknown system gets 403 and nothing is stored
            out.refuse(403, f"not-authorised: {origin} is not a configured peer system")
        elif isinstance(flow, AcmRequest):
            self._partner_request(now, peer, flow, out)
        elif isinstance(flow, AcmResponse | ProcessIndication):
            self._primary_answer(now, peer, flow, out)
        else:
            out.refuse(400, f"unexpected-flow: an ACMS does not send {flow.FLOW} to a peer")

    def _expire(self, now: float, tx: Transaction, out: AcmsActions) -> None:
        if tx.state is TxState.DONE:
            self._drop_tx(tx, out)  # retention over
        elif tx.allows(Trigger.RESPONSE):  # primary: the answer timer
            # decision: no answer in time -> Result expired towards the primary ACMC
            result = result_of(ResultCode.EXPIRED, "no answer from the partner system in time")
            self._stand_in(now, tx, result, Trigger.EXPIRED, out)
        elif tx.role is Role.PRIMARY:
            # decision: the response waited for the primary ACMC too long
            self._drop_item(tx.key, out)
            self._drop_sends(tx, Purpose.DELIVER, out)
            self._move(tx, Trigger.EXPIRED, out, done_at=now)
        elif tx.allows(Trigger.DECISION):  # partner: the decision timer
            # decision: no decision before the decision timer -> Result expired
            self._drop_sends(tx, Purpose.INDICATE, out)
            result = result_of(ResultCode.EXPIRED, "no decision before the deadline")
            self._respond(now, tx, self._auto_response(tx, result), Trigger.EXPIRED, out)
        else:  # RESPONDING: the primary could not be reached in time
            self._drop_sends(tx, Purpose.ANSWER, out)
            self._move(tx, Trigger.GAVE_UP, out, done_at=now)
