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

from mcacm_sip.cli.main import EX_USAGE, CliError, command
from mcacm_sip.conformance.catalogue import CATALOGUE, not_applicable, scenarios_for
from mcacm_sip.conformance.profile import ROLES, ConfigError, Profile, Role, load_profile
from mcacm_sip.conformance.runner import Runner, parse_peer
from mcacm_sip.sip import Transport
from mcacm_sip.text import printable


def _profile(path: str | None, role: Role) -> Profile:
    if path is None:  # our own stack with the example configuration
        path = str(Path(__file__).resolve().parents[2] / "examples" / "interop" / "profiles"
                   / "mcacm-sip.toml")
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
    try:
        scenarios = scenarios_for(role, tuple(args.only or ()))
    except KeyError as exc:
        raise CliError(EX_USAGE, f"--only: no scenario {exc.args[0]!r} (see --list)") from None
    if not scenarios:
        raise CliError(EX_USAGE, f"--only: none of them applies to --role {role}")
    quiet = getattr(args, "quiet", False)

    def progress(line: str) -> None:
        if not quiet:
            print(f"conformance: {printable(line)}", file=sys.stderr, flush=True)

    async def run() -> int:
        async with Runner.open(profile, role, args.peer, Path(args.out) if args.out else None,
                               progress) as runner:
            progress(f"listening on {runner.hop()} as {runner.psi}")
            report = await runner.run(tuple(s.id for s in scenarios))
        print(report.json_text() if args.json else report.table(), end="\n" if args.json
              else "")
        return report.exit_code

    try:
        return asyncio.run(run())
    except (OSError, ValueError) as exc:  # cannot listen, no or bad [wire.tls], bad hop
        raise CliError(EX_USAGE, str(exc)) from None


@command("conformance", "run the conformance catalogue against an ACMS (ours or another's)",
         "examples:\n"
         "  # the peer is a partner ACMS; we play its peer primary ACMS (and its decider's ACMC)\n"
         "  mcacm conformance --peer sip:acms@127.0.0.1:5070 --role partner \\\n"
         "      --profile examples/interop/profiles/mcacm-sip.toml --out results/\n"
         "  # the peer is a primary ACMS; we play its requester's ACMC and its partner ACMS\n"
         "  mcacm conformance --peer sip:acms@127.0.0.1:5060 --role primary --json\n"
         "  mcacm conformance --peer sip:acms@127.0.0.1:5070 --role partner --list\n"
         "exit codes: 0 all Pass or Not applicable, 1 any Fail, 2 usage or bad profile,\n"
         "3 some Inconclusive and no Fail (docs/conformance.md).",
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
                        "examples/interop/profiles/mcacm-sip.toml)")
    p.add_argument("--out", metavar="DIR",
                   help="write <scenario>.pcap and <scenario>.jsonl per scenario here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these scenarios")
    p.add_argument("--list", action="store_true",
                   help="list the scenarios of --role (and which do not apply) and exit")


__all__ = ["cmd_conformance"]
