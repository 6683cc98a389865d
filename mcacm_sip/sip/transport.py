"""Transports: stream framing (sans-I/O) and the asyncio protocols for UDP, TCP and TLS.

The protocols only move bytes: every complete message goes to a :class:`Sink` (the endpoint)
together with the :class:`Peer` it came from.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from typing import Protocol

from .message import DEFAULT_LIMITS, Limits, head_end
from .transaction import Peer, Transport

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
        if not length.isdigit():
            return FrameError(400, "Bad Content-Length", head)
        if int(length) > limits.max_body_bytes:
            return FrameError(413, "Body Too Large", head)
        self._head_end = end + sep
        self._body_len = int(length)
        return None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def pending(self) -> bool:
        """A message has begun and is not complete yet."""
        return bool(self._buf)


def _address(sockname: tuple[str | int, ...] | None) -> tuple[str, int]:
    return ("", 0) if not sockname else (str(sockname[0]), int(sockname[1]))


class Sink(Protocol):
    """What the protocols report to (the endpoint)."""

    def on_message(
        self, data: bytes, source: Peer, datagram: bool, local: tuple[str, int] = ("", 0)
    ) -> None: ...
    def on_frame_error(self, error: FrameError, source: Peer) -> None: ...
    def on_connection(self, conn: StreamConnection) -> bool: ...
    def on_connection_lost(self, conn: StreamConnection) -> None: ...


class UdpProtocol(asyncio.DatagramProtocol):
    """One UDP socket.

    asyncio's selector transport reads one datagram per event-loop iteration; under load the
    loop's own work (epoll_wait, handle scheduling) then cost about as much as handling the
    message. So each wake-up also drains what is already queued, up to ``DRAIN`` datagrams, from
    a duplicate of the socket (same non-blocking file description, so the two never block and
    never see the same datagram twice).
    """

    DRAIN = 64  # at most this many extra datagrams per wake-up: timers and TCP still get turns
    MAX_DATAGRAM = 65536

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)  # the bound address (for message traces)
        self._drain: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.local = _address(transport.get_extra_info("sockname"))
        sock = transport.get_extra_info("socket")
        dup = getattr(sock, "dup", None)  # an event loop without it simply reads one at a time
        if dup is not None:
            self._drain = dup()
            self._drain.setblocking(False)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        sink, local = self.sink, self.local
        sink.on_message(data, Peer("udp", str(addr[0]), int(addr[1])), True, local)
        drain = self._drain
        if drain is None:
            return
        for _ in range(self.DRAIN):
            if self.transport is None or self.transport.is_closing():
                return
            try:
                data, addr = drain.recvfrom(self.MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP errors, as in error_received
            sink.on_message(data, Peer("udp", str(addr[0]), int(addr[1])), True, local)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors: the transaction layer's timers cover the loss

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drain is not None:
            self._drain.close()
            self._drain = None


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outbound.

    A message must arrive whole within ``limits.message_timeout`` of its first byte, else the
    connection is closed: a peer trickling a header byte by byte (slowloris) holds a
    connection for seconds, not for ever.
    """

    _next_id = 0
    LINGER = 1.0
    """Seconds a connection that failed framing keeps reading (and discarding) after its error
    answer and FIN, so that the peer's unread data does not turn our close into a RST that
    destroys the answer (the lingering close of HTTP servers)."""

    def __init__(self, sink: Sink, transport_name: Transport, limits: Limits, now: float,
                 inbound: bool = False) -> None:
        StreamConnection._next_id += 1
        self.id = StreamConnection._next_id
        self.sink = sink
        self.name: Transport = transport_name
        self.inbound = inbound
        self.limits = limits
        self.framer = StreamFramer(limits)
        self._deadline: asyncio.TimerHandle | None = None  # for the message being received
        self._draining = False  # after a framing error: what arrives is dropped unread
        self.transport: asyncio.Transport | None = None
        self.peer = Peer(transport_name, "", 0, self.id)
        self.local: tuple[str, int] = ("", 0)  # our end of the connection (ephemeral if outbound)
        self.last_activity = now
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        addr = transport.get_extra_info("peername")
        self.peer = Peer(self.name, str(addr[0]), int(addr[1]), self.id)
        self.local = _address(transport.get_extra_info("sockname"))
        if not self.sink.on_connection(self):
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        frames = self.framer.feed(data)
        for frame in frames:
            if isinstance(frame, bytes):
                self.sink.on_message(frame, self.peer, False, self.local)
            elif isinstance(frame, FrameError):
                self.sink.on_frame_error(frame, self.peer)
                self._end(loop)
                return
            else:
                self.write(b"\r\n")  # pong
        if not self.framer.pending:
            self._disarm()
        elif self._deadline is None or frames:  # a message began here: its clock starts
            self._disarm()
            self._deadline = loop.call_later(self.limits.message_timeout, self._too_slow)

    def _end(self, loop: asyncio.AbstractEventLoop) -> None:
        """After a framing error: the answer, then FIN, drain for LINGER seconds, close."""
        self._disarm()
        self.framer = StreamFramer(self.limits)  # drop what was buffered
        transport = self.transport
        if transport is None or not transport.can_write_eof():  # TLS: no half-close
            self.close()
            return
        transport.write_eof()
        self._draining = True
        self._deadline = loop.call_later(self.LINGER, self.close)

    def _too_slow(self) -> None:
        self._deadline = None
        self.sink.on_frame_error(FrameError(None, "Message Timeout", b""), self.peer)
        self.close()

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self.closed.done():
            self.closed.set_result(None)
        self.sink.on_connection_lost(self)

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


__all__ = ["PONG", "FrameError", "Sink", "StreamConnection", "StreamFramer", "UdpProtocol"]
