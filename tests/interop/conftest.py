"""Fixtures for the interop tests: tool check (skip or, in CI, fail) and a work directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .peers import REQUIRE_ENV, missing_tools


def require_tools(*tools: str) -> None:
    """Skip the test when a peer is not installed; fail instead when MCACM_REQUIRE_INTEROP=1.

    CI (.ci/run) installs the tools and sets the variable, so the interop tests never
    silently skip there.
    """
    missing = missing_tools(*tools)
    if not missing:
        return
    reason = (f"interop peer(s) not installed: {', '.join(missing)} "
              "(Debian: apt-get install sip-tester kamailio)")
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1 requires them", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def sipp(tmp_path: Path) -> Path:
    """Requires sipp; the work directory for its logs and statistics."""
    require_tools("sipp")
    return tmp_path


@pytest.fixture
def sipp_kamailio(tmp_path: Path) -> Path:
    """Requires sipp and kamailio; the work directory for their logs, configs and statistics."""
    require_tools("sipp", "kamailio")
    return tmp_path
