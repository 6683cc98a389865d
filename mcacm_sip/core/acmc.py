"""The ACM client (ACMC) procedure core: sans-I/O.

The client side of 23.280 10.17.7.2 (steps 1 and 10 at the primary, steps 5-7 at the partner),
10.17.5 and 10.17.3.1: it sends requests (generating the transaction id), correlates process
indications and final responses by transaction id (with a timeout of its own), hands requests to
decide to the runtime (:class:`~mcacm_sip.core.events.Decide`; a person or ``--auto`` answers
through :meth:`AcmcCore.decide`), and follows the pending-data notification with a download.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    GroupMembershipUpdateRequest,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    Party,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    PendingDataNotification,
    ProcessIndication,
    ProfileUpdateRequest,
    RemoveUserConfigurationRequest,
    Result,
    ResultCode,
    Urgency,
    UserProfile,
    new_transaction_id,
)
from mcacm_sip.core.config import AcmcConfig, Timers
from mcacm_sip.core.events import (
    AcmcAction,
    AcmcActions,
    AcmcEvent,
    Decide,
    DeliveryOutcome,
    FlowFromAcms,
    ReportKind,
    ReportToUser,
    SendFlow,
    TimerTick,
    transient,
)
from mcacm_sip.core.identity import same
from mcacm_sip.core.state import Hop, answers, response_to
from mcacm_sip.ids import unique_hex

log = logging.getLogger("mcacm.acmc")
_V = TypeVar("_V")


REMEMBERED = 10_000
"""How many finished requests and sent decisions an ACMC keeps (decision, docs/decisions.md
"What an ACMC remembers"): enough to know a repeated response or to repeat a lost decision for
any backlog one user has, and bounded for a client that runs for months.  Past it the oldest
are forgotten: a repeated response to one of them is reported once more ("not open in this
session"), and a request decided that long ago, if the ACMS sends it again, is handed out
to decide again."""


REPEAT_ATTEMPTS = 8
"""How many times an ACMC asks for its pending data after one notification (or page), and
sends one decision, when the MESSAGE fails for a reason that may pass (decisions,
docs/decisions.md "Pending data download pages" and "A database that fails is not a crash"):
a 503 while the ACMS's store is away, a timeout, a lost connection.  Spaced by the ACMS's
back-off (1, 2, 4 ... 60 s, :meth:`Timers.backoff`) or the answer's Retry-After if longer:
about two minutes in all.  Past it the items wait at the ACMS for the next notification or
logon, and a decision is reported failed to the user."""

_BACKOFF = Timers().backoff


def _keep(recent: dict[str, _V], key: str, value: _V) -> None:
    """Insert ``key`` as the newest entry of ``recent``, dropping the oldest past REMEMBERED."""
    recent.pop(key, None)
    recent[key] = value
    if len(recent) > REMEMBERED:
        del recent[next(iter(recent))]


@dataclass(frozen=True, slots=True)
class Repeat:
    """The latest MESSAGE of something the ACMC sends again after a failure that may pass:
    a pending-data download towards one ACMS worker (10.17.3.1), or a decision (step 7)."""

    send_id: str
    attempt: int
    """The how-manieth attempt it is (:data:`REPEAT_ATTEMPTS`)."""
    again_at: float | None = None
    """When it is sent again after a failure that may pass; None: not (yet) failed."""

    def after(self, ev: DeliveryOutcome) -> Repeat | None:
        """After ``ev``, its failure: the repeat due later, or None if it is not repeated (a
        failure for good, or the attempts used up)."""
        assert ev.failure is not None
        if not transient(ev.failure, ev.status) or self.attempt >= REPEAT_ATTEMPTS:
            return None
        delay = max(_BACKOFF(self.attempt), ev.retry_after or 0.0)
        return Repeat(self.send_id, self.attempt, ev.now + delay)


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """A request of ours that has no final answer yet."""

    request: AcmRequest
    deadline: float
    indicated: bool = False


class AcmcCore:
    """One ACMC (one user at one ACMS)."""

    def __init__(self, config: AcmcConfig) -> None:
        self.config = config
        self._open: dict[str, OpenRequest] = {}
        # send id -> (what, transaction id; a download: the X-CID it went with)
        self._sends: dict[str, tuple[str, str | None]] = {}
        self._to_decide: dict[str, AcmRequest] = {}
        # id -> (the request, our decision); newest last, at most REMEMBERED
        self._decided: dict[str, tuple[AcmRequest, AcmResponse]] = {}
        self._finished: dict[str, None] = {}  # transaction ids; newest last, at most REMEMBERED
        self._next: float | None = None
        """At most the earliest deadline of an open request: kept when that request is
        answered (the timer then ticks once early and finds the exact one), so that an answer
        neither scans every open request nor moves the node's timer."""
        self._downloads: dict[str, Repeat] = {}
        """The X-CID a notification or page came with -> the latest download following it.
        Each worker of a scaled-out ACMS notifies for the items it holds, each with its own
        X-CID: a failed download is retried towards the worker that notified, and a newer
        download towards the same one supersedes it (an outcome of an older one changes
        nothing).  An entry lives until its download is answered or given up."""
        self._repeats: dict[str, Repeat] = {}
        """Transaction id -> our decision's latest MESSAGE, until it is answered 2xx or given
        up (decision: repeated after a failure that may pass, as the ACMS takes the same
        decision again idempotently)."""

    @property
    def me(self) -> Party:
        return Party(self.config.mc_service_id, self.config.functional_alias)

    @property
    def open_requests(self) -> tuple[OpenRequest, ...]:
        return tuple(self._open.values())

    @property
    def awaiting_decision(self) -> tuple[AcmRequest, ...]:
        return tuple(self._to_decide.values())

    # ------------------------------------------------------------------ requests (primary side)

    def send_request(self, request: AcmRequest, now: float) -> list[AcmcAction]:
        """23.280 10.17.7.2 step 1 (and 10.17.5): send a request built by the caller."""
        if request.transaction_id in self._open or request.transaction_id in self._finished:
            raise ValueError(f"transaction id {request.transaction_id} already used")
        deadline = now + self.config.request_timeout
        if not self._open or self._next is None or deadline < self._next:
            self._next = deadline
        self._open[request.transaction_id] = OpenRequest(request, deadline)
        out = AcmcActions()
        self._send(out, "request", request.transaction_id, request)
        return out.result()

    def profile_update(self, now: float, *, target: Addressee, migrated_user_id: str,
                       profile: UserProfile, additional_info: str | None = None
                       ) -> tuple[str, list[AcmcAction]]:
        """Request a profile update (10.17.2.15); returns the new transaction id."""
        req = ProfileUpdateRequest(new_transaction_id(), self.me, target, migrated_user_id,
                                   profile, additional_info)
        return req.transaction_id, self.send_request(req, now)

    def add_users(self, now: float, users: tuple[str, ...], target: Addressee | None = None
                  ) -> tuple[str, list[AcmcAction]]:
        """Ask the partner to accept ``users`` for migration (10.17.5.2)."""
        req = AddUserConfigurationRequest(new_transaction_id(), self.me, users, target)
        return req.transaction_id, self.send_request(req, now)

    def remove_users(self, now: float, users: tuple[str, ...], target: Addressee | None = None
                     ) -> tuple[str, list[AcmcAction]]:
        """Withdraw ``users`` from migration (10.17.5)."""
        req = RemoveUserConfigurationRequest(new_transaction_id(), self.me, users, target)
        return req.transaction_id, self.send_request(req, now)

    def group_membership_update(self, now: float, *, target: Addressee, group_id: str,
                                users: tuple[str, ...], operation: GroupOperation,
                                urgency: Urgency | None = None) -> tuple[str, list[AcmcAction]]:
        """Ask the partner to add its ``users`` to, or delete them from, our group (10.17.4)."""
        req = GroupMembershipUpdateRequest(new_transaction_id(), self.me, target, group_id,
                                           users, operation, urgency)
        return req.transaction_id, self.send_request(req, now)

    def provide_groups(self, now: float, *, target: Addressee, groups: tuple[str, ...]
                       ) -> tuple[str, list[AcmcAction]]:
        """Give the partner our interconnection group identities (10.17.4.2.2 step 1)."""
        req = InterconnectionGroupProvisionRequest(new_transaction_id(), self.me, target, groups)
        return req.transaction_id, self.send_request(req, now)

    # ------------------------------------------------------------------ decisions (partner side)

    def decide(self, transaction_id: str, approve: bool, reason: str | None, now: float
               ) -> list[AcmcAction]:
        """23.280 10.17.7.2 steps 6-7: answer a request handed out by :class:`Decide`."""
        request = self._to_decide.pop(transaction_id, None)
        if request is None:
            raise KeyError(f"no request {transaction_id} is awaiting a decision")
        result = Result(ResultCode.SUCCESS, reason) if approve \
            else Result(ResultCode.REJECTED_BY_USER, reason)
        fa = self.config.functional_alias or (
            request.target.functional_alias if request.target is not None else None)
        response = response_to(request, Party(self.config.mc_service_id, fa), result)
        _keep(self._decided, transaction_id, (request, response))
        out = AcmcActions()
        self._send_decision(out, transaction_id, 1)
        return out.result()

    # ------------------------------------------------------------------ events

    def handle(self, event: AcmcEvent) -> list[AcmcAction]:
        out = AcmcActions()
        match event:
            case FlowFromAcms():
                self._flow(event.now, event.flow, event.procedure, out)
            case DeliveryOutcome():
                self._outcome(event, out)
            case TimerTick():
                for tid, o in list(self._open.items()):
                    if o.deadline <= event.now:
                        self._finish(tid)
                        out.add(ReportToUser(tid, ReportKind.TIMEOUT,
                                       text="no answer before the ACMC's own timer"))
                self._next = min((o.deadline for o in self._open.values()), default=None)
                for procedure, d in list(self._downloads.items()):
                    if d.again_at is not None and d.again_at <= event.now:
                        self._ask_download(out, procedure, d.attempt + 1)
                for tid, d in list(self._repeats.items()):
                    if d.again_at is not None and d.again_at <= event.now:
                        self._send_decision(out, tid, d.attempt + 1)
        return out.result()

    def get_timer(self) -> float | None:
        """When the earliest open request may time out (never later than its deadline), or
        a failed download is asked for again, whichever comes first."""
        at = self._next if self._open else None
        again = min((d.again_at for repeats in (self._downloads, self._repeats)
                     for d in repeats.values() if d.again_at is not None), default=None)
        return again if at is None or (again is not None and again < at) else at

    def _flow(self, now: float, flow: AcmFlow, procedure: str, out: AcmcActions) -> None:
        if isinstance(flow, PendingDataNotification):
            if not same(flow.user, self.config.mc_service_id):
                out.refuse(404, f"not-this-user: {flow.user}")
                return
            out.accept()
            # 10.17.3.1: the notification is followed by a download request
            self._ask_download(out, procedure, 1)
        elif isinstance(flow, PendingDataDownloadResponse):
            if not same(flow.user, self.config.mc_service_id):
                out.refuse(404, f"not-this-user: {flow.user}")
                return
            out.accept()
            for item in flow.items:  # 10.17.3.1: every pending item, in order
                if (why := self._item(item, out)) is not None:
                    log.warning("pending item %s ignored: %s", item.transaction_id, why)
            if flow.more:  # one page of several (docs/decisions.md): download the next
                self._ask_download(out, procedure, 1)
            elif (d := self._downloads.get(procedure)) is not None and d.again_at is not None:
                # a download we took for lost was answered after all: no retry needed
                del self._downloads[procedure]
        elif isinstance(flow, ProcessIndication):
            out.accept()
            o = self._open.get(flow.transaction_id)
            if o is not None and not o.indicated:
                self._open[flow.transaction_id] = OpenRequest(o.request, o.deadline, True)
                out.add(ReportToUser(flow.transaction_id, ReportKind.INDICATION, flow))
        elif isinstance(flow, AcmRequest | AcmResponse):
            out.accept()
            if (why := self._item(flow, out)) is not None:
                log.warning("%s %s refused: %s", flow.FLOW, flow.transaction_id, why)
                out.refuse(400, why)
        else:
            out.refuse(400, f"unexpected-flow: an ACMS does not send {flow.FLOW} to an ACMC")

    def _item(self, flow: AcmRequest | AcmResponse, out: AcmcActions) -> str | None:
        """Take one request or response from our ACMS; the refusal text if it is refused."""
        tid = flow.transaction_id
        if isinstance(flow, AcmResponse):
            # 23.280 10.17.7.2 step 10: the final answer to one of our requests
            if (o := self._open.get(tid)) is not None:
                if not answers(flow, o.request):
                    return f"wrong-response: {flow.FLOW} does not answer {o.request.FLOW}"
                self._finish(tid)
                out.add(ReportToUser(tid, ReportKind.RESPONSE, flow))
            elif tid in self._finished:
                log.info("response %s again: ignored", tid)
            else:
                # 10.17.3.1: an answer kept in the pending store while we were offline may
                # belong to a request of an earlier session (restarted ACMC, our own timer
                # ran out); the user must still learn the Result, once
                _keep(self._finished, tid, None)
                out.add(ReportToUser(tid, ReportKind.RESPONSE, flow,
                               text="answer to a request not open in this session"))
        elif (decided := self._decided.get(tid)) is not None:
            if decided[0] != flow:
                return self._reused(tid)
            # decided before, but the ACMS still holds it: our answer was lost, send it again
            self._send_decision(out, tid, 1)
        elif (waiting := self._to_decide.get(tid)) is not None:
            if waiting != flow:
                return self._reused(tid)
        else:
            # 23.280 10.17.7.2 step 5 -> step 6: a person (or --auto) decides
            self._to_decide[tid] = flow
            out.add(Decide(flow))
        return None

    @staticmethod
    def _reused(tid: str) -> str:
        # decision: one id, one request -- a different request under an id we hold is refused
        # (the exact repeat is idempotent); docs/decisions.md "Identity and authority"
        return f"transaction-id-reused: {tid} is in use for another request"

    def _finish(self, tid: str) -> None:
        del self._open[tid]
        _keep(self._finished, tid, None)

    def _ask_download(self, out: AcmcActions, procedure: str, attempt: int) -> None:
        """A pending-data download request (10.17.3.1), the ``attempt``-th at this download,
        with the X-CID of the notification or page it follows; it supersedes a download (or
        a retry that was due) towards the same worker."""
        dl = PendingDataDownloadRequest(new_transaction_id(), self.config.mc_service_id)
        send_id = self._send(out, "download", procedure, dl, procedure)
        self._downloads[procedure] = Repeat(send_id, attempt)

    def _send_decision(self, out: AcmcActions, tid: str, attempt: int) -> None:
        """Our decision on ``tid`` (step 7), the ``attempt``-th MESSAGE of it."""
        decided = self._decided.get(tid)
        if decided is None:  # forgotten (REMEMBERED): nothing left to repeat
            self._repeats.pop(tid, None)
            return
        self._repeats[tid] = Repeat(self._send(out, "response", tid, decided[1]), attempt)

    def _download_done(self, ev: DeliveryOutcome, procedure: str) -> None:
        """decision: a download that failed for a reason that may pass is asked for again,
        after the back-off or the ACMS's Retry-After (RFC 3261 21.5.4), at most
        :data:`REPEAT_ATTEMPTS` times; anything else waits for the next notification."""
        d = self._downloads.get(procedure)
        if d is None or d.send_id != ev.send_id:
            return  # superseded: the latest download towards that worker decides
        if ev.ok:
            del self._downloads[procedure]  # the response (or page) follows in a MESSAGE
            return
        again = d.after(ev)
        if again is None:
            del self._downloads[procedure]
            log.warning("pending-data download failed (%s): the items wait at the ACMS for "
                        "its next notification or a logon", ev.reason)
            return
        self._downloads[procedure] = again
        log.info("pending-data download failed (%s): asked again in %.0f s", ev.reason,
                 (again.again_at or ev.now) - ev.now)

    def _decision_done(self, ev: DeliveryOutcome, tid: str) -> bool:
        """Whether the outcome ``ev`` of our decision on ``tid`` ends it: a 2xx, a failure
        for good, or the attempts used up (True); False: it is sent again later."""
        d = self._repeats.get(tid)
        if d is None or d.send_id != ev.send_id:
            return ev.ok  # superseded by a later MESSAGE of it: that one's outcome decides
        again = None if ev.ok else d.after(ev)
        if again is None:
            del self._repeats[tid]
            return True
        self._repeats[tid] = again
        log.info("decision %s not delivered (%s): sent again in %.0f s", tid, ev.reason,
                 (again.again_at or ev.now) - ev.now)
        return False

    def _outcome(self, ev: DeliveryOutcome, out: AcmcActions) -> None:
        what, tid = self._sends.pop(ev.send_id, ("", None))
        if what == "download":
            self._download_done(ev, tid or "")
            return
        if what == "response" and tid is not None and not self._decision_done(ev, tid):
            return
        if ev.ok or tid is None:
            return
        if what == "request" and tid in self._open:
            # e.g. 403 from the primary ACMS (step 2 failed): the user learns why
            self._finish(tid)
        if what in ("request", "response"):
            out.add(ReportToUser(tid, ReportKind.FAILED, text=ev.reason))

    def _send(self, out: AcmcActions, what: str, tid: str | None, flow: AcmFlow,
              procedure: str = "") -> str:
        send_id = unique_hex()
        self._sends[send_id] = (what, tid)
        out.add(SendFlow(send_id, Hop.ACMS, self.config.acms_psi, flow, procedure))
        return send_id
