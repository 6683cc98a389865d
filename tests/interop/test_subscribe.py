"""SUBSCRIBE/NOTIFY (RFC 6665) between our notifier/subscriber and SIPp, direct and through
Kamailio as a record-routing proxy, lenient and strict (STRICT_INDIALOG) about in-dialog routing.

In strict mode Kamailio answers 404 to an in-dialog request without a Route: a NOTIFY or an
un-SUBSCRIBE only gets through when its sender kept the route set from Record-Route and the
remote target from Contact (RFC 3261 12.1, 12.2).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mcacm_sip.sip import Request
from mcacm_sip.sip.aio.usages import NotifierService, SubscriberService
from mcacm_sip.sip.dialog import Body
from mcacm_sip.sip.subscription import Accept, Notification, Notifier, Subscription, SubState

from .ours import endpoint
from .peers import LOOPBACK, Kamailio, SippTransport, kamailio, run_sipp

pytestmark = pytest.mark.interop

PIDF = "application/pidf+xml"
MODES = pytest.mark.parametrize("defines", [(), ("STRICT_INDIALOG",)], ids=["lenient", "strict"])
TRANSPORTS = pytest.mark.parametrize("transport", ["udp", "tcp"])


@dataclass
class Presence:
    """A presence event package (the one TS 24.379 9A uses for functional-alias status)."""

    content_types: tuple[str, ...] = (PIDF,)
    default_expires: int = 3600
    version: int = 0
    ended: list[str] = field(default_factory=list)  # on_end reasons, one per subscription

    def subscribe(self, request: Request, subscription: Subscription) -> Accept:
        return Accept(SubState.ACTIVE)

    def state(self, subscription: Subscription) -> Body:
        doc = (f'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
               f'entity="{subscription.key}"><tuple id="v{self.version}"><status><basic>open'
               "</basic></status></tuple></presence>")
        return Body(PIDF, doc.encode())


def _notifies(messages: Path) -> dict[str, list[str]]:
    """Subscription-State of every NOTIFY sipp received, per Call-ID, in order."""
    out: dict[str, list[str]] = {}
    for block in re.split(r"\n-{20,}[^\n]*\n", messages.read_text()):
        m = re.search(r"message received[^\n]*\n\n(NOTIFY [^\n]*\n.*)", block, re.S)
        if m:
            notify = m.group(1)
            cid = re.search(r"^Call-ID:\s*(\S+)", notify, re.M | re.I)
            state = re.search(r"^Subscription-State:\s*([^\s;]+)", notify, re.M | re.I)
            assert cid and state, notify
            out.setdefault(cid.group(1), []).append(state.group(1).lower())
    return out


def _relayed(proxy: Kamailio, method: str) -> int:
    return len(re.findall(rf"relay {method} ", proxy.log_text()))


async def _sipp_subscribes(workdir: Path, calls: int, proxy: int | None,
                           transport: SippTransport = "udp") -> tuple[Presence, Path]:
    package = Presence()
    async with endpoint() as ep:
        notifier = Notifier({"presence": package},
                            on_end=lambda sub, reason: package.ended.append(reason))
        service = NotifierService(ep, notifier)
        service.start()
        try:
            run = await asyncio.to_thread(
                run_sipp, "uac_subscribe.xml", ep.local_address(transport), workdir, calls=calls,
                rate=50, proxy=proxy, service="fa", keys={"event": "presence"}, trace_msg=True,
                transport=transport)
            await service.drain()
        finally:
            await service.close()
        assert run.rc == 0, run.explain()
        assert (run.stats.successful, run.stats.failed) == (calls, 0), run.explain()
        assert notifier.subscriptions() == []  # every subscription ended with the un-SUBSCRIBE
    assert run.messages is not None
    return package, run.messages


def _assert_lifecycle(package: Presence, messages: Path, calls: int) -> None:
    # RFC 6665 4.2.1/4.2.2: a NOTIFY right after the 200, a final "terminated" after Expires: 0
    notifies = _notifies(messages)
    assert len(notifies) == calls
    assert all(states == ["active", "terminated"] for states in notifies.values()), notifies
    assert len(package.ended) == calls


# 3. SIPp subscriber -> our notifier ---------------------------------------------------------


@TRANSPORTS
def test_sipp_subscriber_to_our_notifier(sipp: Path, transport: SippTransport) -> None:
    package, messages = asyncio.run(_sipp_subscribes(sipp, 5, proxy=None, transport=transport))
    _assert_lifecycle(package, messages, 5)


# 4. ... through Kamailio, lenient and strict -------------------------------------------------


@MODES
def test_sipp_subscriber_through_kamailio_to_our_notifier(sipp_kamailio: Path,
                                                          defines: tuple[str, ...]) -> None:
    # UDP only. Over TCP our NOTIFY goes to the proxy on a new connection while the 200 goes
    # back on the subscriber's, so the NOTIFY may overtake the 200 (allowed, RFC 6665 4.1.2.4;
    # our own subscriber copes, see the test below). SIPp does not: when the 200 arrives while
    # the call still has its answer to the NOTIFY to send, it aborts the call.
    calls = 5
    with kamailio(sipp_kamailio, defines=defines) as proxy:
        package, messages = asyncio.run(_sipp_subscribes(sipp_kamailio, calls, proxy=proxy.port))
        log = proxy.log_text()
    _assert_lifecycle(package, messages, calls)
    # every request of both dialogs crossed the proxy: 2 SUBSCRIBE and 2 NOTIFY per call
    assert (_relayed(proxy, "SUBSCRIBE"), _relayed(proxy, "NOTIFY")) == (2 * calls, 2 * calls)
    assert "-> 404" not in log


@MODES
def test_our_subscriber_through_kamailio_to_our_notifier(sipp_kamailio: Path,
                                                         defines: tuple[str, ...]) -> None:
    package = Presence()

    async def lifecycle(subscriber: SubscriberService, notifier: Notifier,
                        service: NotifierService, target: str) -> list[Notification | None]:
        handle = await subscriber.subscribe(target, event="presence", accept=(PIDF,),
                                            from_uri=f"sip:alice@{LOOPBACK}", expires=600)
        seen = [await handle.next(timeout=10)]
        # a state change reaches the subscriber in the dialog (through the proxy)
        package.version = 1
        (sub,) = notifier.subscriptions("presence")
        service.changed("presence", sub.key)
        seen.append(await handle.next(timeout=10))
        await handle.unsubscribe()
        seen.append(await handle.next(timeout=10))
        seen.append(await handle.next(timeout=10))  # None: the subscription has ended
        await service.drain()
        return seen

    async def main(proxy: Kamailio) -> list[Notification | None]:
        async with endpoint() as notifier_ep, endpoint(outbound_proxy=proxy.uri) as sub_ep:
            notifier = Notifier({"presence": package},
                                on_end=lambda sub, reason: package.ended.append(reason))
            service = NotifierService(notifier_ep, notifier)
            service.start()
            subscriber = SubscriberService(sub_ep)
            subscriber.start()
            host, port = notifier_ep.local_address("udp")
            try:
                async with asyncio.timeout(30):  # a lost request fails the test, not hangs it
                    return await lifecycle(subscriber, notifier, service,
                                           f"sip:fa-1@{host}:{port}")
            finally:
                await subscriber.close()
                await service.close()

    with kamailio(sipp_kamailio, defines=defines) as proxy:
        first, changed, final, after = asyncio.run(main(proxy))
    assert first and changed and final, proxy.log_text()[-3000:]
    assert (first.state, changed.state, final.state) == (
        SubState.ACTIVE, SubState.ACTIVE, SubState.TERMINATED)
    assert b'id="v0"' in first.body and b'id="v1"' in changed.body
    assert after is None
    assert package.ended and not any(r is None for r in package.ended)
    # the initial SUBSCRIBE, the un-SUBSCRIBE and 3 NOTIFYs all went through the proxy
    assert (_relayed(proxy, "SUBSCRIBE"), _relayed(proxy, "NOTIFY")) == (2, 3)
    assert "-> 404" not in proxy.log_text()
