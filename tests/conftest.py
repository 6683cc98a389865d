"""Fixtures shared by every test folder: the throwaway PostgreSQL cluster (tests/pg.py), the
root logger put back after each test, ``sip_parser``, which runs a test module once over
each header splitting of the SIP parser, and ``profile_c14n``, once over each writer of a received
profile's canonical text."""

import logging
from collections.abc import Iterator

import pytest
from pg import own_pg_cluster, pg_cluster, pg_url
from tools import require_c14n, require_c_parser

from mcacm_sip.acm import codec
from mcacm_sip.cli import logs
from mcacm_sip.sip import message

__all__ = ["own_pg_cluster", "pg_cluster", "pg_url", "profile_c14n", "sip_parser"]


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


@pytest.fixture(scope="module", params=["python", "c"])
def sip_parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """The module's tests over the pure-Python header splitting, then over the C one
    (mcacm_sip/sip/_cparse.c; skipped when not built, failed then in CI: tests/tools.py)."""
    splitter = message._py_parse_headers if request.param == "python" else require_c_parser()
    before, own_before = message._parse_headers, message._own_parts
    message._parse_headers = splitter
    # a response to our own request is read by the same side (own_response)
    message._own_parts = (message._py_own_parts if request.param == "python"
                          else message._load_own_parts(compiled=True))
    try:
        yield request.param
    finally:
        message._parse_headers, message._own_parts = before, own_before


@pytest.fixture(scope="module", params=["python", "c"])
def profile_c14n(request: pytest.FixtureRequest) -> Iterator[str]:
    """The module's tests with a received profile's canonical text written by libxml2 alone,
    then by the compiled writer (mcacm_sip/acm/_c14n.c, which leaves to libxml2 what it does
    not take; skipped when not built, failed then in CI: tests/tools.py)."""
    writer = None if request.param == "python" else require_c14n()
    before = codec._c_canonical
    codec._c_canonical = writer
    try:
        yield request.param
    finally:
        codec._c_canonical = before
