"""The asyncio wrappers of the SIP usages: the sans-I/O registrar, subscription and
publication cores (:mod:`..registrar`, :mod:`..subscription`, :mod:`..publication`) served and
driven on a :class:`~.endpoint.SipEndpoint`.

Servers (:class:`RegistrarService`, :class:`NotifierService`, :class:`PublicationService`)
serve a method and expire their core's state on time; clients (:class:`RegistrationClient`,
:class:`SubscriberService`, :class:`PublicationClient`) send what their core asks and keep it
refreshed, one request outstanding at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from ..dialog import Body, Header, Reply, RequestSpec
from ..errors import SipTimeout, SipTransportError
from ..message import Request, Response
from ..publication import Compositor, Publisher
from ..registrar import Binding, Registrar, Registration, RegistrationState
from ..request import spec_request
from ..subscription import Notification, Notifier, Notify, Subscriber, SubState
from ..timer import Timed
from ..transaction import Transport
from ..uri import Uri, addr_spec
from .endpoint import IncomingRequest, SipEndpoint
from .timer import TimerDriver

log = logging.getLogger("mcacm.sip")

# --------------------------------------------------------------------------------------------
# shared


async def exchange(
    endpoint: SipEndpoint,
    spec: RequestSpec,
    on_response: Callable[[Response | None, float], RequestSpec | None],
    clock: Callable[[], float],
    transport: Transport | None = None,
    failures: list[str] | None = None,
) -> Response | None:
    """Send ``spec``, feed the final response (None on timeout or transport failure) to the
    sans-I/O core, and send what it asks next (a 423 retry, a 412 re-publication) until it asks
    nothing. Returns the last final response, or None if the last attempt got none (why is
    appended to ``failures``)."""
    next_spec: RequestSpec | None = spec
    response: Response | None = None
    while next_spec is not None:
        out = spec_request(next_spec, transport)
        try:
            response = (await endpoint.send(out)).message
        except (SipTimeout, SipTransportError) as exc:
            log.info("%s %s failed: %s", next_spec.method, next_spec.uri, exc)
            response = None
            if failures is not None:
                failures.append(str(exc))
        next_spec = on_response(response, clock())
    return response


class ExpiringServer(Timed, Protocol):
    """A sans-I/O server usage whose state expires (:class:`~..registrar.Registrar`,
    :class:`~..publication.Compositor`): its ``handle_timer`` expires it."""

    def handle(self, request: Request, now: float) -> Reply: ...


class ExpiringService:
    """Serves ``method`` on an endpoint with an :class:`ExpiringServer`, expiring its state on
    time (its :class:`TimerDriver` re-armed after every request)."""

    def __init__(self, endpoint: SipEndpoint, method: str, server: ExpiringServer, *,
                 accept: Iterable[str] | None = None, clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self._method = method
        self._server = server
        self._accept = accept
        self._timer = TimerDriver(server, clock=clock, start=False)

    def start(self) -> None:
        """Serve the method (``accept``: body types; others get 415 from the endpoint) and
        start the expiry timer (call inside the running loop)."""
        self.endpoint.serve(self._method, self._handle, accept=self._accept)
        self._timer.start()

    async def close(self) -> None:
        self._timer.stop()

    def check(self) -> None:
        """Re-read the clock now (after a clock jump, or a fake clock moved by a test)."""
        self._timer.check()

    def _handle(self, incoming: IncomingRequest) -> Reply:
        reply = self._server.handle(incoming.message, self.clock())
        self._timer.rearm()
        return reply


class RefreshingCore(Protocol):
    """A sans-I/O client usage that refreshes (:class:`~..registrar.Registration`,
    :class:`~..publication.Publisher`, :class:`~..subscription.Subscriber`): its
    ``handle_timer`` returns the refresh to send."""

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> RequestSpec | None: ...

    def on_response(self, response: Response | None, now: float) -> RequestSpec | None: ...


CoreT = TypeVar("CoreT", bound=RefreshingCore)


class RefreshingClient(Generic[CoreT]):
    """The asyncio side of a :class:`RefreshingCore`: one request outstanding at a time
    (RFC 3261 10.2, RFC 3903 4), and a :class:`TimerDriver` that sends the core's refreshes.

    It is the driver's :class:`~..timer.Timed` source: no deadline while a refresh is being
    exchanged, the core's deadline otherwise.
    """

    def __init__(self, endpoint: SipEndpoint, core: CoreT, transport: Transport | None,
                 clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.core = core
        self.transport = transport
        self.clock = clock
        self._lock = asyncio.Lock()
        self._timer = TimerDriver(self, clock=clock, start=False)
        self._refreshing: asyncio.Task[None] | None = None
        self.failures: list[str] = []
        """Why the exchanges got no answer (timeout, DNS, connect), latest last."""

    def get_timer(self) -> float | None:
        return None if self._refreshing is not None else self.core.get_timer()

    def handle_timer(self, now: float) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh(now))
        self._refreshing = task
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        if self._refreshing is task:
            self._refreshing = None
        if not task.cancelled() and task.exception() is not None:
            log.error("refresh failed", exc_info=task.exception())
        self._timer.rearm()

    async def _stop_refreshing(self) -> None:
        self._timer.stop()
        task, self._refreshing = self._refreshing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop refreshing; the state then expires at the server."""
        await self._stop_refreshing()

    async def _step(self, step: Callable[[float], RequestSpec | None],
                    now: float | None = None) -> None:
        """Under the lock: ask the core (``step(now)``) and exchange what it wants sent."""
        async with self._lock:
            spec = step(self.clock() if now is None else now)
            if spec is not None:
                del self.failures[:-4]  # the recent ones are what a caller reports
                await exchange(self.endpoint, spec, self.core.on_response, self.clock,
                               self.transport, self.failures)

    def _keep_refreshing(self) -> None:
        self._timer.start()

    async def _withdraw(self, step: Callable[[float], RequestSpec | None]) -> None:
        """Stop refreshing, then send the core's Expires: 0 request."""
        await self._stop_refreshing()
        await self._step(step)

    async def _refresh(self, now: float) -> None:
        await self._step(self.core.handle_timer, now)



# --------------------------------------------------------------------------------------------


class RegistrarService(ExpiringService):
    """Serves REGISTER on an endpoint with a :class:`Registrar`, expiring bindings on time."""

    def __init__(
        self, endpoint: SipEndpoint, registrar: Registrar, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(endpoint, "REGISTER", registrar, clock=clock)
        self.registrar = registrar

    def is_registered(self, aor: str | Uri) -> bool:
        return self.registrar.is_registered(aor, self.clock())

    def contacts(self, aor: str | Uri) -> tuple[Binding, ...]:
        return self.registrar.contacts(aor, self.clock())


class RegistrationError(Exception):
    """REGISTER failed; ``status`` is the final status, None on timeout or transport error."""

    def __init__(self, status: int | None, why: str | None = None) -> None:
        super().__init__("REGISTER failed: "
                         + (str(status) if status is not None else why or "no response"))
        self.status = status
        self.why = why
        """Without a status: why nothing came (no final response in time, DNS, connect)."""


class RegistrationClient(RefreshingClient[Registration]):
    """Registers an AOR through an endpoint and keeps the registration refreshed."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        *,
        registrar: str,
        aor: str,
        expires: int = 3600,
        transport: Transport = "udp",
        contact_user: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        core = Registration(
            registrar=registrar,
            aor=aor,
            contact=addr_spec(endpoint.contact(transport, contact_user)),
            expires=expires,
        )
        super().__init__(endpoint, core, transport, clock)

    async def register(self) -> int:
        """Register and keep refreshing; returns the granted seconds.

        Raises RegistrationError if the registrar refused (after a 423 retry) or did not answer;
        refreshing goes on in the background regardless.
        """
        await self._step(self.core.register)
        self._keep_refreshing()
        if self.core.state is not RegistrationState.REGISTERED or self.core.granted is None:
            raise RegistrationError(self.core.last_status,
                                    self.failures[-1] if self.failures else None)
        return self.core.granted

    async def unregister(self) -> None:
        """Stop refreshing and remove the binding (Expires: 0)."""
        await self._withdraw(self.core.unregister)



# --------------------------------------------------------------------------------------------


class NotifierService:
    """Serves SUBSCRIBE with a :class:`Notifier` and sends its NOTIFYs, one at a time per
    subscription so they arrive in CSeq order."""

    def __init__(
        self, endpoint: SipEndpoint, notifier: Notifier, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.endpoint = endpoint
        self.notifier = notifier
        self.clock = clock
        self._timer = TimerDriver(self, clock=clock, start=False)
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.endpoint.serve("SUBSCRIBE", self._handle)
        self._timer.start()

    async def close(self) -> None:
        self._timer.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def check(self) -> None:
        """Re-read the clock now (after a clock jump, or a fake clock moved by a test)."""
        self._timer.check()

    def get_timer(self) -> float | None:
        return self.notifier.get_timer()

    def handle_timer(self, now: float) -> None:
        """Send the final NOTIFYs of the subscriptions that expired."""
        self._send(self.notifier.handle_timer(now))

    def changed(self, event: str, key: str) -> None:
        """Tell every active subscriber to ``key`` the new state (the package's ``state``)."""
        self._send(self.notifier.changed(event, key, self.clock()))

    def activate(self, subscription_id: str) -> None:
        self._send(self.notifier.activate(subscription_id, self.clock()))

    def terminate(self, subscription_id: str, reason: str = "noresource") -> None:
        self._send(self.notifier.terminate(subscription_id, self.clock(), reason))

    async def drain(self) -> None:
        """Wait until every NOTIFY queued so far has its final response."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _handle(self, incoming: IncomingRequest) -> Reply:
        contact = self.endpoint.contact(incoming.source.transport)
        result = self.notifier.on_subscribe(incoming.message, self.clock(), contact)
        # The NOTIFYs go out after the 2xx is handed back; the subscriber copes with either
        # order (RFC 6665 4.1.2.4).
        asyncio.get_running_loop().call_soon(self._send, list(result.notifies))
        self._timer.rearm()
        return result.reply

    def _send(self, notifies: Iterable[Notify]) -> None:
        for notify in notifies:
            task = asyncio.get_running_loop().create_task(self._deliver(notify))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, notify: Notify) -> None:
        lock = self._locks.setdefault(notify.subscription_id, asyncio.Lock())
        async with lock:
            response = await exchange(self.endpoint, notify.request, lambda r, n: None, self.clock)
        self.notifier.on_notify_result(
            notify.subscription_id, response.status if response is not None else None
        )
        if notify.final or self.notifier.get(notify.subscription_id) is None:
            self._locks.pop(notify.subscription_id, None)
        self._timer.rearm()


class SubscriptionRefused(Exception):
    """The initial SUBSCRIBE failed; ``status`` is None on timeout or transport error."""

    def __init__(self, status: int | None) -> None:
        super().__init__(f"SUBSCRIBE failed: {status if status is not None else 'no response'}")
        self.status = status


class SubscriptionHandle(RefreshingClient[Subscriber]):
    """A live subscription: iterate it for notifications (ends when it terminates)."""

    def __init__(self, service: SubscriberService, core: Subscriber,
                 on_notification: Callable[[Notification], None] | None = None) -> None:
        super().__init__(service.endpoint, core, service.transport, service.clock)
        self.service = service
        self.on_notification = on_notification
        self._queue: asyncio.Queue[Notification | None] = asyncio.Queue()

    @property
    def state(self) -> SubState | None:
        return self.core.state

    @property
    def reason(self) -> str | None:
        return self.core.reason

    async def __aiter__(self) -> AsyncIterator[Notification]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item

    async def next(self, timeout: float | None = None) -> Notification | None:
        """The next notification, None once the subscription has ended and all were read."""
        if self._queue.empty() and self.core.terminated and self.service.get(self) is None:
            return None
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    async def unsubscribe(self) -> None:
        """Send Expires: 0; the final NOTIFY (or its absence) ends the subscription."""
        await self._step(self.core.unsubscribe)
        self._check_end()
        self._timer.rearm()

    def check(self) -> None:
        """Re-read the clock now (after a clock jump, or a fake clock moved by a test)."""
        self._timer.check()

    def deliver(self, notification: Notification | None) -> None:
        if notification is not None:
            self._queue.put_nowait(notification)
            if self.on_notification is not None:
                self.on_notification(notification)
        self._check_end()

    def _check_end(self) -> None:
        if self.core.terminated and self.service.forget(self):
            self._queue.put_nowait(None)
            self._timer.stop()

    async def _refresh(self, now: float) -> None:
        await super()._refresh(now)
        self._check_end()


class SubscriberService:
    """Serves NOTIFY for the subscriptions it creates; 481 for any other NOTIFY."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        *,
        transport: Transport = "udp",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.transport: Transport = transport
        self.clock = clock
        self._subs: dict[tuple[str, str], SubscriptionHandle] = {}

    def start(self) -> None:
        self.endpoint.serve("NOTIFY", self._handle)

    async def close(self) -> None:
        for handle in list(self._subs.values()):
            await handle.close()
            handle._queue.put_nowait(None)
        self._subs.clear()

    async def subscribe(
        self,
        target: str,
        *,
        event: str,
        from_uri: str,
        accept: Sequence[str] = (),
        expires: int = 3600,
        headers: Sequence[Header] = (),
        body: Body | None = None,
        on_notification: Callable[[Notification], None] | None = None,
    ) -> SubscriptionHandle:
        """Send the initial SUBSCRIBE and return once it is accepted (2xx).

        Raises SubscriptionRefused otherwise. Notifications, the first one included, arrive on
        the handle; a fetch (``expires=0``) gets one and then ends.
        """
        core = Subscriber(
            target=target, from_uri=from_uri, event=event, accept=accept, expires=expires,
            headers=headers, body=body, contact=self.endpoint.contact(self.transport),
        )
        handle = SubscriptionHandle(self, core, on_notification)
        self._subs[core.key] = handle  # before sending: the NOTIFY may overtake the 2xx
        await handle._step(core.subscribe)
        if core.dialog is None:  # refused, or no answer and no NOTIFY either
            self._subs.pop(core.key, None)
            raise SubscriptionRefused(core.last_status)
        handle._check_end()
        if not core.terminated:  # a fetch may have ended already: nothing to refresh
            handle._keep_refreshing()
        return handle

    def get(self, handle: SubscriptionHandle) -> SubscriptionHandle | None:
        """The handle if its subscription is still known to the service."""
        found = self._subs.get(handle.core.key)
        return found if found is handle else None

    def forget(self, handle: SubscriptionHandle) -> bool:
        """Drop an ended subscription; True the first time."""
        if self.get(handle) is None:
            return False
        del self._subs[handle.core.key]
        return True

    def _handle(self, incoming: IncomingRequest) -> Reply:
        notify = incoming.message
        handle = self._subs.get((notify.call_id, notify.to_tag or ""))
        if handle is None:
            return Reply(481)  # RFC 6665 4.1.3: no subscription for this NOTIFY
        reply, notification = handle.core.on_notify(notify, self.clock())
        handle.deliver(notification)
        handle.check()
        return reply



# --------------------------------------------------------------------------------------------


class PublicationService(ExpiringService):
    """Serves PUBLISH with a :class:`Compositor`, expiring publications on time."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        compositor: Compositor,
        *,
        accept: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(endpoint, "PUBLISH", compositor, accept=accept, clock=clock)
        self.compositor = compositor


class PublishError(Exception):
    """A PUBLISH failed; ``status`` is None on timeout or transport error."""

    def __init__(self, status: int | None) -> None:
        super().__init__(f"PUBLISH failed: {status if status is not None else 'no response'}")
        self.status = status


class PublicationClient(RefreshingClient[Publisher]):
    """Publishes one piece of state through an endpoint and keeps it refreshed."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        *,
        target: str,
        from_uri: str,
        event: str,
        headers: Iterable[Header] = (),
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(endpoint, Publisher(target=target, from_uri=from_uri, event=event,
                                             headers=headers), transport, clock)

    @property
    def etag(self) -> str | None:
        return self.core.etag

    async def publish(self, body: Body, expires: int = 3600) -> str:
        """Publish (or modify) and keep refreshing; returns the entity tag.

        Raises PublishError when the compositor refuses (after 412 and 423 retries).
        """
        await self._step(lambda now: self.core.publish(body, expires, now))
        if self.core.last_status is None or not 200 <= self.core.last_status < 300:
            raise PublishError(self.core.last_status)
        self._keep_refreshing()
        assert self.core.etag is not None
        return self.core.etag

    async def remove(self) -> None:
        """Withdraw the publication (Expires: 0) and stop refreshing."""
        await self._withdraw(self.core.remove)


__all__ = [
    "ExpiringServer",
    "ExpiringService",
    "NotifierService",
    "PublicationClient",
    "PublicationService",
    "PublishError",
    "RefreshingClient",
    "RefreshingCore",
    "RegistrarService",
    "RegistrationClient",
    "RegistrationError",
    "SubscriberService",
    "SubscriptionHandle",
    "SubscriptionRefused",
    "exchange",
]
