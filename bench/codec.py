"""ACM message layer: µs per message to encode and decode a profile update request.

The message is ``examples/flows/profile-update-request.xml``'s value (a ~2.4 KB MCPTT user
profile embedded; ~3 KB on the wire).  Every path is timed in the same run as the baseline,
lxml's bare ``fromstring`` + ``XMLSchema.validate`` of the same bytes, and reported as a ratio:

- decode, lxml (the hot path): hardened parse + lxml validation + model construction, including
  the profile's canonicalisation (C14N);
- decode, xmlschema: the same with xmlschema validating instead of lxml;
- encode, lxml (the hot path): the text writer, which proves the document valid (a schema
  check only for what it cannot prove, codec._template);
- encode, xmlschema: build the tree, validate it with xmlschema, serialise.

Timing: CPU time of the process (time.process_time), so time spent descheduled on a shared
machine does not count; the paths run in interleaved rounds and each round's figure is divided
by the same round's baseline, so a slow phase of the machine hits both; the table gives the
median over the rounds (µs and ratio).

    .venv/bin/python bench/codec.py [--quick] [--json FILE]
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import xmlschema
from _common import Result, bench_parser, report, target
from lxml import etree

from mcacm_sip.acm import codec, xmlsafe
from mcacm_sip.acm.examples import example_flows


def _us_per_call(fn: Callable[[], object], number: int) -> float:
    """CPU µs per call over ``number`` calls."""
    start = time.process_time()
    for _ in range(number):
        fn()
    return (time.process_time() - start) / number * 1e6


def main(argv: Sequence[str] | None = None) -> Result:
    args = bench_parser(__doc__.splitlines()[0]).parse_args(argv)
    number, rounds = (300, 3) if args.quick else (2000, 9)

    flow = example_flows()["profile-update-request"]
    data = codec.encode(flow)
    lxml_schema = codec.schema()
    xs: Any = xmlschema.XMLSchema10(io.BytesIO(codec.schema_source()))
    bare_parser = etree.XMLParser()
    assert codec.decode(data) == flow

    def baseline() -> None:
        lxml_schema.validate(etree.fromstring(data, bare_parser))

    def decode_xmlschema() -> object:
        root = xmlsafe.parse(data)
        xs.validate(root)
        return codec.from_element(root, validate=False)

    def encode_xmlschema() -> bytes:
        root = codec.to_element(flow)
        xs.validate(root)
        return etree.tostring(root, encoding="UTF-8")

    # every flow a node sends is a new object, and encode() remembers the last ones it
    # encoded (one encode for the store and the wire): time it on fresh, equal flows
    fresh = iter([replace(flow) for _ in range(number * (rounds + 1) + 1)])

    paths: list[tuple[str, Callable[[], object], int]] = [
        ("baseline: lxml fromstring + XMLSchema.validate", baseline, number),
        ("decode (lxml): parse + validate + model", lambda: codec.decode(data), number),
        ("decode (xmlschema): parse + validate + model", decode_xmlschema, max(number // 20, 20)),
        ("encode (lxml): write, proven or else validated", lambda: codec.encode(next(fresh)),
         number),
        ("encode (xmlschema): build + validate + serialise", encode_xmlschema,
         max(number // 20, 20)),
    ]
    for _, fn, _ in paths:  # warm up: caches, lazily built schema state
        fn()
    runs: dict[str, list[float]] = {name: [] for name, _, _ in paths}
    ratios: dict[str, list[float]] = {name: [] for name, _, _ in paths}
    for _ in range(rounds):
        for name, fn, n in paths:
            runs[name].append(_us_per_call(fn, n))
        base_round = runs[paths[0][0]][-1]
        for name in runs:
            ratios[name].append(runs[name][-1] / base_round)
    timings = {name: statistics.median(v) for name, v in runs.items()}
    ratio = {name: statistics.median(v) for name, v in ratios.items()}
    base = timings[paths[0][0]]
    rows = [[name, round(timings[name], 1), round(ratio[name], 2)] for name in timings]
    decode_us = timings[paths[1][0]]
    decode_x, encode_x = ratio[paths[1][0]], ratio[paths[3][0]]
    return {
        "name": "codec",
        "title": f"ACM codec, profile update request of {len(data)} bytes (µs per message)",
        "tables": [{
            "title": f"CPU µs per message, median of {rounds} interleaved rounds; ratio to the "
                     "lxml baseline of the same round (median)",
            "columns": ["path", "µs", "x baseline"],
            "rows": rows,
        }],
        "summary": {
            "document bytes": len(data),
            "baseline µs (lxml parse+validate)": round(base, 1),
            "decode µs (lxml path)": round(decode_us, 1),
            "decode x baseline": round(ratio[paths[1][0]], 2),
            "encode x baseline": round(ratio[paths[3][0]], 2),
            "xmlschema decode x lxml decode": round(timings[paths[2][0]] / decode_us, 1),
            "encode µs (lxml path)": round(timings[paths[3][0]], 1),
        },
        "targets": [
            target(f"decode of the {len(data)}-byte request <= 2x lxml parse+validate",
                   f"{decode_x:.2f}x", decode_x <= 2.0),
            target("encode of a new flow <= 1.5x lxml parse+validate", f"{encode_x:.2f}x",
                   encode_x <= 1.5),
        ],
    }


if __name__ == "__main__":
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    report(main(sys.argv[1:]), args.json)
