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
import contextlib
import logging
import time
from collections.abc import Awaitable
from enum import Enum
from typing import TYPE_CHECKING, Final, NamedTuple

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.fa import (
    CT_PIDF,
    EVENT_PRESENCE,
    EXPIRES_UNTIL_WITHDRAWN,
    resolution_from_notify,
    resolution_subscribe_body,
)
from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    AcmResponse,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    ProcessIndication,
)
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.config import ConfigError
from mcacm_sip.core.events import (
    AcceptMessage,
    AcmsAction,
    AcmsEvent,
    AdoptRecords,
    DeliveryOutcome,
    FaHoldersChanged,
    Failure,
    FlowFromAcmc,
    FlowFromPeer,
    MessageVerdict,
    Put,
    RefuseMessage,
    ReleaseRecords,
    Remove,
    SendFlow,
    StoreChange,
    SubscribeFa,
    TimerTick,
    UserLoggedOff,
    UserLoggedOn,
)
from mcacm_sip.core.identity import IdKey, id_key
from mcacm_sip.core.state import (
    Hop,
    Outgoing,
    PendingItem,
    Role,
    Snapshot,
    Transaction,
    tx_key,
)
from mcacm_sip.runtime.base import (
    HEAP_RELEASE_INTERVAL,
    Node,
    TraceHook,
    release_free_heap,
    tee,
    warning,
)
from mcacm_sip.runtime.config import AcmsNodeConfig, check_acms_trust
from mcacm_sip.runtime.messaging import (
    ACCEPTED,
    PROCEDURE_HEADER,
    Sent,
    message_reply,
    procedure_of,
    start_message,
    verdict_reply,
)
from mcacm_sip.runtime.metrics import AcmsMetrics
from mcacm_sip.runtime.trust import Trust, origin_of
from mcacm_sip.sip import Reply, Request
from mcacm_sip.sip.aio import IncomingRequest
from mcacm_sip.sip.aio.endpoint import Answer
from mcacm_sip.sip.aio.timer import TimerDriver
from mcacm_sip.sip.aio.usages import RegistrarService, SubscriberService, SubscriptionRefused
from mcacm_sip.sip.dialog import Body
from mcacm_sip.sip.registrar import Binding, MemoryBindingStore, Registrar, RegistrationChange
from mcacm_sip.sip.subscription import Notification
from mcacm_sip.sip.uri import Uri, address_of_record, try_identity
from mcacm_sip.store import (
    MemoryStore,
    SharedStore,
    SqliteStore,
    Store,
    StoreError,
    StoreUnavailable,
)
from mcacm_sip.store.bindings import SqliteBindingStore

if TYPE_CHECKING:
    from mcacm_sip.store.pg_bindings import PgBindingStore

log = logging.getLogger("mcacm.acms.node")

_RESPONSES = AcmResponse.__args__

DOWNLOADS_KEPT = 4096
"""Pending-data download requests whose X-CID an ACMS remembers until it answers them."""


class StoreFailed(RuntimeError):
    """The store could not commit: the node stops (crash-only; a restart resumes from it)."""


class Waiting(NamedTuple):
    """A request waiting for the pending commit."""

    answer: Answer | asyncio.Future[Reply]
    """What the endpoint sends once the commit settles (an :class:`Answer`: at once, from
    ``_settle``, before the sends the commit releases)."""
    reply: Reply
    """The core's answer, sent if the commit stored it."""
    key: str | None
    """The key of the transaction it opens or answers (shared store), else None."""
    opens: bool
    """It opened that transaction: withdrawn if the commit finds the store away."""


def _belongs(change: StoreChange, keys: frozenset[str], sends: set[str]) -> bool:
    """Whether ``change`` writes or removes the row of a transaction of ``keys``, or one of
    their pending items or ``sends``."""
    if isinstance(change, Remove):
        return change.key in (sends if change.kind == Outgoing.KIND else keys)
    record = change.record
    if isinstance(record, Outgoing):
        return record.send_id in sends or record.tx_key in keys
    return isinstance(record, Transaction | PendingItem) and record.key in keys


class Commit(Enum):
    """The outcome of a group commit, for the requests waiting on it."""

    STORED = "stored"            # the 200s and sends go
    FAILED = "failed"            # fatal: 500, the node stops
    UNAVAILABLE = "unavailable"  # the shared store is away: 503 + Retry-After, batch kept


# Members as globals: Python 3.11 finds `Enum.MEMBER` through EnumType's __getattr__
# hook, far slower than a global's load (3.12 dropped the hook).
_STORED: Final = Commit.STORED
_ACMC: Final = Hop.ACMC
_CHANGES: Final = (Put, Remove)
_VERDICTS: Final = (AcceptMessage, RefuseMessage)
_waiting: Final = tuple.__new__  # Waiting(...) without NamedTuple's Python-level __new__


CLAIM_LIMIT = 1000
"""Transactions taken over per claim statement (a claim repeats while it gets this many)."""


class AcmsNode(Node):
    """One ACMS process (or library object).  ``await start()`` returns once it listens."""

    def __init__(self, config: AcmsNodeConfig, *, store: Store | SharedStore | None = None,
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
        path, url = acms.store.path, acms.store.url
        if store is None and url is not None:
            from mcacm_sip.store.postgres import PostgresStore  # the [postgres] extra

            store = PostgresStore(url, acms.store.worker_id or "", acms.store.lease_seconds)
        try:  # a SQLite file that cannot serve is a configuration error (the CLI exits 78)
            self.store: Store | SharedStore = store if store is not None else (
                SqliteStore(path, acms.store.synchronous) if path else MemoryStore())
            self.shared: SharedStore | None = (
                self.store if isinstance(self.store, SharedStore) else None)
            """The PostgreSQL store of several workers, or None (one worker: SQLite, memory)."""
            self._local: Store | None = None if isinstance(self.store, SharedStore) else self.store
            self._bindings = SqliteBindingStore(path) if path and store is None else None
        except StoreError as exc:
            if path is None:
                raise
            raise ConfigError("store.path", f"{exc}: create the folder or give another "
                                            "path") from None
        self._shared_bindings: PgBindingStore | None = None
        """With a shared store, the registrations every worker sees (store/pg_bindings.py)."""
        if self.shared is not None:
            from mcacm_sip.store.pg_bindings import PgBindingStore

            self._shared_bindings = PgBindingStore(self.shared.url, self.shared.worker_id,
                                                   on_remote=self._registered_elsewhere)
        self.registrar = Registrar(self._shared_bindings or self._bindings
                                   or MemoryBindingStore(),
                                   authorise=self._may_register, on_change=self._registered,
                                   max_expires=86400, limits=config.sip.limits,
                                   host=self.host)
        self._registrar_service = RegistrarService(self.endpoint, self.registrar)
        self._subscriber = SubscriberService(self.endpoint, transport=config.sip.transport)
        self.trust = Trust(acms.peers, (u.id for u in acms.users), config.sip.trusted_hosts)
        """Whom the node believes (peers, users, trusted hosts)."""
        self._users = self.trust.users
        # a shared store is read in start() (async); the core is replaced there
        snapshot = self._local.load() if self._local is not None else Snapshot()
        self.core = AcmsCore.restore(acms, snapshot, config.limits.quotas())
        if self.metrics is not None and self._local is not None:
            self.metrics.restored(snapshot)
        self._timer: TimerDriver = TimerDriver(self, clock=time.time)
        self._fa_tasks: dict[Uri, asyncio.Task[None]] = {}
        self.failed: asyncio.Future[str] | None = None
        """Resolves (with the reason) when the node had to stop itself (store failure)."""
        # group commit (docs/decisions.md "Benchmarks"): what the events of one loop
        # iteration changed, and the sends waiting for it; resolved True once stored
        self._batch: list[StoreChange] = []
        self._after: list[AcmsAction] = []
        self._stored: asyncio.Future[tuple[Commit, frozenset[str]]] | None = None
        """The pending commit: its outcome and the transactions found held by another
        worker (shared store), which the waiting requests of those transactions get 503 for."""
        self._answers: list[Waiting] = []
        """The requests waiting for the pending commit: answered when the commit settles,
        with no task per request."""
        self._committer: asyncio.Task[None] | None = None
        """Shared store: the task committing batches one after the other."""
        self._store_down = False
        """Shared store unreachable: every MESSAGE gets 503 until a commit succeeds."""
        self._claim_after = 0.0
        """Monotonic time before which this worker claims nothing (decisions, lease rule 7)."""
        self._shedding = False
        """Overloaded: new requests get 503 (``[limits]``)."""
        self._downloads: dict[tuple[IdKey, str], str] = {}
        """(the user's identity key, transaction id) of a pending-data download request -> its
        X-CID, echoed on the download response; newest last, at most ``DOWNLOADS_KEPT``."""
        self._sending: dict[str, float] = {}
        """Sends started (queued for the commit or in progress) -> the loop time the core
        issued each, oldest first."""
        self._answer_due = config.sip.timers.t1
        # RFC 3261 21.5.4 / 20.33: overloaded -> 503 with Retry-After (RFC 3428 adds nothing)
        self._busy_reply = Reply(503, headers=(
            warning(self.host, "overloaded: try again later"),
            ("Retry-After", str(config.limits.retry_after))))
        self._held_reply = Reply(503, headers=(
            warning(self.host, "held by another worker: try again later"),
            ("Retry-After", str(config.limits.retry_after))))
        self._unavailable_reply = Reply(503, headers=(
            warning(self.host, "store unavailable: try again later"),
            ("Retry-After", str(config.limits.retry_after))))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen, restore the logged-on users, and continue every open transaction."""
        self.failed = asyncio.get_running_loop().create_future()
        if self.shared is not None:
            try:
                await self.shared.open()
                snapshot = await self.shared.load()
            except StoreError as exc:
                await self.shared.close()
                raise StoreFailed(f"the store cannot be used: {exc}") from None
            self.core = AcmsCore.restore(self.config.acms, snapshot,
                                         self.config.limits.quotas())
            if self.metrics is not None:
                self.metrics.restored(snapshot)
        if self._shared_bindings is not None:
            await self._shared_bindings.open()
            store = self._shared_bindings
            self.registrar.bindings = sum(len(store.get(aor)) for aor in store.aors())
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
        if not await self._flush():
            raise StoreFailed("the store failed at start")
        self._spawn(release_free_heap(HEAP_RELEASE_INTERVAL))  # RSS flat under churn
        if self.metrics is not None and self.config.metrics.listen is not None:
            self.metrics.serve(*self.config.metrics.listen)
        if self.shared is not None:
            self._spawn(self._leases(self.shared))
        log.info("ACMS %s listening on %s%s", self.psi, self.addresses,
                 f" (worker {self.shared.worker_id})" if self.shared is not None else "",
                 extra={"event": "node.start", "open": len(self.core.transactions()),
                        "worker": self.shared.worker_id if self.shared is not None else None})

    async def stop(self) -> None:
        """Stop taking requests, cancel sends in flight (their records stay: a restart re-sends
        them), close sockets and the store."""
        if not self._running:
            return
        # what was accepted in this loop iteration, before the store closes (a shared store that
        # is away keeps it: nothing of it was acknowledged, the requesters retry)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush(), 5.0)
        committer = (self._committer,) if self._committer is not None else ()
        await self._halt(*self._fa_tasks.values(), *committer)
        await self._subscriber.close()
        await self._registrar_service.close()
        await self.endpoint.close()
        if self._local is not None:
            self._local.close()
        elif self.shared is not None:
            await self.shared.close()
        if self._bindings is not None:
            self._bindings.close()
        if self._shared_bindings is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shared_bindings.flush(), 5.0)
            await self._shared_bindings.close()
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
        answers, see ``_on_message``) wait for it.  The core's timer is re-read once per
        commit (at most one loop iteration later), not once per event.  The event's verdict
        (only a MESSAGE has one), read in the same pass over ``actions``."""
        changes: list[StoreChange] = []
        starts: list[AcmsAction] = []  # what _start_sends acts on
        verdict: MessageVerdict | None = None
        sending = self._sending
        now = None
        for action in actions:
            if isinstance(action, _CHANGES):
                changes.append(action)
            elif isinstance(action, SendFlow):  # (a retry is a new one: its clock restarts)
                if now is None:
                    now = asyncio.get_running_loop().time()
                send_id = action.send_id
                sending.pop(send_id, None)
                sending[send_id] = now
                starts.append(action)
            elif isinstance(action, SubscribeFa):
                starts.append(action)
            elif verdict is None and isinstance(action, _VERDICTS):
                verdict = action
        if changes or self._stored is not None:
            self._batch += changes
            self._after += starts
            if self._stored is None:
                loop = asyncio.get_running_loop()
                self._stored = loop.create_future()
                loop.call_soon(self._commit)  # after every callback ready in this iteration
        else:  # nothing waits to be stored
            self._start_sends(starts)
            self._timer.rearm()
        return verdict

    def _commit(self) -> bool:
        """Group commit: the changes of every event since the last commit, in order, in ONE
        store transaction; then the waiting answers and sends are released ("stored before
        acknowledged").  A failure stops the node; every waiting request gets 500.  A shared
        store commits in a task (:meth:`_commit_shared`)."""
        self._timer.rearm()  # for every event since the last commit
        if self._local is None:
            if self.shared is not None and self._stored is not None and (
                    self._committer is None or self._committer.done()):
                self._committer = asyncio.get_running_loop().create_task(
                    self._commit_shared(self.shared))
            return self._running
        stored, self._stored = self._stored, None
        answers, self._answers = self._answers, []
        batch, self._batch = self._batch, []
        after, self._after = self._after, []
        if stored is None:
            return self._running
        ok = True
        if batch:
            try:
                began = time.perf_counter()
                self._local.apply(batch)
                if self.metrics is not None:
                    self.metrics.committed(batch, time.perf_counter() - began, time.time())
            except Exception as exc:
                self._store_failed(exc)
                ok = False
        self._settle(stored, answers, Commit.STORED if ok else Commit.FAILED)
        if ok and after:  # (most commits, a 200 in's, release no send: no Handle for them)
            # after the answers the commit released (sent from _settle, or their callbacks
            # queued first): a request's 200 leaves before the process indication it caused
            # (10.17.7.2 step 4); from a loop callback of their own, as when a task sent them
            # (at start, the sends a restart re-sends start once start() has returned)
            asyncio.get_running_loop().call_soon(self._start_sends, after)
        return ok

    def _settle(self, stored: asyncio.Future[tuple[Commit, frozenset[str]]],
                answers: list[Waiting],
                outcome: Commit, held: frozenset[str] = frozenset()) -> None:
        """Resolve a commit and, at once, the answers of the requests waiting for it: each
        sent from its ``set_result`` (an endpoint's :class:`Answer`; a Future's callbacks
        queued) before the sends the commit releases (a request's 200 leaves first,
        10.17.7.2 step 4)."""
        stored.set_result((outcome, held))
        if outcome is _STORED and not held:  # each its own reply (as _stored_reply)
            for answer, reply, _key, _opens in answers:
                if not answer.done():  # (cancelled: its endpoint stopped)
                    answer.set_result(reply)
            return
        for answer, reply, key, _opens in answers:
            if not answer.done():
                answer.set_result(self._stored_reply(outcome, held, reply, key))

    def _store_failed(self, exc: Exception) -> None:
        log.critical("store failed, stopping: %s", exc, extra={"event": "store.failed"})
        if self.failed is not None and not self.failed.done():
            self.failed.set_result(f"store failed: {exc}")
        self._running = False

    async def _commit_shared(self, store: SharedStore) -> None:
        """The group commit on a shared store, one batch after the other (what arrives while
        one is in flight forms the next).  ``StoreUnavailable``: the waiting requests get 503,
        the batch and its sends are kept and committed first once the store is back
        (docs/decisions.md "A database that fails is not a crash")."""
        while self._stored is not None:
            stored, self._stored = self._stored, None
            answers, self._answers = self._answers, []
            batch, self._batch = self._batch, []
            after, self._after = self._after, []
            try:
                began = time.perf_counter()
                held = await store.apply(batch) if batch else frozenset()
                if batch and self.metrics is not None:
                    self.metrics.committed(batch, time.perf_counter() - began, time.time())
            except StoreUnavailable as exc:
                # decision (docs/decisions.md "A database that fails is not a crash"): a
                # request answered 503 is not done -- the transactions the requests of this
                # commit opened are withdrawn (the sender may send it again, to any worker);
                # what changed on transactions held before is kept and committed first once
                # the store is back (each sender repeats its flow, and a repeat is idempotent)
                opened = frozenset(w.key for w in answers if w.opens and w.key)
                batch, after = self._withdraw(opened, batch, after)
                self._batch, self._after = batch + self._batch, after + self._after
                if self._stored is None:
                    self._stored = asyncio.get_running_loop().create_future()
                self._set_store_down(True, str(exc))
                self._settle(stored, answers, Commit.UNAVAILABLE)
                if not self._running:
                    return
                await asyncio.sleep(max(store.retry_delay, 0.05))
                continue
            except Exception as exc:
                self._store_failed(exc)
                self._settle(stored, answers, Commit.FAILED)
                if self._stored is not None:
                    self._settle(self._stored, self._answers, Commit.FAILED)
                    self._stored, self._answers = None, []
                return
            self._set_store_down(False)
            if held:
                after = self._release(held, after)
            self._settle(stored, answers, Commit.STORED, held)
            self._start_sends(after)

    def _release(self, held: frozenset[str], after: list[AcmsAction]) -> list[AcmsAction]:
        """Forget transactions another worker holds (lease rule 5) and drop their sends; if
        the holder's lease has run out, claim now so a retried request finds them here."""
        after = self._withdraw(held, [], after)[1]
        if self.shared is not None and time.monotonic() >= self._claim_after:  # rule 7
            self._spawn(self._claim_now())
        return after

    def _withdraw(self, keys: frozenset[str], batch: list[StoreChange],
                  after: list[AcmsAction]) -> tuple[list[StoreChange], list[AcmsAction]]:
        """The core forgets the transactions ``keys`` (with their pending items and sends);
        ``batch`` and ``after`` without their changes and sends."""
        if not keys:
            return batch, after
        dropped = {send_id for key in keys for send_id in self.core.sends_of(key)}
        self._apply(self.core.handle(ReleaseRecords(time.time(), keys)))  # (changes nothing)
        for send_id in dropped:
            self._sending.pop(send_id, None)
        return ([c for c in batch if not _belongs(c, keys, dropped)],
                [a for a in after if not (isinstance(a, SendFlow) and a.send_id in dropped)])

    async def _claim_now(self) -> None:
        try:
            await self.claim_expired()
        except StoreError as exc:  # the lease loop retries; a real failure shows there too
            log.info("claim after a conflict failed: %s", exc)

    def _set_store_down(self, down: bool, reason: str = "") -> None:
        if down:  # lease rule 7: after an outage, let the others renew before claiming
            self._claim_after = time.monotonic() + (
                self.shared.lease_seconds if self.shared is not None else 0.0)
        if down == self._store_down:
            return
        self._store_down = down
        if down:
            log.warning("store unavailable, answering 503: %s", reason,
                        extra={"event": "store.unavailable"})
        else:
            log.warning("store available again", extra={"event": "store.recovered"})

    async def _flush(self) -> bool:
        """Commit what is queued now; True once stored (False: failed or unavailable)."""
        stored = self._stored
        if stored is None:
            return self._running
        self._commit()
        return (await stored)[0] is Commit.STORED

    @property
    def store_down(self) -> bool:
        """The shared store is away: every MESSAGE gets 503 until it is back."""
        return self._store_down

    # ------------------------------------------------------------------ leases

    async def _leases(self, store: SharedStore) -> None:
        """Every ``lease_seconds / 3``: renew this worker's lease, take over expired ones of
        other workers, and learn the mappings and groups they wrote (docs/decisions.md "Scale-out:
        leases")."""
        while self._running:
            await asyncio.sleep(max(store.retry_delay, 0.05) if self._store_down
                                else store.lease_seconds / 3)
            if not self._running or (self._store_down and self._stored is not None):
                continue  # the committer is retrying its kept batch; it ends the outage
            try:
                await store.renew()
                if self._store_down:  # found away here, with nothing kept to commit
                    self._set_store_down(False)
                if time.monotonic() >= self._claim_after:
                    await self.claim_expired()
                shared = await store.shared_since()
            except StoreUnavailable as exc:
                self._set_store_down(True, str(exc))
                continue
            except StoreError as exc:
                self._store_failed(exc)
                return
            if shared.mappings or shared.groups:
                self.feed(AdoptRecords(time.time(), shared))

    async def claim_expired(self) -> int:
        """Take over other workers' transactions whose lease expired, now; how many (the lease
        loop calls this every ``lease_seconds / 3``; tests may call it directly)."""
        if self.shared is None:
            return 0
        count = 0
        while self._running:
            claimed = await self.shared.claim(CLAIM_LIMIT)
            if not claimed.transactions:
                break
            count += len(claimed.transactions)
            self.feed(AdoptRecords(time.time(), claimed))
            log.info("took over %d transactions", len(claimed.transactions),
                     extra={"event": "store.adopted", "count": len(claimed.transactions)})
            if len(claimed.transactions) < CLAIM_LIMIT:
                break
        return count

    def _start_sends(self, actions: list[AcmsAction]) -> None:
        for action in actions:
            if isinstance(action, SendFlow):
                self._deliver(action)
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
        procedure: str | None = None
        if isinstance(flow, PendingDataDownloadRequest):
            # 10.17.3.1: the download response echoes the request's X-CID (a page after a
            # notification: the notifying worker's, so the next page comes back here)
            procedure = procedure_of(req.header(PROCEDURE_HEADER))
            self._remember_download(flow, procedure)
        if not self._running:
            return message_reply(self.host, 503, "stopping")
        if self._store_down:  # nothing can be stored: nothing is accepted (RFC 3261 21.5.4)
            return self._unavailable_reply
        # (the backlog is at most the sends in flight: under the limit and not shedding,
        # nothing is refused and nothing flips, so neither is looked at)
        if (self._shedding or self.core.sends_in_flight >= self.config.limits.max_in_flight) \
                and self._opens_transaction(event) and self._overloaded():
            if self.metrics is not None:
                self.metrics.shed.labels("overload").inc()
            return self._busy_reply
        if self.shared is not None:
            answered = self._answered_key(event)
            if answered == "":
                # decision (docs/decisions.md "Scale-out: the procedure header, the dispatcher
                # and failover"): an answer about a transaction this worker does not hold is
                # not ours to refuse (404/403 are final, RFC 3261 21.4) while another worker
                # holds it: 503, the dispatcher tries the next worker, the sender repeats
                return self._held_or_unknown(self.shared, req, flow, sender, event)
            if isinstance(flow, PendingDataDownloadRequest) and (
                    procedure is None or procedure not in self.core.item_procedures(flow.user)):
                # not (only) ours to answer, perhaps: ask the store (docs/decisions.md
                # "Scale-out: the procedure header, the dispatcher and failover")
                return self._download_here_or_held(self.shared, req, flow, sender, event,
                                                   procedure)
            # the transaction the flow opens or answers: if the commit finds another worker
            # holding it, nothing of it was stored and the flow gets 503, never a 200
            if answered:
                return self._handled(req, flow, sender, event, answered)
            opened = self._opened_key(event)
            return self._handled(req, flow, sender, event, opened, opens=opened is not None)
        return self._handled(req, flow, sender, event, None)

    async def _download_here_or_held(self, store: SharedStore, req: Request,
                                     flow: PendingDataDownloadRequest, sender: str,
                                     event: AcmsEvent, procedure: str | None) -> Reply:
        """A pending-data download (10.17.3.1) on a shared store whose X-CID names no
        transaction of the items this worker holds for the user: 503 (held by another
        worker: the dispatcher tries the next one) if it names one another worker holds
        items of, or if only other workers hold items for the user; else answered here."""
        # the items' owner as the core queued it: the configured spelling of the user
        aor = address_of_record(flow.user)
        configured = self._users.get(aor) if aor is not None else None
        owners = [flow.user] if configured in (None, flow.user) else [flow.user, configured]
        try:
            elsewhere = {tx.procedure for tx in await store.pending_elsewhere(owners)}
        except StoreUnavailable:
            return self._unavailable_reply
        except StoreError as exc:
            self._store_failed(exc)
            return message_reply(self.host, 500, "store-failed")
        if procedure in elsewhere or (elsewhere and not self.core.pending_for(flow.user)):
            log.info("pending-data download %s from %s: the items are at another worker",
                     flow.transaction_id, flow.user, extra={
                         "event": "acm.download_elsewhere", "call_id": req.call_id,
                         "status": 503})
            return self._held_reply
        reply = self._handled(req, flow, sender, event, None)
        return reply if isinstance(reply, Reply) else await reply

    def _handled(self, req: Request, flow: AcmFlow, sender: str, event: AcmsEvent,
                 key: str | None, opens: bool = False) -> Reply | Awaitable[Reply]:
        """The core's answer to ``event``; a 200 only once what it changed is stored.
        ``key``: the transaction it opens (``opens``) or answers, on a shared store."""
        verdict = self._apply(self.core.handle(event))
        reply = ACCEPTED if type(verdict) is AcceptMessage else verdict_reply(self.host, verdict)
        if reply.status == 503 and self.metrics is not None:  # a quota (core/quota.py)
            self.metrics.shed.labels("quota").inc()
        if log.isEnabledFor(logging.INFO):  # nothing built when INFO is off (hot path)
            log.info("%s %s from %s: %d", flow.FLOW, getattr(flow, "transaction_id", ""),
                     sender, reply.status, extra={
                         "event": "acm.received", "call_id": req.call_id, "flow": flow.FLOW,
                         "status": reply.status,
                         "transaction_id": getattr(flow, "transaction_id", None)})
        stored = self._stored
        if stored is None:
            return reply
        # 23.280 10.17.7.2 step 4: the 200 leaves only once the request is stored; the
        # endpoint sends it from _settle's set_result (no Handle per request, as a Future's)
        answer = Answer()
        self._answers.append(_waiting(Waiting, (answer, reply, key, opens)))
        return answer

    def _stored_reply(self, outcome: Commit, held: frozenset[str], reply: Reply,
                      key: str | None) -> Reply:
        """The answer to a request once its commit settled."""
        if outcome is _STORED and key in held:
            # held by another worker (opened there first, or taken over while this one
            # stalled): nothing of it was stored, so not ours to answer; the retry reaches
            # the worker holding it, or this one once it has taken it over (RFC 3261 21.5.4)
            return self._held_reply
        match outcome:
            case Commit.STORED:
                return reply
            case Commit.UNAVAILABLE:
                return self._unavailable_reply
        return message_reply(self.host, 500, "store-failed")

    def _remember_download(self, flow: PendingDataDownloadRequest, procedure: str | None
                           ) -> None:
        if procedure is None:
            return
        key = (id_key(flow.user), flow.transaction_id)
        self._downloads.pop(key, None)
        self._downloads[key] = procedure
        if len(self._downloads) > DOWNLOADS_KEPT:
            del self._downloads[next(iter(self._downloads))]

    def _echoed(self, send: SendFlow) -> str | None:
        """The X-CID a download response echoes (its request's), None for anything else."""
        flow = send.flow
        if isinstance(flow, PendingDataDownloadResponse):
            return self._downloads.pop((id_key(flow.user), flow.transaction_id), None)
        return None

    def _answered_key(self, event: AcmsEvent) -> str | None:
        """For an answer (a partner's indication or response, our ACMC's decision): the key
        of the transaction it is about, "" if this worker holds none; None for anything
        else."""
        leg = self._answered_leg(event)
        return None if leg is None else self.core.leg_key(*leg) or ""

    @staticmethod
    def _answered_leg(event: AcmsEvent) -> tuple[Role, str] | None:
        """For an answer: the role of the transaction it is about and the id it names on
        that transaction's other leg; None for anything else."""
        if not isinstance(event, FlowFromAcmc | FlowFromPeer):
            return None
        flow = event.flow
        if isinstance(flow, _RESPONSES) or (isinstance(event, FlowFromPeer)
                                            and isinstance(flow, ProcessIndication)):
            role = Role.PRIMARY if isinstance(event, FlowFromPeer) else Role.PARTNER
            return role, flow.transaction_id
        return None

    async def _held_or_unknown(self, store: SharedStore, req: Request, flow: AcmFlow,
                               sender: str, event: AcmsEvent) -> Reply:
        """An answer about a transaction this worker does not hold: 503 (held by another
        worker) if another worker holds it, else the core's answer (404 / 403, as a single
        ACMS: the transaction exists nowhere)."""
        leg = self._answered_leg(event)
        assert leg is not None
        try:
            elsewhere = await store.holds_leg(*leg)
        except StoreUnavailable:
            return self._unavailable_reply
        except StoreError as exc:
            self._store_failed(exc)
            return message_reply(self.host, 500, "store-failed")
        if elsewhere and not self.core.leg_key(*leg):  # (or taken over meanwhile: ours)
            return self._held_reply
        reply = self._handled(req, flow, sender, event, self.core.leg_key(*leg))
        return reply if isinstance(reply, Reply) else await reply

    def _opened_key(self, event: AcmsEvent) -> str | None:
        """The key of the transaction a request would open, if the core does not hold it."""
        if not self._opens_transaction(event):
            return None
        if isinstance(event, FlowFromPeer) and isinstance(event.flow, AcmRequest):
            return tx_key(Role.PARTNER, event.origin, event.flow.transaction_id)
        if isinstance(event, FlowFromAcmc) and isinstance(event.flow, AcmRequest):
            return tx_key(Role.PRIMARY, event.sender, event.flow.transaction_id)
        return None

    # ------------------------------------------------------------------ overload

    @property
    def in_flight(self) -> int:
        """Sends without a known outcome (in progress or waiting for a retry)."""
        return self.core.sends_in_flight

    @property
    def backlog(self) -> int:
        """The load measure of ``[limits] max_in_flight``: the sends without a known outcome
        less those issued under T1 ago (RFC 3261 17.1.1.1: the round-trip estimate).  A send
        answered within T1 is the pipeline of a busy, healthy node (the group commit releases
        one loop iteration's sends at once); one waiting longer, or waiting for a retry, is
        backlog (a slow or dead peer, a starved loop)."""
        horizon = asyncio.get_running_loop().time() - self._answer_due
        young = len(self._sending)
        for started in self._sending.values():  # oldest first: stops at the first young one
            if started > horizon:
                break
            young -= 1
        return max(0, self.core.sends_in_flight - young)

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
        backlog = self.backlog
        over = backlog >= (0.9 * limit if self._shedding else limit)
        if over != self._shedding:
            self._shedding = over
            log.warning("%s: %d sends late or waiting for a retry (limit %d), %d in flight",
                        "overloaded" if over else "no longer overloaded", backlog,
                        self.config.limits.max_in_flight, self.in_flight,
                        extra={"event": "overload.start" if over else "overload.end",
                               "in_flight": self.in_flight, "backlog": backlog})
        return over

    # ------------------------------------------------------------------ MESSAGE out

    def _deliver(self, send: SendFlow) -> None:
        """Start one MESSAGE out; its outcome reaches the core from a later loop callback (no
        task per send: ``start_message``)."""
        if send.hop is _ACMC:
            contacts = self.registrar.contacts(send.to, time.time())
            if not contacts:  # logged off meanwhile: the core queues it (10.17.3.1)
                self._sending.pop(send.send_id, None)
                asyncio.get_running_loop().call_soon(self.feed, DeliveryOutcome(
                    time.time(), send.send_id, False, "not registered",
                    failure=Failure.NO_BINDING))
                return
            binding = contacts[-1]  # the most recent binding
            # RFC 3327 5.5: through the proxies its REGISTER came by (the SIP core), if any
            uri, route = binding.contact, binding.path
        else:
            uri, route = send.to, ()

        send_id = send.send_id

        def done(sent: Sent) -> None:
            self._sending.pop(send_id, None)
            if self._running:  # (feed)
                self._apply(self.core.handle(sent.outcome(time.time(), send_id)))

        if send.hop is _ACMC:
            def start() -> None:
                start_message(self.endpoint, self.config.sip, uri=uri, to=send.to,
                              identity=self.psi, flow=send.flow, route=route, done=done,
                              procedure=self._echoed(send) or send.procedure or None)

            # to a registered contact from the next loop callback (when a task used to send
            # it): the 200 to a REGISTER leaves before the notification its logon releases
            # (10.17.3.1), as the 200 to a MESSAGE before the flows it caused
            asyncio.get_running_loop().call_soon(start)
        else:
            flow = send.flow  # (only a download response echoes an X-CID: _echoed)
            start_message(self.endpoint, self.config.sip, uri=uri, to=send.to,
                          identity=self.psi, flow=flow, route=route, done=done,
                          procedure=(self._echoed(send) if isinstance(
                              flow, PendingDataDownloadResponse) else None)
                          or send.procedure or None)

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

    def _registered_elsewhere(self, aor: Uri, before: tuple[Binding, ...],
                              after: tuple[Binding, ...]) -> None:
        # another worker's registrar changed a shared registration: log-on and log-off
        # (10.17.3.1) reach this worker's core too, so it delivers instead of queueing
        self._registered(RegistrationChange(aor, before, after))

    def _registered(self, change: RegistrationChange) -> None:
        user = self._users.get(change.aor)
        if user is None or not self._running:
            return
        now = time.time()
        if change.logged_on:  # 10.17.3.1: logon -> pending notification
            log.info("%s logged on", user, extra={"event": "acmc.logon", "user": user})
            self.feed(UserLoggedOn(now, user))
        elif change.logged_off:
            log.info("%s logged off", user, extra={"event": "acmc.logoff", "user": user})
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
