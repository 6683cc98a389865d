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
    return OutgoingRequest(
        method=method, uri=uri, from_uri=from_uri, to_uri=to_uri,
        from_tag=from_tag, to_tag=to_tag,
        call_id=call_id, cseq=cseq, route=routes,
        headers=tuple(headers), body=body, content_type=content_type, contact=contact,
        transport=transport, strict=strict,
    )


def spec_request(spec: RequestSpec, transport: Transport | None = None) -> OutgoingRequest:
    """The request a usage core asks for (its :class:`~.dialog.RequestSpec`), to send over
    ``transport`` unless its URI says otherwise."""
    return new_request(
        spec.method, spec.uri, from_uri=spec.from_uri, to_uri=spec.to_uri,
        from_tag=spec.from_tag, to_tag=spec.to_tag, call_id=spec.call_id, cseq=spec.cseq,
        route=spec.route, headers=spec.headers, body=spec.body,
        content_type=spec.content_type, contact=spec.contact, transport=transport,
    )


def encode_request(req: OutgoingRequest, branch: str, transport: Transport, host: str, port: int,
                   user_agent: str | None = None) -> bytes:
    """``req`` on the wire, sent over ``transport`` from ``host:port`` (the top Via) in the
    client transaction ``branch``. Raises ValueError for a line break in a field."""
    # RFC 3261 8.1.1 mandatory headers; RFC 3581 3: ask for rport.
    method, from_uri, to_uri = req.method, req.from_uri, req.to_uri
    lines = [
        f"{method} {req.uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {bracket(host)}:{port};branch={branch};rport",
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
    return text.encode() + req.body


__all__ = [
    "OutgoingRequest", "bracket", "encode_request", "name_addr", "new_request", "spec_request",
]
