"""Outgoing requests written from a template (sip.request.RequestTemplate): the same bytes as
encode_request for any fields, the same refusal of a line break in any of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mcacm_sip.sip import Peer
from mcacm_sip.sip.aio import endpoint as endpoint_module
from mcacm_sip.sip.aio.endpoint import Listen, SipEndpoint
from mcacm_sip.sip.request import (
    OutgoingRequest,
    RequestTemplate,
    encode_request,
    new_request,
    sent_text,
    template_key,
)
from mcacm_sip.sip.transaction import _sent_text

# text as fields hold it, with what a template must not get wrong: line breaks, NUL (its
# placeholders' first character), ": ", non-ASCII, the empty text
_TEXT = st.one_of(
    st.sampled_from(["", "a", "sip:x@example.com", "<sip:y@example.com>;lr", "é", "\x00B",
                     "\x00H: \x00H", "a\r\nInjected: 1", "x\r", "\ny", ": ", "0\r\n\r\n"]),
    st.text(st.sampled_from("ab:;<>@ \t\r\n\x00é=\"z9hG4bK"), max_size=12),
)
_SLOT = st.one_of(st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1,
                          max_size=20), _TEXT)
_HEADERS = st.lists(st.tuples(st.sampled_from(["X-CID", "P-Asserted-Identity", "X\r\nY"]),
                              _TEXT), max_size=4).map(tuple)


# fields a template is made of: any text, or (mostly: a template is then made) text without a
# line break or NUL
_CLEAN = st.text(st.characters(blacklist_characters="\r\n\x00"), max_size=20)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[OutgoingRequest, tuple[str, str, int, str | None]]:
    """A request with any fixed fields, and the hop and User-Agent it is written for."""
    fixed = _TEXT if draw(st.integers(0, 4)) == 0 else st.one_of(_CLEAN, _TEXT.filter(
        lambda text: not any(c in text for c in "\r\n\x00")))
    req = OutgoingRequest(
        draw(st.sampled_from(["MESSAGE", "OPTIONS", "NOTIFY"])), draw(fixed), draw(fixed),
        draw(fixed), draw(_SLOT), draw(st.none() | fixed), draw(_SLOT),
        draw(st.integers(0, 2**31 - 1)), tuple(draw(st.lists(fixed, max_size=2))),
        draw(_HEADERS), draw(st.binary(max_size=40)), draw(st.none() | fixed),
        draw(st.none() | fixed), None, draw(st.booleans()))
    hop = (draw(st.sampled_from(["udp", "tcp", "tls"])), draw(st.sampled_from(
        ["127.0.0.1", "[::1]", "host.example", "\x00B"])), draw(st.integers(1, 65535)),
        draw(st.none() | fixed))
    return req, hop


@st.composite
def _slots(draw: st.DrawFn, req: OutgoingRequest) -> tuple[OutgoingRequest, str]:
    """``req`` with other slot values (From tag, Call-ID, CSeq, headers, body) and a branch."""
    other = replace(req, from_tag=draw(_SLOT), call_id=draw(_SLOT),
                    cseq=draw(st.integers(0, 2**31 - 1)), headers=draw(_HEADERS),
                    body=draw(st.binary(max_size=40)))
    return other, draw(st.sampled_from(["z9hG4bK1a2b", "z9hG4bK"]) | _SLOT)


def _outcome(write: Callable[[], bytes]) -> bytes | str:
    """The bytes written, or which refusal: a line break, or text UTF-8 cannot write."""
    try:
        return write()
    except ValueError as exc:
        assert not isinstance(exc, UnicodeError), exc  # said as ours, not the codec's
        for refusal in ("line break", "not Unicode text"):
            if refusal in str(exc):
                return refusal
        raise


def _check(template: RequestTemplate | None, req: OutgoingRequest, branch: str,
           hop: tuple[str, str, int, str | None]) -> bool:
    """Whether ``template`` writes (or refuses) ``req`` as encode_request does."""
    transport, host, port, user_agent = hop
    want = _outcome(lambda: encode_request(req, branch, transport,  # type: ignore[arg-type]
                                           host, port, user_agent))
    if template is None:  # fields no template can hold: encode_request writes each request
        return isinstance(want, str) or "\x00" in "".join(
            [req.method, req.uri, req.from_uri, req.to_uri, req.to_tag or "", *req.route,
             req.contact or "", req.content_type or "", host, user_agent or ""])
    return _outcome(lambda: template.encode(req, branch)) == want


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_a_template_writes_what_encode_request_writes(data: st.DataObject) -> None:
    """For any fields: the template made from one request writes every request with the same
    fixed fields byte for byte as encode_request, and refuses what it refuses (a line break in
    any field, fixed or slot); the request it was made from too."""
    first, hop = data.draw(_requests())
    transport, host, port, user_agent = hop
    template = RequestTemplate.of(first, transport, host, port, user_agent)  # type: ignore[arg-type]
    event("template made" if template is not None else "no template")
    assert _check(template, first, "z9hG4bKfirst", hop)
    for _ in range(3):
        req, branch = data.draw(_slots(first))
        assert _check(template, req, branch, hop)


def test_a_field_utf8_cannot_write_is_refused_in_words_by_both() -> None:
    """A lone surrogate (what Python makes of undecodable bytes, e.g. in a command line
    argument) in a fixed field or a slot: a ValueError that says so, from encode_request and
    from a template alike (hypothesis found the codec's UnicodeEncodeError escaping)."""
    req = new_request("MESSAGE", "sip:acms@partner.example", from_uri="sip:a@primary.example",
                      to_uri="sip:acms@partner.example", from_tag="t", call_id="c")
    hop = ("udp", "127.0.0.1", 5060)
    template = RequestTemplate.of(req, *hop)  # type: ignore[arg-type]
    assert template is not None
    for bad in (replace(req, to_uri="sip:\ud800@partner.example"), replace(req, call_id="\udcff"),
                replace(req, headers=(("X-CID", "\ud800"),))):
        with pytest.raises(ValueError, match="not Unicode text") as err:
            encode_request(bad, "z9hG4bK1", *hop)  # type: ignore[arg-type]
        assert not isinstance(err.value, UnicodeError)
        if bad.to_uri == req.to_uri:  # the template's fixed fields: its slots are the rest
            with pytest.raises(ValueError, match="not Unicode text") as err:
                template.encode(bad, "z9hG4bK1")
            assert not isinstance(err.value, UnicodeError)
    assert RequestTemplate.of(replace(req, to_uri="sip:\ud800@x"), *hop) is None  # type: ignore[arg-type]


class _WrongSlots(RequestTemplate):
    """A template that swaps two of its slots: the property above must tell."""

    def encode(self, req: OutgoingRequest, branch: str) -> bytes:
        return super().encode(replace(req, from_tag=req.call_id, call_id=req.from_tag), branch)


class _NoBreakCheck(RequestTemplate):
    """A template that checks no slot for a line break."""

    def encode(self, req: OutgoingRequest, branch: str) -> bytes:
        a, b, c, d, e, f = self._parts
        lines = "".join(f"{n}: {v}\r\n" for n, v in req.headers)
        return (f"{a}{branch}{b}{req.from_tag}{c}{req.call_id}{d}{req.cseq}{e}{lines}{f}"
                f"{len(req.body)}\r\n\r\n").encode() + req.body


@pytest.mark.parametrize("mutant", [_WrongSlots, _NoBreakCheck])
def test_the_property_fails_for_a_wrong_template(mutant: type[RequestTemplate]) -> None:
    """The property's check finds a template that fills a slot wrong or lets a line break
    through (so the property above can fail)."""
    req = new_request("MESSAGE", "sip:b@example.com", from_uri="sip:a@example.com",
                      to_uri="sip:b@example.com", from_tag="tag1", call_id="call1",
                      headers=[("X-CID", "p\r\nInjected: 1")], body=b"<x/>")
    hop = ("udp", "127.0.0.1", 5060, "ua")
    made = RequestTemplate.of(req, "udp", "127.0.0.1", 5060, "ua")
    assert made is not None and _check(made, req, "z9hG4bK1", hop)
    bad = mutant(made._parts, made._via, made._user_agent)
    clean = replace(req, headers=(("X-CID", "p"),))
    assert not (_check(bad, req, "z9hG4bK1", hop) and _check(bad, clean, "z9hG4bK1", hop))


@pytest.mark.parametrize("field", ["from_tag", "call_id"])
def test_a_line_break_in_a_slot_is_refused(field: str) -> None:
    """Strict on send (header injection): a CR or LF in a slot is refused by the template as
    by encode_request, and the fixed fields' check holds for a template's request too."""
    req = new_request("MESSAGE", "sip:b@example.com", from_uri="sip:a@example.com",
                      to_uri="sip:b@example.com", from_tag="t", call_id="c")
    template = RequestTemplate.of(req, "udp", "127.0.0.1", 5060, None)
    assert template is not None
    for bad in ("x\r\nInjected: 1", "x\r", "\nx"):
        wrong = replace(req, from_tag=bad) if field == "from_tag" else replace(req, call_id=bad)
        with pytest.raises(ValueError, match="line break"):
            template.encode(wrong, "z9hG4bK1")
    with pytest.raises(ValueError, match="line break"):
        template.encode(req, "z9hG4bK1\r\nInjected: 1")
    broken = replace(req, to_uri="sip:b@x\r\nInjected: 1")
    assert RequestTemplate.of(broken, "udp", "127.0.0.1", 5060, None) is None


def test_the_endpoint_writes_its_requests_from_bounded_templates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint's requests are encode_request's bytes, one template per fixed fields (a
    changed User-Agent is a new one), at most MAX_TEMPLATES kept."""
    monkeypatch.setattr(endpoint_module, "MAX_TEMPLATES", 4)
    asyncio.run(_write_from_templates())


async def _write_from_templates() -> None:
    ep = SipEndpoint([Listen("udp", "127.0.0.1", 0)])
    await ep.start()
    try:
        dest = Peer("udp", "127.0.0.1", 5999)
        host, port = ep.local_address("udp")
        for n in range(10):
            req = new_request("MESSAGE", f"sip:b{n % 6}@example.com", from_uri="sip:a@x",
                              to_uri="sip:b@x", headers=[("X-CID", str(n))], body=b"x" * n)
            if n == 7:
                ep.user_agent = "other/1"
            branch = f"z9hG4bK{n}"
            assert ep._serialise(req, branch, dest)[0] == encode_request(
                req, branch, "udp", host, port, ep.user_agent)
            key = template_key(req, "udp", host, port, ep.user_agent)
            assert key in ep._templates and len(ep._templates) <= 4
    finally:
        await ep.close()


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from(["127.0.0.1", "[::1]", "::1", "host.example", "a;b", "é.example",
                                   "h;branch=x", "\x00B"]))
def test_the_sent_by_a_template_hands_over_is_the_one_its_bytes_carry(
        data: st.DataObject, host: str) -> None:
    """What a template says its top Via carries before the first ";" (handed to the
    transaction, which matches responses by it: RFC 3261 18.1.2) is what reading its bytes
    gives, for every request it writes; a host whose reading could differ (a ";", non-ASCII)
    hands nothing over."""
    first, hop = data.draw(_requests())
    transport, _, port, user_agent = hop
    template = RequestTemplate.of(first, transport, host, port, user_agent)  # type: ignore[arg-type]
    if template is None:
        return
    assert (template.sent is None) == (";" in host or not host.isascii())
    for _ in range(3):
        req, branch = data.draw(_slots(first))
        try:
            written = template.encode(req, branch)
        except ValueError:
            continue
        if template.sent is not None:
            assert template.sent == _sent_text(written) == sent_text(
                transport, host, port)  # type: ignore[arg-type]


def test_the_endpoint_hands_its_via_to_the_transaction() -> None:
    """A request sent by the endpoint starts its client transaction with the sent-by its
    bytes carry (no reading of the bytes when its 200 comes)."""
    asyncio.run(_hand_over())


async def _hand_over() -> None:
    ep = SipEndpoint([Listen("udp", "127.0.0.1", 0)], locate=lambda raw: Peer(
        "udp", "127.0.0.1", 5999))
    await ep.start()
    try:
        req = new_request("MESSAGE", "sip:b@example.com", from_uri="sip:a@x", to_uri="sip:b@x")
        ep.send_soon(req, None, lambda fut: None)
        (txn,) = ep.txn._client.values()
        assert txn.sent is not None and txn.sent == _sent_text(txn.data)
        assert txn.sent == sent_text("udp", *ep.local_address("udp"))
    finally:
        await ep.close()
