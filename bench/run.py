"""`make bench`: run every benchmark in bench/ in a fixed order and gather their tables.

Each bench runs in a fresh interpreter (`python bench/NAME.py --json FILE [--quick]`), so one
crash does not take the others with it and no state leaks between them. The contract a bench
follows is in bench/README.md.

    .venv/bin/python bench/run.py [--quick] [--json FILE] [--markdown FILE] [--only NAME[,NAME]]

``--markdown FILE`` writes every table with the date, the machine kind and the command, ready
to paste into the README.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import Result, bench_parser, format_table

HERE = Path(__file__).resolve().parent
# Cheap, self-contained benches first; the ones that start real peers later.
ORDER = ("codec", "sip_layer", "acms_hotpath", "ingress", "procedure", "memory", "scaleout")


def discover() -> list[str]:
    """Every bench/NAME.py (not run.py, not _private helpers): ORDER first, then by name."""
    found = {p.stem for p in HERE.glob("*.py") if p.stem != "run" and not p.stem.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def run_one(name: str, quick: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out)]
        if quick:
            argv.append("--quick")
        started = time.monotonic()
        rc = subprocess.call(argv, cwd=HERE.parent)
        took = round(time.monotonic() - started, 1)
        if rc != 0 or not out.exists():
            return {"name": name, "title": "FAILED", "error": f"exit code {rc}",
                    "tables": [], "summary": {}, "seconds": took}
        result: Result = json.loads(out.read_text())
        result["seconds"] = took
        return result


def machine() -> str:
    """The machine kind in one line: CPU model, cores, memory, kernel, Python, peer versions."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    tools = []
    for tool, flag in (("sipp", "-v"), ("kamailio", "-v")):
        if shutil.which(tool):
            out = subprocess.run([tool, flag], capture_output=True, text=True).stdout
            first = next((ln.strip() for ln in out.splitlines() if ln.strip()), tool)
            tools.append(first.split(" (")[0].removeprefix("version: ").rstrip("."))
    return (f"{model}, {os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB, "
            f"Linux {platform.release()}, Python {platform.python_version()}"
            + "".join(f", {t}" for t in tools))


def targets_table(results: Sequence[Result]) -> dict[str, Any]:
    """Every bench's targets (issue 18) in one table: bench, target, measured, met or not; a
    bench that failed to run says so against each target it would have measured."""
    rows = [[r["name"], t["target"], t["measured"], "met" if t["met"] else "NOT MET"]
            for r in results for t in r.get("targets", [])]
    rows += [[r["name"], "(all)", r["error"], "NOT MEASURED"] for r in results if "error" in r]
    return {"title": "==== targets (issue 18)", "columns": ["bench", "target", "measured", "met"],
            "rows": rows}


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|")


def markdown(results: Sequence[Result], command: str) -> str:
    """Every bench's tables and summary as Markdown, headed by date, machine and command."""
    lines = [f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
             f"Command: `{command}`. Absolute figures depend on the machine and its load; "
             "read them as ratios to the baselines of the same run.", ""]
    for r in results:
        lines += [f"### {r['name']}: {r['title']} ({r['seconds']} s)", ""]
        if "error" in r:
            lines += [f"FAILED: {r['error']}", ""]
        for table in r["tables"]:
            lines += [f"**{table['title']}**", "",
                      "| " + " | ".join(_cell(c) for c in table["columns"]) + " |",
                      "|" + "---:|" * len(table["columns"])]
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
            lines.append("")
        lines += [f"- {_cell(k)}: {_cell(v)}" for k, v in r.get("summary", {}).items()]
        lines.append("")
    targets = targets_table(results)
    if targets["rows"]:
        lines += ["### Targets (issue 18)", "", "| bench | target | measured | met |",
                  "|---|---|---|---|"]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in targets["rows"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser("Run every benchmark in bench/ and gather their results.")
    parser.add_argument("--only", help="comma-separated bench names")
    parser.add_argument("--markdown", metavar="FILE", type=Path,
                        help="also write the tables as Markdown (date, machine, command)")
    args = parser.parse_args(argv)
    names = discover()
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - set(names)
        if unknown:
            parser.error(f"no such bench: {', '.join(sorted(unknown))} (have: {', '.join(names)})")
        names = [n for n in names if n in wanted]
    results = [run_one(n, args.quick) for n in names]
    print("\n==== summary of all benches")
    for r in results:
        print(f"\n[{r['name']}] {r['title']} ({r['seconds']} s)")
        if "error" in r:
            print(f"  {r['error']}")
        for k, v in r.get("summary", {}).items():
            print(f"  {k}: {v}")
    targets = targets_table(results)
    if targets["rows"]:
        print()
        print(format_table(targets))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        command = shlex.join([".venv/bin/python", "bench/run.py",
                              *(sys.argv[1:] if argv is None else argv)])
        args.markdown.write_text(markdown(results, command))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
