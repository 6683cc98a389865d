"""Typed errors of the message layer, each mapped to the SIP answer it deserves.

Every error carries the path of the failing element (``/profile-update-request/target``, or
``None`` when the document never became a tree), a human message, a fix hint, and:

- ``sip_status``: 400 for a document we understand but refuse, 413 for one too large,
  415 for a body that is not an ACM document at all (wrong Content-Type, not XML, not UTF-8,
  not our namespace) -- RFC 3261 21.4.1, 21.4.11, 21.4.13;
- ``warning_text``: the text of a ``Warning: 399 <host> "<text>"`` header (RFC 3261 20.43; the
  MC habit of 24.379 4.4); ``warning_value(host, text)`` quotes it for a given host.

``EncodeError`` is the odd one out: our own output failed our own schema, which is a bug
(strict on send), so it maps to 500.
"""

from __future__ import annotations

from typing import ClassVar

from mcacm_sip.sip.headers import warning_value
from mcacm_sip.text import header_text

__all__ = [
    "AcmError",
    "DocumentTooDeep",
    "DocumentTooLarge",
    "EncodeError",
    "InvalidContent",
    "MalformedDocument",
    "NotAcmDocument",
    "SchemaViolation",
    "TooManyAttributes",
    "UnsafeDocument",
    "header_text",
    "warning_value",
]

class AcmError(ValueError):
    """A document the message layer refuses (or, for :class:`EncodeError`, cannot produce)."""

    sip_status: ClassVar[int] = 400

    def __init__(self, message: str, *, path: str | None = None, hint: str = "") -> None:
        self.message = message
        self.path = path
        self.hint = hint
        super().__init__(f"{path}: {message}" if path else message)

    @property
    def warning_text(self) -> str:
        """Text for ``Warning: 399 <host> "<text>"``: where and what, at most 200 characters."""
        return header_text(f"{self.path}: {self.message}" if self.path else self.message)


class NotAcmDocument(AcmError):
    """The body is not an ACM document: wrong Content-Type, not XML, not UTF-8, foreign root."""

    sip_status = 415


class DocumentTooLarge(AcmError):
    """The body exceeds the configured size cap."""

    sip_status = 413


class UnsafeDocument(AcmError):
    """The document holds a construct we never process: a DOCTYPE (entities, external DTD)."""


class DocumentTooDeep(AcmError):
    """Elements nest deeper than the configured cap."""


class TooManyAttributes(AcmError):
    """An element carries more attributes than the configured cap (validating thousands costs
    a hundred times more than parsing them)."""


class MalformedDocument(AcmError):
    """The bytes are not well-formed XML."""


class SchemaViolation(AcmError):
    """The document is well-formed XML in our namespace but not valid against the bundled XSD."""


class InvalidContent(AcmError):
    """The document is schema-valid but carries a value the model refuses (``ie`` names it)."""

    def __init__(
        self, message: str, *, path: str | None = None, hint: str = "", ie: str | None = None
    ) -> None:
        super().__init__(message, path=path, hint=hint)
        self.ie = ie


class EncodeError(AcmError):
    """Our own output is not valid against our own schema: a bug in the message layer."""

    sip_status = 500
