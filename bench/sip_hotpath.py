"""SIP receive path in one process: CPU µs per MESSAGE through SipEndpoint.on_message.

No sockets and no sipp: the UAS of bench/sip_layer.py (a SipEndpoint answering 200 to MESSAGE)
gets SIPp-shaped MESSAGEs straight into ``on_message`` and writes its answers to a fake UDP
socket; its clock is injected and advances 0.1 ms per MESSAGE (10 000/s). This isolates our
code (parse, transactions, dispatch, response building) from the kernel and from the load
generator. The baseline, measured in the same rounds, is aiosipua's ``SipMessage.parse`` of the
same bytes (the parser alone, no validation): read the ratio.

For figures that do not move with the machine's load, count instructions instead of time
(deterministic; the difference of two runs cancels start-up):

    for n in 500 3000; do PYTHONHASHSEED=0 valgrind --tool=callgrind \\
        --callgrind-out-file=/dev/null .venv/bin/python bench/sip_hotpath.py --messages $n \\
        --rounds 1 2>&1 | grep Collected; done      # (Ir(3000) - Ir(500)) / 2500 per MESSAGE

    .venv/bin/python bench/sip_hotpath.py [--quick] [--json FILE] [--messages N] [--rounds R]
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiosipua
from _common import Result, bench_parser, report

from mcacm_sip.sip import Peer
from mcacm_sip.sip.aio import Listen, SipEndpoint

BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0">'
        b'<mcptt-Params><mcptt-request-uri type="Normal"><mcpttURI>sip:fa-1@mcptt.example.com'
        b"</mcpttURI></mcptt-request-uri></mcptt-Params></mcpttinfo>\n")


def sipp_message(n: int) -> bytes:
    """Call ``n`` of tests/interop/sip/uac_message.xml as SIPp sends it (UDP)."""
    return (
        f"MESSAGE sip:acms@127.0.0.1:5070;transport=UDP SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-1-0;rport\r\n"
        f"From: <sip:sipp@127.0.0.1:5061>;tag={n}SIPpTag001\r\n"
        f"To: <sip:acms@127.0.0.1:5070>\r\n"
        f"Call-ID: {n}-4242@127.0.0.1\r\n"
        f"CSeq: 1 MESSAGE\r\n"
        f"Max-Forwards: 70\r\n"
        f"Contact: <sip:sipp@127.0.0.1:5061;transport=UDP>\r\n"
        f"Content-Type: application/vnd.3gpp.mcptt-info+xml\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


class _FakeDatagramTransport:
    """Stands in for the UDP transport: counts answers instead of sending them."""

    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent += 1

    def close(self) -> None:
        pass


async def _ours(data: list[bytes]) -> float:
    """CPU µs per MESSAGE through a fresh endpoint (its transactions only from this round)."""
    now = [0.0]
    endpoint = SipEndpoint([Listen("udp", "127.0.0.1", 0)], clock=lambda: now[0])
    endpoint.serve("MESSAGE", lambda request: request.reply(200))
    await endpoint.start()
    try:
        family, (_, protocol) = next(iter(endpoint._udp.items()))
        fake = _FakeDatagramTransport()
        endpoint._udp[family] = (fake, protocol)  # type: ignore[assignment]
        source = Peer("udp", "127.0.0.1", 5061)
        start = time.process_time()
        for d in data:
            now[0] += 0.0001
            endpoint.on_message(d, source, True, protocol.local)
        elapsed = time.process_time() - start
    finally:
        await endpoint.close()
    if fake.sent != len(data):
        raise SystemExit(f"expected {len(data)} answers, got {fake.sent}")
    return elapsed / len(data) * 1e6


def _baseline(data: list[bytes]) -> float:
    start = time.process_time()
    for d in data:
        aiosipua.SipMessage.parse(d)
    return (time.process_time() - start) / len(data) * 1e6


def _measure(messages: int, rounds: int) -> tuple[list[float], list[float]]:
    ours: list[float] = []
    base: list[float] = []
    for r in range(rounds):
        data = [sipp_message(r * messages + i) for i in range(messages)]
        gc.collect()  # both start from the same heap: the previous round's garbage is gone
        base.append(_baseline(data))
        gc.collect()
        ours.append(asyncio.run(_ours(data)))
    return ours, base


def main(argv: Sequence[str] | None = None) -> Result:
    parser = bench_parser(__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--messages", type=int, help="MESSAGEs per round (default 20000)")
    parser.add_argument("--rounds", type=int, help="rounds (default 7)")
    args = parser.parse_args(argv)
    messages = args.messages or (2000 if args.quick else 20000)
    rounds = args.rounds or (3 if args.quick else 7)
    ours, base = _measure(messages, rounds)
    ratio = statistics.median(o / b for o, b in zip(ours, base, strict=True))
    rows = [["our UAS: on_message -> parse -> transaction -> handler -> 200",
             round(statistics.median(ours), 1), round(ratio, 2)],
            ["baseline: aiosipua SipMessage.parse alone", round(statistics.median(base), 1), 1.0]]
    result: Result = {
        "name": "sip_hotpath",
        "title": f"SIP receive path in-process, {messages} MESSAGEs x {rounds} rounds",
        "tables": [{"title": "CPU µs per MESSAGE, median of the rounds; ratio to the baseline of "
                             "the same round (median)",
                    "columns": ["path", "µs", "x baseline"], "rows": rows}],
        "summary": {"our µs per MESSAGE (in-process)": round(statistics.median(ours), 1),
                    "x aiosipua parse alone": round(ratio, 2)},
    }
    report(result, args.json)
    return result


if __name__ == "__main__":
    main()
