"""Partner ACMS ingress: sipp as a foreign primary ACMS -> our partner ACMS (automatic approval,
SQLite store), stepping the rate; sipp's MESSAGE UAS and Kamailio's stateful relay as baselines.

sipp (bench/sipp/ingress_uac.xml) sends one profile-update-request per call; our partner ACMS
(a child process: its CPU and RSS are its own) stores it, answers 200, then sends the process
indication and the response (23.280 10.17.7.2 steps 4 and 8) to a second sipp
(bench/sipp/ingress_uas.xml) that answers 200 and logs each flow. A step is clean when no call
failed, sipp retransmitted nothing, every indication and response arrived and our ACMS
retransmitted nothing. Time to response = request sent -> response MESSAGE received (both sipp
logs, same clock). The ACMS runs once per store durability (synchronous NORMAL, the default,
and FULL), then the baselines run with sipp's uac_message.xml in the same run.

    .venv/bin/python bench/ingress.py [--quick] [--json FILE] [--rates 500,1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from _common import (
    CpuMeter,
    Result,
    Step,
    bench_parser,
    cpu_seconds,
    highest_clean,
    peers,  # tests/interop/peers.py
    percentile,
    reaped_children_cpu,
    report,
    rss_bytes,
    step_rates,
    steps_table,
    target,
    udp_rcvbuf_errors,
)

HERE = Path(__file__).resolve().parent
UAC = HERE / "sipp" / "ingress_uac.xml"
UAS = HERE / "sipp" / "ingress_uas.xml"
# SIPp keeps an answered call as a "dead call" for 33 s and swallows its retransmissions
# without answering; RFC 3261 17.2.2 has a UAS re-send its final response. Without this,
# each 200 our ACMS loses (a full receive buffer past its capacity) leaves its MESSAGE
# unanswered until Timer F (32 s), holding the backlog over [limits] max_in_flight: 503s at
# 40-60 % CPU, then none of the next step's requests taken. With no dead-call memory a
# retransmission is a new call to SIPp, and it answers it as RFC 3261 says.
UAS_RFC = ("-deadcall_wait", "0")
RATES = (100, 250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000)
QUICK_RATES = (100, 200)
BASE_RATES = (1000, 2000, 4000, 6000, 8000, 10000, 12000)
QUICK_BASE_RATES = (1000,)
TARGET = 2500  # profile update requests/s clean, one process, SQLite (issue 18)
P99_RATE, P99_MS = 1000, 20.0  # p99 to the response at 1 000 requests/s (issue 18)
Sync = Literal["NORMAL", "FULL"]


# --- the system under test: our partner ACMS in a child process ----------------------------------


async def _serve_acms(port: int, primary_hop: int, store: str, synchronous: Sync) -> None:
    from mcacm_sip.acm.codec import profile_from_xml
    from mcacm_sip.core.config import StoreConfig
    from mcacm_sip.core.events import Put
    from mcacm_sip.core.state import Mapping, Role
    from mcacm_sip.runtime.acms import AcmsNode
    from mcacm_sip.runtime.base import SipSettings
    from mcacm_sip.runtime.config import AcmsLimits, AcmsNodeConfig
    from mcacm_sip.runtime.lab import PRIMARY, partner_config, profile_xml
    from mcacm_sip.sip.aio import Listen
    from mcacm_sip.store import SqliteStore

    # the migrated user the requests name (10.17.5: assigned to PRIMARY earlier)
    seed = SqliteStore(store, synchronous)
    seed.apply([Put(Mapping(Role.PARTNER, PRIMARY, "sip:mike@primary.example",
                            "sip:mike-1@partner.example",
                            profile_from_xml(profile_xml("Mike")), False))])
    seed.close()
    config = partner_config(store)
    config = replace(config, store=StoreConfig(store, synchronous))
    sip = SipSettings(listens=(Listen("udp", peers.LOOPBACK, port),),
                      hops={PRIMARY: f"sip:{peers.LOOPBACK}:{primary_hop}"},
                      trusted_hosts=frozenset({peers.LOOPBACK}))  # SIPp is the trusted host
    # Every request of the run is kept for `retention` (7 days, duplicates): the default
    # per-peer quota (64 MiB, about 40 000 of these requests) would refuse the later steps'
    # requests with 503 quota-exceeded, which measures the quota, not the capacity
    limits = AcmsLimits(max_bytes_per_peer=1 << 32, max_store_bytes=1 << 32)
    node = AcmsNode(AcmsNodeConfig(config, sip, limits=limits))
    await node.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    assert node.failed is not None
    node.failed.add_done_callback(lambda _: stopped.set())  # a store failure ends the run
    try:
        await stopped.wait()
    finally:
        await node.stop()


def _run_acms(argv: Sequence[str]) -> None:
    from mcacm_sip.cli.logs import setup_logging
    from mcacm_sip.runtime.base import paced_full_collections

    port, hop, store, sync, level = argv
    # the log lines go to the child's log file, as `mcacm acms` writes them (console format)
    setup_logging(getattr(logging, level.upper()), "console")
    with paced_full_collections():  # as `mcacm acms` runs
        asyncio.run(_serve_acms(int(port), int(hop), store,
                                "FULL" if sync == "FULL" else "NORMAL"))


@contextlib.contextmanager
def our_acms(workdir: Path, primary_hop: int, synchronous: Sync, log_level: str
             ) -> Iterator[tuple[tuple[str, int], int]]:
    """Our partner ACMS in a child process on a free port; ((host, port), pid)."""
    port = peers.free_port()
    log = workdir / f"acms-{port}.log"
    store = workdir / f"partner-{synchronous}.sqlite"
    proc = peers.spawn([sys.executable, __file__, "--serve-acms", str(port), str(primary_hop),
                        str(store), synchronous, log_level], log)
    try:
        deadline = time.monotonic() + 20
        while peers.sip_ping(port) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise peers.PeerError(f"our ACMS did not start:\n{log.read_text()[-3000:]}")
        yield (peers.LOOPBACK, port), proc.pid
    finally:
        peers.stop(proc)


# --- one load step -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngressStep:
    offered: int
    achieved: float  # requests answered 200 / sipp's elapsed time
    failed: int
    retransmissions: int  # by sipp (no 200 within T1)
    indications: int
    responses: int
    our_retransmissions: int  # the same flow of the same transaction received twice
    p50_ms: float | None  # request sent -> response MESSAGE received
    p99_ms: float | None
    cpu: float  # % of one core, our ACMS, until the last response left
    cpu_us: float  # CPU time of our ACMS per request (all its work for the procedure)
    rss_mib: float
    rcvbuf_drops: int
    sipp_rc: int
    calls: int
    # % of one core: the two SIPp peers share the machine with our ACMS; which process was
    # short of CPU when the ACMS sheds below full CPU is read from these
    uac_cpu: float = 0.0
    uas_cpu: float | None = None
    # % of one core over the offered window only: `cpu` also covers the tail in which SIPp
    # waits for its failed calls' timers, so it reads low on an overloaded step
    cpu_offered: float = 0.0

    @property
    def clean(self) -> bool:
        return (self.sipp_rc == 0 and self.failed == 0 and self.retransmissions == 0
                and self.our_retransmissions == 0 and self.responses == self.calls
                and self.indications == self.calls)


def _log_lines(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _ingress_step(run: int, rate: int, seconds: float, acms: tuple[str, int], acms_pid: int,
                  uas_log: Path, work: Path, uas_pid: int | None = None) -> IngressStep:
    calls = max(1, int(rate * seconds))
    sent_log = work / f"uac-{run}.log"
    meter, drops0 = CpuMeter(acms_pid), udp_rcvbuf_errors()
    window = threading.Timer(seconds, lambda: offered_cpu.append(meter.percent()))
    offered_cpu: list[float] = []
    window.start()
    uas_meter = CpuMeter(uas_pid) if uas_pid is not None else None
    cpu0, uac0 = cpu_seconds(meter.pids), reaped_children_cpu()
    sipp = peers.run_sipp(str(UAC), acms, work, calls=calls, rate=rate, keys={"run": str(run)},
                          timeout=seconds * 4 + 30,
                          extra=["-trace_logs", "-log_file", str(sent_log)])
    prefix = f"bench-{run}-"
    # the answers trail the 200s: wait until every response arrived or nothing moves for 3 s
    seen, still = -1, time.monotonic()
    while True:
        got = [f for f in _log_lines(uas_log) if len(f) >= 4 and f[1].startswith(prefix)]
        if len(got) != seen:
            seen, still = len(got), time.monotonic()
        if len(got) >= 2 * calls or time.monotonic() - still > 3.0:
            break
        time.sleep(0.2)
    cpu, cpu_s = meter.percent(), cpu_seconds(meter.pids) - cpu0
    window.cancel()
    uas_cpu = round(uas_meter.percent(), 1) if uas_meter is not None else None
    uac_s = reaped_children_cpu() - uac0  # the sipp UAC is the only child reaped in the step
    sent = {f[1]: float(f[2]) + float(f[3]) / 1e6
            for f in _log_lines(sent_log) if len(f) == 4 and f[0] == "sent"}
    keys = [(f[0], f[1]) for f in got]
    responses = {f[1]: float(f[2]) + float(f[3]) / 1e6 for f in got
                 if f[0] == "profile-update-response"}
    latencies = [1000 * (t - sent[tid]) for tid, t in responses.items() if tid in sent]
    st = sipp.stats
    return IngressStep(
        offered=rate, achieved=round(st.rate, 1), failed=st.failed,
        retransmissions=st.retransmissions,
        indications=len({k for k in keys if k[0] == "process-indication"}),
        responses=len(responses), our_retransmissions=len(keys) - len(set(keys)),
        p50_ms=percentile(latencies, 0.5), p99_ms=percentile(latencies, 0.99),
        cpu=round(cpu, 1), cpu_us=round(1e6 * cpu_s / calls),
        rss_mib=round(rss_bytes(meter.pids) / 2**20, 1),
        rcvbuf_drops=udp_rcvbuf_errors() - drops0, sipp_rc=sipp.rc, calls=calls,
        uac_cpu=round(100.0 * uac_s / sipp.stats.elapsed, 1) if sipp.stats.elapsed > 0 else 0.0,
        uas_cpu=uas_cpu, cpu_offered=round(offered_cpu[0], 1) if offered_cpu else cpu)


def ingress(rates: Sequence[int], seconds: float, work: Path, synchronous: Sync,
            log_level: str = "info") -> list[IngressStep]:
    """Step the offered rate against a fresh partner ACMS; stop after two unclean steps."""
    uas_log = work / f"answers-{synchronous}.log"
    steps: list[IngressStep] = []
    with peers.sipp_uas(work, str(UAS), extra=["-trace_logs", "-log_file", str(uas_log),
                                                   *UAS_RFC]
                        ) as uas, our_acms(work, uas.port, synchronous, log_level) as (acms, pid):
        unclean = 0
        for run, rate in enumerate(rates, 1):
            s = _ingress_step(run, rate, seconds, acms, pid, uas_log, work, uas.pid)
            print(f"  {rate:>6}/s offered: {s.achieved:>8.1f}/s failed={s.failed} "
                  f"retrans={s.retransmissions} answers={s.indications}+{s.responses}/"
                  f"{s.calls} ours-retrans={s.our_retransmissions} p50={s.p50_ms} ms "
                  f"p99={s.p99_ms} ms cpu={s.cpu}% ({s.cpu_us} us/req) rss={s.rss_mib} MiB "
                  f"drops={s.rcvbuf_drops} sipp cpu uac/uas={s.uac_cpu}/{s.uas_cpu}% "
                  f"cpu in the offered {seconds:g} s={s.cpu_offered}%",
                  flush=True)
            steps.append(s)
            unclean = 0 if s.clean else unclean + 1
            if unclean >= 2:
                break
    return steps


def _table(title: str, steps: Sequence[IngressStep]) -> dict[str, Any]:
    columns = ["offered/s", "achieved/s", "failed", "retrans", "indications", "responses",
               "our retrans", "p50 ms", "p99 ms", "CPU %", "CPU us/req", "RSS MiB",
               "rcvbuf drops", "sipp UAC/UAS CPU %", "CPU % offered window", "clean"]
    rows = [[s.offered, s.achieved, s.failed, s.retransmissions, s.indications, s.responses,
             s.our_retransmissions, s.p50_ms, s.p99_ms, s.cpu, s.cpu_us, s.rss_mib,
             s.rcvbuf_drops, f"{s.uac_cpu}/{s.uas_cpu if s.uas_cpu is not None else '-'}",
             s.cpu_offered,
             "yes" if s.clean else "no"] for s in steps]
    return {"title": title, "columns": columns, "rows": rows, "steps": [asdict(s) for s in steps]}


def _best(steps: Sequence[IngressStep]) -> IngressStep | None:
    clean = [s for s in steps if s.clean]
    return max(clean, key=lambda s: s.achieved) if clean else None


def _summary(runs: dict[str, list[IngressStep]], uas: Sequence[Step], relay: Sequence[Step]
             ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    b_uas, b_relay = highest_clean(uas), highest_clean(relay)
    for sync, steps in runs.items():
        best = _best(steps)
        out[f"ours ({sync}) highest clean rate (req/s)"] = best.achieved if best else 0
        if best:
            out[f"ours ({sync}) at that rate: p50/p99 ms, CPU %, CPU us/req, RSS MiB"] = (
                best.p50_ms, best.p99_ms, best.cpu, best.cpu_us, best.rss_mib)
            if b_relay:
                out[f"ratio ours ({sync}) / Kamailio relay"] = round(
                    best.achieved / b_relay.achieved, 3)
            if b_uas:
                out[f"ratio ours ({sync}) / sipp UAS"] = round(best.achieved / b_uas.achieved, 3)
    out["sipp UAS highest clean rate (MESSAGE/s)"] = b_uas.achieved if b_uas else 0
    out["Kamailio stateful relay highest clean rate (MESSAGE/s)"] = (
        b_relay.achieved if b_relay else 0)
    normal = _best(runs.get("NORMAL", []))
    full = _best(runs.get("FULL", []))
    if normal and full:
        out["durability cost: FULL / NORMAL highest clean rate"] = round(
            full.achieved / normal.achieved, 2)
    return out


def _targets(runs: dict[str, list[IngressStep]]) -> list[dict[str, Any]]:
    normal = runs.get("NORMAL", [])
    if not normal:
        return []
    best = _best(normal)
    at = next((s for s in normal if s.offered == P99_RATE), None)
    return [
        target(f"real UDP ingress >= {TARGET} requests/s clean (SQLite NORMAL, one process)",
               f"highest clean {best.achieved if best else 0}/s",
               any(s.clean and s.offered >= TARGET for s in normal)),
        target(f"p99 to the response <= {P99_MS:g} ms at {P99_RATE}/s",
               "not run" if at is None
               else f"{at.p99_ms} ms ({'clean' if at.clean else 'unclean'})",
               at is not None and at.clean and at.p99_ms is not None and at.p99_ms <= P99_MS),
    ]


def main(argv: Sequence[str] | None = None) -> Result:
    parser = bench_parser(__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--rates", help="comma-separated offered rates for our ACMS")
    parser.add_argument("--base-rates", help="comma-separated offered rates for the baselines")
    parser.add_argument("--seconds", type=float, help="duration of each step (default 5, quick 1)")
    parser.add_argument("--sync", default="NORMAL,FULL",
                        help="store durabilities to run (comma-separated NORMAL,FULL)")
    parser.add_argument("--no-baselines", action="store_true", help="only our ACMS")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning"),
                        help="our ACMS's log level (default info, what `mcacm acms` runs)")
    parser.add_argument("--serve-acms", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_acms:
        _run_acms(args.serve_acms)
        return {}
    missing = peers.missing_tools("sipp", *(() if args.no_baselines else ("kamailio",)))
    if missing:
        raise SystemExit(f"ingress bench needs sipp and kamailio; missing: {missing}")
    rates = ([int(r) for r in args.rates.split(",")] if args.rates
             else list(QUICK_RATES if args.quick else RATES))
    base_rates = ([int(r) for r in args.base_rates.split(",")] if args.base_rates
                  else list(QUICK_BASE_RATES if args.quick else BASE_RATES))
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    runs: dict[str, list[IngressStep]] = {}
    uas: list[Step] = []
    relay: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        work = Path(tmp)
        for sync in args.sync.split(","):
            mode: Sync = "FULL" if sync.strip().upper() == "FULL" else "NORMAL"
            print(f"sipp (foreign primary ACMS) -> our partner ACMS, store synchronous={mode}, "
                  f"{seconds:g} s per step, log level {args.log_level}", flush=True)
            runs[mode] = ingress(rates, seconds, work, mode, args.log_level)
        if not args.no_baselines:
            print("baseline: sipp UAC -> sipp MESSAGE UAS", flush=True)
            with peers.sipp_uas(work) as server:
                uas = step_rates(server.address, server.pid, base_rates, seconds, work)
            print("baseline: sipp UAC -> Kamailio (tm stateful relay) -> sipp UAS", flush=True)
            with peers.sipp_uas(work) as server, peers.kamailio(work, shm_mb=512) as proxy:
                relay = step_rates(server.address, proxy.pid, base_rates, seconds, work,
                                   proxy=proxy.port)
    tables = [_table(f"our partner ACMS, store synchronous={sync}, log level {args.log_level} "
                     "(CPU/RSS: the ACMS process)", steps) for sync, steps in runs.items()]
    if not args.no_baselines:
        tables += [steps_table("baseline: sipp MESSAGE UAS (uas_message.xml)", uas),
                   steps_table("baseline: Kamailio tm stateful relay -> sipp UAS "
                               "(CPU/RSS: Kamailio)", relay)]
    result: Result = {
        "name": "ingress",
        "title": "partner ACMS ingress: profile update requests from a foreign primary (UDP)",
        "tables": tables,
        "summary": _summary(runs, uas, relay),
        "targets": _targets(runs),
    }
    report(result, args.json)
    return result


if __name__ == "__main__":
    main()
