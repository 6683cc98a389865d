"""Dialog state for the non-INVITE usages (RFC 3261 12), and what the usages share.

A :class:`Dialog` is built from the dialog-creating SUBSCRIBE and its 200 (or an early NOTIFY),
keeps the route set, the remote target and both CSeq counters, and turns a method into a
:class:`RequestSpec`: the arguments of :meth:`SipEndpoint.new_request`, which applies the route
set (loose or strict, RFC 3261 12.2.1.1) when it serialises. Nothing here does I/O.

The rest of the module is shared by the registrar, subscription and publication usages:
their reading of Expires and Retry-After (:mod:`.headers` parses them), :class:`Reply` (a
server usage's answer) and :class:`Refuse` (an application's "no"). Their asyncio wrappers live
in :mod:`.aio.usages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .headers import Expires, InvalidHeader, RetryAfter
from .message import Request, Response
from .uri import addr_spec

if TYPE_CHECKING:

    pass

# RFC 3261 20.19 / 25.1: delta-seconds; larger values are read as 2**32-1. TS 24.379 9A uses
# exactly this value for "until withdrawn" (continuous) PUBLISH and SUBSCRIBE.
MAX_EXPIRES = 2**32 - 1
# RFC 3261 17.1.2.2: 64*T1 with the default T1, the longest a non-INVITE exchange can take.
TRANSACTION_WINDOW = 32.0

Header = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler returns. ``to_tag`` None: a fresh tag if the request's To has none."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = None
    to_tag: str | None = None


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


__all__ = [
    "MAX_EXPIRES",
    "BadRequest",
    "Body",
    "Dialog",
    "Refuse",
    "Reply",
    "RequestSpec",
    "parse_expires",
    "parse_retry_after",
    "uri_from",
]
