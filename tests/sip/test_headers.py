"""mcacm_sip.sip.headers: each header parses the RFC's own examples, round-trips, and refuses
hostile values with the precise error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.sip.headers import (
    MAX_DELTA_SECONDS,
    BadNumber,
    BadSyntax,
    Contact,
    ContentType,
    CSeq,
    Event,
    Expires,
    InvalidHeader,
    MinExpires,
    MissingPart,
    NumberTooLarge,
    Path,
    RecordRoute,
    RetryAfter,
    Route,
    SubscriptionState,
    Via,
    Warning,
)
from mcacm_sip.sip.message import Arrival, Request, parse

# every test here over both header splittings (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("sip_parser")

# ---------------------------------------------------------------------------- RFC examples


def test_rfc3261_via_examples() -> None:
    # RFC 3261 20.42
    v = Via.parse("SIP/2.0/UDP erlang.bell-telephone.com:5060;branch=z9hG4bK87asdks7")
    assert (v.transport, v.host, v.port, v.branch) == (
        "UDP", "erlang.bell-telephone.com", 5060, "z9hG4bK87asdks7")
    v = Via.parse("SIP/2.0/UDP 192.0.2.1:5060 ;received=192.0.2.207;branch=z9hG4bK77asjd")
    assert v.param("received") == "192.0.2.207"
    # RFC 3261 20.42: "Via: SIP / 2.0 / UDP first.example.com: 4000;ttl=16 ;maddr=..."
    v = Via.parse("SIP / 2.0 / UDP first.example.com: 4000;ttl=16"
                  " ;maddr=224.2.0.1 ;branch=z9hG4bKa7c6a8dlze.1")
    assert (v.protocol, v.host, v.port, v.param("maddr")) == (
        "SIP/2.0", "first.example.com", 4000, "224.2.0.1")


def test_rfc3261_via_ipv6_and_compact_forms() -> None:
    v = Via.parse("SIP/2.0/TCP [2001:db8::9:1]:5061;branch=z9hG4bKas3-111")
    assert (v.host, v.port) == ("[2001:db8::9:1]", 5061)
    assert str(v) == "SIP/2.0/TCP [2001:db8::9:1]:5061;branch=z9hG4bKas3-111"
    assert Via.parse("SIP/2.0/udp host;rport").param("rport") is None
    assert Via.parse("SIP/2.0/udp host;rport").transport == "UDP"


def test_rfc3261_cseq_examples() -> None:
    assert CSeq.parse("4711 INVITE") == CSeq(4711, "INVITE")  # RFC 3261 20.16
    assert CSeq.parse("  1\t REGISTER ") == CSeq(1, "REGISTER")


def test_rfc3261_contact_examples() -> None:
    # RFC 3261 20.10
    c = Contact.parse('"Mr. Watson" <sip:watson@worcester.bell-telephone.com>;q=0.7; expires=3600')
    assert (c.display, c.uri, c.param("q"), c.expires) == (
        "Mr. Watson", "sip:watson@worcester.bell-telephone.com", "0.7", 3600)
    c = Contact.parse('"Mr. Watson" <mailto:watson@bell-telephone.com> ;q=0.1')
    assert (c.uri, c.param("q"), c.expires) == ("mailto:watson@bell-telephone.com", "0.1", None)
    assert Contact.parse("*").is_star and str(Contact.parse("*")) == "*"
    # RFC 3261 20.10: without <>, the parameters belong to the header, not the URI
    c = Contact.parse("sip:a@h;expires=60")
    assert (c.uri, c.expires) == ("sip:a@h", 60)
    # inside <>, they belong to the URI
    assert Contact.parse("<sip:a@h;expires=60>").expires is None


def test_rfc3261_route_examples() -> None:
    # RFC 3261 20.30 / 20.34
    assert RecordRoute.parse("<sip:server10.biloxi.com;lr>").uri == "sip:server10.biloxi.com;lr"
    assert Route.parse("<sip:bigbox3.site3.atlanta.com;lr>") == Route(
        "sip:bigbox3.site3.atlanta.com;lr")


def test_rfc3327_path_example() -> None:
    # RFC 3327 4 / 5
    assert Path.parse("<sip:P1.EXAMPLE.COM;lr>") == Path("sip:P1.EXAMPLE.COM;lr")
    assert str(Path("sip:P1.EXAMPLE.COM;lr")) == "<sip:P1.EXAMPLE.COM;lr>"


def test_rfc3261_expires_and_min_expires() -> None:
    assert Expires.parse("5") == Expires(5)  # RFC 3261 20.19
    assert MinExpires.parse("60") == MinExpires(60)  # RFC 3261 20.23
    # RFC 3261 20.19: a value above 2**32-1 is read as 2**32-1
    assert Expires.parse("9" * 40) == Expires(MAX_DELTA_SECONDS)


def test_rfc3261_retry_after_examples() -> None:
    # RFC 3261 20.33
    r = RetryAfter.parse("18000;duration=3600")
    assert (r.seconds, r.duration, r.comment) == (18000, 3600, None)
    r = RetryAfter.parse("120 (I'm in a meeting)")
    assert (r.seconds, r.comment) == (120, "I'm in a meeting")


def test_rfc3261_warning_examples() -> None:
    # RFC 3261 20.43
    w = Warning.parse('307 isi.edu "Session parameter \'foo\' not understood"')
    assert w == Warning(307, "isi.edu", "Session parameter 'foo' not understood")
    w = Warning.parse('301 isi.edu "Incompatible network address type \'E.164\'"')
    assert w.code == 301
    w = Warning.parse(r'399 acms.example "a \"quoted\" word"')
    assert w.text == 'a "quoted" word'


def test_warning_ours_is_one_safe_line() -> None:
    w = Warning.ours("acms.example", 'bad\r\nInjected: yes "x"')
    assert str(w) == r'399 acms.example "bad Injected: yes \"x\""'
    assert Warning.parse(str(w)) == w
    assert len(Warning.ours("h", "x" * 1000).text) == 200


def test_rfc6665_event_and_subscription_state() -> None:
    # RFC 6665 8.2.1 / 8.2.3, 7.2 examples
    assert Event.parse("foo; id=1234") == Event("foo", (("id", "1234"),))
    assert Event.parse("presence").id is None
    assert Event.parse("Presence;ID=7").id == "7"
    s = SubscriptionState.parse("active;expires=60")
    assert (s.state, s.expires, s.reason) == ("active", 60, None)
    s = SubscriptionState.parse("terminated;reason=timeout;retry-after=30")
    assert (s.state, s.reason, s.retry_after) == ("terminated", "timeout", 30)
    assert str(SubscriptionState.of("active", expires=3600)) == "active;expires=3600"


def test_rfc3261_content_type_examples() -> None:
    # RFC 3261 20.15
    assert ContentType.parse("application/sdp").media_type == "application/sdp"
    c = ContentType.parse("text/html; charset=ISO-8859-4")
    assert (c.media_type, c.param("charset")) == ("text/html", "ISO-8859-4")
    assert ContentType.parse("Application/Vnd.3GPP.McPtt-Info+XML").media_type == \
        "application/vnd.3gpp.mcptt-info+xml"


# ---------------------------------------------------------------------------- hostile values

HOSTILE: list[tuple[Any, str, type[InvalidHeader]]] = [
    (CSeq, "\u0661 INVITE", BadNumber),  # ARABIC-INDIC DIGIT ONE
    (CSeq, "\uff11 INVITE", BadNumber),  # FULLWIDTH DIGIT ONE
    (CSeq, "\u00b2 INVITE", BadNumber),  # SUPERSCRIPT TWO (isdigit() but not int())
    (CSeq, "-1 INVITE", BadNumber),
    (CSeq, "1", MissingPart),
    (CSeq, "", MissingPart),
    (CSeq, "2147483648 INVITE", NumberTooLarge),  # RFC 3261 8.1.1.5: below 2**31
    (CSeq, "9" * 5000 + " INVITE", NumberTooLarge),
    (CSeq, "1 IN/VITE", BadSyntax),
    (CSeq, "1 INVITE extra", BadSyntax),
    (Expires, "\u0661\u0662", BadNumber),
    (Expires, "+5", BadNumber),
    (Expires, "", MissingPart),
    (Expires, "3 600", BadNumber),
    (MinExpires, "60s", BadNumber),
    (RetryAfter, "\uff15", BadNumber),
    (RetryAfter, "(comment only)", MissingPart),
    (RetryAfter, "120 (unclosed", BadSyntax),
    (Via, "SIP/2.0/UDP", MissingPart),
    (Via, "SIP/2.0/UDP host:\u0661", BadNumber),
    (Via, "SIP/2.0/UDP host:65536", NumberTooLarge),
    (Via, "SIP/2.0/UDP host:0", NumberTooLarge),
    (Via, "SIP/2.0/UDP h\u00f6st", BadSyntax),
    (Via, "SIP/2.0/UDP [::1", BadSyntax),
    (Via, "SIP/2.0 host", MissingPart),
    (Via, "SIP/2.0/UDP host;=x", BadSyntax),
    (Warning, '399 host', MissingPart),
    (Warning, '39 host "x"', BadNumber),
    (Warning, '\u0663\u0669\u0669 host "x"', BadNumber),
    (Warning, '399 host unquoted', BadSyntax),
    (Warning, '399 host "unclosed', BadSyntax),
    (Contact, "", MissingPart),
    (Contact, "<sip:a@h", BadSyntax),
    (Contact, "<sip:a@h> junk", BadSyntax),
    (Contact, "noscheme", BadSyntax),
    (Path, "<>", MissingPart),
    (Event, "", MissingPart),
    (Event, ";id=1", MissingPart),
    (Event, "pres ence", BadSyntax),
    (SubscriptionState, " ", MissingPart),
    (SubscriptionState, "act/ive", BadSyntax),
    (ContentType, "application", MissingPart),
    (ContentType, "/xml", MissingPart),
    (ContentType, "appli cation/xml", BadSyntax),
]


@pytest.mark.parametrize(("cls", "value", "error"), HOSTILE)
def test_hostile_values_give_the_precise_error(cls: Any, value: str,
                                               error: type[InvalidHeader]) -> None:
    with pytest.raises(error) as caught:
        cls.parse(value)
    assert type(caught.value) is error
    assert caught.value.header == cls.name


def test_hostile_parameter_numbers() -> None:
    with pytest.raises(BadNumber):
        _ = Contact.parse("<sip:a@h>;expires=\u0661").expires
    with pytest.raises(BadNumber):
        _ = SubscriptionState.parse("active;expires=-1").expires
    assert Contact.parse("<sip:a@h>;expires=" + "9" * 100).expires == MAX_DELTA_SECONDS


UNWRITABLE: list[Any] = [
    CSeq(2**31, "INVITE"), CSeq(1, "IN VITE"), Expires(-1), Expires(2**32),
    RetryAfter(5, "a)b"), Via("UDP", "host", 70000), Via("UDP", "h\r\nX: y"),
    Warning(200, "h", "x"), Warning(399, "h", "line\nbreak"), Warning(399, "a b", "x"),
    Contact("sip:a@h\r\nX: y"), Route("sip:a@h", params=(("lr", "a b"),)),
    Event("a b"), SubscriptionState("active", (("Expires", "5"),)),
    ContentType("text", "plain; x"),
]


@pytest.mark.parametrize("value", UNWRITABLE, ids=repr)
def test_strict_on_send(value: Any) -> None:
    with pytest.raises(InvalidHeader):
        str(value)


# ---------------------------------------------------------------------------- round trips

_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~", min_size=1,
                 max_size=12)
_upper_token = _token.map(str.upper)
_delta = st.integers(0, MAX_DELTA_SECONDS)
_params = st.lists(st.tuples(_token, st.none() | _token), max_size=4).map(tuple)
_host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
_port = st.none() | st.integers(1, 65535)
_uri = st.builds(lambda u, h: f"sip:{u}@{h}", _token, _host)
_display = st.none() | st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
    max_size=20).map(lambda s: " ".join(s.split())).filter(bool)
_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF,
                                       exclude_characters="\x7f"), max_size=40)

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "Via": st.builds(Via, _upper_token, _host, _port, _params),
    "CSeq": st.builds(CSeq, st.integers(0, 2**31 - 1), _upper_token),
    "Contact": st.builds(Contact, _uri, _display, _params),
    "Expires": st.builds(Expires, _delta),
    "MinExpires": st.builds(MinExpires, _delta),
    "RetryAfter": st.builds(RetryAfter, _delta,
                            st.none() | _text.filter(lambda t: "(" not in t and ")" not in t),
                            _params),
    "Warning": st.builds(Warning, st.integers(300, 399),
                         _host, _text.map(lambda s: s.strip())),
    "Event": st.builds(Event, _token, _params),
    "SubscriptionState": st.builds(SubscriptionState, st.sampled_from(
        ["active", "pending", "terminated"]), _params),
    "Path": st.builds(Path, _uri, _display, _params),
    "Route": st.builds(Route, _uri, _display, _params),
    "RecordRoute": st.builds(RecordRoute, _uri, _display, _params),
    "ContentType": st.builds(ContentType, _token, _token, _params),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_round_trip_property(name: str) -> None:
    @given(STRATEGIES[name])
    def check(value: Any) -> None:
        assert type(value).parse(str(value)) == value

    check()


@pytest.mark.parametrize("value", [
    Via("TLS", "acms.example", 5061, (("branch", "z9hG4bK1"), ("rport", None))),
    CSeq(4711, "MESSAGE"), Contact("sip:a@h", "A", (("expires", "60"),)), Contact("*"),
    Expires(0), MinExpires(MAX_DELTA_SECONDS), RetryAfter(120, "busy", (("duration", "60"),)),
    Warning(399, "acms.example", 'x "y" \\z'), Event("presence", (("id", "1"),)),
    SubscriptionState.of("terminated", reason="noresource", retry_after=5),
    Path("sip:p1.example.com;lr"), Route("sips:r@h;lr"), RecordRoute("sip:rr@h;lr"),
    ContentType("application", "vnd.3gpp.mcptt-info+xml", (("charset", "utf-8"),)),
], ids=repr)
def test_round_trip_examples(value: Any) -> None:
    assert type(value).parse(str(value)) == value


# ---------------------------------------------------------------------------- the parser's use

_MESSAGE = (b"MESSAGE sip:acms@example.com SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
            b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:acms@example.com>\r\nCall-ID: c1\r\n"
            b"CSeq: %s MESSAGE\r\nContent-Length: %s\r\n\r\n")


@pytest.mark.parametrize(("cseq", "length", "reason"), [
    (b"9" * 5000, b"0", "Bad CSeq"),  # int() refuses over 4300 digits: was a ValueError
    (b"1", b"9" * 5000, "Content-Length Larger Than Body"),
    (b"\xd9\xa1", b"0", "Bad CSeq"),  # U+0661 ARABIC-INDIC DIGIT ONE
    (b"1", b"\xef\xbc\x91", "Bad Content-Length"),  # U+FF11 FULLWIDTH DIGIT ONE
])
def test_parse_answers_huge_and_foreign_numbers(cseq: bytes, length: bytes, reason: str) -> None:
    from mcacm_sip.sip.errors import SipParseError
    from mcacm_sip.sip.message import error_response, parse

    data = _MESSAGE % (cseq, length)
    with pytest.raises(SipParseError) as caught:
        parse(data)
    assert (caught.value.status, caught.value.reason) == (400, reason)
    answer = error_response(data, caught.value)
    assert answer is not None and answer.startswith(b"SIP/2.0 400 ")


def test_stream_framer_answers_a_huge_content_length() -> None:
    from mcacm_sip.sip.framer import FrameError, StreamFramer

    out = StreamFramer().feed(_MESSAGE % (b"1", b"9" * 5000))
    assert len(out) == 1 and isinstance(out[0], FrameError)
    assert out[0].status == 413  # was a ValueError out of the connection's data_received


def test_event_compact_form_is_read() -> None:
    # RFC 6665 8.2.1: "o" is Event's compact form, "u" Allow-Events'; aiosipua's table lacks
    # both, so a peer's "o: presence" SUBSCRIBE was refused as missing its Event
    from mcacm_sip.sip.message import parse

    data = (b"SUBSCRIBE sip:fa@example.com SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\n"
            b"f: <sip:a@example.com>;tag=1\r\nt: <sip:fa@example.com>\r\ni: c2\r\n"
            b"CSeq: 1 SUBSCRIBE\r\no: presence;id=7\r\nu: presence\r\nl: 0\r\n\r\n")
    msg = parse(data)
    assert Event.parse(msg.header("event") or "") == Event("presence", (("id", "7"),))
    assert msg.header("o") == msg.header("Event") and msg.header("allow-events") == "presence"


def test_capture_with_a_huge_content_length_is_read_leniently() -> None:
    # a hostile capture: int() of 5000 digits raised out of the TCP reassembly (whole read lost)
    from mcacm_sip.pcap import _split

    first = b"MESSAGE sip:a@h SIP/2.0\r\nl: 4\r\n\r\nabcd"
    buffer = bytearray(first + b"NOTIFY sip:b SIP/2.0\r\nContent-Length: " + b"9" * 5000
                       + b"\r\n\r\nxx")
    assert list(_split(buffer)) == [first]  # the second waits for bytes that never come


def test_raw_reading_is_lenient_and_uses_the_parser_rules() -> None:
    from mcacm_sip.ladder import describe
    from mcacm_sip.sip.message import read_raw

    cut = read_raw(b"SIP/2.0 202 Accepted\r\ni: x@h\r\nCSeq: 2 SUBSCRIBE\r\nv: SIP/2.0/TCP "
                   b"[::1]:5070;branch=z9hG4bK3\r\nbroken\r\nContent-Le")
    assert (cut.status, cut.method, cut.header("Call-ID"), cut.header("cseq")) == (
        202, None, "x@h", "2 SUBSCRIBE")
    assert cut.via == Via("TCP", "[::1]", 5070, (("branch", "z9hG4bK3"),))
    assert describe(b"SIP/2.0 202 Accepted\r\ncseq: 2 SUBSCRIBE\r\n\r\n") == \
        "202 Accepted (SUBSCRIBE)"
    # RFC 6665 8.2.1 compact Event; RFC 3261 7.3.3 "e" is Content-Encoding, not Event
    assert describe(b"SUBSCRIBE sip:x SIP/2.0\r\no: presence\r\ne: gzip\r\nExpires: 60\r\n\r\n") \
        == "SUBSCRIBE presence expires=60"
    assert read_raw(b"").start == "" and read_raw(b"\xff\xfe").method == "\ufffd\ufffd"


# ---------------------------------------------------------------- the parser's top Via


_HOSTS = st.sampled_from(["192.0.2.1", "host.example.com", "[2001:db8::1]", "a", "10.0.0.7"])
_PARAMS = st.lists(st.tuples(st.sampled_from(["branch", "rport", "received", "ttl", "X-Y"]),
                             st.sampled_from([None, "z9hG4bK1", "10.0.0.7", "5060", ""])),
                   max_size=3)


@given(st.sampled_from(["UDP", "tcp", "TLS"]), _HOSTS, st.one_of(st.none(), st.integers(1, 65535)),
       _PARAMS, st.sampled_from(["", " ", "\t"]))
def test_the_parsers_top_via_is_the_via_value(transport: str, host: str, port: int | None,
                                              params: list[tuple[str, str | None]],
                                              space: str) -> None:
    """The parser's fast reading of the top Via gives exactly what ``Via.parse`` gives (one
    reading of the header, the headers.py one), and ``stamp_source`` keeps it a Via."""
    sent_by = host if port is None else f"{host}:{port}"
    text = f"SIP/2.0/{transport} {sent_by}" + "".join(
        f";{space}{k}" if v is None else f";{k}{space}={space}{v}" for k, v in params)
    data = (f"OPTIONS sip:x@example.com SIP/2.0\r\nVia: {text}\r\nFrom: <sip:a@x>;tag=1\r\n"
            f"To: <sip:x@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n").encode()
    msg = parse(data)
    assert isinstance(msg, Request)
    assert msg.via == Via.parse(text)
    assert msg.branch == (Via.parse(text).branch or "")
    msg.stamp_source(Arrival("udp", "198.51.100.9", 4000))
    assert isinstance(msg.via, Via) and msg.via.param("received") == "198.51.100.9"
    assert Via.parse(msg.vias[0]) == msg.via


# ---------------------------------------------------------------- error_response reads as parse


def test_error_response_reads_headers_as_the_parser_does() -> None:
    """The answer to a broken request copies the headers as the parser reads them: a folded
    From keeps its tag (RFC 3261 7.3.1), compact ``v``/``i``/``f``/``t`` names count, a
    comma-joined Via list gives every Via, and a value with a NUL is never echoed."""
    from mcacm_sip.sip.errors import SipParseError
    from mcacm_sip.sip.message import error_response

    data = (b"OPTIONS sip:x@example.com SIP/2.0\r\n"
            b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa, SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKb\r\n"
            b"f: <sip:a@example.com>\r\n ;tag=ft9\r\n"
            b"t: <sip:x@example.com>\r\n"
            b"i: call-7\r\n"
            b"CSeq: 1 OPTIONS\r\n"
            b"Subject: a\x00b\r\n"
            b"Content-Length: 0\r\n\r\n")
    answer = error_response(data, SipParseError(400, "Bad Max-Forwards"))
    assert answer is not None
    msg = parse(answer)
    assert not isinstance(msg, Request) and msg.status == 400
    assert msg.vias == ["SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa",
                        "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKb"]
    assert msg.from_tag == "ft9" and msg.call_id == "call-7" and msg.to_tag
    assert b"\x00" not in answer
    nul = data.replace(b"i: call-7", b"i: call\x007")
    answer = error_response(nul, SipParseError(400, "Bad Max-Forwards"))
    assert answer is not None and b"\x00" not in answer and b"Call-ID" not in answer
