"""``mcacm examples --out examples`` (``make examples``): the example exchanges of examples/demo,
regenerated from the code so they never drift.

The demo (:func:`mcacm_sip.demo.run_demo`) runs once over UDP and once over TCP.  For every
branch of the UDP run, ``examples/demo/<key>-<name>/`` gets the branch's capture
(``exchange.pcap``), its ladder as ``mcacm ladder`` draws it from that capture (``ladder.txt``)
and the XML body of each MESSAGE in order (``NN-<flow>.xml``); ``demo-udp.pcap`` and
``demo-tcp.pcap`` hold each whole run (log-on and subscriptions included).

Reproducible to the byte (docs/decisions.md, "Pcaps and examples"): the run itself is
deterministic on loopback, and :class:`Canonical` replaces what differs between runs -- the
kernel's ports by fixed ones per participant, wall-clock times by a synthetic clock, random
tokens (Call-ID, tags, branches, ETags, boundaries, transaction ids) and timestamps by stable
values of the same length (so every Content-Length stays right).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mcacm_sip.cli.ladder_cmd import address_text, ladder_text
from mcacm_sip.cli.main import EX_FAILED, EX_OK, EX_UNAVAILABLE, CliError, command
from mcacm_sip.demo import PARTICIPANTS, BranchResult, DemoResult, run_demo
from mcacm_sip.ladder import describe
from mcacm_sip.pcap import Address, OncePerMessage, read_sip, write_pcap
from mcacm_sip.runtime import TraceRecord
from mcacm_sip.sip import Transport
from mcacm_sip.sip.message import read_raw

EPOCH = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
"""The synthetic clock starts here ..."""
STEP = 0.001
"""... and advances this much per SIP message."""
PORTS = {"primary-acmc-2": 5063, "primary-acmc": 5062, "primary-acms": 5060,
         "partner-acms": 5070, "fa-server": 5080, "partner-acmc": 5073, "partner-acmc-2": 5074}
"""Each participant's listening port in the examples (ladder columns in this order).  None is
a port Wireshark gives another protocol (5061 is SIP over TLS, 5072 AYIYA)."""
EPHEMERAL = 49152
"""TCP connections' own ends are numbered from here, in order of first use."""

DEADLINE_SLACK = 5.0
"""Remaining times whose deadlines (trace time + value) are this close name the same one:
the value is truncated to whole seconds and traced a little after it was computed."""

_ADDR = re.compile(rb"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:]+\]):(\d+)")
_RPORT = re.compile(rb"(?<=;rport=)(\d+)")
_TOKENS = (
    re.compile(rb"^Call-ID:[ \t]*([^@\s]+)", re.MULTILINE | re.IGNORECASE),
    re.compile(rb";tag=([^;,>\s]+)"),
    re.compile(rb";branch=z9hG4bK([^;,\s]+)"),
    re.compile(rb"^SIP-(?:ETag|If-Match):[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE),
    re.compile(rb";\s*boundary=\"?([^\";\s]+)"),
)
_UUID = re.compile(rb"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_REMAINING = re.compile(rb"(^Expires:[ \t]*|;expires=)(\d+)", re.MULTILINE | re.IGNORECASE)
_DATETIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True, slots=True)
class Message:
    """One SIP message of an example, after :class:`Canonical`."""

    branch: str
    time: float
    transport: Transport
    src: Address
    dst: Address
    data: bytes

    def row(self) -> tuple[float, str, Address, Address, bytes]:
        return self.time, self.transport, self.src, self.dst, self.data


class Canonical:
    """Rewrites one demo run's trace into a form that is the same in every run."""

    def __init__(self, records: Sequence[tuple[str, TraceRecord]]) -> None:
        new = OncePerMessage()
        self.records = [(b, r) for b, r in records if new(r)]
        self.ports = self._port_map()
        self._tokens: dict[bytes, bytes] = {}
        self._times: dict[bytes, bytes] = {}
        self._deadlines: list[tuple[float, bytes]] = []
        """(deadline, its stand-in) of every remaining time seen, in order."""

    def _port_map(self) -> dict[Address, Address]:
        """Listening address of each node -> its fixed port; other (ephemeral) ends -> numbers
        from EPHEMERAL in order of appearance."""
        mapping: dict[Address, Address] = {}
        for _, r in self.records:
            msg = read_raw(r.data) if r.direction == "out" else None
            if msg is not None and msg.method is not None:
                # RFC 3261 18.1.1: the top Via names the port the sender listens on
                via = msg.via
                name = PARTICIPANTS.get(r.node)
                if via is not None and via.port is not None and name in PORTS:
                    mapping.setdefault((r.src[0], via.port), (r.src[0], PORTS[name]))
        for _, r in self.records:
            for address in (r.src, r.dst):
                if address not in mapping:
                    mapping[address] = (address[0], EPHEMERAL + len(
                        [a for a in mapping.values() if a[1] >= EPHEMERAL]))
        return mapping

    def messages(self) -> list[Message]:
        return [Message(branch, EPOCH + i * STEP, r.transport, self.ports[r.src],
                        self.ports[r.dst], self._rewrite(r, EPOCH + i * STEP))
                for i, (branch, r) in enumerate(self.records)]

    def _rewrite(self, record: TraceRecord, now: float) -> bytes:
        head, sep, body = record.data.partition(b"\r\n\r\n")

        def port(m: re.Match[bytes]) -> bytes:
            host = m.group(1).decode().strip("[]")
            new = self.ports.get((host, int(m.group(2))))
            return m.group(0) if new is None else m.group(1) + b":" + str(new[1]).encode()

        def rport(m: re.Match[bytes]) -> bytes:
            new = self.ports.get((record.src[0], int(m.group(1))))
            return m.group(0) if new is None else str(new[1]).encode()

        # Only in the header block (a body keeps its length): ports; and times a node
        # computes from a deadline (the remaining Expires of a subscription or binding).
        head = _RPORT.sub(rport, _ADDR.sub(port, head))
        head = _REMAINING.sub(lambda m: m.group(1) + self._remaining(
            int(m.group(2)), record.time), head)
        data = head + sep + body
        for pattern in _TOKENS:
            for m in pattern.finditer(data):
                self._token(m.group(1))
        for m in _UUID.finditer(data):
            self._token(m.group(0))
        if self._tokens:
            known = re.compile(b"|".join(re.escape(t) for t in sorted(
                self._tokens, key=len, reverse=True)))
            data = known.sub(lambda m: self._tokens[m.group(0)], data)
        return _DATETIME.sub(lambda m: self._time(m, record.time, now), data)

    def _token(self, token: bytes) -> None:
        """A random token -> a same-length stand-in numbered by first appearance."""
        if token in self._tokens:
            return
        n = len(self._tokens) + 1
        if _UUID.fullmatch(token):
            self._tokens[token] = f"00000000-0000-4000-8000-{n:012x}".encode()
        else:
            self._tokens[token] = f"{n:0{len(token)}x}"[-len(token):].encode()

    def _remaining(self, seconds: int, real: float) -> bytes:
        """A remaining time (whole seconds to a deadline, in a message traced at ``real``)
        -> what the first message naming the same deadline said, to the nearest 5 s.  How
        much shorter a later message's remaining time is depends on how long the run took in
        between: a second on an idle machine, several on a busy one."""
        deadline = real + seconds
        for seen, text in self._deadlines:
            if abs(seen - deadline) <= DEADLINE_SLACK:
                return text
        text = str(round(seconds / 5) * 5).encode()
        self._deadlines.append((deadline, text))
        return text

    def _time(self, m: re.Match[bytes], real: float, now: float) -> bytes:
        """A timestamp -> the same offset from the synthetic clock, in the same format; a
        value seen before keeps its first stand-in.  The offset is rounded to the minute:
        a whole-second value (e.g. now + 2**32-1 s, truncated) is up to a second off the
        message's time, which must not show."""
        old = m.group(0)
        if old not in self._times:
            when = datetime.fromisoformat(old.decode().replace("Z", "+00:00"))
            stamp = datetime.fromtimestamp(now + round((when.timestamp() - real) / 60) * 60, UTC)
            digits = len(m.group(1) or b"")
            text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
            if digits:
                text += "." + f"{stamp.microsecond:06d}"[:digits].ljust(digits, "0")
            self._times[old] = text.encode() + m.group(2)
        return self._times[old]


# --------------------------------------------------------------------------- writing


def slug(result: BranchResult, runner: Callable[..., object]) -> str:
    return f"{result.key}-{runner.__name__.replace('_', '-')}"


async def _run(transport: Transport) -> tuple[DemoResult, list[tuple[str, TraceRecord]]]:
    records: list[tuple[str, TraceRecord]] = []
    result = await run_demo(transport, tap=lambda branch, r: records.append((branch, r)))
    return result, records


def names() -> dict[str, str]:
    """Example address -> participant name (for ``mcacm ladder --names``)."""
    return {address_text(("127.0.0.1", port)): name for name, port in PORTS.items()}


def generate(out: Path) -> DemoResult:
    """Write examples/demo under ``out`` (replacing it).  Nothing is replaced unless every
    branch of both runs ended with its expected Result."""
    from mcacm_sip.demo import BRANCHES

    runs = {t: asyncio.run(_run(t)) for t in ("udp", "tcp")}
    failed = [f"{t}: {b.key} {b.actual}" for t, (r, _) in runs.items() for b in r.branches
              if not b.ok]
    if failed:
        raise CliError(EX_FAILED, "the demo did not end as expected, examples unchanged: "
                       + "; ".join(failed))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".demo-") as tmp:
        staging = Path(tmp) / "demo"
        staging.mkdir()
        for transport, (_, records) in runs.items():
            whole = Canonical(records).messages()
            write_pcap(staging / f"demo-{transport}.pcap", (m.row() for m in whole))
        result, records = runs["udp"]
        messages = Canonical(records).messages()
        runners = {b.key: b.run for b in BRANCHES}
        for branch in result.branches:
            _write_branch(staging / slug(branch, runners[branch.key]), branch,
                          [m for m in messages if m.branch == branch.key])
        target = out / "demo"
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return runs["udp"][0]


def _write_branch(folder: Path, branch: BranchResult, messages: list[Message]) -> None:
    folder.mkdir()
    pcap = folder / "exchange.pcap"
    write_pcap(pcap, (m.row() for m in messages))
    packets = list(read_sip(pcap))  # the ladder is drawn from the capture, as a user would
    title = "\n".join([f"=== {branch.key}. {branch.title}  [{branch.clause}]",
                       *(f"    {n}" for n in branch.notes),
                       f"    expected {branch.expected}, got {branch.actual}", "", ""])
    (folder / "ladder.txt").write_text(title + ladder_text(packets, names()))
    bodies = [p.data for p in packets if read_raw(p.data).method == "MESSAGE"]
    for i, data in enumerate(bodies, 1):
        flow = describe(data).removeprefix("MESSAGE").strip() or "message"
        (folder / f"{i:02d}-{flow}.xml").write_bytes(read_raw(data).body)


def cmd_examples(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        result = generate(out)
    except OSError as exc:
        raise CliError(EX_UNAVAILABLE, str(exc)) from None
    count = len(list((out / "demo").rglob("*")))
    print(f"mcacm examples: {len(result.branches)} branches, {count} files in {out / 'demo'}",
          file=sys.stderr)
    return EX_OK


@command("examples", "regenerate the example exchanges (pcaps, ladders, XML bodies)",
         "example:\n"
         "  mcacm examples --out examples     # what `make examples` runs\n"
         "Runs the demo over UDP and TCP and rewrites OUT/demo; the result is the same in\n"
         "every run (fixed ports, synthetic clock, stable ids).  exit codes: 0 written,\n"
         "1 a demo branch failed (nothing written), 69 cannot run on loopback or write.",
         run=cmd_examples)
def _examples_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="examples", metavar="DIR",
                   help="where to write demo/ (default: examples)")
