"""An in-memory pair of sans-I/O SIP endpoints (aioquic's ``client_and_server``, h11's
``ConnectionPair``): no socket, no event loop, no sleep.

Each :class:`Side` is a :class:`TransactionLayer` plus the methods it serves. A request is
built and written by the same code as the asyncio endpoint's (:mod:`mcacm_sip.sip.request`),
every message crosses as bytes through :func:`parse`, and time is a fake clock that only
:meth:`SipPair.advance` moves: the transaction timers and every usage core driven with
:meth:`SipPair.drive` fire on it through the one timer contract (``get_timer``/``handle_timer``).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from sip_usage_kit import Clock

from mcacm_sip.sip.dialog import Reply, RequestSpec
from mcacm_sip.sip.message import MAGIC_COOKIE, Request, Response, build_response, parse
from mcacm_sip.sip.request import encode_request, spec_request
from mcacm_sip.sip.served import Served
from mcacm_sip.sip.timer import Timed
from mcacm_sip.sip.transaction import (
    Action,
    ClientKey,
    ClientTimeout,
    DeliverRequest,
    DeliverResponse,
    Peer,
    Send,
    Timers,
    TransactionLayer,
)

Handler = Callable[[Request, float], Reply]
R = TypeVar("R", covariant=True)
T = TypeVar("T")
DEFAULT_TIMERS = Timers()


class TimedOf(Timed, Protocol[R]):
    """A :class:`Timed` whose ``handle_timer`` returns an ``R``."""

    def handle_timer(self, now: float) -> R: ...


class Side:
    """One endpoint of the pair, at ``host``:5060 over UDP."""

    def __init__(self, pair: SipPair, host: str) -> None:
        self.pair = pair
        self.address = Peer("udp", host, 5060)
        self.txn = TransactionLayer(pair.timers)
        self.handlers: dict[str, Handler] = {}
        self.served = Served()
        self.finals: dict[ClientKey, Response | None] = {}
        self.received: list[Request] = []
        """Every request delivered to this side, in order (what the far end sent)."""

    def uri(self, user: str) -> str:
        """A SIP URI of ``user`` at this side."""
        return f"sip:{user}@{self.address.host}:{self.address.port}"

    @property
    def other(self) -> Side:
        return self.pair.server if self is self.pair.client else self.pair.client

    def serve(self, method: str, handler: Handler, accept: Iterable[str] | None = None) -> None:
        """Answer ``method`` with ``handler(request, now)``, after the endpoint's own answers
        (:class:`Served`: 405, 415 for a body type not in ``accept``, ...)."""
        self.handlers[method] = handler
        self.served.add(method, accept)

    def request(self, spec: RequestSpec) -> Response | None:
        """Send ``spec`` to the other side; its final response, None after Timer F."""
        branch = MAGIC_COOKIE + secrets.token_hex(8)
        data = encode_request(spec_request(spec), branch, "udp", self.address.host,
                              self.address.port)
        key: ClientKey = (branch, spec.method)
        self.run(self.txn.send_request(key, data, self.other.address, self.pair.now))
        self.pair.pump()
        while key not in self.finals:  # lost: let the transaction time out (Timer F)
            deadline = self.txn.get_timer()
            assert deadline is not None, "a client transaction without a timer"
            self.pair.advance(max(0.0, deadline - self.pair.now))
        return self.finals.pop(key)

    def exchange(self, spec: RequestSpec | None,
                 on_response: Callable[[Response | None, float], RequestSpec | None]
                 ) -> Response | None:
        """Send what a usage core asks, feed it the answer, send its retry, until it asks
        nothing (what :func:`mcacm_sip.sip.aio.usages.exchange` does on the endpoint)."""
        response = None
        while spec is not None:
            response = self.request(spec)
            spec = on_response(response, self.pair.now)
        return response

    def run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.pair.wire.append((self, action.data))
            elif isinstance(action, DeliverRequest):
                self.received.append(action.request)
                self._answer(action.key, action.request)
            elif isinstance(action, DeliverResponse):
                self.finals[action.key] = action.response
            elif isinstance(action, ClientTimeout):
                self.finals[action.key] = None

    def _answer(self, key: tuple[str, ...], request: Request) -> None:
        reply = self.served.answer(request) or self.handlers[request.method](request, self.pair.now)
        data = build_response(request, reply.status, reply.reason, to_tag=reply.to_tag,
                              headers=reply.headers, body=reply.body,
                              content_type=reply.content_type)
        self.run(self.txn.respond(key, reply.status, data, self.pair.now))

    def receive(self, data: bytes, source: Side) -> None:
        message = parse(data)
        if isinstance(message, Request):
            self.run(self.txn.receive_request(message, source.address, self.pair.now))
        else:
            self.run(self.txn.receive_response(message, source.address, self.pair.now))


class SipPair:
    """A client and a server side sharing a fake clock; ``lose`` drops messages on the wire."""

    def __init__(self, clock: Clock | None = None, timers: Timers = DEFAULT_TIMERS) -> None:
        self.clock = clock or Clock(0.0)
        self.timers = timers
        self.wire: deque[tuple[Side, bytes]] = deque()
        self.client = Side(self, "192.0.2.1")
        self.server = Side(self, "192.0.2.2")
        self.lose: Callable[[bytes], bool] = lambda data: False
        self._later: deque[Callable[[], object]] = deque()
        self._driven: list[tuple[Timed, Callable[[object], object]]] = [
            (side.txn, lambda actions, side=side: side.run(actions))  # type: ignore[misc]
            for side in (self.client, self.server)
        ]

    @property
    def now(self) -> float:
        return self.clock.now

    def drive(self, timed: TimedOf[T], act: Callable[[T], object] | None = None) -> None:
        """Fire ``timed`` on the fake clock; ``act`` gets what its ``handle_timer`` returns."""
        self._driven.append((timed, act or (lambda result: None)))  # type: ignore[arg-type]

    def undrive(self, timed: Timed) -> None:
        """Stop firing ``timed`` (its owner went silent)."""
        self._driven = [(t, a) for t, a in self._driven if t is not timed]

    def later(self, step: Callable[[], object]) -> None:
        """Run ``step`` once the messages on the wire now have arrived (a NOTIFY after the
        2xx it follows)."""
        self._later.append(step)

    def pump(self) -> None:
        """Deliver everything on the wire, then what waits for it, until all is quiet."""
        while self.wire or self._later:
            while self.wire:
                sender, data = self.wire.popleft()
                if not self.lose(data):
                    sender.other.receive(data, sender)
            if self._later:
                self._later.popleft()()

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, stopping at every deadline on the way (in order) to
        fire what is due there, as a real clock would."""
        target = self.now + seconds
        for _ in range(100_000):
            due = [(when, i) for i, (t, _) in enumerate(self._driven)
                   if (when := t.get_timer()) is not None and when <= target]
            if not due:
                self.clock.now = target
                return
            when, i = min(due)
            self.clock.now = max(self.now, when)
            timed, act = self._driven[i]
            act(timed.handle_timer(self.now))
            self.pump()
        raise AssertionError("timers keep firing at the same instant")
