# mypy: disable-error-code="comparison-overlap"
"""SUBSCRIBE/NOTIFY (RFC 6665): notifier and subscriber cores wired in memory with a fake clock
(state machine, refresh, expiry, fetch, route sets), then on the in-memory pair (bytes through
the transaction layers, no socket), then both services once on loopback sockets."""

from __future__ import annotations

import asyncio

import pytest
from sip_pair import SipPair
from sip_usage_kit import Clock, answer, deliver, endpoint, request, uri

from mcacm_sip.sip.aio.endpoint import SipEndpoint
from mcacm_sip.sip.aio.usages import NotifierService, SubscriberService, SubscriptionRefused
from mcacm_sip.sip.dialog import MAX_EXPIRES, Body, Refuse, Reply, RequestSpec
from mcacm_sip.sip.message import Request
from mcacm_sip.sip.subscription import Accept, Notification, Notifier, Notify, Subscriber, SubState

PIDF = "application/pidf+xml"
FA = "sip:fa-dispatch@example.com"
P1 = "<sip:p1.example.com;lr>"
P2 = "<sip:p2.example.com;lr>"
NOTIFIER_CONTACT = "<sip:fa-server@192.0.2.20:5070>"
SUBSCRIBER_CONTACT = "<sip:acms@192.0.2.10:5060>"


class Presence:
    """A toy presence package: one pidf document per key; refuses "sip:mallory@..."."""

    content_types = (PIDF,)
    default_expires = 3600

    def __init__(self, pending: bool = False) -> None:
        self.docs: dict[str, bytes] = {}
        self.pending = pending

    def subscribe(self, request: Request, subscription) -> Accept | Refuse:  # type: ignore[no-untyped-def]
        if subscription.subscriber.startswith("sip:mallory"):
            return Refuse(403)
        return Accept(SubState.PENDING if self.pending else SubState.ACTIVE)

    def state(self, subscription) -> Body | None:  # type: ignore[no-untyped-def]
        return Body(PIDF, self.docs.get(subscription.key, b"<presence/>"))


class Pair:
    """A subscriber and a notifier talking in memory through two record-routing proxies."""

    def __init__(self, expires: int = 3600, hops: tuple[str, ...] = (P1, P2), **kw) -> None:  # type: ignore[no-untyped-def]
        self.package = Presence(**kw)
        self.notifier = Notifier({"presence": self.package}, min_expires=60)
        self.sub = Subscriber(target=FA, from_uri="sip:acms@example.com", event="presence",
                              contact=SUBSCRIBER_CONTACT, accept=[PIDF], expires=expires)
        self.hops = hops
        self.notes: list[Notification] = []
        self.now = 0.0

    def subscribe(self, spec: RequestSpec | None) -> list[Notify]:
        """Send a SUBSCRIBE to the notifier, hand back the 2xx; returns its NOTIFYs."""
        assert spec is not None
        req = deliver(spec, self.hops)
        result = self.notifier.on_subscribe(req, self.now, NOTIFIER_CONTACT)
        self.last_reply = result.reply
        assert self.sub.on_response(answer(req, result.reply), self.now) is None
        return list(result.notifies)

    def notify(self, notifies: list[Notify]) -> list[int]:
        statuses = []
        for n in notifies:
            req = deliver(n.request)
            reply, note = self.sub.on_notify(req, self.now)
            if note:
                self.notes.append(note)
            self.notifier.on_notify_result(n.subscription_id, reply.status)
            statuses.append(reply.status)
        return statuses


def header(spec: RequestSpec, name: str) -> str | None:
    return spec.header(name)


def test_subscribe_200_then_notify_with_state_and_route_sets() -> None:
    pair = Pair()
    pair.package.docs[FA] = b"<presence entity='fa'/>"
    (first,) = pair.subscribe(pair.sub.subscribe(0.0))
    reply = pair.last_reply
    assert reply.status == 200 and reply.to_tag
    assert ("Expires", "3600") in reply.headers and ("Contact", NOTIFIER_CONTACT) in reply.headers
    # RFC 3261 12.1.1: Record-Route copied into the 2xx, in order (the hop nearest us first).
    assert [v for k, v in reply.headers if k == "Record-Route"] == [P2, P1]

    # The notifier's NOTIFY: remote target = the SUBSCRIBE's Contact, route set in order.
    n = first.request
    assert (n.method, n.uri, n.route) == ("NOTIFY", "sip:acms@192.0.2.10:5060", (P2, P1))
    assert header(n, "Event") == "presence"
    assert header(n, "Subscription-State") == "active;expires=3600"
    assert (n.content_type, n.body) == (PIDF, b"<presence entity='fa'/>")
    assert n.contact == NOTIFIER_CONTACT
    assert pair.notify([first]) == [200]
    assert pair.notes[-1].state is SubState.ACTIVE and pair.notes[-1].body == n.body

    # The subscriber's dialog: route set = the 2xx's Record-Route reversed (RFC 3261 12.1.2).
    dialog = pair.sub.dialog
    assert dialog is not None
    assert dialog.route_set == (P1, P2) and dialog.remote_target == "sip:fa-server@192.0.2.20:5070"
    assert pair.sub.state is SubState.ACTIVE


def test_in_dialog_requests_through_loose_and_strict_routers() -> None:
    """The route set goes out as RFC 3261 12.2.1.1 says: loose routers keep the remote target as
    the Request-URI; a strict first hop becomes the Request-URI, the target goes last."""
    ep = SipEndpoint([])
    for hops, want_uri, want_route in [
        ((P1, P2), "sip:fa-server@192.0.2.20:5070", (P1, P2)),
        (("<sip:p1.example.com>", P2), "sip:p1.example.com",
         (P2, "<sip:fa-server@192.0.2.20:5070>")),
    ]:
        pair = Pair(hops=hops)
        pair.notify(pair.subscribe(pair.sub.subscribe(0.0)))
        pair.now = 1800.0
        refresh = pair.sub.handle_timer(pair.now)
        assert refresh is not None
        out = ep.new_request(refresh.method, refresh.uri, from_uri=refresh.from_uri,
                             to_uri=refresh.to_uri, route=refresh.route, cseq=refresh.cseq)
        assert (out.uri, out.route) == (want_uri, want_route)


def test_notify_on_change_refresh_and_unsubscribe() -> None:
    pair = Pair(expires=600)
    pair.notify(pair.subscribe(pair.sub.subscribe(0.0)))
    pair.package.docs[FA] = b"<presence v='2'/>"
    pair.now = 10.0
    changed = pair.notifier.changed("presence", FA, pair.now)
    assert pair.notify(changed) == [200]
    assert pair.notes[-1].body == b"<presence v='2'/>"
    assert pair.notifier.changed("presence", "sip:other@example.com", pair.now) == []

    # Refresh at half the time left, as the last NOTIFY stated it (expires=590 at t=10).
    assert pair.sub.get_timer() == 305.0
    assert pair.sub.handle_timer(304.0) is None
    pair.now = 305.0
    notifies = pair.subscribe(pair.sub.handle_timer(pair.now))
    assert pair.last_reply.status == 200 and pair.notify(notifies) == [200]
    (sub,) = pair.notifier.subscriptions("presence", FA)
    assert sub.expires_at == 905.0 and pair.sub.expires_at == 905.0
    assert sub.dialog.remote_seq == 2

    # Unsubscribe: 200 then a final NOTIFY with the state and reason=timeout.
    pair.now = 400.0
    notifies = pair.subscribe(pair.sub.unsubscribe(pair.now))
    assert ("Expires", "0") in pair.last_reply.headers
    (final,) = notifies
    assert final.final
    assert header(final.request, "Subscription-State") == "terminated;reason=timeout"
    assert final.request.body == b"<presence v='2'/>"
    assert pair.notify(notifies) == [200]
    assert pair.sub.terminated and pair.sub.reason == "timeout"
    assert pair.notifier.subscriptions() == []
    assert pair.sub.get_timer() is None


def test_expiry_sends_final_notify_terminated_timeout() -> None:
    pair = Pair(expires=120)
    pair.notify(pair.subscribe(pair.sub.subscribe(0.0)))
    assert pair.notifier.get_timer() == 120.0
    assert pair.notifier.handle_timer(119.0) == []
    pair.now = 120.0
    (final,) = pair.notifier.handle_timer(pair.now)
    assert header(final.request, "Subscription-State") == "terminated;reason=timeout"
    assert pair.notify([final]) == [200]
    assert pair.sub.terminated and pair.notifier.get_timer() is None


def test_fetch_gets_one_terminated_notify_with_state() -> None:
    pair = Pair(expires=0)
    pair.package.docs[FA] = b"<presence snapshot/>"
    notifies = pair.subscribe(pair.sub.subscribe(0.0))
    assert ("Expires", "0") in pair.last_reply.headers
    assert pair.notifier.subscriptions() == []  # nothing kept for a fetch
    assert pair.notify(notifies) == [200]
    (note,) = pair.notes
    assert (note.state, note.reason, note.body) == (SubState.TERMINATED, "timeout",
                                                    b"<presence snapshot/>")
    assert pair.sub.terminated


def test_continuous_subscription_never_overflows() -> None:
    """TS 24.379 9A: Expires 4294967295 means continuous."""
    pair = Pair(expires=MAX_EXPIRES)
    (first,) = pair.subscribe(pair.sub.subscribe(0.0))
    assert header(first.request, "Subscription-State") == f"active;expires={MAX_EXPIRES}"
    pair.notify([first])
    assert pair.sub.get_timer() == MAX_EXPIRES / 2
    assert pair.notifier.handle_timer(10 * 365 * 86400.0) == []  # still there after ten years


def test_pending_subscription_gets_bodyless_notify_until_activated() -> None:
    pair = Pair(pending=True)
    (first,) = pair.subscribe(pair.sub.subscribe(0.0))
    assert header(first.request, "Subscription-State") == "pending;expires=3600"
    assert first.request.body == b""
    pair.notify([first])
    assert pair.sub.state is SubState.PENDING
    (sub,) = pair.notifier.subscriptions()
    assert pair.notifier.changed("presence", FA, 1.0) == []  # nothing for a pending one
    assert pair.notify(pair.notifier.activate(sub.id, 1.0)) == [200]
    assert pair.sub.state is SubState.ACTIVE and pair.notes[-1].body


def test_notify_before_200_creates_the_dialog() -> None:
    """RFC 6665 4.1.2.4: the NOTIFY may overtake the 2xx; match it by Call-ID and From tag."""
    pair = Pair()
    spec = pair.sub.subscribe(0.0)
    req = deliver(spec, pair.hops)
    result = pair.notifier.on_subscribe(req, 0.0, NOTIFIER_CONTACT)
    (n,) = result.notifies
    assert pair.notify([n]) == [200]  # before the 200 arrives
    assert pair.sub.state is SubState.ACTIVE and pair.sub.dialog is not None
    assert pair.sub.dialog.route_set == ()  # the in-dialog NOTIFY was not record-routed
    assert pair.sub.on_response(answer(req, result.reply), 0.0) is None
    assert pair.sub.state is SubState.ACTIVE and pair.sub.get_timer() == 1800.0
    assert pair.sub.dialog.route_set == (P1, P2)  # the 2xx's Record-Route, reversed

    # A NOTIFY from another fork (other From tag) is refused; so is an older CSeq.
    fork = deliver(n.request)
    other = request("NOTIFY", fork.uri, from_tag="fork-2", to_tag=pair.sub.from_tag,
                    call_id=pair.sub.call_id, cseq=5,
                    headers=[("Event", "presence"), ("Subscription-State", "active"),
                             ("Contact", "<sip:x@192.0.2.99>")])
    assert pair.sub.on_notify(other, 0.0)[0].status == 481
    assert pair.sub.on_notify(fork, 0.0)[0].status == 500  # the same CSeq again


@pytest.mark.parametrize(("headers", "from_", "status", "extra"), [
    ([("Event", "conference")], "sip:acms@example.com", 489, ("Allow-Events", "presence")),
    ([], "sip:acms@example.com", 400, None),
    ([("Event", "presence"), ("Expires", "5")], "sip:acms@example.com", 423,
     ("Min-Expires", "60")),
    ([("Event", "presence"), ("Expires", "often")], "sip:acms@example.com", 400, None),
    ([("Event", "presence"), ("Accept", "text/plain")], "sip:acms@example.com", 406,
     ("Accept", PIDF)),
    ([("Event", "presence")], "sip:mallory@example.com", 403, None),
])
def test_refused_subscribes(headers: list[tuple[str, str]], from_: str, status: int,
                            extra: tuple[str, str] | None) -> None:
    notifier = Notifier({"presence": Presence()})
    req = request("SUBSCRIBE", FA, from_=f"<{from_}>",
                  headers=[*headers, ("Contact", SUBSCRIBER_CONTACT)])
    result = notifier.on_subscribe(req, 0.0, NOTIFIER_CONTACT)
    assert result.reply.status == status and result.notifies == ()
    if extra:
        assert extra in result.reply.headers
    assert notifier.subscriptions() == []


def test_bad_in_dialog_requests() -> None:
    notifier = Notifier({"presence": Presence()})
    no_contact = request("SUBSCRIBE", FA, headers=[("Event", "presence")])
    assert notifier.on_subscribe(no_contact, 0.0, NOTIFIER_CONTACT).reply.status == 400
    stray = request("SUBSCRIBE", FA, to_tag="nope", headers=[("Event", "presence")])
    assert notifier.on_subscribe(stray, 0.0, NOTIFIER_CONTACT).reply.status == 481


def test_481_to_notify_removes_the_subscription() -> None:
    pair = Pair()
    (first,) = pair.subscribe(pair.sub.subscribe(0.0))
    pair.notifier.on_notify_result(first.subscription_id, 481)
    assert pair.notifier.subscriptions() == []


def test_subscriber_notices_refused_and_lost_subscriptions() -> None:
    sub = Subscriber(target=FA, from_uri="sip:a@example.com", event="presence",
                     contact=SUBSCRIBER_CONTACT)
    req = deliver(sub.subscribe(0.0))
    assert sub.on_response(answer(req, Notifier({}).on_subscribe(req, 0, "<sip:x@y>").reply),
                           0.0) is None
    assert sub.terminated and sub.last_status == 489

    pair = Pair()
    pair.subscribe(pair.sub.subscribe(0.0))  # 200, but the NOTIFY never comes
    assert pair.sub.get_timer() == 32.0
    assert pair.sub.handle_timer(32.0) is None and pair.sub.terminated


# --------------------------------------------------------------------------------------------
# On the in-memory pair


class Keyed(Presence):
    def subscribe(self, request, subscription):  # type: ignore[no-untyped-def]
        return Accept(key=request.body.decode())  # e.g. the FA ID from the mcptt-info body


class Wired:
    """A notifier served on the pair's server side (its NOTIFYs go after the 2xx) and
    subscribers on its client side, both driven by the pair's fake clock."""

    def __init__(self, package: Presence) -> None:
        self.pair = pair = SipPair()
        self.notifier = Notifier({"presence": package})
        self.subs: dict[tuple[str, str], Subscriber] = {}
        self.notes: list[Notification] = []
        pair.server.serve("SUBSCRIBE", self._on_subscribe)
        pair.client.serve("NOTIFY", self._on_notify)
        pair.drive(self.notifier, self._send)

    def _on_subscribe(self, request: Request, now: float):  # type: ignore[no-untyped-def]
        result = self.notifier.on_subscribe(request, now, self.pair.server.uri("fa-server"))
        self.pair.later(lambda: self._send(result.notifies))
        return result.reply

    def _send(self, notifies: object) -> None:
        assert isinstance(notifies, (list, tuple))
        for notify in notifies:
            response = self.pair.server.request(notify.request)
            self.notifier.on_notify_result(notify.subscription_id,
                                           response.status if response else None)

    def _on_notify(self, request: Request, now: float):  # type: ignore[no-untyped-def]
        sub = self.subs.get((request.call_id, request.to_tag or ""))
        if sub is None:
            return Reply(481)  # RFC 6665 4.1.3
        reply, note = sub.on_notify(request, now)
        if note is not None:
            self.notes.append(note)
        return reply

    def subscribe(self, **kw) -> Subscriber:  # type: ignore[no-untyped-def]
        sub = Subscriber(target=self.pair.server.uri("fa-server"),
                         contact=self.pair.client.uri("acms"), **kw)
        self.subs[sub.key] = sub
        self.pair.drive(sub, lambda spec: self.pair.client.exchange(spec, sub.on_response))
        self.pair.client.exchange(sub.subscribe(self.pair.now), sub.on_response)
        return sub


def test_subscribe_notify_refresh_unsubscribe_on_the_pair() -> None:
    package = Keyed()
    package.docs["fa-1"] = b"<presence n='1'/>"
    wired = Wired(package)
    refused = wired.subscribe(event="dialog", from_uri="sip:a@example.com")
    assert refused.dialog is None and refused.last_status == 489

    sub = wired.subscribe(event="presence", from_uri="sip:acms@example.com", accept=[PIDF],
                          expires=MAX_EXPIRES, body=Body("text/plain", b"fa-1"))
    (first,) = wired.notes
    assert first.body == b"<presence n='1'/>"
    assert first.state is SubState.ACTIVE and first.expires == MAX_EXPIRES

    package.docs["fa-1"] = b"<presence n='2'/>"
    wired._send(wired.notifier.changed("presence", "fa-1", wired.pair.now))
    assert wired.notes[-1].body == b"<presence n='2'/>"

    wired.pair.advance(MAX_EXPIRES / 2)  # refresh due: re-SUBSCRIBE in the dialog
    third = wired.notes[-1]
    assert len(wired.notes) == 3 and third.state is SubState.ACTIVE
    (held,) = wired.notifier.subscriptions()
    assert held.dialog.remote_seq == 2

    wired.pair.client.exchange(sub.unsubscribe(wired.pair.now), sub.on_response)
    final = wired.notes[-1]
    assert final.state is SubState.TERMINATED and sub.terminated
    assert final.reason == "timeout" and final.body == b"<presence n='2'/>"
    assert wired.notifier.subscriptions() == []

    fetch = wired.subscribe(event="presence", from_uri="sip:acms@example.com", expires=0,
                            body=Body("text/plain", b"fa-1"))
    assert [(n.state, n.body) for n in wired.notes[4:]] == [
        (SubState.TERMINATED, b"<presence n='2'/>")]
    assert fetch.terminated


def test_an_unrefreshed_subscription_ends_with_a_final_notify_on_the_pair() -> None:
    package = Presence()
    wired = Wired(package)
    sub = wired.subscribe(event="presence", from_uri="sip:acms@example.com", accept=[PIDF],
                          expires=600)
    wired.pair.undrive(sub)  # the subscriber goes silent
    wired.pair.advance(601)
    final = wired.notes[-1]
    assert final.state is SubState.TERMINATED and final.reason == "timeout"
    assert sub.terminated and wired.notifier.subscriptions() == []


def test_a_notify_for_no_subscription_gets_481_on_the_pair() -> None:
    wired = Wired(Presence())
    spec = RequestSpec("NOTIFY", wired.pair.client.uri("x"), from_uri="sip:n@example.com",
                       to_uri="sip:x@example.com", to_tag="nobody",
                       headers=(("Event", "presence"), ("Subscription-State", "active")))
    response = wired.pair.server.request(spec)
    assert response is not None and response.status == 481


# --------------------------------------------------------------------------------------------
# On loopback sockets


async def _loopback(transport: str) -> None:
    clock = Clock(0.0)
    package = Presence()
    package.docs["fa-1"] = b"<presence n='1'/>"

    class Keyed(Presence):
        def subscribe(self, request, subscription):  # type: ignore[no-untyped-def]
            return Accept(key=request.body.decode())  # e.g. the FA ID from the mcptt-info body

    keyed = Keyed()
    keyed.docs = package.docs
    async with endpoint(transport) as server, endpoint(transport) as client:  # type: ignore[arg-type]
        notifier = NotifierService(server, Notifier({"presence": keyed}), clock=clock)
        notifier.start()
        subscriber = SubscriberService(client, transport=transport, clock=clock)  # type: ignore[arg-type]
        subscriber.start()
        target = uri(server, transport, "fa-server")  # type: ignore[arg-type]
        try:
            with pytest.raises(SubscriptionRefused) as info:
                await subscriber.subscribe(target, event="dialog", from_uri="sip:a@example.com")
            assert info.value.status == 489

            handle = await subscriber.subscribe(
                target, event="presence", from_uri="sip:acms@example.com", accept=[PIDF],
                expires=MAX_EXPIRES, body=Body("text/plain", b"fa-1"))
            first = await handle.next(5)
            assert first is not None and first.body == b"<presence n='1'/>"
            assert first.state is SubState.ACTIVE and first.expires == MAX_EXPIRES

            package.docs["fa-1"] = b"<presence n='2'/>"
            notifier.changed("presence", "fa-1")
            second = await handle.next(5)
            assert second is not None and second.body == b"<presence n='2'/>"

            clock.advance(MAX_EXPIRES / 2)  # refresh due: re-SUBSCRIBE in the dialog
            handle.check()
            third = await handle.next(5)
            assert third is not None and third.state is SubState.ACTIVE
            (sub,) = notifier.notifier.subscriptions()
            assert sub.dialog.remote_seq == 2

            await handle.unsubscribe()
            final = await handle.next(5)
            assert final is not None and final.state is SubState.TERMINATED
            assert final.reason == "timeout" and final.body == b"<presence n='2'/>"
            assert [n async for n in handle] == []  # the iterator ends with the subscription
            assert notifier.notifier.subscriptions() == []

            fetch = await subscriber.subscribe(target, event="presence",
                                               from_uri="sip:acms@example.com", expires=0,
                                               body=Body("text/plain", b"fa-1"))
            got = [n async for n in fetch]
            assert [(n.state, n.body) for n in got] == [(SubState.TERMINATED, b"<presence n='2'/>")]
            await notifier.drain()
        finally:
            await subscriber.close()
            await notifier.close()


def test_subscribe_notify_refresh_unsubscribe_over_loopback() -> None:
    asyncio.run(_loopback("udp"))


async def _stray_notify() -> None:
    async with endpoint() as a, endpoint() as b:
        SubscriberService(b).start()
        spec = a.new_request("NOTIFY", uri(b, "udp", "x"), from_uri="sip:n@example.com",
                             to_uri="sip:x@example.com", to_tag="nobody",
                             headers=(("Event", "presence"), ("Subscription-State", "active")))
        assert (await a.send(spec)).status == 481


def test_notify_for_unknown_subscription_gets_481() -> None:
    asyncio.run(_stray_notify())
