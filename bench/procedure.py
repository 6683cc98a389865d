"""Full procedure: primary ACMC -> primary ACMS -> partner ACMS -> response back to the
primary ACMC (23.280 10.17.7.2 steps 1-10), all five nodes of mcacm_sip.runtime.lab in this
process on loopback UDP with durable SQLite stores, along two paths:

- automatic: the profile carries the element the partner's policy approves automatically
  (10.17.3.2), so the partner answers at once;
- approval: it does not, so the partner hands the request to DAVE's ACMC (steps 5-7), whose
  scripted decider approves at once: two more MESSAGEs and a decision per procedure.

Two loads each: closed loop (N requests always in flight: procedures/s it sustains) and open
loop (requests started at a fixed rate: p50/p99 end-to-end latency, request submitted ->
response delivered to the primary ACMC). The CPU column is this process (all five nodes) per
procedure. Baseline: none (every node is ours); read it beside the ingress and SIP-layer
benches of the same run.

    .venv/bin/python bench/procedure.py [--quick] [--json FILE] [--rates 250,500,1000]
        [--paths automatic,approval]
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from _common import Result, bench_parser, percentile, report, rss_bytes, target

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import Addressee, ProfileUpdateRequest, new_transaction_id
from mcacm_sip.cli.logs import setup_logging
from mcacm_sip.runtime.acmc import AutoDecider
from mcacm_sip.runtime.base import paced_full_collections
from mcacm_sip.runtime.lab import DAVE, ROUTINE, Lab, profile_xml

CONCURRENCY = (1, 10, 50)
LOADS = (0.25, 0.5, 0.75)  # open-loop rates as fractions of the closed-loop capacity
QUICK_CONCURRENCY = (1, 10)
TARGET_RATE, TARGET_P99_MS = 200, 10.0  # issue 18: open loop at 200 procedures/s, p99 <= 10 ms
TARGET_CAPACITY = 600  # issue 18: procedures/s, automatic path (closed loop)
# the profile of each path: with or without the element the partner approves automatically
PATHS = {"automatic": (ROUTINE,), "approval": ()}


@dataclass(frozen=True)
class Run:
    load: str  # "closed N" | "open R/s"
    completed: int
    failed: int  # no positive response (refused, undeliverable, timed out)
    seconds: float
    per_second: float
    p50_ms: float | None
    p99_ms: float | None
    cpu_us: float  # this process's CPU time per completed procedure (all nodes)
    rss_mib: float


class Procedures:
    """Starts procedures against a running lab and times them."""

    def __init__(self, lab: Lab, migrated: str, path: str) -> None:
        self.lab = lab
        self.migrated = migrated
        self.profile = profile_from_xml(profile_xml("Mike (updated)", *PATHS[path]))
        self.latencies: list[float] = []
        self.failed = 0

    async def one(self) -> None:
        request = ProfileUpdateRequest(new_transaction_id(), self.lab.alice.core.me,
                                       Addressee(DAVE), self.migrated, self.profile, "bench")
        started = time.perf_counter()
        outcome = await self.lab.alice.request(request, timeout=30.0)
        if outcome.result == "success":
            self.latencies.append(1000 * (time.perf_counter() - started))
        else:
            self.failed += 1

    def result(self, load: str, seconds: float, cpu: float) -> Run:
        n = len(self.latencies)
        return Run(load, n, self.failed, round(seconds, 2), round(n / seconds, 1),
                   percentile(self.latencies, 0.5), percentile(self.latencies, 0.99),
                   round(1e6 * cpu / n) if n else 0.0, round(rss_bytes([os.getpid()]) / 2**20, 1))


async def _measure(lab: Lab, migrated: str, path: str, load: str,
                   drive: Callable[[Procedures], Awaitable[None]]) -> Run:
    p = Procedures(lab, migrated, path)
    cpu0, t0 = time.process_time(), time.perf_counter()
    await drive(p)
    run = p.result(load, time.perf_counter() - t0, time.process_time() - cpu0)
    print(f"  {load:>12}: {run.completed} done, {run.failed} failed, {run.per_second}/s, "
          f"p50={run.p50_ms} ms p99={run.p99_ms} ms, {run.cpu_us} CPU us/procedure, "
          f"rss={run.rss_mib} MiB", flush=True)
    return run


def closed_loop(n: int, seconds: float) -> Callable[[Procedures], Awaitable[None]]:
    async def drive(p: Procedures) -> None:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                await p.one()

        await asyncio.gather(*(worker() for _ in range(n)))
    return drive


def open_loop(rate: int, seconds: float) -> Callable[[Procedures], Awaitable[None]]:
    async def drive(p: Procedures) -> None:
        loop = asyncio.get_running_loop()
        start, count = loop.time(), int(rate * seconds)
        tasks = []
        for i in range(count):  # start i at start + i/rate, whatever the previous ones do
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(loop.create_task(p.one()))
        await asyncio.gather(*tasks)
    return drive


def open_rates(capacity: float) -> list[int]:
    """Fractions of the capacity the closed loop found, and the target rate if within it: an
    open loop beyond capacity only measures a queue that grows (and retransmissions)."""
    rates = {max(1, round(f * capacity)) for f in LOADS}
    if capacity >= TARGET_RATE / 0.9:
        rates.add(TARGET_RATE)
    return sorted(rates)


async def bench(paths: Sequence[str], concurrency: Sequence[int], rates: Sequence[int] | None,
                seconds: float) -> dict[str, tuple[list[Run], list[Run]]]:
    out: dict[str, tuple[list[Run], list[Run]]] = {}
    # DAVE approves at once whatever reaches him (the approval path; 10.17.7.2 step 6)
    async with Lab.start(transport="udp", dave=AutoDecider(True, "bench")) as lab:
        migrated = await lab.migrate_mike(30.0)  # 10.17.5.2, automatic by policy
        for path in paths:
            await _measure(lab, migrated, path, "warm-up", closed_loop(4, min(seconds, 1.0)))
            print(f"{path}: closed loop, {seconds:g} s each", flush=True)
            closed = [await _measure(lab, migrated, path, f"closed {n}",
                                     closed_loop(n, seconds)) for n in concurrency]
            capacity = max(r.per_second for r in closed)
            print(f"{path}: open loop, {seconds:g} s each", flush=True)
            opened: list[Run] = []
            for r in rates or open_rates(capacity):
                opened.append(await _measure(lab, migrated, path, f"open {r}/s",
                                             open_loop(r, seconds)))
                if opened[-1].per_second < 0.9 * r:  # saturated: higher rates only queue
                    break
            out[path] = closed, opened
    return out


def _table(title: str, runs: Sequence[Run]) -> dict[str, Any]:
    columns = ["load", "completed", "failed", "procedures/s", "p50 ms", "p99 ms",
               "CPU us/procedure", "RSS MiB"]
    rows = [[r.load, r.completed, r.failed, r.per_second, r.p50_ms, r.p99_ms, r.cpu_us,
             r.rss_mib] for r in runs]
    return {"title": title, "columns": columns, "rows": rows, "runs": [asdict(r) for r in runs]}


def main(argv: Sequence[str] | None = None) -> Result:
    parser = bench_parser(__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--concurrency", help="comma-separated N for the closed loop")
    parser.add_argument("--rates", help="comma-separated procedures/s for the open loop "
                        "(default: 25, 50, 75 %% of the closed-loop capacity, and 200 if "
                        "within it)")
    parser.add_argument("--seconds", type=float, help="length of each run (default 5, quick 1)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"),
                        help="the nodes' log level (default info, what `mcacm` runs)")
    parser.add_argument("--paths", default=",".join(PATHS),
                        help="comma-separated: automatic (the partner's policy approves), "
                             "approval (DAVE's ACMC approves)")
    args = parser.parse_args(argv)
    paths = args.paths.split(",")
    if not paths or any(p not in PATHS for p in paths):
        parser.error(f"--paths: choose from {', '.join(PATHS)}")
    # the nodes log as `mcacm` does (console format) at the level users run, into a file
    setup_logging(getattr(logging, args.log_level.upper()), "console")
    handler = cast(logging.StreamHandler[Any], logging.getLogger().handlers[0])
    concurrency = ([int(n) for n in args.concurrency.split(",")] if args.concurrency
                   else list(QUICK_CONCURRENCY if args.quick else CONCURRENCY))
    rates = [int(r) for r in args.rates.split(",")] if args.rates else None
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    with tempfile.TemporaryFile("w", prefix="bench-procedure-", suffix=".log") as log_file:
        handler.setStream(log_file)
        # full collections paced as `mcacm acms` runs them (docs/decisions.md "Full garbage
        # collections paced"): here the process holds all five nodes
        with paced_full_collections():
            runs = asyncio.run(bench(paths, concurrency, rates, seconds))
        handler.setStream(sys.stderr)
    summary: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    tables = []
    for path, (closed, opened) in runs.items():
        best = max(closed, key=lambda r: r.per_second)
        summary[f"{path}: highest procedures/s (closed loop)"] = best.per_second
        summary[f"{path}: at that load: p50/p99 ms, CPU us/procedure"] = (
            best.p50_ms, best.p99_ms, best.cpu_us)
        for r in opened:
            summary[f"{path}: {r.load}: p50/p99 ms (failed)"] = (r.p50_ms, r.p99_ms, r.failed)
        tables += [_table(f"{path}: closed loop: N procedures in flight", closed),
                   _table(f"{path}: open loop: procedures started at a fixed rate", opened)]
        if path == "automatic":  # the targets are for the automatic path
            at_target = next((r for r in opened if r.load == f"open {TARGET_RATE}/s"), None)
            targets += [
                target(f"full procedure >= {TARGET_CAPACITY} procedures/s (automatic, closed "
                       "loop)", f"{best.per_second}/s", best.per_second >= TARGET_CAPACITY),
                target(f"open-loop p99 <= {TARGET_P99_MS:g} ms at {TARGET_RATE}/s (automatic)",
                       f"not run: capacity {best.per_second}/s" if at_target is None else
                       f"{at_target.p99_ms} ms, {at_target.failed} failed",
                       at_target is not None and at_target.p99_ms is not None
                       and at_target.p99_ms <= TARGET_P99_MS and not at_target.failed
                       and at_target.per_second >= 0.95 * TARGET_RATE)]
    result: Result = {
        "name": "procedure",
        "title": "full procedure (automatic; DAVE approving): 2 ACMS + 2 ACMC + FA server in "
                 f"one process, log level {args.log_level}",
        "tables": tables,
        "summary": summary,
        "targets": targets,
    }
    report(result, args.json)
    return result


if __name__ == "__main__":
    main()
