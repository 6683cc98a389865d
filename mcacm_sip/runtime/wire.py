"""What a traced SIP message is, read from its raw bytes without parsing it whole: its method
or status, the method its CSeq names, its Call-ID.  Cheap enough for every message of a node
(metrics, HEP correlation, load statistics); a message it cannot read yields Nones."""

from __future__ import annotations

import re
from dataclasses import dataclass

_STATUS = re.compile(rb"SIP/2\.0 ([1-6]\d\d) ")  # RFC 3261 7.2: 1xx-6xx
_METHOD = re.compile(rb"([A-Z]{1,20}) \S+ SIP/2\.0\r\n")
# header names are case-insensitive, Call-ID has the compact form i (RFC 3261 7.3.1, 20)
_CSEQ = re.compile(rb"\r\n(?i:cseq)[ \t]*:[ \t]*(\d+)[ \t]+([A-Za-z]{1,20})")
_CALL_ID = re.compile(rb"\r\n(?i:call-id|i)[ \t]*:[ \t]*([^\r\n]{1,256})")


@dataclass(frozen=True, slots=True)
class WireSummary:
    method: str | None
    """The request's method; None for a response."""
    status: int | None
    """The response's status; None for a request."""
    cseq: tuple[int, str] | None
    """(number, method) of CSeq."""
    call_id: str | None

    @property
    def cseq_method(self) -> str | None:
        """The method a response answers (CSeq), else the request's own."""
        return self.cseq[1].upper() if self.cseq else self.method


def _value(head: bytes, spelling: bytes) -> bytes | None:
    """The value of the header written exactly ``spelling`` (``\r\nName:``), else None."""
    at = head.find(spelling)
    if at < 0:
        return None
    start = at + len(spelling)
    end = head.find(b"\r\n", start)
    return head[start:end if end >= 0 else len(head)].strip()


def summarise(data: bytes) -> WireSummary:
    head_end = data.find(b"\r\n\r\n")
    head = data if head_end < 0 else data[:head_end + 2]
    status = method = None
    if head.startswith(b"SIP/2.0 "):
        if m := _STATUS.match(head):
            status = int(m.group(1))
    elif m := _METHOD.match(head):
        method = m.group(1).decode("ascii")
    # the usual spellings by a plain search; any other (case, compact form, spaces) by regex
    cseq_value = _value(head, b"\r\nCSeq:")
    cseq = None
    if cseq_value is not None:
        number, _, name = cseq_value.partition(b" ")
        if number.isdigit() and name.strip().isalpha():
            cseq = (int(number), name.strip().decode("ascii"))
    if cseq is None and (c := _CSEQ.search(head)):
        cseq = (int(c.group(1)), c.group(2).decode("ascii"))
    call_id = _value(head, b"\r\nCall-ID:")
    if not call_id and (i := _CALL_ID.search(head)):
        call_id = i.group(1).strip()
    return WireSummary(method, status, cseq,
                       call_id.decode("utf-8", "replace") if call_id else None)


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


__all__ = ["Retransmissions", "WireSummary", "summarise"]
