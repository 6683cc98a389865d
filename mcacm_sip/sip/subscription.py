"""SUBSCRIBE/NOTIFY (RFC 6665): a notifier and a subscriber.

:class:`Notifier` holds subscriptions for the event packages the application registers. Each
:class:`EventPackage` accepts (active or pending) or refuses a new SUBSCRIBE, and gives the body
of every NOTIFY for a subscription. The notifier answers SUBSCRIBE (200 with Expires, Contact
and the Record-Route copied, RFC 3261 12.1.1), sends the immediate NOTIFY, re-NOTIFYs on refresh
and on :meth:`Notifier.changed`, and ends subscriptions with a final NOTIFY
(``terminated;reason=timeout`` on expiry, unsubscribe and fetch). :class:`Subscriber` is one
subscription from the subscriber side, including the NOTIFY that overtakes the 200
(RFC 6665 4.1.2.4). Both are sans-I/O; :class:`NotifierService` and :class:`SubscriberService`
wire them on a :class:`SipEndpoint`.

TS 24.379 9A uses ``Event: presence``, ``Accept: application/pidf+xml``, Expires 4294967295 for
"continuous" and 0 for a one-time fetch; both work here without special cases.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from .dialog import (
    MAX_EXPIRES,
    TRANSACTION_WINDOW,
    BadRequest,
    Body,
    Dialog,
    Header,
    Refuse,
    Reply,
    RequestSpec,
    parse_expires,
    uri_from,
)
from .headers import Event, InvalidHeader, SubscriptionState, media_type
from .message import Request, Response, new_tag

if TYPE_CHECKING:
    pass


class SubState(StrEnum):
    """Subscription-State values (RFC 6665 4.1.3 / 8.2.3)."""

    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"


def _event_package(value: str | None) -> tuple[str, str | None]:
    """(package, id) of an Event header (RFC 6665 8.2.1); BadRequest(400) when missing or
    unreadable."""
    if not value or not value.strip():
        raise BadRequest(400, "Missing Event")
    try:
        event = Event.parse(value)
    except InvalidHeader:
        raise BadRequest(400, "Bad Event") from None
    return event.package, event.id


def _subscription_state(state: SubState, *, expires: int | None = None, reason: str | None = None,
                        ) -> Header:
    return ("Subscription-State", str(SubscriptionState.of(state.value, expires=expires,
                                                            reason=reason)))


def _accepts(accept: Sequence[str], content_type: str) -> bool:
    """Whether an Accept list admits a media type (RFC 3261 20.1; empty Accept = anything)."""
    if not accept:
        return True
    major = content_type.split("/", 1)[0]
    for item in accept:
        mt = media_type(item) or ""
        if mt in ("*/*", content_type, f"{major}/*"):
            return True
    return False


# --------------------------------------------------------------------------------------------
# Notifier (sans-I/O)


@dataclass(slots=True)
class Subscription:
    """A subscription as the notifier keeps it."""

    id: str
    event: str  # package name, lowercased
    event_header: str  # the Event value as received (with its id parameter), echoed in NOTIFY
    key: str  # what the application notifies by (default: the Request-URI)
    subscriber: str  # From URI
    request_uri: str
    accept: tuple[str, ...]
    state: SubState
    expires_at: float
    contact: str  # our Contact in this dialog
    dialog: Dialog
    request_body: bytes = b""
    request_content_type: str | None = None

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now))


@dataclass(frozen=True, slots=True)
class Accept:
    """An event package's "yes" to a new SUBSCRIBE: the state to start in (active or pending),
    and the key the application will notify this subscription by (default: the Request-URI)."""

    state: SubState = SubState.ACTIVE
    key: str | None = None


class EventPackage(Protocol):
    """What the application provides per event package (RFC 6665 7)."""

    @property
    def content_types(self) -> Sequence[str]:
        """Body types of its NOTIFYs; a SUBSCRIBE's Accept must admit one (else 406)."""
        ...

    @property
    def default_expires(self) -> int:
        """Expires for a SUBSCRIBE without one (RFC 6665 7.2: each package defines it)."""
        ...

    def subscribe(self, request: Request, subscription: Subscription) -> Accept | Refuse:
        """Decide on a new subscription (a fetch included: its expires_at is now)."""
        ...

    def state(self, subscription: Subscription) -> Body | None:
        """The body of the NOTIFY about to be sent for this subscription."""
        ...


@dataclass(frozen=True, slots=True)
class Notify:
    """A NOTIFY to send for a subscription; ``final`` if it ends the subscription."""

    subscription_id: str
    request: RequestSpec
    final: bool


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """The answer to a SUBSCRIBE and the NOTIFYs to send after it."""

    reply: Reply
    notifies: tuple[Notify, ...] = ()


class Notifier:
    """RFC 6665 notifier for a set of event packages."""

    def __init__(
        self,
        packages: Mapping[str, EventPackage],
        *,
        min_expires: int = 60,
        max_expires: int = MAX_EXPIRES,
        on_end: Callable[[Subscription, str], None] | None = None,
    ) -> None:
        self.packages = {name.lower(): pkg for name, pkg in packages.items()}
        self.min_expires = min_expires
        self.max_expires = max_expires
        self._on_end = on_end
        self._subs: dict[str, Subscription] = {}
        self._by_dialog: dict[tuple[str, str, str], str] = {}

    # -- queries

    def get(self, subscription_id: str) -> Subscription | None:
        return self._subs.get(subscription_id)

    def subscriptions(self, event: str | None = None, key: str | None = None) -> list[Subscription]:
        """Live subscriptions, optionally of one package and one key."""
        return [
            s for s in self._subs.values()
            if (event is None or s.event == event.lower()) and (key is None or s.key == key)
        ]

    def get_timer(self) -> float | None:
        return min((s.expires_at for s in self._subs.values()), default=None)

    # -- SUBSCRIBE

    def on_subscribe(self, request: Request, now: float, contact: str) -> SubscribeResult:
        """Answer a SUBSCRIBE; ``contact`` is our Contact for the transport it came on."""
        try:
            if request.to_tag:
                return self._refresh(request, now)
            return self._new(request, now, contact)
        except BadRequest as exc:
            return SubscribeResult(Reply(exc.status, exc.reason, exc.headers))

    def _expires(self, request: Request, package: EventPackage) -> int:
        requested = parse_expires(request.header("expires"))
        expires = package.default_expires if requested is None else requested
        # RFC 6665 4.2.1.1: too short (but not 0) -> 423 with Min-Expires.
        if 0 < expires < self.min_expires:
            raise BadRequest(423, None, [("Min-Expires", str(self.min_expires))])
        return min(expires, self.max_expires)  # the notifier may shorten, never lengthen

    def _new(self, request: Request, now: float, contact: str) -> SubscribeResult:
        event, _ = _event_package(request.header("event"))
        package = self.packages.get(event)
        if package is None:
            # RFC 6665 8.2.2 (RFC 3265 7.2.2): 489 Bad Event with the packages we know.
            return SubscribeResult(Reply(489, None, (("Allow-Events", ", ".join(self.packages)),)))
        expires = self._expires(request, package)
        accept = tuple(request.headers("accept"))
        # RFC 6665 4.2.1.1 / RFC 3261 21.4.7: no body type of ours is acceptable -> 406.
        if not any(_accepts(accept, ct) for ct in package.content_types):
            raise BadRequest(406, None, [("Accept", ", ".join(package.content_types))])
        dialog = Dialog.as_uas(request, new_tag())
        sub = Subscription(
            id=f"{dialog.call_id};{dialog.local_tag}",
            event=event,
            event_header=request.header("event") or event,
            key=request.uri,
            subscriber=uri_from(request, "from"),
            request_uri=request.uri,
            accept=accept,
            state=SubState.PENDING,
            expires_at=now + expires,
            contact=contact,
            dialog=dialog,
            request_body=request.body,
            request_content_type=request.content_type,
        )
        decision = package.subscribe(request, sub)
        if isinstance(decision, Refuse):
            return SubscribeResult(Reply(decision.status, decision.reason, decision.headers))
        sub.state = decision.state
        if decision.key is not None:
            sub.key = decision.key
        reply = self._ok(request, sub, now, to_tag=dialog.local_tag)
        if expires == 0:
            # RFC 6665 4.4.3: a fetch gets one NOTIFY with the state, and the subscription ends.
            return SubscribeResult(reply, (self._final(sub, "timeout", now),))
        self._subs[sub.id] = sub
        self._by_dialog[dialog.id] = sub.id
        return SubscribeResult(reply, (self._notify(sub, now),))

    def _refresh(self, request: Request, now: float) -> SubscribeResult:
        dialog_id = (request.call_id, request.to_tag or "", request.from_tag or "")
        sub_id = self._by_dialog.get(dialog_id)
        sub = self._subs.get(sub_id) if sub_id else None
        if sub is None:
            return SubscribeResult(Reply(481))  # RFC 6665 4.2.1.2: no such subscription
        event, _ = _event_package(request.header("event"))
        if event != sub.event:
            return SubscribeResult(Reply(489, None, (("Allow-Events", sub.event),)))
        sub.dialog.receive(request, target_refresh=True)  # RFC 6665 4.1.2.1: target refresh
        expires = self._expires(request, self.packages[sub.event])
        if expires == 0:
            # RFC 6665 4.2.1.4: unsubscribe -> 200, then a final NOTIFY.
            reply = self._ok(request, sub, now, expires=0)
            return SubscribeResult(reply, (self._final(sub, "timeout", now),))
        sub.expires_at = now + expires
        # RFC 6665 4.2.1.2: a refresh is answered and followed by a NOTIFY with the state.
        return SubscribeResult(self._ok(request, sub, now), (self._notify(sub, now),))

    def _ok(self, request: Request, sub: Subscription, now: float, *, to_tag: str | None = None,
            expires: int | None = None) -> Reply:
        headers: list[Header] = [
            ("Expires", str(sub.remaining(now) if expires is None else expires)),
            ("Contact", sub.contact),
        ]
        # RFC 3261 12.1.1: a UAS copies Record-Route into the 2xx of a dialog-creating request.
        headers += [("Record-Route", rr) for rr in request.headers("record-route")]
        return Reply(200, None, tuple(headers), to_tag=to_tag)

    # -- NOTIFY

    def _request(self, sub: Subscription, state_header: Header, body: Body | None) -> RequestSpec:
        headers: list[Header] = [("Event", sub.event_header), state_header]
        return sub.dialog.request("NOTIFY", headers=headers, body=body, contact=sub.contact)

    def _notify(self, sub: Subscription, now: float) -> Notify:
        state = _subscription_state(sub.state, expires=sub.remaining(now))
        # RFC 6665 4.2.2 / RFC 3856 6.6.2: a pending NOTIFY carries no state.
        body = self.packages[sub.event].state(sub) if sub.state is SubState.ACTIVE else None
        return Notify(sub.id, self._request(sub, state, body), final=False)

    def _final(self, sub: Subscription, reason: str, now: float) -> Notify:
        """The NOTIFY that ends ``sub`` (RFC 6665 4.2.2); the state goes along for a timeout
        (expiry, unsubscribe, fetch) of an accepted subscription."""
        with_body = reason == "timeout" and sub.state is SubState.ACTIVE
        body = self.packages[sub.event].state(sub) if with_body else None
        sub.state = SubState.TERMINATED
        notify = Notify(
            sub.id, self._request(sub, _subscription_state(sub.state, reason=reason), body), True
        )
        self._drop(sub, reason)  # a fetch was never stored: nothing to drop
        return notify

    def _drop(self, sub: Subscription, reason: str) -> None:
        if self._subs.pop(sub.id, None) is not None:
            self._by_dialog.pop(sub.dialog.id, None)
            if self._on_end is not None:
                self._on_end(sub, reason)

    def changed(self, event: str, key: str, now: float) -> list[Notify]:
        """The state behind ``key`` changed: one NOTIFY per active subscription to it."""
        return [self._notify(s, now) for s in self.subscriptions(event, key)
                if s.state is SubState.ACTIVE]

    def activate(self, subscription_id: str, now: float) -> list[Notify]:
        """A pending subscription is now authorised (RFC 6665 4.2.1.3)."""
        sub = self._subs.get(subscription_id)
        if sub is None or sub.state is not SubState.PENDING:
            return []
        sub.state = SubState.ACTIVE
        return [self._notify(sub, now)]

    def terminate(
        self, subscription_id: str, now: float, reason: str = "noresource"
    ) -> list[Notify]:
        """End a subscription on the application's initiative (RFC 6665 4.2.2), e.g.
        ``rejected`` or ``deactivated``."""
        sub = self._subs.get(subscription_id)
        return [] if sub is None else [self._final(sub, reason, now)]

    def handle_timer(self, now: float) -> list[Notify]:
        """Final NOTIFYs (``reason=timeout``) for subscriptions that expired (RFC 6665 4.2.2)."""
        return [self._final(s, "timeout", now) for s in list(self._subs.values())
                if s.expires_at <= now]

    def on_notify_result(self, subscription_id: str, status: int | None) -> None:
        """The outcome of a NOTIFY (None: timeout or transport error). RFC 6665 4.2.2: a 481 or
        no answer at all removes the subscription; other failures leave it (a 500 may only mean
        that this NOTIFY arrived after a newer one)."""
        sub = self._subs.get(subscription_id)
        if sub is not None and (status is None or status in (408, 481)):
            sub.state = SubState.TERMINATED
            self._drop(sub, "giveup" if status is None else "noresource")


# --------------------------------------------------------------------------------------------
# Subscriber (sans-I/O)


@dataclass(frozen=True, slots=True)
class Notification:
    """What one NOTIFY told the subscriber."""

    state: SubState
    reason: str | None
    expires: int | None
    retry_after: int | None
    content_type: str | None
    body: bytes


class Subscriber:
    """One subscription, subscriber side (RFC 6665 4.1)."""

    def __init__(
        self,
        *,
        target: str,
        from_uri: str,
        event: str,
        contact: str,
        accept: Sequence[str] = (),
        expires: int = 3600,
        to_uri: str | None = None,
        headers: Sequence[Header] = (),
        body: Body | None = None,
        call_id: str | None = None,
    ) -> None:
        self.target = target
        self.from_uri = from_uri
        self.to_uri = to_uri or target
        self.event = event
        self.package = Event.parse(event).package
        self.contact = contact
        self.accept = tuple(accept)
        self.requested = expires
        self.extra_headers = tuple(headers)
        self.body = body
        self.call_id = call_id or f"{secrets.token_hex(8)}@mcacm"
        self.from_tag = secrets.token_hex(6)
        self.dialog: Dialog | None = None
        self.state: SubState | None = None  # None until the first 2xx or NOTIFY
        self.reason: str | None = None
        self.last_status: int | None = None
        self.expires_at: float | None = None
        self.cseq = 0
        self._initial: RequestSpec | None = None
        self._initial_open = False  # the initial SUBSCRIBE awaits its final response
        self._sent_expires = expires
        self._pending = False
        self._closing = False  # unsubscribe() was called: never refresh again
        self._refresh_at: float | None = None
        self._notify_by: float | None = None  # RFC 6665 4.1.2.4: a NOTIFY must follow the 2xx

    @property
    def terminated(self) -> bool:
        return self.state is SubState.TERMINATED

    @property
    def key(self) -> tuple[str, str]:
        """(Call-ID, our tag): what every NOTIFY of this subscription carries (To tag)."""
        return (self.call_id, self.from_tag)

    # -- requests

    def subscribe(self, now: float) -> RequestSpec:
        """The initial SUBSCRIBE, out of dialog (RFC 6665 4.1.2.1)."""
        self.cseq += 1
        self._pending = True
        self._initial_open = True
        self._sent_expires = self.requested
        self._initial = RequestSpec(
            method="SUBSCRIBE",
            uri=self.target,
            from_uri=self.from_uri,
            to_uri=self.to_uri,
            from_tag=self.from_tag,
            call_id=self.call_id,
            cseq=self.cseq,
            headers=self._headers(self.requested),
            body=self.body.data if self.body else b"",
            content_type=self.body.content_type if self.body else None,
            contact=self.contact,
        )
        return self._initial

    def _headers(self, expires: int) -> tuple[Header, ...]:
        headers: list[Header] = [("Event", self.event), ("Expires", str(expires))]
        headers += [("Accept", a) for a in self.accept]
        return tuple(headers) + self.extra_headers

    def _in_dialog(self, expires: int) -> RequestSpec | None:
        if self.dialog is None:
            return None
        self._pending = True
        self._sent_expires = expires
        return self.dialog.request("SUBSCRIBE", headers=self._headers(expires), body=self.body,
                                   contact=self.contact)

    def unsubscribe(self, now: float) -> RequestSpec | None:
        """SUBSCRIBE with Expires: 0 (RFC 6665 4.1.2.3); the final NOTIFY ends it. Without a
        dialog yet (or once terminated) there is nothing to send and it ends here."""
        self._refresh_at = None
        self._closing = True
        if self.terminated:
            return None
        spec = None if self._pending else self._in_dialog(0)
        if spec is None:
            self._end("unsubscribed")
        else:
            self._notify_by = None
        return spec

    def get_timer(self) -> float | None:
        times = [t for t in (self._refresh_at, self._notify_by) if t is not None]
        return None if self.terminated or self._pending else min(times, default=None)

    def handle_timer(self, now: float) -> RequestSpec | None:
        """The refresh when it is due; ends the subscription when an awaited NOTIFY never came
        or the subscription expired unrefreshed."""
        if self.terminated or self._pending:
            return None
        if self._notify_by is not None and now >= self._notify_by:
            self._end("no-notify")  # RFC 6665 4.1.2.4: no NOTIFY within 64*T1 of the 2xx
            return None
        if self.expires_at is not None and now >= self.expires_at:
            self._end("timeout")
            return None
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            return self._in_dialog(self.requested)
        return None

    # -- responses

    def on_response(self, response: Response | None, now: float) -> RequestSpec | None:
        """Feed the final response to our last SUBSCRIBE (None: timeout or transport error);
        returns a retry when a 423 asks for a longer interval."""
        self._pending = False
        self.last_status = response.status if response is not None else None
        initial, self._initial_open = self._initial_open, False
        if self.terminated:
            return None  # the final NOTIFY overtook this answer
        if response is not None and 200 <= response.status < 300:
            if initial and self._initial is not None:
                # RFC 3261 12.1.2: the 2xx sets the route set (reversed Record-Route), also when
                # an early NOTIFY already created the dialog (an in-dialog NOTIFY is rarely
                # record-routed); the CSeq seen from the notifier is kept.
                early = self.dialog
                self.dialog = Dialog.as_uac(self._initial, response)
                if early is not None:
                    self.dialog.remote_seq = early.remote_seq
            if self.state is None or self._sent_expires == 0:
                # RFC 6665 4.1.2.4: a NOTIFY must follow (the first one, or the final one).
                self._notify_by = now + TRANSACTION_WINDOW
            if self.state is None:
                self.state = SubState.PENDING  # until the first NOTIFY says otherwise
            if self._sent_expires:
                try:
                    granted = parse_expires(response.header("expires"))
                except BadRequest:
                    granted = None
                self._granted(self._sent_expires if granted is None else granted, now)
            return None
        if response is not None and response.status == 423 and self._sent_expires:
            try:
                minimum = parse_expires(response.header("min-expires"))
            except BadRequest:
                minimum = None
            if minimum is not None and minimum > self._sent_expires:
                self.requested = minimum  # RFC 6665 4.1.2.1: retry with at least Min-Expires
                return self.subscribe(now) if initial else self._in_dialog(minimum)
        if initial or self._sent_expires == 0:
            self._end("rejected" if response is not None else "timeout")
        elif response is None or response.status in (408, 481):
            self._end("timeout" if response is None else "noresource")  # RFC 6665 4.1.2.2
        # RFC 6665 4.1.2.2: another failed refresh leaves the subscription until it expires.
        return None

    def _granted(self, expires: int, now: float) -> None:
        self.expires_at = now + expires
        self._refresh_at = now + expires / 2 if expires and not self._closing else None

    # -- NOTIFY

    def matches(self, notify: Request) -> bool:
        """Whether a NOTIFY is ours: our dialog, or, before the 2xx, our Call-ID and From tag
        in its To (RFC 6665 4.1.2.4: the NOTIFY may overtake the 2xx)."""
        if self.dialog is not None:
            return self.dialog.matches(notify)
        return notify.call_id == self.call_id and notify.to_tag == self.from_tag

    def on_notify(self, notify: Request, now: float) -> tuple[Reply, Notification | None]:
        """Answer a NOTIFY of this subscription and say what it told (RFC 6665 4.1.3)."""
        if not self.matches(notify) or self.terminated:
            return Reply(481), None  # RFC 6665 4.1.3: a fork or a finished subscription
        try:
            package, _ = _event_package(notify.header("event"))
            if package != self.package:
                return Reply(489), None
            state_value = notify.header("subscription-state")
            if not state_value:
                raise BadRequest(400, "Missing Subscription-State")
            try:
                sub_state = SubscriptionState.parse(state_value)
                state = SubState(sub_state.state)
            except ValueError:  # InvalidHeader, or a state RFC 6665 4.1.3 does not define
                raise BadRequest(400, "Bad Subscription-State") from None
            try:
                expires, retry = sub_state.expires, sub_state.retry_after
            except InvalidHeader:
                raise BadRequest(400, "Bad Expires") from None
            reason = sub_state.reason
            if self.dialog is None and self._initial is not None:
                self.dialog = Dialog.from_notify(self._initial, notify)
            else:
                assert self.dialog is not None
                self.dialog.receive(notify, target_refresh=True)
        except BadRequest as exc:
            return Reply(exc.status, exc.reason), None
        self._notify_by = None
        if state is SubState.TERMINATED:
            self._end(reason or "terminated")
        else:
            self.state = state
            if expires is not None:
                self._granted(expires, now)  # RFC 6665 4.1.3: the notifier's view of expiry
        return Reply(200), Notification(
            state, reason, expires, retry, notify.content_type, notify.body
        )

    def _end(self, reason: str) -> None:
        self.state = SubState.TERMINATED
        self.reason = reason
        self._refresh_at = None
        self._notify_by = None


__all__ = [
    "Accept",
    "EventPackage",
    "Notification",
    "Notifier",
    "Notify",
    "SubState",
    "SubscribeResult",
    "Subscriber",
    "Subscription",
]
