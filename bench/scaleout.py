"""Scale-out ingress: sipp as a foreign primary ACMS -> Kamailio's dispatcher
(examples/scale-out/kamailio.cfg) -> 1, 2 and 3 partner ACMS workers on one PostgreSQL
database, beside one partner ACMS on SQLite without Kamailio (bench/ingress.py's system), in
one run.

Each configuration steps the offered rate (bench/ingress.py's load: one profile-update-request
per sipp call, automatic approval, the process indication and the response back to a second
sipp). Per step: the clean rate, p50/p99 of request -> response, and the CPU time per request
of each process group read from /proc/PID/stat (the workers together, Kamailio with its
children, PostgreSQL's postmaster with its backends). The summary compares the cluster's CPU
per request with the single SQLite worker's (goal: at most 1.3x) and gives the per-core
figure: requests/s one core of CPU carries in each configuration.

    .venv/bin/python bench/scaleout.py [--quick] [--json FILE] [--rates 200,400] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ingress
from _common import (
    Result,
    bench_parser,
    cpu_seconds,
    peers,  # tests/interop/peers.py
    process_tree,
    report,
)

HERE = Path(__file__).resolve().parent
CFG = HERE.parent / "examples" / "scale-out" / "kamailio.cfg"
RATES = (200, 400, 600, 800, 1000, 1300)
QUICK_RATES = (100, 200)
GOAL = 1.3  # cluster CPU per request / single SQLite worker's, issue 15


# --- a partner ACMS worker on PostgreSQL, in a child process -------------------------------------


async def _serve_worker(port: int, primary_hop: int, url: str, worker: str) -> None:
    from mcacm_sip.runtime.acms import AcmsNode
    from mcacm_sip.runtime.base import SipSettings
    from mcacm_sip.runtime.config import AcmsNodeConfig
    from mcacm_sip.runtime.lab import PRIMARY, partner_config
    from mcacm_sip.sip.aio import Listen
    from mcacm_sip.store.postgres import PostgresStore

    config = partner_config(None)
    sip = SipSettings(listens=(Listen("udp", peers.LOOPBACK, port),),
                      hops={PRIMARY: f"sip:{peers.LOOPBACK}:{primary_hop}"},
                      trusted_hosts=frozenset({peers.LOOPBACK}))  # Kamailio (and sipp)
    node = AcmsNode(AcmsNodeConfig(config, sip), store=PostgresStore(url, worker))
    await node.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    assert node.failed is not None
    node.failed.add_done_callback(lambda _: stopped.set())
    try:
        await stopped.wait()
    finally:
        await node.stop()


def _run_worker(argv: Sequence[str]) -> None:
    import logging

    from mcacm_sip.cli.logs import setup_logging

    port, hop, url, worker = argv
    setup_logging(logging.INFO, "console")  # what `mcacm acms` runs
    asyncio.run(_serve_worker(int(port), int(hop), url, worker))


async def _seed(url: str) -> None:
    """The migrated user the requests name (10.17.5: assigned to PRIMARY earlier)."""
    from mcacm_sip.acm.codec import profile_from_xml
    from mcacm_sip.core.events import Put
    from mcacm_sip.core.state import Mapping, Role
    from mcacm_sip.runtime.lab import PRIMARY, profile_xml
    from mcacm_sip.store.postgres import PostgresStore

    store = PostgresStore(url, "seed")
    await store.open()
    await store.apply([Put(Mapping(Role.PARTNER, PRIMARY, "sip:mike@primary.example",
                                   "sip:mike-1@partner.example",
                                   profile_from_xml(profile_xml("Mike")), False))])
    await store.close()


@contextlib.contextmanager
def cluster(work: Path, n: int, url: str, primary_hop: int) -> Iterator[tuple[int, list[int], int]]:
    """``n`` workers and Kamailio in front; (Kamailio's port, worker pids, Kamailio's pid)."""
    ports = [peers.free_port() for _ in range(n)]
    procs = []
    try:
        for i, port in enumerate(ports, 1):
            log = work / f"worker-{n}-{i}.log"
            procs.append(peers.spawn([sys.executable, __file__, "--serve-worker", str(port),
                                      str(primary_hop), url, f"w{i}"], log))
            deadline = time.monotonic() + 30
            while peers.sip_ping(port) is None:
                if procs[-1].poll() is not None or time.monotonic() > deadline:
                    raise peers.PeerError(f"worker {i} did not start:\n{log.read_text()[-3000:]}")
        kport = peers.free_port()
        run = work / f"kamailio-{n}"
        run.mkdir()
        ds = run / "dispatcher.list"
        ds.write_text("".join(f"1 sip:{peers.LOOPBACK}:{p}\n" for p in ports))
        argv = peers.core_argv(CFG, run, {
            "SIP_PORT": str(kport), "DS_LIST": f'"{ds}"', "PSI_DOMAIN": '"partner.example"',
            "PEER_DOMAIN": '"primary.example"', "PEER_HOP": f'"sip:127.0.0.1:{primary_hop}"',
            "PING_FROM": '"sip:dispatcher@partner.example"'}, shm_mb=256)
        klog = run / "kamailio.log"
        kam = peers.spawn(argv, klog)
        procs.append(kam)
        deadline = time.monotonic() + 20
        while peers.sip_ping(kport) is None:
            if kam.poll() is not None or time.monotonic() > deadline:
                raise peers.PeerError(f"kamailio did not start:\n{klog.read_text()[-3000:]}")
        yield kport, [p.pid for p in procs[:-1]], kam.pid
    finally:
        for p in reversed(procs):
            peers.stop(p)


# --- one step ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterStep:
    workers: int
    offered: int
    achieved: float
    clean: bool
    p50_ms: float | None
    p99_ms: float | None
    workers_us: float   # CPU per request, all workers together
    kamailio_us: float
    postgres_us: float
    calls: int

    @property
    def total_us(self) -> float:
        return self.workers_us + self.kamailio_us + self.postgres_us


def _tree_cpu(roots: Sequence[int]) -> float:
    return cpu_seconds(pid for root in roots for pid in process_tree(root))


def _step(n: int, run: int, rate: int, seconds: float, target: tuple[str, int],
          groups: dict[str, list[int]], uas_log: Path, work: Path) -> ClusterStep:
    before = {name: _tree_cpu(pids) for name, pids in groups.items()}
    s = ingress._ingress_step(run, rate, seconds, target, groups["kamailio"][0], uas_log, work)
    used = {name: _tree_cpu(pids) - before[name] for name, pids in groups.items()}
    per = {name: round(1e6 * cpu / max(s.calls, 1)) for name, cpu in used.items()}
    return ClusterStep(n, rate, s.achieved, s.clean, s.p50_ms, s.p99_ms, per["workers"],
                       per["kamailio"], per["postgres"], s.calls)


def run_cluster(n: int, rates: Sequence[int], seconds: float, url: str, pg_pid: int,
                work: Path, first_run: int) -> list[ClusterStep]:
    uas_log = work / f"answers-cluster-{n}.log"
    steps: list[ClusterStep] = []
    with peers.sipp_uas(work, str(ingress.UAS), extra=["-trace_logs", "-log_file", str(uas_log)]
                        ) as uas, cluster(work, n, url, uas.port) as (kport, wpids, kpid):
        groups = {"workers": wpids, "kamailio": [kpid], "postgres": [pg_pid]}
        unclean = 0
        for i, rate in enumerate(rates):
            s = _step(n, first_run + i, rate, seconds, (peers.LOOPBACK, kport), groups,
                      uas_log, work)
            print(f"  {n} worker(s) {rate:>5}/s: {s.achieved:>7.1f}/s clean={s.clean} "
                  f"p50={s.p50_ms} p99={s.p99_ms} ms CPU us/req workers={s.workers_us} "
                  f"kamailio={s.kamailio_us} postgres={s.postgres_us} total={s.total_us}",
                  flush=True)
            steps.append(s)
            unclean = 0 if s.clean else unclean + 1
            if unclean >= 2:
                break
    return steps


# --- the run -------------------------------------------------------------------------------------


def _best(steps: Sequence[Any]) -> Any:
    clean = [s for s in steps if s.clean]
    return max(clean, key=lambda s: s.achieved) if clean else None


def _summary(single: Sequence[ingress.IngressStep], runs: dict[int, list[ClusterStep]]
             ) -> dict[str, Any]:
    """Ratios at the SAME offered rate (the highest both ran clean): CPU per request falls
    with the load (fuller group commits, fixed costs spread), so steps of different rates
    do not compare."""
    out: dict[str, Any] = {}
    base = {s.offered: s for s in single if s.clean}
    best = _best(single)
    if best is not None:
        out["SQLite, 1 worker, no Kamailio: highest clean req/s, CPU us/req, p50/p99 ms"] = (
            best.achieved, best.cpu_us, best.p50_ms, best.p99_ms)
    ratios = []
    for n, steps in runs.items():
        top = _best(steps)
        out[f"PostgreSQL, {n} worker(s) + Kamailio: highest clean req/s, p50/p99 ms"] = (
            (top.achieved, top.p50_ms, top.p99_ms) if top else "no clean step")
        common = [s for s in steps if s.clean and s.offered in base]
        if not common:
            out[f"PostgreSQL, {n} worker(s): ratio to SQLite"] = "no common clean rate"
            continue
        s = max(common, key=lambda x: x.offered)
        b = base[s.offered]
        ratio = round(s.total_us / b.cpu_us, 2) if b.cpu_us else None
        ratios.append(ratio)
        out[f"PostgreSQL, {n} worker(s) at {s.offered}/s: CPU us/req workers, Kamailio, "
            "PostgreSQL, total (SQLite worker)"] = (
            s.workers_us, s.kamailio_us, s.postgres_us, s.total_us, b.cpu_us)
        out[f"PostgreSQL, {n} worker(s) at {s.offered}/s: cluster CPU/req / SQLite worker's"] = (
            ratio)
        # one core of CPU carries 1e6 / (CPU us per request) requests/s: what each core added
        # with one more worker could add, if PostgreSQL and Kamailio scale with it
        out[f"PostgreSQL, {n} worker(s) at {s.offered}/s: req/s per core (SQLite's)"] = (
            round(1e6 / s.total_us), round(1e6 / b.cpu_us) if b.cpu_us else None)
    if ratios:
        out[f"goal cluster CPU/req <= {GOAL}x single SQLite worker (same rate)"] = (
            "met" if all(r is not None and r <= GOAL for r in ratios)
            else f"not met for every size ({', '.join(str(r) for r in ratios)}x)")
    return out


def _table(title: str, steps: Sequence[ClusterStep]) -> dict[str, Any]:
    columns = ["workers", "offered/s", "achieved/s", "clean", "p50 ms", "p99 ms",
               "CPU us/req workers", "Kamailio", "PostgreSQL", "total"]
    rows = [[s.workers, s.offered, s.achieved, "yes" if s.clean else "no", s.p50_ms, s.p99_ms,
             s.workers_us, s.kamailio_us, s.postgres_us, s.total_us] for s in steps]
    return {"title": title, "columns": columns, "rows": rows, "steps": [asdict(s) for s in steps]}


def main(argv: Sequence[str] | None = None) -> Result:
    parser = bench_parser(__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--rates", help="comma-separated offered rates")
    parser.add_argument("--seconds", type=float, help="duration of each step (default 3, quick 1)")
    parser.add_argument("--workers", default="1,2,3", help="cluster sizes (default 1,2,3)")
    parser.add_argument("--serve-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_worker:
        _run_worker(args.serve_worker)
        return {}
    missing = peers.missing_tools("sipp", "kamailio")
    if missing:
        raise SystemExit(f"scaleout bench needs sipp and kamailio; missing: {missing}")
    from pg import PgCluster, find_bin  # tests/pg.py: a throwaway PostgreSQL

    bindir = find_bin()
    if bindir is None:
        raise SystemExit("scaleout bench needs PostgreSQL (Debian: apt-get install postgresql)")
    rates = ([int(r) for r in args.rates.split(",")] if args.rates
             else list(QUICK_RATES if args.quick else RATES))
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    sizes = [int(n) for n in args.workers.split(",")]
    runs: dict[int, list[ClusterStep]] = {}
    pg = PgCluster(bindir)
    try:
        pg.start()
        assert pg.pid is not None
        with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
            work = Path(tmp)
            print(f"baseline: sipp -> one partner ACMS on SQLite (no Kamailio), {seconds:g} s "
                  "per step", flush=True)
            single = ingress.ingress(rates, seconds, work, "NORMAL")
            for n in sizes:
                url = pg.create_database()
                asyncio.run(_seed(url))
                print(f"sipp -> Kamailio dispatcher -> {n} worker(s) on PostgreSQL", flush=True)
                runs[n] = run_cluster(n, rates, seconds, url, pg.pid, work, 1000 * n)
    finally:
        pg.cleanup()
    tables = [ingress._table("one partner ACMS on SQLite, no Kamailio (CPU: the ACMS)",
                             single)]
    tables += [_table(f"{n} worker(s) on PostgreSQL behind Kamailio's dispatcher (CPU per "
                      "request by process group)", steps) for n, steps in runs.items()]
    result: Result = {
        "name": "scaleout",
        "title": "scale-out ingress: Kamailio dispatcher + N workers on PostgreSQL vs one "
                 "SQLite worker (UDP)",
        "tables": tables,
        "summary": _summary(single, runs),
    }
    report(result, args.json)
    return result


if __name__ == "__main__":
    main()
