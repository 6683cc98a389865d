"""Outgoing requests (RFC 3261 8.1.1): built from a method, a target and dialog fields, then
written with the top Via of the hop they leave by. Sans-I/O: the endpoint picks the hop and the
branch, the in-memory test pair does the same without sockets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mcacm_sip.ids import token_hex

from .dialog import RequestSpec
from .transaction import Transport


@dataclass(slots=True)
class OutgoingRequest:
    """A request to send with :meth:`SipEndpoint.send`; build it with ``new_request``."""

    method: str
    uri: str
    from_uri: str
    to_uri: str
    from_tag: str
    to_tag: str | None
    call_id: str
    cseq: int
    route: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = None
    contact: str | None = None
    transport: Transport | None = None
    strict: bool = False  # Request-URI is a strict router (RFC 3261 12.2.1.1): send to it


def name_addr(uri: str) -> str:
    return uri if "<" in uri else f"<{uri}>"


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def new_request(
    method: str,
    uri: str,
    *,
    from_uri: str,
    to_uri: str,
    from_tag: str | None = None,
    to_tag: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    route: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
    contact: str | None = None,
    transport: Transport | None = None,
) -> OutgoingRequest:
    """Build a request; in a dialog pass the tags, Call-ID, CSeq, route set and target
    (:class:`~.dialog.RequestSpec` holds exactly these)."""
    routes = tuple(route)
    strict = bool(routes) and ";lr" not in routes[0].lower()
    if strict:
        # RFC 3261 12.2.1.1: strict router: it becomes the Request-URI, the remote target
        # goes last in the Route set.
        first = routes[0].strip().lstrip("<").split(">", 1)[0]
        routes = (*routes[1:], name_addr(uri))
        uri = first
    if not from_tag or not call_id:
        # RFC 3261 19.3 / 8.1.1.4: a random tag (6 bytes) and Call-ID (10 bytes), drawn at once
        ids = token_hex(16)
        from_tag = from_tag or ids[:12]
        call_id = call_id or f"{ids[12:]}@mcacm"
    # (positional: a dataclass's keyword arguments cost twice its construction)
    return OutgoingRequest(method, uri, from_uri, to_uri, from_tag, to_tag, call_id, cseq, routes,
                           tuple(headers), body, content_type, contact, transport, strict)


def spec_request(spec: RequestSpec, transport: Transport | None = None) -> OutgoingRequest:
    """The request a usage core asks for (its :class:`~.dialog.RequestSpec`), to send over
    ``transport`` unless its URI says otherwise."""
    return new_request(
        spec.method, spec.uri, from_uri=spec.from_uri, to_uri=spec.to_uri,
        from_tag=spec.from_tag, to_tag=spec.to_tag, call_id=spec.call_id, cseq=spec.cseq,
        route=spec.route, headers=spec.headers, body=spec.body,
        content_type=spec.content_type, contact=spec.contact, transport=transport,
    )


def sent_text(transport: Transport, host: str, port: int) -> str:
    """The top Via :func:`encode_request` writes, before its first ";" (sent-protocol and
    sent-by, RFC 3261 20.42): what a response to the request must carry back (18.1.2)."""
    return f"SIP/2.0/{transport.upper()} {bracket(host)}:{port}"


def encode_request(req: OutgoingRequest, branch: str, transport: Transport, host: str, port: int,
                   user_agent: str | None = None) -> bytes:
    """``req`` on the wire, sent over ``transport`` from ``host:port`` (the top Via) in the
    client transaction ``branch``. Raises ValueError for a line break in a field, or a field
    UTF-8 cannot write (a lone surrogate)."""
    # RFC 3261 8.1.1 mandatory headers; RFC 3581 3: ask for rport.
    method, from_uri, to_uri = req.method, req.from_uri, req.to_uri
    lines = [
        f"{method} {req.uri} SIP/2.0",
        f"Via: {sent_text(transport, host, port)};branch={branch};rport",
        "Max-Forwards: 70",
        # name_addr, inline: three per request sent
        f"From: {from_uri if '<' in from_uri else f'<{from_uri}>'};tag={req.from_tag}",
        f"To: {to_uri if '<' in to_uri else f'<{to_uri}>'}"
        + (f";tag={req.to_tag}" if req.to_tag else ""),
        f"Call-ID: {req.call_id}",
        f"CSeq: {req.cseq} {method}",
    ]
    for route in req.route:
        lines.append(f"Route: {route}")
    if req.contact:
        lines.append(f"Contact: {name_addr(req.contact)}")
    for name, value in req.headers:
        lines.append(f"{name}: {value}")
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}")
    if req.content_type:
        lines.append(f"Content-Type: {req.content_type}")
    lines.append(f"Content-Length: {len(req.body)}\r\n\r\n")
    text = "\r\n".join(lines)
    breaks = len(lines) + 1  # the separators and the empty line: any other is in a field
    if text.count("\r") != breaks or text.count("\n") != breaks:
        for line in lines[:-1]:
            if "\r" in line or "\n" in line:
                raise ValueError(f"line break in a request field: {line!r}")  # injection
    try:
        return text.encode() + req.body
    except UnicodeEncodeError as exc:  # a lone surrogate (surrogateescape'd bytes)
        raise ValueError(f"a request field is not Unicode text: "
                         f"{exc.object[max(exc.start - 20, 0):exc.end + 20]!r}") from None


# Placeholders written into a template's slots and cut out again: a NUL and a letter, which no
# field of a request we send holds in practice (a field that does gets no template).
_BRANCH, _TAG, _CALL_ID, _CSEQ, _HEADER = "\x00B", "\x00T", "\x00C", "\x00S", "\x00H"
_TemplateKey = tuple[str, str, str, str, str | None, tuple[str, ...], str | None, str | None,
                     str, str, int, str | None]


class RequestTemplate:
    """:func:`encode_request` of every request that differs from another only in its branch,
    From tag, Call-ID, CSeq number, extra headers and body: the text written once (by
    :func:`encode_request` itself, with placeholders in those slots), the slots filled per
    request.  Same bytes (hypothesis: tests/test_sip_request_template.py); a line break in a
    slot is refused as :func:`encode_request` refuses it (the slots are checked, and on any
    surprise :func:`encode_request` writes, or refuses, the request)."""

    __slots__ = ("_parts", "_user_agent", "_via", "sent")
    _parts: tuple[str, str, str, str, str, str]
    _via: tuple[Transport, str, int]
    _user_agent: str | None
    sent: str | None
    """The text before the first ";" of the top Via it writes (:func:`sent_text`), as read
    back from the bytes (``transaction._sent_text``); None when reading it back could give
    another text (a ";", a line break or a non-ASCII character in the host)."""

    def __init__(self, parts: tuple[str, str, str, str, str, str], via: tuple[Transport, str, int],
                 user_agent: str | None) -> None:
        self._parts = parts
        self._via = via  # (transport, host, port): for the fallback to encode_request
        self._user_agent = user_agent
        sent = sent_text(*via)
        self.sent = sent if sent.isascii() and not any(c in sent for c in ";\r\n") else None

    @classmethod
    def of(cls, req: OutgoingRequest, transport: Transport, host: str, port: int,
           user_agent: str | None = None) -> RequestTemplate | None:
        """The template of ``req``'s fixed fields, or None when they cannot make one (a line
        break in one: :func:`encode_request` refuses them per request; a placeholder in one)."""
        fixed = (req.method, req.uri, req.from_uri, req.to_uri, req.to_tag or "", *req.route,
                 req.contact or "", req.content_type or "", host, user_agent or "")
        if any("\x00" in text for text in fixed):
            return None
        shape = OutgoingRequest(
            req.method, req.uri, req.from_uri, req.to_uri, _TAG, req.to_tag, _CALL_ID,
            _CSEQ, req.route, ((_HEADER, _HEADER),), b"", req.content_type,  # type: ignore[arg-type]
            req.contact, req.transport, req.strict)
        try:
            text = encode_request(shape, _BRANCH, transport, host, port, user_agent).decode()
        except ValueError:
            return None
        head, tail = text[:-5], text[-5:]  # the Content-Length's "0" and the empty line
        assert tail == "0\r\n\r\n"
        a, rest = head.split(_BRANCH, 1)
        b, rest = rest.split(_TAG, 1)
        c, rest = rest.split(_CALL_ID, 1)
        d, rest = rest.split(_CSEQ, 1)
        e, rest = rest.split(f"{_HEADER}: {_HEADER}\r\n", 1)
        parts = (a, b, c, d, e, rest)
        return cls(parts, (transport, host, port), user_agent)

    def encode(self, req: OutgoingRequest, branch: str) -> bytes:
        """``encode_request(req, branch, ...)`` for a request of this template's fixed fields.
        Raises ValueError as it does."""
        a, b, c, d, e, f = self._parts
        tag, call_id, cseq, headers, body = (req.from_tag, req.call_id, req.cseq, req.headers,
                                             req.body)
        # the header lines as encode_request writes them (f"{name}: {value}"), in C calls
        lines = "\r\n".join(map(": ".join, headers)) + "\r\n" if headers else ""
        if ("\r" in branch or "\n" in branch or "\r" in tag or "\n" in tag or "\r" in call_id
                or "\n" in call_id or type(cseq) is not int
                or lines.count("\n") != len(headers) or lines.count("\r") != len(headers)):
            # a line break in a slot (or a CSeq not an int): encode_request refuses it
            transport, host, port = self._via
            return encode_request(req, branch, transport, host, port, self._user_agent)
        try:
            return (f"{a}{branch}{b}{tag}{c}{call_id}{d}{cseq}{e}{lines}{f}{len(body)}\r\n\r\n"
                    .encode() + body)
        except UnicodeEncodeError:  # a slot UTF-8 cannot write: encode_request's refusal
            transport, host, port = self._via
            return encode_request(req, branch, transport, host, port, self._user_agent)


def template_key(req: OutgoingRequest, transport: Transport, host: str, port: int,
                 user_agent: str | None) -> _TemplateKey:
    """What a :class:`RequestTemplate` is made of: every field but the slots."""
    return (req.method, req.uri, req.from_uri, req.to_uri, req.to_tag, req.route, req.contact,
            req.content_type, transport, host, port, user_agent)


__all__ = [
    "OutgoingRequest", "RequestTemplate", "bracket", "encode_request", "name_addr",
    "new_request", "sent_text", "spec_request", "template_key",
]
