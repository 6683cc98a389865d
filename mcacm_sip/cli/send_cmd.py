"""``mcacm send FLOW``: send one ACM request to a peer ACMS (or ACMC) and wait for its process
indication and final response, like SIPp's ``-m 1`` for interop scripts (docs/cli.md).

Exit codes: 0 positive Result, 1 negative Result, 2 usage error, 3 no answer in time, 4 the
request or an answer failed validation, 5 the peer refused at the SIP level (3xx-6xx).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.model import (
    ANSWER_FOR,
    AcmRequest,
    Addressee,
    AddUserConfigurationRequest,
    GroupMembershipUpdateRequest,
    GroupMembershipUpdateResponse,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    InterconnectionGroupProvisionResponse,
    ModelError,
    Party,
    PendingDataDownloadRequest,
    ProfileUpdateRequest,
    RemoveUserConfigurationRequest,
    UserProfile,
    new_transaction_id,
)
from mcacm_sip.acm.validate import Problem, validate_document
from mcacm_sip.cli.load_cmd import run_load_command
from mcacm_sip.cli.logs import setup_logging
from mcacm_sip.cli.main import EX_FAILED, EX_OK, EX_USAGE, CliError, command, flow_json
from mcacm_sip.cli.validate_cmd import format_problem
from mcacm_sip.ladder import LadderEvent, render
from mcacm_sip.runtime.acmc import describe_request
from mcacm_sip.runtime.base import TlsSettings, node_trace, tee
from mcacm_sip.runtime.sender import (
    REQUEST_FLOWS,
    Exchange,
    ExchangeResult,
    SendableRequest,
    SendSettings,
    identity_of,
    local_address_toward,
    send_request,
)
from mcacm_sip.sip import Peer, Transport
from mcacm_sip.sip.aio import Listen, TracedMessage, is_ip
from mcacm_sip.sip.message import read_raw
from mcacm_sip.sip.uri import InvalidUri, identity
from mcacm_sip.text import printable

EX_NO_ANSWER, EX_INVALID, EX_REFUSED = 3, 4, 5
EXIT_FOR = {ExchangeResult.POSITIVE: EX_OK, ExchangeResult.NEGATIVE: EX_FAILED,
            ExchangeResult.NO_ANSWER: EX_NO_ANSWER, ExchangeResult.INVALID: EX_INVALID,
            ExchangeResult.REFUSED: EX_REFUSED}

_TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")
_T = TypeVar("_T")

# which flags build which flow (the rest are refused, so a typo is not silently ignored)
_FLAGS: dict[str, tuple[str, ...]] = {
    "profile-update-request": ("requester", "requester_fa", "target", "target_fa",
                               "migrated_user", "profile", "info"),
    "add-user-configuration-request": ("requester", "requester_fa", "target", "target_fa",
                                       "users"),
    "remove-user-configuration-request": ("requester", "requester_fa", "target", "target_fa",
                                          "users"),
    "pending-data-download-request": ("requester",),
    "group-membership-update-request": ("requester", "requester_fa", "target", "target_fa",
                                        "group", "users", "operation", "urgency"),
    "interconnection-group-provision-request": ("requester", "requester_fa", "target",
                                                "target_fa", "groups"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "profile-update-request": ("requester", "migrated_user", "profile"),
    "add-user-configuration-request": ("requester", "users"),
    "remove-user-configuration-request": ("requester", "users"),
    "pending-data-download-request": ("requester",),
    "group-membership-update-request": ("requester", "group", "users", "operation"),
    "interconnection-group-provision-request": ("requester", "groups"),
}
_ALIASES = {"group-membership-update": "group-membership-update-request",
            "interconnection-group-provision": "interconnection-group-provision-request"}
"""The procedures' names (23.280 10.17.4) for their request flows, as the issue writes them."""


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


class RequestInvalid(Exception):
    """The request we were asked to send fails validation (exit 4)."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.source = source
        self.problems = problems


# --------------------------------------------------------------------------- the request


def _from_file(args: argparse.Namespace) -> tuple[SendableRequest, bytes]:
    given = [_flag(d) for d in sorted({d for f in _FLAGS.values() for d in f})
             if getattr(args, d) is not None] + \
        (["--transaction-id"] if args.transaction_id else [])
    if given:
        raise CliError(EX_USAGE, f"--file gives the whole request; drop {', '.join(given)}")
    name = "<stdin>" if args.file == "-" else args.file
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(EX_USAGE, f"--file {name}: cannot read: {exc.strerror or exc}") from None
    problems = validate_document(data)
    if problems:
        raise RequestInvalid(name, problems)
    flow = codec.decode(data)
    if type(flow) not in ANSWER_FOR:
        raise CliError(EX_USAGE, f"{name} holds a {flow.FLOW}; mcacm send sends "
                                 f"{', '.join(REQUEST_FLOWS)}")
    if args.flow is not None and args.flow != flow.FLOW:
        raise CliError(EX_USAGE, f"{name} holds a {flow.FLOW}, not a {args.flow}")
    return flow, data  # type: ignore[return-value]  # checked against ANSWER_FOR above


def _from_flags(args: argparse.Namespace) -> tuple[SendableRequest, bytes]:
    flow: str = args.flow
    stray = [_flag(d) for f in _FLAGS.values() for d in f
             if d not in _FLAGS[flow] and getattr(args, d) is not None]
    if stray:
        raise CliError(EX_USAGE, f"{flow} takes no {', '.join(dict.fromkeys(stray))}")
    missing = [_flag(d) for d in _REQUIRED[flow] if getattr(args, d) is None]
    if flow in ("profile-update-request", "group-membership-update-request",
                "interconnection-group-provision-request") \
            and args.target is None and args.target_fa is None:
        missing.append("--target or --target-fa")
    if missing:
        raise CliError(EX_USAGE, f"{flow} needs {', '.join(missing)}")
    problems: list[Problem] = []

    def part(path: str, flags: str, build: Callable[[], _T]) -> _T | None:
        try:
            return build()
        except ModelError as exc:  # a value the message layer refuses: say which flag
            where = path if path.count("/") > 1 else f"{path}/{exc.ie.replace('_', '-')}"
            problems.append(Problem(where, str(exc), f"correct {flags}", "model"))
            return None

    root = f"/{flow}"
    tid = args.transaction_id or new_transaction_id()  # decision: a UUID unless given
    requester = part(f"{root}/requester", "--requester / --requester-fa",
                     lambda: Party(args.requester, args.requester_fa))
    target = None if args.target is None and args.target_fa is None else part(
        f"{root}/target", "--target / --target-fa",
        lambda: Addressee(args.target, args.target_fa))
    profile = _profile(args.profile, problems) if args.profile is not None else None
    users = tuple(args.users or ())
    request: SendableRequest | None = None
    if not problems:
        assert requester is not None
        builders: dict[str, Callable[[], SendableRequest]] = {
            "profile-update-request": lambda: ProfileUpdateRequest(
                tid, requester, target, args.migrated_user, profile,  # type: ignore[arg-type]
                args.info),
            "add-user-configuration-request": lambda: AddUserConfigurationRequest(
                tid, requester, users, target),
            "remove-user-configuration-request": lambda: RemoveUserConfigurationRequest(
                tid, requester, users, target),
            "pending-data-download-request": lambda: PendingDataDownloadRequest(
                tid, requester.mc_service_id),
            "group-membership-update-request": lambda: GroupMembershipUpdateRequest(
                tid, requester, target, args.group, users,  # type: ignore[arg-type]
                GroupOperation(args.operation), args.urgency),
            "interconnection-group-provision-request": lambda: (
                InterconnectionGroupProvisionRequest(
                    tid, requester, target, tuple(args.groups)))  # type: ignore[arg-type]
        }
        request = part(root, "the command-line values", builders[flow])
    if request is None:
        raise RequestInvalid("request", problems)
    try:
        return request, codec.encode(request)  # strict on send: validates its own output
    except AcmError as exc:
        raise RequestInvalid("request", [Problem(exc.path, exc.message, exc.hint,
                                                 "schema")]) from None


def _profile(path: str, problems: list[Problem]) -> UserProfile | None:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(EX_USAGE, f"--profile {path}: cannot read: {exc.strerror or exc}"
                       ) from None
    try:
        return codec.profile_from_xml(data)
    except AcmError as exc:
        problems.append(Problem(exc.path, f"--profile {path}: {exc.message}",
                                exc.hint or "give an MCPTT user profile (TS 24.484 8.3.2)",
                                "parse"))
        return None


# --------------------------------------------------------------------------- addresses


def _address(text: str, what: str) -> tuple[Transport | None, str, int | None]:
    """``udp:HOST:PORT`` / ``tcp:[::1]:PORT`` / ``HOST:PORT`` / a SIP URI -> (transport named,
    host, port)."""
    text = text.strip()
    transport: Transport | None = None
    if text.startswith(("sip:", "sips:", "<")):
        try:
            u = identity(text.strip("<>"))
        except InvalidUri as exc:
            raise CliError(EX_USAGE, f"{what} {text}: {exc}") from None
        param = u.param("transport")
        transport = "tls" if u.scheme == "sips" else _transport_of(param, what) if param \
            else None
        return transport, u.host, u.port
    head, sep, rest = text.partition(":")
    if sep and head.isalpha() and ":" in rest:  # a transport prefix
        transport, text = _transport_of(head, what), rest
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise CliError(EX_USAGE, f"{what} {text}: give HOST:PORT (e.g. udp:127.0.0.1:5060)")
    return transport, host.strip("[]"), int(port)


def _transport_of(name: str, what: str) -> Transport:
    for t in _TRANSPORTS:
        if name.lower() == t:
            return t
    raise CliError(EX_USAGE, f"{what}: transport {name!r} is not udp, tcp or tls")


def _settings(args: argparse.Namespace, request: SendableRequest) -> SendSettings:
    if args.as_ == "acms" and not args.psi:
        raise CliError(EX_USAGE, "--as acms needs --psi URI (our PSI: From of the MESSAGE)")
    if args.as_ == "acmc" and args.psi:
        raise CliError(EX_USAGE, "--psi is for --as acms; an ACMC sends as the requester")
    if not args.to.strip().startswith(("sip:", "sips:", "<")):
        raise CliError(EX_USAGE, f"--to {args.to}: give the ACMS's SIP URI, e.g. "
                                 "sip:acms@primary.example (its PSI); the address to send to "
                                 "goes in --via udp:HOST:PORT")
    to_transport, to_host, to_port = _address(args.to, "--to")
    if not to_host:
        raise CliError(EX_USAGE, f"--to {args.to}: not a SIP URI")
    via_transport: Transport | None = None
    hop: tuple[str, int] | None = None
    if args.via:
        via_transport, host, port = _address(args.via, "--via")
        if port is None:
            raise CliError(EX_USAGE, f"--via {args.via}: give a port")
        hop = (host, port)
    elif is_ip(to_host) and to_port:
        hop = (to_host, to_port)
    named = {flag: t for flag, t in (("--transport", args.transport), ("--via", via_transport),
                                     ("--to", to_transport)) if t}
    if len(set(named.values())) > 1:
        raise CliError(EX_USAGE, "transports disagree: " + ", ".join(
            f"{flag} {t}" for flag, t in named.items()))
    transport: Transport = next(iter(named.values()), "udp")
    if args.as_ == "acms" and not args.listen:
        raise CliError(EX_USAGE, "--as acms needs --listen HOST:PORT: the peer sends its "
                                 "answers to our PSI, so it must know where we are")
    if args.listen:
        _, lhost, lport = _address(args.listen, "--listen")
        if args.as_ == "acms" and not lport:
            raise CliError(EX_USAGE, "--listen: the peer routes answers to a fixed port, not 0")
    else:  # the address we would send from to reach the peer, any free port
        lhost, lport = local_address_toward(hop[0] if hop else to_host), 0
    tls = None
    if transport == "tls" or args.tls_ca or args.tls_cert:
        if transport == "tls" and not args.tls_cert:
            raise CliError(EX_USAGE, "TLS needs --tls-cert (and --tls-key): the peer "
                                     "connects back to our TLS listener")
        def path(p: str | None) -> Path | None:
            return Path(p) if p else None

        tls = TlsSettings(path(args.tls_cert), path(args.tls_key), path(args.tls_ca))
    identity = args.psi if args.as_ == "acms" else identity_of(request)
    return SendSettings(
        to=args.to, role=args.as_, identity=identity,
        listen=Listen(transport, lhost, lport or 0),
        hop=Peer(transport, *hop) if hop else None, timeout=args.timeout, tls=tls)


# --------------------------------------------------------------------------- output


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _problems_json(problems: list[Problem] | tuple[Problem, ...]) -> list[dict[str, Any]]:
    return [{"path": p.path, "reason": p.reason, "hint": p.hint, "stage": p.stage,
             "line": p.line, "sip_status": p.sip_status} for p in problems]


def _json(ex: Exchange, settings: SendSettings, code: int, trace: list[TracedMessage]
          ) -> dict[str, Any]:
    start = trace[0].time if trace else ex.started
    return {
        "flow": ex.request.FLOW, "transaction_id": ex.request.transaction_id,
        "as": settings.role, "identity": settings.identity, "to": settings.to,
        "transport": settings.listen.transport,
        "next_hop": None if settings.hop is None else _peer(settings.hop),
        "request": flow_json(ex.request),
        "register": None if settings.role != "acmc" else {"status": ex.registered},
        "sip": None if ex.sip_status is None else {
            "method": ex.sip_method, "status": ex.sip_status, "reason": ex.sip_reason,
            "warning": ex.warning},
        "indication": None if ex.indication is None else flow_json(ex.indication),
        "response": None if ex.response is None else flow_json(ex.response),
        "result": ex.result, "verdict": str(ex.verdict), "exit": code, "failure": ex.failure,
        "problems": _problems_json([p for a in ex.invalid for p in a.problems]),
        "arrivals": [{"t_ms": _ms(a.time), "flow": a.flow.FLOW if a.flow else None,
                      "answered": a.status, "note": a.note or None} for a in ex.arrivals],
        "messages": [{"t_ms": _ms(m.time - start), "direction": m.direction,
                      "peer": _peer(m.remote), "first_line": read_raw(m.data).start}
                     for m in trace],
        "timings_ms": {k: _ms(v) for k, v in ex.timings.items()},
    }


def _peer(p: Peer) -> str:
    host = f"[{p.host}]" if ":" in p.host else p.host
    return f"{p.transport}:{host}:{p.port}"


def _silence(failure: str | None) -> str:
    """What the progress table calls a missing answer: no answer, or a failure to send."""
    return "failed" if failure and "DNS lookup" in failure else "no answer"


def _user_results(resp: object) -> list[str]:
    return [f"      {u.primary_id}: {u.result.code}"
            + (f" -> {u.partner_id}" if u.partner_id else "") for u in getattr(resp, "users", ())]


def _text(ex: Exchange, settings: SendSettings, trace: list[TracedMessage], quiet: bool) -> str:
    req = ex.request
    t = ex.timings
    hop = f" via {_peer(settings.hop)}" if settings.hop else ""
    who = "ACMC" if settings.role == "acmc" else "ACMS"
    lines = [f"{req.FLOW} {req.transaction_id}",
             f"  {who} {settings.identity} -> {settings.to}{hop}"]

    def row(what: str, text: str, at: float | None = None) -> None:
        lines.append(f"  {what:<11} {text}" + (f"  ({_ms(at)} ms)" if at is not None else ""))

    if settings.role == "acmc" and "register" in t:
        row("REGISTER", str(ex.registered or _silence(ex.failure)), t["register"])
    if ex.sip_status is not None and ex.sip_method == "MESSAGE":
        row("MESSAGE", f"{ex.sip_status} {ex.sip_reason or ''}".strip(), t.get("sip"))
    if ex.warning:
        row("Warning", ex.warning)
    if ex.indication is not None:
        ind = ex.indication
        row("indication", f"accepted by {ind.acms}"
            + (f", answer by {ind.expires.isoformat()}" if ind.expires else ""),
            t.get("indication"))
    resp = ex.response
    if resp is not None:
        result = getattr(resp, "result", None)
        handler = getattr(resp, "handler", None)
        row("response", (f"{result.code}" + (f": {result.text}" if result.text else "")
                         if result is not None else f"{len(getattr(resp, 'items', ()))} "
                         "pending item(s)")
            + (f" (by {handler.mc_service_id})" if handler is not None else ""),
            t.get("response"))
        if isinstance(resp, GroupMembershipUpdateResponse):
            lines.append(f"      {resp.operation} {', '.join(resp.users)} "
                         f"{'to' if resp.operation == 'add' else 'from'} {resp.group_id}")
        elif isinstance(resp, InterconnectionGroupProvisionResponse):
            lines.append(f"      groups: {', '.join(resp.groups)}")
        else:
            lines += _user_results(resp)
        # 10.17.3.1: the download hands the items over (the ACMS forgets them): each is shown
        for n, item in enumerate(getattr(resp, "items", ()), 1):
            lines.append(f"  item {n}      {item.FLOW} {item.transaction_id}")
            if isinstance(item, AcmRequest):
                lines += ["      " + line for line in describe_request(item).split("\n")[1:]]
            else:
                r, h = item.result, getattr(item, "handler", None)
                lines.append(f"      result: {r.code}" + (f" ({r.text})" if r.text else "")
                             + (f" by {h.mc_service_id}" if h is not None else ""))
                lines += ["  " + line for line in _user_results(item)]
        if getattr(resp, "more", False):
            lines.append("      more items are pending: send the download request again")
    for arrival in ex.invalid:
        for p in arrival.problems:
            lines.append("  invalid     " + format_problem(
                f"answer at {_ms(arrival.time)} ms", p))
    if ex.failure and ex.verdict is ExchangeResult.NO_ANSWER:
        row(_silence(ex.failure), f"{ex.failure} (after {t.get('end', 0):.1f} s, --timeout "
                                  f"{settings.timeout:g})")
        if "DNS lookup" in ex.failure:
            lines.append("      the name of --to does not resolve: give the ACMS's address "
                         "with --via udp:HOST:PORT (or fix the name)")
    row("result", ex.result or str(ex.verdict))
    text = "\n".join(printable(line) for line in lines) + "\n"  # each line once, escaped
    if trace and not quiet:
        events = [LadderEvent(m.time, "us" if m.direction == "out" else "peer",
                              "peer" if m.direction == "out" else "us", m.data) for m in trace]
        names = {"us": f"mcacm send ({who})",
                 "peer": _peer(settings.hop) if settings.hop else settings.to}
        text += "\n" + render(events, names)
    return text


# --------------------------------------------------------------------------- the command


def cmd_send(args: argparse.Namespace) -> int:
    quiet = getattr(args, "quiet", False)
    setup_logging(logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
                  getattr(args, "log_format", None) or "console")
    args.flow = _ALIASES.get(args.flow, args.flow)
    if args.flow is None and args.file is None:
        raise CliError(EX_USAGE, f"give FLOW ({', '.join(REQUEST_FLOWS)}) or --file")
    if not args.timeout > 0:
        raise CliError(EX_USAGE, "--timeout must be positive")
    captured = getattr(args, "trace", None)  # mcacm capture -- send
    tap = None if captured is None else node_trace(captured, "mcacm send")
    try:
        if args.count is not None:  # load mode (cli/load_cmd.py)
            return run_load_command(args, _from_flags, _from_file, _settings, tap)
        request, body = _from_file(args) if args.file is not None else _from_flags(args)
    except RequestInvalid as exc:
        if args.json:
            print(json.dumps({"flow": args.flow, "verdict": "invalid-request",
                              "exit": EX_INVALID, "problems": _problems_json(exc.problems)},
                             indent=2))
        else:
            print("mcacm send: the request is invalid, not sent:", file=sys.stderr)
            for p in exc.problems:
                print("  " + format_problem(exc.source, p), file=sys.stderr)
        return EX_INVALID
    settings = _settings(args, request)

    def progress(line: str) -> None:
        if not quiet:
            print(f"send: {printable(line)}", file=sys.stderr, flush=True)

    trace: list[TracedMessage] = []
    try:
        ex = asyncio.run(send_request(request, body, settings, trace=tee(trace.append, tap),
                                      progress=progress))
    except (OSError, ssl.SSLError, ValueError) as exc:
        # cannot listen (address in use, not ours) or unusable TLS files
        raise CliError(EX_USAGE, f"cannot set up the {settings.listen.transport} socket on "
                                 f"{settings.listen.host}:{settings.listen.port}: {exc}"
                       ) from None
    code = EXIT_FOR[ex.verdict]
    if args.json:
        print(json.dumps(_json(ex, settings, code, trace), indent=2, default=str))
    else:
        print(_text(ex, settings, trace, quiet), end="")
    return code


@command("send", "send one ACM request and wait for its process indication and response",
         "examples:\n"
         "  # as Alice's ACMC (REGISTER first), add a user at the partner system\n"
         "  mcacm send add-user-configuration-request --to sip:acms@primary.example \\\n"
         "      --via udp:127.0.0.1:5060 --requester sip:alice@primary.example \\\n"
         "      --users sip:mike@primary.example --target sip:dave@partner.example\n"
         "  # a profile update, JSON out\n"
         "  mcacm send profile-update-request --to sip:acms@127.0.0.1:5060 --json \\\n"
         "      --requester sip:alice@primary.example --target sip:dave@partner.example \\\n"
         "      --migrated-user sip:mike-1@partner.example --profile new.xml --info 'night'\n"
         "  # as a foreign primary ACMS, a document from a file, over TCP\n"
         "  mcacm send --file examples/flows/add-user-configuration-request.xml --as acms \\\n"
         "      --psi sip:acms@primary.example --listen 127.0.0.1:5090 \\\n"
         "      --to sip:acms@partner.example --via tcp:127.0.0.1:5062\n"
         "  # load: 200 requests at 100/s, each for another user, statistics as CSV\n"
         "  mcacm send add-user-configuration-request --count 200 --rate 100 \\\n"
         "      --as acms --psi sip:acms@primary.example --listen 127.0.0.1:5060 \\\n"
         "      --to sip:acms@partner.example --via udp:127.0.0.1:5070 \\\n"
         "      --requester sip:alice@primary.example --users 'sip:user{n}@primary.example' \\\n"
         "      --stats load.csv\n"
         "exit codes: 0 positive Result, 1 negative Result, 2 usage, 3 no answer in time,\n"
         "4 the request or an answer failed validation, 5 the peer refused (3xx-6xx).\n"
         "With --count: 0 every Result positive, 1 some not, 3 / 5 REGISTER unanswered /\n"
         "refused.",
         run=cmd_send)
def _send_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("flow", nargs="?", choices=(*REQUEST_FLOWS, *_ALIASES), metavar="FLOW",
                   help=f"the request to build: {', '.join(REQUEST_FLOWS)} (or "
                        f"{' / '.join(_ALIASES)} for the 10.17.4 requests)")
    p.add_argument("--file", "-f", metavar="FILE",
                   help="send this XML document as is (- reads stdin) instead of building one")
    peer = p.add_argument_group("where to")
    peer.add_argument("--to", required=True, metavar="URI",
                      help="Request-URI: the ACMS PSI (sip:acms@primary.example) or "
                           "sip:acms@HOST:PORT")
    peer.add_argument("--via", metavar="HOP",
                      help="next hop: udp:HOST:PORT, tcp:HOST:PORT, tls:HOST:PORT or a SIP URI "
                           "(default: the host:port of --to)")
    peer.add_argument("--as", dest="as_", choices=("acmc", "acms"), default="acmc",
                      help="acmc (default): REGISTER as the requester, then MESSAGE; acms: a "
                           "foreign ACMS with --psi, answers come to --listen")
    peer.add_argument("--psi", metavar="URI", help="our PSI with --as acms")
    peer.add_argument("--listen", metavar="HOST:PORT",
                      help="our socket (default: the address toward the peer, any port; "
                           "required with --as acms)")
    peer.add_argument("--transport", choices=_TRANSPORTS,
                      help="udp, tcp or tls (default: from --via / --to, else udp)")
    peer.add_argument("--tls-cert", metavar="PEM", help="our certificate chain (TLS)")
    peer.add_argument("--tls-key", metavar="PEM", help="its key, if not in --tls-cert")
    peer.add_argument("--tls-ca", metavar="PEM",
                      help="CA for the peer's certificate (default: the system store)")
    peer.add_argument("--timeout", type=float, default=30.0, metavar="S",
                      help="give up after S seconds without the final response (default 30)")
    peer.add_argument("--json", action="store_true",
                      help="print one JSON object: request, sip status, indication, response, "
                           "result, timings")
    req = p.add_argument_group("request contents (10.17.2.15, 10.17.5, 10.17.3.1)")
    req.add_argument("--requester", metavar="URI",
                     help="requester's MC service ID (for a download: the user)")
    req.add_argument("--requester-fa", metavar="URI", help="requester's functional alias")
    req.add_argument("--target", metavar="URI", help="target MC service ID at the partner")
    req.add_argument("--target-fa", metavar="URI", help="target functional alias")
    req.add_argument("--migrated-user", metavar="URI",
                     help="partner-assigned MC service ID (profile update)")
    req.add_argument("--profile", metavar="FILE", help="the suggested profile (XML)")
    req.add_argument("--info", help="additional information (profile update)")
    req.add_argument("--users", nargs="+", metavar="URI",
                     help="MC service IDs: primary users (add / remove user configuration), "
                          "partner users affected (group membership update)")
    group = p.add_argument_group("group-related requests (10.17.4)")
    group.add_argument("--group", metavar="URI",
                       help="MC service group ID (group membership update)")
    group.add_argument("--operation", choices=("add", "delete"),
                       help="add --users to the group or delete them (group membership update)")
    group.add_argument("--urgency", choices=("low", "normal", "high"),
                       help="operational urgency (group membership update, optional)")
    group.add_argument("--groups", nargs="+", metavar="URI",
                       help="interconnection group IDs (interconnection group provision)")
    req.add_argument("--transaction-id", metavar="ID",
                     help="use this transaction id (default: a new UUID)")
    load = p.add_argument_group(
        "load (docs/cli.md \"Load\"): {n} in a value is replaced by the request's number")
    load.add_argument("--count", type=int, metavar="N",
                      help="send N requests (each followed to its final response) instead "
                           "of one, and print statistics")
    load.add_argument("--rate", type=float, default=10.0, metavar="R",
                      help="requests per second, open loop (default 10)")
    load.add_argument("--concurrency", type=int, default=100, metavar="C",
                      help="at most C requests waiting for their final response; the next "
                           "waits for a slot (default 100)")
    load.add_argument("--stats", metavar="FILE.csv",
                      help="write cumulative statistics every --stats-interval and at the "
                           "end (CSV: successful, failed, retransmissions, p50/p90/p99 ms)")
    load.add_argument("--stats-interval", type=float, default=1.0, metavar="S",
                      help="seconds between two --stats rows (default 1)")


__all__ = ["EXIT_FOR", "cmd_send"]
