"""A request of the common form is read by ``_cparse.request_parts`` in one C call
(``message.parse``'s fast path); whatever it reads is what the general rules read, and
whatever it does not read (``None``) is left to them, refusals included.

Each check parses the same bytes twice: with the fast path, and with it switched off
(``message._request_parts = None``: the general code alone, the C header splitting in both).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_sip_parser_c import mutate as mutate_bytes
from test_sip_parser_c import splitting
from tools import require_c_parser

from mcacm_sip.sip import message
from mcacm_sip.sip.errors import SipParseError
from mcacm_sip.sip.message import (
    DEFAULT_LIMITS,
    Arrival,
    Limits,
    Request,
    build_response,
    parse,
)
from mcacm_sip.sip.request import encode_request, new_request

CORPUS = Path(__file__).parent / "sip" / "corpus"
SEEDS = sorted(CORPUS.glob("*.sip")) + sorted((CORPUS / "rfc4475").glob("*.dat"))
ARRIVAL = Arrival("udp", "198.51.100.9", 40000)
# call 7 of bench/sipp/ingress_uac.xml as SIPp sends it (bench/acms_hotpath.py)
SIPP = (b"MESSAGE sip:acms@partner.example SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-7-1-0;rport\r\n"
        b"From: <sip:acms@primary.example>;tag=7SIPpTag007\r\n"
        b"To: <sip:acms@partner.example>\r\nCall-ID: 7-4242@127.0.0.1\r\nCSeq: 1 MESSAGE\r\n"
        b"Max-Forwards: 70\r\nP-Asserted-Identity: <sip:acms@primary.example>\r\n"
        b"Content-Type: application/vnd.mcacm-sip.acm+xml\r\nContent-Length: 4\r\n\r\n<x/>")


@pytest.fixture(scope="module", autouse=True)
def compiled() -> Iterator[None]:
    """The C splitting and its request reading (skipped when not built, failed in CI)."""
    with splitting(require_c_parser()):
        yield


def seen(msg: Request | message.Response) -> tuple[Any, ...]:
    """Everything a user of a request reads of it, before and after its source is stamped
    (of a response: what the general code read; the fast path reads no response)."""
    if not isinstance(msg, Request):
        return (type(msg), msg.status, msg.reason, msg.cseq, msg.store, msg.body)
    fields = (type(msg), msg.method, msg.uri, msg.cseq, msg.call_id, msg.branch, msg.store,
              msg.body, msg._head, msg.arrival, msg._via_parts, msg.via, msg.sent_by(),
              msg.via_has("rport"), msg.via_has("received"), msg.from_tag, msg.to_tag,
              list(msg.vias), msg.header("content-type"), msg.content_type,
              msg.raw.headers._original, msg.raw.body, repr(msg))
    msg.stamp_source(ARRIVAL)
    answer = build_response(msg, 200, to_tag="x", server="s")
    return (*fields, msg.via, msg.sent_by(), list(msg.vias), answer)


def general(data: bytes, datagram: bool, limits: Limits) -> tuple[Any, ...]:
    """``parse`` by the general rules alone: the message's fields, or the refusal."""
    before = message._request_parts
    message._request_parts = None
    try:
        return ("parsed", seen(parse(data, datagram=datagram, limits=limits)))
    except SipParseError as err:
        return ("refused", err.status, err.reason)
    finally:
        message._request_parts = before


def same(data: bytes, datagram: bool = True, limits: Limits = DEFAULT_LIMITS) -> bool:
    """``parse(data)`` with the fast path is the general one; whether the fast path read it."""
    assert message._request_parts is not None
    read = message._request_parts(data, limits.max_header_bytes, limits.max_headers,
                                  limits.max_body_bytes) is not None
    want = general(data, datagram, limits)
    try:
        got: tuple[Any, ...] = ("parsed", seen(parse(data, datagram=datagram, limits=limits)))
    except SipParseError as err:
        got = ("refused", err.status, err.reason)
    assert got == want, data
    assert not read or want[0] == "parsed", data  # never reads what the rules refuse
    return read


def test_the_requests_our_peers_send_take_the_fast_path() -> None:
    """The bench's MESSAGE (SIPp's ingress_uac.xml) and one we write ourselves."""
    ours = encode_request(new_request(
        "MESSAGE", "sip:acms@192.0.2.7", from_uri="sip:a@example.com", to_uri="sip:b@example.com",
        body=b"<x/>", content_type="application/vnd.mcacm-sip.acm+xml",
        headers=[("X-CID", "1")]), "z9hG4bK0123", "udp", "192.0.2.1", 5070, "mcacm/test")
    for data in (SIPP, ours):
        assert same(data)
        assert same(data, datagram=False)


_PIECES = [b"Via", b"v", b"V", b"f", b"From", b"t", b"To", b"i", b"Call-ID", b"CSeq", b"l",
           b"Content-Length", b"Require", b":", b": ", b" ", b"  ", b"\t", b"\r\n", b"\n",
           b"\r", b"\r\n ", b"\n\t", b",", b", ", b'"', b"<", b">", b";", b"=", b"\x00", b"\x0b",
           b"\x1c", b"\x7f", b"\x85", b"\xc3\xa9", b"\xff", b"0", b"1", b"9", b"99999", b"MESSAGE",
           b"INVITE", b"message", b"SIP/2.0", b"SIP/2.1", b"sip:", b"<sip:", b"tel:", b"1sip:",
           b";branch=", b";branch", b"z9hG4bK", b";rport", b";received=1.2.3.4", b";RPORT",
           b"SIP/2.0/UDP 192.0.2.1:5070", b"SIP/2.0/TCP [::1]:5070", b":0", b":65536",
           b":123456", b"192.0.2.2", b"\r\n\r\n", b"\n\n", b"\\\x00"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    return mutate_bytes(rng, data, _PIECES, most=4, span=40)


_TIGHT = [Limits(max_headers=5), Limits(max_header_bytes=200), Limits(max_body_bytes=2),
          Limits(max_headers=9)]
_TEXT = st.text(st.characters(codec="utf-8"), max_size=10)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["MESSAGE", "OPTIONS", "REGISTER", "SUBSCRIBE", "FOO", "m!%'*+-._`~"]),
       st.sampled_from(["sip:acms@192.0.2.7", "sips:a@h;transport=tcp", "tel:+123",
                        "x-Y.1+z:opaque", "sip:a@[::1]:5060", "urn:service:sos"]),
       st.lists(st.tuples(st.sampled_from(["X-A", "Require", "Contact", "Via", "Route",
                                           "Content-Type", "Call-ID", "CSeq"]), _TEXT),
                max_size=3),
       st.binary(max_size=20), st.integers(0, 2**32 - 1),
       st.sampled_from(["udp", "tcp", "tls"]),
       st.sampled_from(["192.0.2.1", "acms.example.com", "::1", "h_1", "a-b.c"]),
       st.integers(1, 65535), st.sampled_from(["z9hG4bK0123", "x", "z9hG4bK-1-1-0"]))
@example("MESSAGE", "sip:acms@192.0.2.7", [], b"<x/>", 0, "udp", "192.0.2.1", 5060,
         "z9hG4bK0123")
def test_parse_reads_a_request_as_the_general_rules_do(
        method: str, uri: str, headers: list[tuple[str, str]], body: bytes, seed: int,
        transport: Any, host: str, port: int, branch: str) -> None:
    """For any request we could write (any method, URI, extra headers, body, sent-by) and up
    to 30 random mutations of it (folds, bare CR/LF, NUL, compact names, repeated headers,
    bad start lines, CSeqs, Content-Lengths and Vias, non-ASCII, cut or grown bodies), as a
    datagram and on a stream, under four sets of caps: the same Request or the same refusal."""
    try:
        clean = encode_request(new_request(
            method, uri, from_uri="sip:a@example.com", to_uri="<sip:b@example.com>",
            body=body, headers=headers), branch, transport, host, port, "ua")
    except ValueError:  # a line break in a header value: refused on send
        return
    rng = random.Random(seed)
    for data in [clean, *(mutate(rng, clean) for _ in range(30))]:
        for datagram in (True, False):
            same(data, datagram)
        for limits in _TIGHT:
            same(data, True, limits)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name)
def test_the_corpus_and_rfc4475_torture_messages_are_read_alike(seed: Path) -> None:
    """Every corpus and RFC 4475 message, and 80 mutations of each: the same Request or the
    same refusal, as a datagram and on a stream."""
    rng = random.Random(seed.name)
    original = seed.read_bytes()
    for data in [original, *(mutate(rng, original) for _ in range(80))]:
        for datagram in (True, False):
            same(data, datagram)


@pytest.mark.parametrize(("old", "new", "read"), [
    (b"", b"", True),
    (b"CSeq: 7 ", b"CSeq: 999999999 ", True),
    (b"CSeq: 7 ", b"CSeq: 0007 ", True),
    (b"CSeq: 7 ", b"CSeq: 2147483648 ", False),  # RFC 3261 8.1.1.5: < 2**31 (general: 400)
    (b"CSeq: 7 MESSAGE", b"CSeq: 7  MESSAGE", False),  # the general grammar reads it
    (b"CSeq: 7 MESSAGE", b"CSeq: 7 OPTIONS", False),  # RFC 3261 8.1.1.5: 400
    (b"Content-Length: 4\r\n", b"Content-Length: 3\r\n", True),  # the body cut
    (b"Content-Length: 4\r\n", b"Content-Length: 5\r\n", False),  # RFC 3261 18.3: 400
    (b"Content-Length: 4\r\n", b"", False),  # datagram and stream differ: the general code
    (b":5070;", b":65535;", True),
    (b":5070;", b":65536;", False),
    (b":5070;", b":0;", False),
    (b":5070;", b":050;", True),
    (b":5070;", b":005070;", False),  # six digits: not the common form (the general Via)
    (b":5070;", b":;", False),
    (b";branch=z9hG4bK0123", b";branch", True),  # no branch value: "" (RFC 2543 key)
    (b"MESSAGE sip:", b"MESSAGE  sip:", False),  # an empty Request-URI: 400
    (b"MESSAGE sip:", b"MESSAGE <sip:", False),  # RFC 4475 3.1.2.7: 400
    (b"MESSAGE sip:", b"MESSAGE s<ip:", False),  # not a scheme: 400
    (b"MESSAGE sip:", b"MESSAGE 1sip:", False),
    (b"MESSAGE sip:", b"MESSAGE x-Y.1+z:", True),
    (b"MESSAGE sip:", b"MES SAGE sip:", False),  # a space in the URI: 400
    (b"MESSAGE sip:", b"MESS@GE sip:", False),  # not a token: 400
    (b" SIP/2.0\r\n", b" SIP/2.1\r\n", False),  # 505
    (b"\r\nFrom: ", b"\r\nFrom: \"A\" ", False),  # quotes: the general check
    (b"\r\nTo: ", b"\r\nMax-Forwards: 1\r\nTo: ", False),  # a header on two lines
])
def test_each_rule_is_read_as_the_general_code_reads_it(old: bytes, new: bytes, read: bool
                                                        ) -> None:
    """One departure from the common form at a time: read alike, and read by the fast path
    only where it should."""
    data = encode_request(new_request(
        "MESSAGE", "sip:acms@192.0.2.7", from_uri="sip:a@example.com", to_uri="sip:b@h",
        body=b"<x/>", cseq=7, headers=[("Max-Forwards", "2")] if b"Max" in new else ()),
        "z9hG4bK0123", "udp", "192.0.2.1", 5070, "ua")
    if old:
        assert old in data
        data = data.replace(old, new, 1)
    assert same(data) is read
    same(data, datagram=False)


def test_the_c_reading_refuses_what_it_is_not_given() -> None:
    """Wrong arguments raise TypeError (never a crash); anything short is simply not read."""
    parts: Any = message._request_parts
    for args in [("x", 1, 1, 1), (b"x", 1, 1), (b"x", "1", 1, 1)]:
        with pytest.raises(TypeError):
            parts(*args)
    for data in (b"", b"\r\n\r\n", b"M", b"M s:x SIP/2.0\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"):
        assert parts(data, 65536, 256, 1 << 20) is None
