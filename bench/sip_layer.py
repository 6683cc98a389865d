"""SIP layer throughput: sipp UAC -> our UAS answering 200 to MESSAGE, stepping the rate.

The same stepping runs against sipp's own MESSAGE UAS in the same run as the baseline. A step is
clean when no call failed and sipp retransmitted nothing (i.e. every 200 came back within T1).
Our UAS runs in a process of its own (`--serve-uas`) so its CPU and RSS are measurable.

    .venv/bin/python bench/sip_layer.py [--quick] [--json FILE] [--rates 2000,4000] [--seconds 5]
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
from pathlib import Path
from typing import Any

from _common import (
    Result,
    Step,
    bench_parser,
    highest_clean,
    peers,  # tests/interop/peers.py
    report,
    step_rates,
    steps_table,
)

RATES = (2000, 4000, 6000, 8000, 10000, 12000, 15000)
QUICK_RATES = (1000, 2000)
TARGET = 10_000  # MESSAGE/s clean, issue #3


# --- the system under test: a minimal UAS on SipEndpoint ----------------------------------------


async def _serve_uas(port: int) -> None:
    from mcacm_sip.sip.aio import Listen, SipEndpoint

    host = peers.LOOPBACK
    endpoint = SipEndpoint([Listen("udp", host, port), Listen("tcp", host, port)])
    endpoint.serve("MESSAGE", lambda request: request.reply(200))
    await endpoint.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await endpoint.close()


def _run_uas(port: int) -> None:
    try:  # use uvloop when it happens to be installed; it is not a dependency
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        uvloop.install()
        print("event loop: uvloop", flush=True)
    except ImportError:
        print("event loop: asyncio", flush=True)
    asyncio.run(_serve_uas(port))


@contextlib.contextmanager
def our_uas(workdir: Path) -> Iterator[tuple[tuple[str, int], int]]:
    """Our UAS in a child process on a free port; ((host, port), pid); stopped by PID."""
    port = peers.free_port()
    log = workdir / "our-uas.log"
    proc = peers.spawn([sys.executable, __file__, "--serve-uas", str(port)], log)
    try:
        deadline = time.monotonic() + 15
        while peers.sip_ping(port) is None:  # our endpoint answers OPTIONS
            if proc.poll() is not None or time.monotonic() > deadline:
                raise peers.PeerError(f"our UAS did not start:\n{log.read_text()[-3000:]}")
        yield (peers.LOOPBACK, port), proc.pid
    finally:
        peers.stop(proc)


# --- the benchmark -------------------------------------------------------------------------------


def _cpu_us_per_message(step: Step) -> float:
    return step.target_cpu / 100.0 / step.achieved * 1e6 if step.achieved else 0.0


def _summary(ours: Sequence[Step], base: Sequence[Step]) -> dict[str, Any]:
    best, best_base = highest_clean(ours), highest_clean(base)
    out: dict[str, Any] = {
        "our highest clean rate (MESSAGE/s)": best.achieved if best else 0,
        "our CPU % at that rate": best.target_cpu if best else None,
        "our RSS MiB at that rate": best.target_rss_mib if best else None,
        "sipp UAS highest clean rate (MESSAGE/s)": best_base.achieved if best_base else 0,
        "sipp UAS CPU % at that rate": best_base.target_cpu if best_base else None,
    }
    if best and best_base:
        out["ratio ours / sipp UAS (highest clean rate)"] = round(
            best.achieved / best_base.achieved, 2)
    # CPU cost per message at the highest offered rate both ran clean: not capped by the stepping
    both = {s.offered: s for s in ours if s.clean}.keys() & {s.offered for s in base if s.clean}
    if both:
        rate = max(both)
        o = next(s for s in ours if s.offered == rate)
        b = next(s for s in base if s.offered == rate)
        out[f"CPU us/MESSAGE at {rate}/s: ours, sipp UAS"] = (
            round(_cpu_us_per_message(o), 1), round(_cpu_us_per_message(b), 1))
    out[f"target >= {TARGET} MESSAGE/s clean"] = (
        "met" if any(s.clean and s.offered >= TARGET for s in ours) else "not met")
    return out


def main(argv: Sequence[str] | None = None) -> Result:
    parser = bench_parser(__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--rates", help="comma-separated offered rates (calls/s)")
    parser.add_argument("--seconds", type=float, help="duration of each step (default 5, quick 1)")
    # child mode: run our UAS on PORT until SIGTERM
    parser.add_argument("--serve-uas", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_uas is not None:
        _run_uas(args.serve_uas)
        return {}
    missing = peers.missing_tools("sipp")
    if missing:
        raise SystemExit(f"sip_layer bench needs sipp (Debian: sip-tester); missing: {missing}")
    rates = ([int(r) for r in args.rates.split(",")] if args.rates
             else list(QUICK_RATES if args.quick else RATES))
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    with tempfile.TemporaryDirectory(prefix="bench-sip-") as tmp:
        work = Path(tmp)
        print(f"sipp UAC -> our UAS (mcacm_sip.sip.SipEndpoint), {seconds:g} s per step")
        with our_uas(work) as (addr, pid):
            ours = step_rates(addr, pid, rates, seconds, work)
        print(f"sipp UAC -> sipp UAS (uas_message.xml), {seconds:g} s per step")
        with peers.sipp_uas(work) as uas:
            base = step_rates(uas.address, uas.pid, rates, seconds, work)
    result: Result = {
        "name": "sip_layer",
        "title": "MESSAGE over UDP, sipp UAC -> UAS answering 200 (loopback)",
        "tables": [steps_table("our UAS (mcacm_sip.sip.SipEndpoint)", ours),
                   steps_table("baseline: sipp UAS (uas_message.xml)", base)],
        "summary": _summary(ours, base),
    }
    report(result, args.json)
    return result


if __name__ == "__main__":
    main()
