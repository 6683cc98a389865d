"""The ACM client node: :class:`~mcacm_sip.core.acmc.AcmcCore` on a SIP endpoint.

It logs on to its ACMS by REGISTER (refreshed; logoff on stop, 23.280 10.17.3.1), sends requests
and awaits their process indication and final response (10.17.7.2 steps 1 and 10), and hands
requests to decide to a :class:`Decider` (steps 5-7): a person at a terminal, ``--auto``, or a
program (tests, the demo).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from lxml import etree

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.fa import EVENT_PRESENCE, EXPIRES_UNTIL_WITHDRAWN, publish_body
from mcacm_sip.acm.model import (
    AcmRequest,
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    GroupMembershipUpdateRequest,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    ProcessIndication,
    ProfileUpdateRequest,
    RemoveUserConfigurationRequest,
    Urgency,
    UserProfile,
    new_transaction_id,
)
from mcacm_sip.core.acmc import AcmcCore
from mcacm_sip.core.events import (
    AcmcAction,
    AcmcEvent,
    Decide,
    FlowFromAcms,
    ReportKind,
    ReportToUser,
    SendFlow,
    TimerTick,
    verdict_of,
)
from mcacm_sip.core.identity import flow_procedure
from mcacm_sip.runtime.base import Node, TraceHook, tee
from mcacm_sip.runtime.config import AcmcNodeConfig, check_acmc_trust, configured_aor
from mcacm_sip.runtime.messaging import (
    PROCEDURE_HEADER,
    Sent,
    message_reply,
    procedure_of,
    start_message,
    verdict_reply,
)
from mcacm_sip.runtime.metrics import AcmcMetrics
from mcacm_sip.sip import Reply, SipTimeout, SipTransportError
from mcacm_sip.sip.aio import IncomingRequest
from mcacm_sip.sip.aio.timer import TimerDriver
from mcacm_sip.sip.aio.usages import RegistrationClient
from mcacm_sip.sip.uri import address_of_record, registrar_uri
from mcacm_sip.text import printable

log = logging.getLogger("mcacm.acmc.node")

PROCEDURES_KEPT = 4096
"""Delivered requests whose X-CID an ACMC remembers until it decides them."""

SPELLINGS_KEPT = 16
"""How many spellings of its ACMS's identity an ACMC remembers having compared."""

OPENING_FLOWS = (*AcmRequest.__args__, PendingDataDownloadRequest)
"""The flows an ACMC sends that open a procedure (their Call-ID is its X-CID value)."""

# --------------------------------------------------------------------------- deciders


@dataclass(frozen=True, slots=True)
class Decision:
    """The authorised user's answer to a request (23.280 10.17.7.2 step 6)."""

    approve: bool
    reason: str | None = None


class Decider(Protocol):
    """Decides a request handed to this ACMC (step 6)."""

    async def decide(self, request: AcmRequest) -> Decision: ...


class AutoDecider:
    """``--auto approve|reject``: the same answer to everything."""

    def __init__(self, approve: bool, reason: str | None = None) -> None:
        self.approve = approve
        self.reason = reason or ("approved automatically" if approve
                                 else "rejected automatically")

    async def decide(self, request: AcmRequest) -> Decision:
        return Decision(self.approve, self.reason)


class ProgrammableDecider:
    """For tests and the demo: ``rule(request)`` answers (sync or async); without a rule,
    requests wait in :attr:`requests` until :meth:`answer` is called."""

    def __init__(self, rule: Callable[[AcmRequest], Decision | Awaitable[Decision]] | None = None
                 ) -> None:
        self.rule = rule
        self.requests: asyncio.Queue[AcmRequest] = asyncio.Queue()
        self.decided: list[tuple[AcmRequest, Decision]] = []
        self._waiting: dict[str, asyncio.Future[Decision]] = {}

    async def decide(self, request: AcmRequest) -> Decision:
        if self.rule is not None:
            answer = self.rule(request)
            decision = await answer if isinstance(answer, Awaitable) else answer
        else:
            fut = asyncio.get_running_loop().create_future()
            self._waiting[request.transaction_id] = fut
            self.requests.put_nowait(request)
            try:
                decision = await fut
            finally:
                self._waiting.pop(request.transaction_id, None)
        self.decided.append((request, decision))
        return decision

    async def next_request(self, timeout: float | None = None) -> AcmRequest:
        """The next request waiting for :meth:`answer`."""
        return await asyncio.wait_for(self.requests.get(), timeout)

    def answer(self, transaction_id: str, approve: bool, reason: str | None = None) -> None:
        self._waiting[transaction_id].set_result(Decision(approve, reason))


def profile_summary(profile: UserProfile, limit: int = 8) -> str:
    """A one-line view of a profile: its elements and short texts (not the whole document)."""
    try:
        root = etree.fromstring(profile.xml.encode("utf-8"))
    except etree.XMLSyntaxError:
        return "(unreadable profile)"
    parts = []
    for el in root.iter():
        if el is root or not isinstance(el.tag, str):
            continue
        text = (el.text or "").strip()
        name = etree.QName(el).localname
        parts.append(f"{name}={text[:40]}" if text else name)
    more = f" ... (+{len(parts) - limit})" if len(parts) > limit else ""
    return f"{etree.QName(root).localname}: " + "; ".join(parts[:limit]) + more


def describe_request(request: AcmRequest) -> str:
    """What a person needs to decide ``request``, one item per line."""
    req = request.requester
    lines = [f"{request.FLOW}  (transaction {request.transaction_id})",
             f"  requester:      {req.mc_service_id}"
             + (f" as {req.functional_alias}" if req.functional_alias else "")]
    if request.target is not None:
        t = request.target
        lines.append(f"  target:         {t.mc_service_id or ''}"
                     + (f" (FA {t.functional_alias})" if t.functional_alias else ""))
    if isinstance(request, ProfileUpdateRequest):
        lines.append(f"  migrated user:  {request.migrated_user_id}")
        lines.append(f"  profile:        {profile_summary(request.profile)}")
        if request.additional_info:
            lines.append(f"  additional info: {request.additional_info}")
    elif isinstance(request, GroupMembershipUpdateRequest):
        # 10.17.4: what the partner user decides is the operation on its users in the group
        lines.append(f"  group:          {request.group_id}")
        lines.append(f"  operation:      {request.operation}"
                     + (f"  (urgency {request.urgency})" if request.urgency else ""))
        lines.append(f"  users:          {', '.join(request.users)}")
    elif isinstance(request, InterconnectionGroupProvisionRequest):
        lines.append(f"  groups:         {', '.join(request.groups)}")
    else:
        lines.append(f"  users:          {', '.join(request.users)}")
    # every value is the peer's: one visibly escaped line each, so nothing it wrote can draw
    # lines of its own above the prompt (a forged request) or move the cursor
    return "\n".join(printable(line) for line in lines)


class InteractiveDecider:
    """Shows each request readably on a terminal and asks approve/reject with a reason.
    One question at a time; end of input rejects (nobody is there to approve)."""

    def __init__(self, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self._lock = asyncio.Lock()
        self.prompt: str | None = None
        """The question on screen, waiting for its answer (a log line above it re-draws it:
        mcacm_sip.cli.logs.keep_prompt_readable)."""

    async def _ask(self, prompt: str) -> str | None:
        self.stdout.write(prompt)
        self.stdout.flush()
        self.prompt = prompt
        # A daemon thread, not the loop's executor: a pending readline must not keep the process
        # alive after Ctrl-C (asyncio.run waits for executor threads).
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str] = loop.create_future()

        def deliver(line: str) -> None:
            if not answer.done():  # the node may have stopped meanwhile
                answer.set_result(line)

        def read() -> None:
            line = self.stdin.readline()
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody asks any more
                loop.call_soon_threadsafe(deliver, line)

        threading.Thread(target=read, name="acmc-prompt", daemon=True).start()
        try:
            line = await answer
        finally:
            self.prompt = None
        return line.strip() if line else None

    async def decide(self, request: AcmRequest) -> Decision:
        async with self._lock:
            self.stdout.write("\n" + describe_request(request) + "\n")
            while True:
                answer = await self._ask("approve or reject? [a/r] ")
                if answer is None:
                    return Decision(False, "no decision (input closed)")
                if answer.lower() in ("a", "approve", "r", "reject"):
                    break
            reason = await self._ask("reason (optional): ")
            return Decision(answer.lower().startswith("a"), reason or None)


# --------------------------------------------------------------------------- requests


@dataclass(slots=True)
class RequestOutcome:
    """What became of one request of ours."""

    transaction_id: str
    indication: ProcessIndication | None = None
    response: AcmResponse | None = None
    failure: str | None = None
    """Why there is no response: the ACMS refused the MESSAGE (e.g. ``403 not-authorised:
    ...``), it was undeliverable, or no answer came in time."""

    @property
    def result(self) -> str | None:
        """The Result code of the final response, if any."""
        return None if self.response is None else self.response.result.code


@dataclass(eq=False)
class RequestHandle:
    """A request in flight: ``await handle.indicated`` (step 4 reached us), ``await
    handle.wait()`` (the final response or the failure)."""

    outcome: RequestOutcome
    indicated: asyncio.Future[ProcessIndication] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    done: asyncio.Future[RequestOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def transaction_id(self) -> str:
        return self.outcome.transaction_id

    async def wait(self, timeout: float | None = None) -> RequestOutcome:
        """The outcome; on ``timeout`` the outcome so far with ``failure`` set."""
        done = self.done
        if not done.done():
            # a future of this wait's own, woken by the outcome or the timeout: ``done`` is
            # never cancelled with it (as asyncio.shield would keep it), and no task, shield
            # or wait_for future stands between the outcome and the waiter
            loop = asyncio.get_running_loop()
            woken: asyncio.Future[None] = loop.create_future()

            def wake(_: object = None) -> None:
                if not woken.done():
                    woken.set_result(None)

            done.add_done_callback(wake)
            timer = None if timeout is None else loop.call_later(timeout, wake)
            try:
                await woken
            finally:
                done.remove_done_callback(wake)
                if timer is not None:
                    timer.cancel()
            if not done.done():
                self.outcome.failure = (self.outcome.failure
                                        or f"no final response in {timeout} s")
                return self.outcome
        return done.result()


# --------------------------------------------------------------------------- the node


class AcmcNode(Node):
    """One ACMC.  ``await start()`` returns once it listens and is logged on."""

    def __init__(self, config: AcmcNodeConfig, decider: Decider | None = None, *,
                 trace: TraceHook | None = None,
                 on_report: Callable[[ReportToUser], None] | None = None) -> None:
        check_acmc_trust(config)  # secure by default: ConfigError naming sip.trust
        self.metrics = AcmcMetrics() if config.metrics.listen is not None else None
        """``[metrics]``: counted inline, served from a thread (runtime/metrics.py)."""
        super().__init__(config.sip, config.acmc.mc_service_id,
                         tee(trace, self.metrics.traced if self.metrics else None))
        self.config = config
        self.me = config.acmc.mc_service_id
        self.decider: Decider = decider or AutoDecider(False, "no decider configured")
        self.on_report = on_report
        self.core = AcmcCore(config.acmc)
        self._acms = configured_aor(config.acmc.acms_psi, "acmc.acms_psi")
        self._registration: RegistrationClient | None = None
        self._timer: TimerDriver = TimerDriver(self, clock=time.time)
        self._handles: dict[str, RequestHandle] = {}
        self._from_acms: set[str | None] = set()
        """Spellings of our ACMS's identity seen on its MESSAGEs (each compared once)."""
        self._procedures: dict[str, str] = {}
        """Transaction id of a request delivered to us -> the X-CID it came with, echoed on
        our decision (the ACMS derives it from the origin's id, which a fresh leg id hides
        from us); newest last, at most ``PROCEDURES_KEPT``."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self, logon: bool = True) -> None:
        """Listen and log on (REGISTER).  Raises RegistrationError if the ACMS refuses."""
        # routes before sockets, as the ACMS: never a 405 (permanent) while we start
        self.endpoint.serve("MESSAGE", self._on_message, accept=(codec.ACM_CONTENT_TYPE,))
        await self.endpoint.start()
        self._running = True
        self._announce_trust()
        self._registration = RegistrationClient(
            self.endpoint, registrar=registrar_uri(self.config.acmc.acms_psi),
            aor=self.me, expires=self.config.sip.registration_expires,
            transport=self.config.sip.transport)
        if self.metrics is not None and self.config.metrics.listen is not None:
            self.metrics.serve(*self.config.metrics.listen)
        if logon:
            await self.logon()

    async def logon(self) -> int:
        """REGISTER (10.17.3.1 logon); returns the granted seconds."""
        assert self._registration is not None, "start() first"
        granted = await self._registration.register()
        log.info("%s logged on for %d s", self.me, granted, extra={"event": "acmc.logon"})
        return granted

    async def logoff(self) -> None:
        """REGISTER with Expires: 0 (the ACMS then queues for us, 10.17.3.1)."""
        if self._registration is not None:
            await self._registration.unregister()
            log.info("%s logged off", self.me, extra={"event": "acmc.logoff"})

    async def stop(self, logoff: bool = True, logoff_timeout: float | None = None) -> None:
        """Log off (REGISTER Expires: 0, waiting at most ``logoff_timeout``, by default
        ``[sip] send_timeout``) and close."""
        if not self._running:
            return
        if logoff:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.logoff(), logoff_timeout
                                       or self.config.sip.send_timeout)
        elif self._registration is not None:
            await self._registration.close()
        await self._halt()
        await self.endpoint.close()
        if self.metrics is not None:
            self.metrics.close()

    # ------------------------------------------------------------------ requests

    def submit(self, request: AcmRequest) -> RequestHandle:
        """Send ``request`` (10.17.7.2 step 1 / 10.17.5); follow it with the handle."""
        handle = RequestHandle(RequestOutcome(request.transaction_id))
        self._handles[request.transaction_id] = handle
        self._apply(self.core.send_request(request, time.time()))
        return handle

    async def request(self, request: AcmRequest, timeout: float | None = None
                      ) -> RequestOutcome:
        return await self.submit(request).wait(timeout)

    async def profile_update(self, *, target: Addressee, migrated_user_id: str,
                             profile: UserProfile, additional_info: str | None = None,
                             timeout: float | None = None) -> RequestOutcome:
        """MC service user profile update (10.17.2.15, 10.17.7)."""
        return await self.request(ProfileUpdateRequest(
            new_transaction_id(), self.core.me, target, migrated_user_id, profile,
            additional_info), timeout)

    async def add_users(self, users: tuple[str, ...], target: Addressee | None = None,
                        timeout: float | None = None) -> RequestOutcome:
        """Add user configuration (10.17.5.2): the partner assigns IDs and profiles."""
        return await self.request(AddUserConfigurationRequest(
            new_transaction_id(), self.core.me, users, target), timeout)

    async def remove_users(self, users: tuple[str, ...], target: Addressee | None = None,
                           timeout: float | None = None) -> RequestOutcome:
        return await self.request(RemoveUserConfigurationRequest(
            new_transaction_id(), self.core.me, users, target), timeout)

    async def group_membership_update(self, *, target: Addressee, group_id: str,
                                      users: tuple[str, ...], operation: GroupOperation,
                                      urgency: Urgency | None = None,
                                      timeout: float | None = None) -> RequestOutcome:
        """Group membership update (10.17.4): add or delete partner users in our group."""
        return await self.request(GroupMembershipUpdateRequest(
            new_transaction_id(), self.core.me, target, group_id, users, operation, urgency),
            timeout)

    async def provide_groups(self, *, target: Addressee, groups: tuple[str, ...],
                             timeout: float | None = None) -> RequestOutcome:
        """Interconnection group identity provision (10.17.4.2.2)."""
        return await self.request(InterconnectionGroupProvisionRequest(
            new_transaction_id(), self.core.me, target, groups), timeout)

    async def set_functional_alias(self, fa: str, active: bool) -> int:
        """Activate (Expires 4294967295) or deactivate (0) ``fa`` for this user by PUBLISH to
        the FA controlling server (24.379 9A.2.2.2.6); returns the final status (0: none)."""
        content_type, body = publish_body(fa, self.me)
        expires = EXPIRES_UNTIL_WITHDRAWN if active else 0
        request = self.endpoint.new_request(
            "PUBLISH", fa, from_uri=self.me, to_uri=fa, body=body, content_type=content_type,
            headers=(("Event", EVENT_PRESENCE), ("Expires", str(expires)),
                     ("P-Asserted-Identity", f"<{self.me}>")))
        try:
            final = await self.endpoint.send(request, timeout=self.config.sip.send_timeout)
        except (SipTimeout, SipTransportError) as exc:
            log.info("PUBLISH %s failed: %s", fa, exc)
            return 0
        return final.status

    # ------------------------------------------------------------------ core plumbing

    def get_timer(self) -> float | None:
        """The core's next deadline, on the wall clock (the node's :class:`TimerDriver`)."""
        return self.core.get_timer()

    def handle_timer(self, now: float) -> None:
        """The core's timer tick: its actions are applied as any event's."""
        self._feed(TimerTick(now))

    def _apply(self, actions: list[AcmcAction]) -> None:
        for action in actions:
            if isinstance(action, SendFlow):
                # from the next loop callback, as a task's first step was: a MESSAGE's 200
                # still leaves before what its flow makes us send, submit() returns first
                asyncio.get_running_loop().call_soon(self._deliver, action)
            elif isinstance(action, Decide):
                self._spawn(self._decide(action.request))
            elif isinstance(action, ReportToUser):
                self._report(action)
        self._timer.rearm()

    def _feed(self, event: AcmcEvent) -> None:
        if self._running:
            self._apply(self.core.handle(event))

    def _report(self, report: ReportToUser) -> None:
        log.info("%s %s%s", report.transaction_id, report.kind,
                 f": {report.text}" if report.text else "",
                 extra={"event": f"acmc.{report.kind}", "transaction_id": report.transaction_id})
        result = getattr(report.flow, "result", None)
        if self.metrics is not None and report.kind is ReportKind.RESPONSE and result is not None:
            self.metrics.results.labels(result.code).inc()
        handle = self._handles.get(report.transaction_id)
        if handle is not None:
            out = handle.outcome
            if report.kind is ReportKind.INDICATION and isinstance(report.flow,
                                                                   ProcessIndication):
                out.indication = report.flow
                if not handle.indicated.done():
                    handle.indicated.set_result(report.flow)
            elif report.kind in (ReportKind.RESPONSE, ReportKind.FAILED, ReportKind.TIMEOUT):
                if report.kind is ReportKind.RESPONSE:
                    out.response = report.flow  # type: ignore[assignment]
                else:
                    out.failure = report.text or str(report.kind)
                if not handle.done.done():
                    handle.done.set_result(out)
                del self._handles[report.transaction_id]
        if self.on_report is not None:
            self.on_report(report)

    def _deliver(self, send: SendFlow) -> None:
        """Start one MESSAGE out; its outcome reaches the core from a later loop callback (no
        task per send: ``start_message``, as the ACMS node)."""
        if not self._running:  # stopped meanwhile: nothing more goes out
            return
        flow = send.flow
        # 10.17.3.1: a download (retries included) goes with the X-CID of the notification
        # or page it follows (the core's), so the dispatcher sends it to the worker that
        # notified: the one holding those pending items
        follows = send.procedure
        echoed = follows or (self._procedures.get(flow.transaction_id) if isinstance(
            flow, AcmResponse.__args__) else None)
        # a request we open names its procedure by its Call-ID too: what sngrep and Homer
        # link the procedure's other MESSAGEs (their X-CID) to
        opens = isinstance(flow, OPENING_FLOWS) and not follows
        procedure = echoed or flow_procedure(flow)  # "": absent

        def done(sent: Sent) -> None:
            self._feed(sent.outcome(time.time(), send.send_id))

        start_message(self.endpoint, self.config.sip, uri=send.to, to=send.to,
                      identity=self.me, flow=flow, done=done, procedure=procedure,
                      call_id=procedure if opens else None)

    async def _decide(self, request: AcmRequest) -> None:
        decision = await self.decider.decide(request)
        log.info("%s decided: %s", request.transaction_id,
                 "approve" if decision.approve else "reject",
                 extra={"event": "acmc.decided", "transaction_id": request.transaction_id})
        if not self._running:
            return
        try:
            actions = self.core.decide(request.transaction_id, decision.approve,
                                       decision.reason, time.time())
        except KeyError:  # answered meanwhile (e.g. delivered twice)
            return
        if self.metrics is not None:
            self.metrics.decisions.labels("approve" if decision.approve else "reject").inc()
        self._apply(actions)

    def _on_message(self, incoming: IncomingRequest) -> Reply:
        req = incoming.message
        try:
            flow = codec.decode(req.body, content_type=req.header("content-type") or "")
        except AcmError as exc:
            return message_reply(self.host, exc.sip_status, exc.warning_text)
        sender = self._sender(req)
        # an ACMC takes flows only from its own ACMS (decision), by RFC 3261 19.1.4
        if sender not in self._from_acms:
            if sender is None or address_of_record(sender) != self._acms:
                return message_reply(self.host, 403, f"not-authorised: {sender} is not my ACMS")
            if len(self._from_acms) < SPELLINGS_KEPT:
                self._from_acms.add(sender)
        # lax on receive: without a usable X-CID, the value the flow itself names
        procedure = procedure_of(req.header(PROCEDURE_HEADER)) or flow_procedure(flow)
        if isinstance(flow, AcmRequest.__args__):  # to decide: our answer echoes its X-CID
            self._procedures.pop(flow.transaction_id, None)
            self._procedures[flow.transaction_id] = procedure or ""
            if len(self._procedures) > PROCEDURES_KEPT:
                del self._procedures[next(iter(self._procedures))]
        if self.metrics is not None and isinstance(flow, PendingDataDownloadResponse):
            self.metrics.pending_downloaded.inc(len(flow.items))
        actions = self.core.handle(FlowFromAcms(time.time(), flow, procedure or ""))
        self._apply(actions)
        return verdict_reply(self.host, verdict_of(actions))  # only a MESSAGE has a verdict
