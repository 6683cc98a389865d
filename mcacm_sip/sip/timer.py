"""The one timer contract of every sans-I/O object (aioquic's ``get_timer``/``handle_timer``).

The transaction layer, the registrar, subscription and publication cores, the FA server core
and (through their nodes) the ACMS and ACMC cores all say when they next need the clock with
``get_timer()`` and do that work in ``handle_timer(now)``. ``now`` and the deadline are on the
object's own clock, which its owner chooses; nothing here reads a clock.
:class:`~mcacm_sip.sip.aio.timer.TimerDriver` runs any of them on an event loop.
"""

from __future__ import annotations

from typing import Protocol


class Timed(Protocol):
    """Anything with a timer: the driver calls :meth:`handle_timer` once :meth:`get_timer`
    has passed, then asks :meth:`get_timer` again."""

    def get_timer(self) -> float | None:
        """The next deadline at which :meth:`handle_timer` has work, None for none."""
        ...

    def handle_timer(self, now: float) -> object:
        """Do what is due at ``now``; returns what the owner must act on (actions, changes,
        requests to send), or None."""
        ...


__all__ = ["Timed"]
