"""``runtime/wire.py``: what metrics, HEP and load statistics read from raw SIP bytes -- any
spelling a peer may use (RFC 3261 7.3.1: case-insensitive names, compact ``i``, spaces before
the colon), and never an exception, whatever arrives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.runtime.wire import Retransmissions, summarise


def test_every_spelling_of_call_id_and_cseq() -> None:
    for head in (b"Call-ID: a@b\r\nCSeq: 12 MESSAGE", b"call-id:a@b\r\ncseq:12 message",
                 b"i : a@b\r\nCSEQ :  12  MESSAGE", b"CALL-ID:\ta@b\r\nCSeq:\t12 MESSAGE"):
        s = summarise(b"SIP/2.0 202 Accepted\r\n" + head + b"\r\n\r\n")
        assert (s.status, s.method, s.call_id, s.cseq_method) == (202, None, "a@b", "MESSAGE")
        assert s.cseq is not None and s.cseq[0] == 12
    r = summarise(b"REGISTER sip:x SIP/2.0\r\ni: z\r\nCSeq: 1 REGISTER\r\n\r\n")
    assert (r.method, r.status, r.call_id, r.cseq) == ("REGISTER", None, "z", (1, "REGISTER"))


def test_the_body_is_not_read_as_headers() -> None:
    s = summarise(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 30\r\n\r\n"
                  b"\r\nCall-ID: body\r\nCSeq: 9 BYE\r\n")
    assert (s.call_id, s.cseq) == (None, None)


@given(st.binary(max_size=400))
def test_any_bytes_give_a_summary(data: bytes) -> None:
    s = summarise(data)
    assert s.status is None or 100 <= s.status <= 699  # a bounded metrics label
    Retransmissions().sent(s)


def test_retransmissions_are_the_same_request_again() -> None:
    first = b"MESSAGE sip:x SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\r\n"
    later = b"MESSAGE sip:x SIP/2.0\r\nCall-ID: c\r\nCSeq: 2 MESSAGE\r\n\r\n"
    counter = Retransmissions(limit=2)
    assert [counter.sent(summarise(m)) for m in (first, first, later, first)] == [
        False, True, False, True]
    ack = b"ACK sip:x SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n"
    assert not counter.sent(summarise(ack)) and not counter.sent(summarise(ack))
    assert counter.count == 2


def test_a_status_outside_1xx_6xx_is_not_one() -> None:
    assert summarise(b"SIP/2.0 000 Zero\r\n\r\n").status is None
    assert summarise(b"SIP/2.0 999 Nine\r\n\r\n").status is None
