"""``mcacm send ... --count N --rate R``: the load mode of ``mcacm send`` (docs/cli.md "Load"):
N requests at R per second to one peer, SIPp-style statistics (``--stats FILE`` CSV, a summary
line, ``--json``).  ``{n}`` in a flag's value is replaced by the request's number (0 ... N-1),
so each request can name other users (SIPp's injection fields).

Exit codes: 0 every request got a positive Result; 1 at least one did not; 2 usage; 3 the
ACMC's REGISTER was not answered; 5 it was refused (nothing sent).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import ssl
import sys
import time
from collections.abc import Callable
from typing import IO

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import new_transaction_id
from mcacm_sip.cli.main import EX_FAILED, EX_OK, EX_USAGE, CliError
from mcacm_sip.runtime.load import LoadStats, StatsWriter, run_load
from mcacm_sip.runtime.sender import SendableRequest, SendSettings
from mcacm_sip.sip.aio import MessageTrace
from mcacm_sip.text import printable

EX_NO_ANSWER, EX_REFUSED = 3, 5
_TEMPLATED = ("requester", "requester_fa", "target", "target_fa", "migrated_user", "info",
              "transaction_id")

Build = Callable[[argparse.Namespace], tuple[SendableRequest, bytes]]


def _fill(value: str | None, n: int) -> str | None:
    return None if value is None else value.replace("{n}", str(n))


def request_maker(args: argparse.Namespace, from_flags: Build, from_file: Build
                  ) -> Callable[[int], tuple[SendableRequest, bytes]]:
    """Request ``n`` of the run: the flags with ``{n}`` filled in, or the ``--file`` document
    under a new transaction id each time."""
    if args.file is not None:
        first, _ = from_file(args)

        def again(n: int) -> tuple[SendableRequest, bytes]:
            flow = dataclasses.replace(first, transaction_id=new_transaction_id())
            return flow, codec.encode(flow)
        return again
    if args.transaction_id and "{n}" not in args.transaction_id and args.count > 1:
        raise CliError(EX_USAGE, "--transaction-id with --count: put {n} in it (each request "
                                 "needs its own id)")

    def build(n: int) -> tuple[SendableRequest, bytes]:
        filled = argparse.Namespace(**vars(args))
        for name in _TEMPLATED:
            setattr(filled, name, _fill(getattr(args, name), n))
        filled.users = None if args.users is None else [_fill(u, n) for u in args.users]
        return from_flags(filled)
    return build


def _json(stats: LoadStats, args: argparse.Namespace, code: int, now: float) -> str:
    row = stats.row(now)
    return json.dumps({
        "count": args.count, "rate": args.rate, "concurrency": args.concurrency,
        "register": None if args.as_ != "acmc" else {"status": stats.register_status},
        "sent": stats.sent, "successful": stats.successful, "failed": stats.failed,
        "verdicts": dict(stats.verdicts), "failures": dict(stats.failures),
        "retransmissions": stats.retransmissions, "elapsed_s": row["elapsed_s"],
        "achieved_rate": row["achieved_rate"],
        "response_time_ms": {"p50": row["rt_p50_ms"], "p90": row["rt_p90_ms"],
                             "p99": row["rt_p99_ms"], "max": row["rt_max_ms"]},
        "exit": code}, indent=2)


def run_load_command(args: argparse.Namespace, from_flags: Build, from_file: Build,
                     settings_for: Callable[[argparse.Namespace, SendableRequest], SendSettings],
                     trace: MessageTrace | None = None) -> int:
    """``mcacm send`` with ``--count``: validate, run, report."""
    if args.count < 1:
        raise CliError(EX_USAGE, "--count must be at least 1")
    if not args.rate > 0:
        raise CliError(EX_USAGE, "--rate must be positive (requests per second)")
    if args.concurrency < 1:
        raise CliError(EX_USAGE, "--concurrency must be at least 1")
    if args.as_ == "acmc" and args.requester and "{n}" in args.requester:
        raise CliError(EX_USAGE, "--requester with {n}: an ACMC registers one requester; "
                                 "use --as acms to send for many")
    make = request_maker(args, from_flags, from_file)
    first, _ = make(0)  # an invalid request stops the run before anything is sent
    settings = settings_for(args, first)
    quiet = getattr(args, "quiet", False)

    def progress(line: str) -> None:
        if not quiet:
            print(f"send: {printable(line)}", file=sys.stderr, flush=True)

    stream: IO[str] | None = None
    if args.stats:
        try:
            stream = open(args.stats, "w", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise CliError(EX_USAGE, f"--stats {args.stats}: {exc.strerror or exc}") from None
    try:
        stats = asyncio.run(run_load(
            make, settings, args.count, args.rate, args.concurrency, trace=trace,
            stats_out=StatsWriter(stream) if stream else None, interval=args.stats_interval,
            progress=progress))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CliError(EX_USAGE, f"cannot set up our socket: {exc}") from None
    finally:
        if stream is not None:
            stream.close()
    if args.as_ == "acmc" and stats.register_status != 200:
        code = EX_NO_ANSWER if stats.register_status is None else EX_REFUSED
    else:
        code = EX_OK if stats.successful == args.count else EX_FAILED
    now = time.time()
    if args.json:
        print(_json(stats, args, code, now))
    else:
        print(stats.summary(now))
        for why, n in stats.failures.most_common(5):
            print(printable(f"  {n} x {why}"))
    return code


__all__ = ["request_maker", "run_load_command"]
