"""A one-shot ACM user agent (``mcacm send``): send one request, as the ACMC of its requester or
as a foreign ACMS, and follow it to its process indication and final response.

:class:`Exchange` is the sans-I/O part: it is told what happened (REGISTER answered, MESSAGE
answered, an ACM MESSAGE arrived) with the time, decides what to answer each arriving MESSAGE,
and holds the verdict.  :func:`send_request` is the I/O around it: one SIP endpoint, the
REGISTER of the ACMC role, the MESSAGE, and the wait.

As an ACMC (23.280 10.17.3.1, 10.17.7.2 steps 1 and 10): REGISTER the requester at its ACMS so
that the ACMS can deliver the process indication and the response to our contact, then the
MESSAGE; unregister at the end.  As a foreign ACMS (steps 3, 4 and 8 seen from the primary
ACMS): the MESSAGE comes from our PSI; the peer must route its answers to our listen address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.model import (
    ANSWER_FOR,
    AcmFlow,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    GroupMembershipUpdateRequest,
    GroupMembershipUpdateResponse,
    InterconnectionGroupProvisionRequest,
    InterconnectionGroupProvisionResponse,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    RemoveUserConfigurationRequest,
    RemoveUserConfigurationResponse,
)
from mcacm_sip.acm.validate import Problem, validate_document
from mcacm_sip.core.identity import flow_procedure
from mcacm_sip.runtime.base import TlsSettings, uri_host
from mcacm_sip.runtime.messaging import acm_headers, message_reply, warning_text
from mcacm_sip.sip import Peer, Reply, SipTimeout, SipTransportError, Timers
from mcacm_sip.sip.aio import IncomingRequest, Listen, MessageTrace, SipEndpoint
from mcacm_sip.sip.aio.usages import RegistrationClient, RegistrationError
from mcacm_sip.sip.uri import registrar_uri

SendRole = Literal["acmc", "acms"]

SendableRequest = (ProfileUpdateRequest | AddUserConfigurationRequest
                   | RemoveUserConfigurationRequest | PendingDataDownloadRequest
                   | GroupMembershipUpdateRequest | InterconnectionGroupProvisionRequest)
FinalAnswer = (ProfileUpdateResponse | AddUserConfigurationResponse
               | RemoveUserConfigurationResponse | PendingDataDownloadResponse
               | GroupMembershipUpdateResponse | InterconnectionGroupProvisionResponse)

REQUEST_FLOWS: tuple[str, ...] = tuple(cls.FLOW for cls in ANSWER_FOR)
_ANSWERS = (ProfileUpdateResponse, AddUserConfigurationResponse,
            RemoveUserConfigurationResponse, PendingDataDownloadResponse,
            GroupMembershipUpdateResponse, InterconnectionGroupProvisionResponse)


def identity_of(request: SendableRequest) -> str:
    """Who sends ``request`` as an ACMC: its requester, or the user whose data it downloads."""
    if isinstance(request, PendingDataDownloadRequest):
        return request.user
    return request.requester.mc_service_id


class ExchangeResult(StrEnum):
    """How the exchange ended (``mcacm send`` maps each to its exit code)."""

    POSITIVE = "positive"     # the final response's Result is success
    NEGATIVE = "negative"     # a final response with a negative Result
    NO_ANSWER = "no-answer"   # nothing final in time (or the peer unreachable)
    INVALID = "invalid"       # an answer failed validation
    REFUSED = "refused"       # the peer answered REGISTER or MESSAGE with 3xx-6xx


@dataclass(frozen=True, slots=True)
class Arrival:
    """One MESSAGE that reached us while we waited, and what we answered."""

    time: float
    """Seconds since the exchange started."""
    flow: AcmFlow | None
    """Decoded, or None if it failed validation."""
    problems: tuple[Problem, ...]
    status: int
    """Our SIP answer."""
    note: str = ""


@dataclass(slots=True)
class Exchange:
    """The state of one request: sans-I/O (every event carries ``now``)."""

    request: SendableRequest
    started: float
    registered: int | None = None
    """REGISTER's final status (ACMC role); None if not sent or unanswered."""
    sip_method: str = "MESSAGE"
    """The request the SIP status below answers (REGISTER if that was refused)."""
    sip_status: int | None = None
    sip_reason: str | None = None
    warning: str | None = None
    """The text of the peer's ``Warning: 399`` header, if any."""
    failure: str | None = None
    """Why nothing came: no answer, a transport error, the deadline."""
    indication: ProcessIndication | None = None
    response: FinalAnswer | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Event -> seconds since :attr:`started` (``register``, ``sip``, ``indication``,
    ``response``, ``end``)."""

    # ---------------------------------------------------------------- events

    def sending(self, method: str) -> None:
        """``method`` (REGISTER, then MESSAGE) is on its way: what a silence is blamed on."""
        self.sip_method = method

    def on_register(self, status: int | None, now: float, why: str | None = None) -> None:
        self.timings["register"] = now - self.started
        self.registered = status
        if status is None:
            self.failure = (f"REGISTER: {why}" if why
                            else "no answer to REGISTER (or the peer is unreachable)")
        elif status >= 300:
            self.sip_status = status

    def on_final(self, status: int, reason: str, warning: str | None, now: float) -> None:
        self.timings["sip"] = now - self.started
        self.sip_status, self.sip_reason = status, reason
        self.warning = warning

    def on_failure(self, why: str, now: float) -> None:
        self.timings.setdefault("sip", now - self.started)
        self.failure = why

    def on_message(self, body: bytes, content_type: str | None, now: float
                   ) -> tuple[int, str | None]:
        """An ACM MESSAGE reached us: returns our SIP status and Warning text."""
        at = now - self.started
        try:
            flow = codec.decode(body, content_type=content_type or "")
        except AcmError as exc:
            # the whole list for the user; the first error is what a receiver answers
            problems = validate_document(body) or [Problem(
                exc.path, exc.message, exc.hint, "parse", sip_status=exc.sip_status)]
            self.arrivals.append(Arrival(at, None, tuple(problems), exc.sip_status))
            return exc.sip_status, exc.warning_text
        tid = self.request.transaction_id
        mine = getattr(flow, "transaction_id", None) == tid
        if mine and isinstance(flow, ProcessIndication):
            if flow.request != self.request.FLOW:
                return self._wrong(at, flow, f"wrong-indication: it names {flow.request}, "
                                   f"not {self.request.FLOW}")
            if self.indication is None:  # 10.17.7.2 step 4 (relayed by the primary ACMS)
                self.indication = flow
                self.timings["indication"] = at
            self.arrivals.append(Arrival(at, flow, (), 200))
            return 200, None
        if mine and isinstance(flow, _ANSWERS):
            if not isinstance(flow, ANSWER_FOR[type(self.request)]):
                return self._wrong(at, flow, f"wrong-response: {flow.FLOW} does not answer "
                                   f"{self.request.FLOW}")
            if self.response is None:  # 10.17.7.2 step 10 (or the 10.17.3.1 download)
                self.response = flow
                self.timings["response"] = at
            self.arrivals.append(Arrival(at, flow, (), 200))
            return 200, None
        # decision: not about our request (a request to decide, a pending-data notification):
        # 480, so that the ACMS keeps it for the user's real ACMC (10.17.3.1) instead of
        # believing it delivered
        note = "not about the request sent; refused so the ACMS keeps it"
        self.arrivals.append(Arrival(at, flow, (), 480, note))
        return 480, "not-handled: mcacm send takes only the answers to its own request"

    def _wrong(self, at: float, flow: AcmFlow, text: str) -> tuple[int, str]:
        path = f"/{flow.FLOW}"
        problem = Problem(path, text.split(": ", 1)[1], "the peer answered another request",
                          "model")
        self.arrivals.append(Arrival(at, flow, (problem,), 400))
        return 400, text

    def finish(self, now: float) -> None:
        self.timings["end"] = now - self.started
        if not self.done and self.failure is None:
            self.failure = self._waiting_for()

    # ---------------------------------------------------------------- state

    @property
    def invalid(self) -> tuple[Arrival, ...]:
        """Answers that failed validation."""
        return tuple(a for a in self.arrivals if a.problems)

    @property
    def refused(self) -> bool:
        return self.sip_status is not None and self.sip_status >= 300

    @property
    def done(self) -> bool:
        """Nothing more to wait for."""
        if self.invalid or self.refused:
            return True
        return self.response is not None and self.sip_status is not None

    @property
    def result(self) -> str | None:
        """The final response's Result code (``success`` for a download response)."""
        if self.response is None:
            return None
        if isinstance(self.response, PendingDataDownloadResponse):
            return "success"
        return self.response.result.code

    @property
    def verdict(self) -> ExchangeResult:
        if self.invalid:
            return ExchangeResult.INVALID
        if self.refused:
            return ExchangeResult.REFUSED
        if self.response is None:
            return ExchangeResult.NO_ANSWER
        if isinstance(self.response, PendingDataDownloadResponse) or \
                self.response.result.positive:
            return ExchangeResult.POSITIVE
        return ExchangeResult.NEGATIVE

    def _waiting_for(self) -> str:
        if self.sip_status is None:
            return f"no answer to {self.sip_method}"
        if self.indication is None and not isinstance(self.request,
                                                      PendingDataDownloadRequest):
            return "neither process indication nor final response"
        return "no final response"


# --------------------------------------------------------------------------- I/O


@dataclass(frozen=True, slots=True)
class SendSettings:
    """Where and how ``mcacm send`` sends."""

    to: str
    """Request-URI and To: the ACMS PSI (or an ACMC's URI)."""
    role: SendRole
    identity: str
    """From and P-Asserted-Identity: the requester (ACMC role) or our PSI (ACMS role)."""
    listen: Listen
    """Our one socket; its transport is the transport of every request."""
    hop: Peer | None = None
    """The next hop of every request; None: the endpoint resolves the URI."""
    timeout: float = 30.0
    """For the whole exchange, from the first request to the final response."""
    tls: TlsSettings | None = None
    icsi: str = "urn:urn-7:3gpp-service.ims.icsi.mcptt"
    timers: Timers = field(default_factory=Timers)
    registration_expires: int = 600


def local_address_toward(host: str, port: int = 5060) -> str:
    """The address this host would send from to reach ``host`` (no packet is sent)."""
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def sender_endpoint(settings: SendSettings, trace: MessageTrace | None) -> SipEndpoint:
    """The one socket of ``mcacm send`` (one request or a load run): every request to the
    configured hop, if any.  Raises ValueError / ssl.SSLError for unusable TLS files."""
    tls = settings.tls
    hop = settings.hop
    return SipEndpoint(
        [settings.listen], timers=settings.timers,
        tls_server=tls.server_context() if tls and settings.listen.transport == "tls" else None,
        tls_client=tls.client_context() if tls else None, trace=trace,
        locate=None if hop is None else (lambda _uri: hop))


async def send_request(request: SendableRequest, body: bytes, settings: SendSettings, *,
                       trace: MessageTrace | None = None,
                       progress: Callable[[str], None] | None = None) -> Exchange:
    """Send ``request`` (``body`` is its document, sent as is) and wait, at most
    ``settings.timeout`` seconds, for the process indication and the final response.

    Raises OSError if we cannot listen, ValueError / ssl.SSLError for unusable TLS files.
    """
    say = progress or (lambda _: None)
    endpoint = sender_endpoint(settings, trace)
    ex = Exchange(request, time.time())
    changed = asyncio.Event()
    host = uri_host(settings.identity)

    def on_message(incoming: IncomingRequest) -> Reply:
        msg = incoming.message
        status, text = ex.on_message(msg.body, msg.header("content-type"), time.time())
        arrival = ex.arrivals[-1]
        say(f"received {arrival.flow.FLOW if arrival.flow else 'an invalid document'}, "
            f"answered {status}")
        changed.set()
        return Reply(200) if text is None else message_reply(host, status, text)

    endpoint.serve("MESSAGE", on_message)  # Content-Type checked by decode: a wrong one is
    await endpoint.start()                 # an invalid answer, not a silent 415
    registration: RegistrationClient | None = None
    try:
        async with asyncio.timeout(settings.timeout):
            if settings.role == "acmc":
                registration = RegistrationClient(
                    endpoint, registrar=registrar_uri(settings.to), aor=settings.identity,
                    expires=settings.registration_expires, transport=settings.listen.transport)
                say(f"REGISTER {settings.identity} at {registrar_uri(settings.to)}")
                ex.sending("REGISTER")
                try:
                    await registration.register()  # 10.17.3.1 logon
                    ex.on_register(200, time.time())
                except RegistrationError as exc:
                    ex.on_register(exc.status, time.time(), exc.why)
                    registration = None
            if ex.failure is None and not ex.refused:
                await follow_message(endpoint, settings, body, ex, changed, say)
    except TimeoutError:
        pass
    finally:
        ex.finish(time.time())
        if registration is not None:
            if ex.registered == 200:  # logoff, bounded so that a dead ACMS cannot hold us
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(registration.unregister(), 5.0)
            else:  # never registered (cancelled by the deadline): stop its refresher
                await registration.close()
        await endpoint.close()
    return ex


async def follow_message(endpoint: SipEndpoint, settings: SendSettings, body: bytes,
                         ex: Exchange, changed: asyncio.Event, say: Callable[[str], None]
                         ) -> None:
    """Send ``body`` in a MESSAGE and wait until ``ex`` is done or failed (``changed`` is set
    whenever something reached ``ex``)."""
    procedure = flow_procedure(ex.request)
    request = endpoint.new_request(
        "MESSAGE", settings.to, from_uri=settings.identity, to_uri=settings.to, body=body,
        content_type=codec.ACM_CONTENT_TYPE, transport=settings.listen.transport,
        # as an ACMC the request opens its procedure: its Call-ID is the X-CID value
        call_id=procedure if settings.role == "acmc" else None,
        headers=acm_headers(settings.identity, settings.icsi, procedure))
    say(f"MESSAGE {ex.request.FLOW} {ex.request.transaction_id} to {settings.to}")
    ex.sending("MESSAGE")

    async def send() -> None:
        try:
            final = await endpoint.send(request)
        except SipTimeout:
            ex.on_failure("no answer to MESSAGE (RFC 3261 Timer F)", time.time())
        except SipTransportError as exc:
            ex.on_failure(f"cannot reach the peer: {exc}", time.time())
        else:
            ex.on_final(final.status, final.message.reason,
                        warning_text(final.message.header("warning")), time.time())
            say(f"MESSAGE answered {final.status} {final.message.reason}")
        changed.set()

    task = asyncio.get_running_loop().create_task(send())
    try:
        while not ex.done and ex.failure is None:
            await changed.wait()
            changed.clear()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
