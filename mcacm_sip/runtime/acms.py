"""The ACM server node: :class:`~mcacm_sip.core.acms.AcmsCore` on a SIP endpoint.

Wiring (docs/running.md):

- REGISTER -> :class:`~mcacm_sip.sip.registrar.Registrar` (bindings kept in the SQLite file, so
  a restarted ACMS still knows who is logged on); binding changes -> ``UserLoggedOn/Off``
  (23.280 10.17.3.1: an ACMC logs on by REGISTER).
- MESSAGE -> Content-Type check (415 + Accept, by the endpoint) -> decode (typed errors -> their
  status + ``Warning: 399``) -> sender identity -> core -> store changes in ONE transaction ->
  SIP answer -> sends ("stored before acknowledged").
- every ``SendFlow`` -> MESSAGE (Request-URI: the ACMC's registered contact or the peer's PSI,
  P-Asserted-Identity: our PSI, P-Asserted-Service: the configured ICSI); its outcome -> core.
- ``SubscribeFa`` -> continuous SUBSCRIBE ``Event: presence`` to our FA controlling server
  (24.379 9A.2.2.2.8); each NOTIFY's pidf -> ``FaHoldersChanged``.
- one timer from ``core.get_timer()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.fa import (
    CT_PIDF,
    EVENT_PRESENCE,
    EXPIRES_UNTIL_WITHDRAWN,
    resolution_from_notify,
    resolution_subscribe_body,
)
from mcacm_sip.acm.model import AcmRequest
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.events import (
    AcmsAction,
    AcmsEvent,
    DeliveryOutcome,
    FaHoldersChanged,
    Failure,
    FlowFromAcmc,
    FlowFromPeer,
    MessageVerdict,
    SendFlow,
    StoreChange,
    SubscribeFa,
    TimerTick,
    UserLoggedOff,
    UserLoggedOn,
    store_changes,
    verdict_of,
)
from mcacm_sip.core.state import Hop, Role
from mcacm_sip.runtime.base import (
    HEAP_RELEASE_INTERVAL,
    Node,
    TraceHook,
    release_free_heap,
    tee,
    warning,
)
from mcacm_sip.runtime.config import AcmsNodeConfig, check_acms_trust
from mcacm_sip.runtime.messaging import message_reply, send_message, verdict_reply
from mcacm_sip.runtime.metrics import AcmsMetrics
from mcacm_sip.runtime.trust import Trust, origin_of
from mcacm_sip.sip import Reply, Request
from mcacm_sip.sip.aio import IncomingRequest
from mcacm_sip.sip.aio.timer import TimerDriver
from mcacm_sip.sip.aio.usages import RegistrarService, SubscriberService, SubscriptionRefused
from mcacm_sip.sip.dialog import Body
from mcacm_sip.sip.registrar import MemoryBindingStore, Registrar, RegistrationChange
from mcacm_sip.sip.subscription import Notification
from mcacm_sip.sip.uri import Uri, address_of_record, try_identity
from mcacm_sip.store import MemoryStore, SqliteStore, Store
from mcacm_sip.store.bindings import SqliteBindingStore

log = logging.getLogger("mcacm.acms.node")


class StoreFailed(RuntimeError):
    """The store could not commit: the node stops (crash-only; a restart resumes from it)."""


class AcmsNode(Node):
    """One ACMS process (or library object).  ``await start()`` returns once it listens."""

    def __init__(self, config: AcmsNodeConfig, *, store: Store | None = None,
                 trace: TraceHook | None = None) -> None:
        check_acms_trust(config)  # secure by default: ConfigError naming sip.trust
        self.metrics = AcmsMetrics() if config.metrics.listen is not None else None
        """``[metrics]``: counted inline, served from a thread (runtime/metrics.py)."""
        super().__init__(config.sip, config.acms.psi,
                         tee(trace, self.metrics.traced if self.metrics else None))
        # every MESSAGE in and out gets its own INFO line here (acm.received / acm.sent, with
        # the Call-ID and status), and REGISTER / SUBSCRIBE / NOTIFY their log-on, subscription
        # and holder lines: the SIP layer's record of a 2xx transaction would say it again
        self.endpoint.success_log_level = logging.DEBUG
        self.config = config
        acms = config.acms
        self.psi = acms.psi
        path = acms.store.path
        self.store: Store = store if store is not None else (
            SqliteStore(path, acms.store.synchronous) if path else MemoryStore())
        self._bindings = SqliteBindingStore(path) if path and store is None else None
        self.registrar = Registrar(self._bindings or MemoryBindingStore(),
                                   authorise=self._may_register, on_change=self._registered,
                                   max_expires=86400, limits=config.sip.limits,
                                   host=self.host)
        self._registrar_service = RegistrarService(self.endpoint, self.registrar)
        self._subscriber = SubscriberService(self.endpoint, transport=config.sip.transport)
        self.trust = Trust(acms.peers, (u.id for u in acms.users), config.sip.trusted_hosts)
        """Whom the node believes (peers, users, trusted hosts)."""
        self._users = self.trust.users
        snapshot = self.store.load()
        self.core = AcmsCore.restore(acms, snapshot, config.limits.quotas())
        if self.metrics is not None:
            self.metrics.restored(snapshot)
        self._timer: TimerDriver = TimerDriver(self, clock=time.time)
        self._fa_tasks: dict[Uri, asyncio.Task[None]] = {}
        self.failed: asyncio.Future[str] | None = None
        """Resolves (with the reason) when the node had to stop itself (store failure)."""
        # group commit (docs/decisions.md "Benchmarks"): what the events of one loop
        # iteration changed, and the sends waiting for it; resolved True once stored
        self._batch: list[StoreChange] = []
        self._after: list[AcmsAction] = []
        self._stored: asyncio.Future[bool] | None = None
        self._shedding = False
        """Overloaded: new requests get 503 (``[limits]``)."""
        # RFC 3261 21.5.4 / 20.33: overloaded -> 503 with Retry-After (RFC 3428 adds nothing)
        self._busy_reply = Reply(503, headers=(
            warning(self.host, "overloaded: try again later"),
            ("Retry-After", str(config.limits.retry_after))))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen, restore the logged-on users, and continue every open transaction."""
        self.failed = asyncio.get_running_loop().create_future()
        # routes before sockets: what arrives while we start gets 503 "stopping" (retried,
        # RFC 3261 21.5.4), never the endpoint's 405 (permanent, 21.4: a peer would give up)
        self.endpoint.serve("MESSAGE", self._on_message, accept=(codec.ACM_CONTENT_TYPE,))
        self._registrar_service.start()
        self._subscriber.start()
        await self.endpoint.start()
        self._running = True
        self._announce_trust()
        now = time.time()
        for aor in self.registrar.store.aors():  # bindings that survived a restart
            user = self._users.get(aor)
            if user is not None and self.registrar.is_registered(aor, now):
                self._apply(self.core.handle(UserLoggedOn(now, user)))
        self._registrar_service.check()  # expire what ran out while we were down
        # restart: re-send what had no known outcome, re-subscribe to FAs
        self._apply(self.core.start(now))
        if not self._commit():
            raise StoreFailed("the store failed at start")
        self._spawn(release_free_heap(HEAP_RELEASE_INTERVAL))  # RSS flat under churn
        if self.metrics is not None and self.config.metrics.listen is not None:
            host, port = self.metrics.serve(*self.config.metrics.listen)
            log.info("metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]",
                     port, extra={"event": "node.metrics", "port": port})
        log.info("ACMS %s listening on %s", self.psi, self.addresses,
                 extra={"event": "node.start", "open": len(self.core.transactions())})

    async def stop(self) -> None:
        """Stop taking requests, cancel sends in flight (their records stay: a restart re-sends
        them), close sockets and the store."""
        if not self._running:
            return
        self._commit()  # what was accepted in this loop iteration, before the store closes
        await self._halt(*self._fa_tasks.values())
        await self._subscriber.close()
        await self._registrar_service.close()
        await self.endpoint.close()
        self.store.close()
        if self._bindings is not None:
            self._bindings.close()
        if self.metrics is not None:
            self.metrics.close()
        log.info("ACMS %s stopped", self.psi, extra={"event": "node.stop"})

    # ------------------------------------------------------------------ core plumbing

    def get_timer(self) -> float | None:
        """The core's next deadline, on the wall clock (the node's :class:`TimerDriver`)."""
        return self.core.get_timer()

    def handle_timer(self, now: float) -> None:
        """The core's timer tick: its actions are applied as any event's."""
        self.feed(TimerTick(now))

    def feed(self, event: AcmsEvent) -> None:
        """Give the core an event and apply its actions (not for flows: see the handler)."""
        if self._running:
            self._apply(self.core.handle(event))

    def _apply(self, actions: list[AcmsAction]) -> MessageVerdict | None:
        """Queue the store changes for this loop iteration's commit; the sends (and SIP
        answers, see ``_on_message``) wait for it; returns the verdict."""
        changes = store_changes(actions)
        if changes or self._stored is not None:
            self._batch += changes
            self._after += actions
            if self._stored is None:
                loop = asyncio.get_running_loop()
                self._stored = loop.create_future()
                loop.call_soon(self._commit)  # after every callback ready in this iteration
        else:  # nothing waits to be stored
            self._start_sends(actions)
        self._timer.rearm()
        return verdict_of(actions)

    def _commit(self) -> bool:
        """Group commit: the changes of every event since the last commit, in order, in ONE
        store transaction; then the waiting answers and sends are released ("stored before
        acknowledged").  A failure stops the node; every waiting request gets 500."""
        stored, self._stored = self._stored, None
        batch, self._batch = self._batch, []
        after, self._after = self._after, []
        if stored is None:
            return self._running
        ok = True
        if batch:
            try:
                began = time.perf_counter()
                self.store.apply(batch)
                if self.metrics is not None:
                    self.metrics.committed(batch, time.perf_counter() - began, time.time())
            except Exception as exc:
                log.critical("store failed, stopping: %s", exc, extra={"event": "store.failed"})
                if self.failed is not None and not self.failed.done():
                    self.failed.set_result(f"store failed: {exc}")
                self._running = False
                ok = False
        stored.set_result(ok)
        if ok:
            self._start_sends(after)
        return ok

    def _start_sends(self, actions: list[AcmsAction]) -> None:
        for action in actions:
            if isinstance(action, SendFlow):
                self._spawn(self._deliver(action))
            elif isinstance(action, SubscribeFa):
                fa = try_identity(action.fa)
                if fa is not None and fa not in self._fa_tasks:  # one subscription per FA
                    task = asyncio.get_running_loop().create_task(self._follow_fa(action.fa))
                    self._fa_tasks[fa] = task

    # ------------------------------------------------------------------ MESSAGE in

    def _on_message(self, incoming: IncomingRequest) -> Reply | Awaitable[Reply]:
        req = incoming.message
        now = time.time()
        try:
            flow = codec.decode(req.body, content_type=req.header("content-type") or "")
        except AcmError as exc:
            log.info("MESSAGE refused: %s", exc.warning_text,
                     extra={"event": "acm.refused", "call_id": req.call_id,
                            "status": exc.sip_status})
            return message_reply(self.host, exc.sip_status, exc.warning_text)
        origin = origin_of(req, self._sip.trusted_hosts)
        sender = origin.identity
        if sender is None:
            return message_reply(self.host, 400, "no-identity: no usable From")
        refusal = self.trust.refusal(origin)  # RFC 5922 7.4, RFC 3325 9.1 (trust.py)
        if refusal is not None:
            log.warning("MESSAGE from %s (%s) refused: %s", sender, origin.source, refusal,
                        extra={"event": "acm.untrusted", "call_id": req.call_id, "status": 403})
            return message_reply(self.host, 403, refusal)
        event = self.trust.event(now, sender, flow)
        if not self._running:
            return message_reply(self.host, 503, "stopping")
        if self._opens_transaction(event) and self._overloaded():
            if self.metrics is not None:
                self.metrics.shed.labels("overload").inc()
            return self._busy_reply
        reply = verdict_reply(self.host, self._apply(self.core.handle(event)))
        if reply.status == 503 and self.metrics is not None:  # a quota (core/quota.py)
            self.metrics.shed.labels("quota").inc()
        if log.isEnabledFor(logging.INFO):  # nothing built when INFO is off (hot path)
            log.info("%s %s from %s: %d", flow.FLOW, getattr(flow, "transaction_id", ""),
                     sender, reply.status, extra={
                         "event": "acm.received", "call_id": req.call_id, "flow": flow.FLOW,
                         "status": reply.status,
                         "transaction_id": getattr(flow, "transaction_id", None)})
        if self._stored is None:
            return reply
        return self._when_stored(self._stored, reply)

    async def _when_stored(self, stored: asyncio.Future[bool], reply: Reply) -> Reply:
        # 23.280 10.17.7.2 step 4: the 200 leaves only once the request is stored
        return reply if await stored else message_reply(self.host, 500, "store-failed")

    # ------------------------------------------------------------------ overload

    @property
    def in_flight(self) -> int:
        """The load measure of ``[limits] max_in_flight``: sends without a known outcome."""
        return self.core.sends_in_flight

    def _opens_transaction(self, event: AcmsEvent) -> bool:
        """A request that is not a duplicate of an open one: the only traffic refused when
        overloaded (answers, indications, decisions, downloads let the load drain)."""
        if isinstance(event, FlowFromPeer) and isinstance(event.flow, AcmRequest):
            tid = event.flow.transaction_id
            return self.core.transaction(Role.PARTNER, tid, event.origin) is None
        if isinstance(event, FlowFromAcmc) and isinstance(event.flow, AcmRequest):
            return self.core.transaction(Role.PRIMARY, event.flow.transaction_id,
                                         event.sender) is None
        return False

    def _overloaded(self) -> bool:
        limit = self.config.limits.max_in_flight
        # hysteresis (decision): refuse from the limit on, take new work again below 90 % of
        # it -- fewer flips at the edge, one log line per change, not one per refusal
        over = self.in_flight >= (0.9 * limit if self._shedding else limit)
        if over != self._shedding:
            self._shedding = over
            log.warning("%s: %d sends in flight (limit %d)",
                        "overloaded" if over else "no longer overloaded", self.in_flight,
                        self.config.limits.max_in_flight,
                        extra={"event": "overload.start" if over else "overload.end",
                               "in_flight": self.in_flight})
        return over

    # ------------------------------------------------------------------ MESSAGE out

    async def _deliver(self, send: SendFlow) -> None:
        if send.hop is Hop.ACMC:
            contacts = self.registrar.contacts(send.to, time.time())
            if not contacts:  # logged off meanwhile: the core queues it (10.17.3.1)
                self.feed(DeliveryOutcome(time.time(), send.send_id, False, "not registered",
                                          failure=Failure.NO_BINDING))
                return
            binding = contacts[-1]  # the most recent binding
            # RFC 3327 5.5: through the proxies its REGISTER came by (the SIP core), if any
            uri, route = binding.contact, binding.path
        else:
            uri, route = send.to, ()
        sent = await send_message(
            self.endpoint, self.config.sip, uri=uri, to=send.to, identity=self.psi,
            flow=send.flow, route=route)
        self.feed(sent.outcome(time.time(), send.send_id))

    # ------------------------------------------------------------------ REGISTER

    def _may_register(self, aor: Uri, request: Request) -> bool | str:
        # only configured ACM users log on, only for themselves, and only from where an
        # identity is believed, judged on the socket's source and certificate (decision;
        # trust.py rules 3-4); identities compared by RFC 3261 19.1.4
        origin = origin_of(request, self._sip.trusted_hosts)
        refusal = self.trust.refusal(origin)
        if refusal is not None:
            log.warning("REGISTER for %s from %s refused: %s", aor, origin.source, refusal,
                        extra={"event": "acm.untrusted", "call_id": request.call_id,
                               "status": 403})
            return refusal
        if aor not in self._users or address_of_record(origin.identity) != aor:
            return f"not-authorised: {origin.identity} may not register {aor}"
        return True

    def _registered(self, change: RegistrationChange) -> None:
        user = self._users.get(change.aor)
        if user is None or not self._running:
            return
        now = time.time()
        if change.logged_on:  # 10.17.3.1: logon -> pending notification
            log.info("%s logged on", user, extra={"event": "acmc.logon"})
            self.feed(UserLoggedOn(now, user))
        elif change.logged_off:
            log.info("%s logged off", user, extra={"event": "acmc.logoff"})
            self.feed(UserLoggedOff(now, user))

    # ------------------------------------------------------------------ FA resolution

    async def _follow_fa(self, fa: str) -> None:
        """Keep a continuous resolution subscription to ``fa`` (24.379 9A.2.2.2.8 / 23.280
        10.17.7.2 pre-conditions); re-subscribe with back-off when refused or ended."""
        delay = 1.0
        content_type, body = resolution_subscribe_body(fa)
        while self._running:
            try:
                handle = await self._subscriber.subscribe(
                    fa, event=EVENT_PRESENCE, from_uri=self.psi, accept=(CT_PIDF,),
                    expires=EXPIRES_UNTIL_WITHDRAWN, body=Body(content_type, body),
                    headers=(("P-Asserted-Identity", f"<{self.psi}>"),),
                    on_notification=lambda n: self._fa_notified(fa, n))
            except SubscriptionRefused as exc:
                log.warning("SUBSCRIBE to %s failed (%s); retry in %.0f s", fa, exc.status,
                            delay, extra={"event": "fa.subscribe_failed", "status": exc.status})
            else:
                delay = 1.0
                log.info("subscribed to %s", fa, extra={"event": "fa.subscribed"})
                async for _ in handle:
                    pass
                log.info("subscription to %s ended (%s)", fa, handle.reason,
                         extra={"event": "fa.subscription_ended"})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    def _fa_notified(self, fa: str, notification: Notification) -> None:
        try:
            holders = resolution_from_notify(fa, notification.content_type, notification.body)
        except AcmError as exc:  # keep the previous view
            log.info("NOTIFY for %s unusable: %s", fa, exc.warning_text)
            return
        log.info("%s held by %s", fa, ", ".join(holders.holders) or "nobody",
                 extra={"event": "fa.holders"})
        self.feed(FaHoldersChanged(time.time(), fa, holders.holders))
