"""``mcacm demo`` (``make demo``): the profile update of TS 23.280 10.17.7 through every branch
between two MC systems on loopback, with a ladder of each branch and a table (docs/demo.md).

No configuration.  Exit 0 only if every branch ended with its expected Result, 1 otherwise,
2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from mcacm_sip.cli.logs import setup_logging
from mcacm_sip.cli.main import EX_FAILED, EX_OK, EX_UNAVAILABLE, EX_USAGE, CliError, command
from mcacm_sip.demo import DemoResult, report, run_demo, table
from mcacm_sip.text import printable


def _progress(line: str) -> None:
    print(f"demo: {printable(line)}", file=sys.stderr, flush=True)


def _quiet(_: str) -> None:
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    quiet = getattr(args, "quiet", False)
    # node logs only when something goes wrong (or everything with -v): the ladders and the
    # progress lines tell the story
    setup_logging(logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
                  getattr(args, "log_format", None) or "console")
    keep: Path | None = None
    if args.keep is not None:
        keep = Path(args.keep)
        if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
            raise CliError(EX_USAGE, f"--keep {keep}: must be a new or empty directory")
    try:
        trace = getattr(args, "trace", None)  # set by mcacm capture
        result: DemoResult = asyncio.run(run_demo(
            args.transport, keep, progress=_quiet if quiet else _progress,
            tap=None if trace is None else lambda _branch, record: trace(record)))
    except OSError as exc:  # cannot create the store directory or listen on loopback
        raise CliError(EX_UNAVAILABLE, str(exc)) from None
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif quiet:
        print(table(result))
    else:
        print(report(result), end="")
    if result.store_dir and not quiet:
        _progress(f"stores kept in {result.store_dir}")
    return EX_OK if result.ok else EX_FAILED


@command("demo", "run the 10.17.7 profile update through every branch on loopback",
         "examples:\n"
         "  mcacm demo                   # ladders of each branch, then the table\n"
         "  mcacm demo -q                # only the table\n"
         "  mcacm demo --transport tcp --json\n"
         "  mcacm demo --keep /tmp/demo-stores   # keep the SQLite stores for a look\n"
         "exit codes: 0 every branch ended with its expected Result, 1 otherwise, 2 usage.",
         run=cmd_demo)
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp",
                   help="SIP transport between all nodes (default: udp)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (branches, Results, messages) instead of text")
    p.add_argument("--keep", metavar="DIR",
                   help="keep the SQLite stores in DIR (new or empty) instead of a temporary "
                        "directory removed at the end")
