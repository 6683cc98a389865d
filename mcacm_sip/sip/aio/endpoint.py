"""The asyncio SIP endpoint: sockets, timers and handlers around the sans-I/O layers.

Receive path (hot): bytes -> :func:`parse` -> :class:`TransactionLayer` -> handler -> response.
A handler that returns a :class:`Reply` directly runs with no task; an ``async`` handler gets one.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import Any, Final, Literal, NamedTuple

from aiosipua.headers import parse_uri

from mcacm_sip.frozen import builder
from mcacm_sip.ids import token_hex

from ..dialog import Reply
from ..errors import SipParseError, SipTimeout, SipTransportError
from ..framer import FrameError
from ..message import (
    DEFAULT_LIMITS,
    MAGIC_COOKIE,
    Arrival,
    Limits,
    Request,
    Response,
    build_response,
    error_response,
    own_response,
    parse,
    plain_response,
)
from ..request import (
    OutgoingRequest,
    RequestTemplate,
    bracket,
    encode_request,
    new_request,
    template_key,
)
from ..served import Served
from ..transaction import (
    DEFAULT_PORTS,
    Action,
    ClientKey,
    ClientTimeout,
    DeliverRequest,
    DeliverResponse,
    Peer,
    Send,
    ServerKey,
    ServerTimeout,
    Timers,
    TransactionLayer,
    Transport,
)
from .timer import TimerDriver
from .transport import StreamConnection, UdpProtocol

log = logging.getLogger("mcacm.sip")
DEFAULT_TIMERS = Timers()
MAX_DATAGRAM = 65507
"""Largest UDP payload over IPv4 (65 535 - 8 - 20 bytes)."""
NO_TCP_FOR = 60.0
"""Seconds an address whose TCP connect failed is not tried again for large requests."""
_UDP_RCVBUF = 4 << 20
MAX_TEMPLATES = 256
"""Request templates kept (one per target, identity and hop: a node sends to a few peers)."""


def _same_port_sockets(listens: Sequence[Listen]) -> dict[tuple[str, str], socket.socket]:
    """RFC 3261 18.2.1: "For any port and interface that a server listens on for UDP, it MUST
    listen on that same port and interface for TCP."  For each host with both a UDP and a TCP
    listener on port 0 (any free port): one port free for both, as two bound sockets keyed by
    (transport, host), so that nothing can take the second one in between."""
    zero = {(lst.transport, lst.host) for lst in listens if lst.port == 0}
    out: dict[tuple[str, str], socket.socket] = {}
    for host in sorted({h for t, h in zero if t == "udp" and ("tcp", h) in zero}):
        family, _, _, _, addr = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        for _ in range(64):
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(addr)
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp.bind((addr[0], tcp.getsockname()[1], *addr[2:]))
            except OSError:  # that port is taken for UDP: another one
                tcp.close()
                udp.close()
                continue
            out[("tcp", host)], out[("udp", host)] = tcp, udp
            break
        else:  # pragma: no cover - 64 ports in a row taken for UDP only
            raise OSError(f"no port free for both UDP and TCP on {host}")
    return out


@dataclass(frozen=True, slots=True)
class Listen:
    """A socket to listen on. ``advertise`` is the host written in Via/Contact."""

    transport: Transport
    host: str
    port: int = 0
    advertise: str | None = None


@dataclass(frozen=True, slots=True)
class FinalResponse:
    """The final response to an :class:`OutgoingRequest`."""

    message: Response
    source: Peer
    request: OutgoingRequest

    @property
    def status(self) -> int:
        return self.message.status


# an Arrival built by tuple.__new__ (a NamedTuple's own __new__ is a Python call): one per
# request in, all four fields given
_arrival: Callable[[type[Arrival], tuple[str, str, int, dict[str, Any] | None]], Arrival] = (
    tuple.__new__)

_Future = asyncio.Future
_create_future = asyncio.BaseEventLoop.create_future
_loop_time = asyncio.BaseEventLoop.time

# built without a call per field (mcacm_sip/frozen.py): two per request on the hot path
_final_response: Callable[[Response, Peer, OutgoingRequest], FinalResponse] = builder(
    FinalResponse)


class IncomingRequest:
    """A request delivered to a handler."""

    __slots__ = ("endpoint", "key", "message", "source")

    def __init__(self, endpoint: SipEndpoint, key: ServerKey, message: Request, source: Peer):
        self.endpoint = endpoint
        self.key = key
        self.message = message
        self.source = source

    def reply(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        to_tag: str | None = None,
    ) -> Reply:
        return Reply(status, reason, tuple(headers), body, content_type, to_tag)

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        """The verified client certificate of the TLS connection the request came on
        (``ssl.SSLSocket.getpeercert()`` form: ``subjectAltName`` pairs etc.); None for UDP,
        TCP, or a TLS client that showed none (RFC 3261 26.3.2.2, RFC 5922 7.4)."""
        return self.endpoint.peer_certificate(self.source)

    def __repr__(self) -> str:
        return f"<IncomingRequest {self.message!r} from {self.source}>"


class Answer:
    """A handler's answer given later (``set_result``), sent the moment it is set: the
    endpoint that got it from a handler responds from inside ``set_result``, where an
    ``asyncio.Future``'s done callback would cost a scheduled Handle (and the future) per
    request.  Otherwise as that future: ``done``/``cancelled``/``result``/``cancel``,
    ``set_exception`` (the request gets 500, the error logged), awaitable; an answer set once
    the endpoint is closed, or cancelled, is not sent.  What the send raises goes to the loop's
    exception handler, as from a done callback, never to whoever set the answer."""

    __slots__ = ("_exc", "_reply", "_state", "_to", "_waiter")

    def __init__(self) -> None:
        self._state = _PENDING
        self._reply: Reply | None = None
        self._exc: BaseException | None = None
        # the endpoint and request it answers, once a handler returned it (see _dispatch)
        self._to: tuple[SipEndpoint, ServerKey, Request, Peer] | None = None
        self._waiter: asyncio.Future[Reply] | None = None  # made when awaited

    def done(self) -> bool:
        return self._state is not _PENDING

    def cancelled(self) -> bool:
        return self._state is _CANCELLED

    def result(self) -> Reply:
        if self._state is _CANCELLED:
            raise asyncio.CancelledError()
        if self._state is _PENDING:
            raise asyncio.InvalidStateError("answer not set")
        if self._exc is not None:
            raise self._exc
        assert self._reply is not None
        return self._reply

    def exception(self) -> BaseException | None:
        if self._state is _CANCELLED:
            raise asyncio.CancelledError()
        if self._state is _PENDING:
            raise asyncio.InvalidStateError("answer not set")
        return self._exc

    def set_result(self, reply: Reply) -> None:
        if self._state is not _PENDING:
            raise asyncio.InvalidStateError(f"answer already {self._state}")
        self._state, self._reply = _DONE, reply
        self._settled()

    def set_exception(self, exc: BaseException) -> None:
        if self._state is not _PENDING:
            raise asyncio.InvalidStateError(f"answer already {self._state}")
        self._state, self._exc = _DONE, exc
        self._settled()

    def cancel(self) -> bool:
        if self._state is not _PENDING:
            return False
        self._state = _CANCELLED
        self._settled()
        return True

    def _settled(self) -> None:
        to, waiter = self._to, self._waiter
        if to is not None:
            self._to = None
            to[0]._answer_now(to, self)
        if waiter is not None and not waiter.done():
            self._pass_on(waiter)

    def _pass_on(self, waiter: asyncio.Future[Reply]) -> None:
        if self._state is _CANCELLED:
            waiter.cancel()
        elif self._exc is not None:
            waiter.set_exception(self._exc)
        else:
            waiter.set_result(self._reply)  # type: ignore[arg-type]

    def __await__(self) -> Generator[Any, None, Reply]:
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
            if self._state is not _PENDING:
                self._pass_on(self._waiter)
        return self._waiter.__await__()

    def __repr__(self) -> str:
        return f"<Answer {self._state}{'' if self._reply is None else f' {self._reply!r}'}>"


_PENDING: Final = "pending"
_DONE: Final = "done"
_CANCELLED: Final = "cancelled"


Handler = Callable[[IncomingRequest], "Reply | Awaitable[Reply]"]
Done = Callable[[asyncio.Future[FinalResponse]], object]
"""What :meth:`SipEndpoint.send_soon` hands a send's finished future to."""


@dataclass(frozen=True, slots=True)
class TracedMessage:
    """One SIP message as it crossed one of the endpoint's sockets (see ``trace``)."""

    time: float
    """Wall clock (``time.time()``), so traces of several processes line up."""
    direction: Literal["in", "out"]
    transport: Transport
    local: tuple[str, int]
    """The real local address: the UDP socket's, or the TCP/TLS connection's own end (an
    outbound connection's ephemeral port), never the advertised host."""
    remote: Peer
    """Where it came from / went to (``conn`` is the connection id on TCP/TLS)."""
    data: bytes
    """The raw bytes; a retransmission is traced again, an unparseable message too."""


MessageTrace = Callable[[TracedMessage], None]
Locator = Callable[[str], Peer | None]
"""Next-hop URI (no angle brackets) -> the address to send to; None: resolve it as usual."""


@lru_cache(maxsize=1024)  # a pure function of a string; per message on the hot path
def is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 literal (brackets allowed), i.e. needs no lookup."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class _Hop(NamedTuple):
    """What a next-hop URI says about where and how to send (RFC 3261 8.1.2)."""

    raw: str
    """The URI without angle brackets."""
    host: str
    port: int | None
    transport: Transport | None
    """tls for a SIPS URI or ``transport=tls``, tcp/udp when its parameter says so, else None
    (the request's own choice, else UDP)."""


@lru_cache(maxsize=1024)  # a pure function of a string; per request sent on the hot path
def _hop(text: str) -> _Hop:
    raw = text.strip().lstrip("<").split(">", 1)[0]
    uri = parse_uri(raw)
    param = (uri.params.get("transport") or "").lower()
    transport: Transport | None = None
    if uri.scheme == "sips" or param == "tls":
        transport = "tls"  # RFC 3261 26.2.2
    elif param in ("tcp", "udp"):
        transport = param  # type: ignore[assignment]
    return _Hop(raw, uri.host, uri.port, transport)


class SipEndpoint:
    """A SIP user agent endpoint (UAC and UAS) for non-INVITE methods."""

    def __init__(
        self,
        listens: Sequence[Listen],
        *,
        tls_server: ssl.SSLContext | None = None,
        tls_client: ssl.SSLContext | None = None,
        timers: Timers = DEFAULT_TIMERS,
        limits: Limits = DEFAULT_LIMITS,
        outbound_proxy: str | None = None,
        user_agent: str = "mcacm-sip/0.1",
        clock: Callable[[], float] | None = None,
        trace: MessageTrace | None = None,
        locate: Locator | None = None,
        success_log_level: int = logging.INFO,
        privileged: Iterable[str] = (),
    ) -> None:
        if any(lst.transport == "tls" for lst in listens) and tls_server is None:
            raise ValueError("a tls listener needs tls_server")
        self._listens = list(listens)
        self.tls_server = tls_server
        self.tls_client = tls_client
        self.timers = timers
        self.limits = limits
        self.outbound_proxy = outbound_proxy
        self.user_agent = user_agent
        self._clock = clock
        self._plain_futures = False  # (start): the loop makes asyncio.Future in create_future
        self.trace = trace
        self.success_log_level = success_log_level
        """Level of the one record per transaction that ended 2xx (others: INFO); an
        application that logs each exchange itself at INFO sets DEBUG (runtime.base.Node)."""
        """Called with every message received or transmitted; None (default) costs nothing."""
        self.privileged = frozenset(h.strip("[]") for h in privileged)
        """Source IPs (configured peers, trusted hosts) whose inbound connections always get
        in: past ``limits.max_connections`` or ``max_handshakes`` they displace the oldest
        connection from any other source; no per-source cap or buffer budget applies to them."""
        self.locate = locate
        """Consulted by :meth:`send` for the next hop's address before DNS (static hops)."""
        self.txn = TransactionLayer(timers)
        self._handlers: dict[str, Handler] = {}
        self.served = Served()
        """The methods served and the answers owed before a handler (RFC 3261 8.2)."""
        self._bound: list[tuple[Listen, str, int]] = []  # listener, advertised host, real port
        self._udp: dict[int, tuple[asyncio.DatagramTransport, UdpProtocol]] = {}  # by family
        self._servers: list[asyncio.Server] = []
        self._conns: dict[int, StreamConnection] = {}
        self._conn_by_addr: dict[tuple[str, str, int], StreamConnection] = {}
        # connects in progress, shared by every send to that address meanwhile: one connection,
        # and the sends are written in the order they were made (RFC 3261 18: one stream)
        self._connecting: dict[tuple[str, str, int, str | None],
                               asyncio.Future[StreamConnection]] = {}
        self._inbound_from: Counter[str] = Counter()  # open inbound connections per source IP
        self._no_tcp: dict[tuple[str, int], float] = {}  # address -> until when TCP is not tried
        self._inbound = 0  # open inbound connections, handshakes included
        self._outbound = 0  # connections we opened
        self._handshaking: dict[int, StreamConnection] = {}  # inbound TLS, oldest first
        self._buffered = 0  # bytes in the framers of every connection (max_buffer_bytes)
        # each client transaction's future, request and, for a send_soon without a timer of
        # its own, the callback its final response is handed to at once (see send_soon)
        self._waiters: dict[ClientKey, tuple[asyncio.Future[FinalResponse], OutgoingRequest,
                                             Done | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer = TimerDriver(self, clock=self.now, deadline=self.txn.get_timer)
        self._now: Callable[[], float] = clock if clock is not None else self._loop_time
        self._vias: dict[tuple[str, bool], tuple[str, int]] = {}  # (transport, IPv6) -> Via
        # outgoing requests' text but for the slots, by their fixed fields (None: no template)
        self._templates: dict[tuple[object, ...], RequestTemplate | None] = {}
        self._idle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("endpoint not started")
        return self._loop

    def now(self) -> float:
        return self._now()

    def _loop_time(self) -> float:
        return self.loop.time()  # raises until started

    async def start(self) -> None:
        """Bind every listener."""
        self._loop = loop = asyncio.get_running_loop()
        self._plain_futures = getattr(loop.create_future, "__func__", None) is _create_future
        if self._clock is None:
            # the loop's clock; asyncio's own loops read time.monotonic (BaseEventLoop.time):
            # read without the method's frame (four a request)
            self._now = (time.monotonic if getattr(loop.time, "__func__", None) is _loop_time
                         else loop.time)
        paired = _same_port_sockets(self._listens)
        for lst in self._listens:
            try:
                await self._bind(loop, lst, paired)
            except OSError as exc:  # name the address: EADDRINUSE alone does not
                where = f"[{lst.host}]" if ":" in lst.host else lst.host
                raise OSError(exc.errno, f"{exc.strerror or exc} on {lst.transport} "
                                         f"{where}:{lst.port}") from None
        self._idle = loop.call_later(self.limits.idle_timeout / 4, self._sweep_idle)

    async def _bind(self, loop: asyncio.AbstractEventLoop, lst: Listen,
                    paired: dict[tuple[str, str], socket.socket]) -> None:
        sock = paired.pop((lst.transport, lst.host), None) if lst.port == 0 else None
        where: dict[str, Any] = {"sock": sock} if sock is not None else {}
        if lst.transport == "udp":
            dgram, proto = await loop.create_datagram_endpoint(
                lambda: UdpProtocol(self),
                **(where or {"local_addr": (lst.host, lst.port)}),
            )
            sockname = dgram.get_extra_info("sockname")
            sock = dgram.get_extra_info("socket")
            # Absorb bursts instead of dropping them (the kernel caps it at rmem_max).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
            self._udp.setdefault(sock.family, (dgram, proto))
        else:
            name: Transport = lst.transport
            # TLS is started by the connection itself once counted (StreamConnection):
            # a connect that never starts a handshake takes a slot, and is timed
            tls = self.tls_server if name == "tls" else None
            server = await loop.create_server(
                lambda name=name, tls=tls: StreamConnection(
                    self, name, self.limits, self.now(), inbound=True, tls=tls),
                *(() if where else (lst.host, lst.port)), **where,
            )
            self._servers.append(server)
            sockname = server.sockets[0].getsockname()
        self._bound.append((lst, lst.advertise or str(sockname[0]), int(sockname[1])))

    async def close(self) -> None:
        """Stop: cancel every task and timer, close every socket and connection."""
        self._closed = True
        self._timer.stop()
        if self._idle is not None:
            self._idle.cancel()
        for task in [*self._tasks, *self._connecting.values()]:
            task.cancel()
        for fut, _, done in self._waiters.values():
            if not fut.done():
                fut.set_exception(SipTransportError("endpoint closed"))
                if done is not None:
                    fut.add_done_callback(done)  # (from a loop callback, as before)
        self._waiters.clear()
        for server in self._servers:
            server.close()
        for conn in list(self._conns.values()):
            conn.close()
        for dgram, _ in self._udp.values():
            dgram.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        if self._conns:
            await asyncio.wait([c.closed for c in self._conns.values()], timeout=2)

    # -- addresses -----------------------------------------------------------------------
    def _listener(self, transport: Transport, family_of: str | None = None) -> tuple[str, int]:
        for lst, host, port in self._bound:
            if lst.transport == transport and (
                family_of is None or (":" in family_of) == (":" in host)
            ):
                return host, port
        raise SipTransportError(f"no {transport} listener")

    def local_address(self, transport: Transport = "udp") -> tuple[str, int]:
        """Advertised host and real port of the first listener of ``transport``."""
        return self._listener(transport)

    def contact(self, transport: Transport = "udp", user: str | None = None) -> str:
        """A Contact value reaching this endpoint over ``transport``."""
        host, port = self._listener(transport)
        scheme = "sips" if transport == "tls" else "sip"
        userpart = f"{user}@" if user else ""
        param = ";transport=tcp" if transport == "tcp" else ""
        return f"<{scheme}:{userpart}{bracket(host)}:{port}{param}>"

    # -- serving ------------------------------------------------------------------------
    def serve(self, method: str, handler: Handler, *, accept: Iterable[str] | None = None) -> None:
        """Route requests of ``method`` to ``handler``; ``accept`` lists body media types."""
        self._handlers[method] = handler
        self.served.add(method, accept)

    def _dispatch(self, key: ServerKey, req: Request, source: Peer) -> None:
        reply = self.served.answer(req)
        if reply is None:
            incoming = IncomingRequest(self, key, req, source)
            try:
                result = self._handlers[req.method](incoming)
            except Exception:
                log.exception("handler for %s failed", req.method, extra=self._extra(req, source))
                result = Reply(500)
            # A plain Reply is the common case: skip isawaitable's ABC checks for it.
            if type(result) is not Reply:
                if type(result) is Answer:  # answered from its set_result: no Handle, no task
                    if result._state is _PENDING:
                        result._to = (self, key, req, source)
                    else:
                        self._answer_now((self, key, req, source), result)
                    return
                if isinstance(result, asyncio.Future):  # answered from its callback: no task
                    result.add_done_callback(partial(self._answered, key, req, source))
                    return
                if inspect.isawaitable(result):
                    self._spawn(self._await_reply(key, req, source, result))
                    return
            reply = result
        self._respond(key, req, source, reply)

    def _answered(
        self, key: ServerKey, req: Request, source: Peer, answer: asyncio.Future[Reply] | Answer
    ) -> None:
        if answer.cancelled() or self._closed:  # as a cancelled _await_reply: no answer
            return
        exc = answer.exception()
        if exc is not None:
            log.error("handler for %s failed", req.method, exc_info=exc,
                      extra=self._extra(req, source))
        self._respond(key, req, source, Reply(500) if exc is not None else answer.result())

    def _answer_now(self, to: tuple[SipEndpoint, ServerKey, Request, Peer],
                    answer: Answer) -> None:
        """``_answered`` for an :class:`Answer`, called when it is set: what the send raises
        goes to the loop's exception handler (as from a done callback), not to the setter."""
        try:
            if (answer._state is _DONE and answer._exc is None and answer._reply is not None
                    and not self._closed):
                self._respond(to[1], to[2], to[3], answer._reply)  # (_answered's reads, inline)
            else:
                self._answered(to[1], to[2], to[3], answer)
        except Exception as err:
            self.loop.call_exception_handler({
                "message": f"answering {to[2].method} failed", "exception": err,
                "answer": answer})

    async def _await_reply(
        self, key: ServerKey, req: Request, source: Peer, pending: Awaitable[Reply]
    ) -> None:
        try:
            reply = await pending
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handler for %s failed", req.method, extra=self._extra(req, source))
            reply = Reply(500)
        self._respond(key, req, source, reply)

    def _respond(self, key: ServerKey, req: Request, source: Peer, reply: Reply) -> None:
        try:
            if (reply.reason is None and not reply.headers and not reply.body
                    and reply.content_type is None and reply.to_tag is None):
                data = plain_response(req, reply.status, self.user_agent)  # a status alone
            else:
                data = build_response(
                    req, reply.status, reply.reason, to_tag=reply.to_tag, headers=reply.headers,
                    body=reply.body, content_type=reply.content_type, server=self.user_agent,
                )
        except ValueError:
            log.exception("handler for %s gave a bad reply", req.method)
            reply = Reply(500)
            data = build_response(req, 500, server=self.user_agent)
        # (_run of txn.respond's one Send, without the action)
        txn = self.txn
        dest = txn.answer(key, reply.status, data, self._now())
        if dest is not None:
            self._transmit(data, dest)
        self._timer.rearm_bound(txn._earliest, txn.get_timer)  # as _run
        status = reply.status  # as _record_level, inline: one per request
        level = self.success_log_level if 200 <= status < 300 else logging.INFO
        if status >= 200 and log.isEnabledFor(level):
            log.log(level, "%s %d", req.method, reply.status,
                    extra=self._extra(req, source, reply.status))

    def _record_level(self, status: int) -> int:
        return self.success_log_level if 200 <= status < 300 else logging.INFO

    @staticmethod
    def _extra(
        msg: Request | Response, peer: Peer, status: int | None = None, role: str = "uas"
    ) -> dict[str, Any]:
        method = msg.method if isinstance(msg, Request) else msg.cseq_method
        return {"call_id": msg.call_id, "method": method, "status": status, "role": role,
                "transport": peer.transport, "peer": f"{bracket(peer.host)}:{peer.port}"}

    # -- receive path (Sink) -------------------------------------------------------------
    def on_message(
        self, data: bytes, source: Peer, datagram: bool, local: tuple[str, int] = ("", 0)
    ) -> None:
        if self.trace is not None:
            self._trace("in", data, local, source)
        if data[:8] == b"SIP/2.0 ":  # a response to one of our requests, read and matched at once
            # (txn.receive_response_data and _run of its one action, without the action)
            txn = self.txn
            resp = own_response(data, txn._sent_by, self.limits)
            if resp is not None:
                key = (resp.branch, resp.cseq_method)
                if txn.own_answered(key, resp, source, self._now()):
                    self._deliver(key, resp, source)
                self._timer.rearm_bound(txn._earliest, txn.get_timer)  # as _run
                return
        try:
            msg = parse(data, datagram=datagram, limits=self.limits)
        except SipParseError as err:
            log.debug("bad message from %s: %s", source, err.reason)
            answer = error_response(data, err, self.user_agent)
            if answer is not None:
                self._transmit(answer, source)  # no valid Via: answer the source itself
            return
        now = self._now()
        if isinstance(msg, Request):
            # the socket's word, never the message's, is who sent it (docs/decisions.md)
            msg.stamp_source(_arrival(Arrival, (source.transport, source.host, source.port,
                                                self.peer_certificate(source)
                                                if source.transport == "tls" else None)))
            # (txn.receive_request and _run of its actions; a new request delivered as
            # its one DeliverRequest would be, without the action)
            txn = self.txn
            got = txn.take_request(msg, source, now)
            if isinstance(got, list):
                self._run(got)
                return
            self._dispatch(got, msg, source)
            self._timer.rearm_bound(txn._earliest, txn.get_timer)  # as _run
        else:
            self._run(self.txn.receive_response(msg, source, now))

    def on_frame_error(self, error: FrameError, source: Peer) -> None:
        log.debug("stream error from %s: %s", source, error.reason)
        answer = error_response(error.head, SipParseError(error.status, error.reason),
                                self.user_agent)
        if answer is not None:
            self._transmit(answer, source)

    def on_connection(self, conn: StreamConnection) -> bool:
        """Admit a new connection, or refuse it (False: closed at once).  Inbound and outbound
        have budgets of their own; a privileged source displaces an unprivileged connection
        rather than be refused (docs/decisions.md "Connection budgets")."""
        if self._closed:
            return False
        peer, limits = conn.peer, self.limits
        if not conn.inbound:
            if self._outbound >= limits.max_outbound_connections:
                log.warning("connection to %s refused: %d outbound open", peer, self._outbound)
                return False
            self._outbound += 1
        else:
            privileged = peer.host in self.privileged
            if not privileged and (self._inbound_from[peer.host]
                                   >= limits.max_connections_per_source):
                log.debug("connection from %s refused: too many from that address", peer)
                return False
            if self._inbound >= limits.max_connections and not (
                    privileged and self._evict(self._conns.values())):
                log.debug("connection from %s refused: %d open", peer, self._inbound)
                return False
            if conn.handshaking and len(self._handshaking) >= limits.max_handshakes and not (
                    privileged and self._evict(self._handshaking.values())):
                log.debug("connection from %s refused: %d TLS handshakes in progress", peer,
                          len(self._handshaking))
                return False
            self._inbound += 1
            self._inbound_from[peer.host] += 1
            if conn.handshaking:
                self._handshaking[conn.id] = conn
        self._conns[conn.id] = conn
        self._conn_by_addr[(peer.transport, peer.host, peer.port)] = conn
        return True

    def _evict(self, among: Iterable[StreamConnection]) -> bool:
        """Close the inbound connection from an unprivileged source silent the longest, to
        make room for a privileged one; False if there is none."""
        victims = [c for c in among if c.inbound and c.peer.host not in self.privileged]
        if not victims:
            return False
        victim = min(victims, key=lambda c: c.last_activity)
        log.info("connection from %s closed to make room for a configured peer", victim.peer)
        self._forget(victim)
        victim.close()
        return True

    def on_secured(self, conn: StreamConnection) -> None:
        self._handshaking.pop(conn.id, None)

    def on_buffered(self, conn: StreamConnection) -> bool:
        """``conn``'s framer holds a different number of bytes: False if that takes the
        connections over ``limits.max_buffer_bytes`` (the connection is then closed)."""
        now = conn.framer.buffered
        grown = now - conn.accounted
        if (grown > 0 and self._buffered + grown > self.limits.max_buffer_bytes
                and conn.peer.host not in self.privileged and conn.id in self._conns):
            log.warning("connection from %s closed: connection buffers over %d bytes",
                        conn.peer, self.limits.max_buffer_bytes)
            self._forget(conn)
            return False
        if conn.id in self._conns:
            self._buffered += grown
            conn.accounted = now
        return True

    def _forget(self, conn: StreamConnection) -> None:
        """Take ``conn`` out of every count (once; before or after it is closed)."""
        if self._conns.pop(conn.id, None) is None:
            return
        peer = conn.peer
        self._buffered -= conn.accounted
        conn.accounted = 0
        if conn.inbound:
            self._inbound -= 1
            self._handshaking.pop(conn.id, None)
            self._inbound_from[peer.host] -= 1
            if not self._inbound_from[peer.host]:
                del self._inbound_from[peer.host]
        else:
            self._outbound -= 1
        addr = (peer.transport, peer.host, peer.port)
        if self._conn_by_addr.get(addr) is conn:
            del self._conn_by_addr[addr]

    def peer_certificate(self, peer: Peer) -> dict[str, Any] | None:
        """The verified certificate the remote end of ``peer``'s TLS connection showed."""
        conn = self._conns.get(peer.conn) if peer.transport == "tls" and peer.conn else None
        transport = conn.transport if conn is not None else None
        cert = transport.get_extra_info("peercert") if transport is not None else None
        return cert or None  # {}: shown but not verified (CERT_NONE) -> not an identity

    def on_connection_lost(self, conn: StreamConnection) -> None:
        self._forget(conn)

    def _sweep_idle(self) -> None:
        cutoff = self.loop.time() - self.limits.idle_timeout
        for conn in list(self._conns.values()):
            if conn.last_activity < cutoff:
                conn.close()
        self._idle = self.loop.call_later(self.limits.idle_timeout / 4, self._sweep_idle)

    # -- actions and timers --------------------------------------------------------------
    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is Send:
                self._transmit(action.data, action.dest)
            elif type(action) is DeliverRequest:
                self._dispatch(action.key, action.request, action.source)
            elif type(action) is DeliverResponse:
                self._deliver(action.key, action.response, action.source)
            elif type(action) is ClientTimeout:
                waiter = self._waiters.pop(action.key, None)
                if waiter is not None and not waiter[0].done():
                    waiter[0].set_exception(SipTimeout(f"no final response to {action.key[1]}"))
                    if waiter[2] is not None:
                        waiter[0].add_done_callback(waiter[2])  # from a loop callback
                log.info("%s timeout", action.key[1],
                         extra={"call_id": waiter[1].call_id if waiter else None,
                                "method": action.key[1], "status": None, "role": "uac",
                                "transport": None, "peer": None})
            elif type(action) is ServerTimeout:
                log.warning("no answer from the %s handler in %.1f s: sent %d",
                            action.request.method, self.timers.app, action.status,
                            extra=self._extra(action.request, Peer("udp", "", 0), action.status))
        # the layer's deadline, or a bound of it after a transaction ended at it: the deadline
        # is read (get_timer) only when the wake-up armed is not sooner
        txn = self.txn
        self._timer.rearm_bound(txn._earliest, txn.get_timer)

    def _deliver(self, key: ClientKey, resp: Response, source: Peer) -> None:
        """A client transaction's final response (its DeliverResponse): to its waiter, then
        the record; then ``done`` of a :meth:`send_soon` gets the future. What ``done`` raises
        goes to the loop's exception handler, as from the loop callback a future's
        done-callback is (and the caller goes on: its timer)."""
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter[0].done():
            waiter[0].set_result(_final_response(resp, source, waiter[1]))
        else:
            waiter = None
        status = resp.status  # as _record_level, inline: two per request
        level = self.success_log_level if 200 <= status < 300 else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "%s %d", resp.cseq_method, status,
                    extra=self._extra(resp, source, status, "uac"))
        if waiter is not None and waiter[2] is not None:  # after the record, as a callback was
            done, fut = waiter[2], waiter[0]
            try:
                done(fut)
            except Exception as exc:
                self.loop.call_exception_handler({
                    "message": f"Exception in callback {done!r}({fut!r})", "exception": exc,
                    "future": fut})

    def get_timer(self) -> float | None:
        """The transaction layer's next deadline (:class:`~mcacm_sip.sip.timer.Timed`)."""
        return self.txn.get_timer()

    def handle_timer(self, now: float) -> None:
        """Run what the transaction layer's timers produce (retransmissions, timeouts)."""
        self._run(self.txn.handle_timer(now))

    def _trace(
        self, direction: Literal["in", "out"], data: bytes, local: tuple[str, int], remote: Peer
    ) -> None:
        hook = self.trace
        if hook is None:  # unset meanwhile
            return
        try:
            hook(TracedMessage(time.time(), direction, remote.transport, local, remote,
                                     data))
        except Exception:  # a broken observer must not break signalling
            log.exception("trace hook failed")

    def _transmit(self, data: bytes, dest: Peer) -> None:
        if dest.transport == "udp":
            udp = self._udp.get(socket.AF_INET6 if ":" in dest.host else socket.AF_INET)
            if udp is None:
                log.warning("no UDP socket for %s", dest.host)
                return
            udp[0].sendto(data, (dest.host, dest.port))
            if self.trace is not None:
                self._trace("out", data, udp[1].local, dest)
            return
        conn = self._conns.get(dest.conn) if dest.conn is not None else None
        if conn is None or not conn.is_open:
            conn = self._conn_by_addr.get((dest.transport, dest.host, dest.port))
        if conn is not None and conn.is_open:
            self._write(conn, data)
        else:  # RFC 3261 18.2.2: the connection is gone, open a new one to the same address
            self._spawn(self._connect_and_write(data, replace(dest, conn=None)))

    async def _connect_and_write(self, data: bytes, dest: Peer) -> None:
        try:
            conn = await self._connect(dest, None)
        except SipTransportError as exc:
            log.warning("cannot send to %s: %s", dest, exc)
            return
        self._write(conn, data)

    def _write(self, conn: StreamConnection, data: bytes) -> None:
        conn.write(data)
        if self.trace is not None:
            self._trace("out", data, conn.local, conn.peer)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, dest: Peer, server_hostname: str | None) -> StreamConnection:
        conn = self._conn_by_addr.get((dest.transport, dest.host, dest.port))
        if conn is not None and conn.is_open:
            return conn
        key = (dest.transport, dest.host, dest.port, server_hostname)
        pending = self._connecting.get(key)
        if pending is None:
            pending = self._connecting[key] = asyncio.ensure_future(
                self._open_connection(dest, server_hostname))
            pending.add_done_callback(lambda done: self._connected(key, done))
        # shielded: one waiter cancelled must not cancel the connect the others wait for
        return await asyncio.shield(pending)

    def _connected(self, key: tuple[str, str, int, str | None],
                   done: asyncio.Future[StreamConnection]) -> None:
        if self._connecting.get(key) is done:
            del self._connecting[key]
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have gone

    async def _open_connection(self, dest: Peer, server_hostname: str | None
                               ) -> StreamConnection:
        if dest.transport == "tls" and self.tls_client is None:
            raise SipTransportError("no tls_client context")
        if self._outbound + len(self._connecting) > self.limits.max_outbound_connections:
            raise SipTransportError("too many outbound connections")
        try:
            _, proto = await self.loop.create_connection(
                lambda: StreamConnection(self, dest.transport, self.limits, self.now()),
                dest.host, dest.port,
                ssl=self.tls_client if dest.transport == "tls" else None,
                server_hostname=(server_hostname or dest.host) if dest.transport == "tls" else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise SipTransportError(f"connect to {dest.host}:{dest.port} failed: {exc}") from exc
        if not proto.is_open:
            raise SipTransportError("connection refused by limits")
        return proto

    async def _tcp_instead(self, dest: Peer, server_hostname: str | None) -> Peer | None:
        """A TCP connection to ``dest``'s address for a request too large for UDP, or None
        if it is refused or not set up within ``limits.handshake_timeout`` (then that address
        is not tried again for ``NO_TCP_FOR`` seconds: a silent firewall costs one wait)."""
        addr = (dest.host, dest.port)
        if self._no_tcp.get(addr, 0.0) > self.loop.time():
            return None
        tcp = replace(dest, transport="tcp", conn=None)
        try:
            async with asyncio.timeout(self.limits.handshake_timeout):
                conn = await self._connect(tcp, server_hostname)
        except (SipTransportError, TimeoutError):
            self._no_tcp[addr] = self.loop.time() + NO_TCP_FOR
            if len(self._no_tcp) > 1024:  # forget the oldest failures
                del self._no_tcp[next(iter(self._no_tcp))]
            return None
        return replace(tcp, conn=conn.id)

    # -- client --------------------------------------------------------------------------
    new_request = staticmethod(new_request)
    """Build a request (:func:`mcacm_sip.sip.request.new_request`); in a dialog pass the tags,
    Call-ID, CSeq, route set and target."""

    def _serialise(self, req: OutgoingRequest, branch: str, dest: Peer
                   ) -> tuple[bytes, str | None]:
        """``req`` on the wire to ``dest``, and the text before the first ";" of the top Via
        written (None: the transaction reads it from the bytes when a response needs it)."""
        transport, user_agent = dest.transport, self.user_agent
        # _via_address(dest), its cache read inline: two per request
        host, port = self._vias.get((transport, ":" in dest.host)) or self._via_address(dest)
        key = template_key(req, transport, host, port, user_agent)
        templates = self._templates
        template = templates.get(key)
        if template is None:
            if key in templates:  # fields no template holds: written (or refused) each time
                return encode_request(req, branch, transport, host, port, user_agent), None
            template = RequestTemplate.of(req, transport, host, port, user_agent)
            if len(templates) >= MAX_TEMPLATES:  # the oldest goes
                del templates[next(iter(templates))]
            templates[key] = template
            if template is None:
                return encode_request(req, branch, transport, host, port, user_agent), None
        return template.encode(req, branch), template.sent

    def _via_address(self, dest: Peer) -> tuple[str, int]:
        key = (dest.transport, ":" in dest.host)
        known = self._vias.get(key)
        if known is not None:
            return known
        try:
            known = self._vias[key] = self._listener(dest.transport, dest.host)
            return known
        except SipTransportError:
            conn = self._conns.get(dest.conn or -1)
            if conn is not None and conn.transport is not None:
                name = conn.transport.get_extra_info("sockname")
                return str(name[0]), int(name[1])
            raise

    def _target(self, req: OutgoingRequest) -> tuple[str, _Hop, Transport]:
        """RFC 3261 8.1.2: outbound proxy, else the first (loose) Route, else the Request-URI
        (which is the strict router when the request was strict-routed)."""
        hop = _hop(self.outbound_proxy or (req.route[0] if req.route and not req.strict
                                           else req.uri))
        return hop.raw, hop, hop.transport or req.transport or "udp"

    async def _resolve(self, host: str, port: int, transport: Transport) -> str:
        """An IP for ``host``: literals as is, names by getaddrinfo (no SRV/NAPTR)."""
        host = host.strip("[]")
        if is_ip(host):
            return host
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        try:
            infos = await self.loop.getaddrinfo(host, port, type=kind)
        except OSError as exc:
            raise SipTransportError(f"DNS lookup of {host} failed: {exc.strerror or exc}"
                                    ) from exc
        families = {socket.AF_INET6 if ":" in h else socket.AF_INET for _, h, _ in self._bound}
        for family, *_, addr in infos:
            if family in families:
                return str(addr[0])
        return str(infos[0][4][0])

    async def send(
        self, request: OutgoingRequest, timeout: float | None = None, via: Peer | None = None
    ) -> FinalResponse:
        """Send ``request`` in a new client transaction and return its final response.

        Raises:
            SipTimeout: Timer F fired, or ``timeout`` elapsed.
            SipTransportError: no route, resolution or connection failure, endpoint closed.
        """
        if self._closed or self._loop is None:
            raise SipTransportError("endpoint not running")
        server_hostname: str | None = None
        if via is not None:
            dest = via
        else:
            raw, uri, transport = self._target(request)
            located = self.locate(raw) if self.locate is not None else None
            if located is None:
                port = uri.port or DEFAULT_PORTS[transport]
                dest = Peer(transport, await self._resolve(uri.host, port, transport), port)
            elif transport == "tls" and located.transport != "tls":
                # RFC 3261 26.2.2: a SIPS URI is never sent over an unprotected hop
                raise SipTransportError(f"{raw}: located to a {located.transport} hop")
            else:
                dest = located
            # RFC 5922 7.3: a TLS server is checked against the URI's host, not the hop's
            server_hostname = uri.host.strip("[]")
        branch = MAGIC_COOKIE + token_hex(8)
        if dest.reliable and (dest.conn is None or dest.conn not in self._conns):
            conn = await self._connect(replace(dest, conn=None), server_hostname)
            dest = replace(dest, conn=conn.id)
        data, sent = self._serialise(request, branch, dest)
        if (
            dest.transport == "udp"
            and via is None
            and len(data) > self.limits.udp_mtu_switch
            and "transport=udp" not in (self.outbound_proxy or request.uri).lower()
        ):
            # RFC 3261 18.1.1: too big for UDP without a known path MTU: use TCP (no TCP
            # listener of ours is needed: the answer comes back on the connection), and fall
            # back to UDP when TCP cannot be had -- unless it cannot fit a datagram at all
            tcp = await self._tcp_instead(dest, server_hostname)
            if tcp is not None:
                dest = tcp
                data, sent = self._serialise(request, branch, dest)
            elif len(data) > MAX_DATAGRAM:
                raise SipTransportError(f"{len(data)} bytes do not fit in UDP and "
                                        f"{dest.host}:{dest.port} takes no TCP")
        key: ClientKey = (branch, request.method)
        fut: asyncio.Future[FinalResponse] = self.loop.create_future()
        self._waiters[key] = (fut, request, None)
        self._run(self.txn.send_request(key, data, dest, self._now(), sent))
        try:
            if timeout is None:
                return await fut
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            self.txn.cancel_client(key)
            raise SipTimeout(f"no final response to {request.method} in {timeout} s") from None
        finally:
            self._waiters.pop(key, None)

    def send_soon(
        self, request: OutgoingRequest, timeout: float | None,
        done: Done,
    ) -> None:
        """:meth:`send` without an asyncio task and timeout context per request: ``done`` gets
        a finished future holding the final response, :class:`SipTimeout` or
        :class:`SipTransportError` (or a cancelled one: the endpoint closed); never from inside
        this call. Without a timer of its own (below), a final response is handed over from
        the loop callback that received it, just after its record; any other outcome from a
        loop callback of its own.

        The common case -- a located UDP hop, a request that fits a datagram -- starts at once;
        any other (a name to resolve, a connection to open, a request too big for UDP) runs
        :meth:`send` in a task. A ``timeout`` no shorter than Timer F (64*T1) arms no timer of
        its own: Timer F ends the transaction first (SipTimeout, and the endpoint's "timeout"
        record), as it already did when it fired before the timeout."""
        dest = self._udp_hop(request)
        branch = MAGIC_COOKIE + token_hex(8)
        data, sent = (b"", None) if dest is None else self._serialise(request, branch, dest)
        if dest is None or (len(data) > self.limits.udp_mtu_switch  # as send(): TCP instead
                            and "transport=udp" not in (self.outbound_proxy
                                                        or request.uri).lower()):
            self._spawn(self._send_then(request, timeout, done))  # cancelled by close()
            return
        key: ClientKey = (branch, request.method)
        loop = self._loop  # (running: _udp_hop found a hop)
        assert loop is not None
        # loop.create_future() without its frame (asyncio's loops make this Future; another
        # loop's own futures are made by its create_future)
        fut: asyncio.Future[FinalResponse] = (
            _Future(loop=loop) if self._plain_futures else loop.create_future())
        if timeout is None or (timeout >= 64 * self.timers.t1 and self._clock is None):
            # Timer F (64*T1 on the loop's clock, RFC 3261 17.1.2.2) ends the transaction
            # first, with SipTimeout; every outcome takes the waiter out before it is set.
            # The final response hands ``done`` its future at once, from the _run that
            # delivers it (its message's loop callback: no asyncio Handle per send); Timer F
            # and close() add ``done`` as the future's callback
            self._waiters[key] = (fut, request, done)
            # send_request's one action (Send(data, dest)) done here, as _run would do it
            txn = self.txn
            txn.start_request(key, data, dest, self._now(), sent)
            self._transmit(data, dest)
            self._timer.rearm_bound(txn._earliest, txn.get_timer)  # as _run
            return
        expiry = loop.call_later(
            timeout, self._expire, key, fut, f"no final response to {request.method} in "
            f"{timeout} s")

        def settled(fut: asyncio.Future[FinalResponse]) -> None:
            self._waiters.pop(key, None)
            expiry.cancel()
            done(fut)

        fut.add_done_callback(settled)
        self._waiters[key] = (fut, request, None)
        self._run(self.txn.send_request(key, data, dest, self._now(), sent))

    async def _send_then(
        self, request: OutgoingRequest, timeout: float | None,
        done: Callable[[asyncio.Future[FinalResponse]], object],
    ) -> None:
        """:meth:`send`, its outcome handed to ``done`` as soon as it is known (in the task,
        not one loop iteration later as a done-callback of the task would be)."""
        outcome: asyncio.Future[FinalResponse] = self.loop.create_future()
        try:
            outcome.set_result(await self.send(request, timeout))
        except (SipTimeout, SipTransportError) as exc:
            outcome.set_exception(exc)
        done(outcome)

    def _udp_hop(self, request: OutgoingRequest) -> Peer | None:
        """The UDP hop ``request`` goes to when :meth:`send` would need no await to get there
        (a located hop), else None."""
        if self._closed or self._loop is None:
            return None
        raw, hop, transport = self._target(request)
        if transport != "udp":
            return None
        dest = self.locate(raw) if self.locate is not None else None
        if dest is None:
            # what send() finds without a lookup: a target naming an IP address (a registered
            # contact, RFC 3261 18.1.1 / 19.1.2: its port, else 5060)
            host = hop.host.strip("[]")
            return Peer("udp", host, hop.port or DEFAULT_PORTS["udp"]) if is_ip(host) else None
        return dest if dest.transport == "udp" else None

    def _expire(self, key: ClientKey, fut: asyncio.Future[FinalResponse], why: str) -> None:
        if not fut.done():
            self.txn.cancel_client(key)
            fut.set_exception(SipTimeout(why))


__all__ = [
    "FinalResponse",
    "Handler",
    "IncomingRequest",
    "Listen",
    "Locator",
    "MessageTrace",
    "OutgoingRequest",
    "SipEndpoint",
    "TracedMessage",
]
