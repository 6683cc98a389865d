"""Load from the command line (``mcacm send --count N --rate R``): N requests at R per second
to one peer, each followed to its final response like ``mcacm send`` follows one, with
SIPp-style statistics (docs/cli.md "Load").

Open loop: request i is due at ``start + i / rate`` whatever became of the earlier ones, so a
slow peer meets the offered rate, not a rate it sets itself; ``concurrency`` bounds the
requests still waiting for their final response (SIPp's ``-l``): when reached, the next
request waits for a slot and the achieved rate drops below R (reported).  As an ACMC the
requester REGISTERs once; every request must then have that requester.

:class:`LoadStats` is the sans-I/O part (counts, response times, the CSV rows); :func:`run_load`
the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.runtime.base import uri_host
from mcacm_sip.runtime.messaging import message_reply
from mcacm_sip.runtime.sender import (
    Exchange,
    ExchangeResult,
    SendableRequest,
    SendSettings,
    follow_message,
    sender_endpoint,
)
from mcacm_sip.runtime.wire import Retransmissions, summarise
from mcacm_sip.sip import Reply
from mcacm_sip.sip.aio import IncomingRequest, MessageTrace, TracedMessage
from mcacm_sip.sip.aio.usages import RegistrationClient, RegistrationError
from mcacm_sip.sip.uri import registrar_uri

CSV_FIELDS = ("time", "elapsed_s", "sent", "in_progress", "successful", "failed", "negative",
              "no_answer", "refused", "invalid", "retransmissions", "offered_rate",
              "achieved_rate", "rt_p50_ms", "rt_p90_ms", "rt_p99_ms", "rt_max_ms")
"""Columns of ``--stats FILE`` (one row per interval and a final one; counts cumulative)."""


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``, None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(slots=True)
class LoadStats:
    """What a load run did so far."""

    count: int
    rate: float
    started: float
    sent: int = 0
    finished: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    response_times: list[float] = field(default_factory=list)
    """Seconds from our MESSAGE to the final response (answered requests)."""
    retransmissions: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    """Why requests failed (``failure`` text or ``Result`` code) -> how many."""
    register_status: int | None = None
    last_sent_at: float | None = None

    def done(self, ex: Exchange) -> None:
        self.finished += 1
        self.verdicts[str(ex.verdict)] += 1
        if "response" in ex.timings:
            self.response_times.append(ex.timings["response"])
        if ex.verdict is not ExchangeResult.POSITIVE:
            why = ex.result or (f"{ex.sip_status} {ex.sip_reason or ''}".strip()
                                if ex.refused else ex.failure) or str(ex.verdict)
            self.failures[why] += 1

    @property
    def successful(self) -> int:
        return self.verdicts[str(ExchangeResult.POSITIVE)]

    @property
    def failed(self) -> int:
        return self.finished - self.successful

    def row(self, now: float) -> dict[str, Any]:
        ms = [t * 1000 for t in self.response_times]
        sending = (self.last_sent_at or now) - self.started

        def rt(p: float) -> float | None:
            v = percentile(ms, p)
            return None if v is None else round(v, 1)

        return {
            "time": round(now, 3), "elapsed_s": round(now - self.started, 3),
            "sent": self.sent, "in_progress": self.sent - self.finished,
            "successful": self.successful, "failed": self.failed,
            "negative": self.verdicts[str(ExchangeResult.NEGATIVE)],
            "no_answer": self.verdicts[str(ExchangeResult.NO_ANSWER)],
            "refused": self.verdicts[str(ExchangeResult.REFUSED)],
            "invalid": self.verdicts[str(ExchangeResult.INVALID)],
            "retransmissions": self.retransmissions, "offered_rate": self.rate,
            "achieved_rate": round((self.sent - 1) / sending, 2) if self.sent > 1 and sending
            > 0 else None,
            "rt_p50_ms": rt(50), "rt_p90_ms": rt(90), "rt_p99_ms": rt(99),
            "rt_max_ms": round(max(ms), 1) if ms else None,
        }

    def summary(self, now: float) -> str:
        r = self.row(now)

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:g} ms"

        return (f"{r['sent']} sent in {r['elapsed_s']:g} s (offered {self.rate:g}/s, achieved "
                f"{r['achieved_rate'] if r['achieved_rate'] is not None else '-'}/s): "
                f"{r['successful']} successful, {r['failed']} failed ({r['negative']} "
                f"negative, {r['no_answer']} no answer, {r['refused']} refused, "
                f"{r['invalid']} invalid), {r['retransmissions']} retransmissions; response "
                f"time p50 {ms(r['rt_p50_ms'])}, p90 {ms(r['rt_p90_ms'])}, "
                f"p99 {ms(r['rt_p99_ms'])}")


class StatsWriter:
    """The ``--stats`` CSV: a header, then rows as :meth:`LoadStats.row` gives them."""

    def __init__(self, stream: IO[str]) -> None:
        self._csv = csv.DictWriter(stream, CSV_FIELDS)
        self._stream = stream
        self._csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._csv.writerow(row)
        self._stream.flush()


async def run_load(make: Callable[[int], tuple[SendableRequest, bytes]], settings: SendSettings,
                   count: int, rate: float, concurrency: int, *,
                   trace: MessageTrace | None = None, stats_out: StatsWriter | None = None,
                   interval: float = 1.0, progress: Callable[[str], None] | None = None
                   ) -> LoadStats:
    """Send ``make(0) ... make(count - 1)`` at ``rate`` per second (at most ``concurrency``
    unanswered), each waited for up to ``settings.timeout``.  Raises OSError if we cannot
    listen."""
    say = progress or (lambda _: None)
    retrans = Retransmissions()
    stats = LoadStats(count, rate, time.time())

    def traced(m: TracedMessage) -> None:
        if m.direction == "out" and retrans.sent(summarise(m.data)):
            stats.retransmissions = retrans.count
        if trace is not None:
            trace(m)

    endpoint = sender_endpoint(settings, traced)
    exchanges: dict[str, tuple[Exchange, asyncio.Event]] = {}
    host = uri_host(settings.identity)

    def on_message(incoming: IncomingRequest) -> Reply:
        msg = incoming.message
        try:
            tid = getattr(codec.decode(msg.body, content_type=msg.header("content-type") or ""),
                          "transaction_id", None)
        except AcmError:
            tid = None
        mine = exchanges.get(tid) if isinstance(tid, str) else None
        if mine is None:  # not about a request of ours: the ACMS keeps it (as mcacm send)
            return message_reply(host, 480, "not-handled: mcacm send takes only the answers "
                                            "to its own requests")
        ex, changed = mine
        status, text = ex.on_message(msg.body, msg.header("content-type"), time.time())
        changed.set()
        return Reply(200) if text is None else message_reply(host, status, text)

    endpoint.serve("MESSAGE", on_message)
    await endpoint.start()
    registration: RegistrationClient | None = None
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def one(request: SendableRequest, body: bytes) -> None:
        ex = Exchange(request, time.time())
        changed = asyncio.Event()
        exchanges[request.transaction_id] = (ex, changed)
        try:
            async with asyncio.timeout(settings.timeout):
                await follow_message(endpoint, settings, body, ex, changed, lambda _: None)
        except TimeoutError:
            pass
        finally:
            ex.finish(time.time())
            stats.done(ex)
            exchanges.pop(request.transaction_id, None)
            slots.release()

    async def report() -> None:
        while stats_out is not None:
            await asyncio.sleep(interval)
            stats_out.write(stats.row(time.time()))

    reporter = asyncio.get_running_loop().create_task(report())
    try:
        if settings.role == "acmc":
            registration = RegistrationClient(
                endpoint, registrar=registrar_uri(settings.to), aor=settings.identity,
                expires=settings.registration_expires, transport=settings.listen.transport)
            say(f"REGISTER {settings.identity} at {registrar_uri(settings.to)}")
            try:
                async with asyncio.timeout(settings.timeout):
                    await registration.register()  # 10.17.3.1 logon, once for the run
                stats.register_status = 200
            except (RegistrationError, TimeoutError) as exc:
                stats.register_status = getattr(exc, "status", None)
                await registration.close()
                registration = None
            if stats.register_status != 200:
                say(f"REGISTER failed ({stats.register_status or 'no answer'}): nothing sent")
                return stats
        say(f"sending {count} request(s) at {rate:g}/s, at most {concurrency} unanswered")
        stats.started = start = time.time()
        loop = asyncio.get_running_loop()
        for i in range(count):
            request, body = make(i)
            delay = start + i / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            stats.sent += 1
            stats.last_sent_at = time.time()
            task = loop.create_task(one(request, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        if registration is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(registration.unregister(), 5.0)
        await endpoint.close()
        if stats_out is not None:
            stats_out.write(stats.row(time.time()))
    return stats


__all__ = ["CSV_FIELDS", "LoadStats", "StatsWriter", "percentile", "run_load"]
