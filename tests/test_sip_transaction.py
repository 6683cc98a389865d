"""Non-INVITE transactions driven by a fake clock (RFC 3261 17.1.2, 17.2.2)."""

from __future__ import annotations

import gc

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mcacm_sip.sip import Peer, Request, Response, Timers, TransactionLayer, build_response, parse
from mcacm_sip.sip.transaction import (
    Action,
    ClientTimeout,
    DeliverRequest,
    DeliverResponse,
    Send,
    ServerTimeout,
)

UDP = Peer("udp", "127.0.0.1", 5070)
TCP = Peer("tcp", "127.0.0.1", 5070, conn=1)


def request(method: str = "MESSAGE", branch: str = "z9hG4bKabc", transport: str = "UDP") -> Request:
    req = parse(
        (
            f"{method} sip:acms@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} 127.0.0.1:5070;branch={branch};rport\r\n"
            "From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c1\r\n"
            f"CSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(req, Request)
    return req


def response_to(req: Request, status: int) -> Response:
    resp = parse(build_response(req, status))
    assert isinstance(resp, Response)
    return resp


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Action]]:
    """Fire every timer up to ``end``, as the adapter would; returns (time, action)."""
    out: list[tuple[float, Action]] = []
    while (when := layer.get_timer()) is not None and when <= end:
        out.extend((when, a) for a in layer.handle_timer(when))
    return out


def test_udp_client_retransmits_on_the_rfc_schedule_and_times_out_at_64_t1() -> None:
    layer = TransactionLayer(Timers(t1=0.5, t2=4.0, t4=5.0))
    req = request()
    first = layer.send_request(("z9hG4bKabc", "MESSAGE"), b"MSG", UDP, now=0.0)
    events = [(0.0, a) for a in first] + run_until(layer, 100.0)
    sends = [t for t, a in events if isinstance(a, Send)]
    assert sends == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    timeouts = [(t, a) for t, a in events if isinstance(a, ClientTimeout)]
    assert timeouts == [(32.0, ClientTimeout(("z9hG4bKabc", "MESSAGE")))]
    assert layer.client_count == 0 and layer.get_timer() is None
    del req


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0.01, 0.1, 0.5, 1.0, 2.0, 3.0]), st.sampled_from([0.5, 1.0, 4.0, 8.0]),
       st.none() | st.floats(0.0, 80.0))
def test_timer_e_and_f_follow_the_rfc_for_any_timers(t1: float, t2: float,
                                                     provisional: float | None) -> None:
    """RFC 3261 17.1.2.2, for any T1/T2 and a provisional response at any time (or none): the
    request is retransmitted at each Timer E (doubling up to T2 in Trying, every T2 once in
    Proceeding) strictly before Timer F, which ends the transaction at exactly 64*T1 (Timer F
    is queued only once Timer E would not come before it)."""
    layer = TransactionLayer(Timers(t1=t1, t2=t2))
    req = request()
    key = (req.branch, "MESSAGE")
    events = [(0.0, a) for a in layer.send_request(key, b"MSG", UDP, now=0.0)]
    if provisional is not None:
        events += run_until(layer, provisional)
        layer.receive_response(response_to(req, 100), UDP, now=provisional)
    events += run_until(layer, 100 * t1)
    want, when, interval, f = [0.0], t1, t1, 64 * t1
    while when < f:
        want.append(when)
        proceeding = provisional is not None and provisional < when
        interval = t2 if proceeding else min(2 * interval, t2)
        when = when + interval
    assert [t for t, a in events if isinstance(a, Send)] == want
    assert [(t, a) for t, a in events if isinstance(a, ClientTimeout)] == [
        (f, ClientTimeout(key))]
    assert layer.client_count == 0 and layer.get_timer() is None


def test_tcp_client_never_retransmits() -> None:
    layer = TransactionLayer()
    first = layer.send_request(("z9hG4bKt", "MESSAGE"), b"MSG", TCP, now=0.0)
    events = run_until(layer, 100.0)
    assert [type(a) for a in first] == [Send]
    assert [(t, type(a)) for t, a in events] == [(32.0, ClientTimeout)]


def test_provisional_response_holds_timer_e_at_t2() -> None:
    layer = TransactionLayer()
    req = request()
    layer.send_request((req.branch, "MESSAGE"), b"MSG", UDP, now=0.0)
    run_until(layer, 0.6)  # one retransmission at 0.5, next due at 1.5
    assert layer.receive_response(response_to(req, 100), UDP, now=0.7) == []
    sends = [t for t, a in run_until(layer, 12.0) if isinstance(a, Send)]
    # RFC 3261 17.1.2.2: in Proceeding Timer E fires every T2 from the current one.
    assert sends == [1.5, 5.5, 9.5]


def test_final_response_is_delivered_once_and_timer_k_cleans_up() -> None:
    layer = TransactionLayer()
    req = request()
    key = (req.branch, "MESSAGE")
    layer.send_request(key, b"MSG", UDP, now=0.0)
    resp = response_to(req, 200)
    delivered = layer.receive_response(resp, UDP, now=0.1)
    assert delivered == [DeliverResponse(key, resp, UDP)]
    assert layer.receive_response(resp, UDP, now=0.2) == []  # retransmission absorbed
    assert not [a for _, a in run_until(layer, 5.0) if isinstance(a, Send)]
    assert layer.client_count == 1  # Completed until Timer K = T4
    run_until(layer, 5.1)
    assert layer.client_count == 0 and layer.get_timer() is None


def test_response_with_other_method_or_branch_does_not_match() -> None:
    layer = TransactionLayer()
    req = request()
    layer.send_request((req.branch, "MESSAGE"), b"MSG", UDP, now=0.0)
    other = request(method="OPTIONS")
    assert layer.receive_response(response_to(other, 200), UDP, now=0.1) == []
    assert layer.receive_response(response_to(request(branch="z9hG4bKzz"), 200), UDP, 0.1) == []
    assert layer.client_count == 1


def test_retransmitted_request_is_absorbed_and_the_response_resent() -> None:
    layer = TransactionLayer()
    copies = [request() for _ in range(3)]
    first = layer.receive_request(copies[0], UDP, now=0.0)
    assert [type(a) for a in first] == [DeliverRequest]
    key = first[0].key  # type: ignore[union-attr]
    assert layer.receive_request(copies[1], UDP, now=0.4) == []  # Trying: absorbed silently
    sent = layer.respond(key, 200, b"RESP", now=0.5)
    again = layer.receive_request(copies[2], UDP, now=1.0)
    assert sent == [Send(b"RESP", UDP)] and again == [Send(b"RESP", UDP)]
    # 3 copies, 1 delivery; each copy after the answer gets the cached answer.
    assert layer.receive_request(copies[0], UDP, now=2.0) == [Send(b"RESP", UDP)]


def test_timer_j_keeps_the_cache_for_64_t1_on_udp_only() -> None:
    layer = TransactionLayer(Timers(t1=0.5))
    key = layer.receive_request(request(), UDP, now=0.0)[0].key  # type: ignore[union-attr]
    layer.respond(key, 200, b"RESP", now=1.0)
    run_until(layer, 32.9)
    assert layer.server_count == 1
    run_until(layer, 33.0)
    assert layer.server_count == 0 and layer.get_timer() is None
    tcp_key = layer.receive_request(request(transport="TCP"), TCP, 40.0)[0].key  # type: ignore[union-attr]
    assert layer.respond(tcp_key, 200, b"R", now=40.0) == [Send(b"R", TCP)]
    assert layer.server_count == 0 and layer.get_timer() is None  # Timer J = 0 on TCP


def test_responses_follow_rport_on_udp_and_the_connection_on_tcp() -> None:
    layer = TransactionLayer()
    src = Peer("udp", "10.0.0.9", 40001)
    layer.receive_request(request(branch="z9hG4bK1"), src, 0.0)
    key = ("z9hG4bK1", "127.0.0.1", "5070", "MESSAGE")
    assert layer.respond(key, 200, b"R", 0.0) == [Send(b"R", Peer("udp", "10.0.0.9", 40001))]
    tsrc = Peer("tcp", "10.0.0.9", 40002, conn=5)
    layer.receive_request(request(branch="z9hG4bK2", transport="TCP"), tsrc, 0.0)
    tkey = ("z9hG4bK2", "127.0.0.1", "5070", "MESSAGE")
    assert layer.respond(tkey, 200, b"R", 0.0) == [Send(b"R", Peer("tcp", "10.0.0.9", 5070, 5))]


def test_application_that_never_answers_gets_a_500_sent_for_it() -> None:
    layer = TransactionLayer(Timers(app=10.0))
    req = request()
    key = layer.receive_request(req, UDP, now=0.0)[0].key  # type: ignore[union-attr]
    events = run_until(layer, 10.0)
    assert [(t, type(a)) for t, a in events] == [(10.0, ServerTimeout), (10.0, Send)]
    sent = events[1][1]
    assert isinstance(sent, Send) and sent.data.startswith(b"SIP/2.0 500 ")
    assert layer.respond(key, 200, b"late", now=11.0) == []  # a late answer is dropped
    assert layer.receive_request(request(), UDP, 12.0) == [Send(sent.data, UDP)]


def test_cancel_of_a_non_invite_gets_200_and_changes_nothing() -> None:
    layer = TransactionLayer()
    key = layer.receive_request(request(), UDP, now=0.0)[0].key  # type: ignore[union-attr]
    cancel = layer.receive_request(request(method="CANCEL"), UDP, now=0.1)
    assert len(cancel) == 1 and isinstance(cancel[0], Send)
    assert cancel[0].data.startswith(b"SIP/2.0 200 ")
    assert layer.respond(key, 202, b"R", now=0.2) == [Send(b"R", UDP)]  # RFC 3261 9.2
    stray = layer.receive_request(request(method="CANCEL", branch="z9hG4bKnone"), UDP, 0.3)
    assert isinstance(stray[0], Send) and stray[0].data.startswith(b"SIP/2.0 481 ")


def test_ack_is_absorbed() -> None:
    layer = TransactionLayer()
    assert layer.receive_request(request(method="ACK"), UDP, 0.0) == []
    assert layer.server_count == 0


def test_rfc2543_requests_without_magic_cookie_are_still_matched() -> None:
    layer = TransactionLayer()
    old = request(branch="1234")
    key = layer.receive_request(old, UDP, 0.0)[0].key  # type: ignore[union-attr]
    layer.respond(key, 200, b"R", 0.1)
    assert layer.receive_request(request(branch="1234"), UDP, 0.2) == [Send(b"R", UDP)]


# -- completed transactions keep only what Timer J / K need (docs/decisions.md "Round 6
# (issue 18), the live heap")

_T = Timers(t1=0.5, t4=5.0)  # Timer J = 64*T1 = 32 s, Timer K = T4 = 5 s


@settings(max_examples=60, deadline=None)
@given(answered=st.floats(0.0, 29.0), provisional=st.booleans(),
       copies=st.lists(st.floats(0.0, 40.0), min_size=1, max_size=6))
def test_every_retransmission_until_timer_j_gets_the_final_response_again(
        answered: float, provisional: bool, copies: list[float]) -> None:
    """RFC 3261 17.2.2: in Completed (until Timer J, 64*T1 after the final response) each
    retransmission of the request gets the final response again, to where the first went;
    from Timer J on the same request is a new one, delivered to the application."""
    layer = TransactionLayer(_T)
    src = Peer("udp", "10.0.0.9", 40001)
    key = layer.receive_request(request(), src, now=0.0)[0].key  # type: ignore[union-attr]
    if provisional:
        assert layer.respond(key, 100, b"TRYING", now=answered / 2) == [Send(b"TRYING", src)]
        assert layer.receive_request(request(), src, answered / 2) == [Send(b"TRYING", src)]
    assert layer.respond(key, 200, b"FINAL", now=answered) == [Send(b"FINAL", src)]
    assert layer.respond(key, 486, b"LATE", now=answered) == []  # Completed: one answer
    j = answered + 64 * _T.t1
    for at in sorted(answered + c for c in copies):
        run_until(layer, at)
        again = layer.receive_request(request(), Peer("udp", "10.0.0.9", 40999), at)
        if at < j:
            assert again == [Send(b"FINAL", src)]
            assert layer.server_count == 1
        else:
            assert [type(a) for a in again] == [DeliverRequest]
            return


@settings(max_examples=60, deadline=None)
@given(answered=st.floats(0.0, 30.0), copies=st.lists(st.floats(0.0, 8.0), min_size=1,
                                                      max_size=6))
def test_every_retransmitted_final_response_until_timer_k_is_absorbed(
        answered: float, copies: list[float]) -> None:
    """RFC 3261 17.1.2.2: the final response is delivered once; in Completed (until Timer K,
    T4 after it) its retransmissions are absorbed and the transaction's key stays taken;
    from Timer K on the transaction is gone."""
    layer = TransactionLayer(_T)
    req = request()
    key = (req.branch, "MESSAGE")
    layer.send_request(key, b"MSG", UDP, now=0.0)
    run_until(layer, answered)
    resp = response_to(req, 200)
    assert layer.receive_response(resp, UDP, now=answered) == [DeliverResponse(key, resp, UDP)]
    k = answered + _T.t4
    for at in sorted(answered + c for c in copies):
        events = run_until(layer, at)
        assert not [a for _, a in events if isinstance(a, Send | ClientTimeout)]  # no E, no F
        assert layer.receive_response(resp, UDP, now=at) == []
        assert layer.client_count == (1 if at < k else 0)
    run_until(layer, k)
    assert layer.client_count == 0 and layer.get_timer() is None
    assert layer.send_request(key, b"MSG", UDP, now=k) == [Send(b"MSG", UDP)]  # key free again


def test_a_completed_transaction_still_matches_a_cancel_and_holds_its_key() -> None:
    layer = TransactionLayer(_T)
    key = layer.receive_request(request(), UDP, now=0.0)[0].key  # type: ignore[union-attr]
    layer.respond(key, 200, b"R", now=0.1)
    cancel = layer.receive_request(request(method="CANCEL"), UDP, now=0.2)
    assert isinstance(cancel[0], Send) and cancel[0].data.startswith(b"SIP/2.0 200 ")  # 9.2
    client = ("z9hG4bKc", "MESSAGE")
    layer.send_request(client, b"M", UDP, now=0.0)
    layer.receive_response(response_to(request(branch="z9hG4bKc"), 200), UDP, now=0.1)
    try:
        layer.send_request(client, b"M", UDP, now=0.2)
    except ValueError:
        pass
    else:
        raise AssertionError("a client transaction in Completed still holds its key")
    layer.cancel_client(client)  # forgets it at once: its Timer K is no deadline any more
    assert layer.client_count == 0 and layer.get_timer() == 0.1 + 64 * _T.t1  # Timer J


def _tracked_in(layer: TransactionLayer) -> int:
    """Objects the garbage collector tracks that the layer holds (after collections: a tuple
    of atoms is untracked by the first that sees it, one holding such tuples by the next)."""
    gc.collect()
    gc.collect()
    seen: set[int] = set()
    stack: list[object] = [layer]
    found = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        found += gc.is_tracked(obj)
        stack.extend(gc.get_referents(obj))
    return found


def test_completed_transactions_leave_nothing_for_the_collector_to_traverse() -> None:
    """A loaded UDP node holds 64*T1 of completed server transactions (Timer J) and T4 of
    completed client ones (Timer K): what they keep (the final response and where it went;
    the key) is bytes, strings and numbers in tuples, which CPython stops tracking, so a full
    collection does not traverse them. The layer's tracked objects after N completed
    transactions of each kind are the same for N = 1 and N = 300 (before, each held its
    transaction object, its Peer and its timer entries: 8 per request in the ACMS)."""
    def completed(n: int) -> TransactionLayer:
        layer = TransactionLayer(_T)
        for i in range(n):
            src = Peer("udp", "10.0.0.9", 40000 + i)
            key = layer.receive_request(request(branch=f"z9hG4bKs{i}"), src, now=i / 100)[0].key  # type: ignore[union-attr]
            layer.respond(key, 200, f"R{i}".encode(), now=i / 100)
            req = request(branch=f"z9hG4bKc{i}")
            layer.send_request((req.branch, "MESSAGE"), b"M", UDP, now=i / 100)
            layer.receive_response(response_to(req, 200), UDP, now=i / 100 + 0.01)
        assert layer.server_count == layer.client_count == n  # all still in Completed
        return layer

    assert _tracked_in(completed(300)) == _tracked_in(completed(1))


def test_the_hot_paths_actions_are_their_classes_frozen_instances() -> None:
    """The layer's and the endpoint's per-message values built by mcacm_sip.frozen builders
    are equal to their constructors' and as frozen."""
    import dataclasses

    from mcacm_sip.sip import transaction
    from mcacm_sip.sip.aio import endpoint
    from mcacm_sip.sip.request import new_request

    req = request()
    resp = response_to(req, 200)
    out = new_request("MESSAGE", "sip:b@x", from_uri="sip:a@x", to_uri="sip:b@x")
    pairs: list[tuple[object, Send | DeliverRequest | DeliverResponse | endpoint.FinalResponse]]
    pairs = [
        (transaction._send(b"x", UDP), Send(b"x", UDP)),
        (transaction._deliver_request(("k",), req, UDP), DeliverRequest(("k",), req, UDP)),
        (transaction._deliver_response(("b", "M"), resp, TCP),
         DeliverResponse(("b", "M"), resp, TCP)),
        (endpoint._final_response(resp, UDP, out), endpoint.FinalResponse(resp, UDP, out)),
    ]
    for built, made in pairs:
        assert type(built) is type(made) and built == made
        field = dataclasses.fields(made)[0].name
        try:
            setattr(built, field, None)
        except dataclasses.FrozenInstanceError:
            pass
        else:
            raise AssertionError(f"{type(built).__name__} is not frozen")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([UDP, TCP]), st.floats(0, 40), st.booleans()),
                min_size=1, max_size=12))
def test_starting_a_request_is_sending_it_less_its_action(
        sends: list[tuple[Peer, float, bool]]) -> None:
    """``start_request`` (the endpoint's send_soon: it sends the bytes itself) leaves the layer
    as ``send_request`` does, whose one action is always ``Send(data, dest)``: the same
    deadlines and the same retransmissions and timeouts as the clock runs (fails when
    start_request arms no Timer E)."""
    general, started = TransactionLayer(), TransactionLayer()
    now = 0.0
    for i, (dest, step, twice) in enumerate(sends):
        now += step
        key, data = (f"z9hG4bK{i}", "MESSAGE"), b"M%d" % i
        assert general.send_request(key, data, dest, now) == [Send(data, dest)]
        started.start_request(key, data, dest, now)
        if twice:
            with pytest.raises(ValueError):
                started.start_request(key, data, dest, now)
        assert general.get_timer() == started.get_timer()
        assert general.handle_timer(now) == started.handle_timer(now)
    for _ in range(200):
        deadline = general.get_timer()
        assert started.get_timer() == deadline
        if deadline is None:
            break
        assert general.handle_timer(deadline) == started.handle_timer(deadline)
    assert general.client_count == started.client_count == 0


def _deadline_by_reading_every_entry(layer: TransactionLayer) -> float | None:
    entries = [*layer._heap, *(e for queue in layer._fifo.values() for e in queue)]
    live = [e[0] for e in entries if layer._live(e)]
    return min(live) if live else None


_OPS = st.tuples(
    st.sampled_from(["send", "final", "provisional", "request", "answer", "cancel", "tick",
                     "read"]),
    st.integers(0, 3), st.sampled_from([UDP, TCP]), st.floats(0, 3))


@settings(max_examples=300, deadline=None)
@given(st.lists(_OPS, max_size=40))
@example([("request", 1, UDP, 0.0), ("answer", 1, UDP, 1.0), ("send", 1, UDP, 1.0)])
@example([("send", 1, TCP, 0.0), ("final", 1, TCP, 1.0)])
def test_the_deadline_bound_is_never_later_than_the_deadline(
        ops: list[tuple[str, int, Peer, float]]) -> None:
    """``_earliest`` is the earliest live deadline while ``_known``; otherwise a bound no
    later than it, with a deadline left (what the endpoint's ``TimerDriver.rearm_bound``
    needs: it skips ``get_timer`` when its wake-up comes no later than the bound). Checked
    against every queued entry read after each step of drawn sequences of requests sent,
    answered (final, provisional), received and answered, cancelled, timers fired (fails
    when arming stops moving the bound while it is unknown, or when the last transaction's
    end leaves a bound standing for no deadline)."""
    layer = TransactionLayer()
    now = 0.0
    for op, i, peer, step in ops:
        now += step
        key = (f"z9hG4bK{i}", "MESSAGE")
        if op == "send":
            if key not in layer._client and key not in layer._client_done:
                layer.start_request(key, b"M", peer, now)
        elif op in ("final", "provisional"):
            txn = layer._client.get(key)
            if txn is not None:
                resp = response_to(request(branch=key[0]), 200 if op == "final" else 180)
                layer.own_answered(key, resp, txn.dest, now)
        elif op == "request":
            layer.receive_request(request(branch=f"z9hG4bKs{i}",
                                          transport=peer.transport.upper()), peer, now)
        elif op == "answer":
            for server_key in [k for k in layer._server if k[0] == f"z9hG4bKs{i}"]:
                layer.respond(server_key, 200, b"OK", now)
        elif op == "cancel":
            layer.cancel_client(key)
        elif op == "tick":
            when = layer.get_timer()
            if when is not None and when <= now:
                layer.handle_timer(now)
        exact = _deadline_by_reading_every_entry(layer)
        if layer._known:
            assert layer._earliest == exact
        else:
            assert exact is not None and layer._earliest is not None
            assert layer._earliest <= exact
        if op == "read":
            assert layer.get_timer() == exact and layer._known
