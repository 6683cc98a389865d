"""SipEndpoint's Answer (issue 18): a handler's answer given later, sent from inside its
``set_result`` instead of from an asyncio.Future's done callback (one scheduled Handle per
request less).  The same requests answered through an Answer and through a Future put the same
bytes on the wire, in the same order, each only once it is set (what the ACMS sets after the
commit that stores the request); an exception set is a 500 and the same log line; an answer set
late is still sent, one set once the endpoint is closed (or cancelled) is not; what the send
raises goes to the loop's exception handler, never to whoever set the answer."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mcacm_sip.sip import Peer, Reply
from mcacm_sip.sip.aio import IncomingRequest, Listen, SipEndpoint
from mcacm_sip.sip.aio.endpoint import Answer

_TO_TAG = re.compile(rb"(\r\nTo: [^\r]*;)tag=[0-9a-f]+")
SOURCE = Peer("udp", "192.0.2.7", 5070)

Pending = Answer | asyncio.Future[Reply]
Make = Callable[[], Pending]


def _request(n: int) -> bytes:
    body = f"body {n}".encode()
    return (f"MESSAGE sip:acms@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-answer-{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:c@192.0.2.7>;tag=f{n}\r\n"
            f"To: <sip:acms@127.0.0.1>\r\nCall-ID: call-{n}@192.0.2.7\r\n"
            f"CSeq: {n + 1} MESSAGE\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Harness:
    """A started endpoint whose MESSAGE handler returns ``make()`` (or raises), with what it
    transmits and what is set logged in one list, in order."""

    def __init__(self, make: Make) -> None:
        self.make = make
        self.log: list[tuple[str, Any]] = []
        self.pending: list[Pending] = []
        self.endpoint = SipEndpoint([Listen("udp", "127.0.0.1")])
        self.endpoint.serve("MESSAGE", self._handle)
        self.endpoint._transmit = self._transmit  # type: ignore[method-assign]
        self.raise_in_handler = False

    def _handle(self, incoming: IncomingRequest) -> Any:
        if self.raise_in_handler:
            raise RuntimeError("handler broke")
        pending = self.make()
        self.pending.append(pending)
        return pending

    def _transmit(self, data: bytes, dest: Peer) -> None:
        self.log.append(("out", _TO_TAG.sub(b"\\1tag=T", data)))  # (a fresh tag each run)

    def feed(self, n: int) -> None:
        self.endpoint.on_message(_request(n), SOURCE, True)

    def set(self, i: int, what: Reply | BaseException) -> None:
        self.log.append(("set", i))  # (what the ACMS does after its commit)
        if isinstance(what, BaseException):
            self.pending[i].set_exception(what)
        else:
            self.pending[i].set_result(what)


def _future() -> asyncio.Future[Reply]:
    return asyncio.get_running_loop().create_future()


_REPLIES = [Reply(200), Reply(403, "Forbidden", (("Warning", '399 acms "no"'),)),
            Reply(503, headers=(("Retry-After", "5"),)), Reply(202, body=b"ok",
                                                              content_type="text/plain")]

# one step: ("feed",) a new request; ("set", i, reply index or -1 for an exception);
# ("spin",) one loop iteration; ("close",) the endpoint closes
_STEP = st.one_of(st.just(("feed",)), st.just(("spin",)), st.just(("close",)),
                  st.tuples(st.just("set"), st.integers(0, 3), st.integers(-1, 3)))


async def _play(make: Make, steps: list[tuple[Any, ...]]) -> tuple[list[tuple[str, Any]],
                                                                   list[str]]:
    h = Harness(make)
    await h.endpoint.start()
    errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda loop, ctx: errors.append(repr(ctx.get("exception"))))
    fed = 0
    closed = False
    try:
        for step in steps:
            if step[0] == "feed" and not closed:
                h.feed(fed)
                fed += 1
            elif step[0] == "set" and step[1] < len(h.pending) and not h.pending[step[1]].done():
                h.set(step[1], ValueError("late") if step[2] < 0 else _REPLIES[step[2]])
                if not isinstance(h.pending[step[1]], Answer):
                    await asyncio.sleep(0)  # its done callback: what the Answer does at once
            elif step[0] == "spin":
                await asyncio.sleep(0)
            elif step[0] == "close" and not closed:
                closed = True
                await h.endpoint.close()
        for _ in range(3):  # whatever a Future's callbacks still have to send
            await asyncio.sleep(0)
    finally:
        if not closed:
            await h.endpoint.close()
    return h.log, errors


@settings(max_examples=200, deadline=None)
@given(st.lists(_STEP, max_size=24))
@example([("feed",), ("feed",), ("set", 1, 0), ("set", 0, -1), ("feed",), ("close",)])
def test_an_answer_sends_what_a_future_sends(steps: list[tuple[Any, ...]]) -> None:
    """Any sequence of requests, sets (replies, exceptions, late ones), loop iterations and a
    close: through an Answer, the same bytes out in the same order as through a Future whose
    done callback runs right after its set; each inside its set_result (right after the set;
    so an answer set just before the endpoint closes still leaves, where a Future's callback
    would find the endpoint closed)."""
    new, new_errors = asyncio.run(_play(Answer, steps))
    old, old_errors = asyncio.run(_play(_future, steps))
    assert new == old
    assert new_errors == old_errors == []
    for i, entry in enumerate(new):  # at once: every answer follows its own set
        if entry[0] == "out":
            assert i > 0 and new[i - 1][0] == "set"


@pytest.mark.parametrize("make", [Answer, _future], ids=["answer", "future"])
def test_nothing_leaves_before_the_set_and_a_raising_handler_is_500(
        make: Make, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        h = Harness(make)
        await h.endpoint.start()
        try:
            h.feed(0)
            for _ in range(3):
                await asyncio.sleep(0)
            assert h.log == []  # not before it is set (the ACMS: not before its commit)
            h.set(0, Reply(200))
            if make is Answer:  # sent inside set_result
                assert [k for k, _ in h.log] == ["set", "out"]
            await asyncio.sleep(0)
            assert [k for k, _ in h.log] == ["set", "out"]
            assert h.log[1][1].startswith(b"SIP/2.0 200 OK\r\n")
            h.raise_in_handler = True
            with caplog.at_level(logging.ERROR, "mcacm.sip"):
                h.feed(1)
            assert h.log[-1][1].startswith(b"SIP/2.0 500 ")
            assert "handler for MESSAGE failed" in caplog.text
            h.raise_in_handler = False
            h.feed(2)
            caplog.clear()
            with caplog.at_level(logging.ERROR, "mcacm.sip"):
                h.set(1, KeyError("gone"))
                await asyncio.sleep(0)
            assert h.log[-1][1].startswith(b"SIP/2.0 500 ")
            [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert record.getMessage() == "handler for MESSAGE failed"
            assert record.exc_info is not None and record.exc_info[0] is KeyError
            assert record.call_id == "call-2@192.0.2.7"  # type: ignore[attr-defined]
        finally:
            await h.endpoint.close()

    asyncio.run(main())


@pytest.mark.parametrize("make", [Answer, _future], ids=["answer", "future"])
def test_closed_or_cancelled_pending_answers_are_not_sent(make: Make) -> None:
    async def main() -> None:
        h = Harness(make)
        await h.endpoint.start()
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
        h.feed(0)
        h.feed(1)
        h.pending[1].cancel()
        await asyncio.sleep(0)
        await h.endpoint.close()
        h.set(0, Reply(200))
        await asyncio.sleep(0)
        assert [k for k, _ in h.log] == ["set"]
        assert errors == []

    asyncio.run(main())


@pytest.mark.parametrize("make", [Answer, _future], ids=["answer", "future"])
def test_what_the_send_raises_goes_to_the_loop_not_to_the_setter(make: Make) -> None:
    async def main() -> None:
        h = Harness(make)
        await h.endpoint.start()
        got: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: got.append(ctx))
        try:
            h.feed(0)
            h.feed(1)

            def broken(*args: Any) -> None:
                raise RuntimeError("socket gone")

            h.endpoint._respond = broken  # type: ignore[method-assign,assignment]
            h.set(0, Reply(200))  # does not raise
            await asyncio.sleep(0)  # (a Future's callback)
            del h.endpoint._respond
            h.set(1, Reply(200))  # and the next one is still sent
            await asyncio.sleep(0)
            assert [type(c["exception"]) for c in got] == [RuntimeError]
            assert [k for k, _ in h.log] == ["set", "set", "out"]
        finally:
            await h.endpoint.close()

    asyncio.run(main())


def test_an_answer_is_a_future_to_whoever_holds_it() -> None:
    """done/cancelled/result/exception as a Future's, awaitable before or after it is set
    (the ACMS awaits the answer of a request it first asked the shared store about)."""
    async def main() -> None:
        a = Answer()
        assert not a.done() and not a.cancelled()
        with pytest.raises(asyncio.InvalidStateError):
            a.result()
        waiting = asyncio.ensure_future(_await(a))
        await asyncio.sleep(0)
        a.set_result(Reply(200))
        assert await waiting == Reply(200) == a.result() and a.exception() is None
        assert await a == Reply(200)
        with pytest.raises(asyncio.InvalidStateError):
            a.set_result(Reply(500))
        assert not a.cancel()
        b = Answer()
        b.set_exception(ValueError("x"))
        with pytest.raises(ValueError):
            await b
        c = Answer()
        assert c.cancel() and c.cancelled()
        with pytest.raises(asyncio.CancelledError):
            c.result()

    asyncio.run(main())


async def _await(answer: Answer) -> Reply:
    return await answer


@pytest.mark.parametrize("make", [Answer, _future], ids=["answer", "future"])
def test_an_answer_set_before_the_handler_returns_is_sent(make: Make) -> None:
    async def main() -> None:
        def already() -> Pending:
            pending = make()
            pending.set_result(Reply(486))
            return pending

        h = Harness(already)
        await h.endpoint.start()
        try:
            h.feed(0)
            await asyncio.sleep(0)
            assert [data[:12] for _, data in h.log] == [b"SIP/2.0 486 "]
        finally:
            await h.endpoint.close()

    asyncio.run(main())
