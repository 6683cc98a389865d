"""Transports: the asyncio protocols for UDP, TCP and TLS (framing: :mod:`..framer`).

The protocols only move bytes: every complete message goes to a :class:`Sink` (the endpoint)
together with the :class:`Peer` it came from.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from asyncio import sslproto
from typing import Protocol, cast

from ..framer import FrameError, StreamFramer
from ..message import Limits
from ..transaction import Peer, Transport


def _address(sockname: tuple[str | int, ...] | None) -> tuple[str, int]:
    return ("", 0) if not sockname else (str(sockname[0]), int(sockname[1]))


class Sink(Protocol):
    """What the protocols report to (the endpoint)."""

    def on_message(
        self, data: bytes, source: Peer, datagram: bool, local: tuple[str, int] = ("", 0)
    ) -> None: ...
    def on_frame_error(self, error: FrameError, source: Peer) -> None: ...
    def on_connection(self, conn: StreamConnection) -> bool: ...
    def on_secured(self, conn: StreamConnection) -> None: ...
    def on_buffered(self, conn: StreamConnection) -> bool: ...
    def on_connection_lost(self, conn: StreamConnection) -> None: ...


class UdpProtocol(asyncio.DatagramProtocol):
    """One UDP socket.

    asyncio's selector transport reads one datagram per event-loop iteration; under load the
    loop's own work (epoll_wait, handle scheduling) then dominates (figures: docs/sip-layer.md).
    So each wake-up also drains what is already queued, up to ``DRAIN`` datagrams, from
    a duplicate of the socket (same non-blocking file description, so the two never block and
    never see the same datagram twice).
    """

    DRAIN = 64  # at most this many extra datagrams per wake-up: timers and TCP still get turns
    MAX_DATAGRAM = 65536
    PEERS = 4096  # source addresses whose Peer is kept (then forgotten at once, and refilled)

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)  # the bound address (for message traces)
        self._drain: socket.socket | None = None
        self._peers: dict[tuple[str | int, str | int], Peer] = {}

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
        sink.on_message(data, self._peer(addr), True, local)
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
            sink.on_message(data, self._peer(addr), True, local)

    def _peer(self, addr: tuple[str | int, ...]) -> Peer:
        """The (frozen, so shared) Peer of a source address: a datagram's peers repeat."""
        key = (addr[0], addr[1])
        peer = self._peers.get(key)
        if peer is None:
            if len(self._peers) >= self.PEERS:
                self._peers.clear()
            peer = self._peers[key] = Peer("udp", str(addr[0]), int(addr[1]))
        return peer

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors: the transaction layer's timers cover the loss

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drain is not None:
            self._drain.close()
            self._drain = None


class _SmallSslProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a 32 KiB read buffer instead of 256 KiB: the buffer is
    allocated (and zeroed) per connection before the handshake, so 1 000 idle connects to a
    TLS port cost 300 MB of RSS with the default.  A TLS record holds at most 16 KiB."""

    max_size = 32 * 1024


def start_server_tls(loop: asyncio.AbstractEventLoop, raw: asyncio.BaseTransport,
                     app: asyncio.Protocol, context: ssl.SSLContext, timeout: float
                     ) -> tuple[asyncio.Future[None], sslproto.SSLProtocol]:
    """Begin the server side of a TLS handshake on ``raw`` for ``app``, now (before any byte
    is read): ``loop.start_tls`` with the small buffer.  The future is done when the handshake
    is (an exception if it failed, ``timeout`` included); then ``app`` reads through the
    protocol's application transport and gets ``connection_lost``, never ``connection_made``."""
    waiter: asyncio.Future[None] = loop.create_future()
    protocol = _SmallSslProtocol(loop, app, context, waiter, True, None,
                                 ssl_handshake_timeout=timeout,  # type: ignore[arg-type]
                                 call_connection_made=False)  # (typeshed: int; a float works)
    tcp = cast(asyncio.Transport, raw)
    tcp.pause_reading()  # nothing reaches ``app`` unencrypted
    tcp.set_protocol(protocol)
    loop.call_soon(protocol.connection_made, tcp)
    loop.call_soon(tcp.resume_reading)
    return waiter, protocol


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outbound.

    A message must arrive whole within ``limits.message_timeout`` of its first byte, else the
    connection is closed: a peer trickling a header byte by byte (slowloris) holds a
    connection for seconds, not for ever.  An inbound connection must finish its TLS handshake
    (``tls``: the server context) and then send its first byte within
    ``limits.handshake_timeout`` each; until its handshake is done it is ``handshaking``.
    """

    _next_id = 0
    LINGER = 1.0
    """Seconds a connection that failed framing keeps reading (and discarding) after its error
    answer and FIN, so that the peer's unread data does not turn our close into a RST that
    destroys the answer (the lingering close of HTTP servers)."""

    def __init__(self, sink: Sink, transport_name: Transport, limits: Limits, now: float,
                 inbound: bool = False, tls: ssl.SSLContext | None = None) -> None:
        StreamConnection._next_id += 1
        self.id = StreamConnection._next_id
        self.sink = sink
        self.name: Transport = transport_name
        self.inbound = inbound
        self.limits = limits
        self.framer = StreamFramer(limits)
        self.accounted = 0
        """Bytes of ``framer`` the sink has counted against its buffer budget."""
        self._deadline: asyncio.TimerHandle | None = None  # for the message being received
        self._draining = False  # after a framing error: what arrives is dropped unread
        self._spoke = not inbound  # an inbound connection has not sent a byte yet
        self._tls = tls
        self.handshaking = tls is not None
        self._raw: asyncio.BaseTransport | None = None  # the TCP transport under TLS
        self._tls_protocol: sslproto.SSLProtocol | None = None  # while handshaking
        self._lost = False
        self.transport: asyncio.Transport | None = None
        self.peer = Peer(transport_name, "", 0, self.id)
        self.local: tuple[str, int] = ("", 0)  # our end of the connection (ephemeral if outbound)
        self.last_activity = now
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = transport
        addr = transport.get_extra_info("peername")
        self.peer = Peer(self.name, str(addr[0]), int(addr[1]), self.id)
        self.local = _address(transport.get_extra_info("sockname"))
        if not self.sink.on_connection(self):
            transport.close()
            return
        loop = asyncio.get_running_loop()
        if self._tls is None:
            self.transport = transport  # type: ignore[assignment]
        else:  # counted from the accept: a connect that never starts its handshake is too
            done, self._tls_protocol = start_server_tls(
                loop, transport, self, self._tls, self.limits.handshake_timeout)
            done.add_done_callback(self._secured)
        if not self._spoke:
            self._deadline = loop.call_later(self.limits.handshake_timeout, self._too_slow)

    def _secured(self, done: asyncio.Future[None]) -> None:
        if not self.handshaking:
            return  # secured already by its first record (data_received)
        protocol, self._tls_protocol = self._tls_protocol, None
        if done.cancelled() or done.exception() is not None or protocol is None:
            if self._raw is not None:
                self._raw.close()
            self.connection_lost(None)  # asyncio tells the app nothing of a failed handshake
            return
        self._now_secure(protocol)

    def _now_secure(self, protocol: sslproto.SSLProtocol) -> None:
        self.transport = protocol._app_transport  # what loop.start_tls returns
        self.handshaking = False
        self.sink.on_secured(self)
        if not self._spoke:  # the first byte of SIP has its own handshake_timeout
            self._disarm()
            self._deadline = asyncio.get_running_loop().call_later(
                self.limits.handshake_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self.handshaking and self._tls_protocol is not None:
            # TLS 1.3: a client's first record can come with its Finished, and the SSL
            # protocol hands it to us before the handshake future's callback runs; the
            # connection must already be the secured one, or its client certificate is lost
            protocol, self._tls_protocol = self._tls_protocol, None
            self._now_secure(protocol)
        if self._draining:
            return
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        if not self._spoke:
            self._spoke = True
            self._disarm()
        framer = self.framer
        frames = framer.feed(data)
        for frame in frames:
            if isinstance(frame, bytes):
                self.sink.on_message(frame, self.peer, False, self.local)
            elif isinstance(frame, FrameError):
                self.sink.on_frame_error(frame, self.peer)
                self._end(loop)
                return
            else:
                self.write(b"\r\n")  # pong
        if framer.buffered != self.accounted and not self.sink.on_buffered(self):
            self.close()  # over the buffer budget
            return
        if not framer.pending:
            self._disarm()
        elif self._deadline is None or frames:  # a message began here: its clock starts
            self._disarm()
            self._deadline = loop.call_later(self.limits.message_timeout, self._too_slow)

    def _end(self, loop: asyncio.AbstractEventLoop) -> None:
        """After a framing error: the answer, then FIN, drain for LINGER seconds, close."""
        self._disarm()
        self.framer = StreamFramer(self.limits)  # drop what was buffered
        self.sink.on_buffered(self)
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

    def pause_writing(self) -> None:
        # our answers pile up (asyncio's high-water mark, 64 KiB): a peer that does not read
        # them gets no more of its requests read until it does, so what we buffer for it stays
        # bounded (inbound only: we never stop reading the answers to our own requests)
        if self.inbound and self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.inbound and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
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
        elif self._raw is not None:  # still in its TLS handshake
            self._raw.close()


__all__ = ["Sink", "StreamConnection", "UdpProtocol"]
