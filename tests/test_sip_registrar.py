# mypy: disable-error-code="comparison-overlap"
"""Registrar (RFC 3261 10.3) and REGISTER client (10.2): sans-I/O with a fake clock, then the
two on the in-memory pair (bytes through the transaction layers, no socket), then once on real
loopback sockets through the endpoint and its services (the integration check)."""

from __future__ import annotations

import asyncio

import pytest
from sip_pair import SipPair
from sip_usage_kit import Clock, answer, deliver, endpoint, request, uri

from mcacm_sip.sip import Limits, Request
from mcacm_sip.sip.aio.usages import RegistrarService, RegistrationClient, RegistrationError
from mcacm_sip.sip.dialog import RequestSpec
from mcacm_sip.sip.registrar import (
    MemoryBindingStore,
    Registrar,
    Registration,
    RegistrationChange,
    RegistrationState,
)
from mcacm_sip.sip.uri import Uri, identity

AOR = "sip:alice@example.com"


def register(contacts: list[str], *, expires: str | None = "600", cseq: int = 1,
             call_id: str = "reg-1@test", to: str = f"<{AOR}>") -> Request:
    headers = [("Contact", c) for c in contacts]
    if expires is not None:
        headers.append(("Expires", expires))
    return request("REGISTER", "sip:example.com", from_=to, to=to, call_id=call_id, cseq=cseq,
                   headers=headers)


def contact_expiries(reply) -> dict[str, int]:  # type: ignore[no-untyped-def]
    out = {}
    for name, value in reply.headers:
        if name == "Contact":
            uri_part, _, param = value.partition(";expires=")
            out[uri_part.strip("<>")] = int(param)
    return out


@pytest.fixture
def changes() -> list[RegistrationChange]:
    return []


@pytest.fixture
def registrar(changes: list[RegistrationChange]) -> Registrar:
    return Registrar(on_change=changes.append, min_expires=60, max_expires=3600)


def test_register_binds_contact_and_logs_on(registrar: Registrar,
                                            changes: list[RegistrationChange]) -> None:
    reply = registrar.handle(register(["<sip:alice@192.0.2.7:5062>"]), 1000.0)
    assert reply.status == 200
    assert contact_expiries(reply) == {"sip:alice@192.0.2.7:5062": 600}
    # Any spelling of the AOR finds the binding (10.3 step 5: canonical form).
    assert registrar.is_registered("sip:alice@EXAMPLE.com;transport=udp", 1000.0)
    assert [c.logged_on for c in changes] == [True]
    assert not registrar.is_registered("sip:bob@example.com", 1000.0)


def test_contact_expires_param_beats_header_and_max_shortens(registrar: Registrar) -> None:
    reply = registrar.handle(register(["<sip:a@192.0.2.7>;expires=120", "<sip:b@192.0.2.8>"],
                                      expires="99999"), 0.0)
    assert contact_expiries(reply) == {"sip:a@192.0.2.7": 120, "sip:b@192.0.2.8": 3600}


def test_too_short_gets_423_with_min_expires_and_binds_nothing(registrar: Registrar) -> None:
    reply = registrar.handle(register(["<sip:a@192.0.2.7>"], expires="10"), 0.0)
    assert reply.status == 423
    assert ("Min-Expires", "60") in reply.headers
    assert not registrar.is_registered(AOR, 0.0)


def test_expires_zero_removes_one_binding(registrar: Registrar,
                                          changes: list[RegistrationChange]) -> None:
    registrar.handle(register(["<sip:a@192.0.2.7>", "<sip:b@192.0.2.8>"]), 0.0)
    reply = registrar.handle(register(["<sip:a@192.0.2.7>"], expires="0", cseq=2), 1.0)
    assert contact_expiries(reply) == {"sip:b@192.0.2.8": 599}
    reply = registrar.handle(register(["<sip:b@192.0.2.8>;expires=0"], cseq=3), 2.0)
    assert reply.status == 200 and contact_expiries(reply) == {}
    assert [(c.logged_on, c.logged_off) for c in changes] == [
        (True, False), (False, False), (False, True)]


def test_wildcard_removes_all_and_needs_expires_zero(registrar: Registrar,
                                                     changes: list[RegistrationChange]) -> None:
    registrar.handle(register(["<sip:a@192.0.2.7>", "<sip:b@192.0.2.8>"]), 0.0)
    assert registrar.handle(register(["*"], expires="60", cseq=2), 1.0).status == 400
    assert registrar.handle(register(["*", "<sip:c@192.0.2.9>"], expires="0", cseq=2),
                            1.0).status == 400
    assert registrar.handle(register(["*"], expires="0", cseq=3), 1.0).status == 200
    assert not registrar.is_registered(AOR, 1.0)
    assert changes[-1].logged_off


def test_out_of_order_register_fails_without_changing_bindings(registrar: Registrar) -> None:
    registrar.handle(register(["<sip:a@192.0.2.7>"], cseq=5), 0.0)
    late = registrar.handle(register(["<sip:a@192.0.2.7>"], expires="0", cseq=4), 1.0)
    assert late.status == 500
    assert registrar.is_registered(AOR, 1.0)
    # Another Call-ID (another client instance) may replace it whatever its CSeq.
    other = register(["<sip:a@192.0.2.7>"], expires="0", cseq=1, call_id="reg-2@test")
    assert registrar.handle(other, 2.0).status == 200
    assert not registrar.is_registered(AOR, 2.0)


def test_query_without_contact_lists_bindings(registrar: Registrar) -> None:
    registrar.handle(register(["<sip:a@192.0.2.7>"]), 0.0)
    reply = registrar.handle(register([], expires=None, cseq=2), 100.0)
    assert contact_expiries(reply) == {"sip:a@192.0.2.7": 500}


PROXIES = ["<sip:p1.example.com;lr>", "<sip:192.0.2.1:5060;transport=tcp;lr>"]


@pytest.mark.parametrize("supported", [None, "path", "timer, PATH"])
def test_path_is_kept_with_the_contact_and_echoed_only_to_a_ua_that_supports_it(
        registrar: Registrar, supported: str | None) -> None:
    """RFC 3327 5.3: the registrar stores the Path vector, in order, with each contact of
    the REGISTER, and returns it in the 200 only when the UA said ``Supported: path``."""
    req = register(["<sip:a@192.0.2.7>"])
    # two header lines, the first a comma list: one vector of three proxies, in order
    extra = [("Path", f"{PROXIES[0]}, <sip:p2.example.com;lr>"), ("Path", PROXIES[1])]
    if supported is not None:
        extra.append(("Supported", supported))
    req = request("REGISTER", "sip:example.com", from_=f"<{AOR}>", to=f"<{AOR}>",
                  call_id="reg-1@test", cseq=1,
                  headers=[("Contact", "<sip:a@192.0.2.7>"), ("Expires", "600"), *extra])
    reply = registrar.handle(req, 0.0)
    vector = (PROXIES[0], "<sip:p2.example.com;lr>", PROXIES[1])
    assert [b.path for b in registrar.contacts(AOR, 0.0)] == [vector]
    echoed = tuple(v for n, v in reply.headers if n == "Path")
    assert echoed == (vector if supported else ())
    # a refresh without Path (the UA moved next to the registrar) forgets the old vector
    reply = registrar.handle(register(["<sip:a@192.0.2.7>"], cseq=2), 1.0)
    assert [b.path for b in registrar.contacts(AOR, 1.0)] == [()]


def test_authorisation_predicate_refuses_with_403() -> None:
    seen: list[Uri] = []

    def authorise(aor: Uri, req: Request) -> bool:
        seen.append(aor)
        return str(aor).startswith("sip:acmc")

    registrar = Registrar(authorise=authorise)
    assert registrar.handle(register(["<sip:a@192.0.2.7>"]), 0.0).status == 403
    assert seen == [identity(AOR)]  # the AOR as a Uri: the application compares it by 19.1.4
    assert not registrar.is_registered(AOR, 0.0)


@pytest.mark.parametrize(("to", "expires", "status"), [
    ("<tel:+123>", "60", 400),
    (f"<{AOR}>", "soon", 400),
])
def test_bad_input_gets_a_defined_answer(registrar: Registrar, to: str, expires: str,
                                         status: int) -> None:
    assert registrar.handle(register(["<sip:a@192.0.2.7>"], expires=expires, to=to),
                            0.0).status == status


def test_binding_expires_and_expiry_reports_logoff(registrar: Registrar,
                                                   changes: list[RegistrationChange]) -> None:
    registrar.handle(register(["<sip:a@192.0.2.7>"], expires="120"), 0.0)
    assert registrar.get_timer() == 120.0
    assert registrar.is_registered(AOR, 119.9)
    assert not registrar.is_registered(AOR, 120.0)  # queries never return a stale binding
    (change,) = registrar.handle_timer(120.0)
    assert change.logged_off and change.expired
    assert registrar.get_timer() is None
    assert registrar.handle_timer(500.0) == []


def test_client_and_registrar_refresh_at_half_time_and_unregister() -> None:
    registrar = Registrar(min_expires=300)
    client = Registration(registrar="sip:example.com", aor=AOR,
                          contact="<sip:alice@192.0.2.7:5062>", expires=60)
    now = 0.0

    def roundtrip(spec: RequestSpec) -> RequestSpec | None:
        req = deliver(spec)
        return client.on_response(answer(req, registrar.handle(req, now)), now)

    first = client.register(now)
    assert first is not None and first.header("expires") == "60"
    assert first.header("supported") == "path"  # RFC 3327 4: reachable through a Path
    retry = roundtrip(first)  # 423: retried with Min-Expires (RFC 3261 10.2.8)
    assert retry is not None and retry.header("expires") == "300"
    assert retry.call_id == first.call_id and retry.cseq == first.cseq + 1
    assert roundtrip(retry) is None
    assert client.state is RegistrationState.REGISTERED and client.granted == 300
    assert registrar.is_registered(AOR, now)

    assert client.get_timer() == 150.0  # refresh at half the granted time
    assert client.handle_timer(149.0) is None
    now = 150.0
    refresh = client.handle_timer(now)
    assert refresh is not None and refresh.cseq == retry.cseq + 1
    assert roundtrip(refresh) is None
    assert client.expires_at == 450.0

    now = 200.0
    bye = client.unregister(now)
    assert bye is not None and bye.header("expires") == "0"
    assert roundtrip(bye) is None
    assert client.state is RegistrationState.IDLE and client.get_timer() is None
    assert not registrar.is_registered(AOR, now)


def test_client_failure_retries_later() -> None:
    client = Registration(registrar="sip:example.com", aor=AOR, contact="<sip:a@192.0.2.7>",
                          retry_after=30)
    spec = client.register(0.0)
    assert spec is not None
    req = deliver(spec)
    assert client.on_response(answer(req, Registrar(authorise=lambda a, r: False).handle(req, 0)),
                              0.0) is None
    assert client.state is RegistrationState.FAILED and client.last_status == 403
    assert client.get_timer() == 30.0
    again = client.handle_timer(30.0)
    assert again is not None and again.method == "REGISTER"


# ---------------------------------------------------------------- on the in-memory pair


def registered_pair(changes: list[RegistrationChange], expires: int = 120
                    ) -> tuple[SipPair, Registrar, Registration]:
    """A registrar served on the pair's server side, a Registration on its client side, both
    driven by the pair's fake clock."""
    pair = SipPair(Clock(1000.0))
    registrar = Registrar(on_change=changes.append, min_expires=30)
    pair.server.serve("REGISTER", registrar.handle)
    pair.drive(registrar)
    core = Registration(registrar=pair.server.uri("registrar"), aor="sip:acmc-1@example.com",
                        contact=pair.client.uri("acmc-1"), expires=expires)
    pair.drive(core, lambda spec: pair.client.exchange(spec, core.on_response))
    return pair, registrar, core


def test_register_logon_and_expiry_on_the_pair(changes: list[RegistrationChange]) -> None:
    pair, registrar, core = registered_pair(changes)
    aor = "sip:acmc-1@example.com"
    pair.client.exchange(core.register(pair.now), core.on_response)
    assert core.state is RegistrationState.REGISTERED and core.granted == 120
    assert registrar.is_registered(aor, pair.now)
    (binding,) = registrar.contacts(aor, pair.now)
    assert binding.contact == core.contact
    assert changes[0].logged_on

    pair.undrive(core)  # the UE goes silent: no refresh, no un-REGISTER
    pair.advance(121)
    assert changes[-1].logged_off and changes[-1].expired
    assert not registrar.is_registered(aor, pair.now)

    # Log on again, then off explicitly.
    pair.client.exchange(core.register(pair.now), core.on_response)
    assert core.granted == 120
    pair.client.exchange(core.unregister(pair.now), core.on_response)
    assert not registrar.is_registered(aor, pair.now)
    assert [c.logged_on for c in changes].count(True) == 2
    assert [r.method for r in pair.server.received] == ["REGISTER"] * 3


def test_refreshes_keep_the_binding_for_hours_on_the_pair(
        changes: list[RegistrationChange]) -> None:
    pair, registrar, core = registered_pair(changes)
    pair.client.exchange(core.register(pair.now), core.on_response)
    for _ in range(36):  # three hours in 5-minute steps; the binding lasts 120 s unrefreshed
        pair.advance(300)
        assert registrar.is_registered("sip:acmc-1@example.com", pair.now)
    refreshes = len(pair.server.received) - 1
    assert refreshes >= 36 * 300 // 60  # at half the granted time
    # one logon, never a logoff in between (no flapping)
    assert sum(c.logged_on for c in changes) == 1 and not any(c.logged_off for c in changes)


def test_a_lost_refresh_is_retried_and_the_binding_survives_on_the_pair(
        changes: list[RegistrationChange]) -> None:
    pair, registrar, core = registered_pair(changes, expires=3600)
    pair.client.exchange(core.register(pair.now), core.on_response)
    lost = 0

    def lose_one_refresh(data: bytes) -> bool:  # every copy of the first refresh, UDP-style
        nonlocal lost
        if data.startswith(b"REGISTER") and b"CSeq: 2 " in data:
            lost += 1
            return True
        return False

    pair.lose = lose_one_refresh
    pair.advance(1800)  # refresh due: its REGISTER and retransmissions vanish, Timer F fires
    assert lost > 1 and core.last_status is None
    pair.lose = lambda data: False
    for _ in range(20):
        pair.advance(60)
    assert core.state is RegistrationState.REGISTERED and core.last_status == 200
    assert registrar.is_registered("sip:acmc-1@example.com", pair.now)
    assert sum(c.logged_on for c in changes) == 1 and not any(c.logged_off for c in changes)


def test_a_refused_register_is_reported_on_the_pair() -> None:
    pair = SipPair()
    pair.server.serve("REGISTER", Registrar(authorise=lambda aor, req: False).handle)
    core = Registration(registrar=pair.server.uri("r"), aor=AOR, contact=pair.client.uri("a"))
    pair.client.exchange(core.register(pair.now), core.on_response)
    assert core.last_status == 403 and core.state is not RegistrationState.REGISTERED


# ---------------------------------------------------------------- on loopback sockets


def test_register_logon_and_expiry_over_loopback_tcp() -> None:
    asyncio.run(_logon_and_expiry("tcp"))


async def _logon_and_expiry(transport: str) -> None:
    clock = Clock(1000.0)
    changes: list[RegistrationChange] = []
    logged_off = asyncio.Event()

    def observe(change: RegistrationChange) -> None:
        changes.append(change)
        if change.logged_off:
            logged_off.set()

    async with endpoint(transport) as server, endpoint(transport) as ue:  # type: ignore[arg-type]
        service = RegistrarService(server, Registrar(on_change=observe, min_expires=30),
                                   clock=clock)
        service.start()
        client = RegistrationClient(ue, registrar=uri(server, transport, "registrar"),  # type: ignore[arg-type]
                                    aor="sip:acmc-1@example.com", expires=120,
                                    transport=transport, clock=clock)  # type: ignore[arg-type]
        try:
            assert await client.register() == 120
            assert service.is_registered("sip:acmc-1@example.com")
            (binding,) = service.contacts("sip:acmc-1@example.com")
            assert binding.contact == client.core.contact  # reaches the UE over this transport
            assert changes[0].logged_on

            await client.close()  # the UE goes silent: no refresh, no un-REGISTER
            clock.advance(121)
            service.check()
            await asyncio.wait_for(logged_off.wait(), 5)
            assert changes[-1].expired
            assert not service.is_registered("sip:acmc-1@example.com")

            # Log on again, then off explicitly.
            assert await client.register() == 120
            await client.unregister()
            assert not service.is_registered("sip:acmc-1@example.com")
            assert [c.logged_on for c in changes].count(True) == 2
        finally:
            await client.close()
            await service.close()


def test_register_refused_raises() -> None:
    asyncio.run(_refused())


async def _refused() -> None:
    async with endpoint() as server, endpoint() as ue:
        service = RegistrarService(server, Registrar(authorise=lambda aor, req: False))
        service.start()
        client = RegistrationClient(ue, registrar=uri(server, "udp", "r"), aor=AOR)
        try:
            with pytest.raises(RegistrationError) as info:
                await client.register()
            assert info.value.status == 403
        finally:
            await client.close()
            await service.close()


# ---------------------------------------------------------------- limits (issue 13 item 8)


def contacts(n: int, start: int = 0) -> list[str]:
    return [f"<sip:alice@192.0.2.{i % 250}:{5000 + i}>" for i in range(start, start + n)]


def test_one_register_with_thousands_of_contacts_is_refused_whole() -> None:
    """Before: one REGISTER (one comma-separated Contact line within the 64 KiB header cap)
    bound 2 000 contacts.  Now 403 with a Warning, nothing bound."""
    registrar = Registrar(limits=Limits(max_contacts_per_aor=16), host="acms.example")
    reply = registrar.handle(register([", ".join(contacts(2000))]), 1000.0)
    assert reply.status == 403
    assert dict(reply.headers)["Warning"] == (
        '399 acms.example "too many contacts: at most 16 per address-of-record"')
    assert registrar.contacts(AOR, 1000.0) == () and registrar.bindings == 0


def test_the_per_aor_cap_counts_what_is_already_bound() -> None:
    registrar = Registrar(limits=Limits(max_contacts_per_aor=3))
    assert registrar.handle(register(contacts(2)), 1000.0).status == 200
    # two more would make four: refused, the two stay
    assert registrar.handle(register(contacts(2, 2), cseq=2), 1001.0).status == 403
    assert len(registrar.contacts(AOR, 1001.0)) == 2
    # one more is three: taken; a refresh of all three at the cap is still taken
    assert registrar.handle(register(contacts(1, 2), cseq=3), 1002.0).status == 200
    assert registrar.handle(register(contacts(3), cseq=4), 1003.0).status == 200
    # removing one makes room again (Expires 0 counts as going away)
    assert registrar.handle(register([contacts(1)[0] + ";expires=0", *contacts(1, 3)],
                                     cseq=5), 1004.0).status == 200
    assert len(registrar.contacts(AOR, 1004.0)) == 3


def test_the_total_cap_answers_503_with_retry_after_until_bindings_expire() -> None:
    """RFC 3261 21.5.4: a full registrar is temporarily unable; Retry-After says when the next
    binding expires.  Other AORs' refreshes and removals still work."""
    registrar = Registrar(limits=Limits(max_bindings=3), min_expires=60)
    for i in range(3):
        aor = f"<sip:user{i}@example.com>"
        assert registrar.handle(register(contacts(1, i), to=aor, call_id=f"r{i}"),
                                1000.0).status == 200
    assert registrar.bindings == 3
    full = registrar.handle(register(contacts(1, 9)), 1100.0)
    assert full.status == 503
    headers = dict(full.headers)
    assert headers["Retry-After"] == "501"  # the first binding expires at 1600
    assert "registrar full: 3 bindings" in headers["Warning"]
    # a refresh adds nothing: taken
    assert registrar.handle(register(contacts(1, 0), to="<sip:user0@example.com>",
                                     call_id="r0", cseq=2), 1100.0).status == 200
    # once bindings expired, there is room again
    registrar.handle_timer(1650.0)
    assert registrar.bindings == 1
    assert registrar.handle(register(contacts(1, 9)), 1650.0).status == 200
    assert registrar.bindings == 2


def test_the_count_survives_a_restart_on_the_same_store() -> None:
    store = MemoryBindingStore()
    first = Registrar(store, limits=Limits(max_bindings=2))
    first.handle(register(contacts(2)), 1000.0)
    again = Registrar(store, limits=Limits(max_bindings=2))
    assert again.bindings == 2
    assert again.handle(register(contacts(1, 5), to="<sip:bob@example.com>"),
                        1001.0).status == 503


def test_addr_spec_contact_expires_param_is_read(registrar: Registrar) -> None:
    # RFC 3261 20.10: without <>, ";expires=120" is the header's parameter (not the URI's);
    # it was ignored before sip/headers.py Contact read it, and the Expires header won
    reply = registrar.handle(register(["sip:a@192.0.2.7;expires=120"], expires="600"), 0.0)
    assert contact_expiries(reply) == {"sip:a@192.0.2.7": 120}
    reply = registrar.handle(register(["sip:a@192.0.2.7;expires=0"], cseq=2), 1.0)
    assert reply.status == 200 and not registrar.is_registered(AOR, 1.0)


def test_unreadable_contact_gets_400(registrar: Registrar) -> None:
    reply = registrar.handle(register(['"unclosed <sip:a@192.0.2.7>']), 0.0)
    assert reply.status == 400
    assert not registrar.is_registered(AOR, 0.0)
