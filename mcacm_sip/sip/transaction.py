"""Non-INVITE transactions, sans-I/O (RFC 3261 17.1.2, 17.1.3, 17.2.2, 17.2.3).

The layer owns no socket and no clock: every call takes ``now`` and returns the actions the
adapter must perform; :meth:`TransactionLayer.get_timer` says when to call
:meth:`TransactionLayer.handle_timer` next (the aioquic pattern). INVITE is out of scope; an ACK
is absorbed (it never matches a non-INVITE transaction, RFC 3261 17.2.3).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from itertools import count
from typing import Final, Literal

from mcacm_sip.frozen import builder

from .headers import Via
from .message import (
    DEFAULT_LIMITS,
    MAGIC_COOKIE,
    Limits,
    Request,
    Response,
    _parse_via,
    build_response,
    own_response,
    read_raw,
)

Transport = Literal["udp", "tcp", "tls"]
DEFAULT_PORTS: dict[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061}  # RFC 3261 19.1.2


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 17.1.1.1 / table 4 values, plus how long the application may take to answer."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    app: float = 30.0  # < 64*T1, so the client hears our 500 before its Timer F fires


@dataclass(frozen=True, slots=True)
class Peer:
    """A transport address: where a message came from or goes to.

    ``host`` is an IP literal without brackets; ``conn`` names a TCP/TLS connection (None: any
    open connection to host:port, or a new one).
    """

    transport: Transport
    host: str
    port: int
    conn: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


ServerKey = tuple[str, ...]
ClientKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` to ``dest``."""

    data: bytes
    dest: Peer


@dataclass(frozen=True, slots=True)
class DeliverRequest:
    """A new request for the application; answer it with :meth:`TransactionLayer.respond`."""

    key: ServerKey
    request: Request
    source: Peer


@dataclass(frozen=True, slots=True)
class DeliverResponse:
    """The final response of a client transaction."""

    key: ClientKey
    response: Response
    source: Peer


@dataclass(frozen=True, slots=True)
class ClientTimeout:
    """Timer F fired: no final response (RFC 3261 17.1.2.2)."""

    key: ClientKey


@dataclass(frozen=True, slots=True)
class ServerTimeout:
    """The application did not answer within ``Timers.app``; the layer sent ``status``."""

    key: ServerKey
    request: Request
    status: int


Action = Send | DeliverRequest | DeliverResponse | ClientTimeout | ServerTimeout

# The hot path's actions built without a call per field (mcacm_sip/frozen.py): the classes'
# own instances, equal to their constructors'
_send: Callable[[bytes, Peer], Send] = builder(Send)
_deliver_request: Callable[[ServerKey, Request, Peer], DeliverRequest] = builder(DeliverRequest)
_deliver_response: Callable[[ClientKey, Response, Peer], DeliverResponse] = builder(
    DeliverResponse)


class State(Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"


# A member as a global: Python 3.11 finds `State.TRYING` through EnumType's __getattr__
# hook, far slower than a global's load (3.12 dropped the hook).
_TRYING: Final = State.TRYING


# A timer entry: (when, seq, key, kind), the key of the transaction (or completed one) it is
# for. A transaction holds the entries of its armed timers; an entry it no longer holds
# (re-armed, stopped, transaction ended) is stale and dropped when it reaches the head of its
# queue. An entry names its transaction by key, never holds it: a stale one left in a queue
# for up to 64*T1 keeps no transaction alive, and being a tuple of strings and numbers the
# collector stops tracking it (docs/decisions.md "Round 6 (issue 18), the live heap").
_Entry = tuple[float, int, tuple[str, ...], int]
# timer kinds: a client transaction's E and F, a completed client's K; a server
# transaction's application deadline, a completed server's J
_E, _F, _K, _APP, _J = 0, 1, 2, 3, 4


class _ClientTxn:
    __slots__ = ("data", "dest", "e_entry", "end_entry", "f_at", "interval", "key", "sent",
                 "state")

    def __init__(self, key: ClientKey, data: bytes, dest: Peer, f_at: float,
                 sent: str | None = None) -> None:
        self.key = key
        self.data = data
        self.dest = dest
        self.state = _TRYING
        self.interval = 0.0
        self.e_entry: _Entry | None = None  # Timer E
        # Timer F: due at f_at; while Timer E runs (it always fires first), its entry is
        # armed only when the next Timer E would not come before it
        self.end_entry: _Entry | None = None
        self.f_at = f_at
        # our top Via's text before its first ";": as the sender wrote it, or read once
        self.sent: str | None = _UNREAD if sent is None else sent


_UNREAD = "\x00"  # ``_ClientTxn.sent`` not read yet (no Via text is a lone NUL)


def _sent_text(data: bytes) -> str | None:
    """The text before the first ";" of the top Via of the request in ``data`` as we wrote it
    (``SIP/2.0/UDP 192.0.2.1:5060``: ``encode_request`` writes the Via first), or None when
    its first header is not ``Via: `` (then ``own_response`` never matches it)."""
    start = data.find(b"\r\n") + 2
    if not data.startswith(b"Via: ", start):
        return None
    end = data.find(b"\r\n", start)
    semi = data.find(b";", start, end)
    return data[start + 5 : semi if semi >= 0 else end].decode("ascii", "replace")


def _same_sent_by(resp: Response, txn: _ClientTxn) -> bool:
    """RFC 3261 18.1.2: a response whose top Via does not carry the sent-by (and transport) the
    top Via of ``txn``'s request carried is not ours. Bytes without a Via (a caller driving the
    layer with other bytes) are not compared."""
    sent = txn.sent
    if sent == _UNREAD:
        sent = txn.sent = _sent_text(txn.data)
    if sent is None:
        sent = read_raw(txn.data).header("via")
        if sent is None:
            return True
    mine = _OUR_VIAS.get(sent)
    if mine is None:
        mine = _parse_via(sent)
        if mine is None:  # never for a request we wrote: our own Via reads
            return False
        if len(_OUR_VIAS) < 64:
            _OUR_VIAS[sent] = mine
    host, port = resp.sent_by()
    parts = resp._via_parts  # the common form's transport, without building the Via
    transport = parts[0] if parts is not None else resp.via.transport
    return (mine.transport.upper() == transport.upper() and mine.host.lower() == host.lower()
            and (mine.port or _via_port(mine.transport)) == (port or _via_port(transport)))


_OUR_VIAS: dict[str, Via] = {}
"""Our own top Vias' text before the first ";", read: an endpoint writes a few."""


def _via_port(transport: str) -> int:
    return DEFAULT_PORTS.get(transport.lower(), 5060)  # RFC 3261 18.1.2 / 19.1.2


class _ServerTxn:
    __slots__ = ("dest", "e_entry", "end_entry", "key", "request", "response", "state")

    def __init__(self, key: ServerKey, request: Request | None, dest: Peer) -> None:
        self.key = key
        self.request = request  # kept until answered (for the app-deadline answer)
        self.dest = dest
        self.state = _TRYING
        self.response: bytes | None = None  # last provisional sent, re-sent on retransmission
        self.e_entry: _Entry | None = None  # never armed: Timer E is a client timer
        self.end_entry: _Entry | None = None  # the application deadline


# What a completed UDP server transaction keeps until Timer J (RFC 3261 17.2.2: re-send the
# final response to each retransmission of the request): the response, where it went
# (host, port; the transport is UDP) and the seq of its Timer J entry. A tuple of bytes,
# strings and ints: the collector stops tracking it, so the 64*T1 of completed transactions a
# loaded node holds cost a full collection nothing. A completed client transaction keeps
# only the seq of its Timer K entry (17.1.2.2: absorb retransmitted final responses).
_Completed = tuple[bytes, str, int, int]


def server_key(req: Request) -> ServerKey:
    """RFC 3261 17.2.3: branch + sent-by + method; RFC 2543 fallback without the magic cookie.

    The fallback (branch absent or without ``z9hG4bK``) keys on Call-ID, CSeq, From tag, the
    whole top Via and the method, which is what identifies a retransmission from such a peer.
    """
    if req.branch.startswith(MAGIC_COOKIE):
        parts = req._via_parts  # sent_by(), inline for the common form
        host, port = (parts[1], parts[2]) if parts is not None else req.sent_by()
        return (req.branch, host.lower(), str(port or ""), req.method)
    return ("2543", req.call_id, str(req.cseq), req.from_tag or "", req.vias[0], req.method)


def response_destination(req: Request, source: Peer) -> Peer:
    """Where responses to ``req`` go (RFC 3261 18.2.2, RFC 3581 4).

    Reliable: the connection the request came on; should it close, a new connection to the
    source address and the sent-by port. Unreliable: the source address, and the source port
    when ``rport`` was requested, else the sent-by port. ``maddr`` is not honoured (multicast).
    """
    if source.transport != "udp":  # (``reliable``, without the property's call)
        port = req.sent_by()[1] or DEFAULT_PORTS[source.transport]
        return Peer(source.transport, source.host, port, source.conn)
    if req.via_has("rport"):
        return source if source.conn is None else Peer("udp", source.host, source.port)
    return Peer("udp", source.host, req.sent_by()[1] or DEFAULT_PORTS["udp"])


class TransactionLayer:
    """Client and server non-INVITE transactions of one endpoint."""

    def __init__(self, timers: Timers = Timers()) -> None:
        self.timers = timers
        # keyed by ClientKey; typed as any key, as the timer entries name it
        self._client: dict[tuple[str, ...], _ClientTxn] = {}
        self._server: dict[ServerKey, _ServerTxn] = {}
        # completed UDP transactions waiting for Timer K / J, compact (see _Completed)
        self._client_done: dict[tuple[str, ...], int] = {}
        self._server_done: dict[ServerKey, _Completed] = {}
        # Timers of a fixed duration (F, J, K, the application deadline) are armed in time order
        # as long as ``now`` does not go back, so each duration gets a FIFO queue: O(1) where a
        # heap of every live transaction costs O(log n) per push and pop (figures:
        # docs/sip-layer.md "Timers"). Timer E (doubling) and anything armed out of order go to
        # the heap.
        self._heap: list[_Entry] = []
        self._fifo: dict[float, deque[_Entry]] = {}
        self._seq = count()
        # The earliest live deadline, kept while known (``_known``): arming can only bring it
        # forward; a timer stopped at exactly that deadline makes it unknown until the next
        # get_timer walks the queues. So get_timer costs a walk only when the head went stale.
        # While unknown it is a bound: no later than the earliest live deadline (stopping
        # timers only delays that, and arming brings the bound forward too), never None, and
        # some transaction is live (each holds an armed timer), so get_timer() is not None
        # either: the endpoint's timer driver compares the bound with its wake-up and reads
        # the deadline only when the bound comes first (TimerDriver.rearm_bound).
        self._earliest: float | None = None
        self._known = True
        self._methods: set[str] = set()  # methods seen, for matching a CANCEL (capped)

    # -- introspection -------------------------------------------------------------------
    @property
    def client_count(self) -> int:
        """Client transactions, completed ones waiting for Timer K included."""
        return len(self._client) + len(self._client_done)

    @property
    def server_count(self) -> int:
        """Server transactions, completed ones waiting for Timer J included."""
        return len(self._server) + len(self._server_done)

    # -- timers --------------------------------------------------------------------------
    def _push(self, entry: _Entry, duration: float | None) -> None:
        """Queue ``entry``: on its duration's FIFO while in time order, else on the heap."""
        when = entry[0]
        if self._earliest is None or when < self._earliest:  # (unknown: the bound moves too)
            self._earliest = when
        if duration is not None:
            fifo = self._fifo.get(duration)
            if fifo is None:
                fifo = self._fifo[duration] = deque()
            if not fifo or fifo[-1][0] <= when:
                fifo.append(entry)
                return
        heapq.heappush(self._heap, entry)

    def _arm(self, when: float, txn: _ClientTxn | _ServerTxn, kind: int,
             duration: float | None = None) -> None:
        """Arm ``txn``'s timer ``kind`` at ``when``, replacing the one it had armed."""
        entry = (when, next(self._seq), txn.key, kind)
        if kind == _E:
            old, txn.e_entry = txn.e_entry, entry
        else:
            old, txn.end_entry = txn.end_entry, entry
        if old is not None and old[0] == self._earliest:  # as _stop
            self._known = False
        self._push(entry, duration)

    def _stop(self, txn: _ClientTxn | _ServerTxn, kind: int) -> None:
        """Stop ``txn``'s timer ``kind`` (``_E``: Timer E; any other: its end timer, Timer F or
        the application deadline): its entry goes stale."""
        entry = txn.e_entry if kind == _E else txn.end_entry
        if entry is None:
            return
        if kind == _E:
            txn.e_entry = None
        else:
            txn.end_entry = None
        if entry[0] == self._earliest:
            self._known = False

    def _end(self, txn: _ClientTxn | _ServerTxn) -> None:
        """``txn`` is over: every timer it armed goes stale (``_stop`` of both, in one call:
        three per request)."""
        e, end = txn.e_entry, txn.end_entry
        txn.e_entry = txn.end_entry = None
        earliest = self._earliest
        if (e is not None and e[0] == earliest) or (end is not None and end[0] == earliest):
            self._known = False

    def _live(self, entry: _Entry) -> bool:
        """Whether ``entry`` is still armed: its transaction (by key) holds it."""
        kind = entry[3]
        if kind == _J:
            done = self._server_done.get(entry[2])
            return done is not None and done[3] == entry[1]
        if kind == _K:
            return self._client_done.get(entry[2]) == entry[1]
        txn: _ClientTxn | _ServerTxn | None = (self._server if kind == _APP
                                               else self._client).get(entry[2])
        return txn is not None and (txn.e_entry if kind == _E else txn.end_entry) is entry

    def _next(self) -> tuple[_Entry | None, deque[_Entry] | None]:
        """The earliest live timer and its queue (None: the heap); stale heads are dropped."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        best = heap[0] if heap else None
        queue = None
        server, client = self._server, self._client
        server_done, client_done = self._server_done, self._client_done
        for fifo in self._fifo.values():
            while fifo:
                head = fifo[0]
                # _live(head), inline: a FIFO head is read about eight times per request
                kind = head[3]
                if kind == _J:
                    done = server_done.get(head[2])
                    live = done is not None and done[3] == head[1]
                elif kind == _K:
                    live = client_done.get(head[2]) == head[1]
                else:
                    txn = (server if kind == _APP else client).get(head[2])
                    live = txn is not None and (
                        txn.e_entry if kind == _E else txn.end_entry) is head
                if live:
                    # (when, seq) decide: seq is unique, so the comparison never reaches the key
                    if best is None or head < best:
                        best, queue = head, fifo
                    break
                fifo.popleft()
        self._earliest = None if best is None else best[0]
        self._known = True
        return best, queue

    def get_timer(self) -> float | None:
        """The next deadline at which :meth:`handle_timer` has work, or None."""
        if not self._known:
            self._next()
        return self._earliest

    def _none_left(self) -> None:
        """After a transaction went without a completed one taking its place: with none left,
        there is no deadline (known at once: a bound never stands for no deadline)."""
        if not (self._known or self._client or self._server or self._client_done
                or self._server_done):
            self._earliest, self._known = None, True

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``, in deadline order."""
        actions: list[Action] = []
        while True:
            best, fifo = self._next()
            if best is None or best[0] > now:
                break
            when, _, key, kind = best
            if fifo is None:
                heapq.heappop(self._heap)
            else:
                fifo.popleft()
            if kind == _J:  # Timer J: Completed -> Terminated
                del self._server_done[key]
            elif kind == _K:  # Timer K: Completed -> Terminated, nothing to report
                del self._client_done[key]
            elif kind == _APP:
                txn = self._server[key]
                self._stop(txn, kind)  # fired: no longer armed
                self._app_deadline(txn, actions, now)
            else:
                client = self._client[key]
                self._stop(client, kind)
                self._client_timer(client, kind, when, actions)
        return actions

    def _client_timer(self, txn: _ClientTxn, kind: int, when: float, actions: list[Action]) -> None:
        t = self.timers
        if kind == _E:
            # RFC 3261 17.1.2.2: retransmit; Trying doubles up to T2, Proceeding stays at T2.
            actions.append(Send(txn.data, txn.dest))
            txn.interval = t.t2 if txn.state is State.PROCEEDING else min(2 * txn.interval, t.t2)
            if when + txn.interval < txn.f_at:
                self._arm(when + txn.interval, txn, _E)
            else:  # Timer F comes first (at a tie too: it was armed before, as on the wire)
                self._arm(txn.f_at, txn, _F)
            return
        self._end(txn)  # Timer F: transaction timeout
        del self._client[txn.key]
        actions.append(ClientTimeout(txn.key))

    def _app_deadline(self, txn: _ServerTxn, actions: list[Action], now: float) -> None:
        # The application did not answer in time (docs/decisions.md "SIP layer").
        request = txn.request
        assert request is not None
        data = build_response(request, 500, "Application Did Not Answer")
        actions.append(ServerTimeout(txn.key, request, 500))
        actions.extend(self._complete(txn, data, now))

    # -- client transactions (RFC 3261 17.1.2) -------------------------------------------
    def send_request(self, key: ClientKey, data: bytes, dest: Peer, now: float,
                     sent: str | None = None) -> list[Action]:
        """Start a client transaction; ``key`` is (branch, method) of the request in ``data``.
        ``sent``: the text before the first ";" of the top Via in ``data`` when the caller
        wrote it (``request.sent_text``; it must be what ``_sent_text(data)`` reads); None:
        read from ``data`` when a response needs it."""
        self.start_request(key, data, dest, now, sent)
        return [_send(data, dest)]

    def start_request(self, key: ClientKey, data: bytes, dest: Peer, now: float,
                      sent: str | None = None) -> None:
        """:meth:`send_request` without its action: the caller sends ``data`` to ``dest``
        itself (its one action is always that Send), with no list and action built."""
        if key in self._client or key in self._client_done:
            raise ValueError(f"client transaction {key} exists")
        t1 = self.timers.t1
        txn = _ClientTxn(key, data, dest, now + 64 * t1, sent)  # Timer F: 64*T1
        self._client[key] = txn
        # a new transaction has no timer to replace: its entry is pushed as ``_arm`` would
        if dest.transport == "udp":  # RFC 3261 17.1.2.2: Timer E only on unreliable transports
            txn.interval = t1
            # Timer F is armed when Timer E would next fire at or after it (see _ClientTxn):
            # the common transaction, answered within T1, queues one entry, not two
            txn.e_entry = entry = (now + t1, next(self._seq), key, _E)
            self._push(entry, t1)
        else:
            txn.end_entry = entry = (txn.f_at, next(self._seq), key, _F)
            self._push(entry, 64 * t1)

    def receive_response(self, resp: Response, source: Peer, now: float) -> list[Action]:
        """Match a response to its client transaction (RFC 3261 17.1.3: branch and CSeq
        method; 18.1.2: the sent-by our request's top Via carried); strays are dropped."""
        txn = self._client.get((resp.branch, resp.cseq_method))
        if txn is None:
            return []  # stray, or a retransmitted final response absorbed in Completed
        # RFC 3261 8.1.3.3: a response with more than one Via is discarded (we proxy
        # nothing); 18.1.2: so is one whose Via is not the one we sent
        if len(resp.vias) != 1 or not _same_sent_by(resp, txn):
            return []
        return self._answered(txn, resp, source, now)

    def receive_response_data(self, data: bytes, source: Peer, now: float,
                              limits: Limits = DEFAULT_LIMITS) -> list[Action] | None:
        """``receive_response(parse(data), ...)`` for a response of the common form to one of
        our live client transactions (:func:`~.message.own_response`: the same response,
        read without the general rules, matched by branch, CSeq method and sent-by before
        the rest is read); None for any other response: the caller parses it and calls
        :meth:`receive_response`, which decides as for any response."""
        resp = own_response(data, self._sent_by, limits)
        if resp is None:
            return None
        key = (resp.branch, resp.cseq_method)
        return [_deliver_response(key, resp, source)] if self.own_answered(
            key, resp, source, now) else []

    def _sent_by(self, branch: str, method: str) -> str | None:
        """``own_response``'s view of the live client transactions: the text before the first
        ";" of the top Via the request of (branch, method) carried, or None."""
        txn = self._client.get((branch, method))
        if txn is None:
            return None
        sent = txn.sent
        if sent == _UNREAD:
            sent = txn.sent = _sent_text(txn.data)
        return sent

    def own_answered(self, key: ClientKey, resp: Response, source: Peer, now: float) -> bool:
        """:meth:`receive_response_data` for a caller that read ``resp`` with
        :func:`~.message.own_response` (given this layer's ``_sent_by``: it matched the live
        client transaction ``key``, its branch and CSeq method) and delivers it itself: True
        when the response is final, to be delivered (the one DeliverResponse the action list
        would hold); False for a provisional one (no action)."""
        return self._settle(self._client[key], resp, source, now)

    def _answered(self, txn: _ClientTxn, resp: Response, source: Peer, now: float
                  ) -> list[Action]:
        """A response matched to ``txn`` (RFC 3261 17.1.2.2)."""
        if self._settle(txn, resp, source, now):
            return [_deliver_response(txn.key, resp, source)]
        return []

    def _settle(self, txn: _ClientTxn, resp: Response, source: Peer, now: float) -> bool:
        """``txn`` moved by the response matched to it; True when it is final (delivered)."""
        if resp.status < 200:
            if txn.state is State.TRYING:
                txn.state = State.PROCEEDING
            return False
        key = txn.key
        self._end(txn)
        del self._client[key]
        if source.transport == txn.dest.transport == "udp":  # Timer K = 0 when reliable
            # RFC 3261 17.1.2.2: Completed absorbs retransmitted final responses for T4
            seq = next(self._seq)
            self._client_done[key] = seq
            self._push((now + self.timers.t4, seq, key, _K), self.timers.t4)  # Timer K
        else:
            self._none_left()
        return True

    def cancel_client(self, key: ClientKey) -> None:
        """The caller gave up waiting: stop retransmitting and forget the transaction."""
        txn = self._client.pop(key, None)
        if txn is not None:
            self._end(txn)
        elif self._client_done.pop(key, None) is not None:
            self._known = False  # its Timer K went stale, perhaps the earliest deadline
        else:
            return
        self._none_left()

    # -- server transactions (RFC 3261 17.2.2) -------------------------------------------
    def receive_request(self, req: Request, source: Peer, now: float) -> list[Action]:
        """A request from the wire: a retransmission is absorbed, a new one is delivered."""
        got = self.take_request(req, source, now)
        return got if isinstance(got, list) else [_deliver_request(got, req, source)]

    def take_request(self, req: Request, source: Peer, now: float
                     ) -> ServerKey | list[Action]:
        """:meth:`receive_request` for a caller that delivers a new request itself: the key
        of the new server transaction (its one DeliverRequest), or the actions of any other
        (absorbed, answered again, a CANCEL)."""
        if req.method == "ACK":
            return []  # RFC 3261 17.2.3: no non-INVITE transaction matches an ACK
        key = server_key(req)
        txn = self._server.get(key)
        if txn is not None:
            # RFC 3261 17.2.2: Trying absorbs, Proceeding re-sends the last provisional...
            return [] if txn.response is None else [Send(txn.response, txn.dest)]
        done = self._server_done.get(key)
        if done is not None:  # ... and Completed the final response
            return [Send(done[0], Peer("udp", done[1], done[2]))]
        dest = response_destination(req, source)
        if req.method == "CANCEL":
            return self._cancel(req, key, dest, now)
        txn = _ServerTxn(key, req, dest)
        self._server[key] = txn
        if len(self._methods) < 32:
            self._methods.add(req.method)
        app = self.timers.app  # a new transaction: pushed as ``_arm`` would
        txn.end_entry = entry = (now + app, next(self._seq), key, _APP)
        self._push(entry, app)
        return key

    def _cancel(self, req: Request, key: ServerKey, dest: Peer, now: float) -> list[Action]:
        # RFC 3261 9.2: 200 if the CANCEL matches a transaction (a non-INVITE one is left
        # alone: its final response is already owed), else 481.
        prefix = key[:-1]
        matched = any((*prefix, method) in self._server or (*prefix, method) in self._server_done
                      for method in self._methods)
        txn = _ServerTxn(key, None, dest)
        self._server[key] = txn
        status = 200 if matched else 481
        return self._complete(txn, build_response(req, status), now)

    def respond(self, key: ServerKey, status: int, data: bytes, now: float) -> list[Action]:
        """Send the application's response; a late answer (after Completed) is ignored."""
        dest = self.answer(key, status, data, now)
        return [] if dest is None else [_send(data, dest)]

    def answer(self, key: ServerKey, status: int, data: bytes, now: float) -> Peer | None:
        """:meth:`respond` for a caller that sends ``data`` itself: where to (its one Send),
        or None (no action: a late answer)."""
        txn = self._server.get(key)
        if txn is None:
            return None
        if status < 200:
            txn.state = State.PROCEEDING  # RFC 3261 17.2.2: Trying -> Proceeding
            txn.response = data
            return txn.dest
        return self._finish(txn, data, now)

    def _complete(self, txn: _ServerTxn, data: bytes, now: float) -> list[Action]:
        """The final response ``data``: the transaction keeps only what Timer J needs."""
        return [_send(data, self._finish(txn, data, now))]

    def _finish(self, txn: _ServerTxn, data: bytes, now: float) -> Peer:
        """:meth:`_complete` less its action: where ``data`` goes."""
        if txn.request is not None:  # answered before its application deadline
            # its deadline, if still the newest one (a handler that answers at once), leaves
            # the queue now: it would only wait 30 s there to be skipped
            fifo = self._fifo.get(self.timers.app)
            if fifo and fifo[-1] is txn.end_entry:
                fifo.pop()
        self._end(txn)
        key, dest = txn.key, txn.dest
        del self._server[key]
        if dest.transport == "udp":  # Timer J = 0 on reliable transports
            seq = next(self._seq)
            self._server_done[key] = (data, dest.host, dest.port, seq)
            j = 64 * self.timers.t1
            self._push((now + j, seq, key, _J), j)  # Timer J
        else:
            self._none_left()
        return dest


__all__ = [
    "DEFAULT_PORTS",
    "Action",
    "ClientKey",
    "ClientTimeout",
    "DeliverRequest",
    "DeliverResponse",
    "Peer",
    "Send",
    "ServerKey",
    "ServerTimeout",
    "State",
    "Timers",
    "TransactionLayer",
    "Transport",
    "response_destination",
    "server_key",
]
