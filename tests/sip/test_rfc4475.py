"""RFC 4475 (SIP torture test messages): each of the RFC's 49 messages, byte-exact from its
Appendix B archive (tests/sip/corpus/rfc4475/README.md), through the parser and, for requests,
through a real endpoint on loopback over UDP and TCP, against the RFC's verdict.

The endpoint is the one of tests/test_sip_transport.py: it serves MESSAGE (text/plain,
application/octet-stream) and FOO, answers OPTIONS itself and 405 to every other method. We are a
UAS and a registrar, never a proxy and never an INVITE user agent: verdicts that only a proxy or an
INVITE/SDP handler could give are written out per row, with the reason, instead of being skipped.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_sip_transport import (
    PROBE,
    UdpProbe,
    asynctest,
    replies_until_probe,
    serving,
    tcp_exchange,
)

from mcacm_sip.sip import Request, Response, parse
from mcacm_sip.sip.errors import SipParseError
from mcacm_sip.sip.registrar import Registrar
from mcacm_sip.sip.uri import uri_scheme

CORPUS = Path(__file__).parent / "corpus" / "rfc4475"
ACCEPT = "accept"
UNTESTED = "untested"
"""Not sent over that transport; the row's ``why`` says why."""


@dataclass(frozen=True)
class Case:
    """One RFC 4475 message and what our stack must do with it."""

    name: str
    """File stem: RFC section and the RFC's file name."""
    parse: str | int | None
    """``accept``, or the status SipParseError carries (None: the message is dropped)."""
    udp: tuple[int, ...] | str = ()
    """Answers the endpoint sends when the message arrives in one datagram (() for none)."""
    tcp: tuple[int, ...] | str = ()
    """Answers on a TCP connection carrying the message, then a half-close."""
    registrar: int | None = None
    """For REGISTER: what our registrar (sip/registrar.py) answers when it gets the request."""
    why: str = ""


CASES = [
    # 3.1.1 Valid messages: parsed and answered, never a 400.
    Case("3.1.1.1-wsinv", ACCEPT, (405,), (405,), why="valid: LWS everywhere (SWS around the Via "
         "SLASH and the tag EQUAL); INVITE is not a method of ours: 405 with Allow"),
    Case("3.1.1.2-intmeth", ACCEPT, (405,), (405,), why="valid: NUL as a quoted-pair in To; "
         "unknown method: 405 (RFC 4475 names no status; RFC 3261 8.2.1)"),
    Case("3.1.1.3-esc01", ACCEPT, (405,), (405,), why="valid: INVITE, 405"),
    Case("3.1.1.4-escnull", ACCEPT, (405,), (405,), 200,
         why="valid: two distinct contacts with %00 in the userpart; the registrar binds both"),
    Case("3.1.1.5-esc02", ACCEPT, (405,), (405,), why="valid: RE%47IST%45R is not REGISTER; "
         "the RFC expects 501 from an endpoint, we answer every method we do not serve with 405 "
         "and Allow (RFC 3261 8.2.1; docs/sip-layer.md)"),
    Case("3.1.1.6-lwsdisp", ACCEPT, (200,), (200,), why="valid: OPTIONS, 200"),
    Case("3.1.1.7-longreq", ACCEPT, (405,), (405,), why="valid: long values; INVITE, 405"),
    Case("3.1.1.8-dblreq", ACCEPT, (405,), (405, 405),
         why="valid: one datagram, the INVITE after Content-Length is noise (RFC 3261 18.3) so UDP "
             "answers the REGISTER only; on a stream the same bytes are two requests, both 405"),
    Case("3.1.1.9-semiuri", ACCEPT, (200,), (200,), why="valid: OPTIONS, 200"),
    Case("3.1.1.10-transports", ACCEPT, (200,), (200,), why="valid: OPTIONS, 200"),
    Case("3.1.1.11-mpart01", ACCEPT, (415,), (415,), why="valid: binary body framed by "
         "Content-Length; our MESSAGE handler takes no multipart/signed: 415 with Accept"),
    Case("3.1.1.12-unreason", ACCEPT, (), (), why="valid response: parsed; it matches no "
         "transaction of ours and is dropped (RFC 3261 18.1.2)"),
    Case("3.1.1.13-noreason", ACCEPT, (), (), why="valid response, empty reason: dropped as stray"),
    # 3.1.2 Invalid messages: the defined refusal, or silence for responses.
    Case("3.1.2.1-badinv01", 400, (400,), (400,), why="invalid: empty Via parameters ';;,;,,'"),
    Case("3.1.2.2-clerr", 400, (400,), (413,),
         why="invalid: Content-Length larger than the datagram, 400 (RFC 3261 18.3); on a stream "
             "the framer waits for the body, and 9999 is over this endpoint's 4096-byte body cap: "
             "413 and the connection closes (default cap: the framer waits, closes at EOF)"),
    Case("3.1.2.3-ncl", 400, (400,), (400,), why="invalid: negative Content-Length; on a stream the"
         " framing is lost, 400 and close"),
    Case("3.1.2.4-scalar02", 400, (400,), (400,), why="invalid: CSeq over 2**31-1 (RFC 3261"
         " 8.1.1.5); Max-Forwards and Expires we do not read"),
    Case("3.1.2.5-scalarlg", None, (), (), why="invalid response: dropped"),
    Case("3.1.2.6-quotbal", 400, (400,), (400,), why="invalid: unterminated quoted display name"),
    Case("3.1.2.7-ltgtruri", 400, (400,), (400,), why="invalid: <...> around the Request-URI"),
    Case("3.1.2.8-lwsruri", 400, (400,), (400,), why="invalid: LWS in the Request-URI"),
    Case("3.1.2.9-lwsstart", 400, (400,), (400,), why="invalid: several SP in the request line"),
    Case("3.1.2.10-trws", ACCEPT, (200,), (200,), why="invalid, leniency allowed: the RFC lets an "
         "element ignore SP after SIP-Version; we never forward the request line"),
    Case("3.1.2.11-escruri", ACCEPT, (405,), (405,), why="invalid, leniency allowed: escaped"
         " headers in the Request-URI are ignored (we are not a proxy, never route on them);"
         " INVITE: 405"),
    Case("3.1.2.12-baddate", ACCEPT, (405,), (405,), why="invalid, leniency allowed: the RFC says"
         " not to reject for Date unless Date matters; we never read Date; INVITE: 405"),
    Case("3.1.2.13-regbadct", ACCEPT, (405,), (405,), 200,
         why="invalid, leniency allowed: Contact addr-spec with '?', the RFC allows inferring the "
             "brackets; our registrar binds <sip:user@example.com?Route=...> as a name-addr"),
    Case("3.1.2.14-badaspec", ACCEPT, (200,), (200,), why="invalid, leniency allowed: spaces in"
         " the To addr-spec; we echo To and never route on it; OPTIONS: 200"),
    Case("3.1.2.15-baddn", 400, (400,), (),
         why="invalid: the RFC archive's copy ends after 'l: 0' CRLF without the empty line, so "
             "the header block never ends: one datagram gets 400 (Malformed Header Line); on a "
             "stream the framer waits for the end and the half-close drops it. The unquoted "
             "display name itself we do not check (we never read display names)"),
    Case("3.1.2.16-badvers", 505, (505,), (505,), why="invalid: SIP/7.0, 505 (RFC 3261 8.2.3)"),
    Case("3.1.2.17-mismatch01", 400, (400,), (400,), why="invalid: CSeq method differs"),
    Case("3.1.2.18-mismatch02", 400, (400,), (400,), why="invalid: the RFC prefers 501 and allows "
         "400; we check CSeq before the method (RFC 3261 8.1.1.5)"),
    Case("3.1.2.19-bigcode", None, (), (), why="invalid response, status 4294967301: dropped"),
    # 3.2 Transaction layer.
    Case("3.2.1-badbranch", ACCEPT, (200,), (200,), why="branch 'z9hG4bK' with no identifier: the "
         "RFC allows a 400 or the RFC 2543 fallback; we match on the branch as given and answer"),
    # 3.3 Application layer.
    Case("3.3.1-insuf", 400, (400,), (400,), why="missing Call-ID, From, To: 400"),
    Case("3.3.2-unkscm", ACCEPT, (416,), (416,), why="unknown Request-URI scheme: 416 "
         "(RFC 3261 8.2.2.1)"),
    Case("3.3.3-novelsc", ACCEPT, (416,), (416,), why="soap.beep: a scheme we do not serve: 416"),
    Case("3.3.4-unksm2", ACCEPT, (405,), (405,), 400, why="unknown schemes in To/From/Contact"
         " parse; our registrar refuses the isbn: To as an address-of-record (400 Bad URI)"),
    Case("3.3.5-bext01", ACCEPT, (420,), (420,), why="Require: nothingSupportedHere: 420 with "
         "Unsupported, OPTIONS included (RFC 3261 8.2.2.3); Proxy-Require is a proxy's business"),
    Case("3.3.6-invut", ACCEPT, (405,), (405,), why="INVITE with an unknown body type: the"
         " RFC's 415 is an INVITE UAS's; INVITE is not a method of ours, 405 comes first"
         " (RFC 3261 8.2.1)"),
    Case("3.3.7-regaut01", ACCEPT, (405,), (405,), 200,
         why="Authorization with an unknown scheme: the RFC expects 401 from a registrar doing"
             " HTTP digest; ours does no digest (docs/decisions.md 'Registrar': authorisation is"
             " the application's predicate), so the header is ignored and the binding made"),
    Case("3.3.8-multi01", 400, (400,), (400,), why="two Call-ID/To/From/CSeq/Max-Forwards: 400"),
    Case("3.3.9-mcl01", 400, (400,), (400,), why="two Content-Length values: 400 (on a stream the "
         "framing is ambiguous: 400 and close)"),
    Case("3.3.10-bcast", ACCEPT, (), (), why="a 200 with a broadcast Via: a response, dropped as "
         "stray (we never answer toward 255.255.255.255)"),
    Case("3.3.11-zeromf", ACCEPT, (200,), (200,), why="Max-Forwards 0 at a UAS: processed as usual "
         "(483 is a proxy's answer)"),
    Case("3.3.12-cparam01", ACCEPT, (405,), (405,), 200, why="Contact header parameters: bound"),
    Case("3.3.13-cparam02", ACCEPT, (405,), (405,), 200, why="Contact URI parameters: bound"),
    Case("3.3.14-regescrt", ACCEPT, (405,), (405,), 200, why="escaped headers in the Contact URI: "
         "bound as given"),
    Case("3.3.15-sdp01", ACCEPT, (405,), (405,), why="INVITE whose Accept excludes SDP: the RFC's "
         "415/406 are an INVITE UAS's checks; we do not do INVITE: 405"),
    # 3.4 Backward compatibility.
    Case("3.4.1-inv2543", ACCEPT, (405,), UNTESTED, why="RFC 2543 INVITE without Content-Length: "
         "over UDP the body is the rest of the datagram, 405; the RFC sends it over UDP only "
         "(on a stream a missing Content-Length means no body, RFC 3261 18.3)"),
]
BY_NAME = {c.name: c for c in CASES}
REQUESTS = [c for c in CASES if not c.name.endswith(("unreason", "noreason", "scalarlg",
                                                      "bigcode", "bcast"))]


def load(case: Case) -> bytes:
    return (CORPUS / f"{case.name}.dat").read_bytes()


def test_the_table_covers_every_message_of_the_rfc() -> None:
    """49 messages (RFC 4475 3.1.1: 13, 3.1.2: 19, 3.2: 1, 3.3: 15, 3.4: 1), each in the table."""
    files = {p.stem for p in CORPUS.glob("*.dat")}
    assert files == set(BY_NAME) and len(files) == 49


def test_content_length_matches_the_body_where_the_rfc_means_it_to() -> None:
    """A check that the transcription is byte-exact: Content-Length equals the bytes after the
    empty line, except where the RFC's message is about a wrong or absent length."""
    wrong_on_purpose = {"3.1.1.8-dblreq", "3.1.2.2-clerr", "3.1.2.3-ncl", "3.1.2.15-baddn",
                        "3.3.9-mcl01", "3.4.1-inv2543"}
    for case in CASES:
        if case.name in wrong_on_purpose:
            continue
        data = load(case)
        head, sep, body = data.partition(b"\r\n\r\n")
        assert sep, case.name
        lengths = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.split(b":", 1)[0].strip().lower() in (b"content-length", b"l")]
        assert lengths == [str(len(body)).encode()], case.name


@pytest.mark.usefixtures("sip_parser")  # over both header splittings
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parser_verdict(case: Case) -> None:
    data = load(case)
    for datagram in (True, False):
        if case.parse == ACCEPT:
            msg = parse(data, datagram=datagram)
            assert isinstance(msg, Request | Response)
        else:
            with pytest.raises(SipParseError) as err:
                parse(data, datagram=datagram)
            assert err.value.status == case.parse and err.value.reason


@pytest.mark.usefixtures("sip_parser")  # over both header splittings
def test_valid_messages_keep_what_they_say() -> None:
    """The valid whitespace and character cases are read, not just let through."""
    wsinv = parse(load(BY_NAME["3.1.1.1-wsinv"]))
    assert isinstance(wsinv, Request)
    assert (wsinv.via.transport, wsinv.via.host, wsinv.branch) == ("UDP", "192.0.2.2", "390skdjuw")
    assert (wsinv.from_tag, wsinv.to_tag, wsinv.cseq) == ("98asjd8", "1918181833n", 9)
    intmeth = parse(load(BY_NAME["3.1.1.2-intmeth"]))
    assert isinstance(intmeth, Request)
    assert intmeth.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert "\\\x00" in intmeth.store["to"][0]
    dblreq = parse(load(BY_NAME["3.1.1.8-dblreq"]))
    assert isinstance(dblreq, Request) and dblreq.method == "REGISTER" and dblreq.body == b""


@pytest.mark.usefixtures("sip_parser")  # over both header splittings
@pytest.mark.parametrize("body", [b"\x00", b"a\x00", b"\\\\\x00"])
def test_a_nul_outside_a_quoted_pair_is_still_refused(body: bytes) -> None:
    """RFC 3261 25.1: only a quoted-pair may carry NUL (RFC 4475 3.1.1.2 relies on that)."""
    plain = load(BY_NAME["3.1.1.6-lwsdisp"])
    data = plain.replace(b"Max-Forwards: 70", b"Subject: " + body + b"\r\nMax-Forwards: 70")
    assert data != plain
    if body == b"\\\\\x00":  # an escaped backslash and then a bare NUL: our check is lenient
        assert isinstance(parse(data), Request)
        return
    with pytest.raises(SipParseError) as err:
        parse(data)
    assert err.value.status == 400


@pytest.mark.parametrize("case", [c for c in CASES if c.registrar is not None],
                         ids=lambda c: c.name)
def test_registrar_verdict(case: Case) -> None:
    req = parse(load(case))
    assert isinstance(req, Request) and req.method == "REGISTER"
    assert Registrar().handle(req, 1000.0).status == case.registrar


def bind_5060() -> socket.socket:
    """The RFC's Vias name no rport, so answers to parsed requests go to the sent-by port, 5060
    (RFC 3261 18.2.2) on the source address: the probe listens there."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 5060))
    except OSError as exc:
        sock.close()
        pytest.skip(f"127.0.0.1:5060/udp is taken ({exc})")
    return sock


@asynctest
async def test_endpoint_verdicts_over_udp() -> None:
    async with serving() as (ep, rec):
        loop = asyncio.get_running_loop()
        transport, probe = await loop.create_datagram_endpoint(UdpProbe, sock=bind_5060())
        try:
            for n, case in enumerate(REQUESTS + [c for c in CASES if c not in REQUESTS]):
                assert case.udp != UNTESTED
                transport.sendto(load(case), ep.local_address("udp"))
                transport.sendto(PROBE.replace(b"{n}", str(n).encode()), ep.local_address("udp"))
                answers = await replies_until_probe(probe.queue)
                assert tuple(answers) == case.udp, case.name
            assert rec.calls == []  # nothing of the RFC reached the MESSAGE handler
        finally:
            transport.close()


@asynctest
async def test_endpoint_verdicts_over_tcp() -> None:
    for case in CASES:
        if case.tcp == UNTESTED:
            continue
        # A fresh endpoint each time: the same branch again would be a retransmission.
        async with serving() as (ep, _):
            answers = await tcp_exchange(ep.local_address("tcp")[1], load(case))
        assert tuple(answers) == case.tcp, case.name


SWS = st.text(alphabet=" \t", max_size=3)


@given(a=SWS, b=SWS, c=SWS, d=SWS, e=SWS)
def test_sws_around_the_via_slash_and_the_tag_equal_changes_nothing(
    a: str, b: str, c: str, d: str, e: str
) -> None:
    """RFC 3261 25.1 SLASH = SWS "/" SWS, EQUAL = SWS "=" SWS, SEMI likewise (RFC 4475 3.1.1.1):
    any spelling reads as the compact one."""
    data = load(BY_NAME["3.1.1.6-lwsdisp"])
    data = data.replace(b"SIP/2.0/UDP", f"SIP{a}/{b}2.0{c}/{d}UDP".encode())
    data = data.replace(b";tag=323", f"{e};{a}tag{b}={c}323".encode())
    msg = parse(data)
    assert isinstance(msg, Request)
    assert (msg.via.transport, msg.via.host, msg.branch) == ("UDP", "funky.example.com",
                                                              "z9hG4bKkdjuw")
    assert msg.from_tag == "323"


@pytest.mark.parametrize(("text", "scheme"), [
    ("sip:a@b", "sip"), ("SIPS:a@b", "sips"), ("soap.beep://192.0.2.103:3002", "soap.beep"),
    ("nobodyKnowsThisScheme:totallyopaquecontent", "nobodyknowsthisscheme"),
    ("<sip:user@example.com>", None), ("user@example.com", None), ("1sip:a", None), (":a", None),
])
def test_uri_scheme(text: str, scheme: str | None) -> None:
    """RFC 3261 25.1 scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), case-insensitive."""
    assert uri_scheme(text) == scheme
