"""``mcacm ladder FILE.pcap``: the ladder diagram of any SIP capture, ours or another stack's.

Each SIP message of the capture (UDP datagrams, reassembled TCP streams; see
:mod:`mcacm_sip.pcap`) is an arrow between two participants; a MESSAGE is labelled with the ACM
flow it carries.  Participants are addresses (``127.0.0.1:5060``), named with ``--names``.

Exit codes: 0 ladder drawn; 1 the capture holds no SIP message; 2 usage; 65 not a capture;
66 cannot read the file.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mcacm_sip.cli.main import EX_FAILED, EX_OK, EX_USAGE, CliError, command
from mcacm_sip.core.config import ConfigError
from mcacm_sip.ladder import LadderEvent, describe, render
from mcacm_sip.pcap import Address, PcapError, SipPacket, read_sip
from mcacm_sip.runtime.config import read_toml
from mcacm_sip.runtime.wire import summarise
from mcacm_sip.sip.message import read_raw

EX_DATAERR, EX_NOINPUT = 65, 66  # sysexits.h


def address_text(address: Address) -> str:
    """``127.0.0.1:5060`` or ``[::1]:5060``."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listeners(packets: Sequence[SipPacket]) -> dict[tuple[Address, Address], Address]:
    """TCP connection ends -> the address their owner listens on, keyed by (end, other end).

    A request's top Via names where its sender listens (RFC 3261 18.1.1 sent-by); over TCP the
    connection's own end is an ephemeral port.  When the sent-by is the same IP, the ephemeral
    end is drawn as that listener, so each node keeps one column.  The key is the connection,
    not the end alone: the kernel may give two nodes' connections to different peers the same
    ephemeral port, and each must stay in its own node's column.
    """
    alias: dict[tuple[Address, Address], Address] = {}
    for p in packets:
        if p.transport != "tcp":
            continue
        msg = read_raw(p.data)
        via = msg.via
        if msg.method is None or via is None or via.transport != "TCP":
            continue
        host = via.host.strip("[]")
        port = via.port or 5060
        try:
            same = ipaddress.ip_address(host) == ipaddress.ip_address(p.src[0])
        except ValueError:  # a host name: cannot tell
            same = False
        if same and port != p.src[1]:
            alias.setdefault((p.src, p.dst), (p.src[0], port))
    return alias


def node_names(path: str | Path) -> dict[str, str]:
    """A node's TOML (ACMS, ACMC, FA server): each address it listens on -> its identity
    (``psi`` or ``mc_service_id``, without ``sip:``)."""
    try:
        data = read_toml(path)
    except ConfigError as exc:
        raise CliError(EX_USAGE, f"--names {path}: {exc}") from None
    who = data.get("psi") or data.get("mc_service_id")
    if not isinstance(who, str):
        raise CliError(EX_USAGE, f"--names {path}: no psi or mc_service_id (not a node's "
                                 "configuration)")
    name = who.split(":", 1)[1] if who.startswith(("sip:", "sips:")) else who
    out = {}
    listens = data.get("listen") or []
    for listen in listens if isinstance(listens, list) else []:
        host, port = listen.get("host", "127.0.0.1"), listen.get("port", 0)
        if isinstance(host, str) and isinstance(port, int) and port:  # 0: unknown until run
            out[_normal(address_text((host, port)))] = name
    return out


def parse_names(values: Iterable[str]) -> dict[str, str]:
    """``ADDR=NAME,ADDR=NAME`` (repeatable) -> {ADDR: NAME}; ADDR is ``ip:port``,
    ``[v6]:port`` or an IP (every port of it).  A value that is a file: a node's TOML
    (:func:`node_names`), else lines of ``ADDR=NAME`` (``#`` starts a comment)."""
    names: dict[str, str] = {}
    for value in values:
        if "=" not in value and Path(value).is_file():
            if value.endswith(".toml"):
                names.update(node_names(value))
                continue
            try:
                lines = Path(value).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise CliError(EX_USAGE, f"--names {value}: {exc}") from None
            value = ",".join(line.split("#", 1)[0] for line in lines)
        for item in filter(None, (part.strip() for part in value.split(","))):
            addr, sep, name = item.rpartition("=")
            if not sep or not addr or not name:
                raise CliError(EX_USAGE, f"--names: {item!r} is not ADDR=NAME")
            names[_normal(addr.strip())] = name.strip()
    return names


def _normal(addr: str) -> str:
    """An ADDR of --names in the form :func:`address_text` writes (or a bare IP)."""
    try:
        return str(ipaddress.ip_address(addr.strip("[]")))
    except ValueError:
        pass
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise CliError(EX_USAGE, f"--names: {addr!r} is not an IP or IP:PORT")
    try:
        ip = str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise CliError(EX_USAGE, f"--names: {host!r} is not an IP address") from None
    return address_text((ip, int(port)))


def events(packets: Sequence[SipPacket], names: Mapping[str, str] | None = None
           ) -> tuple[list[LadderEvent], dict[str, str]]:
    """Ladder events of ``packets`` (participants as named) and the columns to draw, in the
    order ``names`` lists them, then as they appear."""
    names = dict(names or {})
    alias = _listeners(packets)

    def who(address: Address, peer: Address) -> str:
        address = alias.get((address, peer), address)
        text = address_text(address)
        return names.get(text) or names.get(address[0]) or text

    out = [LadderEvent(p.time, who(p.src, p.dst), who(p.dst, p.src), p.data) for p in packets]
    used = {e.src for e in out} | {e.dst for e in out}
    order = [n for n in dict.fromkeys(names.values()) if n in used]
    order += [n for e in out for n in (e.src, e.dst) if n not in order]
    return out, {n: n for n in dict.fromkeys(order)}


def read(path: str | Path) -> list[SipPacket]:
    try:
        return list(read_sip(path))
    except OSError as exc:
        raise CliError(EX_NOINPUT, f"{path}: {exc.strerror or exc}") from None
    except PcapError as exc:
        raise CliError(EX_DATAERR, f"{path}: {exc}") from None


def ladder_text(packets: Sequence[SipPacket], names: Mapping[str, str] | None = None,
                title: str | None = None) -> str:
    found, columns = events(packets, names)
    return render(found, columns, title=title)


def ladder_json(packets: Sequence[SipPacket], names: Mapping[str, str] | None = None
                ) -> list[dict[str, Any]]:
    found, _ = events(packets, names)
    start = found[0].time if found else 0.0
    return [{"time": round(e.time, 6), "t": round(e.time - start, 6), "src": e.src,
             "dst": e.dst, "transport": p.transport, "label": describe(e.data)}
            for e, p in zip(found, packets, strict=True)]


def select(packets: Sequence[SipPacket], call_ids: Sequence[str] = (),
           transactions: Sequence[str] = ()) -> list[SipPacket]:
    """The messages of the given Call-IDs, and of every Call-ID whose MESSAGE carries one of
    the ACM transaction ids (each ACM flow travels in a MESSAGE of its own, with its own
    Call-ID: the request, the process indication, the response, their deliveries and
    downloads); all messages if both are empty."""
    if not call_ids and not transactions:
        return list(packets)
    wanted = set(call_ids)
    needles = [t.encode("utf-8") for t in transactions]
    ids = [summarise(p.data).call_id for p in packets]
    for p, call_id in zip(packets, ids, strict=True):
        if call_id is not None and any(n in p.data for n in needles):
            wanted.add(call_id)
    return [p for p, call_id in zip(packets, ids, strict=True) if call_id in wanted]


def cmd_ladder(args: argparse.Namespace) -> int:
    names = parse_names(args.names or ())
    packets = read(args.file)
    if not packets:
        print(f"mcacm ladder: no SIP messages in {args.file}", file=sys.stderr)
        return EX_FAILED
    packets = select(packets, args.call_id or (), args.transaction or ())
    if not packets:
        which = ", ".join([*(args.transaction or ()), *(args.call_id or ())])
        print(f"mcacm ladder: no SIP message of {which} in {args.file}", file=sys.stderr)
        return EX_FAILED
    if args.json:
        print(json.dumps(ladder_json(packets, names), indent=2))
    else:
        sys.stdout.write(ladder_text(packets, names))
    return EX_OK


@command("ladder", "draw the ladder diagram of the SIP messages in a capture",
         "examples:\n"
         "  mcacm ladder examples/demo/7-not-authorised/exchange.pcap\n"
         "  mcacm ladder call.pcap --names 127.0.0.1:5060=acms,127.0.0.1:5061=alice\n"
         "  mcacm ladder call.pcap --json     # [{time, t, src, dst, transport, label}, ...]\n"
         "  # one ACM procedure, the nodes named from their configurations\n"
         "  mcacm ladder lab.pcap --transaction 7d1c... \\\n"
         "      --names examples/config/primary/acms.toml \\\n"
         "      --names examples/config/partner/acms.toml\n"
         "  mcacm ladder lab.pcap --call-id 5f2a...@127.0.0.1\n"
         "Reads pcap and pcapng (Ethernet, Linux cooked, raw IP, loopback); SIP over UDP and\n"
         "TCP (reassembled).  exit codes: 0 drawn, 1 no SIP message, 2 usage, 65 not a\n"
         "capture, 66 cannot read the file.",
         run=cmd_ladder)
def _ladder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.pcap", help="a pcap or pcapng capture")
    p.add_argument("--names", action="append", metavar="ADDR=NAME,...|FILE",
                   help="name participants: ADDR is IP:PORT, [IPv6]:PORT or an IP; or a node's "
                        "TOML (its listen addresses -> its PSI / MC service ID); or a file of "
                        "ADDR=NAME lines (repeatable)")
    p.add_argument("--transaction", action="append", metavar="ID",
                   help="only the messages of this ACM transaction: every MESSAGE carrying "
                        "the id, and the answers sharing their Call-IDs (repeatable)")
    p.add_argument("--call-id", action="append", metavar="CALL-ID",
                   help="only the messages of this Call-ID (repeatable)")
    p.add_argument("--json", action="store_true",
                   help="print the messages as JSON (time, t, src, dst, transport, label)")
