"""atheris: the full receive path of a running primary ACMS (endpoint -> parser -> transaction
layer -> MESSAGE handler -> codec -> core -> answer), one datagram per input; with
``MCACM_FUZZ_NODE=fa`` the partner's FA controlling server's (PUBLISH / SUBSCRIBE handlers,
FA body decoders, FA core) instead.

    python fuzz/receive_path.py -runs=1000000 -rss_limit_mb=1024 -timeout=10
    MCACM_FUZZ_NODE=fa python fuzz/receive_path.py -runs=1000000 -rss_limit_mb=1024 -timeout=10
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from common import ROOT, atheris, run

with atheris.instrument_imports():
    from fuzz.contract import ReceivePath

_NODE: Literal["acms", "fa"] = "fa" if os.environ.get("MCACM_FUZZ_NODE") == "fa" else "acms"
_LOOP = asyncio.new_event_loop()
_PATH = ReceivePath(_NODE)


def test_one_input(data: bytes) -> None:
    _LOOP.run_until_complete(_PATH.acheck(data, datagram=True))


if __name__ == "__main__":
    _LOOP.run_until_complete(_PATH.start())
    run("receive_path" if _NODE == "acms" else "receive_path_fa", test_one_input,
        [ROOT / "tests" / "sip" / "corpus"], kind="receive_path")
