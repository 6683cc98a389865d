"""atheris: the SIP parser (datagram and stream rules), the error answers built from what it
refuses, and the TCP/TLS stream framer, on any bytes; the compiled header splitting
(mcacm_sip/sip/_cparse.c, when built) against the Python one on each (check_sip).

    python fuzz/sip_parser.py -runs=1000000 -rss_limit_mb=1024 -timeout=10
"""

from __future__ import annotations

from common import ROOT, atheris, run

with atheris.instrument_imports():
    import aiosipua  # noqa: F401  (instrumented: it parses our Via values)
    from fuzz.contract import check_sip, check_stream


def test_one_input(data: bytes) -> None:
    check_sip(data, datagram=True)
    # the stream rules on the framed messages (answers already checked above)
    check_stream(data, [len(data) // 3, len(data) // 2], answers=False)


if __name__ == "__main__":
    run("sip_parser", test_one_input, [ROOT / "tests" / "sip" / "corpus"])
