"""Issue 13 item 6: numbers in SIP are ASCII DIGIT (RFC 3261 25.1).  Other scripts' digits
(full-width, Arabic-Indic) and superscripts in CSeq, Content-Length, Expires, a Via port or a
status code get the parser's own answer, over real sockets, and never an exception: the
connection stays usable and the next request on it is answered.  The fuzz property is
tests/fuzz/test_fuzz.py::test_sip_parser_takes_any_unicode_in_any_header.
"""

from __future__ import annotations

import asyncio

import pytest

from mcacm_sip.sip import SipParseError, Timers, parse
from mcacm_sip.sip.aio import Listen, SipEndpoint
from mcacm_sip.sip.aio.usages import RegistrarService
from mcacm_sip.sip.dialog import BadRequest, parse_expires, parse_retry_after
from mcacm_sip.sip.message import head_end
from mcacm_sip.sip.registrar import Registrar
from mcacm_sip.text import ascii_int

FULLWIDTH_1 = "\uff11"
ARABIC_INDIC_10 = "\u0661\u0660"
SUPERSCRIPT_2 = "\u00b2"
FAST = Timers(t1=0.05, t2=0.4, t4=0.5)


def options(port: int, transport: str = "UDP", *, cseq: str = "1", length: str | None = None,
            via_port: str | None = None, call_id: str = "c1", body: str = "") -> bytes:
    lines = [
        "OPTIONS sip:x@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/{transport} 127.0.0.1:{via_port or port};branch=z9hG4bK{call_id};rport",
        "From: <sip:a@127.0.0.1>;tag=1", "To: <sip:x@127.0.0.1>", f"Call-ID: {call_id}",
        f"CSeq: {cseq} OPTIONS",
        f"Content-Length: {length if length is not None else len(body.encode())}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


@pytest.mark.parametrize("text", [FULLWIDTH_1, ARABIC_INDIC_10, SUPERSCRIPT_2, "1" + SUPERSCRIPT_2,
                                  "+1", " 1", "-0", ""])
def test_ascii_int_takes_only_ascii_digits(text: str) -> None:
    assert ascii_int(text) is None


def test_ascii_int_reads_ascii_digits() -> None:
    assert ascii_int("0") == 0 and ascii_int("0042") == 42


@pytest.mark.parametrize(("field", "value"), [
    ("cseq", FULLWIDTH_1), ("cseq", ARABIC_INDIC_10), ("cseq", SUPERSCRIPT_2),
    ("length", ARABIC_INDIC_10), ("length", SUPERSCRIPT_2), ("length", FULLWIDTH_1),
    ("via_port", "\uff15\uff10\uff16\uff10"), ("via_port", SUPERSCRIPT_2),
])
def test_other_digits_get_400_from_the_parser(field: str, value: str) -> None:
    data = options(5060, **{field: value})
    with pytest.raises(SipParseError) as err:
        parse(data)
    assert err.value.status == 400


def test_a_status_code_in_other_digits_is_no_response() -> None:
    data = ("SIP/2.0 \uff12\uff10\uff10 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
            "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n").encode()
    with pytest.raises(SipParseError):
        parse(data)


@pytest.mark.parametrize("value", [FULLWIDTH_1, ARABIC_INDIC_10, SUPERSCRIPT_2])
def test_expires_and_retry_after_in_other_digits(value: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_expires(value)
    assert err.value.status == 400
    assert parse_retry_after(value) is None


async def udp_exchange(dest: tuple[str, int], data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    got: asyncio.Queue[bytes] = asyncio.Queue()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            got.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    try:
        transport.sendto(data, dest)
        return await asyncio.wait_for(got.get(), 10)
    finally:
        transport.close()


def status_and_warning(data: bytes) -> tuple[int, str]:
    """Status and reason of an answer (read from its start line: a 400 echoes the CSeq it
    refused, RFC 3261 8.2.6.2, so the answer need not parse itself)."""
    _, status, reason = data.split(b"\r\n", 1)[0].decode().split(" ", 2)
    return int(status), reason


def test_full_width_cseq_over_udp_is_refused_with_400() -> None:
    """Before: accepted as CSeq 1 (200)."""

    async def main() -> None:
        ep = SipEndpoint([Listen("udp", "127.0.0.1", 0)], timers=FAST)
        await ep.start()
        try:
            dest = ep.local_address("udp")
            assert status_and_warning(await udp_exchange(dest, options(
                dest[1], cseq=FULLWIDTH_1))) == (400, "Bad CSeq")
            assert (await udp_exchange(dest, options(dest[1], call_id="c2")))[:11] == \
                b"SIP/2.0 200"
        finally:
            await ep.close()

    asyncio.run(main())


@pytest.mark.parametrize("bad", [{"cseq": SUPERSCRIPT_2}, {"cseq": ARABIC_INDIC_10},
                                 {"via_port": SUPERSCRIPT_2}])
def test_over_tcp_the_pipelined_request_after_a_bad_number_is_answered(
        bad: dict[str, str]) -> None:
    """One TCP segment: a request with a number in other digits, then a valid one.  The first
    gets 400, the second 200 on the same connection (before: an exception in the receive
    path closed the connection and the valid request was lost)."""

    async def main() -> None:
        ep = SipEndpoint([Listen("tcp", "127.0.0.1", 0)], timers=FAST)
        await ep.start()
        try:
            reader, writer = await asyncio.open_connection(*ep.local_address("tcp"))
            port = writer.get_extra_info("sockname")[1]
            writer.write(options(port, "TCP", call_id="bad", **bad)
                         + options(port, "TCP", call_id="good"))
            statuses: list[tuple[int, bool]] = []
            buf = b""
            while len(statuses) < 2:
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                assert chunk, f"connection closed after {statuses}"
                buf += chunk
                while (end := head_end(buf))[0] >= 0:
                    head, buf = buf[:end[0] + end[1]], buf[end[0] + end[1]:]
                    statuses.append((int(head[8:11]), b"Call-ID: good" in head))
            assert statuses == [(400, False), (200, True)]
            writer.close()
        finally:
            await ep.close()

    asyncio.run(main())


def test_over_tcp_content_length_in_other_digits_gets_400_then_close() -> None:
    """Decision (docs/decisions.md "Reliability: hostile input"): a stream message whose
    Content-Length is not ASCII digits cannot be framed (RFC 3261 18.3), so nothing after it on
    that connection can be found: 400, then the connection is closed, as for any unframeable
    head.  Over UDP the datagram is the frame: 400 and the socket goes on."""

    async def main() -> None:
        ep = SipEndpoint([Listen("tcp", "127.0.0.1", 0), Listen("udp", "127.0.0.1", 0)],
                         timers=FAST)
        await ep.start()
        try:
            reader, writer = await asyncio.open_connection(*ep.local_address("tcp"))
            port = writer.get_extra_info("sockname")[1]
            writer.write(options(port, "TCP", length=ARABIC_INDIC_10, body="x" * 10))
            data = await asyncio.wait_for(reader.read(), 10)  # until the close
            assert data.startswith(b"SIP/2.0 400 Bad Content-Length")
            writer.close()
            dest = ep.local_address("udp")
            assert status_and_warning(await udp_exchange(dest, options(
                dest[1], length=ARABIC_INDIC_10, body="x" * 10))) == (400, "Bad Content-Length")
        finally:
            await ep.close()

    asyncio.run(main())


def test_register_expires_in_other_digits_gets_400() -> None:
    async def main() -> None:
        ep = SipEndpoint([Listen("udp", "127.0.0.1", 0)], timers=FAST)
        registrar = Registrar()
        service = RegistrarService(ep, registrar)
        service.start()
        await ep.start()
        try:
            host, port = ep.local_address("udp")
            data = (f"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKr1;rport\r\n"
                    "From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n"
                    "Call-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@127.0.0.1:9>\r\n"
                    f"Expires: {ARABIC_INDIC_10}\r\nContent-Length: 0\r\n\r\n").encode()
            assert status_and_warning(await udp_exchange((host, port), data))[0] == 400
            assert registrar.contacts("sip:a@example.com", 0) == ()
        finally:
            await service.close()
            await ep.close()

    asyncio.run(main())
