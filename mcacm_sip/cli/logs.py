"""Logging for the ``mcacm`` commands: console lines or one JSON object per event (stderr).

Every record's structured fields (``extra=``: event, call_id, transaction_id, flow, status, peer,
method, role, transport ...) are kept: at the end of a console line as ``key=value``, as keys
in JSON.  Bodies and profiles are never logged at INFO (the SIP layer and the nodes log only
identifiers); ``-v`` (DEBUG) adds the SIP layer's parse diagnostics.

When a line is written (the handler :func:`setup_logging` installs, :class:`_Sink`): an INFO
line made while an event loop runs in the same thread is held and written with the other lines
of its loop iteration, in one write and one flush, from a callback the loop runs before it next
waits (so at most one loop iteration late, at most ``_HOLD_MAX`` lines held).  Held lines are
written, in order, before anything else the handler writes (every WARNING and above, every
record that takes ``Logger``'s path, every line made outside a loop), and on ``flush()``:
``logging.shutdown`` at interpreter exit (also after an uncaught exception), ``setStream``.
What only a process killed outright (SIGKILL, ``os._exit``, a fatal signal) loses is the held
lines of its last loop iteration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import json.encoder
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any, Literal, Protocol, TextIO

from mcacm_sip.compiled import not_built, wanted
from mcacm_sip.text import printable

_INIT = tuple(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
_STANDARD = frozenset(_INIT) | {"message", "asctime", "taskName"}
_SKIP = len(_INIT)
_RESERVED = frozenset(_INIT) | {"message", "asctime"}
"""The extra= keys ``Logger.makeRecord`` refuses (KeyError): such a call takes its path."""


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    # LogRecord.__init__ sets its attributes first and makeRecord adds the extra= fields
    # after them, so the fields start after the first _SKIP keys; what a formatter or filter
    # adds later is still left out by name.
    return {k: v for k, v in islice(vars(record).items(), _SKIP, None)
            if v is not None and k not in _STANDARD}


_JSON = json.JSONEncoder(default=str, ensure_ascii=False)
# JSONEncoder.encode makes its C encoder anew for each document: made once here, with the
# same settings (values it cannot encode as str(); no circular check, which would keep
# state between documents: a log field is never a container holding itself)
_MAKE = getattr(json.encoder, "c_make_encoder", None)
_PARTS = None if _MAKE is None else _MAKE(None, str, json.encoder.encode_basestring, None,
                                          ": ", ", ", False, False, True)


_string = json.encoder.encode_basestring


def _json(doc: dict[str, Any]) -> str:
    return "".join(_PARTS(doc, 0)) if _PARTS is not None else _JSON.encode(doc)


class _LineWriter(Protocol):
    def console(self, stamp: str, msecs: float, levelname: str, name: str, message: str,
                fields: dict[str, Any], /) -> str | None: ...

    def json(self, created: float, head: str, message: str, fields: dict[str, Any], /
             ) -> str | None: ...

    def info(self, logger: Any, msg: object, args: tuple[object, ...], extra: object, /
             ) -> object: ...

    def info_method(self, cls: type, python_info: Callable[..., None], /) -> Any: ...

    def configure_info(self, logs_globals: dict[str, Any], console: type, json: type,
                       time_module: Any, running_loop: Callable[[], object],
                       reserved: frozenset[str], /) -> None: ...


WRITER_ENV = "MCACM_LOG_LINES"
"""``python``: the formatters' pure-Python line code even when the C one is built; ``c``: the
C one (mcacm_sip/cli/_logline.c) or an ImportError; unset or ``auto``: the C one when built."""


def _json_value(value: Any) -> str:
    return "".join(_PARTS(value, 0)) if _PARTS is not None else _JSON.encode(value)


def _load_writer(choice: str) -> _LineWriter | None:
    """The compiled line writer set up with this module's functions, or None (``choice``
    ``python``, or ``auto`` and the extension not built, or no C JSON encoder to match)."""
    if not wanted(WRITER_ENV, choice):
        return None
    try:
        from . import _logline
    except ImportError as exc:
        if choice == "c":
            raise not_built(WRITER_ENV, "mcacm_sip.cli._logline") from exc
        return None
    if _PARTS is None:  # (its JSON values are the C encoder's)
        return None
    _logline.configure(printable, _string, _json_value)
    return _logline


_writer: _LineWriter | None = _load_writer(
    os.environ.get(WRITER_ENV, "auto").strip().lower() or "auto")
"""The console and JSON formatters' lines are made by this C code when it is built (the same
text: what it does not copy itself it has the Python functions above make, and what it does
not take it leaves to the formatter's Python code; tests/test_log_lines.py)."""
LINES = "python" if _writer is None else "c"
"""Which code makes a log line's text: ``c`` (mcacm_sip/cli/_logline.c) or ``python``."""


class _Lines(logging.Formatter):
    """A formatter whose line is made from a record's parts (:meth:`line`), so that
    :class:`_FastLogger` makes the same line without building a record."""

    def line(self, name: str, levelname: str, created: float, msecs: float, message: str,
             fields: Mapping[str, Any]) -> str:
        """The line of a record; ``fields`` are its extra= fields, those set to None left
        out."""
        raise NotImplementedError


_OWN_KEYS = frozenset({"ts", "level", "logger", "msg"})


class JsonFormatter(_Lines):
    def __init__(self) -> None:
        super().__init__()
        self._heads: dict[tuple[str, str], str] = {}
        """(level name, logger name) -> the document's text from "level" to "msg": """

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return self.line(record.name, record.levelname, record.created, record.msecs,
                         record.getMessage(), fields)

    def line(self, name: str, levelname: str, created: float, msecs: float, message: str,
             fields: Mapping[str, Any]) -> str:
        # the document's keys' text, made once per level and logger
        head = self._heads.get((levelname, name))
        if head is None:
            head = self._heads[(levelname, name)] = \
                _json({"level": levelname.lower(), "logger": name, "msg": ""})[1:-3]
        # the compiled writer makes the line below, or leaves it to this code (None): a field
        # named as one of the document's own keys, a key not a str ...
        if _writer is not None and type(fields) is dict \
                and (line := _writer.json(created, head, message, fields)) is not None:
            return line
        # "ts": seconds to the microsecond, written once (fixed notation; round() and the
        # float's repr each convert it again)
        if "ts" in fields:  # a field of that name replaces it, as a key of one document does
            return _json({"ts": round(created, 6), "level": levelname.lower(), "logger": name,
                          "msg": message, **{k: v for k, v in fields.items() if v is not None}})
        if _PARTS is None or not _OWN_KEYS.isdisjoint(fields):
            return f'{{"ts": {created:.6f}, ' + _json({
                "level": levelname.lower(), "logger": name, "msg": message,
                **{k: v for k, v in fields.items() if v is not None}})[1:]
        if type(fields) is not dict or None in fields.values():
            fields = {k: v for k, v in fields.items() if v is not None}
        text = f'{{"ts": {created:.6f}, ' + head + _string(message)
        return text + ", " + "".join(_PARTS(fields, 0))[1:] if fields else text + "}"


class ConsoleFormatter(_Lines):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        line = self.line(record.name, record.levelname, record.created, record.msecs,
                         record.getMessage(), _fields(record))
        if record.exc_info:
            line += "\n" + _traceback(record.exc_info)
        return line

    def line(self, name: str, levelname: str, created: float, msecs: float, message: str,
             fields: Mapping[str, Any]) -> str:
        second = int(created)
        if second != self._second:  # records share their second: its text is made once
            self._second, self._stamp = second, time.strftime("%H:%M:%S", time.localtime(second))
        # A console line shows each field once: those the message already says are left out.
        # Messages and fields carry peer text (URIs, Warning texts, reasons): escaped, so a
        # line of the log is one line and no escape sequence reaches the terminal (one escape
        # over the message and the joined fields: printable() maps each character alone, and
        # names, "=", " " and the brackets are printable ASCII, which it leaves).
        if _writer is not None and type(fields) is dict and (line := _writer.console(
                self._stamp, msecs, levelname, name, message, fields)) is not None:
            return line
        shown = []
        for k, v in fields.items():
            if v is not None and k != "event":
                text = v if type(v) is str else str(v)
                if text not in message:
                    shown.append(f"{k}={text}")
        extra = " ".join(shown)
        return f"{self._stamp}.{int(msecs):03d} {levelname[0]} {name}: " \
            + printable(f"{message}  [{extra}]" if extra else message)


_OURS = ("  File ", "Traceback ", "\nDuring handling", "\nThe above exception")


def _traceback(exc_info: Any) -> str:
    """A traceback whose layout and source lines are kept and whose exception messages (they
    may quote a peer) are escaped, each on its one line."""
    out = []
    for chunk in traceback.TracebackException(*exc_info[:3]).format():
        out.append(chunk if chunk.startswith(_OURS) else printable(chunk.rstrip("\n")) + "\n")
    return "".join(out).rstrip("\n")


class _Prompting(Protocol):
    prompt: str | None
    stdout: TextIO


class PromptKeepingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A log line written while a question waits on the same terminal goes above it: the
    prompt line is cleared (CR, erase line), the record written, and the prompt re-drawn, so
    INFO lines never leave the question buried mid-line."""

    def __init__(self, asker: _Prompting, stream: TextIO) -> None:
        super().__init__(stream)
        self.asker = asker

    def emit(self, record: logging.LogRecord) -> None:
        prompt = self.asker.prompt
        if prompt is None:
            super().emit(record)
            return
        self.stream.write("\r\x1b[K")
        super().emit(record)
        self.asker.stdout.write(prompt)
        self.asker.stdout.flush()


def keep_prompt_readable(asker: _Prompting) -> None:
    """Replace the root logger's stderr handler by a :class:`PromptKeepingHandler`."""
    root = logging.getLogger()
    old = root.handlers[0] if root.handlers else None
    handler = PromptKeepingHandler(asker, sys.stderr)
    if old is not None:
        _write_held(old)
        handler.setFormatter(old.formatter)
    root.handlers[:] = [handler]


_HOLD_MAX = 256
"""The most lines held (module docstring): a loop iteration logging more writes them then."""
_running_loop = asyncio.events._get_running_loop


class _Sink(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup_logging` installs: a StreamHandler that also writes the lines
    :class:`_FastLogger` makes without a record, those made in a running event loop held
    until the loop's next iteration (module docstring)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.held: list[str] = []
        """Lines (without their terminator, added when written) waiting for the write of
        their loop iteration."""
        self.due: asyncio.AbstractEventLoop | None = None
        """The loop a write of the held lines is queued on (None: none queued)."""

    def put(self, line: str) -> None:
        """Write one line (its terminator added), now or, in a running loop, with the others
        of this loop iteration.  A stream that fails raises (the caller reports it)."""
        self.held.append(line)
        loop = _running_loop()
        if loop is None or len(self.held) >= _HOLD_MAX:
            self.flush()
        elif self.due is not loop:  # none queued on this loop (or queued on one now gone)
            self.due = loop
            loop.call_soon(self._write_due)

    def _write_due(self) -> None:
        self.due = None
        try:
            self.flush()
        except RecursionError:  # as StreamHandler.emit
            raise
        except Exception:  # as a record's failed write: said on stderr, the loop goes on
            self.handleError(logging.makeLogRecord({"msg": "(held log lines)"}))

    def flush(self) -> None:
        """Write the held lines, then flush the stream."""
        self.acquire()
        try:
            held = self.held
            if held:
                # lines another thread appends meanwhile stay for the next write
                count = len(held)
                term = self.terminator
                text = term.join(held[:count]) + term
                del held[:count]
                self.stream.write(text)
            super().flush()
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        if self.held:  # (under the lock: Handler.handle holds it)
            try:
                self.flush()
            except RecursionError:
                raise
            except Exception:
                self.handleError(record)
                return
        super().emit(record)


def _write_held(handler: logging.Handler) -> None:
    """The lines ``handler`` holds, written before it is replaced (a stream closed meanwhile
    loses them, as it would have lost their records)."""
    if isinstance(handler, _Sink) and handler.held:
        with contextlib.suppress(ValueError, OSError):
            handler.flush()


_sink: _Sink | None = None
"""The handler :func:`setup_logging` put on the root logger (None: not set up)."""


class _FastLogger(logging.Logger):
    """A Logger whose INFO records, when they would reach only the handler
    :func:`setup_logging` installed, are written by it without a ``LogRecord`` (the
    caller lookup, the record's two dozen attributes and the five calls from ``Logger._log``
    to ``Handler.emit`` are most of a record's cost): the same line, from the same
    formatter code, with the same fields.  Anything else -- another level, a filter, another
    handler (pytest's, :class:`PromptKeepingHandler`), ``exc_info``, an extra= key a record
    refuses, a message that does not format -- takes ``Logger``'s own path."""

    def info(self, msg: object, *args: object, exc_info: Any = None, stack_info: bool = False,
             stacklevel: int = 1, extra: Mapping[str, object] | None = None) -> None:
        # (Logger.info's keywords named: no keyword dict to make and search per call)
        if _info is not None and exc_info is None and stack_info is False:
            # the common call by the compiled code (_logline.info): the same checks, line and
            # holding as _general_info; True: done, a line: to put(), None: _general_info decides
            done = _info(self, msg, args, extra)
            if done is True:
                return
            if type(done) is str and (sink := _sink) is not None:
                self._put(sink, done, msg, args, stacklevel, extra)
                return
        self._general_info(msg, args, exc_info, stack_info, stacklevel + 1, extra)

    def _general_info(self, msg: object, args: tuple[object, ...], exc_info: Any,
                      stack_info: bool, stacklevel: int,
                      extra: Mapping[str, object] | None) -> None:
        """:meth:`info` for the calls the compiled code leaves: ``stacklevel`` counts this
        method's frame (the compiled method, which has none, gives 1)."""
        try:  # isEnabledFor's cache (cleared by setLevel, logging.disable ...), without a call
            if not self._cache[logging.INFO]:  # type: ignore[attr-defined]
                return
        except KeyError:
            if not self.isEnabledFor(logging.INFO):
                return
        sink = _sink
        if sink is None or exc_info or stack_info or self.disabled or self.filters \
                or sink.filters or sink.level > logging.INFO \
                or not isinstance(formatter := sink.formatter, _Lines) \
                or (extra is not None and not _RESERVED.isdisjoint(extra)) \
                or (len(args) == 1 and isinstance(args[0], Mapping) and args[0]):
            self._record(msg, args, exc_info, stack_info, stacklevel, extra)
            return
        # would a record of ours be handled by the sink alone (Logger.handle, callHandlers)?
        logger: logging.Logger | None = self
        while logger is not None and not logger.handlers and logger.propagate:
            logger = logger.parent
        if logger is None or len(handlers := logger.handlers) != 1 or handlers[0] is not sink:
            self._record(msg, args, exc_info, stack_info, stacklevel, extra)
            return
        created = time.time()
        try:
            message = msg if isinstance(msg, str) else str(msg)
            if args:
                message = message % args
            line = formatter.line(
                self.name, "INFO", created, int((created - int(created)) * 1000), message,
                extra or {})
        except Exception:  # a message that does not format: Logger's path reports it
            self._record(msg, args, exc_info, stack_info, stacklevel, extra)
            return
        held = sink.held
        if sink.due is not None and sink.due is _running_loop() and len(held) < _HOLD_MAX - 1:
            held.append(line)  # (Sink.put's common case, without the call)
            return
        self._put(sink, line, msg, args, stacklevel, extra)

    def _put(self, sink: _Sink, line: str, msg: object, args: tuple[object, ...],
             stacklevel: int, extra: Mapping[str, object] | None) -> None:
        """``line`` to the sink; a stream that fails: Logger's path reports it (handleError),
        as StreamHandler.emit, which lets a RecursionError through."""
        try:
            sink.put(line)
        except RecursionError:
            raise
        except Exception:
            self._record(msg, args, None, False, stacklevel + 1, extra)

    def _record(self, msg: object, args: tuple[object, ...], exc_info: Any, stack_info: bool,
                stacklevel: int, extra: Mapping[str, object] | None) -> None:
        """Logger's own path: a LogRecord whose caller (findCaller, when
        ``logging._srcfile`` is set again) is :meth:`info`'s, not this module's."""
        if self.isEnabledFor(logging.INFO):
            self._log(logging.INFO, msg, args, exc_info=exc_info, extra=extra,
                      stack_info=stack_info, stacklevel=stacklevel + 2)


_python_info = _FastLogger.info
"""The Python method (the compiled one passes on the calls it does not take)."""
_info: Callable[[Any, object, tuple[object, ...], object], object] | None = None
"""``_FastLogger.info``'s common call made by the compiled code (``_logline.info``), when the
line writer is built: the same checks, in the same order, the same line and the same holding
as the Python code, which makes every call the compiled code leaves (tests/test_log_lines.py,
tests/test_log_format.py over both)."""
if _writer is not None:
    _writer.configure_info(globals(), ConsoleFormatter, JsonFormatter, time, _running_loop,
                           _RESERVED)
    _info = _writer.info
    # the common call without the Python method's frame (_logline.c, info_call): the same
    # answers (tests/test_log_lines.py, test_log_format.py run over both)
    _FastLogger.info = _writer.info_method(  # type: ignore[method-assign]
        _FastLogger, _python_info)


def setup_logging(level: int, fmt: Literal["console", "json"]) -> None:
    # Neither format shows where a call was made from: skip the caller lookup of every record
    # (the logging HOWTO's "Optimization" section: set logging._srcfile to None)
    logging._srcfile = None
    # nor the thread, process and multiprocessing names of each record (same section)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = _Sink(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        _write_held(old)  # (a previous setup's)
    root.handlers[:] = [handler]
    root.setLevel(level)
    # INFO records that reach only this handler skip the LogRecord (_FastLogger): for the
    # loggers made from now on, and for those the imports already made
    global _sink
    _sink = handler
    logging.setLoggerClass(_FastLogger)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if type(logger) is logging.Logger:
            logger.__class__ = _FastLogger
