"""Stream framing (RFC 3261 18.3): a TCP/TLS byte stream cut into SIP messages. Sans-I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .headers import InvalidHeader, NumberTooLarge, read_number
from .message import DEFAULT_LIMITS, Limits, head_end

_CONTENT_LENGTH = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)


@dataclass(frozen=True, slots=True)
class FrameError:
    """The stream cannot continue: answer ``status`` (if the head holds a Via), then close."""

    status: int | None
    reason: str
    head: bytes


PONG = object()  # RFC 5626 3.5.1: a CRLFCRLF ping is answered with a CRLF pong
Frame = bytes | FrameError | object


class StreamFramer:
    """Cuts a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 18.3).

    A message is handed up only when whole; several in one segment and one split across
    segments both work. The buffer never exceeds the header cap plus the body cap.
    """

    __slots__ = ("_body_len", "_buf", "_head_end", "_limits", "_scan_from")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._scan_from = 0  # where to resume looking for the end of the header block
        self._head_end = -1  # offset of the body once the header block is complete
        self._body_len = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; returns complete messages, PONG requests, or one final FrameError."""
        buf = self._buf
        buf += data
        out: list[Frame] = []
        while buf:
            if self._head_end < 0:
                # RFC 3261 7.5 / RFC 5626 3.5.1: CRLFs between messages are keep-alives.
                if buf.startswith(b"\r\n"):
                    if buf.startswith(b"\r\n\r\n"):
                        del buf[:4]
                        out.append(PONG)
                        continue
                    if b"\r\n\r\n".startswith(bytes(buf[:4])):
                        break  # may still become a ping: wait for more
                    del buf[:2]  # a lone CRLF (a pong, or padding before a message)
                    continue
                error = self._find_head()
                if error is not None:
                    out.append(error)
                    return out
                if self._head_end < 0:
                    break
            end = self._head_end + self._body_len
            if len(buf) < end:
                break
            out.append(bytes(buf[:end]))
            del buf[:end]
            self._head_end = -1
            self._scan_from = 0
        return out

    def _find_head(self) -> FrameError | None:
        buf, limits = self._buf, self._limits
        start = max(0, self._scan_from - 3)
        end, sep = head_end(buf, start)
        if end < 0:
            if len(buf) > limits.max_header_bytes:
                # the Via is near the top: answer from the lines that did arrive
                head = bytes(buf[:limits.max_header_bytes])
                return FrameError(413, "Header Block Too Large", head[:head.rfind(b"\n") + 1])
            self._scan_from = len(buf)
            return None
        head = bytes(buf[:end])
        if end > limits.max_header_bytes:
            return FrameError(413, "Header Block Too Large", head)
        match = _CONTENT_LENGTH.search(head)
        length = match.group(1) if match else b"0"  # RFC 3261 18.3: absent means no body here
        try:
            body_len = read_number("Content-Length", length.decode("latin-1"),
                                   limits.max_body_bytes)
        except NumberTooLarge:
            return FrameError(413, "Body Too Large", head)
        except InvalidHeader:
            return FrameError(400, "Bad Content-Length", head)
        self._head_end = end + sep
        self._body_len = body_len
        return None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def pending(self) -> bool:
        """A message has begun and is not complete yet."""
        return bool(self._buf)


__all__ = ["PONG", "Frame", "FrameError", "StreamFramer"]
