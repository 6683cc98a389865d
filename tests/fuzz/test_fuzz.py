"""Fuzzing with hypothesis (short, derandomised runs: part of ``make test``): every target gives
a defined error or a valid value for any input -- the contract in tests/fuzz/contract.py.

The long coverage-guided runs are the atheris harnesses in fuzz/ (``make fuzz``); RELIABILITY.md
"Fuzzing" has their figures.  More examples: ``HYPOTHESIS_PROFILE_FUZZ=fuzz-long`` and
``--timeout=0``.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.contract import (
    NODES,
    Node,
    ReceivePath,
    check_acm_body,
    check_fa_body,
    check_sip,
    check_stream,
)
from fuzz.strategies import (
    acm_bodies,
    fa_bodies,
    sip_inputs,
    unicode_in_headers,
    valid_acm,
    valid_sip,
)

settings.register_profile(
    "fuzz", derandomize=True, deadline=None, database=None, max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz-long", settings.get_profile("fuzz"), max_examples=5_000,
                          derandomize=False)  # run with --timeout=0 (pytest-timeout's 120 s)
FUZZ = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE_FUZZ", "fuzz"))


@FUZZ
@given(sip_inputs, st.booleans())
def test_sip_parser(data: bytes, datagram: bool) -> None:
    check_sip(data, datagram)


@FUZZ
@given(unicode_in_headers(), st.booleans())
def test_sip_parser_takes_any_unicode_in_any_header(data: bytes, datagram: bool) -> None:
    """Issue 13 item 6: any Unicode anywhere in the head (other scripts' digits in CSeq,
    Content-Length, Expires, a Via port...) gives a parsed message or SipParseError, and a
    number that parsed was written in ASCII digits (RFC 3261 25.1)."""
    msg = check_sip(data, datagram)
    if not isinstance(msg, Exception):
        cseq = msg.store["cseq"][0].split()[0]
        assert cseq.isascii() and int(cseq) == msg.cseq
        assert msg.via.port is None or str(msg.via.port) in msg.vias[0]


@FUZZ
@given(st.lists(unicode_in_headers(), min_size=1, max_size=3).map(b"".join),
       st.lists(st.integers(0, 10_000), max_size=6))
def test_stream_framer_takes_any_unicode(data: bytes, cuts: list[int]) -> None:
    check_stream(data, cuts)


@FUZZ
@given(valid_sip())
def test_valid_sip_parses(data: bytes) -> None:
    # the generator's baseline: unmutated messages are accepted (else the mutations prove little)
    from mcacm_sip.sip import Request, Response

    assert isinstance(check_sip(data), Request | Response)


@FUZZ
@given(st.lists(sip_inputs, min_size=1, max_size=3).map(b"".join),
       st.lists(st.integers(0, 10_000), max_size=6))
def test_stream_framer(data: bytes, cuts: list[int]) -> None:
    check_stream(data, cuts)


@FUZZ
@given(acm_bodies)
def test_acm_decoder(data: bytes) -> None:
    check_acm_body(data)


@FUZZ
@given(valid_acm)
def test_valid_acm_decodes(data: bytes) -> None:
    from mcacm_sip.acm.errors import AcmError

    assert not isinstance(check_acm_body(data), AcmError)


@FUZZ
@given(fa_bodies)
def test_fa_decoder(case: tuple[str, bytes]) -> None:
    check_fa_body(*case)


@pytest.mark.parametrize("node", NODES)
def test_receive_path(node: Node) -> None:
    """Bytes into a running ACMS's or FA controlling server's endpoint (datagram and
    stream): a defined answer or silence, never an exception; the node still answers a valid
    request afterwards."""
    loop = asyncio.new_event_loop()
    rp = ReceivePath(node)
    loop.run_until_complete(rp.start())
    try:
        @FUZZ
        @given(sip_inputs | unicode_in_headers(), st.booleans())
        def one(data: bytes, datagram: bool) -> None:
            loop.run_until_complete(rp.acheck(data, datagram))

        one()
        options = (f"OPTIONS {rp.uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;"
                   f"branch=z9hG4bKafter\r\nFrom: <sip:x@y>;tag=1\r\nTo: <{rp.uri}>"
                   f"\r\nCall-ID: after@fuzz\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                   ).encode()
        answer = loop.run_until_complete(rp.acheck(options))
        assert [r.split(b"\r\n", 1)[0] for r in answer.responses] == [b"SIP/2.0 200 OK"]
    finally:
        loop.run_until_complete(rp.stop())
        loop.close()
