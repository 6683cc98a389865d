"""The ``mcacm`` command: ``acms``, ``acmc`` and ``fa-server`` (docs/running.md).

Exit codes: 0 ok; 1 a request got a negative answer, or the node failed while running (e.g.
its store); 2 usage error; 69 cannot listen, log on or reach its store (EX_UNAVAILABLE); 78 bad
configuration (EX_CONFIG).  Further subcommands register through :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import importlib.metadata
import json
import logging
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import mcacm_sip
from mcacm_sip.acm import codec
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    Addressee,
    GroupMembershipUpdateResponse,
    GroupOperation,
    InterconnectionGroupProvisionResponse,
    Urgency,
)
from mcacm_sip.cli import logs
from mcacm_sip.cli.logs import keep_prompt_readable, setup_logging
from mcacm_sip.core.config import ConfigError
from mcacm_sip.core.events import ReportKind, ReportToUser
from mcacm_sip.runtime.acmc import (
    AcmcNode,
    AutoDecider,
    Decider,
    Decision,
    InteractiveDecider,
    RequestOutcome,
    describe_request,
)
from mcacm_sip.runtime.acms import AcmsNode, StoreFailed
from mcacm_sip.runtime.base import Hops, paced_full_collections
from mcacm_sip.runtime.config import (
    AcmcNodeConfig,
    LogSettings,
    load_acmc_node,
    load_acms_node,
    load_fa_server_node,
)
from mcacm_sip.runtime.fa_server import FaServerNode
from mcacm_sip.sip import message as sip_message
from mcacm_sip.sip.aio.usages import RegistrationError
from mcacm_sip.sip.uri import registrar_uri, uri_host
from mcacm_sip.text import printable

EX_OK, EX_FAILED, EX_USAGE, EX_UNAVAILABLE, EX_CONFIG = 0, 1, 2, 69, 78
log = logging.getLogger("mcacm.cli")


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- helpers


def flow_json(flow: AcmFlow) -> dict[str, Any]:
    """A flow as JSON-ready data (``flow`` names its kind; profiles as their XML)."""
    def convert(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return {"flow": flow.FLOW, **convert(dataclasses.asdict(flow))}


def _configure_logging(args: argparse.Namespace, settings: LogSettings) -> None:
    level = getattr(logging, settings.level.upper())
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif getattr(args, "quiet", False):
        level = logging.WARNING
    setup_logging(level, getattr(args, "log_format", None) or settings.format)


def _set(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


EX_INTERRUPTED = 130
"""A second SIGINT/SIGTERM while the node stops: it stops at once (128 + SIGINT, as shells)."""
STOP_GRACE = 2.0
"""Seconds a stopping node may spend on courtesies (the ACMC's REGISTER Expires: 0): a dead
peer must not hold a Ctrl-C for Timer F (32 s).  The ACMS drops an unrefreshed binding anyway
(RFC 3261 10.2.4)."""


async def _serve_until_signal(failed: asyncio.Future[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM (0) or until the node fails (1).  From then on a second
    signal cancels the command's task: the stop is cut short (exit 130)."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _set, stop)
    waiters: list[asyncio.Future[Any]] = [stop] + ([failed] if failed is not None else [])
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    task = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop_now, task)
    if failed is not None and failed.done():
        log.error("node failed: %s", failed.result())
        return EX_FAILED
    log.info("stopping (a second Ctrl-C stops at once)", extra={"event": "node.stopping"})
    return EX_OK


def _stop_now(task: asyncio.Task[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel(msg="second signal")


def _load(loader: Callable[[str], Any], path: str) -> Any:
    try:
        return loader(path)
    except ConfigError as exc:
        raise CliError(EX_CONFIG, f"{path}: {exc}") from None


def listen_error(exc: OSError, config_path: str) -> CliError:
    """Exit 69 naming the address (the endpoint puts it in strerror) and what to do."""
    what = exc.strerror or str(exc)
    key = "[metrics] listen" if what.startswith("[metrics]") else "[[listen]]"
    hint = (f"another process holds it (ss -lntup shows which) or change {key} port in "
            f"{config_path}" if exc.errno == errno.EADDRINUSE
            else f"check {key} host in {config_path}")
    return CliError(EX_UNAVAILABLE, f"cannot listen: {what}: {hint}")


async def _start(node: Any, config_path: str) -> None:
    try:
        await node.start()
    except OSError as exc:
        raise listen_error(exc, config_path) from None
    except StoreFailed as exc:  # e.g. [store] url: PostgreSQL unreachable at start
        raise CliError(EX_UNAVAILABLE, f"{exc} (is [store] url right and the database up?)"
                       ) from None


# --------------------------------------------------------------------------- acms / fa-server


def _serve_node(args: argparse.Namespace, loader: Callable[[str], Any],
                make: Callable[..., Any]) -> int:
    """Run a server node from its configuration until SIGINT/SIGTERM or until it fails."""
    config = _load(loader, args.config)
    _configure_logging(args, config.log)

    async def main() -> int:
        try:  # a node may open its store here (the FA server reads its holders)
            node = make(config, trace=getattr(args, "trace", None))  # trace: mcacm capture
        except ConfigError as exc:
            raise CliError(EX_CONFIG, f"{args.config}: {exc}") from None
        await _start(node, args.config)
        try:
            return await _serve_until_signal(node.failed)
        finally:
            await node.stop()

    return _run(main())


def _run(main: Any) -> int:
    """``asyncio.run`` of a command whose stop a second signal may cut short (exit 130)."""
    try:
        return int(asyncio.run(main))
    except asyncio.CancelledError:
        print("mcacm: stopped at once (second signal)", file=sys.stderr)
        return EX_INTERRUPTED


def cmd_acms(args: argparse.Namespace) -> int:
    with paced_full_collections():  # this process is one ACMS: no 100 ms pause per 2 000 requests
        return _serve_node(args, load_acms_node, AcmsNode)


def cmd_fa_server(args: argparse.Namespace) -> int:
    return _serve_node(args, load_fa_server_node, FaServerNode)


# --------------------------------------------------------------------------- acmc


class JsonLinesDecider:
    """``--json`` without ``--auto``: each request is printed as a JSON line; the answer is
    read from stdin as ``{"transaction_id": ..., "approve": true|false, "reason": ...}``."""

    def __init__(self, stdin: TextIO, emit: Callable[[dict[str, Any]], None]) -> None:
        self.stdin = stdin
        self.emit = emit
        self._waiting: dict[str, asyncio.Future[Decision]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, self.stdin.readline)
            if not line:
                for fut in self._waiting.values():
                    if not fut.done():
                        fut.set_result(Decision(False, "no decision (input closed)"))
                return
            try:
                doc = json.loads(line)
                waiting = self._waiting.get(str(doc["transaction_id"]))
                decision = Decision(bool(doc["approve"]), doc.get("reason"))
            except (ValueError, KeyError, TypeError):
                self.emit({"event": "error", "text": f"not a decision: {line.strip()}"})
                continue
            if waiting is not None and not waiting.done():
                waiting.set_result(decision)

    async def decide(self, request: AcmRequest) -> Decision:
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting[request.transaction_id] = fut
        self.emit({"event": "decide", "request": flow_json(request)})
        return await fut


class Output:
    """What ``mcacm acmc`` shows on stdout: console text or JSON lines."""

    def __init__(self, as_json: bool, stream: TextIO = sys.stdout) -> None:
        self.as_json = as_json
        self.stream = stream

    def emit(self, doc: dict[str, Any]) -> None:
        self.stream.write(json.dumps(doc, default=str) + "\n")
        self.stream.flush()

    def text(self, line: str) -> None:
        self.stream.write(printable(line) + "\n")  # one line; the peer's text escaped
        self.stream.flush()

    def report(self, report: ReportToUser) -> None:
        if self.as_json:
            doc: dict[str, Any] = {"event": str(report.kind),
                                   "transaction_id": report.transaction_id}
            if report.flow is not None:
                doc["message"] = flow_json(report.flow)
            if report.text:
                doc["text"] = report.text
            self.emit(doc)
            return
        flow = report.flow
        if report.kind is ReportKind.INDICATION:
            self.text(f"{report.transaction_id}: accepted by the partner system "
                      f"(process indication)")
        elif report.kind is ReportKind.RESPONSE and flow is not None:
            result = getattr(flow, "result", None)
            handler = getattr(flow, "handler", None)
            self.text(f"{report.transaction_id}: {getattr(result, 'code', '?')}"
                      + (f" ({result.text})" if result is not None and result.text else "")
                      + (f" by {handler.mc_service_id}" if handler is not None else ""))
            if isinstance(flow, GroupMembershipUpdateResponse):
                self.text(f"  {flow.operation} {', '.join(flow.users)} "
                          f"{'to' if flow.operation == 'add' else 'from'} {flow.group_id}")
            elif isinstance(flow, InterconnectionGroupProvisionResponse):
                self.text(f"  groups: {', '.join(flow.groups)}")
            else:
                for user in getattr(flow, "users", ()):
                    self.text(f"  {user.primary_id}: {user.result.code}"
                              + (f" -> {user.partner_id}" if user.partner_id else ""))
        else:
            self.text(f"{report.transaction_id}: {report.kind}: {report.text or ''}")


def _target(args: argparse.Namespace) -> Addressee | None:
    if args.target is None and args.target_fa is None:
        return None
    return Addressee(args.target, args.target_fa)


async def _set_fas(node: AcmcNode, args: argparse.Namespace) -> bool:
    """PUBLISH each --activate-fa / --deactivate-fa (24.379 9A.2.2.2.6); False if one was
    not accepted (the status is printed)."""
    ok = True
    for fa, active in [*((f, True) for f in args.activate_fa or ()),
                       *((f, False) for f in args.deactivate_fa or ())]:
        status = await node.set_functional_alias(fa, active)
        verb = "activated" if active else "deactivated"
        if 200 <= status < 300:
            log.info("%s %s for %s", fa, verb, node.me, extra={"event": "acmc.fa"})
        else:
            ok = False
            print(f"mcacm acmc: {fa} not {verb}: "
                  + (f"PUBLISH answered {status}" if status else "no answer to PUBLISH")
                  + " (is the FA server in [sip.hops] and the user in the alias's users?)",
                  file=sys.stderr)
    return ok


async def _run_requests(node: AcmcNode, args: argparse.Namespace) -> int:
    if not await _set_fas(node, args):
        return EX_FAILED
    outcomes: list[RequestOutcome] = []
    target = _target(args)
    if args.add_users:
        outcomes.append(await node.add_users(tuple(args.add_users), target, args.timeout))
    if args.update_profile:
        if target is None:
            raise CliError(EX_USAGE, "--update-profile needs --target or --target-fa")
        try:
            profile = profile_from_xml(Path(args.profile).read_bytes())
        except OSError as exc:
            raise CliError(EX_USAGE, f"--profile: {exc}") from None
        except ValueError as exc:
            raise CliError(EX_USAGE, f"--profile: not a usable profile: {exc}") from None
        outcomes.append(await node.profile_update(
            target=target, migrated_user_id=args.update_profile, profile=profile,
            additional_info=args.info, timeout=args.timeout))
    if args.remove_users:
        outcomes.append(await node.remove_users(tuple(args.remove_users), target, args.timeout))
    if args.group_update:
        if target is None:
            raise CliError(EX_USAGE, "--group-update needs --target or --target-fa")
        outcomes.append(await node.group_membership_update(
            target=target, group_id=args.group_update, users=tuple(args.members),
            operation=GroupOperation(args.operation),
            urgency=Urgency(args.urgency) if args.urgency else None, timeout=args.timeout))
    if args.provide_groups:
        if target is None:
            raise CliError(EX_USAGE, "--provide-groups needs --target or --target-fa")
        outcomes.append(await node.provide_groups(
            target=target, groups=tuple(args.provide_groups), timeout=args.timeout))
    for out in outcomes:
        if out.failure and out.response is None:
            log.warning("%s: %s", out.transaction_id, out.failure)
    return EX_OK if all(o.result == "success" for o in outcomes) else EX_FAILED


def cmd_acmc(args: argparse.Namespace) -> int:
    config = _load(load_acmc_node, args.config)
    _configure_logging(args, config.log)
    if args.update_profile and not args.profile:
        raise CliError(EX_USAGE, "--update-profile needs --profile FILE")
    if args.group_update and not (args.members and args.operation):
        raise CliError(EX_USAGE, "--group-update needs --members ID... and --operation "
                                 "add|delete")
    if (args.members or args.operation or args.urgency) and not args.group_update:
        raise CliError(EX_USAGE, "--members, --operation and --urgency belong to "
                                 "--group-update GROUP")
    output = Output(args.json)
    sending = bool(args.add_users or args.update_profile or args.remove_users
                   or args.group_update or args.provide_groups
                   or args.activate_fa or args.deactivate_fa)
    interactive = not args.auto and not args.json
    if interactive and not sending and not sys.stdin.isatty():
        # nobody could answer the questions: every request would be rejected unseen
        raise CliError(EX_USAGE, "stdin is not a terminal, so nobody can approve or reject: "
                                 "run it in a terminal, or decide with --auto approve|reject, "
                                 "or from a program with --json (decisions as JSON lines on "
                                 "stdin)")

    async def main() -> int:
        decider: Decider
        if args.auto:
            decider = AutoDecider(args.auto == "approve")
        elif args.json:
            decider = JsonLinesDecider(sys.stdin, output.emit)
        else:
            decider = InteractiveDecider()  # without a terminal (sending only): end of
            # input rejects, and the rejection is printed; log lines redraw the prompt only
            # where both share a terminal (no escape codes in a log file)
            if sys.stdin.isatty() and sys.stderr.isatty():
                keep_prompt_readable(decider)
        node = AcmcNode(config, _Announcing(decider, output), on_report=output.report,
                         trace=getattr(args, "trace", None))
        try:
            await node.start()
        except OSError as exc:
            raise listen_error(exc, args.config) from None
        except RegistrationError as exc:
            await node.stop(logoff=False)
            raise CliError(EX_UNAVAILABLE, logon_error(exc, config, args.config)) from None
        try:
            if sending:
                return await _run_requests(node, args)
            return await _serve_until_signal()
        finally:
            await node.stop(logoff_timeout=STOP_GRACE)

    return _run(main())


def logon_error(exc: RegistrationError, config: AcmcNodeConfig, path: str) -> str:
    """What REGISTER failed, through which hop, and what to check (exit 69)."""
    registrar = registrar_uri(config.acmc.acms_psi)
    hop = Hops(config.sip.hops, config.sip.transport).peer_for(registrar)
    where = (f"{hop.transport} {hop.host}:{hop.port} ([sip.hops] of {path})" if hop is not None
             else f"the DNS address of {uri_host(registrar)} (no [sip.hops] entry in {path})")
    if exc.status is None:
        what = f"no answer ({exc.why})" if exc.why else "no answer"
        hint = "is the ACMS running and listening there?"
    else:
        what = f"refused with {exc.status}"
        hint = (f"does the ACMS know {config.acmc.mc_service_id} ([[users]]) and trust this "
                "address (sip.trusted_hosts)?")
    return (f"cannot log on: REGISTER {config.acmc.mc_service_id} at {registrar} via {where}: "
            f"{what}: {hint}")


class _Announcing:
    """Shows what was decided (auto and JSON modes say nothing otherwise)."""

    def __init__(self, inner: Decider, output: Output) -> None:
        self.inner = inner
        self.output = output

    async def decide(self, request: AcmRequest) -> Decision:
        if isinstance(self.inner, AutoDecider) and not self.output.as_json:
            self.output.text(describe_request(request))
        decision = await self.inner.decide(request)
        verdict = "approved" if decision.approve else "rejected"
        if self.output.as_json:
            self.output.emit({"event": "decided", "transaction_id": request.transaction_id,
                              "approve": decision.approve, "reason": decision.reason})
        else:
            self.output.text(f"{request.transaction_id}: {verdict}"
                             + (f" ({decision.reason})" if decision.reason else ""))
        return decision


# --------------------------------------------------------------------------- parser

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Command, Callable[[argparse.ArgumentParser], None], str, str]] = {}
"""name -> (run, add_arguments, help, epilog with an example)."""


def command(name: str, help: str, epilog: str, run: Command | None = None
            ) -> Callable[[Callable[[argparse.ArgumentParser], None]],
                          Callable[[argparse.ArgumentParser], None]]:
    """Register the arguments of subcommand ``name``; its runner is ``run``, by default
    ``cmd_<name>`` of this module.  Other modules register before :func:`build_parser`."""
    def register(add: Callable[[argparse.ArgumentParser], None]
                 ) -> Callable[[argparse.ArgumentParser], None]:
        COMMANDS[name] = (run or globals()["cmd_" + name.replace("-", "_")], add, help, epilog)
        return add
    return register


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, metavar="FILE", help="TOML configuration")


@command("acms", "run an ACM server (primary and partner roles)",
         "example:\n  mcacm acms --config examples/config/primary/acms.toml")
def _acms_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)


@command("fa-server", "run a functional alias controlling server (TS 24.379 9A)",
         "example:\n  mcacm fa-server --config examples/config/partner/fa-server.toml")
def _fa_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)


@command("acmc", "run an ACM client: decide incoming requests, or send requests",
         "examples:\n"
         "  mcacm acmc --config examples/config/partner/acmc.toml            # ask a person\n"
         "  mcacm acmc --config examples/config/partner/acmc.toml --auto approve\n"
         "  mcacm acmc --config examples/config/primary/acmc.toml --json \\\n"
         "      --add-users sip:mike@primary.example --target sip:dave@partner.example\n"
         "  mcacm acmc --config examples/config/primary/acmc.toml \\\n"
         "      --update-profile sip:mike-1@partner.example --profile new.xml \\\n"
         "      --target sip:dave@partner.example --info 'night shift'\n"
         "  mcacm acmc --config examples/config/primary/acmc.toml \\\n"
         "      --group-update sip:grp-interop-1@primary.example --operation add \\\n"
         "      --members sip:erin@partner.example --target-fa sip:duty@partner.example\n"
         "  mcacm acmc --config examples/config/primary/acmc.toml \\\n"
         "      --provide-groups sip:grp-interop-1@primary.example \\\n"
         "      --target sip:dave@partner.example\n"
         "With a request option the client sends it, waits for the final response and exits\n"
         "(0 if every Result is success, 1 otherwise).")
def _acmc_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument("--auto", choices=("approve", "reject"),
                   help="decide every incoming request this way instead of asking")
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout; without --auto, decisions are read from stdin "
                        'as {"transaction_id": ..., "approve": true, "reason": ...}')
    g = p.add_argument_group("requests (10.17.5, 10.17.7)")
    g.add_argument("--add-users", nargs="+", metavar="ID", help="add user configuration")
    g.add_argument("--remove-users", nargs="+", metavar="ID",
                   help="remove user configuration")
    g.add_argument("--update-profile", metavar="MIGRATED_ID",
                   help="profile update for this partner-assigned MC service ID")
    g.add_argument("--profile", metavar="FILE", help="the suggested profile (XML)")
    g.add_argument("--target", metavar="URI", help="target MC service ID at the partner")
    g.add_argument("--target-fa", metavar="URI", help="target functional alias at the partner")
    g.add_argument("--info", help="additional information (profile update)")
    g = p.add_argument_group("group-related requests (10.17.4)")
    g.add_argument("--group-update", metavar="GROUP",
                   help="group membership update of this MC service group ID (with "
                        "--members, --operation, --target or --target-fa)")
    g.add_argument("--members", nargs="+", metavar="ID",
                   help="the partner users to add to or delete from the group")
    g.add_argument("--operation", choices=("add", "delete"), help="add or delete --members")
    g.add_argument("--urgency", choices=("low", "normal", "high"),
                   help="operational urgency of the group membership update (optional)")
    g.add_argument("--provide-groups", nargs="+", metavar="GROUP",
                   help="interconnection group identity provision of these group IDs "
                        "(10.17.4.2.2; with --target or --target-fa)")
    g.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up waiting for a final response after S seconds")
    g.add_argument("--activate-fa", nargs="+", metavar="FA",
                   help="activate these functional aliases for the user (PUBLISH to the FA "
                        "server, held until deactivated; TS 24.379 9A), before any request")
    g.add_argument("--deactivate-fa", nargs="+", metavar="FA",
                   help="deactivate these functional aliases for the user")


# subcommands of other modules register themselves when imported
from mcacm_sip.cli import (  # noqa: E402
    capture_cmd,  # noqa: F401  (mcacm capture)
    check_cmd,  # noqa: F401  (mcacm check)
    conformance_cmd,  # noqa: F401  (mcacm conformance)
    demo_cmd,  # noqa: F401  (mcacm demo)
    examples_cmd,  # noqa: F401  (mcacm examples, make examples)
    groups_cmd,  # noqa: F401  (mcacm groups)
    init_cmd,  # noqa: F401  (mcacm init)
    inspect_cmd,  # noqa: F401  (mcacm inspect)
    ladder_cmd,  # noqa: F401  (mcacm ladder)
    send_cmd,  # noqa: F401  (mcacm send)
    validate_cmd,  # noqa: F401  (mcacm validate)
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    loud = common.add_mutually_exclusive_group()
    # SUPPRESS: an option given before the subcommand is not reset by the subparser
    loud.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                      help="debug logging")
    loud.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                      help="warnings and errors only")
    common.add_argument("--log-format", choices=("console", "json"), default=argparse.SUPPRESS,
                        help="log format on stderr (default: [log] format, else console)")
    parser = argparse.ArgumentParser(
        prog="mcacm", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        description="MC administrative configuration management (3GPP TS 23.280 10.17) "
                    "over SIP.",
        epilog="exit codes: 0 ok, 1 negative result or node failure, 2 usage, "
               "69 cannot listen / log on, 78 bad configuration (docs/running.md)")
    parser.add_argument("--version", action="version",
                        version=f"mcacm {version()} (SIP parser: {sip_message.PARSER}, "
                                f"log lines: {logs.LINES}, profile C14N: {codec.C14N})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (run, add, text, epilog) in COMMANDS.items():
        p = sub.add_parser(name, parents=[common], help=text, description=text, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add(p)
        p.set_defaults(run=run)
    return parser


def version() -> str:
    """The installed distribution's version (the package's own when run from a checkout)."""
    try:
        return importlib.metadata.version("mcacm-sip")
    except importlib.metadata.PackageNotFoundError:
        return mcacm_sip.__version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except CliError as exc:
        print(f"mcacm {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EX_OK
    return code


if __name__ == "__main__":
    # `python -m mcacm_sip.cli.main`: run the importable module, in which the subcommands of
    # other modules registered (they import mcacm_sip.cli.main, not __main__)
    from mcacm_sip.cli.main import main as _main

    sys.exit(_main())
