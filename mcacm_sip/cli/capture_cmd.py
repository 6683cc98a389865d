"""``mcacm capture --out FILE.pcap -- COMMAND ...``: run a server, the demo, ``send`` or
``conformance`` with every SIP message its endpoints send or receive written to a pcap (real
addresses and ports; Ethernet / IPv4 or IPv6 / UDP or TCP frames, see :mod:`mcacm_sip.pcap`),
and with ``--ladder`` its ladder once the command ends.

The messages come from the runtime's message trace (docs/sip-api.md), handed to the command as
``args.trace``; a message both of whose ends are traced (the demo) is written once.  The exit
code is the command's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mcacm_sip.cli.main import EX_UNAVAILABLE, EX_USAGE, CliError, command
from mcacm_sip.pcap import PcapWriter, TraceTap

CAPTURABLE = ("acms", "acmc", "fa-server", "demo", "send", "conformance")
_SHARED = ("verbose", "quiet", "log_format")


def cmd_capture(args: argparse.Namespace) -> int:
    inner_argv = list(args.inner)
    if inner_argv[:1] == ["--"]:
        inner_argv = inner_argv[1:]
    if args.ladder not in (None, "-") and Path(args.ladder).resolve() == \
            Path(args.out).resolve():
        raise CliError(EX_USAGE, "--ladder and --out name the same file")
    if not inner_argv or inner_argv[0] not in CAPTURABLE:
        raise CliError(EX_USAGE, "give the command to run after --, one of: "
                       + ", ".join(CAPTURABLE))
    from mcacm_sip.cli.main import build_parser  # defined after the subcommands register

    inner = build_parser().parse_args(inner_argv)
    for name in _SHARED:  # -v / -q / --log-format given to capture apply to the command
        if hasattr(args, name) and not hasattr(inner, name):
            setattr(inner, name, getattr(args, name))
    try:
        out = open(args.out, "wb")  # noqa: SIM115  (closed in the finally below)
    except OSError as exc:
        raise CliError(EX_UNAVAILABLE, f"--out {args.out}: {exc.strerror or exc}") from None
    writer = PcapWriter(out)
    tap = TraceTap(writer)
    inner.trace = tap
    try:
        code: int = inner.run(inner)
    finally:
        # the command stopped its nodes, which closed their connections
        writer.close_all(time.time())
        out.close()
        print(f"mcacm capture: {tap.written} SIP messages written to {args.out}",
              file=sys.stderr)
    if args.ladder is not None:
        _write_ladder(args)
    return code


def _write_ladder(args: argparse.Namespace) -> None:
    """``--ladder FILE``: the ladder of what was captured (``-``: stdout)."""
    from mcacm_sip.cli.ladder_cmd import ladder_text, parse_names, read

    packets = read(args.out)
    text = ladder_text(packets, parse_names(args.names or ())) if packets else \
        "(no SIP message was captured)\n"
    if args.ladder == "-":
        sys.stdout.write(text)
        return
    try:
        Path(args.ladder).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(EX_UNAVAILABLE, f"--ladder {args.ladder}: {exc.strerror or exc}"
                       ) from None
    print(f"mcacm capture: ladder written to {args.ladder}", file=sys.stderr)


@command("capture", "run a server, the demo, send or conformance with its SIP traffic written "
                    "to a pcap",
         "examples:\n"
         "  mcacm capture --out demo.pcap -- demo\n"
         "  mcacm capture --out tcp.pcap -- demo --transport tcp -q\n"
         "  mcacm capture --out acms.pcap -- acms --config examples/config/primary/acms.toml\n"
         "  # a one-shot request or a conformance run, the ladder written afterwards\n"
         "  mcacm capture --out add.pcap --ladder - -- send add-user-configuration-request \\\n"
         "      --to sip:acms@primary.example --via udp:127.0.0.1:5060 \\\n"
         "      --requester sip:alice@primary.example --users sip:mike@primary.example\n"
         "  mcacm capture --out conf.pcap --ladder conf.txt -- conformance \\\n"
         "      --peer sip:acms@127.0.0.1:5070 --role partner --clause 10.17.5\n"
         "then: mcacm ladder demo.pcap, or wireshark demo.pcap (examples/README.md).\n"
         "The file is valid at every moment: a server stopped by Ctrl-C leaves a readable\n"
         "capture.  exit code: the command's (2 for a usage error of capture itself).",
         run=cmd_capture)
def _capture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", required=True, metavar="FILE.pcap",
                   help="the pcap to write (overwritten)")
    p.add_argument("--ladder", metavar="FILE",
                   help="once the command ends, write the ladder of the capture here (- : "
                        "stdout)")
    p.add_argument("--names", action="append", metavar="ADDR=NAME,...|FILE",
                   help="participant names for --ladder (as mcacm ladder --names)")
    p.add_argument("inner", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the command to run: " + ", ".join(CAPTURABLE) + " with its options")
