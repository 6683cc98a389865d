"""`make bench`: run every benchmark in bench/ in a fixed order and gather their tables.

Each bench runs in a fresh interpreter (`python bench/NAME.py --json FILE [--quick]`), so one
crash does not take the others with it and no state leaks between them. The contract a bench
follows is in bench/README.md.

    .venv/bin/python bench/run.py [--quick] [--json FILE] [--only NAME[,NAME]]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import Result, bench_parser

HERE = Path(__file__).resolve().parent
# Cheap, self-contained benches first; the ones that start real peers later.
ORDER = ("codec", "sip_layer")


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser("Run every benchmark in bench/ and gather their results.")
    parser.add_argument("--only", help="comma-separated bench names")
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
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
