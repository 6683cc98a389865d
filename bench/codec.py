"""ACM message layer: µs per message to encode and decode a profile update request.

The message is ``examples/flows/profile-update-request.xml``'s value (a ~2.4 KB MCPTT user
profile embedded; ~3 KB on the wire).  Every path is timed in the same run as the baseline,
lxml's bare ``fromstring`` + ``XMLSchema.validate`` of the same bytes, and reported as a ratio:

- decode, lxml (the hot path): hardened parse + lxml validation + model construction, including
  the profile's canonicalisation (C14N);
- decode, xmlschema: the same with xmlschema validating instead of lxml;
- encode, lxml / xmlschema: build the tree, validate it, serialise.

    .venv/bin/python bench/codec.py [--quick] [--json FILE]
"""

from __future__ import annotations

import io
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import xmlschema
from _common import Result, bench_parser, report
from lxml import etree

from mcacm_sip.acm import codec, xmlsafe
from mcacm_sip.acm.examples import example_flows


def _us_per_call(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Best of ``repeat`` runs of ``number`` calls: the least disturbed figure, in µs per call."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main(argv: Sequence[str] | None = None) -> Result:
    args = bench_parser(__doc__.splitlines()[0]).parse_args(argv)
    number, repeat = (300, 3) if args.quick else (3000, 7)

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

    paths: list[tuple[str, Callable[[], object], int]] = [
        ("baseline: lxml fromstring + XMLSchema.validate", baseline, number),
        ("decode (lxml): parse + validate + model", lambda: codec.decode(data), number),
        ("decode (xmlschema): parse + validate + model", decode_xmlschema, max(number // 20, 20)),
        ("encode (lxml): build + validate + serialise", lambda: codec.encode(flow), number),
        ("encode (xmlschema): build + validate + serialise", encode_xmlschema,
         max(number // 20, 20)),
    ]
    timings = {name: _us_per_call(fn, n, repeat) for name, fn, n in paths}
    base = timings[paths[0][0]]
    rows = [[name, round(us, 1), round(us / base, 2)] for name, us in timings.items()]
    decode_us = timings[paths[1][0]]
    return {
        "name": "codec",
        "title": f"ACM codec, profile update request of {len(data)} bytes (µs per message)",
        "tables": [{
            "title": "µs per message; ratio to the lxml baseline measured in the same run",
            "columns": ["path", "µs", "x baseline"],
            "rows": rows,
        }],
        "summary": {
            "document bytes": len(data),
            "baseline µs (lxml parse+validate)": round(base, 1),
            "decode µs (lxml path)": round(decode_us, 1),
            "decode x baseline": round(decode_us / base, 2),
            "xmlschema decode x lxml decode": round(timings[paths[2][0]] / decode_us, 1),
            "encode µs (lxml path)": round(timings[paths[3][0]], 1),
        },
    }


if __name__ == "__main__":
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    report(main(sys.argv[1:]), args.json)
