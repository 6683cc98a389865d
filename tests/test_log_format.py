"""mcacm's two log formats carry every extra= field and nothing of LogRecord's own, whatever
order a record's attributes were set in, and each line has its own time."""

from __future__ import annotations

import json
import logging

from mcacm_sip.cli.logs import ConsoleFormatter, JsonFormatter


def _record(created: float, **extra: object) -> logging.LogRecord:
    log = logging.getLogger("mcacm.test")
    record = log.makeRecord(log.name, logging.INFO, "(unknown file)", 0, "tx %s moved",
                            ("t-1",), None, extra=extra)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


def test_fields_are_the_extras_only() -> None:
    record = _record(1_800_000_000.25, event="procedure.step", transaction_id="t-1",
                     clause="10.17.7.2 step 4", peer="sip:acms@primary.example", leg_id=None)
    record.message = "set by another formatter"  # a standard name added later: not a field
    record.custom = "added by a filter"  # a field added after the extras: still shown
    doc = json.loads(JsonFormatter().format(record))
    assert {k: doc[k] for k in ("event", "transaction_id", "clause", "peer", "custom")} == {
        "event": "procedure.step", "transaction_id": "t-1", "clause": "10.17.7.2 step 4",
        "peer": "sip:acms@primary.example", "custom": "added by a filter"}
    assert not {"leg_id", "message", "args", "thread", "processName", "pathname"} & set(doc)
    line = ConsoleFormatter().format(record)
    assert line.endswith("tx t-1 moved  [clause=10.17.7.2 step 4 peer=sip:acms@primary.example "
                         "custom=added by a filter]")


def test_each_line_has_its_own_second() -> None:
    fmt = ConsoleFormatter()
    first = fmt.format(_record(1_800_000_000.5))
    same = fmt.format(_record(1_800_000_000.75))
    later = fmt.format(_record(1_800_000_061.0))
    assert first[:8] == same[:8] != later[:8]
    assert first[8:12] == ".500" and same[8:12] == ".750" and later[8:12] == ".000"


def test_field_values_are_escaped_in_the_console_line() -> None:
    line = ConsoleFormatter().format(_record(1_800_000_000.0, reason="a\nb\x1b[31m"))
    assert "\n" not in line and "\x1b" not in line and "reason=a" in line
