"""Rules for text from the wire, used everywhere such text is read, written or shown.

- :func:`ascii_int`: numbers in SIP are ASCII ``DIGIT`` (RFC 3261 25.1, RFC 5234 B.1).
  Python's ``str.isdigit()`` and ``int()`` also take other scripts' digits (U+0661
  ARABIC-INDIC DIGIT ONE, U+FF11 FULLWIDTH DIGIT ONE) and ``isdigit()`` even takes U+00B2
  SUPERSCRIPT TWO, which ``int()`` then refuses: neither may see wire text unguarded.
- :func:`printable`: text a peer wrote (``additional-info``, URIs, reasons, SIP lines) made safe
  to show a person: every control character, line break, escape (ANSI ``ESC [``) and
  bidirectional or invisible formatting character is written visibly escaped (``\\n``,
  ``\\x1b``, ``\\u202e``), so a peer cannot draw lines on a terminal (a forged prompt) or hide
  text.  A backslash is doubled, so an escape a peer typed cannot pass for one of ours.
- :func:`header_text`: text (ours or the peer's) made safe to write into a header line
  (RFC 3261 25.1); ``mcacm_sip.sip.headers.Warning`` quotes it into a Warning (20.43).
"""

from __future__ import annotations

import re
import unicodedata

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control, format (bidi overrides, zero-width), surrogate, private-use, unassigned, line and
paragraph separators."""


_WARNING_MAX = 200
"""Longest warn-text we put in a header; details beyond it stay in logs."""
_CTL = re.compile(r"[\x00-\x1f\x7f]")


def header_text(text: str, limit: int = _WARNING_MAX) -> str:
    """``text`` made safe to write into a header (a Warning's warn-text, a reason phrase):
    one line (white space runs, CR and LF included, become one space, so nothing can be
    injected after it), no other control character (RFC 3261 25.1: CTLs are not TEXT-UTF8 nor
    qdtext; each becomes ``?``), at most ``limit`` characters.  Peers' values reach such texts
    through element paths, transaction ids and URIs."""
    text = _CTL.sub("?", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_ascii_digits(text: str) -> bool:
    """``1*DIGIT``: one or more of 0-9, nothing else (no sign, no space, no other script)."""
    return text.isascii() and text.isdigit()


def ascii_int(text: str) -> int | None:
    """The value of ``1*DIGIT`` (RFC 3261 25.1), or None when ``text`` is anything else."""
    return int(text) if text.isascii() and text.isdigit() else None


def _escape(ch: str) -> str:
    known = _ESCAPES.get(ch)
    if known is not None:
        return known
    if ch.isprintable() and unicodedata.category(ch) not in _UNSAFE_CATEGORIES:
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with everything a terminal would act on escaped visibly (one line, always)."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case, unchanged and without a copy
    return "".join(_escape(ch) for ch in text)


__all__ = ["ascii_int", "header_text", "is_ascii_digits", "printable"]
