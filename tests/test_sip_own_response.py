"""A response to one of our own requests, read by ``own_response`` and matched at once
(``TransactionLayer.receive_response_data``), is what ``parse`` and ``receive_response`` make
of it, or is left to them; and no response reaches a transaction it does not belong to
(RFC 3261 17.1.3: branch and CSeq method; 18.1.2: the sent-by we wrote; 8.1.3.3: one Via).

Run over both header splittings (the ``sip_parser`` fixture, tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_sip_parser_c import mutate as mutate_bytes

from mcacm_sip.sip import Peer, Response, TransactionLayer, build_response, parse
from mcacm_sip.sip.aio import Listen, SipEndpoint
from mcacm_sip.sip.errors import SipParseError
from mcacm_sip.sip.message import Limits, Request, own_response
from mcacm_sip.sip.request import encode_request, new_request, sent_text
from mcacm_sip.sip.transaction import Action, DeliverResponse, _sent_text

pytestmark = pytest.mark.usefixtures("sip_parser")

CORPUS = Path(__file__).parent / "sip" / "corpus"
SEEDS = sorted(CORPUS.glob("*.sip")) + sorted((CORPUS / "rfc4475").glob("*.dat"))
PEER = Peer("udp", "192.0.2.7", 5060)
BRANCH = "z9hG4bK0123456789abcdef"
KEY = (BRANCH, "MESSAGE")


def our_request(host: str = "192.0.2.1", port: int = 5070, transport: Any = "udp",
                branch: str = BRANCH) -> bytes:
    req = new_request("MESSAGE", "sip:acms@192.0.2.7", from_uri="sip:a@example.com",
                      to_uri="sip:acms@example.com", body=b"<x/>",
                      content_type="application/vnd.3gpp.mcptt-info+xml",
                      headers=[("X-CID", "1")])
    return encode_request(req, branch, transport, host, port, "mcacm/test")


def answer(request: bytes, status: int = 200, reason: str | None = None,
           headers: tuple[tuple[str, str], ...] = (), stamped: bool = True) -> bytes:
    """The response a UAS writes (build_response), from the request as it received it
    (``stamped``: RFC 3581 rport and received added, as by our own ACMS)."""
    req = parse(request)
    assert isinstance(req, Request)
    if stamped:
        from mcacm_sip.sip.message import Arrival
        req.stamp_source(Arrival("udp", "198.51.100.9", 40000))
    return build_response(req, status, reason, headers=headers, server="peer/1")


def sipp_answer(request: bytes) -> bytes:
    """The 200 SIPp's UAS writes: the Via, From, To, Call-ID and CSeq lines as received."""
    lines = request[:request.index(b"\r\n\r\n")].split(b"\r\n")[1:]
    keep = [line + b";tag=uas" if line.startswith(b"To:") else line for line in lines
            if line.split(b":")[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")]
    return b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n"


def seen(msg: Response) -> tuple[Any, ...]:
    """Everything a user of a response reads of it."""
    return (type(msg), msg.status, msg.reason, msg.cseq, msg.cseq_method, msg.call_id,
            msg.branch, msg.store, msg.body, msg.via, msg.sent_by(), msg.via_has("rport"),
            msg.via_has("received"), msg.from_tag, msg.to_tag, msg.vias,
            msg.header("warning"), msg.header("retry-after"), msg.raw.headers._original,
            msg.raw.body)


DEFAULT = Limits()


def same_or_left(data: bytes, sent: Callable[[str, str], str | None],
                 limits: Limits = DEFAULT) -> Response | None:
    """``own_response(data)``, checked against ``parse(data)``: equal, or None."""
    got = own_response(data, sent, limits)
    if got is None:
        return None
    try:
        want = parse(data, limits=limits)
    except SipParseError as err:  # pragma: no cover - the failure this test looks for
        raise AssertionError(f"own_response read what parse refuses ({err.reason}): {data!r}"
                             ) from err
    assert isinstance(want, Response)
    assert seen(got) == seen(want), data
    return got


def ours(request: bytes) -> Callable[[str, str], str | None]:
    """``sent_by`` of a layer holding one live transaction: ``request`` under KEY."""
    text = _sent_text(request)
    return lambda branch, method: text if (branch, method) == KEY else None


# --- the common responses take the fast path --------------------------------------------

@pytest.mark.parametrize("make", [answer, sipp_answer,
                                  lambda r: answer(r, stamped=False),
                                  lambda r: answer(r, 480, headers=(
                                      ("Warning", '399 acms.example "busy"'),
                                      ("Retry-After", "5"))),
                                  lambda r: answer(r, 100)])
def test_the_responses_of_our_peers_are_read_by_the_fast_path(make: Callable[[bytes], bytes]
                                                              ) -> None:
    """What our own ACMS (stamped Via, Server), SIPp (lines as received) and a refusing peer
    (Warning, Retry-After) answer is read without the general parser, as it reads it."""
    request = our_request()
    assert same_or_left(make(request), ours(request)) is not None


# --- equivalence: any response, any mutation ----------------------------------------------

_PIECES = [b"Via", b"v", b"V", b"via", b"f", b"From", b"t", b"To", b"i", b"Call-ID", b"CSeq",
           b"l", b"Content-Length", b"Warning", b":", b": ", b" ", b"\t", b"\r\n", b"\n", b"\r",
           b"\r\n ", b"\n\t", b",", b", ", b'"', b"<", b">", b";", b"=", b"\x00", b"\x0b",
           b"\x1c", b"\x7f", b"\x85", b"\xc3\xa9", b"\xff", b"0", b"1", b"9", b"MESSAGE",
           b"INVITE", b"message", b";branch=", b"z9hG4bK", b";rport", b";received=1.2.3.4",
           b"SIP/2.0/UDP 192.0.2.1:5070", b"SIP/2.0/TCP 192.0.2.1:5070", b"192.0.2.2",
           b"SIP/2.0 ", b"SIP/2.1 ", b"200", b"2000", b"\r\n\r\n", b"\n\n", b"OK"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    return mutate_bytes(rng, data, _PIECES, most=4, span=40)


_STATUS = st.sampled_from([100, 180, 200, 202, 400, 480, 481, 500, 503, 603])
_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)


_TIGHT = [Limits(max_headers=5), Limits(max_header_bytes=200), Limits(max_body_bytes=2)]


@pytest.mark.parametrize(("old", "new", "limits", "read"), [
    (b"", b"", Limits(), True),
    (b"CSeq: 1 ", b"CSeq: 999999999 ", Limits(), True),
    (b"CSeq: 1 ", b"CSeq: 4294967296 ", Limits(), False),  # RFC 3261 8.1.1.5: < 2**31
    (b"CSeq: 1 ", b"CSeq: 2147483648 ", Limits(), False),
    (b"CSeq: 1 ", b"CSeq: 1", Limits(), False),
    (b"Content-Length: 0\r\n\r\n", b"Content-Length: 1\r\n\r\nab", Limits(), True),
    (b"Content-Length: 0\r\n\r\n", b"Content-Length: 3\r\n\r\nab", Limits(), False),
    (b"Content-Length: 0\r\n\r\n", b"Content-Length: 3\r\n\r\nabc",
     Limits(max_body_bytes=2), False),
    (b"", b"", Limits(max_headers=5), False),
    (b"", b"", Limits(max_header_bytes=100), False),
    (b"\r\nCall-ID", b"\r\nX-A: 1\n\nCall-ID", Limits(), False),  # an LF LF ends the block
    (b"SIP/2.0 200 OK", b"SIP/2.0 200 OK\x1f", Limits(), True),  # kept: bytes.strip()
    (b"SIP/2.0 200 OK", b"SIP/2.0 200", Limits(), False),
    (b"SIP/2.0 200 OK", b"SIP/2.0 099 OK", Limits(), False),
])
def test_numbers_bodies_and_caps_are_read_as_parse_reads_them(
        old: bytes, new: bytes, limits: Limits, read: bool) -> None:
    request = our_request()
    data = forged(sipp_answer(request), old, new) if old else sipp_answer(request)
    got = same_or_left(data, ours(request), limits)
    assert (got is not None) is read


@settings(max_examples=600, deadline=None)
@given(_STATUS, st.none() | _TEXT,
       st.lists(st.tuples(st.sampled_from(["Warning", "Retry-After", "Contact", "X-A", "Via",
                                           "CSeq", "Call-ID", "To", "Content-Length"]),
                          _TEXT), max_size=3),
       st.booleans(), st.integers(0, 2**32 - 1), st.sampled_from(["udp", "tcp"]),
       st.sampled_from(["192.0.2.1", "acms.example.com", "::1", "h_1"]),
       st.integers(1, 65535))
@example(200, None, [], True, 0, "udp", "192.0.2.1", 5070)
def test_own_response_is_parse_or_leaves_it_to_parse(
        status: int, reason: str | None, headers: list[tuple[str, str]], stamped: bool,
        seed: int, transport: str, host: str, port: int) -> None:
    """For any response (any status, reason, extra headers, stamped Via or not) to a request
    we wrote from any address, and up to 30 random mutations of it (folds, bare CR/LF, NUL,
    compact names, duplicates, forged Vias and CSeqs, non-ASCII, cut or grown bodies):
    ``own_response`` returns exactly what ``parse`` returns, or None."""
    request = our_request(host, port, transport)
    try:
        clean = answer(request, status, reason, tuple(headers), stamped)
    except ValueError:  # a line break in our own header value: refused on send
        return
    rng = random.Random(seed)
    sent = ours(request)
    for data in [clean, *(mutate(rng, clean) for _ in range(30))]:
        same_or_left(data, sent)
        for limits in _TIGHT:
            same_or_left(data, sent, limits)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name)
def test_the_corpus_and_rfc4475_torture_messages_are_parsed_or_left(seed: Path) -> None:
    """Every corpus and RFC 4475 message, as sent and 80 mutations of it, with a layer that
    claims the message's own top Via and CSeq method as its live transaction (the most an
    attacker can hope for): ``own_response`` is ``parse`` or None."""
    rng = random.Random(seed.name)
    original = seed.read_bytes()
    for data in [original, *(mutate(rng, original) for _ in range(80))]:
        head = data.split(b"\r\n\r\n")[0].decode("latin-1")
        via = next((line[5:] for line in head.split("\r\n") if line.startswith("Via: ")), "")
        text = via.split(";")[0]
        same_or_left(data, lambda branch, method, text=text: text)  # type: ignore[misc]


# --- what an attacker writes ---------------------------------------------------------------

def deliver(layer: TransactionLayer, data: bytes, now: float = 0.1) -> list[Action]:
    """What the endpoint does with a response (SipEndpoint.on_message)."""
    actions = layer.receive_response_data(data, PEER, now)
    if actions is not None:
        return actions
    try:
        msg = parse(data)
    except SipParseError:
        return []
    assert isinstance(msg, Response)
    return layer.receive_response(msg, PEER, now)


def live(request: bytes, sent: str | None = None) -> TransactionLayer:
    """A layer with ``request`` sent (``sent``: its Via's sent-by handed over by the writer,
    as the endpoint does; None: read from the bytes)."""
    layer = TransactionLayer()
    layer.send_request(KEY, request, PEER, 0.0, sent)
    return layer


def delivered(actions: list[Action]) -> list[int]:
    return [a.response.status for a in actions if isinstance(a, DeliverResponse)]


def forged(good: bytes, old: bytes, new: bytes) -> bytes:
    assert old in good
    return good.replace(old, new, 1)


_FORGERIES = {
    # our branch, another sent-by (RFC 3261 18.1.2)
    "other host": (b"SIP/2.0/UDP 192.0.2.1:5070;", b"SIP/2.0/UDP 203.0.113.66:5070;"),
    "other port": (b"SIP/2.0/UDP 192.0.2.1:5070;", b"SIP/2.0/UDP 192.0.2.1:5071;"),
    "other transport": (b"SIP/2.0/UDP 192.0.2.1:5070;", b"SIP/2.0/TCP 192.0.2.1:5070;"),
    "no port": (b"SIP/2.0/UDP 192.0.2.1:5070;", b"SIP/2.0/UDP 192.0.2.1;"),
    "host spelled longer": (b"SIP/2.0/UDP 192.0.2.1:5070;", b"SIP/2.0/UDP 192.0.2.10:5070;"),
    # our branch and sent-by, another method (RFC 3261 17.1.3)
    "other method": (b" MESSAGE\r\n", b" INVITE\r\n"),
    "method in lower case": (b" MESSAGE\r\n", b" message\r\n"),
    # our Via and another (RFC 3261 8.1.3.3), in one header or two
    "second Via line": (b"\r\nFrom:", b"\r\nVia: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bKx"
                                      b"\r\nFrom:"),
    "second Via value": (b";rport\r\n", b";rport, SIP/2.0/UDP 203.0.113.66;branch=z9hG4bKx\r\n"),
    "forged Via on top": (b"\r\nVia: ", b"\r\nVia: SIP/2.0/UDP 203.0.113.66:5060;branch="
                                        b"z9hG4bK0123456789abcdef\r\nVia: "),
    # the branch as a prefix or a longer value of ours
    "branch longer": (BRANCH.encode() + b";", BRANCH.encode() + b"0;"),
    "branch shorter": (BRANCH.encode() + b";", BRANCH[:-1].encode() + b";"),
}


@pytest.mark.parametrize("handed", [False, True], ids=["read", "handed"])
@pytest.mark.parametrize("name", sorted(_FORGERIES))
def test_a_forged_response_reaches_no_transaction(name: str, handed: bool) -> None:
    """A 200 that is ours except for its sent-by, CSeq method, a second Via or its branch is
    dropped, on the fast path and the general one, and the transaction still takes the real
    200 afterwards; with our Via's sent-by read from the request's bytes or handed over by
    its writer (the endpoint's way, ``request.sent_text``)."""
    request = our_request()
    layer = live(request, sent_text("udp", "192.0.2.1", 5070) if handed else None)
    good = sipp_answer(request)
    old, new = _FORGERIES[name]
    assert delivered(deliver(layer, forged(good, old, new))) == []
    assert layer.client_count == 1
    assert delivered(deliver(layer, good)) == [200]


def test_a_forged_response_in_a_form_the_fast_path_leaves_is_dropped_too() -> None:
    """The same forgeries in compact form (the general parser reads them): dropped."""
    request = our_request()
    layer = live(request)
    good = sipp_answer(request).replace(b"\r\nVia: ", b"\r\nv: ")
    for old, new in _FORGERIES.values():
        if old in good:
            assert delivered(deliver(layer, good.replace(old, new, 1))) == []
    assert delivered(deliver(layer, good)) == [200]


def test_a_response_for_a_finished_transaction_is_absorbed() -> None:
    """A 200 again (a retransmission, or a forged one) after the final response: no second
    delivery, on any path; nor a 200 for a transaction never started."""
    request = our_request()
    layer = live(request)
    good = sipp_answer(request)
    assert delivered(deliver(layer, good)) == [200]
    assert deliver(layer, good, 0.2) == []
    assert deliver(layer, good.replace(b"\r\nVia: ", b"\r\nv: "), 0.3) == []
    assert deliver(layer, answer(request, 503), 0.4) == []
    stranger = sipp_answer(our_request(branch="z9hG4bKnever"))
    assert deliver(layer, stranger) == []


def test_a_response_to_a_request_with_another_via_address_is_matched_by_its_own() -> None:
    """Two transactions from two addresses of ours: each 200 goes to its own, by sent-by."""
    layer = TransactionLayer()
    first, second = our_request(), our_request("192.0.2.2", 5080, branch="z9hG4bKsecond")
    layer.send_request(KEY, first, PEER, 0.0)
    layer.send_request(("z9hG4bKsecond", "MESSAGE"), second, PEER, 0.0)
    crossed = sipp_answer(first).replace(b"192.0.2.1:5070;branch=" + BRANCH.encode(),
                                         b"192.0.2.2:5080;branch=" + BRANCH.encode())
    assert deliver(layer, crossed) == []
    assert [a.key for a in deliver(layer, sipp_answer(second))
            if isinstance(a, DeliverResponse)] == [("z9hG4bKsecond", "MESSAGE")]
    assert [a.key for a in deliver(layer, sipp_answer(first))
            if isinstance(a, DeliverResponse)] == [KEY]


def test_the_sent_by_is_compared_as_the_rfc_compares_it() -> None:
    """RFC 3261 18.1.2 compares values, not spellings: a host in another case, or a port
    written where ours was the default, is still ours (the general path decides those)."""
    request = our_request("acms.example.com", 5060)
    layer = live(request)
    upper = sipp_answer(request).replace(b"acms.example.com:5060", b"ACMS.example.COM:5060")
    assert delivered(deliver(layer, upper)) == [200]


# --- the C reading is the Python one ------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(_STATUS, st.integers(0, 2**32 - 1), st.sampled_from([(65536, 256, 1 << 20),
                                                            (200, 5, 2), (400, 6, 0)]))
def test_c_reads_a_response_as_python_does(status: int, seed: int,
                                           caps: tuple[int, int, int]) -> None:
    """``_cparse.own_parts`` == ``_py_own_parts`` (tuple for tuple, None for None) for our
    peers' responses and up to 40 mutations each, under three sets of caps."""
    from tools import require_c_parser

    from mcacm_sip.sip import message

    require_c_parser()
    c_parts = message._load_own_parts(compiled=True)
    rng = random.Random(seed)
    request = our_request()
    for clean in (sipp_answer(request), answer(request, status, headers=(("Warning", "399 x"),))):
        for data in [clean, *(mutate(rng, clean) for _ in range(40))]:
            assert c_parts(data, *caps) == message._py_own_parts(data, *caps), data


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name)
def test_c_reads_every_mutated_corpus_message_as_python_does(seed: Path) -> None:
    from tools import require_c_parser

    from mcacm_sip.sip import message

    require_c_parser()
    c_parts = message._load_own_parts(compiled=True)
    rng = random.Random(seed.name)
    original = seed.read_bytes()
    for data in [original, *(mutate(rng, original) for _ in range(80))]:
        assert c_parts(data, 65536, 256, 1 << 20) == message._py_own_parts(
            data, 65536, 256, 1 << 20), data


@pytest.mark.parametrize("method", [b"MES@SAGE", b"MESSAGE;", b"M\x7fSG", b"FOO"])
def test_a_cseq_method_outside_the_known_ones_is_left_to_parse(method: bytes) -> None:
    """Even for a layer that would take any method: the general grammar decides a CSeq
    method we never send (RFC 3261 20.16: a token; "FOO" is one, and parse reads it)."""
    request = our_request()
    data = forged(sipp_answer(request), b" MESSAGE\r\n", b" " + method + b"\r\n")
    text = _sent_text(request)
    assert same_or_left(data, lambda branch, m: text) is None


def test_the_endpoint_gives_a_forged_response_to_no_send() -> None:
    """Over UDP: the partner holds our MESSAGE; 200s with our branch but a forged sent-by, a
    second Via or another method reach ``on_message`` first and settle nothing; the partner's
    real 200 (its stamped Via: the fast path) then settles the send."""
    from test_sip_send_soon import _endpoints, _outcome

    async def main() -> None:
        server, client, seen = await _endpoints(answer=False)
        try:
            got = _outcome(client, "sip:acms@partner.invalid", 5.0)
            while not seen:
                await asyncio.sleep(0.01)
            req = seen[0].message
            real = build_response(req, 200)
            host, port = client.local_address("udp")
            ours = f"SIP/2.0/UDP {host}:{port};".encode()
            source = Peer("udp", *server.local_address("udp"))
            for forgery in (real.replace(ours, b"SIP/2.0/UDP 203.0.113.66:5060;"),
                            real.replace(b"\r\nFrom:", b"\r\nVia: SIP/2.0/UDP 203.0.113.66"
                                         b";branch=z9hG4bKx\r\nFrom:"),
                            real.replace(b" MESSAGE\r\n", b" OPTIONS\r\n")):
                assert forgery != real
                client.on_message(forgery, source, True)
                await asyncio.sleep(0)
                assert not got.done()
            assert own_response(real, client.txn._sent_by) is not None  # the fast path's
            client.on_message(real, source, True)
            fut = await asyncio.wait_for(got, 5.0)
            assert fut.result().status == 200  # type: ignore[attr-defined]
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


class _ByActions(SipEndpoint):
    """The endpoint as round 11 handed a response of the fast path over: as the actions of
    ``receive_response_data``, run by ``_run`` (the general route every other response
    takes); any other message as ``SipEndpoint`` does."""

    def on_message(self, data: bytes, source: Peer, datagram: bool,
                   local: tuple[str, int] = ("", 0)) -> None:
        if data[:8] == b"SIP/2.0 ":
            actions = self.txn.receive_response_data(data, source, self._now(), self.limits)
            if actions is not None:
                self._run(actions)
                return
        super().on_message(data, source, datagram, local)


def _wire() -> Any:
    """A UDP transport that keeps what is sent (``out``)."""
    out: list[bytes] = []
    return SimpleNamespace(out=out, sendto=lambda data, addr=None: out.append(data),
                           close=lambda: None)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.sampled_from([None, 5.0, 40.0]), min_size=1,
                                        max_size=6))
def test_the_endpoint_hands_a_response_over_as_its_action_would(
        seed: int, timeouts: list[float | None]) -> None:
    """``on_message`` delivers a response of the fast path itself (round 12: no action list,
    no DeliverResponse): the same outcomes handed to ``send_soon``'s callbacks, the same
    records, bytes out, transactions and timer as the action route, over drawn sends and
    what comes back for each (its 200 mutated, forged, provisional, retransmitted), each
    after a loop pass (fails with a provisional response delivered, the record or the
    callback skipped, or the transaction left live)."""
    import logging

    import mcacm_sip.sip.aio.endpoint as endpoint_module

    async def run(cls: type[SipEndpoint]) -> list[Any]:
        now = [100.0]
        ep = cls([Listen("udp", "127.0.0.1", 0)], clock=lambda: now[0],
                 locate=lambda raw: Peer("udp", "192.0.2.7", 5060))
        await ep.start()
        family, (_, protocol) = next(iter(ep._udp.items()))
        wire = _wire()
        ep._udp[family] = (wire, protocol)
        ep._vias[("udp", False)] = ("192.0.2.1", 5070)  # both endpoints write the same Via
        seen: list[Any] = []

        class Records(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(("log", record.levelno, record.getMessage(),
                             getattr(record, "call_id", None), getattr(record, "role", None),
                             getattr(record, "peer", None)))

        def done(fut: Any) -> None:
            if fut.cancelled() or fut.exception() is not None:
                seen.append(("outcome", repr(None if fut.cancelled() else fut.exception())))
                return
            final = fut.result()
            seen.append(("outcome", final.status, final.message.reason,
                         dict(final.message.store), final.message.body, final.source,
                         final.request.call_id))

        handler = Records()
        logging.getLogger("mcacm.sip").addHandler(handler)
        ids = iter(f"{n:016x}" for n in range(10**6))
        real_token_hex = getattr(endpoint_module, "token_hex")  # noqa: B009
        setattr(endpoint_module, "token_hex",  # noqa: B010 (the same branches)
                lambda nbytes: next(ids)[: 2 * nbytes])
        try:
            for n, timeout in enumerate(timeouts):
                request = ep.new_request("MESSAGE", "sip:acms@192.0.2.7", from_uri="sip:a@x",
                                         to_uri="sip:acms@x", from_tag=f"t{n}",
                                         call_id=f"c{n}", body=b"<x/>")
                ep.send_soon(request, timeout, done)
                sent = wire.out[-1]
                if sent not in made:  # by the first endpoint; the second gets the same bytes
                    good = sipp_answer(sent)
                    replies = [mutate(rng, good) for _ in range(6)]
                    replies += [forged(good, old, new) for old, new in _FORGERIES.values()
                                if old in good]
                    replies += [good.replace(b"200 OK", b"180 Ringing"),
                                answer(sent, 183), answer(sent, rng.choice([200, 202, 486]))]
                    rng.shuffle(replies)
                    made[sent] = [*replies, good, good]
                for data in made[sent]:
                    now[0] += 0.01
                    ep.on_message(data, Peer("udp", "192.0.2.7", 5060), True)
                    await asyncio.sleep(0)
                    # (an error answer's To tag is drawn: not compared)
                    out = [re.sub(rb";tag=[0-9a-f]{20}\r\n", b";tag=T\r\n", d) for d in wire.out]
                    seen.append(("state", out, ep.txn.client_count,
                                 ep.txn.get_timer(), ep._timer.deadline))
                    wire.out.clear()
        finally:
            setattr(endpoint_module, "token_hex", real_token_hex)  # noqa: B010
            logging.getLogger("mcacm.sip").removeHandler(handler)
            await ep.close()
        return seen

    rng = random.Random(seed)
    made: dict[bytes, list[bytes]] = {}
    fast = asyncio.run(run(SipEndpoint))
    assert any(entry[0] == "outcome" for entry in fast)
    assert fast == asyncio.run(run(_ByActions))
