"""Behaviour the SIP hot-path optimisations must keep (docs/sip-layer.md, "Load").

- A burst of datagrams queued before the endpoint runs is drained in one wake-up
  (transport.UdpProtocol.DRAIN): every request is answered exactly once, none is lost or doubled.
- Fixed-duration timers live in FIFO queues (transaction.TransactionLayer._arm): they still fire
  at their deadlines, in deadline order, also when the clock steps back or durations coincide.
- The layer keeps its earliest deadline instead of walking its queues per ``get_timer``: the
  deadline it gives is still exactly the next one with work.
"""

from __future__ import annotations

import asyncio
import math
import socket
from copy import deepcopy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mcacm_sip.sip import Peer, Reply, Request, Response, Timers, TransactionLayer, parse
from mcacm_sip.sip.aio import IncomingRequest, Listen, SipEndpoint
from mcacm_sip.sip.transaction import Action, DeliverRequest, Send, ServerTimeout

UDP = Peer("udp", "127.0.0.1", 5070)


def _message(n: int, port: int) -> bytes:
    body = b"<x/>"
    return (
        f"MESSAGE sip:acms@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-burst-{n};rport\r\n"
        f"From: <sip:sipp@127.0.0.1>;tag=f{n}\r\n"
        f"To: <sip:acms@127.0.0.1>\r\n"
        f"Call-ID: burst-{n}@127.0.0.1\r\n"
        f"CSeq: 1 MESSAGE\r\n"
        f"Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _queued_burst() -> None:
    seen: list[str] = []

    def handler(request: IncomingRequest) -> Reply:
        seen.append(request.message.call_id)
        return request.reply(200)

    endpoint = SipEndpoint([Listen("udp", "127.0.0.1", 0)])
    endpoint.serve("MESSAGE", handler)
    await endpoint.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # answers come in a burst
        client.bind(("127.0.0.1", 0))
        client.settimeout(5)
        port = client.getsockname()[1]
        host, server_port = endpoint.local_address("udp")
        count = 3 * 64 + 5  # several drain batches and a remainder
        # Sent before the loop gets a turn: all of them wait in the socket buffer together,
        # and a retransmission of the first one among them must still be absorbed.
        for n in range(count):
            client.sendto(_message(n, port), (host, server_port))
        client.sendto(_message(0, port), (host, server_port))
        answers: list[bytes] = []
        loop = asyncio.get_running_loop()
        while len(answers) < count + 1:
            answers.append(await loop.run_in_executor(None, client.recv, 65536))
    finally:
        client.close()
        await endpoint.close()
    assert sorted(seen) == sorted(f"burst-{n}@127.0.0.1" for n in range(count))
    responses = [parse(a) for a in answers]
    assert all(getattr(r, "status", None) == 200 for r in responses)
    # the retransmission got the cached response of its transaction, not a second delivery
    assert sorted(r.call_id for r in responses) == sorted(
        [f"burst-{n}@127.0.0.1" for n in range(count)] + ["burst-0@127.0.0.1"]
    )


def test_a_queued_burst_is_answered_once_each() -> None:
    asyncio.run(_queued_burst())


def _request(n: int) -> Request:
    req = parse(_message(n, 5070))
    assert isinstance(req, Request)
    return req


def _deliver(layer: TransactionLayer, n: int, now: float) -> DeliverRequest:
    [action] = layer.receive_request(_request(n), UDP, now)
    assert isinstance(action, DeliverRequest)
    return action


def _fire_all(layer: TransactionLayer, end: float) -> list[tuple[float, Action]]:
    out: list[tuple[float, Action]] = []
    while (when := layer.get_timer()) is not None and when <= end:
        out.extend((when, a) for a in layer.handle_timer(when))
    return out


def test_timer_j_expires_each_transaction_at_its_own_deadline_when_the_clock_steps_back() -> None:
    layer = TransactionLayer(Timers(t1=0.5))
    late = _deliver(layer, 1, now=10.0)
    layer.respond(late.key, 200, b"R1", now=10.0)  # Timer J at 42
    early = _deliver(layer, 2, now=5.0)  # the clock went back: armed out of order
    layer.respond(early.key, 200, b"R2", now=5.0)  # Timer J at 37
    assert layer.get_timer() == 37.0
    _fire_all(layer, 41.9)
    assert layer.server_count == 1
    # the one still cached is the later one: a retransmission of it gets its response again
    assert layer.receive_request(_request(1), UDP, 41.9) == [Send(b"R1", UDP)]
    _fire_all(layer, 42.0)
    assert layer.server_count == 0 and layer.get_timer() is None


def test_deadlines_of_equal_duration_fire_in_order_across_kinds() -> None:
    # app deadline == 64*T1: both kinds share one queue
    layer = TransactionLayer(Timers(t1=0.5, app=32.0))
    answered = _deliver(layer, 1, now=0.0)
    layer.respond(answered.key, 200, b"R1", now=1.0)  # Timer J at 33
    silent = _deliver(layer, 2, now=2.0)  # never answered: the layer answers 500 at 34
    events = _fire_all(layer, 100.0)
    assert [(t, type(a)) for t, a in events] == [(34.0, ServerTimeout), (34.0, Send)]
    assert isinstance(events[0][1], ServerTimeout) and events[0][1].key == silent.key
    # the answered one went at 33 (Timer J), the 500 at 66 (its own Timer J)
    assert layer.server_count == 0 and layer.get_timer() is None


def test_answered_transactions_leave_only_their_timer_j_behind() -> None:
    layer = TransactionLayer(Timers(t1=0.5))
    for n in range(1000):
        action = _deliver(layer, n, now=n / 1000)
        layer.respond(action.key, 200, b"R", now=n / 1000)
    assert layer.get_timer() == 32.0  # the first Timer J, not a 30 s application deadline
    assert not _fire_all(layer, 31.99)  # nothing to send before then
    _fire_all(layer, 33.0)
    assert layer.server_count == 0


_OP = st.one_of(
    st.tuples(st.just("send"), st.booleans()),  # a client transaction, over UDP or TCP
    st.tuples(st.just("answer"), st.sampled_from([100, 200, 486])),  # to the oldest client one
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("request"), st.booleans()),  # a server transaction, UDP or TCP
    st.tuples(st.just("respond"), st.sampled_from([100, 200])),  # to the oldest server one
    st.tuples(st.just("advance"), st.floats(0.0, 40.0)),
)


def _work(layer: TransactionLayer, now: float) -> bool:
    """Whether ``handle_timer(now)`` does anything (on a copy: the layer is not touched)."""
    copy = deepcopy(layer)
    before = (copy.client_count, copy.server_count)
    return bool(copy.handle_timer(now)) or (copy.client_count, copy.server_count) != before


def _response(n: int, status: int) -> Response:
    resp = parse(f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKc{n}\r\n"
                 f"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c{n}\r\n"
                 "CSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n".encode())
    assert isinstance(resp, Response)
    return resp


@settings(max_examples=150, deadline=None)
@given(st.lists(_OP, max_size=40))
def test_get_timer_is_exactly_the_next_deadline_with_work(ops: list[tuple[str, Any]]) -> None:
    """The layer keeps its earliest deadline between calls instead of walking its queues: after
    any sequence of sends, answers, cancels and ticks, ``handle_timer`` has work at
    ``get_timer()`` and none just before it (never a stale deadline, never a late one)."""
    layer = TransactionLayer(Timers(t1=0.5, t4=5.0, app=30.0))
    now, sent, received = 0.0, 0, 0
    clients: list[int] = []
    servers: list[tuple[str, ...]] = []
    for op, arg in ops:
        if op == "send":
            layer.send_request((f"z9hG4bKc{sent}", "MESSAGE"), b"M",
                               Peer("tcp" if arg else "udp", "192.0.2.9", 5060), now)
            clients.append(sent)
            sent += 1
        elif op == "answer" and clients:
            layer.receive_response(_response(clients[0], arg), UDP, now)
            if arg >= 200:
                clients.pop(0)
        elif op == "cancel" and clients:
            layer.cancel_client((f"z9hG4bKc{clients.pop(arg % len(clients))}", "MESSAGE"))
        elif op == "request":
            source = Peer("tcp", "127.0.0.1", 5070, 1) if arg else UDP
            [action] = layer.receive_request(_request(1000 + received), source, now)
            assert isinstance(action, DeliverRequest)
            servers.append(action.key)
            received += 1
        elif op == "respond" and servers:
            layer.respond(servers[0] if arg < 200 else servers.pop(0), arg, b"R", now)
        elif op == "advance":
            now += arg
            layer.handle_timer(now)
        when = layer.get_timer()
        if when is not None:
            assert _work(layer, when)
            assert not _work(layer, math.nextafter(when, -math.inf))
        else:
            assert not _work(layer, now + 1e6)
