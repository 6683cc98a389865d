"""The FA controlling server node: :class:`~mcacm_sip.core.fa_server.FaServer` on a SIP endpoint
(TS 24.379 clause 9A.2.2.3).

One PUBLISH state machine: the SIP layer's RFC 3903 compositor keeps only the SIP-ETags; its
policy hook hands every attempt to the FA core, which alone decides 200 / 423 / 403 and the
holder lists.  SUBSCRIBE/NOTIFY: the SIP layer's RFC 6665 notifier keeps the dialogs; the FA
core decides each subscription (who may resolve or watch which FA) and gives every NOTIFY body.
Each subscription is its own notifier key, so a core ``NotifySubscriber(subscription, body)``
becomes exactly one NOTIFY.

With ``[store] path`` the holders live in SQLite (:class:`~mcacm_sip.store.fa.FaStore`): every
holder change is committed before the 200 leaves, and a start restores them.  A store that
cannot commit stops the node (``failed``), like the ACMS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.fa import (
    CT_MCPTT_INFO,
    CT_PIDF,
    CT_SIMPLE_FILTER,
    EVENT_PRESENCE,
    decode_bodies,
)
from mcacm_sip.core.config import ConfigError
from mcacm_sip.core.fa_server import (
    Answer,
    FaServer,
    FaServerAction,
    Holder,
    HoldersChanged,
    Ignored,
    NotifySubscriber,
    Publish,
    Revoked,
    Subscribe,
)
from mcacm_sip.runtime.base import Node, TraceHook, tee, warning
from mcacm_sip.runtime.config import FaServerNodeConfig, check_fa_server_trust
from mcacm_sip.runtime.metrics import FaServerMetrics
from mcacm_sip.sip import Request
from mcacm_sip.sip.aio.usages import NotifierService, PublicationService
from mcacm_sip.sip.dialog import MAX_EXPIRES, BadRequest, Body, Refuse, parse_expires
from mcacm_sip.sip.publication import Compositor, PublicationChange, PublishAttempt, PublishKind
from mcacm_sip.sip.subscription import Accept, Notifier, Subscription
from mcacm_sip.store.fa import FaStore

if TYPE_CHECKING:
    from mcacm_sip.store.pg_fa import PgFaStore
from mcacm_sip.store.sqlite import StoreError

log = logging.getLogger("mcacm.fa.node")

BODY_TYPES = ("multipart/mixed", CT_PIDF, CT_MCPTT_INFO, CT_SIMPLE_FILTER)


def _open_store(path: str | None, url: str | None
                ) -> tuple[FaStore | PgFaStore, dict[str, tuple[Holder, ...]]]:
    """The store and the holders it keeps; a store that cannot serve is a configuration
    error (``store.path`` or ``store.url``)."""
    key = "store.url" if url is not None else "store.path"
    try:
        if url is not None:
            from mcacm_sip.store.pg_fa import PgFaStore  # the [postgres] extra

            store: FaStore | PgFaStore = PgFaStore(url)
        else:
            assert path is not None
            store = FaStore(path)
    except StoreError as exc:
        raise ConfigError(key, str(exc)) from None
    try:
        return store, store.load()
    except StoreError as exc:
        store.close()
        raise ConfigError(key, str(exc)) from None


class FaServerNode(Node):
    """One FA controlling server.  ``await start()`` returns once it listens.

    Raises :class:`ConfigError` (key ``store.path``) when the store cannot be opened or read."""

    def __init__(self, config: FaServerNodeConfig, *, trace: TraceHook | None = None) -> None:
        check_fa_server_trust(config)  # secure by default: ConfigError naming sip.trust
        self.metrics = FaServerMetrics(lambda: len(self.server.subscriptions())) \
            if config.metrics.listen is not None else None
        """``[metrics]``: counted inline, served from a thread (runtime/metrics.py)."""
        super().__init__(config.sip, config.psi,
                         tee(trace, self.metrics.traced if self.metrics else None))
        self.config = config
        self.psi = config.psi
        self.store: FaStore | PgFaStore | None = None
        initial: dict[str, tuple[Holder, ...]] = {}
        if config.store_path is not None or config.store_url is not None:
            # 9A.2.2.3.2 stored information: the holders accepted before a restart
            self.store, initial = _open_store(config.store_path, config.store_url)
        self.server = FaServer(config.fa, initial=initial)
        if self.metrics is not None:
            for fa, records in initial.items():
                self.metrics.holders(fa, (), (h.user for h in records))
        self.failed: asyncio.Future[str] | None = None
        """Resolves (with the reason) when the node had to stop itself (store failure)."""
        # 24.379 9A.2.2.3.3 step 3 wants exactly 0 or 4294967295: the core answers 423 for
        # anything else, so the compositor itself accepts every interval
        self._compositor = Compositor((EVENT_PRESENCE,), policy=self._publish,
                                      on_change=self._publication_changed, min_expires=0,
                                      max_expires=MAX_EXPIRES)
        self._publications = PublicationService(self.endpoint, self._compositor,
                                                accept=BODY_TYPES)
        self._notifier = Notifier({EVENT_PRESENCE: self}, min_expires=0,
                                  on_end=self._subscription_ended)
        self._notifications = NotifierService(self.endpoint, self._notifier)
        self._bodies: dict[str, bytes] = {}  # subscription id -> its next NOTIFY body
        self._held: dict[str, tuple[str, ...]] = {
            fa: tuple(h.user for h in records) for fa, records in initial.items()}
        """FA -> its holders, as last reported (for the activation counts)."""

    # the RFC 6665 event package the notifier asks (EventPackage protocol)
    content_types = (CT_PIDF,)
    default_expires = 0  # no Expires -> the core's 423 (9A.2.2.3.4 step 3)

    async def start(self) -> None:
        self.failed = asyncio.get_running_loop().create_future()
        # routes before sockets, as the ACMS: never a 405 (permanent) while we start
        self._publications.start()
        self._notifications.start()
        await self.endpoint.start()
        self._running = True
        self._announce_trust()
        if self.metrics is not None and self.config.metrics.listen is not None:
            self.metrics.serve(*self.config.metrics.listen)
        log.info("FA server %s listening on %s", self.psi, self.addresses,
                 extra={"event": "node.start"})

    async def stop(self) -> None:
        if not self._running:
            return
        await self._halt()
        await self._notifications.close()
        await self._publications.close()
        await self.endpoint.close()
        if self.store is not None:
            self.store.close()
        if self.metrics is not None:
            self.metrics.close()

    # ------------------------------------------------------------------ helpers

    def _refusal(self, actions: list[FaServerAction]) -> Refuse | None:
        """The core's first action is its Answer: None for 200, else the SIP refusal."""
        answer = actions[0]
        assert isinstance(answer, Answer)
        if answer.status == 200:
            return None
        headers = answer.headers
        if answer.warning:
            headers = (*headers, warning(self.host, answer.warning))
        log.info("refused %d: %s", answer.status, answer.warning or answer.reason,
                 extra={"event": "fa.refused", "status": answer.status})
        return Refuse(answer.status, answer.reason, headers)

    def _persist(self, actions: list[FaServerAction]) -> bool:
        """Commit every FA whose holders changed; False (and the node fails) if that cannot be
        done.  Revoked always comes with its FA's HoldersChanged."""
        if self.store is None:
            return True
        try:
            for action in actions:
                if isinstance(action, HoldersChanged):
                    self.store.save(action.holders.fa, self.server.records(action.holders.fa))
        except StoreError as exc:
            log.critical("store failed, stopping: %s", exc, extra={"event": "store.failed"})
            if self.failed is not None and not self.failed.done():
                self.failed.set_result(f"store failed: {exc}")
            return False
        return True

    def _perform(self, actions: list[FaServerAction]) -> None:
        """Everything after the Answer: NOTIFY bodies and events for the log."""
        for action in actions:
            match action:
                case NotifySubscriber():
                    self._bodies[action.subscription] = action.body
                    if action.terminated is not None:
                        self._notifications.terminate(action.subscription,
                                                      str(action.terminated))
                    else:
                        self._notifications.changed(EVENT_PRESENCE, action.subscription)
                case HoldersChanged():
                    h = action.holders
                    if self.metrics is not None:
                        self.metrics.holders(h.fa, self._held.get(h.fa, ()), h.holders)
                    self._held[h.fa] = h.holders
                    log.info("%s held by %s", h.fa, ", ".join(h.holders) or "nobody",
                             extra={"event": "fa.holders"})
                case Revoked():
                    if self.metrics is not None:
                        self.metrics.changes.labels("taken_over").inc()
                    log.info("%s: %s taken over by %s", action.fa, action.user, action.by,
                             extra={"event": "fa.revoked"})
                case Ignored():
                    log.info("PUBLISH changed nothing: %s", action.reason,
                             extra={"event": "fa.ignored"})

    # ------------------------------------------------------------------ PUBLISH

    def _publish(self, attempt: PublishAttempt) -> Refuse | None:
        """Compositor policy: the FA core decides (9A.2.2.3.3); None = accepted."""
        if self.failed is not None and self.failed.done():
            # the core's memory may be ahead of the store: accept nothing more
            return Refuse(503, "Service Unavailable", (warning(self.host, "stopping"),))
        # RFC 3903 refresh / removal without a body: the FA core judges the stored one
        body = attempt.body or (attempt.previous.body if attempt.previous else None)
        event = Publish(attempt.requested_expires, body.content_type if body else None,
                        body.data if body else b"", self._sender(attempt.request))
        actions = self.server.publish(event, time.time())
        refusal = self._refusal(actions)
        if refusal is None:
            # "stored before acknowledged": the 200 leaves only after the commit
            if not self._persist(actions):
                return Refuse(500, "Server Internal Error", (warning(self.host, "store failed"),))
            self._perform(actions[1:])
        return refusal

    def _publication_changed(self, change: PublicationChange) -> None:
        # 9A.2.2.3.6: a publication that ran out deactivates the FA for its user
        if change.kind is not PublishKind.EXPIRED or change.before is None:
            return
        body = change.before.body
        try:
            info = decode_bodies(body.content_type, body.data).info
        except AcmError:
            return
        if info is not None and info.request_uri and info.calling_user_id:
            actions = self.server.deactivate(info.request_uri, info.calling_user_id,
                                             time.time())
            if self._persist(actions):
                self._perform(actions)

    # ------------------------------------------------------------------ SUBSCRIBE

    def subscribe(self, request: Request, subscription: Subscription) -> Accept | Refuse:
        """Notifier package hook: the FA core classifies and authorises (9A.2.2.3.4/.7)."""
        try:
            expires = parse_expires(request.header("expires"))
        except BadRequest as exc:
            return Refuse(exc.status, exc.reason)
        accept = tuple(request.headers("accept")) or None
        actions = self.server.subscribe(Subscribe(
            subscription.id, expires, request.header("content-type"), request.body,
            self._sender(request), accept), time.time())
        refusal = self._refusal(actions)
        if refusal is not None:
            return refusal
        for action in actions[1:]:
            if isinstance(action, NotifySubscriber):  # the first NOTIFY (RFC 6665 4.2.1.2)
                self._bodies[subscription.id] = action.body
        if self.metrics is not None:
            self.metrics.subscribed.inc()
        log.info("subscription %s to %s accepted", subscription.id, request.uri,
                 extra={"event": "fa.subscribed", "call_id": request.call_id})
        return Accept(key=subscription.id)

    def state(self, subscription: Subscription) -> Body | None:
        """Notifier package hook: the body the FA core gave for this subscription."""
        body = self._bodies.get(subscription.id)
        if subscription.expires_at <= time.time():  # a fetch: this is its only NOTIFY
            self._bodies.pop(subscription.id, None)
        return None if body is None else Body(CT_PIDF, body)

    def _subscription_ended(self, subscription: Subscription, reason: str) -> None:
        self.server.drop(subscription.id)
        self._bodies.pop(subscription.id, None)
