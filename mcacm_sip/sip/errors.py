"""Exceptions of the SIP layer."""

from __future__ import annotations


class SipError(Exception):
    """Base of every error raised by :mod:`mcacm_sip.sip`."""


class SipParseError(SipError):
    """A message that cannot be accepted.

    ``status`` is the answer owed to the sender (400, 413, 505) or ``None`` when nothing can
    be answered (no Via, garbage, or the message is itself a response): the message is dropped.
    """

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(f"{status or 'drop'} {reason}")
        self.status = status
        self.reason = reason


class SipTimeout(SipError):
    """No final response: Timer F fired (RFC 3261 17.1.2.2) or the caller's timeout elapsed."""


class SipTransportError(SipError):
    """The request could not be sent: no route, name resolution, connect or write failure."""
