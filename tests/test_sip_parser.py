"""Parser and response building: the RFC 4475-style corpus and RFC 3261 8.2.6 answers."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mcacm_sip.sip import (
    Arrival,
    Limits,
    Request,
    Response,
    SipParseError,
    build_response,
    error_response,
    message,
    parse,
)

# every test here over both header splittings (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("sip_parser")
CORPUS = Path(__file__).parent / "sip" / "corpus"
VERDICTS: dict[str, str] = tomllib.loads((CORPUS / "verdicts.toml").read_text())["verdicts"]


def test_every_corpus_file_has_a_verdict() -> None:
    assert {p.stem for p in CORPUS.glob("*.sip")} == set(VERDICTS)


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_corpus_verdict(name: str) -> None:
    data = (CORPUS / f"{name}.sip").read_bytes()
    verdict = VERDICTS[name]
    if verdict == "accept":
        msg = parse(data)
        assert msg.call_id and msg.cseq >= 0
        return
    with pytest.raises(SipParseError) as info:
        parse(data)
    answer = error_response(data, info.value)
    if verdict == "silence":
        assert answer is None
        return
    assert info.value.status == int(verdict)
    assert answer is not None
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(f"SIP/2.0 {verdict} ".encode())

    # RFC 3261 8.2.6.2: the Via lines are echoed so the answer can be matched and routed.
    def vias(msg: bytes) -> list[bytes]:
        return [line for line in msg.split(b"\r\n") if line.startswith(b"Via:")]

    assert vias(answer) and vias(answer) == vias(data)


def test_compact_folded_and_lf_only_messages_read_like_the_long_form() -> None:
    for name in ("compact_headers", "header_folding", "lf_only"):
        req = parse((CORPUS / f"{name}.sip").read_bytes())
        assert isinstance(req, Request)
        assert req.method == "MESSAGE" and req.cseq == 1
        assert req.from_tag == "a1" and req.to_tag is None
        assert req.branch.startswith("z9hG4bK")
    folded = parse((CORPUS / "header_folding.sip").read_bytes())
    assert folded.header("v") == "SIP/2.0/UDP 127.0.0.1:5060 ;branch=z9hG4bKf1;rport"
    compact = parse((CORPUS / "compact_headers.sip").read_bytes())
    assert compact.body == b"hello" and compact.content_type == "text/plain"


def test_proxied_request_keeps_both_vias_in_order_and_answers_to_the_top_one() -> None:
    for name in ("two_via_lines", "via_comma_list"):
        req = parse((CORPUS / f"{name}.sip").read_bytes())
        assert isinstance(req, Request)
        assert len(req.vias) == 2
        assert req.via.host == "127.0.0.1" and req.via.port is None
        resp = parse(build_response(req, 200))
        assert isinstance(resp, Response)
        assert resp.headers("via") == req.vias


def test_ipv6_via_and_escaped_uri() -> None:
    req = parse((CORPUS / "ipv6_via.sip").read_bytes())
    assert req.via.host == "[2001:db8::10]" and req.via.port == 5060
    esc = parse((CORPUS / "escaped_uri_maddr.sip").read_bytes())
    assert isinstance(esc, Request)
    assert esc.uri.startswith("sip:sips%3Auser%40example.com@example.net;maddr=")


def test_body_is_cut_at_content_length_and_kept_byte_exact() -> None:
    assert parse((CORPUS / "body_longer_than_cl.sip").read_bytes()).body == b"hel"
    assert parse((CORPUS / "non_utf8_body.sip").read_bytes()).body == b"\xff\xfe\x00binary"


def test_content_length_larger_than_body_is_only_an_error_on_datagrams() -> None:
    data = (CORPUS / "valid_message.sip").read_bytes()
    truncated = data[:-2]  # Content-Length says 5, 3 bytes arrived
    with pytest.raises(SipParseError) as info:
        parse(truncated, datagram=True)
    assert info.value.status == 400


def test_missing_content_length_on_a_stream_means_no_body() -> None:
    data = (CORPUS / "valid_message.sip").read_bytes().replace(b"Content-Length: 5\r\n", b"")
    assert parse(data, datagram=True).body == b"hello"  # RFC 3261 18.3: UDP uses the datagram
    assert parse(data, datagram=False).body == b""


def test_empty_reason_phrase_response() -> None:
    resp = parse((CORPUS / "empty_reason_response.sip").read_bytes())
    assert isinstance(resp, Response)
    assert (resp.status, resp.reason, resp.to_tag, resp.cseq_method) == (200, "", "2", "MESSAGE")


def test_size_caps_answer_413() -> None:
    data = (CORPUS / "valid_message.sip").read_bytes()
    with pytest.raises(SipParseError) as info:
        parse(data, limits=Limits(max_body_bytes=4))
    assert info.value.status == 413
    with pytest.raises(SipParseError) as info:
        parse(data, limits=Limits(max_header_bytes=100))
    assert info.value.status == 413


def test_response_echoes_request_fields_and_adds_a_to_tag() -> None:
    req = parse((CORPUS / "two_via_lines.sip").read_bytes())
    assert isinstance(req, Request)
    raw = build_response(
        req,
        202,
        headers=[("Retry-After", "5")],
        body=b"<x/>",
        content_type="application/xml",
        server="test",
        to_tag="t9",
    )
    resp = parse(raw)
    assert isinstance(resp, Response)
    assert (resp.status, resp.reason) == (202, "Accepted")
    assert resp.call_id == req.call_id and resp.cseq == req.cseq and resp.cseq_method == "MESSAGE"
    assert resp.from_tag == "a1" and resp.to_tag == "t9"
    assert resp.header("Retry-After") == "5" and resp.header("server") == "test"
    assert resp.body == b"<x/>" and resp.content_type == "application/xml"


def test_existing_to_tag_is_kept() -> None:
    data = (
        (CORPUS / "valid_message.sip")
        .read_bytes()
        .replace(b"To: <sip:acms@example.com>", b"To: <sip:acms@example.com>;tag=dlg")
    )
    req = parse(data)
    assert isinstance(req, Request)
    assert parse(build_response(req, 200, to_tag="other")).to_tag == "dlg"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reason": "OK\r\nX-Evil: 1"},
        {"headers": [("Warning", '399 x "a"\r\nX-Evil: 1')]},
        {"headers": [("Bad Name", "v")]},
        {"content_type": "text/plain\nX-Evil: 1"},
    ],
)
def test_header_injection_is_refused(kwargs: dict[str, object]) -> None:
    req = parse((CORPUS / "valid_message.sip").read_bytes())
    assert isinstance(req, Request)
    with pytest.raises(ValueError):
        build_response(req, 200, **kwargs)  # type: ignore[arg-type]


def test_stamp_source_fills_rport_and_received() -> None:
    req = parse((CORPUS / "valid_message.sip").read_bytes())
    assert isinstance(req, Request)
    req.stamp_source(Arrival("udp", "10.0.0.7", 40000))
    assert req.vias[0].endswith(";rport=40000;received=10.0.0.7") or (
        "rport=40000" in req.vias[0] and "received=10.0.0.7" in req.vias[0]
    )
    resp = parse(build_response(req, 200))
    assert resp.via.param("rport") == "40000" and resp.via.param("received") == "10.0.0.7"


def test_stamp_source_without_rport_adds_received_only_when_host_differs() -> None:
    data = (CORPUS / "valid_message.sip").read_bytes().replace(b";rport", b"")
    same = parse(data)
    assert isinstance(same, Request)
    same.stamp_source(Arrival("udp", "127.0.0.1", 5999))
    assert "received" not in same.vias[0] and "rport" not in same.vias[0]
    other = parse(data)
    assert isinstance(other, Request)
    other.stamp_source(Arrival("udp", "10.1.1.1", 5999))
    assert other.via.param("received") == "10.1.1.1" and not other.via.has("rport")


def test_stamp_source_overwrites_a_received_the_peer_wrote() -> None:
    """RFC 3261 18.2.1: ``received`` is the receiver's to write.  A peer at 127.0.0.2 that
    writes ``received=127.0.0.1`` (sent-by its real address, no rport) gets it replaced by its
    real address, and the arrival, not the Via, is what the request says about its source."""
    data = (CORPUS / "valid_message.sip").read_bytes().replace(
        b";rport", b";received=127.0.0.1").replace(b"UDP 127.0.0.1:5060", b"UDP 127.0.0.2:5070")
    req = parse(data)
    assert isinstance(req, Request) and req.via.host == "127.0.0.2"
    assert req.arrival is None  # parsed from bytes alone: from nowhere we know
    req.stamp_source(Arrival("udp", "127.0.0.2", 5070))
    assert req.via.param("received") == "127.0.0.2"
    assert "received=127.0.0.1" not in req.vias[0]
    assert req.arrival == Arrival("udp", "127.0.0.2", 5070)


def test_garbage_never_raises_anything_but_sip_parse_error() -> None:
    import random

    rng = random.Random(7)
    seed = (CORPUS / "valid_message.sip").read_bytes()
    for _ in range(2000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            parse(bytes(data))
        except SipParseError as err:
            error_response(bytes(data), err)


_ODD = ["", " ", "\t", ",", '"', ";", "=", ":", "ö", "٣", "\u00a0", "[", "]", "~", "%"]
_VIA = st.tuples(
    st.sampled_from(["SIP/2.0/UDP ", "SIP/2.0/udp ", "SIP/2.0/TCP ", "SIP/2.0/Tls ", "SIP/2.0/",
                     "SIP / 2.0 / UDP ", "SIP/2.1/UDP ", "SIP/2.0/U1 ", "SIP/2.0/UDP  "]),
    st.sampled_from(["127.0.0.1", "host.example", "h_x-1", "[::1]", "H", "", "ö.example"]),
    st.sampled_from([":5060", ":1", "", ":", ":0", ":65535", ":65536", ":99999", ":05060",
                     ":٣", ": 5060"]),
    st.lists(st.tuples(
        st.sampled_from(["branch", "rport", "received", "Branch", "RPORT", "x.y", "a~b", ""]),
        st.sampled_from(["", "=", "=z9hG4bK1", "=1.2.3.4", "=a=b", "= x", "=ö"]),
    ).map("".join), max_size=4).map(lambda ps: "".join(";" + p for p in ps)),
    st.sampled_from(_ODD), st.integers(0, 60),
).map(lambda t: (lambda v: v[:t[5]] + t[4] + v[t[5]:])(t[0] + t[1] + t[2] + t[3]))


@settings(max_examples=3000, deadline=None)
@given(_VIA)
def test_the_common_via_form_reads_as_the_general_reader_reads_it(value: str) -> None:
    """The parser reads the usual ``SIP/2.0/UDP host:port;params`` Via with one regex and
    anything else as before: both give the same Via (or both refuse it) for any value."""
    assert message._parse_via(value) == message._parse_via_general(value)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(["<sip:a@x;tag=u>", "sip:a@x", ";", " ; ", "tag", "TAG", "=",
                                 " = ", "t1", ">", "<", ",", "\t", '"', "x"]),
                max_size=8).map("".join))
def test_a_from_or_to_tag_is_read_as_the_regex_reads_it(value: str) -> None:
    """``_tag_param`` skips the regex for a value with no ";" after its ``<...>`` (a request's
    To): the same tag as the regex search alone, for any value; and a parsed message's tags,
    read on first use, are those of its From and To."""
    found = message._TAG_PARAM.search(value, value.rfind(">") + 1)
    assert message._tag_param(value) == (found.group(1) or None if found else None)
    data = (f"MESSAGE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h:1;branch=z9hG4bK1\r\n"
            f"From: <sip:a@x>{value}\r\nTo: <sip:b@x>{value}\r\nCall-ID: c\r\n"
            f"CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n").encode()
    try:
        msg = parse(data)
    except SipParseError:
        return
    assert msg.from_tag == message._tag_param(msg.store["from"][0])
    assert msg.to_tag == message._tag_param(msg.store["to"][0])


@pytest.mark.parametrize("value", [
    "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-7-1-0;rport",
    "SIP/2.0/TCP host.example:5060;branch=z9hG4bKx;received=192.0.2.1;rport=5070",
    "SIP/2.0/udp a.b:1;branch=z9hG4bKx",
])
def test_the_common_via_form_is_read_by_the_fast_path(value: str) -> None:
    assert message._VIA_COMMON.fullmatch(value) is not None
    assert message._parse_via(value) == message._parse_via_general(value) is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["rport", "received", "branch", "x"]),
                          st.sampled_from(["", "=1", "=10.0.0.9", "=z9hG4bKq"])).map("".join),
                max_size=4),
       st.sampled_from(["127.0.0.1", "10.0.0.7", "::1"]), st.integers(1, 65535))
def test_stamp_source_is_received_then_rport_set_on_the_via(params: list[str], host: str,
                                                            port: int) -> None:
    """RFC 3261 18.2.1, RFC 3581 4: the stamped Via is the received Via with ``received``
    set (in place, else appended) and then ``rport`` filled when present, whatever the
    parameters and their order."""
    via = "SIP/2.0/UDP 127.0.0.1:5060" + "".join(";" + p for p in params)
    data = (CORPUS / "valid_message.sip").read_bytes()
    top = next(line for line in data.split(b"\n") if line.startswith(b"Via:"))
    req = parse(data.replace(top, b"Via: " + via.encode() + b"\r", 1))
    assert isinstance(req, Request)
    before = req.via
    req.stamp_source(Arrival("udp", host, port))
    if not before.has("rport") and not before.has("received") and host == "127.0.0.1":
        assert req.via == before
    else:
        want = before.with_param("received", host)
        if before.has("rport"):
            want = want.with_param("rport", str(port))
        assert req.via == want
    assert req.vias[0] == req.via.echo()


_COMMON_VIA = st.tuples(
    st.sampled_from(["UDP", "udp", "Tcp", "TLS", "SCTP"]),
    st.sampled_from(["127.0.0.1", "10.0.0.7", "host.example", "h_x-1", "H"]),
    st.integers(1, 65535),
    st.lists(st.tuples(
        st.sampled_from(["branch", "rport", "received", "x.y", "a~b", "maddr", "rport2",
                         "xrport", "received2"]),
        st.one_of(st.none(), st.sampled_from(["z9hG4bK1", "10.0.0.9", "1", "a=b", "%41",
                                              "rport", "x;rport", "received"])),
    ), max_size=5),
).map(lambda t: f"SIP/2.0/{t[0]} {t[1]}:{t[2]}" + "".join(
    f";{k}" if v is None else f";{k}={v}" for k, v in t[3]))


@settings(max_examples=1000, deadline=None)
@given(_COMMON_VIA, st.sampled_from(["127.0.0.1", "10.0.0.7", "host.example", "::1", "H"]),
       st.integers(1, 65535), st.booleans())
def test_stamping_a_common_via_as_text_equals_stamping_the_via(
        via: str, host: str, port: int, read_first: bool) -> None:
    """A top Via of the common form is stamped on its text (``stamp_source``): the same Via
    value written back and the same Via object as the Via object's path gives (which every
    other form takes), whether or not the Via was read before."""
    assert message._VIA_COMMON.fullmatch(via) is not None
    data = (CORPUS / "valid_message.sip").read_bytes()
    top = next(line for line in data.split(b"\n") if line.startswith(b"Via:"))
    data = data.replace(top, b"Via: " + via.encode() + b"\r", 1)
    fast, slow = parse(data), parse(data)
    assert isinstance(fast, Request) and isinstance(slow, Request)
    if read_first:
        assert fast.via == slow.via
    slow.via = slow.via  # the Via object is the top Via: the general path
    fast.stamp_source(Arrival("udp", host, port))
    slow.stamp_source(Arrival("udp", host, port))
    assert fast.vias == slow.vias
    assert fast.via == slow.via
    assert build_response(fast, 200, to_tag="t") == build_response(slow, 200, to_tag="t")


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_COMMON_VIA, _VIA), st.sampled_from(["127.0.0.1", "10.0.0.7", "::1"]),
       st.integers(1, 65535), st.sampled_from(["udp", "tcp", "tls"]), st.booleans())
def test_the_server_key_and_answer_address_are_the_via_objects(
        via: str, host: str, port: int, transport: str, stamped: bool) -> None:
    """The server transaction's key and the responses' destination read the top Via's
    sent-by and ``rport`` from a common Via's parts (``sent_by``, ``via_has``), without the Via
    object: the same as from the Via object (RFC 3261 17.2.3, 18.2.2; RFC 3581 4), stamped
    or not, for any Via the parser takes."""
    from mcacm_sip.sip.transaction import Peer, response_destination, server_key

    data = (CORPUS / "valid_message.sip").read_bytes()
    top = next(line for line in data.split(b"\n") if line.startswith(b"Via:"))
    data = data.replace(top, b"Via: " + via.encode() + b"\r", 1)
    try:
        fast, slow = parse(data), parse(data)
    except SipParseError:
        return
    assert isinstance(fast, Request) and isinstance(slow, Request)
    slow.via = slow.via  # the Via object is the top Via: the general path
    source = Peer(transport, host, port, 7 if transport != "udp" else None)  # type: ignore[arg-type]
    if stamped:
        fast.stamp_source(Arrival(transport, host, port))
        slow.stamp_source(Arrival(transport, host, port))
    for name in ("rport", "received", "branch", "maddr", "rport2", "x.y"):
        assert fast.via_has(name) == slow.via.has(name)
    assert fast.sent_by() == (slow.via.host, slow.via.port)
    assert server_key(fast) == server_key(slow)
    assert response_destination(fast, source) == response_destination(slow, source)


_FIELD = st.sampled_from(["a", "sip:x@example.com", "", "x\r", "\ny", "a\r\nInjected: 1", "é"])


@settings(max_examples=300, deadline=None)
@given(st.tuples(_FIELD, _FIELD, _FIELD, _FIELD, _FIELD, _FIELD))
def test_a_line_break_in_any_field_of_a_request_is_refused(fields: tuple[str, ...]) -> None:
    """Strict on send (header injection): encode_request refuses CR or LF in any field it
    writes into a header line, and writes every other request."""
    from mcacm_sip.sip.request import encode_request, new_request

    uri, from_uri, call_id, contact, header, content_type = fields
    req = new_request("MESSAGE", "sip:" + uri, from_uri="sip:" + from_uri, to_uri="sip:b@x",
                      call_id="c" + call_id, contact=contact or None,
                      headers=[("X-Test", header)], content_type=content_type or None,
                      body=b"\r\n\r\nbody\n")
    if any("\r" in f or "\n" in f for f in fields):
        with pytest.raises(ValueError, match="line break"):
            encode_request(req, "z9hG4bKx", "udp", "127.0.0.1", 5060)
    else:
        data = encode_request(req, "z9hG4bKx", "udp", "127.0.0.1", 5060)
        assert data.endswith(b"\r\n\r\n\r\n\r\nbody\n") and isinstance(parse(data), Request)


@settings(max_examples=1000, deadline=None)
@given(_VIA, st.booleans())
def test_the_top_via_of_a_parsed_message_is_the_general_readers(value: str, response: bool
                                                                ) -> None:
    """A response's top Via is built on first use, a request's at once: either way the
    message is refused for a Via the general reader refuses, and otherwise carries that
    reader's Via and branch."""
    start = "SIP/2.0 200 OK" if response else "OPTIONS sip:a@x SIP/2.0"
    data = (f"{start}\r\nVia: {value}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n"
            "Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
    want = message._parse_via_general(value.strip())
    valid = want is not None and want.protocol == "SIP/2.0" and bool(want.host) and (
        want.port is None or 0 < want.port < 65536)
    assume("," not in value and value.strip())  # a Via list, or no Via: other tests
    try:
        msg = parse(data)
    except SipParseError as exc:
        assert not valid and exc.reason == "Bad Via"
        return
    assert valid and want is not None
    assert msg.branch == (want.branch or "") and msg.via == want


def test_the_aiosipua_escape_hatch_keeps_header_names_as_received() -> None:
    """``raw`` (built on first use, its names read again from the header block) has every
    header under its name as received, compact forms expanded, values as parsed."""
    msg = parse(b"MESSAGE sip:a@x SIP/2.0\r\nv: SIP/2.0/UDP h:5060;branch=z9hG4bKx\r\n"
                b"from: <sip:a@x>;tag=1\r\nTO: <sip:b@x>\r\ncall-ID: c\r\nCSeq: 1 MESSAGE\r\n"
                b"X-Odd : 1\r\nX-Odd: 2\r\n\r\n")
    raw = msg.raw
    assert raw.headers._original == {"via": "via", "from": "from", "to": "TO",
                                     "call-id": "call-ID", "cseq": "CSeq", "x-odd": "X-Odd"}
    assert raw.headers.get("x-odd") == ["1", "2"] and raw.body == msg.body
    assert raw.headers._store is msg.store


def test_a_new_requests_tag_and_call_id_are_random_hex_of_their_lengths() -> None:
    """RFC 3261 19.3 / 8.1.1.4: a From tag of 6 random bytes (12 hex digits) and a Call-ID of
    10 (20 hex digits, ``@mcacm``), drawn together; one given is kept, the other drawn."""
    import re as _re

    from mcacm_sip.sip.request import new_request

    made = [new_request("MESSAGE", "sip:b@x", from_uri="sip:a@x", to_uri="sip:b@x")
            for _ in range(2000)]
    assert all(_re.fullmatch("[0-9a-f]{12}", r.from_tag) for r in made)
    assert all(_re.fullmatch("[0-9a-f]{20}@mcacm", r.call_id) for r in made)
    assert len({r.from_tag for r in made}) == len({r.call_id for r in made}) == 2000
    kept = new_request("MESSAGE", "sip:b@x", from_uri="sip:a@x", to_uri="sip:b@x",
                       from_tag="mine", call_id="c@x")
    assert (kept.from_tag, kept.call_id) == ("mine", "c@x")
    tag_only = new_request("MESSAGE", "sip:b@x", from_uri="sip:a@x", to_uri="sip:b@x",
                           from_tag="mine")
    assert tag_only.from_tag == "mine" and _re.fullmatch("[0-9a-f]{20}@mcacm", tag_only.call_id)


_PLAIN_REQUESTS = [path.read_bytes() for path in sorted(CORPUS.glob("*.sip"))]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(_PLAIN_REQUESTS),
       st.sampled_from(["To: <sip:b@x>", "To: <sip:b@x>;tag=abc", "To: sip:b@x;tag=1",
                        "t: <sip:b@x;tag=no>", 'To: "B" <sip:b@x>', "To: <sip:b@x>;TAG = 7"]),
       st.sampled_from(["", "Via: SIP/2.0/UDP h2:5070;branch=z9hG4bK2\r\n",
                        "v: SIP/2.0/UDP a:1;branch=z9hG4bKa, SIP/2.0/TCP b;branch=z9hG4bKb\r\n"]),
       st.one_of(st.sampled_from([100, 180, 200, 202, 404, 481, 500, 603, 699, 299, 99, 700, 0]),
                 st.integers(-5, 1000)),
       st.sampled_from([None, "", "mcacm-sip/0.1", "ua", "a\r\nX: 1", "b\n"]),
       st.booleans())
def test_a_plain_response_is_build_responses(
        data: bytes, to: str, more_vias: str, status: int, server: str | None,
        tag_read: bool) -> None:
    """``plain_response`` (the endpoint's answer to a handler that gives a status alone)
    writes what ``build_response`` writes for any request the parser takes (its To with or
    without a tag, read before or not; one Via or several) and any status and Server value,
    or raises what it raises."""
    import re as _re

    from mcacm_sip.sip import message as m

    head, sep, body = data.partition(b"\r\n\r\n")
    head = _re.sub(rb"\r\n(To|t): [^\r]*", b"\r\n" + to.encode(), head, count=1)
    head = head.replace(b"\r\nFrom:", b"\r\n" + more_vias.encode() + b"From:", 1) \
        if more_vias else head
    try:
        want_req, got_req = parse(head + sep + body), parse(head + sep + body)
    except SipParseError:
        return
    if not isinstance(want_req, Request) or not isinstance(got_req, Request):
        return
    if tag_read:
        assert got_req.to_tag == want_req.to_tag
    before = m.new_tag
    m.new_tag = lambda: "fixed"
    try:
        try:
            want: bytes | str = build_response(want_req, status, server=server)
        except ValueError as exc:
            want = str(exc)
        try:
            got: bytes | str = m.plain_response(got_req, status, server)
        except ValueError as exc:
            got = str(exc)
    finally:
        m.new_tag = before
    assert got == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(["content-type", "Content-Type", "c", "C", "f", "From", "v", "VIA", "o",
                     "u", "i", "Call-ID", "p-asserted-identity", "x-absent", "Warning"]),
    st.text(st.characters(codec="utf-8"), max_size=12)), min_size=1, max_size=20))
def test_a_header_asked_by_any_name_is_its_store_key(names: list[str]) -> None:
    """``header(name)`` reads the store under ``_expand(name).lower()``, each name's key kept
    once it was asked for (compact names, any case, names no message holds, any text; the
    cache full): the same value as reading the store under the key made afresh (fails with
    the key cached before the compact name is expanded, or not lowered)."""
    from mcacm_sip.sip import message

    msg = parse(b"MESSAGE sip:a@x SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKh\r\n"
                b"f: <sip:b@x>;tag=1\r\nTo: <sip:a@x>\r\ni: c1\r\nCSeq: 1 MESSAGE\r\n"
                b"c: text/plain\r\nP-Asserted-Identity: <sip:b@x>\r\nWarning: 399 x \"w\"\r\n"
                b"Content-Length: 0\r\n\r\n")
    for name in names * 2:
        values = msg.store.get(message._expand(name).lower())
        assert msg.header(name) == (values[0] if values else None)
        assert message._STORE_KEYS.get(name, message._expand(name).lower()) \
            == message._expand(name).lower()
