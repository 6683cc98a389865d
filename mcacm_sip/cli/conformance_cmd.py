"""``mcacm conformance --peer URI --role partner|primary``: play the conformance catalogue
(docs/conformance.md) against any ACMS and print a verdict per scenario.

Exit codes: 0 every scenario Pass or Not applicable, 1 any Fail, 2 usage (or an unusable
profile), 3 no Fail but some Inconclusive.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import BinaryIO

from mcacm_sip import example_path
from mcacm_sip.cli.main import EX_UNAVAILABLE, EX_USAGE, CliError, command
from mcacm_sip.conformance.catalogue import CATALOGUE, not_applicable, select
from mcacm_sip.conformance.junit import junit_xml
from mcacm_sip.conformance.profile import ROLES, ConfigError, Profile, Role, load_profile
from mcacm_sip.conformance.runner import PeerNotReady, Runner, parse_peer
from mcacm_sip.sip import Transport
from mcacm_sip.text import printable


def _profile(path: str | None, role: Role) -> Profile:
    if path is None:  # our own stack with the example configuration (package data)
        path = str(example_path("interop/profiles/mcacm-sip.toml"))
        if not Path(path).is_file():
            raise CliError(EX_USAGE, "give --profile FILE.toml (docs/conformance.md)")
    try:
        profile = load_profile(path)
    except ConfigError as exc:
        raise CliError(EX_USAGE, f"--profile {path}: {exc}") from None
    if role not in profile.roles:
        raise CliError(EX_USAGE, f"--profile {path}: no [{role}] table for --role {role}")
    return profile


def _listing(role: Role, profile: Profile | None, transport: Transport) -> str:
    lines = []
    for s in CATALOGUE:
        if role not in s.needs:
            continue
        why = None if profile is None else not_applicable(s, role, profile.roles.get(role),
                                                          transport)
        lines.append(f"{s.id:<26} {s.clause:<36} {s.title}" + (f"  [n/a: {why}]" if why
                                                                  else ""))
    return "\n".join(lines) + "\n"


def _junit_file(path: str | None) -> BinaryIO | None:
    """Opened before the run: an unwritable --junit is a usage error now, not after it."""
    if path is None:
        return None
    try:
        return open(path, "wb")  # closed once the report is written
    except OSError as exc:
        raise CliError(EX_USAGE, f"--junit {path}: {exc.strerror or exc}") from None


def cmd_conformance(args: argparse.Namespace) -> int:
    role: Role = args.role
    try:
        _, _, named = parse_peer(args.peer)
    except ValueError as exc:
        raise CliError(EX_USAGE, f"--peer: {exc}") from None
    profile = _profile(args.profile, role)
    if args.list:
        print(_listing(role, profile, named or profile.wire.transport), end="")
        return 0
    names = [*(args.only or ()), *(args.scenario or ())]
    try:
        scenarios = select(role, names, args.clause or ())
    except KeyError as exc:
        raise CliError(EX_USAGE, f"--only / --scenario: no scenario {exc.args[0]!r} "
                                 "(see --list)") from None
    if not scenarios:
        chosen = "--clause " + ", ".join(args.clause) if args.clause and not names else \
            "--only / --scenario"
        raise CliError(EX_USAGE, f"{chosen}: none of them applies to --role {role} "
                                 "(see --list)")
    junit = _junit_file(args.junit)
    quiet = getattr(args, "quiet", False)

    def progress(line: str) -> None:
        if not quiet:
            print(f"conformance: {printable(line)}", file=sys.stderr, flush=True)

    async def run() -> int:
        async with Runner.open(profile, role, args.peer, Path(args.out) if args.out else None,
                               progress, getattr(args, "trace", None)) as runner:
            progress(f"listening on {runner.hop()} as {runner.psi}")
            try:
                await runner.preflight()
            except PeerNotReady as exc:
                raise CliError(EX_USAGE if exc.usage else EX_UNAVAILABLE, str(exc)) from None
            report = await runner.run(scenarios=scenarios, fail_fast=args.fail_fast)
        print(report.json_text() if args.json else report.table(), end="\n" if args.json
              else "")
        left = len(scenarios) - len(report.results)
        if left:
            progress(f"stopped after the first failure (--fail-fast): {left} scenario(s) "
                     "not run")
        if junit is not None:
            junit.write(junit_xml(report, scenarios))
            progress(f"JUnit report written to {args.junit}")
        return report.exit_code

    try:
        return asyncio.run(run())
    except (OSError, ValueError) as exc:  # cannot listen, no or bad [wire.tls], bad hop
        raise CliError(EX_USAGE, str(exc)) from None
    finally:
        if junit is not None:
            junit.close()


@command("conformance", "run the conformance catalogue against an ACMS (ours or another's)",
         "examples:\n"
         "  # the peer is a partner ACMS; we play its peer primary ACMS (and its decider's ACMC)\n"
         "  mcacm conformance --peer sip:acms@127.0.0.1:5070 --role partner \\\n"
         "      --profile examples/interop/profiles/mcacm-sip.toml --out results/\n"
         "  # the peer is a primary ACMS; we play its requester's ACMC and its partner ACMS\n"
         "  mcacm conformance --peer sip:acms@127.0.0.1:5060 --role primary --json\n"
         "  mcacm conformance --peer sip:acms@127.0.0.1:5070 --role partner --list\n"
         "  # in CI: the 10.17.7.2 scenarios, JUnit XML, stop at the first failure\n"
         "  mcacm conformance --peer sip:acms@127.0.0.1:5070 --role partner \\\n"
         "      --clause 10.17.7.2 --junit conformance.xml --fail-fast --out results/\n"
         "exit codes: 0 all Pass or Not applicable, 1 any Fail, 2 usage or bad profile\n"
         "(also: --peer with no address), 3 some Inconclusive and no Fail, 69 the pre-flight\n"
         "failed: no answer to OPTIONS, or another ACMC of the profile's user is registered\n"
         "(docs/conformance.md).",
         run=cmd_conformance)
def _conformance_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--peer", required=True, metavar="URI",
                   help="the ACMS under test: Request-URI of what we send (its PSI), e.g. "
                        "sip:acms@127.0.0.1:5070 or sip:acms@partner.example;transport=tcp; "
                        "sips: or ;transport=tls needs [wire.tls] in the profile")
    p.add_argument("--role", required=True, choices=ROLES,
                   help="the peer's role: partner (we play the primary system) or primary "
                        "(we play its ACMC and the partner system)")
    p.add_argument("--profile", metavar="FILE.toml",
                   help="interop profile: wire conventions and fixtures (default: "
                        "interop/profiles/mcacm-sip.toml of the installed examples, "
                        "mcacm examples --path)")
    p.add_argument("--out", metavar="DIR",
                   help="write <scenario>.pcap and <scenario>.jsonl per scenario here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these scenarios")
    p.add_argument("--scenario", action="append", metavar="ID",
                   help="run this scenario (repeatable; with --only and --clause: the union)")
    p.add_argument("--clause", action="append", metavar="CLAUSE",
                   help="run the scenarios citing this clause or a sub-clause of it, e.g. "
                        "10.17.7.2, 10.17.5, 21.4 (repeatable)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop after the first failing scenario (the rest: not run)")
    p.add_argument("--junit", metavar="FILE",
                   help="also write a JUnit XML report: one testcase per scenario with its "
                        "verdict, clause and pcap (fail: <failure>, inconclusive: <error>, "
                        "n/a and not run: <skipped>)")
    p.add_argument("--list", action="store_true",
                   help="list the scenarios of --role (and which do not apply) and exit")


__all__ = ["cmd_conformance"]
