"""Non-INVITE transactions, sans-I/O (RFC 3261 17.1.2, 17.1.3, 17.2.2, 17.2.3).

The layer owns no socket and no clock: every call takes ``now`` and returns the actions the
adapter must perform; :meth:`TransactionLayer.get_timer` says when to call
:meth:`TransactionLayer.handle_timer` next (the aioquic pattern). INVITE is out of scope; an ACK
is absorbed (it never matches a non-INVITE transaction, RFC 3261 17.2.3).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from enum import Enum
from itertools import count
from typing import Literal

from .message import MAGIC_COOKIE, Request, Response, build_response

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


class State(Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"


# A timer entry: (when, seq, transaction, kind). A transaction holds the entries of its
# armed timers; an entry it no longer holds (re-armed, stopped, transaction ended) is stale
# and dropped when it reaches the head of its queue.
_Entry = tuple[float, int, "_ClientTxn | _ServerTxn", int]
_E, _END = 0, 1  # timer kinds


class _ClientTxn:
    __slots__ = ("data", "dest", "e_entry", "end_entry", "interval", "key", "state")

    def __init__(self, key: ClientKey, data: bytes, dest: Peer) -> None:
        self.key = key
        self.data = data
        self.dest = dest
        self.state = State.TRYING
        self.interval = 0.0
        self.e_entry: _Entry | None = None  # Timer E
        self.end_entry: _Entry | None = None  # Timer F in Trying/Proceeding, K in Completed


class _ServerTxn:
    __slots__ = ("dest", "e_entry", "end_entry", "key", "request", "response", "state",
                 "status")

    def __init__(self, key: ServerKey, request: Request | None, dest: Peer) -> None:
        self.key = key
        self.request = request  # kept until answered (for the app-deadline answer)
        self.dest = dest
        self.state = State.TRYING
        self.response: bytes | None = None  # last response sent, re-sent on retransmission
        self.status = 0
        self.e_entry: _Entry | None = None  # never armed: Timer E is a client timer
        self.end_entry: _Entry | None = None  # app deadline in Trying/Proceeding, J in Completed


def server_key(req: Request) -> ServerKey:
    """RFC 3261 17.2.3: branch + sent-by + method; RFC 2543 fallback without the magic cookie.

    The fallback (branch absent or without ``z9hG4bK``) keys on Call-ID, CSeq, From tag, the
    whole top Via and the method, which is what identifies a retransmission from such a peer.
    """
    if req.branch.startswith(MAGIC_COOKIE):
        via = req.via
        return (req.branch, via.host.lower(), str(via.port or ""), req.method)
    return ("2543", req.call_id, str(req.cseq), req.from_tag or "", req.vias[0], req.method)


def response_destination(req: Request, source: Peer) -> Peer:
    """Where responses to ``req`` go (RFC 3261 18.2.2, RFC 3581 4).

    Reliable: the connection the request came on; should it close, a new connection to the
    source address and the sent-by port. Unreliable: the source address, and the source port
    when ``rport`` was requested, else the sent-by port. ``maddr`` is not honoured (multicast).
    """
    via = req.via
    if source.reliable:
        port = via.port or DEFAULT_PORTS[source.transport]
        return Peer(source.transport, source.host, port, source.conn)
    if via.has("rport"):
        return source if source.conn is None else Peer("udp", source.host, source.port)
    return Peer("udp", source.host, via.port or DEFAULT_PORTS["udp"])


class TransactionLayer:
    """Client and server non-INVITE transactions of one endpoint."""

    def __init__(self, timers: Timers = Timers()) -> None:
        self.timers = timers
        self._client: dict[ClientKey, _ClientTxn] = {}
        self._server: dict[ServerKey, _ServerTxn] = {}
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
        self._earliest: float | None = None
        self._known = True
        self._methods: set[str] = set()  # methods seen, for matching a CANCEL (capped)

    # -- introspection -------------------------------------------------------------------
    @property
    def client_count(self) -> int:
        return len(self._client)

    @property
    def server_count(self) -> int:
        return len(self._server)

    # -- timers --------------------------------------------------------------------------
    def _arm(
        self, when: float, txn: _ClientTxn | _ServerTxn, kind: int, duration: float | None = None
    ) -> None:
        """Arm ``txn``'s timer ``kind`` at ``when``, replacing the one it had armed."""
        entry = (when, next(self._seq), txn, kind)
        if kind == _E:
            old, txn.e_entry = txn.e_entry, entry
        else:
            old, txn.end_entry = txn.end_entry, entry
        if old is not None and old[0] == self._earliest:  # as _stop
            self._known = False
        if self._known and (self._earliest is None or when < self._earliest):
            self._earliest = when
        if duration is not None:
            fifo = self._fifo.get(duration)
            if fifo is None:
                fifo = self._fifo[duration] = deque()
            if not fifo or fifo[-1][0] <= when:
                fifo.append(entry)
                return
        heapq.heappush(self._heap, entry)

    def _stop(self, txn: _ClientTxn | _ServerTxn, kind: int) -> None:
        """Stop ``txn``'s timer ``kind``: its entry goes stale."""
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
        """``txn`` is over: every timer it armed goes stale."""
        self._stop(txn, _E)
        self._stop(txn, _END)

    def _disarm_last(self, txn: _ServerTxn, duration: float) -> None:
        """Drop the application deadline just armed for ``txn`` if it is still the newest one
        (a handler that answers at once): it would only wait 30 s in the queue to be skipped."""
        fifo = self._fifo.get(duration)
        if fifo and fifo[-1] is txn.end_entry:
            fifo.pop()
            self._stop(txn, _END)

    def _next(self) -> tuple[_Entry | None, deque[_Entry] | None]:
        """The earliest live timer and its queue (None: the heap); stale heads are dropped."""
        heap = self._heap
        while heap:
            head = heap[0]
            txn = head[2]
            if (txn.e_entry if head[3] == _E else txn.end_entry) is head:
                break
            heapq.heappop(heap)
        best = heap[0] if heap else None
        queue = None
        for fifo in self._fifo.values():
            while fifo:
                head = fifo[0]
                txn = head[2]
                if (txn.e_entry if head[3] == _E else txn.end_entry) is head:
                    # (when, seq) decide: seq is unique, so the comparison never reaches txn
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

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``, in deadline order."""
        actions: list[Action] = []
        while True:
            best, fifo = self._next()
            if best is None or best[0] > now:
                break
            when, _, txn, kind = best
            if fifo is None:
                heapq.heappop(self._heap)
            else:
                fifo.popleft()
            self._stop(txn, kind)  # fired: no longer armed
            if isinstance(txn, _ClientTxn):
                self._client_timer(txn, kind, when, actions)
            else:
                self._server_timer(txn, actions, now)
        return actions

    def _client_timer(self, txn: _ClientTxn, kind: int, when: float, actions: list[Action]) -> None:
        t = self.timers
        if kind == _E:
            # RFC 3261 17.1.2.2: retransmit; Trying doubles up to T2, Proceeding stays at T2.
            actions.append(Send(txn.data, txn.dest))
            txn.interval = t.t2 if txn.state is State.PROCEEDING else min(2 * txn.interval, t.t2)
            self._arm(when + txn.interval, txn, _E)
            return
        self._end(txn)
        del self._client[txn.key]
        if txn.state is not State.COMPLETED:  # Timer F: transaction timeout
            actions.append(ClientTimeout(txn.key))
        # else Timer K: Completed -> Terminated, nothing to report

    def _server_timer(self, txn: _ServerTxn, actions: list[Action], now: float) -> None:
        if txn.state is State.COMPLETED:  # Timer J: Completed -> Terminated
            del self._server[txn.key]
            return
        # The application did not answer in time (docs/decisions.md "SIP layer").
        request = txn.request
        assert request is not None
        data = build_response(request, 500, "Application Did Not Answer")
        actions.append(ServerTimeout(txn.key, request, 500))
        actions.extend(self._complete(txn, 500, data, now))

    # -- client transactions (RFC 3261 17.1.2) -------------------------------------------
    def send_request(self, key: ClientKey, data: bytes, dest: Peer, now: float) -> list[Action]:
        """Start a client transaction; ``key`` is (branch, method) of the request in ``data``."""
        if key in self._client:
            raise ValueError(f"client transaction {key} exists")
        txn = _ClientTxn(key, data, dest)
        self._client[key] = txn
        t = self.timers
        if not dest.reliable:  # RFC 3261 17.1.2.2: Timer E only on unreliable transports
            txn.interval = t.t1
            self._arm(now + t.t1, txn, _E, t.t1)
        self._arm(now + 64 * t.t1, txn, _END, 64 * t.t1)  # Timer F
        return [Send(data, dest)]

    def receive_response(self, resp: Response, source: Peer, now: float) -> list[Action]:
        """Match a response to its client transaction (RFC 3261 17.1.3); strays are dropped."""
        txn = self._client.get((resp.branch, resp.cseq_method))
        if txn is None or txn.state is State.COMPLETED:
            return []  # stray, or a retransmitted final response absorbed in Completed
        if resp.status < 200:
            if txn.state is State.TRYING:
                txn.state = State.PROCEEDING
            return []
        txn.state = State.COMPLETED
        if source.reliable or txn.dest.reliable:
            self._end(txn)
            del self._client[txn.key]  # Timer K = 0 on reliable transports
        else:
            self._stop(txn, _E)
            self._arm(now + self.timers.t4, txn, _END, self.timers.t4)  # Timer K
        return [DeliverResponse(txn.key, resp, source)]

    def cancel_client(self, key: ClientKey) -> None:
        """The caller gave up waiting: stop retransmitting and forget the transaction."""
        txn = self._client.pop(key, None)
        if txn is not None:
            self._end(txn)

    # -- server transactions (RFC 3261 17.2.2) -------------------------------------------
    def receive_request(self, req: Request, source: Peer, now: float) -> list[Action]:
        """A request from the wire: a retransmission is absorbed, a new one is delivered."""
        if req.method == "ACK":
            return []  # RFC 3261 17.2.3: no non-INVITE transaction matches an ACK
        key = server_key(req)
        txn = self._server.get(key)
        if txn is not None:
            # RFC 3261 17.2.2: Trying absorbs, Proceeding/Completed re-send the last response.
            return [] if txn.response is None else [Send(txn.response, txn.dest)]
        dest = response_destination(req, source)
        if req.method == "CANCEL":
            return self._cancel(req, key, dest, now)
        txn = _ServerTxn(key, req, dest)
        self._server[key] = txn
        if len(self._methods) < 32:
            self._methods.add(req.method)
        self._arm(now + self.timers.app, txn, _END, self.timers.app)
        return [DeliverRequest(key, req, source)]

    def _cancel(self, req: Request, key: ServerKey, dest: Peer, now: float) -> list[Action]:
        # RFC 3261 9.2: 200 if the CANCEL matches a transaction (a non-INVITE one is left
        # alone: its final response is already owed), else 481.
        prefix = key[:-1]
        matched = any((*prefix, method) in self._server for method in self._methods)
        txn = _ServerTxn(key, None, dest)
        self._server[key] = txn
        status = 200 if matched else 481
        return self._complete(txn, status, build_response(req, status), now)

    def respond(self, key: ServerKey, status: int, data: bytes, now: float) -> list[Action]:
        """Send the application's response; a late answer (after Completed) is ignored."""
        txn = self._server.get(key)
        if txn is None or txn.state is State.COMPLETED:
            return []
        if status < 200:
            txn.state = State.PROCEEDING  # RFC 3261 17.2.2: Trying -> Proceeding
            txn.response = data
            return [Send(data, txn.dest)]
        return self._complete(txn, status, data, now)

    def _complete(self, txn: _ServerTxn, status: int, data: bytes, now: float) -> list[Action]:
        if txn.request is not None:  # answered before its application deadline
            self._disarm_last(txn, self.timers.app)
        txn.state = State.COMPLETED
        txn.response = data
        txn.status = status
        txn.request = None
        if txn.dest.reliable:
            self._end(txn)
            del self._server[txn.key]  # Timer J = 0 on reliable transports
        else:
            self._arm(now + 64 * self.timers.t1, txn, _END, 64 * self.timers.t1)  # Timer J
        return [Send(data, txn.dest)]


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
