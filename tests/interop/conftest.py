"""Fixtures for the interop tests: tool check (skip or, in CI, fail) and a work directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools import require_tools


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
