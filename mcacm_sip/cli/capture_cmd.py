"""``mcacm capture --out FILE.pcap -- COMMAND ...``: run a server or the demo with every SIP
message its endpoints send or receive written to a pcap (real addresses and ports; Ethernet /
IPv4 or IPv6 / UDP or TCP frames, see :mod:`mcacm_sip.pcap`).

The messages come from the runtime's message trace (docs/sip-api.md), handed to the command as
``args.trace``; a message both of whose ends are traced (the demo) is written once.  The exit
code is the command's.
"""

from __future__ import annotations

import argparse
import sys
import time

from mcacm_sip.cli.main import EX_UNAVAILABLE, EX_USAGE, CliError, command
from mcacm_sip.pcap import PcapWriter, TraceTap

CAPTURABLE = ("acms", "acmc", "fa-server", "demo")
_SHARED = ("verbose", "quiet", "log_format")


def cmd_capture(args: argparse.Namespace) -> int:
    inner_argv = list(args.inner)
    if inner_argv[:1] == ["--"]:
        inner_argv = inner_argv[1:]
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
    return code


@command("capture", "run a server or the demo with its SIP traffic written to a pcap",
         "examples:\n"
         "  mcacm capture --out demo.pcap -- demo\n"
         "  mcacm capture --out tcp.pcap -- demo --transport tcp -q\n"
         "  mcacm capture --out acms.pcap -- acms --config examples/config/primary/acms.toml\n"
         "then: mcacm ladder demo.pcap, or wireshark demo.pcap (examples/README.md).\n"
         "The file is valid at every moment: a server stopped by Ctrl-C leaves a readable\n"
         "capture.  exit code: the command's (2 for a usage error of capture itself).",
         run=cmd_capture)
def _capture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", required=True, metavar="FILE.pcap",
                   help="the pcap to write (overwritten)")
    p.add_argument("inner", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the command to run: " + ", ".join(CAPTURABLE) + " with its options")
