"""Shared benchmark helpers: process CPU/RSS from /proc, sipp rate stepping, tables, --json.

The contract every bench/*.py follows is in bench/README.md. The real peers (sipp, Kamailio)
come from tests/interop/peers.py, the one place that starts and stops them by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from interop import peers as peers  # noqa: E402  (path set just above; re-exported)

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")

Result = dict[str, Any]  # what a bench's main() returns, see bench/README.md


# --- /proc measurements --------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    return raw[raw.rindex(")") + 2:].split()  # fields after "pid (comm) "; comm may hold spaces


def process_tree(pid: int) -> list[int]:
    """`pid` and all its live descendants (Kamailio forks workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat(int(entry))[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time consumed so far by `pids` (fields utime, stime of /proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            f = _stat(pid)
        except FileNotFoundError:
            continue
        total += int(f[11]) + int(f[12])
    return total / _TICK


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident set size of `pids` summed (field 2 of /proc/PID/statm, in pages)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except FileNotFoundError:
            continue
    return total


class CpuMeter:
    """CPU % of a process tree over an interval: 100 % = one core busy for the whole interval."""

    def __init__(self, pid: int) -> None:
        self.pids = process_tree(pid)
        self._cpu = cpu_seconds(self.pids)
        self._wall = time.monotonic()

    def percent(self) -> float:
        wall = time.monotonic() - self._wall
        return 100.0 * (cpu_seconds(self.pids) - self._cpu) / wall if wall > 0 else 0.0


def udp_rcvbuf_errors() -> int:
    """Datagrams the kernel dropped because a UDP socket's receive buffer was full (all sockets:
    /proc/net/snmp Udp RcvbufErrors). On an otherwise quiet loopback these are the target's."""
    with open("/proc/net/snmp") as f:
        udp = [line.split() for line in f if line.startswith("Udp:")]
    return int(dict(zip(udp[0], udp[1], strict=True))["RcvbufErrors"])


def reaped_children_cpu() -> float:
    """CPU seconds of this process's children reaped so far (a finished sipp UAC)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --- rate stepping -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One load step: sipp UAC at `offered` calls/s for a fixed number of calls."""

    offered: int
    achieved: float  # successful calls / sipp's elapsed time
    successful: int
    failed: int
    retransmissions: int
    target_cpu: float  # % of one core, the system under test (process tree)
    target_rss_mib: float
    uac_cpu: float  # % of one core, the sipp UAC
    sipp_rc: int
    rcvbuf_drops: int  # UDP datagrams dropped on a full receive buffer during the step

    @property
    def clean(self) -> bool:
        """No failed call and no retransmission: the target kept up with the offered load."""
        return self.sipp_rc == 0 and self.failed == 0 and self.retransmissions == 0


def step_rates(target: tuple[str, int], target_pid: int, rates: Sequence[int], seconds: float,
               workdir: Path, *, scenario: str = "uac_message.xml",
               transport: peers.SippTransport = "udp", stop_after_unclean: int = 2,
               proxy: int | None = None, log: Callable[[str], None] = print) -> list[Step]:
    """Offer each rate in turn for `seconds`; measure the target's CPU and RSS meanwhile.

    `proxy`: send through a local proxy on that port (its PID is then `target_pid`).

    Stops early after `stop_after_unclean` unclean steps in a row (higher rates only get worse).
    """
    steps: list[Step] = []
    unclean = 0
    for rate in rates:
        calls = max(1, int(rate * seconds))
        meter = CpuMeter(target_pid)
        uac0, drops0 = reaped_children_cpu(), udp_rcvbuf_errors()
        run = peers.run_sipp(scenario, target, workdir, calls=calls, rate=rate,
                             transport=transport, proxy=proxy, timeout=seconds * 4 + 30)
        cpu = meter.percent()
        # the sipp UAC is the only child reaped during the step
        uac_cpu = reaped_children_cpu() - uac0
        st = run.stats
        step = Step(offered=rate, achieved=round(st.rate, 1), successful=st.successful,
                    failed=st.failed, retransmissions=st.retransmissions,
                    target_cpu=round(cpu, 1),
                    target_rss_mib=round(rss_bytes(meter.pids) / 2**20, 1),
                    uac_cpu=round(100.0 * uac_cpu / st.elapsed, 1) if st.elapsed > 0 else 0.0,
                    sipp_rc=run.rc, rcvbuf_drops=udp_rcvbuf_errors() - drops0)
        log(f"  {rate:>6}/s offered: {step.achieved:>9.1f}/s ok={step.successful} "
            f"failed={step.failed} retrans={step.retransmissions} "
            f"drops={step.rcvbuf_drops} cpu={step.target_cpu}% "
            f"rss={step.target_rss_mib} MiB")
        steps.append(step)
        unclean = 0 if step.clean else unclean + 1
        if unclean >= stop_after_unclean:
            break
    return steps


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q` quantile of `values` (nearest rank, rounded to 0.01); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def highest_clean(steps: Iterable[Step]) -> Step | None:
    """The clean step with the highest achieved rate (None if no step was clean)."""
    clean = [s for s in steps if s.clean]
    return max(clean, key=lambda s: s.achieved) if clean else None


def steps_table(title: str, steps: Sequence[Step]) -> dict[str, Any]:
    columns = ["offered/s", "achieved/s", "failed", "retrans", "rcvbuf drops", "CPU %", "RSS MiB",
               "sipp CPU %", "clean"]
    rows = [[s.offered, s.achieved, s.failed, s.retransmissions, s.rcvbuf_drops, s.target_cpu,
             s.target_rss_mib, s.uac_cpu, "yes" if s.clean else "no"] for s in steps]
    return {"title": title, "columns": columns, "rows": rows, "steps": [asdict(s) for s in steps]}


# --- targets -------------------------------------------------------------------------------------


def target(name: str, measured: object, met: bool) -> dict[str, Any]:
    """One target of issue 18 as a bench reports it (``result["targets"]``): what is asked,
    what this run measured, met or not.  `bench/run.py` prints every bench's targets in one
    table at the end."""
    return {"target": name, "measured": str(measured), "met": bool(met)}


# --- output --------------------------------------------------------------------------------------


def format_table(table: dict[str, Any]) -> str:
    """A plain-text table: title, header, rows; columns right-aligned to their widest cell."""
    cells = [[str(c) for c in table["columns"]]] + [[str(c) for c in r] for r in table["rows"]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [table["title"]]
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def bench_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every bench accepts (bench/README.md): --quick and --json FILE."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a short run (smoke test of the bench)")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the result as JSON")
    return p


def report(result: Result, json_file: Path | None) -> None:
    """Print the result's tables and summary; write it as JSON if asked."""
    print(f"\n== {result['name']}: {result['title']}")
    for table in result["tables"]:
        print()
        print(format_table(table))
    if result.get("summary"):
        print()
        for k, v in result["summary"].items():
            print(f"{k}: {v}")
    for t in result.get("targets", []):
        print(f"target {t['target']}: {'met' if t['met'] else 'NOT MET'} ({t['measured']})")
    if json_file is not None:
        json_file.write_text(json.dumps(result, indent=2) + "\n")
