"""External tools the tests run (sipp, kamailio, tshark, xmllint): found, skipped, or failed.

One rule for every test: a missing tool (or the compiled SIP parser) skips the test with the
Debian package to install, except when MCACM_REQUIRE_INTEROP=1 (as .ci/run sets), where it
fails, so CI never skips silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from mcacm_sip.sip.message import _HeaderSplitter

REQUIRE_ENV = "MCACM_REQUIRE_INTEROP"
_T = TypeVar("_T")
PACKAGES = {"sipp": "sip-tester", "kamailio": "kamailio", "tshark": "tshark",
            "xmllint": "libxml2-utils", "sngrep": "sngrep"}


def missing(reason: str) -> NoReturn:
    """Skips the test for ``reason`` (what is missing and how to install it); fails it
    instead with MCACM_REQUIRE_INTEROP=1."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(reason)


def require_tools(*tools: str) -> list[str]:
    """The paths of ``tools``; skips (or, with MCACM_REQUIRE_INTEROP=1, fails) if one is missing."""
    paths = [shutil.which(t) for t in tools]
    lacking = [t for t, p in zip(tools, paths, strict=True) if p is None]
    if not lacking:
        return [p for p in paths if p is not None]
    packages = " ".join(PACKAGES.get(t, t) for t in lacking)
    missing(f"not installed: {', '.join(lacking)} (Debian: apt-get install {packages})")


def require_tool(tool: str) -> str:
    """The path of one tool, under the same rule."""
    return require_tools(tool)[0]


def require_kamailio_tls(cfg: Path) -> None:
    """Kamailio's TLS transport is a separate Debian package (kamailio-tls-modules): the config
    check of ``cfg`` with -A WITH_TLS loads tls.so or fails.  Skipped, or failed, by the rule
    above."""
    require_tool("kamailio")
    check = subprocess.run(["kamailio", "-c", "-f", str(cfg), "-A", "WITH_TLS"],
                           capture_output=True, timeout=30)
    if check.returncode != 0:
        missing("kamailio cannot load tls.so (Debian: apt-get install kamailio-tls-modules)")


def require_c_parser() -> _HeaderSplitter:
    """The compiled header splitting (mcacm_sip/sip/_cparse.c); skips when it was not built (no
    C compiler or Python headers: the package runs in pure Python), fails under the rule above."""
    from mcacm_sip.sip import message

    return require_compiled(message._load_c_parser, "the compiled SIP parser")


def require_c14n() -> Callable[[bytes, bytes, bytes], str | None]:
    """The compiled profile canonicaliser (mcacm_sip/acm/_c14n.c); skips when it was not built,
    fails under the rule above."""
    from mcacm_sip.acm import codec

    return require_compiled(codec._load_c14n, "the compiled profile canonicaliser")


def require_compiled(load: Callable[[str], _T | None], what: str) -> _T:
    """``load("c")``: an optional compiled part; skips or fails (the rule above) when it was
    not built."""
    try:
        found = load("c")
    except ImportError as exc:
        missing(f"{what} is missing ({exc}); Debian: apt-get install gcc python3-dev, then "
                "pip install -e .")
    assert found is not None
    return found
