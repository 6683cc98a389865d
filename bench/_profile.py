"""Where the partner ACMS's CPU goes per ingress request: the profile behind bench/README.md.

Not a bench (run.py skips names starting with "_"): a tool for the profile breakdown of
`acms_hotpath.py` (the partner ACMS in one process, INFO unless told), two ways:

- ``spy``: py-spy samples ``acms_hotpath.py`` (500 Hz) and every sample inside a round is put in
  ONE category, the first of ``CATEGORIES`` that any frame of its stack matches (so a log call
  made by the core counts as logging, an encode made by the store as encode);
- ``instructions``: valgrind's callgrind counts the instructions of N1 and N2 requests in one
  round each; (I2 - I1) / (N2 - N1) is the cost of one request without the start-up, and the
  same on any machine whatever its load (CPU time on this shared VM moves +-10-40 %);
- ``core``: the same count for the ACMS core alone (``AcmsCore.handle`` fed the events the
  node gives it per acms_hotpath request: the peer's flow, decoded beforehand, and the two
  sends' outcomes; no SIP, codec or store), less the rounds that only decode the flows.

    .venv/bin/pip install py-spy==0.4.3      # once (not a project dependency)
    .venv/bin/python bench/_profile.py spy [--level INFO] [--requests 3000] [--rounds 3]
    .venv/bin/python bench/_profile.py instructions [--level INFO] [--n1 50] [--n2 150]
    .venv/bin/python bench/_profile.py core [--level INFO] [--n1 100] [--n2 400]

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
    ("SIP parse", lambda f: re.search(r"\b(parse|own_response) \(.*sip/message", f) is not None),
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


def _core_round(level: str, requests: int, handle: bool) -> None:
    """The core alone over ``requests`` acms_hotpath requests (the child process of ``core``);
    without ``handle``, only the set-up and the decoding of the flows."""
    sys.path.insert(0, str(Path.cwd() / "bench"))
    import acms_hotpath

    from mcacm_sip.acm import codec
    from mcacm_sip.cli.logs import setup_logging
    from mcacm_sip.core.acms import AcmsCore
    from mcacm_sip.core.events import DeliveryOutcome, FlowFromPeer, SendFlow
    from mcacm_sip.core.state import Mapping, Role, Snapshot
    from mcacm_sip.runtime.lab import PRIMARY, partner_config

    setup_logging(logging.INFO, "console")
    logging.getLogger().handlers[0].setStream(io.StringIO())  # type: ignore[attr-defined]
    logging.getLogger().setLevel(level)
    profile = codec.profile_from_xml(acms_hotpath.PROFILE)
    core = AcmsCore(partner_config(None), Snapshot(mappings=(Mapping(
        Role.PARTNER, PRIMARY, "sip:mike@primary.example", "sip:mike-1@partner.example",
        profile, False),)))
    core.start(0.0)
    flows = [codec.decode(acms_hotpath.body(f"hot-{i}")) for i in range(requests)]
    if not handle:
        return
    for i, flow in enumerate(flows):
        now = 1000.0 + i
        sends = [a for a in core.handle(FlowFromPeer(now, "sip:acms@primary.example", flow))
                 if isinstance(a, SendFlow)]
        if len(sends) != 2:
            raise SystemExit(f"expected an indication and a response, got {sends}")
        for send in sends:
            core.handle(DeliveryOutcome(now, send.send_id, True))
        core.get_timer()


def _instructions(source: Path, level: str, requests: int, what: str = "--one-round") -> int:
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         str(HERE / "_profile.py"), what, level, str(requests)],
        cwd=source, env=_env(source), capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def instructions(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    n1, n2 = args.n1 or 50, args.n2 or 150
    low = _instructions(args.source, args.level, n1)
    high = _instructions(args.source, args.level, n2)
    per = (high - low) / (n2 - n1)
    print(f"{args.source}: {per / 1e6:.3f} M instructions per request at {args.level} "
          f"({n1} and {n2} requests)")


def core(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    n1, n2 = args.n1 or 100, args.n2 or 400
    full = [_instructions(args.source, args.level, n, "--core-round") for n in (n1, n2)]
    build = [_instructions(args.source, args.level, n, "--core-build") for n in (n1, n2)]
    per = ((full[1] - full[0]) - (build[1] - build[0])) / (n2 - n1)
    print(f"{args.source}: core alone {per / 1e3:.1f} k instructions per request at "
          f"{args.level} ({n1} and {n2} requests)")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--one-round"]:
        _one_round(argv[1], int(argv[2]))
        return
    if argv[:1] in (["--core-round"], ["--core-build"]):
        _core_round(argv[1], int(argv[2]), argv[0] == "--core-round")
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("mode", choices=("spy", "instructions", "core"))
    p.add_argument("--level", default="INFO", help="log level of the rounds (default INFO)")
    p.add_argument("--requests", type=int, default=3000, help="spy: requests per round")
    p.add_argument("--rounds", type=int, default=3, help="spy: rounds")
    p.add_argument("--n1", type=int, default=0,
                   help="instructions/core: the smaller round (default 50/100)")
    p.add_argument("--n2", type=int, default=0,
                   help="instructions/core: the larger round (default 150/400)")
    p.add_argument("--source", type=Path, default=HERE.parent,
                   help="checkout to measure (default: this one)")
    args = p.parse_args(argv)
    args.source = args.source.resolve()
    {"spy": spy, "instructions": instructions, "core": core}[args.mode](args)


if __name__ == "__main__":
    main()
