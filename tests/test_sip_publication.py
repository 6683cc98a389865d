# mypy: disable-error-code="comparison-overlap"
"""PUBLISH (RFC 3903): compositor entity-tag rules and the publisher with a fake clock, the
TS 24.379 9A functional-alias policy, both on the in-memory pair (bytes through the transaction
layers, no socket), and both services once on loopback sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sip_pair import SipPair
from sip_usage_kit import Clock, answer, deliver, endpoint, request, uri

from mcacm_sip.sip import Reply, Request
from mcacm_sip.sip.aio.usages import PublicationClient, PublicationService, PublishError
from mcacm_sip.sip.dialog import MAX_EXPIRES, Body, Refuse, RequestSpec
from mcacm_sip.sip.publication import (
    Compositor,
    PublicationChange,
    PublishAttempt,
    Publisher,
    PublishKind,
)

PIDF = "application/pidf+xml"
RES = "sip:fa-dispatch@example.com"


def publish(*, etag: str | None = None, expires: str | None = "600", body: bytes = b"",
            event: str = "presence") -> Request:
    headers = [("Event", event)]
    if expires is not None:
        headers.append(("Expires", expires))
    if etag is not None:
        headers.append(("SIP-If-Match", etag))
    return request("PUBLISH", RES, headers=headers, body=body,
                   content_type=PIDF if body else None)


def etag_of(reply: Reply) -> str:
    return dict(reply.headers)["SIP-ETag"]


@pytest.fixture
def changes() -> list[PublicationChange]:
    return []


@pytest.fixture
def esc(changes: list[PublicationChange]) -> Compositor:
    return Compositor(["presence"], on_change=changes.append, min_expires=60, max_expires=3600)


def test_etag_lifecycle_initial_refresh_modify_remove(esc: Compositor,
                                                      changes: list[PublicationChange]) -> None:
    r1 = esc.handle(publish(body=b"<a/>"), 0.0)
    assert r1.status == 200 and ("Expires", "600") in r1.headers
    e1 = etag_of(r1)
    (pub,) = esc.publications(RES, "presence", 0.0)
    assert (pub.etag, pub.body.data, pub.publisher) == (e1, b"<a/>", "sip:alice@example.com")

    r2 = esc.handle(publish(etag=e1, expires="900"), 100.0)  # refresh: no body
    e2 = etag_of(r2)
    assert r2.status == 200 and e2 != e1
    (pub,) = esc.publications(RES, "presence", 100.0)
    assert (pub.etag, pub.body.data, pub.expires_at) == (e2, b"<a/>", 1000.0)
    assert esc.handle(publish(etag=e1), 100.0).status == 412  # the old tag is gone

    e3 = etag_of(esc.handle(publish(etag=e2, body=b"<b/>"), 200.0))  # modify
    assert [p.body.data for p in esc.publications(RES, "presence", 200.0)] == [b"<b/>"]

    r4 = esc.handle(publish(etag=e3, expires="0"), 300.0)  # remove
    assert r4.status == 200 and ("Expires", "0") in r4.headers
    assert esc.publications(RES, "presence", 300.0) == ()
    assert [c.kind for c in changes] == [PublishKind.INITIAL, PublishKind.REFRESH,
                                         PublishKind.MODIFY, PublishKind.REMOVE]
    assert changes[2].before is not None and changes[2].before.body.data == b"<a/>"


def test_the_stored_body_keeps_its_full_content_type(esc: Compositor) -> None:
    """A multipart body needs its boundary to be decoded again (24.379 9A PUBLISH)."""
    ctype = 'multipart/mixed; boundary="b0undary"'
    body = b"--b0undary\r\nContent-Type: text/plain\r\n\r\nx\r\n--b0undary--\r\n"
    req = request("PUBLISH", RES, headers=[("Event", "presence"), ("Expires", "600")],
                  body=body, content_type=ctype)
    etag = etag_of(esc.handle(req, 0.0))
    (pub,) = esc.publications(RES, "presence", 0.0)
    assert pub.body == Body(ctype, body)
    esc.handle(publish(etag=etag), 10.0)  # a refresh keeps the stored body as it was
    (pub,) = esc.publications(RES, "presence", 10.0)
    assert pub.body == Body(ctype, body)


def test_each_initial_publish_is_a_separate_publication(esc: Compositor) -> None:
    esc.handle(publish(body=b"<a/>"), 0.0)
    esc.handle(publish(body=b"<b/>"), 0.0)
    assert sorted(p.body.data for p in esc.publications(RES, "presence", 0.0)) == [b"<a/>",
                                                                                   b"<b/>"]


@pytest.mark.parametrize(("kwargs", "status", "header"), [
    ({"etag": "unknown", "body": b"<a/>"}, 412, None),
    ({"event": "dialog", "body": b"<a/>"}, 489, ("Allow-Events", "presence")),
    ({"expires": "30", "body": b"<a/>"}, 423, ("Min-Expires", "60")),
    ({"expires": "x", "body": b"<a/>"}, 400, None),
    ({}, 400, None),  # initial without a body
])
def test_rfc3903_refusals(esc: Compositor,
                          changes: list[PublicationChange], kwargs: dict[str, Any], status: int,
                          header: tuple[str, str] | None) -> None:
    reply = esc.handle(publish(**kwargs), 0.0)
    assert reply.status == status
    if header:
        assert header in reply.headers
    assert changes == [] and esc.publications(RES, "presence", 0.0) == ()


def test_expiry_drops_publication_and_reports_it(esc: Compositor,
                                                 changes: list[PublicationChange]) -> None:
    etag = etag_of(esc.handle(publish(body=b"<a/>", expires="120"), 0.0))
    assert esc.handle(publish(body=b"<b/>", expires="99999"), 0.0).status == 200  # max 3600
    assert esc.get_timer() == 120.0
    assert esc.handle(publish(etag=etag), 120.0).status == 412  # already expired
    (change,) = esc.handle_timer(120.0)
    assert change.kind is PublishKind.EXPIRED and change.before is not None
    assert change.before.etag == etag
    assert esc.get_timer() == 3600.0


def fa_policy(attempt: PublishAttempt) -> Refuse | None:
    """TS 24.379 9A.2.2.3.3: only 4294967295 (activate) or 0 (deactivate); 403 by own rules."""
    if attempt.requested_expires not in (MAX_EXPIRES, 0):
        return Refuse(423, headers=(("Min-Expires", str(MAX_EXPIRES)),))
    if b"not-a-member" in (attempt.body.data if attempt.body else b""):
        return Refuse(403)
    return None


def test_functional_alias_policy_of_ts_24_379() -> None:
    changes: list[PublicationChange] = []
    esc = Compositor(["presence"], policy=fa_policy, on_change=changes.append, min_expires=0,
                     max_expires=MAX_EXPIRES)
    for expires in ("3600", None, "1"):
        reply = esc.handle(publish(body=b"<activate/>", expires=expires), 0.0)
        assert reply.status == 423 and ("Min-Expires", "4294967295") in reply.headers
    assert esc.handle(publish(body=b"not-a-member", expires=str(MAX_EXPIRES)), 0.0).status == 403
    ok = esc.handle(publish(body=b"<activate/>", expires=str(MAX_EXPIRES)), 0.0)
    assert ok.status == 200 and ("Expires", str(MAX_EXPIRES)) in ok.headers
    # Deactivation as 9A does it: Expires 0 with a body and no SIP-If-Match.
    off = esc.handle(publish(body=b"<deactivate/>", expires="0"), 5.0)
    assert off.status == 200
    assert [(c.kind, c.after is None) for c in changes] == [(PublishKind.INITIAL, False),
                                                           (PublishKind.REMOVE, True)]
    assert changes[1].request is not None and changes[1].request.body == b"<deactivate/>"


def test_publisher_refresh_modify_remove_and_recovers_from_412_and_423() -> None:
    esc = Compositor(["presence"], min_expires=120)
    epa = Publisher(target=RES, from_uri="sip:acmc@example.com", event="presence")
    now = 0.0

    def roundtrip(spec: RequestSpec | None) -> RequestSpec | None:
        assert spec is not None
        req = deliver(spec)
        return epa.on_response(answer(req, esc.handle(req, now)), now)

    retry = roundtrip(epa.publish(Body(PIDF, b"<a/>"), 60, now))  # 423 -> Min-Expires
    assert retry is not None and retry.header("Expires") == "120" and retry.body == b"<a/>"
    assert roundtrip(retry) is None and epa.etag is not None
    assert epa.get_timer() == 60.0

    now = 60.0
    refresh = epa.handle_timer(now)
    assert refresh is not None and refresh.body == b"" and refresh.header("SIP-If-Match")
    assert roundtrip(refresh) is None
    (pub,) = esc.publications(RES, "presence", now)
    assert pub.etag == epa.etag and pub.expires_at == 180.0

    assert roundtrip(epa.publish(Body(PIDF, b"<b/>"), 120, now)) is None  # modify
    assert [p.body.data for p in esc.publications(RES, "presence", now)] == [b"<b/>"]

    # The compositor forgot us (restart): the refresh gets 412, the publisher republishes.
    esc = Compositor(["presence"], min_expires=120)
    again = roundtrip(epa.refresh(now))
    assert again is not None and again.header("SIP-If-Match") is None and again.body == b"<b/>"
    assert roundtrip(again) is None
    assert [p.etag for p in esc.publications(RES, "presence", now)] == [epa.etag]

    assert roundtrip(epa.remove(now)) is None
    assert esc.publications(RES, "presence", now) == () and epa.etag is None
    assert epa.get_timer() is None


def published_pair(changes: list[PublicationChange]) -> tuple[SipPair, Compositor, Publisher]:
    """A compositor served on the pair's server side, a publisher on its client side, both
    driven by the pair's fake clock."""
    pair = SipPair()
    esc = Compositor(["presence"], on_change=changes.append, min_expires=60)
    pair.server.serve("PUBLISH", esc.handle, accept=[PIDF])
    pair.drive(esc)
    epa = Publisher(target=pair.server.uri("fa-server"), from_uri="sip:acmc@example.com",
                    event="presence")
    pair.drive(epa, lambda spec: pair.client.exchange(spec, epa.on_response))
    return pair, esc, epa


def test_publish_modify_refresh_remove_on_the_pair(changes: list[PublicationChange]) -> None:
    pair, esc, epa = published_pair(changes)
    target = pair.server.uri("fa-server")
    pair.client.exchange(epa.publish(Body(PIDF, b"<a/>"), 600, pair.now), epa.on_response)
    (pub,) = esc.publications(target, "presence", pair.now)
    assert epa.etag is not None and pub.etag == epa.etag and pub.body.data == b"<a/>"

    first = epa.etag
    pair.client.exchange(epa.publish(Body(PIDF, b"<b/>"), 600, pair.now), epa.on_response)
    assert epa.etag != first and changes[-1].kind is PublishKind.MODIFY

    response = pair.client.exchange(epa.publish(Body("text/plain", b"hi"), 600, pair.now),
                                    epa.on_response)  # 415 before the compositor (accept=)
    assert response is not None and response.status == 415
    assert response.header("accept") == PIDF and epa.last_status == 415

    pair.advance(3 * 3600)  # refreshed (SIP-If-Match, no body) long past the 600 s
    (pub,) = esc.publications(target, "presence", pair.now)
    assert pub.body.data == b"<b/>"
    refreshes = [r for r in pair.server.received if r.header("sip-if-match") and not r.body]
    assert len(refreshes) >= 3 * 3600 // 600
    assert PublishKind.EXPIRED not in {c.kind for c in changes}

    pair.client.exchange(epa.remove(pair.now), epa.on_response)
    assert esc.publications(target, "presence", pair.now) == ()
    assert changes[-1].kind is PublishKind.REMOVE


def test_an_unrefreshed_publication_expires_on_the_pair(changes: list[PublicationChange]) -> None:
    pair, esc, epa = published_pair(changes)
    pair.client.exchange(epa.publish(Body(PIDF, b"<a/>"), 600, pair.now), epa.on_response)
    pair.undrive(epa)  # the publisher goes silent
    pair.advance(601)
    assert esc.publications(pair.server.uri("fa-server"), "presence", pair.now) == ()
    assert changes[-1].kind is PublishKind.EXPIRED


async def _loopback(transport: str) -> None:
    clock = Clock(0.0)
    changes: list[PublicationChange] = []
    async with endpoint(transport) as server, endpoint(transport) as client:  # type: ignore[arg-type]
        service = PublicationService(
            server, Compositor(["presence"], on_change=changes.append, min_expires=60),
            accept=[PIDF], clock=clock)
        service.start()
        target = uri(server, transport, "fa-server")  # type: ignore[arg-type]
        epa = PublicationClient(client, target=target, from_uri="sip:acmc@example.com",
                                event="presence", transport=transport, clock=clock)  # type: ignore[arg-type]
        try:
            etag = await epa.publish(Body(PIDF, b"<a/>"), expires=600)
            (pub,) = service.compositor.publications(target, "presence", clock())
            assert pub.etag == etag and pub.body.data == b"<a/>"

            etag2 = await epa.publish(Body(PIDF, b"<b/>"), expires=600)
            assert etag2 != etag and changes[-1].kind is PublishKind.MODIFY

            with pytest.raises(PublishError) as info:  # 415 from the endpoint (accept=)
                await epa.publish(Body("text/plain", b"hi"), expires=600)
            assert info.value.status == 415

            await epa.remove()
            assert service.compositor.publications(target, "presence", clock()) == ()
            assert changes[-1].kind is PublishKind.REMOVE
        finally:
            await epa.close()
            await service.close()


def test_publish_with_etags_over_loopback() -> None:
    asyncio.run(_loopback("udp"))
