"""Where the partner ACMS's CPU goes per ingress request: the profile behind bench/README.md.

Not a bench (run.py skips names starting with "_"): a tool for the profile breakdown of
`acms_hotpath.py` (the partner ACMS in one process, INFO unless told), two ways:

- ``spy``: py-spy samples ``acms_hotpath.py`` (500 Hz) and every sample inside a round is put in
  ONE category, the first of ``CATEGORIES`` that any frame of its stack matches (so a log call
  made by the core counts as logging, an encode made by the store as encode);
- ``instructions``: valgrind's callgrind counts the instructions of N1 and N2 requests in one
  round each; (I2 - I1) / (N2 - N1) is the cost of one request without the start-up, and the
  same on any machine whatever its load (CPU time on this shared VM moves +-10-40 %).

    .venv/bin/pip install py-spy==0.4.3      # once (not a project dependency)
    .venv/bin/python bench/_profile.py spy [--level INFO] [--requests 3000] [--rounds 3]
    .venv/bin/python bench/_profile.py instructions [--level INFO] [--n1 50] [--n2 150]

``--source DIR`` measures another checkout (``git archive REV | tar -x -C DIR``) with this
environment, for before/after figures of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (name, frame test); the first that matches any frame of a sample's stack takes the sample
CATEGORIES: list[tuple[str, Callable[[str], bool]]] = [
    ("bench harness (the peer's 200s, fake wire)",
     lambda f: re.search(r"\b(ok_for|sendto|request|body) \(.*acms_hotpath", f) is not None),
    ("logging (records, formatting)",
     lambda f: "logging/__init__" in f or "cli/logs.py" in f),
    ("ids (uuid, secrets)",
     lambda f: "uuid.py" in f or "secrets.py" in f or "random.py" in f or "mcacm_sip/ids.py" in f),
    ("codec encode (flows out, store)",
     lambda f: re.search(r"\b(_encode|encode|encode_all|to_element|write_fields|_check_own) "
                         r"\(.*acm/codec", f) is not None),
    ("codec decode (hardened parse, XSD, model)",
     lambda f: re.search(r"\b(decode|from_element|_read) \(.*acm/codec", f) is not None
     or "acm/xmlsafe.py" in f),
    ("SIP parse", lambda f: re.search(r"\bparse \(.*sip/message", f) is not None),
    ("SQLite store (group commit)", lambda f: "store/sqlite.py" in f),
    ("asyncio (tasks, futures, timeouts, timers)",
     lambda f: "asyncio/" in f and not any(k in f for k in (
         "run_until_complete", "run_forever", "_run_once", "Handle._run", "runners.py"))),
    ("core (events, records, model, dataclasses)",
     lambda f: "mcacm_sip/core/" in f or "dataclasses.py" in f or "<string>" in f
     or "acm/model.py" in f),
    ("SIP transactions, serialise, send", lambda f: "mcacm_sip/sip/" in f),
    ("runtime (node, trust, messaging)", lambda f: "mcacm_sip/runtime/" in f),
]
_OUTSIDE = ("AcmsNode.start", "AcmsNode.stop", "_seeded", "_baseline")


def categorise(raw: Path) -> list[tuple[str, float]]:
    """py-spy's raw (collapsed) stacks -> % of the samples taken inside the rounds."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not any("run_until_complete" in f for f in frames) \
                or any(o in f for f in frames for o in _OUTSIDE):
            continue
        total += int(n)
        counts[next((name for name, test in CATEGORIES if any(test(f) for f in frames)),
                    "other (event loop)")] += int(n)
    return [(name, 100.0 * c / total) for name, c in counts.most_common()] if total else []


def spy(args: argparse.Namespace) -> None:
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy==0.4.3")
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "profile.raw"
        subprocess.run([spy_bin, "record", "-r", "500", "-f", "raw", "-o", str(raw), "--",
                        sys.executable, str(args.source / "bench" / "acms_hotpath.py"),
                        "--levels", args.level, "--requests", str(args.requests),
                        "--rounds", str(args.rounds)],
                       check=True, cwd=args.source, env=_env(args.source),
                       stdout=subprocess.DEVNULL)
        rows = categorise(raw)
    print(f"| where (py-spy, acms_hotpath at {args.level}) | % of samples |")
    print("|---|---:|")
    for name, share in rows:
        print(f"| {name} | {share:.1f} |")


def _env(source: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(source)}


def _one_round(level: str, requests: int) -> None:
    """One acms_hotpath round (the child process of ``instructions``)."""
    sys.path.insert(0, str(Path.cwd() / "bench"))
    import acms_hotpath

    from mcacm_sip.cli.logs import setup_logging

    setup_logging(logging.INFO, "console")
    logging.getLogger().handlers[0].setStream(io.StringIO())  # type: ignore[attr-defined]
    logging.getLogger().setLevel(level)
    with tempfile.TemporaryDirectory() as tmp:
        store = acms_hotpath._seeded(Path(tmp) / "partner.sqlite")
        asyncio.run(acms_hotpath._round(store, requests, 16, 0))


def _instructions(source: Path, level: str, requests: int) -> int:
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         str(HERE / "_profile.py"), "--one-round", level, str(requests)],
        cwd=source, env=_env(source), capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def instructions(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    low = _instructions(args.source, args.level, args.n1)
    high = _instructions(args.source, args.level, args.n2)
    per = (high - low) / (args.n2 - args.n1)
    print(f"{args.source}: {per / 1e6:.3f} M instructions per request at {args.level} "
          f"({args.n1} and {args.n2} requests)")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--one-round"]:
        _one_round(argv[1], int(argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("mode", choices=("spy", "instructions"))
    p.add_argument("--level", default="INFO", help="log level of the rounds (default INFO)")
    p.add_argument("--requests", type=int, default=3000, help="spy: requests per round")
    p.add_argument("--rounds", type=int, default=3, help="spy: rounds")
    p.add_argument("--n1", type=int, default=50, help="instructions: the smaller round")
    p.add_argument("--n2", type=int, default=150, help="instructions: the larger round")
    p.add_argument("--source", type=Path, default=HERE.parent,
                   help="checkout to measure (default: this one)")
    args = p.parse_args(argv)
    args.source = args.source.resolve()
    (spy if args.mode == "spy" else instructions)(args)


if __name__ == "__main__":
    main()
