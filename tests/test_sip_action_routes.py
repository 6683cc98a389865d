"""The endpoint's requests in without their actions (issue 18, round 12): a new request is
delivered as its DeliverRequest would be (``TransactionLayer.take_request``), the answer sent
as its Send would be (``TransactionLayer.answer``), an :class:`Answer`'s reply taken without
``_answered``'s reads. Compared with the action route (``receive_request``/``respond`` run
by ``_run``, ``_answered``) over every corpus and RFC 4475 message and mutations of each,
answered by Answers set, failed, cancelled, or by Replies: the same bytes out, records,
transactions and timers."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sip_own_response import _wire
from test_sip_parser_c import mutate as mutate_bytes

from mcacm_sip.sip import Peer, Reply
from mcacm_sip.sip.aio import IncomingRequest, Listen, SipEndpoint
from mcacm_sip.sip.aio.endpoint import Answer
from mcacm_sip.sip.message import Request
from mcacm_sip.sip.transaction import DeliverRequest, Send, ServerKey, TransactionLayer

pytestmark = pytest.mark.usefixtures("sip_parser")

CORPUS = Path(__file__).parent / "sip" / "corpus"
SEEDS = sorted(CORPUS.glob("*.sip")) + sorted((CORPUS / "rfc4475").glob("*.dat"))
SOURCE = Peer("udp", "192.0.2.7", 5060)
_PIECES = [b"\r\n", b";", b" ", b",", b"\x00", b":", b"MESSAGE", b"OPTIONS", b"ACK", b"CANCEL",
           b";rport", b"z9hG4bK", b"\r\n\r\n", b"Via: SIP/2.0/TCP 192.0.2.9\r\n", b"0", b"9"]
_TAG = re.compile(rb";tag=[0-9a-f]{20}")  # a tag drawn by the answer: not compared


class _ByActions(SipEndpoint):
    """Round 11's endpoint for requests in: ``receive_request``'s and ``respond``'s actions
    (the layer's, as those build them) run by ``_run``, an Answer's reply through
    ``_answered``."""

    def on_message(self, data: bytes, source: Peer, datagram: bool,
                   local: tuple[str, int] = ("", 0)) -> None:
        take, self.txn.take_request = self.txn.take_request, self._take  # type: ignore[method-assign]
        try:
            super().on_message(data, source, datagram, local)
        finally:
            self.txn.take_request = take  # type: ignore[method-assign]

    def _take(self, req: Request, source: Peer, now: float) -> list[Any]:
        got = TransactionLayer.take_request(self.txn, req, source, now)  # (receive_request's)
        return got if isinstance(got, list) else [DeliverRequest(got, req, source)]

    def _respond(self, key: ServerKey, req: Request, source: Peer, reply: Reply) -> None:
        answer, self.txn.answer = self.txn.answer, self._answer  # type: ignore[method-assign]
        try:
            super()._respond(key, req, source, reply)
        finally:
            self.txn.answer = answer  # type: ignore[method-assign]

    def _answer(self, key: ServerKey, status: int, data: bytes, now: float) -> None:
        dest = TransactionLayer.answer(self.txn, key, status, data, now)  # (respond's)
        self._run([] if dest is None else [Send(data, dest)])

    def _answer_now(self, to: tuple[SipEndpoint, ServerKey, Request, Peer],
                    answer: Answer) -> None:
        try:
            self._answered(to[1], to[2], to[3], answer)
        except Exception as err:
            self.loop.call_exception_handler({"message": "answering failed", "exception": err})


async def _run(cls: type[SipEndpoint], messages: list[bytes], ways: list[int]) -> list[Any]:
    now = [100.0]
    ep = cls([Listen("udp", "127.0.0.1", 0)], clock=lambda: now[0])
    pending: list[Answer] = []

    def later(req: IncomingRequest) -> Answer:
        answer = Answer()
        pending.append(answer)
        return answer

    ep.serve("MESSAGE", later)
    ep.serve("OPTIONS", lambda req: req.reply(200))
    ep.serve("INFO", lambda req: req.reply(202, "Later", headers=[("X-A", "1")]))
    await ep.start()
    family, (_, protocol) = next(iter(ep._udp.items()))
    wire = _wire()
    ep._udp[family] = (wire, protocol)
    seen: list[Any] = []

    class Records(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(("log", record.levelno, record.getMessage(),
                         getattr(record, "call_id", None), getattr(record, "status", None)))

    handler = Records()
    logging.getLogger("mcacm.sip").addHandler(handler)
    try:
        for n, data in enumerate(messages):
            now[0] += 0.01
            ep.on_message(data, SOURCE, True)
            way = ways[n % len(ways)]
            while pending:
                answer = pending.pop()
                if way == 0:
                    answer.set_result(Reply(200))
                elif way == 1:
                    answer.set_result(Reply(480, "Later", headers=(("Retry-After", "5"),)))
                elif way == 2:
                    answer.set_exception(ValueError("handler bug"))
                elif way == 3:
                    answer.cancel()
                else:
                    pending.insert(0, answer)  # answered by the next message's turn
                    break
            await asyncio.sleep(0)
            seen.append(("state", [_TAG.sub(b";tag=T", d) for d in wire.out],
                         ep.txn.server_count, ep.txn.get_timer(), ep._timer.deadline))
            wire.out.clear()
        for _ in range(4):  # the application deadline (30 s) and Timer J (32 s)
            now[0] += 20.0
            ep.handle_timer(now[0])
            seen.append(("timer", [_TAG.sub(b";tag=T", d) for d in wire.out],
                         ep.txn.server_count, ep.txn.get_timer()))
            wire.out.clear()
    finally:
        logging.getLogger("mcacm.sip").removeHandler(handler)
        await ep.close()
    return seen


@pytest.mark.parametrize("seed", SEEDS, ids=[p.name for p in SEEDS])
def test_corpus_requests_are_handled_as_by_their_actions(seed: Path) -> None:
    """Each message, 30 mutations of it and each sent twice (a retransmission): the same
    handling by both routes (fails with a new request's timer not re-armed, an answer sent
    to another address, or an Answer's exception taken as its reply)."""
    data = seed.read_bytes()
    rng = random.Random(seed.name)
    messages = [data, data]
    for _ in range(30):
        mutated = mutate_bytes(rng, data, _PIECES, most=3, span=30)
        messages += [mutated, mutated]
    for way in range(5):
        fast = asyncio.run(_run(SipEndpoint, messages, [way]))
        assert fast == asyncio.run(_run(_ByActions, messages, [way])), way


def _message(n: int, method: str = "MESSAGE", branch: str | None = None) -> bytes:
    return (f"{method} sip:acms@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch={branch or f'z9hG4bK-{n}'};rport\r\n"
            f"From: <sip:c@192.0.2.7>;tag=f{n}\r\nTo: <sip:acms@127.0.0.1>\r\n"
            f"Call-ID: c{n}@192.0.2.7\r\nCSeq: {n + 1} {method}\r\n"
            "Content-Length: 0\r\n\r\n").encode()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from(
    ["MESSAGE", "OPTIONS", "INFO", "ACK", "CANCEL", "BYE"])), min_size=1, max_size=16),
    st.lists(st.integers(0, 4), min_size=1, max_size=4))
def test_drawn_requests_are_handled_as_by_their_actions(
        calls: list[tuple[int, str]], ways: list[int]) -> None:
    """Requests drawn from a few transactions (so some are retransmissions, CANCELs that
    match, methods not served), answered in drawn ways: both routes handle them alike."""
    messages = [_message(n, method, f"z9hG4bK-{n}" if method != "CANCEL" else None)
                for n, method in calls]
    fast = asyncio.run(_run(SipEndpoint, messages, ways))
    assert fast == asyncio.run(_run(_ByActions, messages, ways))
