"""atheris: the ACM codec's decoder (hardened parse, schema, model) and the FA server's body
decoder, on any bytes.

    python fuzz/xml_decoder.py -runs=1000000 -rss_limit_mb=1024 -timeout=10
"""

from __future__ import annotations

from common import ROOT, atheris, run

with atheris.instrument_imports():
    from fuzz.contract import check_acm_body, check_fa_body

_FA_TYPES = ("application/pidf+xml", "application/simple-filter+xml",
             "application/vnd.3gpp.mcptt-info+xml")


def test_one_input(data: bytes) -> None:
    check_acm_body(data)
    check_fa_body(_FA_TYPES[len(data) % 3], data)


if __name__ == "__main__":
    run("xml_decoder", test_one_input, [ROOT / "examples" / "flows",
                                        ROOT / "tests" / "acm" / "corpus" / "good",
                                        ROOT / "tests" / "acm" / "corpus" / "bad"])
