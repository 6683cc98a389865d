"""Partner ACMS ingress in one process: CPU µs per profile update request through AcmsNode.

No sipp and no kernel: the partner ACMS of bench/ingress.py (automatic approval, SQLite store at
synchronous=NORMAL, the migrated user's mapping seeded) gets the MESSAGEs of
bench/sipp/ingress_uac.xml straight into its endpoint's ``on_message``, in batches of
``--batch`` (so the group commit sees what a loaded UDP listener drains in one wake-up); its
answers and its two MESSAGEs out per request (process indication, response; 23.280 10.17.7.2
steps 4 and 8) are caught by a fake UDP transport, and each outgoing MESSAGE gets its 200
back through ``on_message`` too. A request counts once its 200, indication and response have
left and both 200s came back. The figure is ``time.process_time`` over the rounds divided by
the requests: all the node's work per request (1 MESSAGE in, 2 out, 2 answers in), the figure
to compare across commits on a busy machine. Each log level runs in its own rounds: INFO is
what ``mcacm`` runs by default (console format to a null stream), WARNING is what the
ingress bench's child process runs. The node runs with its garbage collections paced, as
``mcacm acms`` runs it (``runtime.base.paced_full_collections``: start-up frozen, young
collections every 10 000 net allocations, the paced full pass every 0.1 s inside the rounds,
whose cost counts); one more INFO row runs with CPython's own collections (``--gc``), the
figure rounds 1-11 reported. The baseline, measured in the same rounds, is lxml parsing and
schema-validating the request body (the least any ACMS must do per request).

    .venv/bin/python bench/acms_hotpath.py [--quick] [--json FILE] [--requests N] [--rounds R]
                                           [--gc paced|cpython|both]
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Result, bench_parser, report, target

PRIMARY_HOP = ("127.0.0.1", 5999)  # never reached: the fake transport catches what goes there
PROFILE = ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0"><Name>Mike</Name>'
           '<Routine/></mcptt-user-profile>')


def body(tid: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<profile-update-request '
        'xmlns="urn:mcacm-sip:ns:acm:1.0">'
        f"<transaction-id>{tid}</transaction-id>"
        '<requester><mc-service-id type="Normal"><uri>sip:alice@primary.example</uri>'
        '</mc-service-id></requester><target><mc-service-id type="Normal">'
        "<uri>sip:dave@partner.example</uri></mc-service-id></target>"
        '<migrated-user-id type="Normal"><uri>sip:mike-1@partner.example</uri>'
        f"</migrated-user-id><profile>{PROFILE}</profile>"
        "<additional-info>routine</additional-info></profile-update-request>").encode()


def request(n: int, tid: str) -> bytes:
    """Call ``n`` of bench/sipp/ingress_uac.xml as SIPp sends it (UDP)."""
    content = body(tid)
    return (
        "MESSAGE sip:acms@partner.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-1-0;rport\r\n"
        f"From: <sip:acms@primary.example>;tag={n}SIPpTag00{n}\r\n"
        "To: <sip:acms@partner.example>\r\n"
        f"Call-ID: {n}-4242@127.0.0.1\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Max-Forwards: 70\r\n"
        "P-Asserted-Identity: <sip:acms@primary.example>\r\n"
        "Content-Type: application/vnd.mcacm-sip.acm+xml\r\n"
        f"Content-Length: {len(content)}\r\n\r\n").encode() + content


_ECHOED = (b"via", b"from", b"to", b"call-id", b"cseq")


def ok_for(message: bytes) -> bytes:
    """The 200 a UAS (sipp's ingress_uas.xml) answers to one of our MESSAGEs (cheap: its cost
    counts in the figure)."""
    lines = message[:message.index(b"\r\n\r\n")].split(b"\r\n")[1:]
    head = [line + b";tag=bench" if line[:3].lower() == b"to:" else line
            for line in lines if line[:line.find(b":")].strip().lower() in _ECHOED]
    return b"SIP/2.0 200 OK\r\n" + b"\r\n".join(head) + b"\r\nContent-Length: 0\r\n\r\n"


class _FakeDatagramTransport:
    """Stands in for the UDP transport: keeps what the node sends."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.out.append(data)

    def close(self) -> None:
        pass


async def pump(node: Any, fake: _FakeDatagramTransport, hop: Any, local: Any, answers: int,
               messages: int, expected: int) -> tuple[int, int]:
    """Let the commit, the answers and the sends run, answering each MESSAGE out, until
    ``expected`` requests have their 200 and their two MESSAGEs settled (at most 50 loop
    turns); the counts of 200s and MESSAGEs out so far."""
    for _ in range(50):
        await asyncio.sleep(0)
        out, fake.out = fake.out, []
        for sent in out:
            if sent.startswith(b"SIP/2.0 "):
                answers += sent.startswith(b"SIP/2.0 200")
            else:
                messages += 1
                node.endpoint.on_message(ok_for(sent), hop, True, local)
        if answers == expected and messages == 2 * answers and node.in_flight == 0:
            break
    return answers, messages


async def _round(store: str, requests: int, batch: int, first: int) -> float:
    """CPU µs per request through a fresh partner ACMS on ``store``."""
    from mcacm_sip.runtime.acms import AcmsNode
    from mcacm_sip.runtime.base import SipSettings
    from mcacm_sip.runtime.config import AcmsNodeConfig
    from mcacm_sip.runtime.lab import PRIMARY, partner_config
    from mcacm_sip.sip import Peer
    from mcacm_sip.sip.aio import Listen

    sip = SipSettings(listens=(Listen("udp", "127.0.0.1", 0),),
                      hops={PRIMARY: f"sip:{PRIMARY_HOP[0]}:{PRIMARY_HOP[1]}"},
                      trusted_hosts=frozenset({"127.0.0.1"}))  # the peer is on loopback
    node = AcmsNode(AcmsNodeConfig(partner_config(store), sip))
    await node.start()
    endpoint = node.endpoint
    family, (_, protocol) = next(iter(endpoint._udp.items()))
    fake = _FakeDatagramTransport()
    endpoint._udp[family] = (fake, protocol)  # type: ignore[assignment]
    source, hop = Peer("udp", "127.0.0.1", 5061), Peer("udp", *PRIMARY_HOP)
    data = [request(first + i, f"hot-{first + i}") for i in range(requests)]
    answers = messages = 0
    try:
        start = time.process_time()
        for at in range(0, requests, batch):
            for d in data[at:at + batch]:
                endpoint.on_message(d, source, True, protocol.local)
            answers, messages = await pump(node, fake, hop, protocol.local, answers, messages,
                                           min(at + batch, requests))
        elapsed = time.process_time() - start
    finally:
        await node.stop()
    if answers != requests or messages != 2 * requests:
        raise SystemExit(f"expected {requests} 200s and {2 * requests} MESSAGEs out, "
                         f"got {answers} and {messages}")
    return elapsed / requests * 1e6


def _baseline(requests: int) -> float:
    from lxml import etree

    from mcacm_sip.acm.codec import schema

    docs = [body(f"hot-base-{i}") for i in range(requests)]
    xsd = schema()
    start = time.process_time()
    for d in docs:
        xsd.validate(etree.fromstring(d))
    return (time.process_time() - start) / len(docs) * 1e6


def _seeded(path: Path) -> str:
    """A fresh partner store holding the migrated user the requests name (10.17.5)."""
    from mcacm_sip.acm.codec import profile_from_xml
    from mcacm_sip.core.events import Put
    from mcacm_sip.core.state import Mapping, Role
    from mcacm_sip.runtime.lab import PRIMARY
    from mcacm_sip.store import SqliteStore

    seed = SqliteStore(str(path))
    seed.apply([Put(Mapping(Role.PARTNER, PRIMARY, "sip:mike@primary.example",
                            "sip:mike-1@partner.example", profile_from_xml(PROFILE), False))])
    seed.close()
    return str(path)


CPYTHON_GC = " cpython-gc"
"""Suffix of a configuration that runs with CPython's own collections, not paced ones."""


def _measure(requests: int, rounds: int, batch: int, configs: Sequence[str]
             ) -> dict[str, list[float]]:
    """CPU µs per request of each round of each configuration (a log level, suffixed with
    ``CPYTHON_GC`` for CPython's collections) and of the baseline."""
    from mcacm_sip.cli.logs import setup_logging
    from mcacm_sip.runtime.base import paced_full_collections

    figures: dict[str, list[float]] = {config: [] for config in (*configs, "baseline")}
    # the log lines are formatted as `mcacm` does (console), into memory
    setup_logging(logging.INFO, "console")
    handler = cast(logging.StreamHandler[Any], logging.getLogger().handlers[0])
    try:
        with tempfile.TemporaryDirectory(prefix="bench-acms-hotpath-") as tmp:
            first = 0
            for _ in range(rounds):
                for config in configs:
                    store = _seeded(Path(tmp) / f"partner-{first}.sqlite")
                    logging.getLogger().setLevel(config.removesuffix(CPYTHON_GC))
                    handler.setStream(io.StringIO())
                    gc.collect()
                    with (contextlib.nullcontext() if config.endswith(CPYTHON_GC)
                          else paced_full_collections()):  # as `mcacm acms` runs
                        figures[config].append(
                            asyncio.run(_round(store, requests, batch, first)))
                    first += requests
                gc.collect()
                figures["baseline"].append(_baseline(requests))
    finally:
        handler.setStream(sys.stderr)
    return figures


def main(argv: Sequence[str] | None = None) -> Result:
    parser = bench_parser(__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--requests", type=int, help="requests per round (default 3000)")
    parser.add_argument("--rounds", type=int, help="rounds per log level (default 5)")
    parser.add_argument("--batch", type=int, default=16,
                        help="requests handed over per loop wake-up (default 16)")
    parser.add_argument("--levels", default="INFO,WARNING",
                        help="log levels to run, each in its own rounds (default INFO,WARNING)")
    parser.add_argument("--gc", choices=("paced", "cpython", "both"), default="both",
                        help="garbage collections: paced as `mcacm acms` runs (the targets), "
                             "CPython's own, or both (default: both, CPython's at the first "
                             "level only)")
    args = parser.parse_args(argv)
    levels = [level.strip().upper() for level in args.levels.split(",")]
    configs = ([] if args.gc == "cpython" else list(levels)) + (
        [level + CPYTHON_GC for level in levels] if args.gc == "cpython"
        else [levels[0] + CPYTHON_GC] if args.gc == "both" else [])
    requests = args.requests or (500 if args.quick else 3000)
    rounds = args.rounds or (2 if args.quick else 5)
    figures = _measure(requests, rounds, args.batch, configs)
    med = {k: statistics.median(v) for k, v in figures.items()}
    rows = [[f"partner ACMS, log level {config.removesuffix(CPYTHON_GC)}"
             f"{', CPython GC' if config.endswith(CPYTHON_GC) else ''}: request in, 200, "
             "2 MESSAGEs out, their 200s",
             round(med[config], 1),
             round(statistics.median(o / b for o, b in
                                     zip(figures[config], figures["baseline"], strict=True)), 2)]
            for config in configs]
    rows.append(["baseline: lxml parse + XSD validation of the request body",
                 round(med["baseline"], 1), 1.0])
    result: Result = {
        "name": "acms_hotpath",
        "title": f"partner ACMS ingress in-process, {requests} requests x {rounds} rounds, "
                 f"batches of {args.batch}",
        "tables": [{"title": "CPU µs per request, median of the rounds; ratio to the baseline "
                             "of the same round (median)",
                    "columns": ["path", "µs", "x baseline"], "rows": rows,
                    "rounds": {k: [round(v, 1) for v in f] for k, f in figures.items()}}],
        "summary": {f"CPU µs/request, {config.removesuffix(CPYTHON_GC)}"
                    f"{', CPython GC' if config.endswith(CPYTHON_GC) else ''}"
                    f"{' (mcacm default)' if config == 'INFO' else ''}":
                    round(med[config], 1) for config in configs},
        "targets": [],
    }
    if "INFO" in configs:  # the targets are met or not as `mcacm acms` runs
        info_x = statistics.median(o / b for o, b in zip(figures["INFO"], figures["baseline"],
                                                         strict=True))
        result["targets"] = [
            target("in-process ingress at INFO <= 200 µs CPU/request", f"{med['INFO']:.0f} µs",
                   med["INFO"] <= 200),
            target("in-process ingress at INFO <= 20x lxml baseline", f"{info_x:.1f}x",
                   info_x <= 20),
        ]
    report(result, args.json)
    return result


if __name__ == "__main__":
    main()
