"""The one timer contract (``get_timer``/``handle_timer``) and its one driver on asyncio."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sip_usage_kit import Clock

from mcacm_sip.core.fa_server import FaServer, FaServerConfig
from mcacm_sip.sip.aio.timer import TimerDriver
from mcacm_sip.sip.publication import Compositor, Publisher
from mcacm_sip.sip.registrar import Registrar, Registration
from mcacm_sip.sip.subscription import Notifier, Subscriber
from mcacm_sip.sip.timer import Timed
from mcacm_sip.sip.transaction import TransactionLayer


class Deadlines:
    """A source with a list of deadlines; ``handle_timer`` pops the due ones."""

    def __init__(self, *deadlines: float, fail: bool = False) -> None:
        self.deadlines = sorted(deadlines)
        self.fired: list[float] = []
        self.fail = fail
        self.done = asyncio.Event()
        self.on_fire: Any = None

    def get_timer(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def handle_timer(self, now: float) -> None:
        while self.deadlines and self.deadlines[0] <= now:
            self.deadlines.pop(0)
        self.fired.append(now)
        if self.on_fire is not None:
            self.on_fire()
        if not self.deadlines:
            self.done.set()
        if self.fail:
            raise RuntimeError("handler bug")


def test_every_sans_io_object_speaks_the_contract() -> None:
    """Checked by mypy (a ``Timed`` annotation) and at run time (the methods exist)."""
    sources: list[Timed] = [
        TransactionLayer(), Registrar(), Compositor(["presence"]), Notifier({}),
        Registration(registrar="sip:r@x", aor="sip:a@x", contact="sip:a@192.0.2.1"),
        Publisher(target="sip:r@x", from_uri="sip:a@x", event="presence"),
        Subscriber(target="sip:r@x", from_uri="sip:a@x", event="presence",
                   contact="sip:a@192.0.2.1"),
        FaServer(FaServerConfig(())),
    ]
    for source in sources:
        assert source.get_timer() is None  # nothing to do yet, for all of them
        source.handle_timer(0.0)  # and a tick with nothing due is harmless


def test_fires_on_the_injected_clock_once_moved_past_the_deadline() -> None:
    async def run() -> None:
        clock = Clock(100.0)
        source = Deadlines(160.0)
        driver = TimerDriver(source, clock=clock)
        driver.rearm()
        assert driver.deadline == 160.0 and source.fired == []
        clock.advance(60)  # the fake clock jumps; the loop's own clock has not moved
        driver.check()
        await source.done.wait()
        assert source.fired == [160.0]
        assert driver.deadline is None
        driver.stop()

    asyncio.run(run())


def test_waits_are_capped_so_a_huge_deadline_is_rechecked(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        delays: list[float] = []
        call_at = loop.call_at

        def recording(when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
            delays.append(when - loop.time())
            return call_at(when, callback, *args)

        monkeypatch.setattr(loop, "call_at", recording)
        driver = TimerDriver(Deadlines(2.0**32), clock=Clock(0.0))
        driver.rearm()
        driver.stop()
        assert len(delays) == 1 and 0 < delays[0] <= TimerDriver.MAX_WAIT

    asyncio.run(run())



def recorded_call_at(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The running loop's ``call_at`` deadlines, recorded as the driver arms them."""
    loop = asyncio.get_running_loop()
    calls: list[float] = []
    call_at = loop.call_at

    def recording(when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        calls.append(when)
        return call_at(when, callback, *args)

    monkeypatch.setattr(loop, "call_at", recording)
    return calls


def test_an_unmoved_deadline_is_not_rearmed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        calls = recorded_call_at(monkeypatch)
        source = Deadlines(50.0)
        driver = TimerDriver(source, clock=Clock(0.0))
        for _ in range(5):
            driver.rearm()  # after every event: the hot path must not re-arm for nothing
        assert len(calls) == 1
        source.deadlines = [40.0]
        driver.rearm()
        assert len(calls) == 2 and driver.deadline == 40.0
        driver.stop()

    asyncio.run(run())


def test_a_failing_handler_is_logged_and_the_timer_goes_on(caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    async def run() -> None:
        source = Deadlines(1.0, 2.0, fail=True)
        driver = TimerDriver(source, clock=Clock(5.0))
        with caplog.at_level(logging.ERROR, "mcacm.sip"):
            driver.rearm()
            await source.done.wait()
        assert source.fired == [5.0]  # both were due: one round
        assert "timer handler failed" in caplog.text
        source.deadlines = [6.0]
        source.done.clear()
        driver.rearm()  # still alive after the failure
        assert driver.deadline == 6.0
        driver.stop()

    asyncio.run(run())


def test_stop_from_inside_the_handler_and_start_again() -> None:
    async def run() -> None:
        clock = Clock(10.0)
        source = Deadlines(1.0, 2.0)
        driver = TimerDriver(source, clock=clock, start=False)
        driver.rearm()  # not started: nothing armed
        assert driver.deadline is None
        fired = asyncio.Event()

        def stop_now() -> None:
            driver.stop()
            fired.set()

        source.deadlines = [1.0]
        source.on_fire = stop_now
        driver.start()
        await fired.wait()
        source.on_fire = None
        source.deadlines = [3.0]
        driver.rearm()  # stopped: stays idle
        assert driver.deadline is None and source.fired == [10.0]
        source.done.clear()
        driver.start()
        await source.done.wait()
        assert source.fired == [10.0, 10.0]

    asyncio.run(run())


def test_a_failing_retransmission_does_not_stop_the_endpoints_timers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A send whose first retransmission fails in the endpoint still ends in SipTimeout (Timer
    F), instead of waiting for ever for a timer nobody armed again."""
    from sip_usage_kit import endpoint

    from mcacm_sip.sip import SipTimeout
    from mcacm_sip.sip.aio.endpoint import SipEndpoint

    async def run() -> None:
        async with endpoint() as ep:
            sent: list[bytes] = []
            transmit = SipEndpoint._transmit

            def flaky(self: SipEndpoint, data: bytes, dest: Any) -> None:
                sent.append(data)
                if len(sent) == 2:  # the first retransmission (Timer E)
                    raise OSError("network is unreachable")
                transmit(self, data, dest)

            monkeypatch.setattr(SipEndpoint, "_transmit", flaky)
            silent = await asyncio.get_running_loop().create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
            try:
                port = silent[0].get_extra_info("sockname")[1]
                request = ep.new_request("OPTIONS", f"sip:x@127.0.0.1:{port}",
                                         from_uri="sip:a@example.com", to_uri="sip:x@example.com")
                with pytest.raises(SipTimeout):
                    # a bound on a hang only (Timer F is 64*T1 = 3.2 s with these timers)
                    await asyncio.wait_for(ep.send(request), 60)
                assert len(sent) > 2  # retransmissions went on after the failure
            finally:
                silent[0].close()

    asyncio.run(run())


def test_a_deadline_that_moved_later_keeps_the_earlier_wakeup(monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """A transaction answered before its Timer E moves the deadline later: the loop's timer is
    not re-created for that; the earlier wake-up fires, finds nothing due and re-arms once for
    the real deadline (no handle_timer call before it)."""
    async def run() -> None:
        calls = recorded_call_at(monkeypatch)
        clock = Clock(0.0)
        source = Deadlines(10.0)
        driver = TimerDriver(source, clock=clock)
        driver.rearm()
        for later in (20.0, 30.0, 40.0):
            source.deadlines = [later]
            driver.rearm()
        assert len(calls) == 1 and driver.deadline == 10.0
        clock.advance(15)  # past the armed wake-up, before the source's deadline
        driver._fire()  # what the loop calls at the armed time
        assert source.fired == [] and driver.deadline == 40.0 and len(calls) == 2
        source.deadlines = []
        driver.rearm()  # nothing left: idle
        assert driver.deadline is None
        driver.stop()

    asyncio.run(run())


def test_a_deadline_callable_given_is_what_the_driver_reads() -> None:
    """``deadline=`` (the endpoint passes its transaction layer's ``get_timer``) is read
    instead of the source's ``get_timer``; ``handle_timer`` is still the source's."""
    class Fires:
        def __init__(self) -> None:
            self.fired: list[float] = []
            self.done = asyncio.Event()

        def get_timer(self) -> float | None:
            raise AssertionError("read through the source")

        def handle_timer(self, now: float) -> None:
            self.fired.append(now)
            deadlines.pop(0)
            self.done.set()

    async def run() -> None:
        clock = Clock(10.0)
        source = Fires()
        driver = TimerDriver(source, clock=clock,
                             deadline=lambda: deadlines[0] if deadlines else None)
        driver.rearm()
        assert driver.deadline == 12.0
        clock.advance(5)
        driver.check()
        await source.done.wait()
        assert source.fired == [15.0] and driver.deadline is None
        driver.stop()

    deadlines = [12.0]
    asyncio.run(run())


def test_rearm_at_a_deadline_read_by_the_caller_is_rearm() -> None:
    """``rearm_at(source.get_timer())`` (the endpoint reads its layer's deadline itself) leaves
    the driver armed as ``rearm()`` does, for any sequence of deadlines: earlier, later, none,
    stopped and started again."""
    asyncio.run(_rearm_at_is_rearm())


async def _rearm_at_is_rearm() -> None:
    clock = Clock()
    steps: list[float | None] = [5.0, 7.0, 3.0, None, 3.0, 9.0, 1.0, None, None, 2.0, 2.0, 0.5]
    a, b = Deadlines(), Deadlines()
    by_rearm = TimerDriver(a, clock=clock)
    by_rearm_at = TimerDriver(b, clock=clock)
    try:
        for n, when in enumerate(steps):
            a.deadlines = b.deadlines = [] if when is None else [when]
            if n == 8:  # stopped: neither arms; started again: both re-read the deadline
                by_rearm.stop()
                by_rearm_at.stop()
            by_rearm.rearm()
            by_rearm_at.rearm_at(b.get_timer())
            if n == 9:
                by_rearm.start()
                by_rearm_at.start()
            assert by_rearm_at.deadline == by_rearm.deadline, n
    finally:
        by_rearm.stop()
        by_rearm_at.stop()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.floats(0, 20)), st.floats(0, 5),
                          st.sampled_from(["", "stop", "start"])), min_size=1, max_size=14))
def test_rearm_bound_is_rearm_at_of_the_deadline(
        steps: list[tuple[float | None, float, str]]) -> None:
    """``rearm_bound(bound, exact)`` (the endpoint passes its layer's deadline or a bound no
    later than it, None only with no deadline) leaves the driver armed as
    ``rearm_at(exact())`` does, through stops and starts; ``exact`` is read only when the
    wake-up armed is later than the bound or there is none (fails with the shortcut taken
    for a bound a second before the wake-up)."""
    asyncio.run(_rearm_bound_is_rearm_at(steps))


async def _rearm_bound_is_rearm_at(steps: list[tuple[float | None, float, str]]) -> None:
    clock = Clock()
    a, b = Deadlines(), Deadlines()
    by_rearm_at = TimerDriver(a, clock=clock)
    by_bound = TimerDriver(b, clock=clock)
    reads = 0

    def exact() -> float | None:
        nonlocal reads
        reads += 1
        return b.get_timer()

    try:
        for n, (when, slack, switch) in enumerate(steps):
            a.deadlines = b.deadlines = [] if when is None else [when]
            if switch == "stop":
                by_rearm_at.stop()
                by_bound.stop()
            armed, reads = by_bound.deadline, 0
            by_rearm_at.rearm_at(a.get_timer())
            by_bound.rearm_bound(None if when is None else when - slack, exact)
            assert by_bound.deadline == by_rearm_at.deadline, n
            skipped = (switch != "stop" and when is not None and armed is not None
                       and when - slack >= armed)
            assert reads == (0 if skipped else 1), n
            if switch == "start":
                by_rearm_at.start()
                by_bound.start()
                assert by_bound.deadline == by_rearm_at.deadline, n
    finally:
        by_rearm_at.stop()
        by_bound.stop()
