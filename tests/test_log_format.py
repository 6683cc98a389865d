"""mcacm's two log formats carry every extra= field and nothing of LogRecord's own, whatever
order a record's attributes were set in, and each line has its own time."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.cli.logs import ConsoleFormatter, JsonFormatter, setup_logging


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


# ------------------------------------------------------------------ the INFO fast path

_EXTRA = {"event": "acm.sent", "call_id": "c-1@h", "flow": "process-indication",
          "transaction_id": "t-1", "peer": "sip:acms@primary.example", "status": 200,
          "failure": None, "reason": "bad\nFAKE\x1b[2J"}


@pytest.fixture()
def installed() -> Iterator[tuple[io.StringIO, list[logging.LogRecord]]]:
    """setup_logging's handler writing to a buffer, and every LogRecord built meanwhile."""
    root = logging.getLogger()
    saved = root.level, root.handlers[:], logging.getLogRecordFactory()
    built: list[logging.LogRecord] = []

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = saved[2](*args, **kwargs)
        built.append(record)
        return record

    logging.setLogRecordFactory(counting)
    buffer = io.StringIO()
    try:
        yield buffer, built
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.setLogRecordFactory(saved[2])


def _setup(fmt: Literal["console", "json"], buffer: io.StringIO) -> logging.Handler:
    setup_logging(logging.INFO, fmt)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    return handler


def _lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_an_info_line_without_a_record_is_the_line_of_the_record(
        installed: tuple[io.StringIO, list[logging.LogRecord]],
        fmt: Literal["console", "json"]) -> None:
    buffer, built = installed
    handler = _setup(fmt, buffer)
    log = logging.getLogger(f"mcacm.test.fast.{fmt}")
    log.info("%s %s to %s: %s", "process-indication", "t-1", "sip:x\x1b[31m", 200, extra=_EXTRA)
    assert built == []  # the fast path: no LogRecord
    log.addFilter(lambda record: True)  # a filter: Logger's own path, a record
    log.info("%s %s to %s: %s", "process-indication", "t-1", "sip:x\x1b[31m", 200, extra=_EXTRA)
    assert len(built) == 1
    fast, slow = _lines(buffer)
    assert handler.formatter is not None
    assert slow == handler.formatter.format(built[0])
    if fmt == "json":
        first, second = json.loads(fast), json.loads(slow)
        assert abs(first.pop("ts") - second.pop("ts")) < 60
        assert first == second and "failure" not in first and first["reason"] == _EXTRA["reason"]
    else:
        assert fast[12:] == slow[12:]  # after the time
        assert "\x1b" not in fast and "reason=bad\\nFAKE\\x1b[2J" in fast


def test_another_handler_sees_every_record(
        installed: tuple[io.StringIO, list[logging.LogRecord]],
        caplog: pytest.LogCaptureFixture) -> None:
    buffer, _ = installed
    _setup("console", buffer)
    logging.getLogger().addHandler(caplog.handler)
    log = logging.getLogger("mcacm.test.fast.seen")
    with caplog.at_level(logging.INFO):
        log.info("seen %s", "here", extra={"event": "test.seen"})
    assert [(r.getMessage(), r.event) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("seen here", "test.seen")]
    assert _lines(buffer)[-1].endswith("mcacm.test.fast.seen: seen here")


def test_what_a_record_refuses_or_reports_takes_the_record_path(
        installed: tuple[io.StringIO, list[logging.LogRecord]],
        capsys: pytest.CaptureFixture[str]) -> None:
    buffer, _ = installed
    _setup("json", buffer)
    log = logging.getLogger("mcacm.test.fast.refused")
    with pytest.raises(KeyError, match="overwrite"):  # as makeRecord
        log.info("x", extra={"name": "clash"})
    log.info("%d items", "not a number")  # Logging's "--- Logging error ---" report
    assert "Logging error" in capsys.readouterr().err
    log.info("%(who)s said", {"who": "peer"})  # one mapping: its keys
    try:
        raise ValueError("boom")
    except ValueError:
        log.info("failed", exc_info=True)
    logs = [json.loads(line) for line in _lines(buffer)]
    assert [d["msg"] for d in logs] == ["peer said", "failed"]
    assert "ValueError: boom" in logs[1]["exc"]
    logging.getLogger().setLevel(logging.WARNING)
    log.info("not shown")
    assert len(_lines(buffer)) == 2


class KeptRecords(logging.Handler):
    """Keeps every record it gets (a user's own handler beside ours)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_TIMES = {"created", "msecs", "relativeCreated"}


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_users_handler_gets_the_record_a_plain_logger_makes(
        installed: tuple[io.StringIO, list[logging.LogRecord]],
        fmt: Literal["console", "json"]) -> None:
    # a user's own handler next to ours (their logging config) reads an ordinary LogRecord:
    # the attributes a plain Logger's record has, the caller's file, function and line too
    # once they turn the caller lookup back on (setup_logging turns it off)
    buffer, _ = installed
    _setup(fmt, buffer)
    kept = KeptRecords()
    root = logging.getLogger()
    root.addHandler(kept)
    saved = logging._srcfile
    logging._srcfile = os.path.normcase(
        logging.addLevelName.__code__.co_filename)
    plain = logging.Logger("mcacm.test.fast.user")  # not a _FastLogger
    plain.parent = root
    ours = logging.getLogger("mcacm.test.fast.user")
    assert type(ours) is not logging.Logger
    try:
        line = sys._getframe().f_lineno
        ours.info("%s moved", "t-1", extra={"event": "test.user", "peer": "sip:a@b"})
        plain.info("%s moved", "t-1", extra={"event": "test.user", "peer": "sip:a@b"})
    finally:
        logging._srcfile = saved
        root.removeHandler(kept)
    fast, reference = (vars(r) for r in kept.records)
    assert type(kept.records[0]) is type(kept.records[1])
    assert fast.keys() == reference.keys()
    assert {k: v for k, v in fast.items() if k not in _TIMES | {"lineno"}} == {
        k: v for k, v in reference.items() if k not in _TIMES | {"lineno"}}
    assert (fast["funcName"], fast["lineno"], fast["pathname"]) == (
        "test_a_users_handler_gets_the_record_a_plain_logger_makes", line + 1, __file__)
    assert len(_lines(buffer)) == 2  # and our handler wrote both


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk full")


def test_a_stream_that_fails_is_reported_not_raised(
        installed: tuple[io.StringIO, list[logging.LogRecord]],
        capsys: pytest.CaptureFixture[str]) -> None:
    # as Handler.handleError: the caller goes on, the failure is said on stderr
    _setup("console", _Broken())
    logging.getLogger("mcacm.test.fast.broken").info("lost %s", "line",
                                                     extra={"event": "test.lost"})
    assert "OSError: disk full" in capsys.readouterr().err


# ------------------------------------------------------------------ lines held for a loop iteration

class _Counting(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_info_lines_made_in_a_loop_are_written_together_before_it_waits(
        installed: tuple[io.StringIO, list[logging.LogRecord]]) -> None:
    stream = _Counting()
    _setup("console", stream)
    log = logging.getLogger("mcacm.test.fast.held")

    async def run() -> tuple[str, str, int]:
        for n in range(3):
            log.info("step %d", n, extra={"event": "test.held"})
        during = stream.getvalue()
        await asyncio.sleep(0)  # the loop's next iteration: the write queued first has run
        return during, stream.getvalue(), stream.writes

    during, after, writes = asyncio.run(run())
    assert during == ""
    assert [line.split(": ", 1)[1] for line in after.splitlines()] == [
        "step 0", "step 1", "step 2"]
    assert writes == 1


def test_a_warning_or_a_line_made_outside_the_loop_writes_the_held_lines_first(
        installed: tuple[io.StringIO, list[logging.LogRecord]]) -> None:
    buffer, _ = installed
    _setup("json", buffer)
    log = logging.getLogger("mcacm.test.fast.order")

    async def run() -> None:
        log.info("first")
        log.warning("second")  # Logger's path: at once, after what was held
        log.info("third")

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()  # "third" may still be held: its write was queued on a loop now gone
    log.info("fourth")  # outside a loop: at once, after what was held
    assert [json.loads(line)["msg"] for line in _lines(buffer)] == [
        "first", "second", "third", "fourth"]


def test_held_lines_are_written_when_the_process_exits_on_an_exception(tmp_path: Any) -> None:
    # the loop never runs again: logging.shutdown (atexit) writes them
    script = tmp_path / "crash.py"
    script.write_text(
        "import asyncio, logging\n"
        "from mcacm_sip.cli.logs import setup_logging\n"
        "setup_logging(logging.INFO, 'console')\n"
        "async def main():\n"
        "    logging.getLogger('mcacm.test').info('held %s', 'line')\n"
        "    raise SystemExit(3)\n"
        "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3
    assert done.stderr.rstrip().endswith("mcacm.test: held line")


def test_a_held_write_that_fails_is_reported_and_the_loop_goes_on(
        installed: tuple[io.StringIO, list[logging.LogRecord]],
        capsys: pytest.CaptureFixture[str]) -> None:
    _setup("console", _Broken())

    async def run() -> str:
        logging.getLogger("mcacm.test.fast.broken").info("lost", extra={"event": "test.lost"})
        await asyncio.sleep(0)
        return "went on"

    assert asyncio.run(run()) == "went on"
    assert "OSError: disk full" in capsys.readouterr().err


_VALUES = st.one_of(st.none(), st.text(), st.integers(), st.floats(allow_nan=False),
                    st.booleans(), st.lists(st.text(), max_size=2))


@given(fields=st.dictionaries(st.sampled_from(["ts", "level", "logger", "msg", "event",
                                               "status", "peer"]) | st.text(), _VALUES),
       message=st.text(), name=st.sampled_from(["mcacm.acms", "mcacm.sip", "x\"y"]),
       created=st.floats(min_value=0, max_value=4e9))
def test_a_json_line_is_the_document_of_its_parts(fields: dict[str, Any], message: str,
                                                   name: str, created: float) -> None:
    # the line JsonFormatter writes is exactly json.dumps of the document (its "ts" in fixed
    # notation unless a field replaces it), whichever way the formatter builds it
    kept = {k: v for k, v in fields.items() if v is not None}
    doc = {"level": "info", "logger": name, "msg": message, **kept}
    if "ts" in fields:
        expected = json.dumps({"ts": round(created, 6), **doc}, default=str, ensure_ascii=False)
    else:
        expected = f'{{"ts": {created:.6f}, ' + json.dumps(doc, default=str,
                                                              ensure_ascii=False)[1:]
    formatter = JsonFormatter()
    for _ in range(2):  # (the second from what the first made once)
        assert formatter.line(name, "INFO", created, 0, message, fields) == expected
