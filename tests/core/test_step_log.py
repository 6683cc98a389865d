"""Every procedure step is one structured log event keyed by transaction id, citing its clause,
and the console line shows each field once."""

from __future__ import annotations

import logging

import pytest

from mcacm_sip.acm.model import Addressee
from mcacm_sip.cli.logs import ConsoleFormatter, JsonFormatter

from .harness import DAVE, migrate, two_systems, update


def test_each_transition_is_an_event_with_its_clause(caplog: pytest.LogCaptureFixture) -> None:
    net = two_systems()
    migrated = migrate(net)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mcacm.acms"):
        tid = update(net, Addressee(DAVE), migrated)
    steps = [r for r in caplog.records if getattr(r, "event", None) == "procedure.step"]
    mine = [r for r in steps if getattr(r, "transaction_id", None) == tid]
    assert {getattr(r, "role", None) for r in mine} == {"primary", "partner"}
    clauses = [str(getattr(r, "clause", "")) for r in mine]
    assert all(clauses)
    assert any("10.17.7.2" in c for c in clauses)
    # the JSON form carries the fields; the console form does not repeat what the message says
    doc = JsonFormatter().format(mine[0])
    assert f'"transaction_id": "{tid}"' in doc and '"clause": ' in doc
    line = ConsoleFormatter().format(mine[0])
    assert line.count(tid) == 1 and "clause=" in line
