"""What the slowest 1 % of bench/procedure.py's open-loop procedures share (a tool, not a bench).

Runs the automatic path's open loop (default 200/s, 5 s, as `make bench`) ``--runs`` times in
one lab, as bench/procedure.py does (paced full collections, INFO into a file), and records:

- each procedure's submit and response times;
- every garbage collection (``gc.callbacks``): generation, wall time;
- every SQLite group commit (``SqliteStore.apply``): wall time, and whether it checkpointed
  (the database file itself is written only by a WAL checkpoint: its mtime changed);
- every event-loop iteration (the selector's ``select`` wrapped): time in ``select`` (idle),
  the ready queue's length, this thread's CPU time (``time.thread_time``) and the time it
  waited runnable for a CPU (``/proc/thread-self/schedstat``, field 2: the kernel's run
  delay, i.e. the machine's other load or the hypervisor taking the CPU away).

Then, for the slowest 1 % and for the middle (45-55 %) of each run, the part of their
latency spent in each: preempted (run delay), GC by generation, commits (checkpoints apart),
idle in select, and the rest (CPU work of the loop: this and other procedures); the loop's
busy stretches over 2 ms; each collection's and checkpointing commit's own CPU. The run
delay is accounted by the kernel when the thread gets a CPU back, so it is approximate over
short spans. ``--commit-checkpoints`` and ``--round-11-gc`` put back what round 12 changed
(SQLite's checkpoints inside the commits; CPython's young threshold and a paced collection
every 2 s), for a comparison in the same hour.

    .venv/bin/python bench/_tail.py [--runs 3] [--rate 200] [--seconds 5]
        [--commit-checkpoints] [--round-11-gc] [--paced-interval S] [--unpaced]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procedure import Procedures, closed_loop

from mcacm_sip.cli.logs import setup_logging
from mcacm_sip.runtime.acmc import AutoDecider
from mcacm_sip.runtime.lab import Lab
from mcacm_sip.store import sqlite as sqlite_store

_SCHED = open(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat", "rb", buffering=0)  # noqa: SIM115


def run_delay() -> float:
    """Seconds this thread has waited runnable for a CPU since it started."""
    _SCHED.seek(0)
    return int(_SCHED.read().split()[1]) / 1e9


class Recorder:
    def __init__(self) -> None:
        self.gcs: list[tuple[int, float, float, int]] = []  # generation, start, end, collected
        self.commits: list[tuple[float, float, bool, str]] = []  # start, end, checkpoint, file
        # each collection's and commit's own (thread CPU s, run delay s)
        self.gc_own: list[tuple[float, float]] = []
        self.commit_own: list[tuple[float, float]] = []
        self._gc_own = (0.0, 0.0)
        # samples (perf, thread cpu, run delay) at each select's start and end
        self.samples: list[tuple[float, float, float]] = []
        self.selects: list[tuple[float, float, int, int]] = []  # start, end, ready, events
        self._gc_start = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_own = (time.thread_time(), run_delay())
            self._gc_start = time.perf_counter()
        else:
            t = time.perf_counter()
            self.gcs.append((info["generation"], self._gc_start, t, info["collected"]))
            self.gc_own.append((time.thread_time() - self._gc_own[0],
                                run_delay() - self._gc_own[1]))

    def patch_store(self) -> None:
        apply = sqlite_store.SqliteStore.apply
        commits, own = self.commits, self.commit_own

        def timed(store: Any, changes: Any) -> None:
            before = os.stat(store.path).st_mtime_ns
            c0, d0 = time.thread_time(), run_delay()
            t0 = time.perf_counter()
            apply(store, changes)
            t1 = time.perf_counter()
            own.append((time.thread_time() - c0, run_delay() - d0))
            commits.append((t0, t1, os.stat(store.path).st_mtime_ns != before,
                            Path(store.path).stem))

        sqlite_store.SqliteStore.apply = timed  # type: ignore[method-assign,assignment]

    def patch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        selector = loop._selector  # type: ignore[attr-defined]
        select = selector.select
        ready = loop._ready  # type: ignore[attr-defined]
        samples, selects = self.samples, self.selects
        perf, cpu = time.perf_counter, time.thread_time

        def timed(timeout: float | None = None) -> Any:
            t0 = perf()
            samples.append((t0, cpu(), run_delay()))
            n = len(ready)
            events = select(timeout)
            t1 = perf()
            samples.append((t1, cpu(), run_delay()))
            selects.append((t0, t1, n, len(events)))
            return events

        selector.select = timed

    def clear(self) -> None:
        self.gcs.clear()
        self.commits.clear()
        self.samples.clear()
        self.selects.clear()
        self.gc_own.clear()
        self.commit_own.clear()


def _overlap(intervals: Sequence[tuple[float, float]], s: float, e: float) -> float:
    return sum(max(0.0, min(b, e) - max(a, s)) for a, b in intervals)


def _at(samples: Sequence[tuple[float, float, float]], keys: Sequence[float], t: float,
        i: int) -> float:
    k = max(0, bisect.bisect_right(keys, t) - 1)
    return samples[k][i]


def analyse(rec: Recorder, spans: list[tuple[float, float]], label: str) -> dict[str, Any]:
    keys = [s[0] for s in rec.samples]
    gcs = {g: [(a, b) for gen, a, b, _ in rec.gcs if gen == g] for g in (0, 1, 2)}
    commits = [(a, b) for a, b, ck, _ in rec.commits if not ck]
    ckpts = [(a, b) for a, b, ck, _ in rec.commits if ck]
    idle = [(a, b) for a, b, _, _ in rec.selects]

    def parts(s: float, e: float) -> dict[str, float]:
        wall = e - s
        delay = _at(rec.samples, keys, e, 2) - _at(rec.samples, keys, s, 2)
        cpu = _at(rec.samples, keys, e, 1) - _at(rec.samples, keys, s, 1)
        out = {"latency": wall, "run delay": delay, "cpu": cpu,
               "gc0": _overlap(gcs[0], s, e), "gc1": _overlap(gcs[1], s, e),
               "gc2": _overlap(gcs[2], s, e), "commit": _overlap(commits, s, e),
               "checkpoint": _overlap(ckpts, s, e), "idle": _overlap(idle, s, e)}
        sel = [r for a, b, r, _ in rec.selects if s <= a <= e]
        out["ready max"] = max(sel, default=0) / 1000  # shown x1000 below
        return out

    ordered = sorted(spans, key=lambda p: p[1] - p[0])
    n = len(ordered)
    slow = ordered[n - max(1, n // 100):]
    mid = ordered[int(n * 0.45):int(n * 0.55)]
    cols = ["latency", "run delay", "cpu", "idle", "gc0", "gc1", "gc2", "commit", "checkpoint",
            "ready max"]

    def mean(group: list[tuple[float, float]]) -> dict[str, float]:
        ps = [parts(s, e) for s, e in group]
        return {c: statistics.fmean(p[c] for p in ps) for c in cols}

    p50 = ordered[n // 2][1] - ordered[n // 2][0]
    print(f"\n{label}: {n} procedures; p50 {1000 * p50:.2f} ms, p99 (10th slowest) "
          f"{1000 * (slow[0][1] - slow[0][0]):.2f} ms")
    print("  ms (means)     " + " ".join(f"{c:>10}" for c in cols))
    for name, group in (("middle 45-55%", mid), ("slowest 1%", slow)):
        m = mean(group)
        print(f"  {name:<14} " + " ".join(f"{1000 * m[c]:10.2f}" for c in cols))
    print("  the slowest, each (start s after the first):")
    t0 = spans[0][0]
    for s, e in reversed(slow):
        p = parts(s, e)
        print(f"    at {s - t0:7.3f}s " + " ".join(f"{1000 * p[c]:10.2f}" for c in cols))
    # the loop's stalls: busy stretches (select end -> next select start) > 2 ms
    stalls = []
    for (_, b, _, _), (a2, _, _, _) in zip(rec.selects, rec.selects[1:], strict=False):
        if a2 - b > 0.002:
            stalls.append((b, a2))
    print(f"  loop busy stretches > 2 ms: {len(stalls)}; their causes (ms):")
    for b, a2 in stalls[-12:]:
        p = parts(b, a2)
        print(f"    at {b - t0:7.3f}s busy {1000 * (a2 - b):6.2f}: delay "
              f"{1000 * p['run delay']:6.2f} cpu {1000 * p['cpu']:6.2f} gc0/1/2 "
              f"{1000 * p['gc0']:.2f}/{1000 * p['gc1']:.2f}/"
              f"{1000 * p['gc2']:.2f} commit {1000 * p['commit']:.2f} ckpt "
              f"{1000 * p['checkpoint']:.2f}")
    gc_counts = {g: len(v) for g, v in gcs.items()}
    gc_max = {g: max((b - a for a, b in v), default=0) * 1000 for g, v in gcs.items()}
    ck = [1000 * (b - a) for a, b in ckpts]
    cm = [1000 * (b - a) for a, b in commits]
    print(f"  collections per gen {gc_counts}, max ms "
          f"{({g: round(x, 2) for g, x in gc_max.items()})}")
    print(f"  commits {len(cm)} (median {statistics.median(cm) if cm else 0:.3f} ms, max "
          f"{max(cm, default=0):.2f}); checkpoints {len(ck)} "
          f"({', '.join(f'{x:.2f}' for x in ck)} ms)")
    # each kind's own CPU (this thread) and wall: what it costs apart from the machine's load
    kinds: dict[str, list[tuple[float, float]]] = {"gen0": [], "gen1": [], "gen2": [],
                                                   "checkpointing commit": []}
    for (gen, a, b, _), (cpu, _) in zip(rec.gcs, rec.gc_own, strict=True):
        kinds[f"gen{gen}"].append((b - a, cpu))
    for (a, b, checkpointed, _), (cpu, _) in zip(rec.commits, rec.commit_own, strict=True):
        if checkpointed:
            kinds["checkpointing commit"].append((b - a, cpu))
    for name, ev in kinds.items():
        cpus = sorted(c for _, c in ev)
        print(f"  {name}: {len(ev)}, CPU total {1000 * sum(cpus):.1f} ms, median "
              f"{1000 * statistics.median(cpus) if cpus else 0:.2f}, max "
              f"{1000 * max(cpus, default=0):.2f}; wall max "
              f"{1000 * max((w for w, _ in ev), default=0):.2f} ms")
    total_delay = rec.samples[-1][2] - rec.samples[0][2] if rec.samples else 0.0
    total = rec.samples[-1][0] - rec.samples[0][0] if rec.samples else 1.0
    print(f"  run delay over the run: {1000 * total_delay:.1f} ms in {total:.2f} s "
          f"({100 * total_delay / total:.1f} %)")
    return {"p99": slow[0][1] - slow[0][0], "slow": mean(slow), "mid": mean(mid)}


async def main_async(args: argparse.Namespace, rec: Recorder) -> list[dict[str, Any]]:
    rec.patch_store()
    results = []
    async with Lab.start(transport="udp", dave=AutoDecider(True, "bench")) as lab:
        loop = asyncio.get_running_loop()
        rec.patch_loop(loop)
        migrated = await lab.migrate_mike(30.0)
        p = Procedures(lab, migrated, "automatic")
        await closed_loop(4, 1.0)(p)
        for r in range(args.runs):
            rec.clear()
            spans: list[tuple[float, float]] = []
            p = Procedures(lab, migrated, "automatic")
            one = p.one

            async def timed(one: Callable[[], Any] = one,
                            spans: list[tuple[float, float]] = spans) -> None:
                s = time.perf_counter()
                await one()
                spans.append((s, time.perf_counter()))

            start, count = loop.time(), int(args.rate * args.seconds)
            tasks = []
            for i in range(count):
                delay = start + i / args.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(loop.create_task(timed()))
            await asyncio.gather(*tasks)
            spans.sort()
            results.append(analyse(rec, spans, f"run {r + 1} ({args.rate}/s, {args.seconds} s)"))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--unpaced", action="store_true",
                        help="CPython's own thresholds (no paced_full_collections)")
    parser.add_argument("--commit-checkpoints", action="store_true",
                        help="as before round 12: SQLite checkpoints inside the commits (1 000 "
                             "pages), no checkpointer thread")
    parser.add_argument("--round-11-gc", action="store_true",
                        help="as before round 12: young collections at CPython's 700, the "
                             "paced collection every 2 s")
    parser.add_argument("--paced-interval", type=float,
                        help="seconds between two paced collections (default: the product's)")
    args = parser.parse_args(argv)
    from mcacm_sip.runtime import base
    if args.paced_interval:
        base.release_free_heap.__defaults__ = (args.paced_interval, base.HEAP_AUDIT_INTERVAL)
    if args.round_11_gc:
        base.YOUNG_COLLECTION_THRESHOLD = 700
        base.release_free_heap.__defaults__ = (2.0, base.HEAP_AUDIT_INTERVAL)
    if args.commit_checkpoints:
        sqlite_store.COMMIT_CHECKPOINT_PAGES = 1000
        sqlite_store.CHECKPOINT_INTERVAL = 1e9
    setup_logging(logging.INFO, "console")
    handler = cast(logging.StreamHandler[Any], logging.getLogger().handlers[0])
    rec = Recorder()
    with tempfile.TemporaryFile("w") as log_file:
        handler.setStream(log_file)
        if args.unpaced:
            results = asyncio.run(main_async(args, rec))
        else:
            with base.paced_full_collections():
                results = asyncio.run(main_async(args, rec))
        handler.setStream(sys.stderr)
    print("\np99 of each run (ms):", ", ".join(f"{1000 * r['p99']:.2f}" for r in results))


if __name__ == "__main__":
    main()
