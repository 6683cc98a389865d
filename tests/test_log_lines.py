"""The compiled line writer (mcacm_sip/cli/_logline.c) writes the lines the formatters' Python
code writes, byte for byte, for any message and fields: escapes, non-ASCII, quotes, values of
any type, fields the message already says; and the procedure.step record's plain-str values are
the str() of the enums they stand for."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_log_format import KeptRecords
from tools import require_compiled

from mcacm_sip.cli import logs
from mcacm_sip.cli.logs import ConsoleFormatter, JsonFormatter, setup_logging
from mcacm_sip.core.events import Failure
from mcacm_sip.core.state import Role, Trigger, TxState


class _Odd(StrEnum):
    ODD = "o\x1b[2J\u202e"


_PEER_TEXT = st.sampled_from(["partner", "hot-0", "sip:acms@primary.example", "200", "", " ",
                              "a\\b", 'q"uote', "é", "\u202e", "\x1b[31m", "line\nbreak",
                              "\U0001f600", "\x7f", "\ud800"])
_TEXTS = _PEER_TEXT | st.text()
_VALUES = st.one_of(st.none(), _TEXTS, st.integers(), st.integers(min_value=2**63),
                    st.floats(), st.booleans(), st.lists(_TEXTS, max_size=2),
                    st.sampled_from([Role.PARTNER, Failure.TIMEOUT, _Odd.ODD]))
_FIELDS = st.dictionaries(st.sampled_from(["event", "transaction_id", "peer", "status", "clause",
                                           "ts", "level", "logger", "msg",
                                           "call_id"]) | _TEXTS, _VALUES, max_size=12)


@pytest.fixture(scope="module")
def writer() -> Iterator[logs._LineWriter]:
    """The compiled writer; skipped when not built (no C compiler or Python headers: the
    package runs in pure Python), failed then under MCACM_REQUIRE_INTEROP=1 (CI)."""
    yield require_compiled(logs._load_writer, "the compiled log line writer")


def _both(writer: logs._LineWriter, make: Any) -> tuple[str, str]:
    """The line ``make()`` gives with the compiled writer, and with the Python code."""
    before = logs._writer
    try:
        logs._writer = writer
        fast = make()
        logs._writer = None
        slow = make()
    finally:
        logs._writer = before
    return fast, slow


def _message(data: st.DataObject, fields: dict[str, Any]) -> str:
    """A message that may hold some fields' text (the console line then leaves them out)."""
    said = [str(v) for v in fields.values() if v is not None]
    parts = data.draw(st.lists(st.sampled_from(said) | _TEXTS if said else _TEXTS, max_size=4))
    return " ".join(parts)


@given(data=st.data(), fields=_FIELDS, name=_TEXTS | st.just("mcacm.acms"),
       level=st.sampled_from(["INFO", "WARNING", "Ünusual", "x"]),
       created=st.floats(min_value=0, max_value=4e9),
       msecs=st.integers(0, 999) | st.floats(0, 999.999) | st.sampled_from([-1, 1000, 1.5e9]))
@example(data=None, fields={"event": "procedure.step", "transaction_id": "hot-0",
                            "role": "partner", "peer": "sip:acms@primary.example",
                            "origin": "sip:acms@primary.example", "leg_id": "hot-0",
                            "from_state": "new", "to_state": "received", "trigger": "request",
                            "clause": "10.17.7.2 step 4: stored"},
         name="mcacm.acms", level="INFO", created=1796455914.705366, msecs=705)
def test_the_compiled_console_line_is_the_python_line(
        writer: logs._LineWriter, data: st.DataObject | None, fields: dict[str, Any], name: str,
        level: str, created: float, msecs: float) -> None:
    message = ("partner hot-0 from sip:acms@primary.example: new -> received (request)"
               if data is None else _message(data, fields))
    formatter = ConsoleFormatter()

    def make() -> str:
        return formatter.line(name, level, created, msecs, message, fields)

    fast, slow = _both(writer, make)
    assert fast == slow
    tail = fast.split(f" {name}: ", 1)[1] if f" {name}: " in fast else fast
    assert "\n" not in tail and "\x1b" not in tail  # (printable()'s, kept)


@given(data=st.data(), fields=_FIELDS, name=_TEXTS | st.just("mcacm.acms"),
       created=st.floats(min_value=0, max_value=4e9) | st.integers(0, 2**40))
def test_the_compiled_json_line_is_the_python_line(
        writer: logs._LineWriter, data: st.DataObject, fields: dict[str, Any], name: str,
        created: float) -> None:
    message = _message(data, fields)
    formatter = JsonFormatter()
    fast, slow = _both(writer, lambda: formatter.line(name, "INFO", created, 0, message, fields))
    assert fast == slow
    doc = json.loads(fast)
    assert doc == {"ts": doc["ts"], "level": "info", "logger": name, "msg": message,
                   **{k: doc[k] for k, v in fields.items() if v is not None}}
    if not {"ts", "level", "logger", "msg"} & set(fields):
        assert doc["msg"] == message and doc["logger"] == name


@pytest.mark.parametrize("fmt", [ConsoleFormatter, JsonFormatter])
def test_a_record_formats_alike_over_both(writer: logs._LineWriter,
                                          fmt: type[logging.Formatter]) -> None:
    log = logging.getLogger("mcacm.test.lines")
    record = log.makeRecord(log.name, logging.INFO, "(unknown file)", 0, "%s %s to %s: %s",
                            ("process-indication", "t-1", "sip:x\x1b[31m", 200), None,
                            extra={"event": "acm.sent", "call_id": "c-1@h", "status": 200,
                                   "failure": Failure.TIMEOUT, "reason": "bad\nFAKE"})
    formatter = fmt()
    fast, slow = _both(writer, lambda: formatter.format(record))
    assert fast == slow


def test_a_key_that_is_not_a_str_is_left_to_the_python_code(writer: logs._LineWriter) -> None:
    fields: dict[Any, Any] = {"event": "e", 7: "seven", None: 1}
    assert writer.console("00:00:00", 1, "INFO", "n", "m", fields) is None
    assert writer.json(1.0, '"level": "info", "logger": "n", "msg": ', "m", fields) is None
    assert ConsoleFormatter().line("n", "INFO", 1.0, 1, "m", fields).endswith(
        "m  [7=seven None=1]")


@pytest.mark.parametrize("enum", [Role, TxState, Trigger])
def test_a_step_logs_the_str_of_each_enum(enum: type[StrEnum]) -> None:
    # records.py writes role, states and trigger as their _value_: each is the member's str()
    for member in enum:
        assert member._value_ == str(member) and type(member._value_) is str


@pytest.fixture()
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    try:
        yield
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def test_an_info_line_goes_where_a_record_would(root_restored: None) -> None:
    # the fast path (no LogRecord) is taken only when the sink alone would handle the record
    setup_logging(logging.INFO, "console")  # (here: pytest's handlers of the test replaced)
    sink = logging.getLogger().handlers[0]
    assert isinstance(sink, logging.StreamHandler)
    sink.setStream(sink_buffer := io.StringIO())
    parent = logging.getLogger("mcacm.test.route")
    child = logging.getLogger("mcacm.test.route.child")
    kept = KeptRecords()
    parent.addHandler(kept)  # a handler between ours and the root: it sees the record
    try:
        child.info("one %s", "x", extra={"event": "test.route"})
        assert [r.getMessage() for r in kept.records] == ["one x"]
        parent.propagate = False  # the root's sink no longer reached
        child.info("two", extra={"event": "test.route"})
        assert [r.getMessage() for r in kept.records] == ["one x", "two"]
        parent.removeHandler(kept)
        child.info("three")  # no handler on the way, propagation stops: written nowhere
        parent.propagate = True
        child.info("four")
        assert kept.records[-1].getMessage() == "two"
    finally:
        parent.removeHandler(kept)
        parent.propagate = True
    assert [line.split(": ", 1)[1] for line in sink_buffer.getvalue().splitlines()] == [
        "one x", "four"]


# ------------------------------------------------------------------ _FastLogger.info in C

class _OwnConsole(ConsoleFormatter):
    """A user's subclass: its line() may differ, so the compiled path leaves it."""

    def line(self, *args: Any) -> str:
        return "own " + super().line(*args)


_SETTINGS = ["plain", "in-loop", "filter", "handler-between", "no-propagate", "disabled",
             "sink-warning", "root-warning", "subclass", "sink-filter", "new-second"]
_ARG = st.one_of(_TEXTS, st.integers(), st.integers(min_value=2**63), st.floats(),
                 st.booleans(), st.none(), st.sampled_from([Role.PARTNER, Failure.TIMEOUT]),
                 st.dictionaries(st.sampled_from(["who", "n"]), _TEXTS | st.integers(),
                                 max_size=2))
_MESSAGES = st.sampled_from(["%s %s to %s: %s", "%s %s from %s: %s -> %s (%s)", "%d items",
                             "%(who)s said", "plain", "%s", "100%", "%.2f"]) | _TEXTS
_EXTRAS = st.none() | _FIELDS | st.sampled_from([{"name": "clash"}, {"msg": "m"}, {}])


def _run(fmt: str, setting: str, msg: str, args: list[Any], extra: dict[str, Any] | None,
         compiled: bool) -> tuple[str, str, int]:
    """What one INFO call writes (after a first line), raises, reports on stderr and builds
    (records), with the compiled path on or off, the clock fixed."""
    import asyncio
    import time as time_module
    root = logging.getLogger()
    saved = (root.level, root.handlers[:], logging.getLogRecordFactory(), logs._info,
             time_module.time)
    built: list[logging.LogRecord] = []

    def counting(*a: Any, **k: Any) -> logging.LogRecord:
        built.append(record := saved[2](*a, **k))
        return record

    name = f"mcacm.test.info.{setting}"
    log, parent = logging.getLogger(name), logging.getLogger("mcacm.test.info")
    kept = KeptRecords()
    buffer = io.StringIO()
    try:
        logs._info = saved[3] if compiled else None
        setup_logging(logging.INFO, "json" if fmt == "json" else "console")
        sink = root.handlers[0]
        assert isinstance(sink, logs._Sink)
        sink.setStream(buffer)
        if setting == "subclass":
            sink.setFormatter(_OwnConsole())
        logging.setLogRecordFactory(counting)
        clock = iter([1796486774.886928, 1796486775.25])
        first = next(clock)
        time_module.time = lambda: first
        log.info("first %s", "line", extra={"event": "test.first"})
        if setting == "new-second":
            first = next(clock)
        match setting:
            case "filter":
                log.addFilter(lambda record: True)
            case "handler-between":
                parent.addHandler(kept)
            case "no-propagate":
                parent.propagate = False
            case "disabled":
                log.disabled = True
            case "sink-warning":
                sink.setLevel(logging.WARNING)
            case "root-warning":
                root.setLevel(logging.WARNING)
            case "sink-filter":
                sink.addFilter(lambda record: True)
        raised = ""

        def call() -> None:
            nonlocal raised
            try:
                log.info(msg, *args, extra=extra)
            except Exception as exc:  # (KeyError: an extra= key a record refuses)
                raised = repr(exc)

        with contextlib.redirect_stderr(err := io.StringIO()):
            if setting == "in-loop":
                async def inside() -> None:
                    call()

                asyncio.run(inside())
            else:
                call()
        sink.flush()
        return buffer.getvalue() + repr([(r.msg, r.args) for r in kept.records]), \
            f"{raised} {err.getvalue().count('--- Logging error ---')}", len(built)
    finally:
        for logger in (log, parent):
            logger.filters.clear()
            logger.handlers.clear()
            logger.disabled, logger.propagate = False, True
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.setLogRecordFactory(saved[2])
        logs._info = saved[3]
        time_module.time = saved[4]


@given(fmt=st.sampled_from(["console", "json"]), setting=st.sampled_from(_SETTINGS),
       msg=_MESSAGES, args=st.lists(_ARG, max_size=6), extra=_EXTRAS)
@example(fmt="console", setting="plain", msg="%s %s from %s: %s -> %s (%s)",
         args=["partner", "hot-0", "sip:acms@primary.example", "new", "received", "request"],
         extra={"event": "procedure.step", "transaction_id": "hot-0", "role": "partner",
                "clause": "10.17.7.2 step 4: stored"})
@example(fmt="console", setting="in-loop", msg="x", args=[], extra={"name": "clash"})
@example(fmt="json", setting="plain", msg="%s", args=[{"who": "peer"}], extra=None)
def test_an_info_call_does_over_the_compiled_path_what_the_python_code_does(
        writer: logs._LineWriter, fmt: str, setting: str, msg: str, args: list[Any],
        extra: dict[str, Any] | None) -> None:
    # the same lines (byte for byte, the clock fixed), the same records for other handlers
    # and filters, the same exception (an extra= key a record refuses) and the same
    # "--- Logging error ---" path, whatever the configuration the call meets
    if logs._info is None:
        pytest.skip("the compiled INFO path is off (MCACM_LOG_LINES=python)")
    assert _run(fmt, setting, msg, args, extra, True) == _run(fmt, setting, msg, args, extra,
                                                              False)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_the_common_call_takes_the_compiled_path(writer: logs._LineWriter,
                                                 root_restored: None, fmt: str) -> None:
    # (the property above holds trivially if the compiled path never takes a call)
    import asyncio
    if logs._info is None:
        pytest.skip("the compiled INFO path is off (MCACM_LOG_LINES=python)")
    setup_logging(logging.INFO, "json" if fmt == "json" else "console")
    sink = logging.getLogger().handlers[0]
    assert isinstance(sink, logs._Sink)
    sink.setStream(io.StringIO())
    log = logging.getLogger("mcacm.test.info.taken")
    log.info("warm %s", "up")  # (the console's time text of this second, the JSON head)
    line = logs._info(log, "%s %s", ("a", 1), {"event": "test.taken"})
    assert isinstance(line, str) and "a 1" in line  # outside a loop: the caller writes it

    async def inside() -> object:
        log.info("queued")  # (a write queued on this loop)
        assert logs._info is not None
        return logs._info(log, "%s %s", ("a", 1), {"event": "test.taken"})

    assert asyncio.run(inside()) is True  # held
    assert sink.held == [] and "a 1" in sink.stream.getvalue()


@given(fmt=st.sampled_from(["console", "json"]),
       texts=st.lists(st.sampled_from(["", " ", "%%", "a", "é", "\U0001f600", "%", "%d",
                                       "%%s"]) | _TEXTS, max_size=7),
       args=st.lists(_TEXTS | st.integers() | st.integers(min_value=2**63), max_size=6),
       extra=st.sampled_from([0, 0, 0, -1, 1]),
       directives=st.lists(st.sampled_from(["%s", "%d"]), min_size=8, max_size=8))
@example(fmt="console", texts=["100%% ", ""], args=["done"], extra=0, directives=["%s"] * 8)
@example(fmt="json", texts=["\U0001f600 ", " to ", ": %%"], args=["é", 200], extra=0,
         directives=["%s"] * 8)
@example(fmt="console", texts=["", " ", " from ", ": ", ""], args=["a", "b", "c", 200],
         extra=0, directives=["%s", "%s", "%s", "%d"] * 2)  # (the acm.received line)
@example(fmt="console", texts=["", ""], args=[-7], extra=0, directives=["%d"] * 8)
@example(fmt="console", texts=["to ", " and ", ""], args=["é!", "\u00fc\u00fc"], extra=0,
         directives=["%s"] * 8)  # (Latin-1 pieces: a 1-byte line that is not ASCII)
@example(fmt="console", texts=["", ""], args=["7"], extra=0, directives=["%d"] * 8)
def test_a_message_of_plain_directives_formats_as_str_does(
        writer: logs._LineWriter, fmt: str, texts: list[str], args: list[Any],
        extra: int, directives: list[str]) -> None:
    # the compiled path joins a message of "%s" and "%d" (and "%%") itself: the text str's
    # % makes, or the same report when that fails (too many or too few arguments, a lone %,
    # %d of a str)
    if logs._info is None:
        pytest.skip("the compiled INFO path is off (MCACM_LOG_LINES=python)")
    pieces = (texts + [""] * 8)[:max(1, len(args) + 1 + extra)]
    msg = pieces[0] + "".join(d + p for d, p in zip(directives, pieces[1:], strict=False))
    assert _run(fmt, "plain", msg, args, None, True) == _run(fmt, "plain", msg, args, None,
                                                             False)


# ---------------------------------------------------------- _FastLogger.info, the compiled method

def _calls_of(log: logging.Logger) -> list[Any]:
    """Calls of every shape: the compiled method's own and those it passes on."""
    return [
        lambda: log.info("a %s", "b"),
        lambda: log.info("a %s", "b", extra={"event": "test.call"}),
        lambda: log.info(msg="kw"),
        lambda: log.info(),  # type: ignore[call-arg]
        lambda: log.info("x", extra=None),
        lambda: log.info("x", stacklevel=2),
        lambda: log.info("x", exc_info=True),
        lambda: log.info("x", stack_info=False, extra={"event": "test.kw"}),
        lambda: log.info("x", nope=1),  # type: ignore[call-arg]
        lambda: log.info("x", extra={"message": "refused"}),
        lambda: log.info("%d", "not a number"),
    ]


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk full")


@pytest.mark.parametrize("setting", ["plain", "disabled", "root-warning", "handler", "broken"])
def test_the_compiled_info_method_answers_as_the_python_one(
        writer: logs._LineWriter, root_restored: None, setting: str) -> None:
    # every call of _FastLogger.info, over the compiled method and over the Python one (with
    # _info off): the same answers, exceptions, lines, records and callers of the records
    if not isinstance(logs._FastLogger.__dict__["info"], type(str.join)):
        pytest.skip("the compiled method is not installed (MCACM_LOG_LINES=python)")

    def run(compiled: bool) -> list[str]:
        saved = logs._info, logs._FastLogger.__dict__["info"]
        setup_logging(logging.INFO, "console")
        sink = logging.getLogger().handlers[0]
        assert isinstance(sink, logs._Sink)
        sink.setStream(buffer := io.StringIO())
        if setting == "broken":  # (a line the stream refuses: a record, its caller looked up)
            sink.setStream(_Broken())
        log = logging.getLogger("mcacm.test.methods")
        kept = KeptRecords()
        made: list[tuple[str, int]] = []

        def factory(*a: Any, **k: Any) -> logging.LogRecord:
            record = saved_factory(*a, **k)
            made.append((record.funcName, record.lineno))
            return record

        saved_factory, saved_srcfile = logging.getLogRecordFactory(), logging._srcfile
        logging.setLogRecordFactory(factory)
        logging._srcfile = os.path.normcase(logging.addLevelName.__code__.co_filename)
        log.disabled = setting == "disabled"
        if setting == "root-warning":
            logging.getLogger().setLevel(logging.WARNING)
        if setting == "handler":
            log.addHandler(kept)
        answers = []
        try:
            if not compiled:
                logs._info = None
                logs._FastLogger.info = logs._python_info  # type: ignore[method-assign]
            for call in _calls_of(log):
                with contextlib.redirect_stderr(io.StringIO()) as err:
                    try:
                        answers.append(repr(call()))
                    except Exception as exc:
                        answers.append(type(exc).__name__)
                answers.append(str(err.getvalue().count("--- Logging error ---")))
        finally:
            logs._info = saved[0]
            logs._FastLogger.info = saved[1]  # type: ignore[method-assign]
            log.disabled = False
            log.handlers.clear()
            logging.setLogRecordFactory(saved_factory)
            logging._srcfile = saved_srcfile
        with contextlib.suppress(OSError):
            sink.flush()
        lines = [line.split(" ", 1)[1] for line in buffer.getvalue().splitlines()]
        return answers + lines + [repr((r.msg, r.args, r.levelno)) for r in kept.records] \
            + [repr(made)]

    assert run(True) == run(False)
