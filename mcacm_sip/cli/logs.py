"""Logging for the ``mcacm`` commands: console lines or one JSON object per event (stderr).

Every record's structured fields (``extra=``: event, call_id, transaction_id, flow, status, peer,
method, role, transport ...) are kept: at the end of a console line as ``key=value``, as keys
in JSON.  Bodies and profiles are never logged at INFO (the SIP layer and the nodes log only
identifiers); ``-v`` (DEBUG) adds the SIP layer's parse diagnostics.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from itertools import islice
from typing import Any, Literal, Protocol, TextIO

from mcacm_sip.text import printable

_INIT = tuple(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
_STANDARD = frozenset(_INIT) | {"message", "asctime", "taskName"}
_SKIP = len(_INIT)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    # LogRecord.__init__ sets its attributes first and makeRecord adds the extra= fields
    # after them, so the fields start after the first _SKIP keys; what a formatter or filter
    # adds later is still left out by name.
    return {k: v for k, v in islice(vars(record).items(), _SKIP, None)
            if v is not None and k not in _STANDARD}


_JSON = json.JSONEncoder(default=str, ensure_ascii=False)  # one encoder, not one per record


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage(), **_fields(record)}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _JSON.encode(doc)


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # records share their second: its text is made once
            self._second, self._stamp = second, time.strftime("%H:%M:%S", time.localtime(second))
        stamp = self._stamp
        message = record.getMessage()
        # A console line shows each field once: those the message already says are left out.
        # Messages and fields carry peer text (URIs, Warning texts, reasons): escaped, so a
        # line of the log is one line and no escape sequence reaches the terminal (one escape
        # over the joined fields: names, "=" and " " are printable ASCII, which it leaves).
        extra = printable(" ".join([f"{k}={text}" for k, v in _fields(record).items()
                                    if k != "event" and (text := str(v)) not in message]))
        message = printable(message)
        line = f"{stamp}.{int(record.msecs):03d} {record.levelname[0]} {record.name}: " \
               f"{message}" + (f"  [{extra}]" if extra else "")
        if record.exc_info:
            line += "\n" + _traceback(record.exc_info)
        return line


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
        handler.setFormatter(old.formatter)
    root.handlers[:] = [handler]


def setup_logging(level: int, fmt: Literal["console", "json"]) -> None:
    # Neither format shows where a call was made from: skip the caller lookup of every record
    # (the logging HOWTO's "Optimization" section: set logging._srcfile to None)
    logging._srcfile = None
    # nor the thread, process and multiprocessing names of each record (same section)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
