"""SipEndpoint.send_soon: send() without a task and a timeout context per request (issue 18).
The outcome reaches the callback as a finished future: the final response, SipTimeout after
``timeout`` (and the client transaction stops retransmitting), SipTransportError when the
endpoint closes; a hop that needs an await (a name to resolve, TCP) goes through send()."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from mcacm_sip.sip import Peer, Reply, SipTimeout, SipTransportError, Timers
from mcacm_sip.sip.aio import FinalResponse, IncomingRequest, Listen, SipEndpoint

BIG = b"x" * 4000  # over udp_mtu_switch: RFC 3261 18.1.1 wants TCP, as send() does


async def _endpoints(answer: bool, transport: str = "udp"
                     ) -> tuple[SipEndpoint, SipEndpoint, list[IncomingRequest]]:
    seen: list[IncomingRequest] = []
    server = SipEndpoint([Listen("udp", "127.0.0.1"), Listen("tcp", "127.0.0.1")])

    async def never(req: IncomingRequest) -> Reply:
        seen.append(req)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def ok(req: IncomingRequest) -> Reply:
        seen.append(req)
        return req.reply(200)

    server.serve("MESSAGE", ok if answer else never)
    await server.start()
    hop = Peer(transport, *server.local_address(transport))  # type: ignore[arg-type]
    client = SipEndpoint([Listen("udp", "127.0.0.1")], timers=Timers(t1=0.05),
                         locate=lambda uri: hop if uri.startswith("sip:acms@") else None)
    await client.start()
    return server, client, seen


def _outcome(client: SipEndpoint, uri: str, timeout: float | None, body: bytes = b""
             ) -> asyncio.Future[FinalResponse]:
    got: asyncio.Future[FinalResponse] = client.loop.create_future()

    def done(fut: asyncio.Future[FinalResponse]) -> None:
        assert fut.done()
        got.set_result(fut)  # type: ignore[arg-type]

    client.send_soon(client.new_request("MESSAGE", uri, from_uri="sip:c@x", to_uri=uri,
                                        body=body), timeout, done)
    return got


def test_answered_without_a_task() -> None:
    async def main() -> None:
        server, client, seen = await _endpoints(answer=True)
        try:
            tasks = len(asyncio.all_tasks())
            got = _outcome(client, "sip:acms@partner.invalid", 5.0)
            assert len(asyncio.all_tasks()) == tasks  # started at once, no task
            fut = await got
            assert fut.result().status == 200  # type: ignore[attr-defined]
            assert len(seen) == 1
            assert not client._waiters  # nothing left behind
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_no_answer_within_the_timeout_is_sip_timeout_and_retransmissions_stop() -> None:
    async def main() -> None:
        server, client, seen = await _endpoints(answer=False)
        try:
            fut = await _outcome(client, "sip:acms@partner.invalid", 0.3)
            with pytest.raises(SipTimeout):
                fut.result()  # type: ignore[attr-defined]
            received = len(seen)
            await asyncio.sleep(0.5)  # T1 = 0.05: several retransmissions were due meanwhile
            assert len(seen) == received and not client._waiters
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_closing_the_endpoint_ends_a_pending_send_with_a_transport_error() -> None:
    async def main() -> None:
        server, client, _ = await _endpoints(answer=False)
        try:
            got = _outcome(client, "sip:acms@partner.invalid", None)
            await asyncio.sleep(0.05)
            await client.close()
            fut = await got
            with pytest.raises(SipTransportError):
                fut.result()  # type: ignore[attr-defined]
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.parametrize("target", ["sip:s@{host}:{port}", "sip:s@{host}:{port};transport=UDP"])
def test_a_target_naming_an_ip_address_over_udp_starts_without_a_task(target: str) -> None:
    """A registered contact (what an ACMS sends the ACMC's MESSAGEs to) names its address:
    nothing to look up, so send_soon starts it at once, to the address send() would use."""
    async def main() -> None:
        server, client, seen = await _endpoints(answer=True)
        try:
            host, port = server.local_address("udp")
            tasks = len(asyncio.all_tasks())
            got = _outcome(client, target.format(host=host, port=port), 5.0)
            assert len(asyncio.all_tasks()) == tasks  # started at once, no task
            fut = await got
            assert fut.result().status == 200  # type: ignore[attr-defined]
            assert seen[0].source.transport == "udp"
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


@pytest.mark.parametrize("case", ["not located", "tcp hop", "too big for udp"])
def test_what_needs_an_await_goes_through_send(case: str) -> None:
    async def main() -> None:
        server, client, seen = await _endpoints(answer=True,
                                                transport="tcp" if case == "tcp hop" else "udp")
        try:
            port = server.local_address("udp")[1]
            # a name to look up (an IP address needs none: the test below)
            uri = f"sip:s@localhost:{port}" if case == "not located" else "sip:acms@partner.invalid"
            fut = await _outcome(client, uri, 5.0, BIG if case == "too big for udp" else b"")
            assert fut.result().status == 200  # type: ignore[attr-defined]
            assert seen[0].source.transport == ("tcp" if case != "not located" else "udp")
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_a_timeout_beyond_timer_f_arms_no_timer_and_ends_with_timer_f(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 3261 17.1.2.2: Timer F (64*T1) ends an unanswered transaction; a send_soon timeout
    no shorter than it could never fire first, so none is armed per send (a loop timer per
    MESSAGE was hot-path cost), and the outcome is Timer F's SipTimeout."""
    async def main() -> None:
        server, client, seen = await _endpoints(answer=False)
        client.timers = Timers(t1=0.01)  # Timer F at 0.64 s
        client.txn.timers = client.timers
        later: list[float] = []
        call_later = client.loop.call_later

        def recording(delay: float, *args: Any) -> asyncio.TimerHandle:
            later.append(delay)
            return call_later(delay, *args)

        monkeypatch.setattr(client.loop, "call_later", recording)
        try:
            fut = await _outcome(client, "sip:acms@partner.invalid", 32.0)
            with pytest.raises(SipTimeout):
                fut.result()  # type: ignore[attr-defined]
            assert 32.0 not in later and len(seen) >= 1 and not client._waiters
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_a_final_response_is_handed_over_from_the_callback_that_received_it() -> None:
    """Without a timer of its own, ``done`` gets the final response from inside the
    ``on_message`` that delivered it (no asyncio Handle per send), after the endpoint's record
    of it, never from inside ``send_soon``; the future holds what ``send`` returns for the
    same exchange (the general path: an awaited future)."""
    from mcacm_sip.sip import build_response

    async def main() -> None:
        server, client, seen = await _endpoints(answer=False)
        order: list[str] = []
        got: list[asyncio.Future[FinalResponse]] = []
        records: list[str] = []

        class Recorder(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record.getMessage())
                order.append("record")

        sip_log = logging.getLogger("mcacm.sip")
        recorder, level = Recorder(), sip_log.level
        sip_log.addHandler(recorder)
        sip_log.setLevel(logging.INFO)
        source = Peer("udp", *server.local_address("udp"))
        try:
            def done(fut: asyncio.Future[FinalResponse]) -> None:
                order.append("done")
                got.append(fut)

            request = client.new_request("MESSAGE", "sip:acms@partner.invalid",
                                         from_uri="sip:c@x", to_uri="sip:acms@x")
            client.send_soon(request, None, done)
            assert not got  # never from inside the call
            general = asyncio.ensure_future(client.send(client.new_request(
                "MESSAGE", "sip:acms@partner.invalid", from_uri="sip:c@x", to_uri="sip:acms@x")))
            while len(seen) < 2:
                await asyncio.sleep(0.01)
            answers = [build_response(incoming.message, 202, to_tag="t") for incoming in seen]
            client.on_message(answers[0], source, True)
            assert order == ["record", "done"]  # at once, after the record
            client.on_message(answers[1], source, True)
            final = await general
            fast = got[0].result()
            assert (fast.status, fast.message.reason, fast.source, fast.message.call_id) \
                == (final.status, final.message.reason, final.source, request.call_id)
            assert fast.request is request and not client._waiters
            assert records == ["MESSAGE 202", "MESSAGE 202"]
        finally:
            sip_log.removeHandler(recorder)
            sip_log.setLevel(level)
            await client.close()
            await server.close()

    asyncio.run(main())


def test_a_callback_that_raises_is_reported_and_the_endpoint_goes_on() -> None:
    """What ``done`` raises when handed a final response goes to the loop's exception handler,
    as from a future's callback; the endpoint's timer is still re-armed and the next send is
    answered."""
    from mcacm_sip.sip import build_response

    async def main() -> None:
        server, client, seen = await _endpoints(answer=False)
        reported: list[dict[str, Any]] = []
        client.loop.set_exception_handler(lambda loop, context: reported.append(context))
        source = Peer("udp", *server.local_address("udp"))
        try:
            def broken(fut: asyncio.Future[FinalResponse]) -> None:
                raise RuntimeError("a bug")

            client.send_soon(client.new_request("MESSAGE", "sip:acms@partner.invalid",
                                                from_uri="sip:c@x", to_uri="sip:acms@x"),
                             None, broken)
            while not seen:
                await asyncio.sleep(0.01)
            client.on_message(build_response(seen[0].message, 200, to_tag="t"), source, True)
            assert [type(c["exception"]) for c in reported] == [RuntimeError]
            assert client._timer._handle is not None  # Timer K armed
            got = _outcome(client, "sip:acms@partner.invalid", None)
            while len(seen) < 2:
                await asyncio.sleep(0.01)
            client.on_message(build_response(seen[1].message, 200, to_tag="t"), source, True)
            assert (await got).result().status == 200  # type: ignore[attr-defined]
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_a_request_in_carries_the_arrival_its_constructor_makes() -> None:
    """The endpoint builds a request's Arrival without the NamedTuple's Python ``__new__``:
    the same value, of the same class, as ``Arrival(...)`` (the socket's word: transport,
    address, port, no certificate over UDP)."""
    from mcacm_sip.sip.message import Arrival

    async def main() -> None:
        server, client, seen = await _endpoints(answer=True)
        try:
            fut = await _outcome(client, "sip:acms@partner.invalid", 5.0)
            assert fut.result().status == 200  # type: ignore[attr-defined]
            arrival = seen[0].message.arrival
            host, port = client.local_address("udp")
            want = Arrival("udp", host, port, None)
            assert type(arrival) is Arrival and arrival == want
            assert (arrival.transport, arrival.host, arrival.port, arrival.certificate) == want
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())
