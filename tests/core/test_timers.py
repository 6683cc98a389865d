"""The ACMS core's timers (records.py: the open work's heap and the retained transactions'
heap): whatever happened, ``get_timer`` is the earliest time a record holds (a recount), and
a tick ends the transactions that ran out earliest first, as one heap of them all would."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mcacm_sip.acm.model import Addressee, AddUserConfigurationRequest, Party, new_transaction_id
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.events import DeliveryOutcome, Failure, FlowFromPeer, SendFlow, TimerTick
from mcacm_sip.core.quota import Quotas
from mcacm_sip.core.state import Transaction
from mcacm_sip.runtime.lab import ALICE, DAVE, MIKE, PRIMARY, partner_config

T0 = 1_700_000_000.0
DAY = 86400.0
GAPS = st.sampled_from([0.0, 0.5, 1.0, 3599.0, 3601.0, DAY - 1, DAY + 1, 6 * DAY,
                        7 * DAY - 10, 7 * DAY + 1, 8 * DAY])
"""Time between steps: around the answer grace (1 h), the decision timer (1 day) and the
retention (7 days), so that retention ends fall before, among and after open deadlines."""


def _earliest(core: AcmsCore) -> float | None:
    """The earliest deadline or retry time of the records held, counted from the records."""
    times = [t.deadline for t in core.transactions()]
    times += [og.next_at for og in core._out.values() if og.next_at is not None]
    return min(times, default=None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("request"), GAPS),
    st.tuples(st.just("ok"), st.integers(0, 9)),
    st.tuples(st.just("busy"), st.integers(0, 9)),
    st.tuples(st.just("tick"), GAPS),
    st.tuples(st.just("next"), st.just(0))), max_size=40))
def test_the_timer_is_the_records_earliest_and_ticks_go_in_time_order(
        steps: list[tuple[str, Any]]) -> None:
    """Requests (each at its own time), 2xx and 503 outcomes (a retry time, or the end) and
    ticks that run out some, all or none of the deadlines, retention ends included."""
    core = AcmsCore(partner_config(None), quotas=Quotas())
    expired: list[Transaction] = []
    expire = core._expire

    def spy(now: float, tx: Transaction, out: Any) -> None:
        expired.append(tx)
        expire(now, tx, out)

    core._expire = spy  # type: ignore[method-assign]
    now, sends = T0, list[str]()
    for kind, n in steps:
        if kind == "request":
            now += n
            req = AddUserConfigurationRequest(new_transaction_id(), Party(ALICE), (MIKE,),
                                              Addressee(DAVE))
            actions = core.handle(FlowFromPeer(now, PRIMARY, req))
        elif kind in ("ok", "busy"):
            if not sends:
                continue
            send_id = sends.pop(n % len(sends))
            actions = core.handle(DeliveryOutcome(now, send_id, True) if kind == "ok" else
                                  DeliveryOutcome(now, send_id, False, "503", 503,
                                                  failure=Failure.REFUSED))
        else:
            when = core.get_timer()
            now = max(now, when) if kind == "next" and when is not None else now + n
            due = sorted((t.deadline, t.key) for t in core.transactions() if t.deadline <= now)
            expired.clear()
            actions = core.handle(TimerTick(now))
            # each transaction that ran out is ended once, earliest first
            assert [(t.deadline, t.key) for t in expired] == due
        sends += [a.send_id for a in actions if isinstance(a, SendFlow)]
        assert core.get_timer() == _earliest(core)


def test_dropping_the_dead_entries_keeps_every_live_timer() -> None:
    """Past its bound a heap is rebuilt from its live entries: the other heap's entries stay
    where they are, every live timer still runs, in time order, to the last retention end."""
    core = AcmsCore(partner_config(None), quotas=Quotas())
    now = T0
    for n in range(6):  # three done (retained), three open whose answers wait for a retry
        now += 1.0
        for a in core.handle(FlowFromPeer(now, PRIMARY, AddUserConfigurationRequest(
                new_transaction_id(), Party(ALICE), (MIKE,), Addressee(DAVE)))):
            if isinstance(a, SendFlow):
                core.handle(DeliveryOutcome(now, a.send_id, True) if n % 2 else
                            DeliveryOutcome(now, a.send_id, False, "503", 503, retry_after=5.0,
                                            failure=Failure.REFUSED))
    for i in range(300):  # dead entries (no such record) in both heaps
        core._timer_at(now + i, Transaction.KIND, f"gone-{i}")
        core._timer_at(now + 8 * DAY + i, Transaction.KIND, f"gone-{i}", retained=True)
    bound = 64 + 4 * (len(core.transactions()) + len(core._out))
    assert len(core._timers) <= bound and len(core._kept_timers) <= bound
    ended: list[float] = []
    while (when := core.get_timer()) is not None:  # every deadline and retention end runs
        assert when == _earliest(core)
        ended.append(when)
        for a in core.handle(TimerTick(when)):
            if isinstance(a, SendFlow):  # (the retries: taken this time)
                core.handle(DeliveryOutcome(when, a.send_id, True))
    assert ended == sorted(ended) and not core.transactions()
