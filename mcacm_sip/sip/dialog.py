"""Dialog state for the non-INVITE usages (RFC 3261 12), and what the usages share.

A :class:`Dialog` is built from the dialog-creating SUBSCRIBE and its 200 (or an early NOTIFY),
keeps the route set, the remote target and both CSeq counters, and turns a method into a
:class:`RequestSpec`: the arguments of :meth:`SipEndpoint.new_request`, which applies the route
set (loose or strict, RFC 3261 12.2.1.1) when it serialises. Nothing here does I/O.

The rest of the module is shared by the registrar, subscription and publication usages:
their reading of Expires and Retry-After (:mod:`.headers` parses them), :class:`Refuse` (an
application's "no"), and the asyncio helpers of their thin adapters (:class:`Ticker`,
:func:`exchange`, :class:`ExpiringService` for the servers whose state expires,
:class:`RefreshingClient` for the clients that keep it alive by refreshing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from .errors import SipTimeout, SipTransportError
from .headers import Expires, InvalidHeader, RetryAfter
from .message import Request, Response
from .uri import addr_spec

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .endpoint import IncomingRequest, Reply, SipEndpoint
    from .transaction import Transport

log = logging.getLogger("mcacm.sip")

# RFC 3261 20.19 / 25.1: delta-seconds; larger values are read as 2**32-1. TS 24.379 9A uses
# exactly this value for "until withdrawn" (continuous) PUBLISH and SUBSCRIBE.
MAX_EXPIRES = 2**32 - 1
# Adapters never sleep longer than this at once: a deadline 136 years away is re-checked
# hourly instead of being handed to the event loop as one huge timer.
MAX_SLEEP = 3600.0
# RFC 3261 17.1.2.2: 64*T1 with the default T1, the longest a non-INVITE exchange can take.
TRANSACTION_WINDOW = 32.0

Header = tuple[str, str]


class BadRequest(ValueError):
    """A request a usage cannot accept; the answer is ``status``, ``reason`` and ``headers``."""

    def __init__(self, status: int, reason: str | None = None, headers: Sequence[Header] = ()
                 ) -> None:
        super().__init__(f"{status} {reason or ''}")
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)


@dataclass(frozen=True, slots=True)
class Refuse:
    """An application's refusal of a SUBSCRIBE or PUBLISH: the status, reason and headers to send
    (e.g. ``Refuse(423, headers=(("Min-Expires", "4294967295"),))`` as TS 24.379 9A wants)."""

    status: int
    reason: str | None = None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class Body:
    """A message body and its media type."""

    content_type: str
    data: bytes


# --------------------------------------------------------------------------------------------
# Header values


def parse_expires(value: str | None) -> int | None:
    """An Expires value or ``expires`` parameter: None when absent, capped at 2**32-1.

    Raises BadRequest(400) if it is not delta-seconds (RFC 3261 20.19).
    """
    if value is None:
        return None
    try:
        return Expires.parse(value).seconds
    except InvalidHeader:
        raise BadRequest(400, "Bad Expires") from None


def parse_retry_after(value: str | None) -> int | None:
    """RFC 3261 20.33 Retry-After seconds; None when absent or unreadable (a hint only)."""
    if value is None:
        return None
    try:
        return RetryAfter.parse(value).seconds
    except InvalidHeader:
        return None


def uri_from(request: Request | Response, header: str) -> str:
    """The URI in the From or To header of a message."""
    return addr_spec(request.header(header) or "")


# --------------------------------------------------------------------------------------------
# Requests the usages build


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """A request to send: exactly the arguments of :meth:`SipEndpoint.new_request`.

    ``uri`` is the remote target and ``route`` the route set in order; the endpoint forms the
    Request-URI and Route headers from them (RFC 3261 12.2.1.1, loose or strict).
    """

    method: str
    uri: str
    from_uri: str
    to_uri: str
    from_tag: str | None = None
    to_tag: str | None = None
    call_id: str | None = None
    cseq: int = 1
    route: tuple[str, ...] = ()
    headers: tuple[Header, ...] = ()
    body: bytes = b""
    content_type: str | None = None
    contact: str | None = None

    def header(self, name: str) -> str | None:
        """First value of one of the extra headers (case-insensitive)."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def _record_route(message: Request | Response) -> list[str]:
    return message.headers("record-route")


def _contact(message: Request | Response) -> str | None:
    contacts = message.headers("contact")
    if len(contacts) != 1 or contacts[0].strip() == "*":
        return None
    return addr_spec(contacts[0])


@dataclass(slots=True)
class Dialog:
    """RFC 3261 12 dialog state: identity, route set, remote target and CSeq counters."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...] = ()
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> tuple[str, str, str]:
        """(Call-ID, local tag, remote tag) (RFC 3261 12)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: Request, local_tag: str) -> Dialog:
        """The dialog a UAS creates when it answers ``request`` with a 2xx (RFC 3261 12.1.1).

        Raises BadRequest(400) if the request lacks a From tag or exactly one Contact.
        """
        target = _contact(request)
        if target is None:
            raise BadRequest(400, "Missing Contact")  # RFC 6665 4.1.2.1 / 4.2.1 require one
        if not request.from_tag:
            raise BadRequest(400, "Missing From Tag")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag,
            local_uri=uri_from(request, "to"),
            remote_uri=uri_from(request, "from"),
            remote_target=target,
            route_set=tuple(_record_route(request)),  # 12.1.1: Record-Route in order
            remote_seq=request.cseq,
            secure=request.uri.lower().startswith("sips:"),
        )

    @classmethod
    def as_uac(cls, request: RequestSpec, response: Response) -> Dialog:
        """The dialog a UAC creates from the 2xx to its request (RFC 3261 12.1.2).

        A 2xx without a usable Contact keeps the request's target (a lenient choice, see
        docs/decisions.md) rather than dropping the dialog.
        """
        return cls(
            call_id=response.call_id,
            local_tag=request.from_tag or "",
            remote_tag=response.to_tag or "",
            local_uri=addr_spec(request.from_uri),
            remote_uri=addr_spec(request.to_uri),
            remote_target=_contact(response) or request.uri,
            route_set=tuple(reversed(_record_route(response))),  # 12.1.2: reversed
            local_seq=request.cseq,
            secure=request.uri.lower().startswith("sips:"),
        )

    @classmethod
    def from_notify(cls, request: RequestSpec, notify: Request) -> Dialog:
        """The subscriber's dialog created by a NOTIFY that overtook the 200 (RFC 6665 4.1.2.4).

        The NOTIFY is a request we receive, so its Record-Route gives the route set in order
        (RFC 3261 12.1.1); Raises BadRequest(400) without a Contact.
        """
        target = _contact(notify)
        if target is None:
            raise BadRequest(400, "Missing Contact")
        return cls(
            call_id=notify.call_id,
            local_tag=request.from_tag or "",
            remote_tag=notify.from_tag or "",
            local_uri=addr_spec(request.from_uri),
            remote_uri=addr_spec(request.to_uri),
            remote_target=target,
            route_set=tuple(_record_route(notify)),
            local_seq=request.cseq,
            remote_seq=notify.cseq,
            secure=request.uri.lower().startswith("sips:"),
        )

    def matches(self, message: Request) -> bool:
        """Whether an incoming request belongs to this dialog (RFC 3261 12.2.2)."""
        return (
            message.call_id == self.call_id
            and message.to_tag == self.local_tag
            and message.from_tag == self.remote_tag
        )

    def request(
        self,
        method: str,
        *,
        headers: Sequence[Header] = (),
        body: Body | None = None,
        contact: str | None = None,
    ) -> RequestSpec:
        """The next in-dialog request (RFC 3261 12.2.1.1): remote target and route set, local
        URI and tag in From, remote URI and tag in To, Call-ID, and the next local CSeq."""
        self.local_seq += 1  # 12.2.1.1: strictly increasing by one
        return RequestSpec(
            method=method,
            uri=self.remote_target,
            from_uri=self.local_uri,
            to_uri=self.remote_uri,
            from_tag=self.local_tag,
            to_tag=self.remote_tag,
            call_id=self.call_id,
            cseq=self.local_seq,
            route=self.route_set,
            headers=tuple(headers),
            body=body.data if body else b"",
            content_type=body.content_type if body else None,
            contact=contact,
        )

    def receive(self, request: Request, *, target_refresh: bool) -> None:
        """Accept an in-dialog request (RFC 3261 12.2.2): its CSeq must exceed the last one.

        A target refresh request (SUBSCRIBE and NOTIFY, RFC 6665 4.1.2.1 / 4.2.1) replaces the
        remote target with its Contact. Raises BadRequest(500) for an out-of-order CSeq.
        """
        if self.remote_seq is not None and request.cseq <= self.remote_seq:
            raise BadRequest(500, "CSeq Out Of Order")  # 12.2.2: lower CSeq -> 500
        self.remote_seq = request.cseq
        if target_refresh:
            target = _contact(request)
            if target is not None:
                self.remote_target = target


# --------------------------------------------------------------------------------------------
# Thin asyncio helpers for the adapters


class Ticker:
    """Runs ``fire(now)`` whenever ``deadline()`` has passed; :meth:`kick` re-reads the deadline.

    One task per usage adapter. Sleeps at most :data:`MAX_SLEEP` at a time, so huge expiry
    values (2**32-1 s) never become huge event-loop timers.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        deadline: Callable[[], float | None],
        fire: Callable[[float], Awaitable[None]],
    ) -> None:
        self._clock = clock
        self._deadline = deadline
        self._fire = fire
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Cancel the task without waiting (also safe from inside ``fire``)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def kick(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            deadline = self._deadline()
            now = self._clock()
            if deadline is not None and deadline <= now:
                try:
                    await self._fire(now)
                except Exception:  # one failed round must not stop the timers of the usage
                    log.exception("timer handler failed")
                continue
            delay = MAX_SLEEP if deadline is None else min(deadline - now, MAX_SLEEP)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()


async def exchange(
    endpoint: SipEndpoint,
    spec: RequestSpec,
    on_response: Callable[[Response | None, float], RequestSpec | None],
    clock: Callable[[], float],
    transport: Transport | None = None,
) -> Response | None:
    """Send ``spec``, feed the final response (None on timeout or transport failure) to the
    sans-I/O core, and send what it asks next (a 423 retry, a 412 re-publication) until it asks
    nothing. Returns the last final response, or None if the last attempt got none."""
    next_spec: RequestSpec | None = spec
    response: Response | None = None
    while next_spec is not None:
        out = endpoint.new_request(
            next_spec.method,
            next_spec.uri,
            from_uri=next_spec.from_uri,
            to_uri=next_spec.to_uri,
            from_tag=next_spec.from_tag,
            to_tag=next_spec.to_tag,
            call_id=next_spec.call_id,
            cseq=next_spec.cseq,
            route=next_spec.route,
            headers=next_spec.headers,
            body=next_spec.body,
            content_type=next_spec.content_type,
            contact=next_spec.contact,
            transport=transport,
        )
        try:
            response = (await endpoint.send(out)).message
        except (SipTimeout, SipTransportError) as exc:
            log.info("%s %s failed: %s", next_spec.method, next_spec.uri, exc)
            response = None
        next_spec = on_response(response, clock())
    return response


class ExpiringServer(Protocol):
    """A sans-I/O server usage whose state expires (:class:`~.registrar.Registrar`,
    :class:`~.publication.Compositor`)."""

    def handle(self, request: Request, now: float) -> Reply: ...

    def next_expiry(self) -> float | None: ...

    def expire(self, now: float) -> object: ...


class ExpiringService:
    """Serves ``method`` on an endpoint with an :class:`ExpiringServer`, expiring its state on
    time (a :class:`Ticker` re-armed after every request)."""

    def __init__(self, endpoint: SipEndpoint, method: str, server: ExpiringServer, *,
                 accept: Iterable[str] | None = None, clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self._method = method
        self._server = server
        self._accept = accept
        self._ticker = Ticker(clock, server.next_expiry, self._expire)

    def start(self) -> None:
        """Serve the method (``accept``: body types; others get 415 from the endpoint) and
        start the expiry timer (call inside the running loop)."""
        self.endpoint.serve(self._method, self._handle, accept=self._accept)
        self._ticker.start()

    async def close(self) -> None:
        await self._ticker.close()

    def check(self) -> None:
        """Re-read the clock now (after a clock jump, or a fake clock moved by a test)."""
        self._ticker.kick()

    def _handle(self, incoming: IncomingRequest) -> Reply:
        reply = self._server.handle(incoming.message, self.clock())
        self._ticker.kick()
        return reply

    async def _expire(self, now: float) -> None:
        self._server.expire(now)


class RefreshingCore(Protocol):
    """A sans-I/O client usage that refreshes (:class:`~.registrar.Registration`,
    :class:`~.publication.Publisher`)."""

    def next_deadline(self) -> float | None: ...

    def poll(self, now: float) -> RequestSpec | None: ...

    def on_response(self, response: Response | None, now: float) -> RequestSpec | None: ...


CoreT = TypeVar("CoreT", bound=RefreshingCore)


class RefreshingClient(Generic[CoreT]):
    """The asyncio side of a :class:`RefreshingCore`: one request outstanding at a time
    (RFC 3261 10.2, RFC 3903 4), and a :class:`Ticker` that sends the core's refreshes."""

    def __init__(self, endpoint: SipEndpoint, core: CoreT, transport: Transport | None,
                 clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.core = core
        self.transport = transport
        self.clock = clock
        self._lock = asyncio.Lock()
        self._ticker = Ticker(clock, core.next_deadline, self._refresh)

    async def close(self) -> None:
        """Stop refreshing; the state then expires at the server."""
        await self._ticker.close()

    async def _step(self, step: Callable[[float], RequestSpec | None],
                    now: float | None = None) -> None:
        """Under the lock: ask the core (``step(now)``) and exchange what it wants sent."""
        async with self._lock:
            spec = step(self.clock() if now is None else now)
            if spec is not None:
                await exchange(self.endpoint, spec, self.core.on_response, self.clock,
                               self.transport)

    def _keep_refreshing(self) -> None:
        self._ticker.start()
        self._ticker.kick()

    async def _withdraw(self, step: Callable[[float], RequestSpec | None]) -> None:
        """Stop refreshing, then send the core's Expires: 0 request."""
        await self._ticker.close()
        await self._step(step)

    async def _refresh(self, now: float) -> None:
        await self._step(self.core.poll, now)


__all__ = [
    "MAX_EXPIRES",
    "BadRequest",
    "Body",
    "Dialog",
    "ExpiringServer",
    "ExpiringService",
    "RefreshingClient",
    "RefreshingCore",
    "Refuse",
    "RequestSpec",
    "Ticker",
    "exchange",
    "parse_expires",
    "parse_retry_after",
    "uri_from",
]
