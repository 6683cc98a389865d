"""The ACMS's outbox: sends, their delivery outcomes, retries and the timer tick.

A send is an :class:`~mcacm_sip.core.state.Outgoing` record until the runtime reports its
outcome (:class:`~mcacm_sip.core.events.DeliveryOutcome`).  A remote failure is retried while
it may help (:func:`transient`); a local one (our own flow could not be encoded) never is
(docs/decisions.md "Local and remote errors").
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import replace
from typing import Final

from mcacm_sip.acm.model import AcmFlow, AcmRequest, AcmResponse, Result, ResultCode
from mcacm_sip.core.acms.records import AcmsRecords, log
from mcacm_sip.core.events import (
    AcmsActions,
    DeliveryOutcome,
    Failure,
    SendFlow,
    make_put,
    make_send,
    transient,
)
from mcacm_sip.core.identity import flow_procedure, id_key
from mcacm_sip.core.state import (
    DURABLE_PURPOSES,
    Hop,
    Outgoing,
    Purpose,
    Role,
    Transaction,
    Trigger,
    make_outgoing,
)
from mcacm_sip.ids import unique_hex

# Members as globals: Python 3.11 finds `Enum.MEMBER` through EnumType's __getattr__
# hook, far slower than a global's load (3.12 dropped the hook).
_DOWNLOAD: Final = Purpose.DOWNLOAD

_MATTERS_WHILE = {
    Purpose.FORWARD: Trigger.SEND_FAILED,  # primary: forwarding (the answer timer runs)
    Purpose.INDICATE: Trigger.DECISION,    # partner: a decision is awaited
    Purpose.ANSWER: Trigger.SEND_FAILED,   # partner: responding
}
"""A failed peer send is acted on while the transition table allows this trigger."""

PEER_REFUSED = "x-peer-refused"
"""Result extension value: the partner ACMS refused the forwarded request for good."""

LOCAL_ERROR = "x-local-error"
"""Result extension value: this ACMS could not send the forwarded request (its own bug)."""

_ON_2XX = {
    Purpose.FORWARD: Trigger.PEER_ACCEPTED,  # primary: the partner ACMS took the request
    Purpose.ANSWER: Trigger.PEER_ACCEPTED,   # partner: the primary ACMS took the response
    Purpose.DELIVER: Trigger.DELIVERED,      # an ACMC took the request or the response
}
"""The step a send's 2xx is, where the transition table allows it (each a row there); a 2xx
to any other send moves nothing (an indication, a relay, a notification; a download: its
items)."""

_REFUSAL_RESULT: dict[int, str] = {403: ResultCode.NOT_AUTHORISED}
"""Result code for a permanent refusal of a forwarded request; any other: PEER_REFUSED."""

class AcmsOutbox(AcmsRecords):
    """Sending, outcomes, retry with back-off; local vs remote failure."""

    # seams: routing.py, primary.py and the facade implement these
    def _payload(self, tx: Transaction) -> AcmRequest | AcmResponse:
        raise NotImplementedError

    def _queue(self, now: float, tx: Transaction, owner: str, is_fa: bool, trigger: Trigger,
               out: AcmsActions) -> None:
        raise NotImplementedError

    def _notify(self, user: str, out: AcmsActions,
                after_lost_page: tuple[float, float | None] | None = None) -> None:
        raise NotImplementedError

    def _stand_in(self, now: float, tx: Transaction, result: Result, trigger: Trigger,
                  out: AcmsActions) -> None:
        raise NotImplementedError

    def _expire(self, now: float, tx: Transaction, out: AcmsActions) -> None:
        raise NotImplementedError

    def _send(self, out: AcmsActions, purpose: Purpose, hop: Hop, to: str, flow: AcmFlow,
              tx: Transaction | None = None, give_up_at: float | None = None,
              carries: tuple[str, ...] = ()) -> None:
        og = make_outgoing(unique_hex(), purpose, hop, to, flow,
                           tx.key if tx is not None else None, 1, None, give_up_at, carries)
        self._keep_send(og)
        if purpose in DURABLE_PURPOSES:
            out.change(make_put(og))
        # the transaction's procedure (as _send_of finds it)
        out.add(make_send(og.send_id, hop, to, flow, tx.procedure) if tx is not None
                else self._send_of(og))

    def _send_of(self, og: Outgoing) -> SendFlow:
        """The SendFlow of a stored send, with its procedure's X-CID value: the transaction's
        (requester and the origin's id, the same at the primary and the partner), else the
        flow's own (a download response).  A pending-data notification takes the value of
        the oldest queued item's transaction: the download that follows it echoes the value
        (10.17.3.1), so a dispatcher hashing it sends the download to the worker that holds
        those items (docs/decisions.md "Scale-out: the procedure header ...")."""
        tx = self._tx.get(og.tx_key) if og.tx_key is not None else None
        if tx is None and og.purpose is Purpose.NOTIFY:
            tx = next((t for k in self._queues.get(id_key(og.to), {})
                       if (t := self._tx.get(k)) is not None), None)
        procedure = tx.procedure if tx is not None else flow_procedure(og.flow)
        return SendFlow(og.send_id, og.hop, og.to, og.flow, procedure or "")

    def _outcome(self, ev: DeliveryOutcome, out: AcmsActions) -> None:
        og = self._out.get(ev.send_id)
        if og is None:
            return  # already settled (late duplicate outcome)
        self._drop_out(og, out)
        tx = self._tx.get(og.tx_key) if og.tx_key is not None else None
        if ev.failure is None:  # (exactly when ev.ok)
            # what a 2xx moves (_ON_2XX); a download's moves the transactions it carried
            trigger = _ON_2XX.get(og.purpose)
            if trigger is not None:
                if tx is not None and tx.allows(trigger):
                    self._move(tx, trigger, out, done_at=ev.now)
            elif og.purpose is _DOWNLOAD:
                self._lost_pages.pop(id_key(og.to), None)
                for key in og.carries:
                    if self._drop_item(key, out) is not None and key in self._tx:
                        self._move(self._tx[key], Trigger.DOWNLOADED, out, done_at=ev.now)
            return
        retry = transient(ev.failure, ev.status)
        # a failed peer send that no longer matters (e.g. an indication once the decision
        # is taken) is dropped, not retried: said so in the log, acted on below
        matters = og.purpose not in _MATTERS_WHILE or (
            tx is not None and tx.allows(_MATTERS_WHILE[og.purpose]))
        log.log(logging.ERROR if ev.failure is Failure.LOCAL_ERROR else logging.INFO,
                "send %s (%s to %s) failed (%s%s): %s", og.send_id, og.purpose, og.to,
                ev.failure, (", retried" if matters else ", dropped: no longer needed")
                if retry else "", ev.reason)
        match og.purpose:
            case Purpose.FORWARD | Purpose.INDICATE | Purpose.ANSWER:
                if not matters:
                    return
                assert tx is not None  # (matters: a peer send matters only for its transaction)
                if ev.failure is Failure.LOCAL_ERROR:
                    self._local_error(ev, og.purpose, tx, out)
                elif retry:
                    # decision: peer sends are retried with back-off while they still matter
                    if og.purpose is not Purpose.INDICATE:
                        self._move(tx, Trigger.SEND_FAILED, out)
                    self._retry(ev.now, og, ev.retry_after, out)
                else:
                    self._peer_refused(ev, og.purpose, tx, out)
            case Purpose.DELIVER:
                if tx is None or not tx.allows(Trigger.DELIVERED):
                    return
                if self._acmc_holds_the_leg(ev, tx):
                    # decision (docs/decisions.md "Identity and authority"): the ACMC still
                    # holds another request under this leg id, one this ACMS has forgotten
                    # (retention over): the leg gets a fresh id and the request goes again
                    tx = self._fresh_leg(tx, out)
                    assert tx.assignee is not None
                    self._send(out, Purpose.DELIVER, Hop.ACMC, tx.assignee, self._payload(tx), tx)
                else:
                    assert tx.assignee is not None
                    self._queue(ev.now, tx, tx.assignee, False, Trigger.DELIVERY_FAILED, out)
                    if id_key(tx.assignee) in self._online and retry:
                        # decision: still logged on (it may have answered too late): notify
                        # it now, not at its next logon (10.17.3.1)
                        self._notify(tx.assignee, out)
            case Purpose.DOWNLOAD:
                self._offered.pop(id_key(og.to), None)  # a page was lost: start again
                if retry:  # the ACMC will not ask for it again: tell it again, later
                    self._notify(og.to, out, after_lost_page=(ev.now, ev.retry_after))
            case Purpose.NOTIFY if retry:
                # decision: repeated with back-off while the user is logged on with items
                # (``_tick`` drops it otherwise)
                self._retry(ev.now, og, ev.retry_after, out)
            case _:
                pass

    @staticmethod
    def _acmc_holds_the_leg(ev: DeliveryOutcome, tx: Transaction) -> bool:
        """An ACMC refused a delivery as ``transaction-id-reused`` (D5 at the ACMC) while the
        leg still uses the origin's id: once only, a fresh leg id cannot be held."""
        return (tx.role is Role.PARTNER and ev.status == 400 and tx.leg == tx.transaction_id
                and (ev.warning or "").startswith("transaction-id-reused"))

    def _peer_refused(self, ev: DeliveryOutcome, purpose: Purpose, tx: Transaction,
                      out: AcmsActions) -> None:
        """A peer refused a send for good (RFC 3261 21.4, 21.6): it is not repeated."""
        assert ev.status is not None
        log.warning("%s %s refused by %s: %s", purpose, tx.transaction_id, tx.peer, ev.reason)
        if purpose is Purpose.FORWARD:
            # decision: the primary ACMC learns it now, not at the answer timer (steps 9-10)
            warning = "".join(c for c in ev.warning or "" if c.isprintable())
            text = f"{tx.peer} refused the request: SIP {ev.status}" + (
                f" {warning}" if warning else "")
            code = _REFUSAL_RESULT.get(ev.status, PEER_REFUSED)
            self._stand_in(ev.now, tx, Result(code, text), Trigger.PEER_REFUSED, out)
        elif purpose is Purpose.ANSWER:
            # decision: the primary's answer timer gives its ACMC Result expired
            self._move(tx, Trigger.PEER_REFUSED, out, done_at=ev.now)

    def _local_error(self, ev: DeliveryOutcome, purpose: Purpose, tx: Transaction,
                     out: AcmsActions) -> None:
        """Our own flow could not be sent (a bug on our side, h11's LocalProtocolError): never
        retried, the transaction ends with a defined outcome (docs/decisions.md "Local and
        remote errors")."""
        if purpose is Purpose.FORWARD:
            # decision: the primary ACMC learns at once that this ACMS failed, not the partner
            text = f"local error: this ACMS could not send the request to {tx.peer}"
            self._stand_in(ev.now, tx, Result(LOCAL_ERROR, text), Trigger.LOCAL_ERROR, out)
        elif purpose is Purpose.ANSWER:
            # decision: the primary's answer timer gives its ACMC Result expired
            self._move(tx, Trigger.LOCAL_ERROR, out, done_at=ev.now)

    def _retry(self, now: float, og: Outgoing, retry_after: float | None, out: AcmsActions
               ) -> None:
        # RFC 3261 21.5.4 / 20.33: not before the peer's Retry-After, never faster than back-off
        at = now + max(self.config.timers.backoff(og.attempts), retry_after or 0.0)
        if og.give_up_at is not None and at >= og.give_up_at:
            return  # the transaction's own timer ends it
        self._put(replace(og, next_at=at), out)

    def _tick(self, now: float, out: AcmsActions) -> None:
        due: dict[str, dict[str, None]] = {Transaction.KIND: {}, Outgoing.KIND: {}}
        timers, kept = self._timers, self._kept_timers
        while True:  # the live timers that ran out, earliest first (of both heaps)
            if timers and timers[0][0] <= now and (not kept or timers[0] <= kept[0]):
                when, kind, key = heapq.heappop(timers)
            elif kept and kept[0][0] <= now:
                when, kind, key = heapq.heappop(kept)
            else:
                break
            if self._live(when, kind, key):
                due[kind][key] = None
        for key in due[Transaction.KIND]:
            if (tx := self._tx.get(key)) is not None and tx.deadline <= now:
                self._expire(now, tx, out)
        for key in due[Outgoing.KIND]:
            og = self._out.get(key)
            if og is None or og.next_at is None or og.next_at > now:
                continue
            if og.purpose is Purpose.NOTIFY and (id_key(og.to) not in self._online
                                                 or id_key(og.to) not in self._queues):
                self._drop_out(og, out)  # nothing left to tell, or a logon will
                continue
            og = replace(og, attempts=og.attempts + 1, next_at=None)
            self._put(og, out)
            out.add(self._send_of(og))
