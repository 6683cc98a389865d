"""What a traced SIP message is, for metrics, HEP correlation and load statistics: its method
or status, the method its CSeq names, its Call-ID and ACM procedure (``X-CID``) -- read by the
SIP layer's lenient reader (:func:`~mcacm_sip.sip.message.read_raw`: any spelling a peer may
use, never raises).  A message it cannot read yields Nones."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mcacm_sip.sip.message import read_raw
from mcacm_sip.text import ascii_int

PROCEDURE_HEADER = "X-CID"
"""The header naming the ACM procedure a MESSAGE belongs to (docs/decisions.md "Scale-out: the
procedure header"): what Kamailio's dispatcher hashes so that every flow of one procedure
reaches the worker holding it, and what sngrep and Homer link related messages by.  A routing
and correlation hint: no authorisation reads it."""

_PROCEDURE_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~@:]{1,128}")
"""What we echo of a received value: an RFC 3261 ``word`` (the Call-ID syntax, since sngrep
and Homer compare it with Call-IDs), at most 128 characters; anything else is ignored."""


def procedure_of(value: str | None) -> str | None:
    """The procedure value of a received ``X-CID`` header, None if absent or unusable (lax on
    receive: a bad value is no error, the receiver derives its own)."""
    if value is None:
        return None
    value = value.strip()
    return value if _PROCEDURE_VALUE.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class WireSummary:
    method: str | None
    """The request's method; None for a response."""
    status: int | None
    """The response's status; None for a request."""
    cseq: tuple[int, str] | None
    """(number, method) of CSeq."""
    call_id: str | None
    procedure: str | None = None
    """The ``X-CID`` value (:func:`procedure_of`), None if absent or unusable."""

    @property
    def cseq_method(self) -> str | None:
        """The method a response answers (CSeq), else the request's own."""
        return self.cseq[1].upper() if self.cseq else self.method


def summarise(data: bytes) -> WireSummary:
    raw = read_raw(data)
    status = raw.status
    if status is not None and not 100 <= status <= 699:  # RFC 3261 7.2: 1xx-6xx only
        status = None
    method = None if raw.status is not None else raw.method
    number, _, name = (raw.header("cseq") or "").strip().partition(" ")
    seq, name = ascii_int(number), name.strip()
    cseq = (seq, name) if seq is not None and name.isascii() and name.isalpha() else None
    return WireSummary(method, status, cseq, raw.header("call-id") or None,
                       procedure_of(raw.header(PROCEDURE_HEADER)))


class Retransmissions:
    """Counts requests sent again (same Call-ID, CSeq and method: RFC 3261 17.1.1.2 / 17.1.2.2
    retransmissions), remembering at most ``limit`` requests (the oldest forgotten first)."""

    def __init__(self, limit: int = 65536) -> None:
        self.count = 0
        self._seen: dict[tuple[str, int, str], None] = {}
        self._limit = limit

    def sent(self, summary: WireSummary) -> bool:
        """Note a request we sent; True if it is a retransmission."""
        if summary.method is None or summary.cseq is None or summary.call_id is None \
                or summary.method == "ACK":
            return False
        key = (summary.call_id, summary.cseq[0], summary.method)
        if key in self._seen:
            self.count += 1
            return True
        self._seen[key] = None
        if len(self._seen) > self._limit:
            del self._seen[next(iter(self._seen))]
        return False


__all__ = ["PROCEDURE_HEADER", "Retransmissions", "WireSummary", "procedure_of", "summarise"]
