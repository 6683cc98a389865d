"""Shared pieces of the SIP usage tests (registrar, subscription, publication): messages built
from bytes through the real parser, a request "sent" through a list of record-routing hops,
and endpoints on loopback."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence

from mcacm_sip.sip.aio.endpoint import Listen, SipEndpoint
from mcacm_sip.sip.dialog import Reply, RequestSpec
from mcacm_sip.sip.message import Request, Response, build_response, parse
from mcacm_sip.sip.transaction import Timers, Transport


class Clock:
    """A fake clock the tests move by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def request(
    method: str,
    uri: str,
    *,
    from_: str = "<sip:alice@example.com>",
    to: str | None = None,
    from_tag: str | None = "ft1",
    to_tag: str | None = None,
    call_id: str = "call-1@test",
    cseq: int = 1,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """A request as received, parsed by the real parser."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{secrets.token_hex(6)}",
        f"From: {from_}" + (f";tag={from_tag}" if from_tag else ""),
        f"To: {to or '<' + uri + '>'}" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        *(f"{k}: {v}" for k, v in headers),
    ]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    msg = parse(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(msg, Request)
    return msg


def name_addr(value: str) -> str:
    return value if "<" in value else f"<{value}>"


def deliver(spec: RequestSpec, hops: Sequence[str] = ()) -> Request:
    """``spec`` as the far end receives it, after passing record-routing ``hops`` (each adds its
    Record-Route value on top, RFC 3261 16.6 step 4). Route headers are dropped: in-memory
    tests do not model proxies consuming them."""
    headers = [("Record-Route", hop) for hop in reversed(hops)]
    if spec.contact:
        headers.append(("Contact", name_addr(spec.contact)))
    headers += list(spec.headers)
    return request(
        spec.method,
        spec.uri,
        from_=name_addr(spec.from_uri),
        to=name_addr(spec.to_uri),
        from_tag=spec.from_tag or "epa-tag",
        to_tag=spec.to_tag,
        call_id=spec.call_id or "publish-call@test",
        cseq=spec.cseq,
        headers=headers,
        body=spec.body,
        content_type=spec.content_type,
    )


def answer(req: Request, reply: Reply) -> Response:
    """The response ``reply`` turns into for ``req``, parsed back."""
    data = build_response(
        req, reply.status, reply.reason, to_tag=reply.to_tag, headers=reply.headers,
        body=reply.body, content_type=reply.content_type,
    )
    msg = parse(data)
    assert isinstance(msg, Response)
    return msg


FAST = Timers(t1=0.05, t2=0.4, t4=0.5)


@contextlib.asynccontextmanager
async def endpoint(transport: Transport = "udp") -> AsyncIterator[SipEndpoint]:
    """An endpoint on 127.0.0.1 with an ephemeral port of ``transport``."""
    ep = SipEndpoint([Listen(transport, "127.0.0.1", 0)], timers=FAST)
    await ep.start()
    try:
        yield ep
    finally:
        await ep.close()


def uri(ep: SipEndpoint, transport: Transport, user: str) -> str:
    """A URI reaching ``ep`` over ``transport``."""
    host, port = ep.local_address(transport)
    return f"sip:{user}@{host}:{port}" + (";transport=tcp" if transport == "tcp" else "")
