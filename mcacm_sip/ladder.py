"""Ladder diagrams of SIP exchanges, as plain text for a terminal.

Input is a sequence of :class:`LadderEvent` (one SIP message seen on the wire: when, from where, to
where, the raw bytes), from a live trace of our endpoints or from a pcap of any stack.  Each
participant (an address) gets a column; each message is an arrow labelled with its request line or
status, and for a MESSAGE carrying an ACM document, the flow's name (the XML root element).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mcacm_sip.sip.headers import Expires, InvalidHeader, SubscriptionState
from mcacm_sip.sip.message import read_raw
from mcacm_sip.text import printable

_ROOT = re.compile(rb"<(?![?!])(?:[A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")
_COLUMN = 26


@dataclass(frozen=True, slots=True)
class LadderEvent:
    """One SIP message on the wire."""

    time: float
    """Seconds (any origin: the ladder shows offsets from the first event)."""
    src: str
    """Sender address, e.g. ``udp:127.0.0.1:5070``."""
    dst: str
    """Receiver address."""
    data: bytes
    """The raw SIP message."""


def describe(data: bytes) -> str:
    """A one-line label, e.g. ``MESSAGE profile-update-request`` or ``200 OK (MESSAGE)``.

    Any stack's capture is drawn, so the message is read leniently (:func:`read_raw`): a value
    :mod:`mcacm_sip.sip.headers` cannot read is shown as it came."""
    msg = read_raw(data)
    first, body = msg.start, msg.body
    if first.startswith("SIP/"):
        parts = first.split(" ", 2)
        status = " ".join(parts[1:]) if len(parts) > 1 else first
        method = (msg.header("cseq") or "").rpartition(" ")[2]
        return f"{status} ({method})" if method else status
    method = first.split(" ", 1)[0]
    if method == "MESSAGE" and body:
        root = _ROOT.search(body[:512])
        if root:
            return f"MESSAGE {root.group(1).decode('ascii', 'replace')}"
        return "MESSAGE"
    if method in ("SUBSCRIBE", "NOTIFY", "PUBLISH"):
        detail = msg.header("event") or ""
        state = msg.header("subscription-state")
        if method == "NOTIFY" and state is not None:
            detail = f"{detail} {_read(SubscriptionState, state, 'state')}".strip()
        expires = msg.header("expires")
        if method != "NOTIFY" and expires is not None:
            detail = f"{detail} expires={_read(Expires, expires, 'seconds')}".strip()
        return f"{method} {detail}".strip()
    expires = msg.header("expires")
    if method == "REGISTER" and expires is not None:
        return f"REGISTER expires={_read(Expires, expires, 'seconds')}"
    return method


def _read(header: type[Expires | SubscriptionState], value: str, part: str) -> str:
    """One part of a header value, or the value as it came when it cannot be read."""
    try:
        return str(getattr(header.parse(value), part))
    except InvalidHeader:
        return value.split(";")[0].strip()


def render(
    events: Iterable[LadderEvent],
    names: Mapping[str, str] | None = None,
    *,
    title: str | None = None,
) -> str:
    """Draw the ladder.  ``names`` maps addresses to participant names (columns keep the order in
    which ``names`` lists them, then the order of first appearance)."""
    events = sorted(events, key=lambda e: e.time)
    names = dict(names or {})
    columns: list[str] = [address for address in names]
    for event in events:
        for address in (event.src, event.dst):
            if address not in columns:
                columns.append(address)
    index = {address: i for i, address in enumerate(columns)}
    labels = [printable(names.get(address, address)) for address in columns]
    width = max([_COLUMN, *(len(label) + 2 for label in labels)])
    pad = 10  # the time column
    bar = "|".center(width).index("|")

    def row(cells: dict[int, str]) -> str:
        line = [" " * pad]
        for i in range(len(columns)):
            line.append(cells.get(i, "|".center(width)))
        return "".join(line).rstrip()

    out: list[str] = []
    if title:
        out.append(title)
    out.append(" " * pad + "".join(label[: width - 1].center(width) for label in labels).rstrip())
    start = events[0].time if events else 0.0
    for event in events:
        a, b = index[event.src], index[event.dst]
        left, right = min(a, b), max(a, b)
        span = (right - left) * width - 1
        label = printable(describe(event.data))  # peer text: no escape reaches the terminal
        if len(label) > span - 2 and label.startswith("MESSAGE "):
            label = label[len("MESSAGE "):]  # the ACM flow name says more than the method
        # A label longer than its arrow runs on over the next columns rather than being cut:
        # a ladder is read for the flow names.
        arrow = (
            "-" * (span - 1) + ">" if a < b else "<" + "-" * (span - 1)
        ) if a != b else "(self)"
        text_row = row({})
        arrow_row = row({})
        after_bar = pad + left * width + bar + 1
        text_row = _overlay(text_row, after_bar + max((span - len(label)) // 2, 0), label)
        arrow_row = _overlay(arrow_row, after_bar, arrow)
        out.append(text_row)
        out.append(f"{event.time - start:+9.3f}"[:pad].ljust(pad) + arrow_row[pad:])
    return "\n".join(line.rstrip() for line in out) + "\n"


def _overlay(line: str, at: int, text: str) -> str:
    if len(line) < at + len(text):
        line = line.ljust(at + len(text))
    return line[:at] + text + line[at + len(text):]
