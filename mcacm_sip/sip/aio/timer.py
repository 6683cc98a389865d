"""The one timer driver: a :class:`~mcacm_sip.sip.timer.Timed` object run on the event loop.

One ``loop.call_at`` at a time, re-checked after every event that may move the deadline
(aioquic's pattern) and re-armed only when the deadline came earlier: a wake-up armed for an
earlier deadline than the source's stays, and re-reads the deadline when it fires. The
endpoint drives its transaction layer with it, the usages' services their cores, and the
nodes their ACMS/ACMC core.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..timer import Timed

log = logging.getLogger("mcacm.sip")


class TimerDriver:
    """Calls ``source.handle_timer(now)`` once ``source.get_timer()`` has passed on ``clock``.

    ``clock`` is the source's clock (wall clock for the nodes, the loop's for the endpoint, a
    fake one in tests); the driver turns the deadline into a delay on the loop, so the two
    clocks need not agree. Waits are capped at :attr:`MAX_WAIT`: a deadline 136 years away
    (Expires 2**32-1) is re-checked hourly instead of becoming one huge timer, and a wall-clock
    jump is noticed within the hour (or at once with :meth:`check`). What ``handle_timer``
    returns is the source's business: a source whose work needs acting on wraps itself.
    """

    MAX_WAIT = 3600.0

    __slots__ = ("_clock", "_deadline", "_handle", "_running", "_source", "_when")

    def __init__(self, source: Timed, *, clock: Callable[[], float], start: bool = True,
                 deadline: Callable[[], float | None] | None = None) -> None:
        """``deadline``: what ``source.get_timer`` returns, read without the call through
        ``source`` (the endpoint passes its transaction layer's, read after every event)."""
        self._source = source
        self._deadline = source.get_timer if deadline is None else deadline
        self._clock = clock
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None
        self._running = start

    def start(self) -> None:
        """Run (again) from now on; a driver made with ``start=False`` waits for this."""
        self._running = True
        self.check()

    def rearm(self) -> None:
        """Re-read the deadline after an event; nothing to do unless it came earlier than the
        wake-up armed (a later one is re-read when that wake-up fires) or there is none left.
        Sources stop timers far more often than they arm earlier ones (a transaction answered
        before its Timer E): re-arming the loop's timer for each cost more than a wake-up."""
        if self._running:
            self.rearm_at(self._deadline())

    def rearm_at(self, when: float | None) -> None:
        """:meth:`rearm` with the deadline the caller has just read (the source's
        ``get_timer()``): the endpoint reads its layer's without a call, after every event."""
        if not self._running:
            return
        armed = self._when
        if self._handle is None:
            if when is None:
                return
        elif when is not None and armed is not None and when >= armed:
            return
        self._arm(when)

    def rearm_bound(self, bound: float | None, exact: Callable[[], float | None]) -> None:
        """``rearm_at(exact())`` given ``bound``, the deadline ``exact()`` returns or one no
        later than it, None only when ``exact()`` is None: ``exact`` is not called when the
        wake-up armed comes no later than ``bound``, where ``rearm_at`` does nothing. The
        endpoint passes its layer's last deadline after a transaction ended at it: reading
        the new one walks the queues, and a later deadline never re-arms (it is re-read at
        the wake-up)."""
        armed = self._when  # (None while idle or stopped)
        if bound is not None and armed is not None and bound >= armed:
            return
        self.rearm_at(exact())

    def check(self) -> None:
        """Re-read the clock and the deadline now (after a clock jump, or a fake clock moved
        by a test)."""
        if self._running:
            self._arm(self._deadline())

    def stop(self) -> None:
        """Stop for good (safe from inside ``handle_timer``); :meth:`start` runs it again."""
        self._running = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = None

    @property
    def deadline(self) -> float | None:
        """The deadline armed now (on the source's clock), None when idle."""
        return self._when if self._handle is not None else None

    def _arm(self, when: float | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = when
        if when is None:
            return
        loop = asyncio.get_running_loop()
        delay = min(max(0.0, when - self._clock()), self.MAX_WAIT)
        self._handle = loop.call_at(loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._when = None
        now = self._clock()
        when = self._deadline()
        if when is not None and when <= now:
            try:
                self._source.handle_timer(now)
            except Exception:  # one failed round must not stop the timer for good
                log.exception("timer handler failed")
        self.rearm()


__all__ = ["TimerDriver"]
