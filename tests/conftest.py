"""Fixtures shared by every test folder: the throwaway PostgreSQL cluster (tests/pg.py), and
the root logger put back after each test."""

import logging
from collections.abc import Iterator

import pytest
from pg import own_pg_cluster, pg_cluster, pg_url

from mcacm_sip.cli import logs

__all__ = ["own_pg_cluster", "pg_cluster", "pg_url"]


@pytest.fixture(autouse=True)
def _setup_logging_undone() -> Iterator[None]:
    """An in-process ``mcacm`` call (``main([...])``) installs setup_logging's handler on the
    sys.stderr of its test -- capsys's stream, closed when that test ends; left on the root
    logger, it would make later tests' records print "--- Logging error --- ValueError: I/O
    operation on closed file"."""
    root = logging.getLogger()
    level = root.level
    yield
    sink = logs._sink
    if sink is not None:
        root.removeHandler(sink)
        logs._sink = None
        root.setLevel(level)
