"""Issue 12 rule 7 over the real code paths: any RFC 3261 §19.1.4-equivalent spelling of an
identity -- the one a foreign stack writes in a REGISTER, a From, a certificate, a PUBLISH body,
or the one an operator writes in a configuration -- gives the same outcome as the canonical one:
the same registrar binding, the same logged-on user at the ACMS core, the same trust decision, the
same FA holder."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sip_usage_kit import request
from uri_kit import hosts, respelling, user_parts

from mcacm_sip.acm import codec, fa
from mcacm_sip.acm.examples import example_flows
from mcacm_sip.acm.fa import EXPIRES_UNTIL_WITHDRAWN
from mcacm_sip.acm.model import Addressee, AddUserConfigurationRequest, Party
from mcacm_sip.core.config import AcmcConfig, ConfigError, PeerSystem
from mcacm_sip.core.events import FlowFromAcmc, FlowFromPeer
from mcacm_sip.core.fa_server import Answer, FaConfig, FaServer, FaServerConfig, Publish
from mcacm_sip.runtime import AcmcNode, AcmsNode
from mcacm_sip.runtime.base import Hops, SipSettings
from mcacm_sip.runtime.config import AcmcNodeConfig, AcmsNodeConfig
from mcacm_sip.runtime.lab import (
    ALICE,
    DAVE,
    DUTY,
    LOOPBACK,
    PARTNER,
    PRIMARY,
    primary_config,
)
from mcacm_sip.runtime.trust import Trust, certificate_names, names_peer, origin_of
from mcacm_sip.sip import Peer, Request
from mcacm_sip.sip.aio import IncomingRequest
from mcacm_sip.sip.message import Arrival
from mcacm_sip.sip.registrar import Registrar, RegistrationChange

_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
aors = st.builds(lambda user, host: f"sip:{user}@{host}", user_parts, hosts)


def register(to: str, contact: str, cseq: int, display: bool = False) -> Request:
    name_addr = f'"Someone" <{to}>' if display else f"<{to}>"
    return request("REGISTER", "sip:example.com", from_=name_addr, to=name_addr,
                   call_id="reg@test", cseq=cseq,
                   headers=[("Contact", f"<{contact}>"), ("Expires", "600")])


# ------------------------------------------------------------------ registrar (RFC 3261 10.3)


@_SETTINGS
@given(aors, st.data())
def test_every_spelling_of_an_aor_is_one_binding(aor: str, data: st.DataObject) -> None:
    """10.3 step 5 (the AOR, compared by 19.1.4) and step 7 (a contact already bound, compared
    by 19.1.4, is refreshed): a REGISTER, its refresh and a lookup in three spellings."""
    changes: list[RegistrationChange] = []
    registrar = Registrar(on_change=changes.append)
    contact = "sip:ue@192.0.2.7:5062"
    first, refresh, lookup = (data.draw(respelling(aor)) for _ in range(3))
    assert registrar.handle(register(first, contact, 1), 0.0).status == 200
    again = data.draw(respelling(contact, params=False))
    assert registrar.handle(register(refresh, again, 2, display=True), 1.0).status == 200
    assert len(registrar.store.aors()) == 1  # one AOR however spelt
    bound = registrar.contacts(lookup, 2.0)
    assert len(bound) == 1 and bound[0].cseq == 2  # refreshed, not bound twice
    assert bound == registrar.contacts(aor, 2.0)
    assert [c.logged_on for c in changes] == [True, False]  # one logon; then a refresh


# ------------------------------------------------------------------ logged-on state at the core


@_SETTINGS
@given(st.data())
def test_a_logon_in_any_spelling_logs_the_configured_user_on(data: st.DataObject) -> None:
    """The ACMS node's REGISTER path (authorisation, binding, UserLoggedOn to the core):
    ALICE registering as any spelling of her ID is ALICE at the core (10.17.3.1), and the
    core's logged-on set names her as configured."""
    spelled = data.draw(respelling(ALICE))

    async def main() -> frozenset[str]:
        node = AcmsNode(AcmsNodeConfig(primary_config(None), SipSettings(trusted_hosts=LOOPBACK)))
        node._running = True  # the REGISTER path without sockets: the registrar is sans-I/O
        req = register(spelled, "sip:alice@192.0.2.7:5062", 1)
        req.stamp_source(Arrival("udp", "127.0.0.1", 5062))  # as the endpoint does
        reply = node.registrar.handle(req, 0.0)
        assert reply.status == 200
        await asyncio.sleep(0)  # the group commit
        return node.core.logged_on

    assert asyncio.run(main()) == {ALICE}


# ------------------------------------------------------------------ trust (runtime/trust.py)


def _trust(psi: str, user: str) -> Trust:
    return Trust([PeerSystem(psi, ("partner.example",))], [user], frozenset())


def _sent_by(identity_text: str) -> Request:
    return request("MESSAGE", "sip:acms@primary.example", from_=f"<{identity_text}>",
                   to="<sip:acms@primary.example>")


@_SETTINGS
@given(st.data())
def test_trust_decides_alike_for_every_spelling(data: st.DataObject) -> None:
    """Whether a sender is a peer ACMS, a user or a stranger, believed or not, does not depend
    on how the From, the configuration or the certificate spells it."""
    configured_psi, configured_user = data.draw(respelling(PARTNER)), data.draw(respelling(ALICE))
    trust = _trust(configured_psi, configured_user)
    flow = AddUserConfigurationRequest("t1", Party(ALICE), ("sip:mike@primary.example",),
                                       Addressee(DAVE))
    for who in (PARTNER, ALICE, "sip:mallory@elsewhere.example"):
        canonical = origin_of(_sent_by(who), frozenset())
        spelled = origin_of(_sent_by(data.draw(respelling(who))), frozenset())
        assert (trust.refusal(canonical) is None) == (trust.refusal(spelled) is None)
        assert canonical.identity is not None and spelled.identity is not None
        a, b = trust.event(0.0, canonical.identity, flow), trust.event(0.0, spelled.identity, flow)
        assert type(a) is type(b)
        if isinstance(a, FlowFromPeer) and isinstance(b, FlowFromPeer):
            assert a.origin == b.origin == configured_psi  # as configured, for the core
        if who == ALICE:
            assert isinstance(b, FlowFromAcmc) and b.sender == configured_user


@_SETTINGS
@given(st.data())
def test_a_certificate_names_its_peer_in_any_spelling(data: st.DataObject) -> None:
    """RFC 5922 7.1/7.4: a subjectAltName URI is the peer's PSI by 19.1.4 (its user part kept
    case-sensitive), however the certificate and the configuration spell it."""
    names = certificate_names({"subjectAltName": (("URI", data.draw(respelling(PARTNER))),)})
    assert names is not None
    assert names_peer(names, PeerSystem(data.draw(respelling(PARTNER))))
    other = certificate_names({"subjectAltName": (("URI", "sip:ACMS@partner.example"),)})
    assert other is not None and not names_peer(other, PeerSystem(PARTNER))
    assert not names_peer(names, PeerSystem(PRIMARY))


# ------------------------------------------------------------------ FA holders (24.379 9A.2.2.3)


@_SETTINGS
@given(st.data())
def test_an_fa_activation_in_any_spelling_makes_the_configured_user_its_holder(
        data: st.DataObject) -> None:
    """9A.2.2.3.3 steps 4, 4a, 8, 9: the FA, the publishing user and its asserted identity in
    any spelling; the holder list names the user as configured, found by any spelling."""
    config = FaServerConfig((FaConfig(data.draw(respelling(DUTY)),
                                      frozenset({data.draw(respelling(DAVE))})),),
                            frozenset({PARTNER}))
    server = FaServer(config)
    ctype, body = fa.publish_body(data.draw(respelling(DUTY)), data.draw(respelling(DAVE)))
    actions = server.publish(Publish(EXPIRES_UNTIL_WITHDRAWN, ctype, body,
                                     data.draw(respelling(DAVE))), 0.0)
    first = actions[0]
    assert isinstance(first, Answer) and first.status == 200, first
    configured_dave = next(iter(config.aliases[0].users))
    assert server.holders(data.draw(respelling(DUTY))) == (configured_dave,)
    assert server.aliases_of(data.draw(respelling(DAVE))) == (config.aliases[0].uri,)
    # the ACMS's side of the resolution NOTIFY (9A.2.2.3.8): the FA server's spelling of the
    # FA is the subscribed FA; one user listed twice in two spellings is one holder
    pidf = fa.encode_presence(fa.FaPresence.per_fa(data.draw(respelling(DUTY)), [
        fa.FunctionalAliasEntry(user=u) for u in (DAVE, data.draw(respelling(DAVE)))]))
    assert len(fa.resolution_from_notify(DUTY, fa.CT_PIDF, pidf).holders) == 1


# ------------------------------------------------------------------ static hops, configuration


@_SETTINGS
@given(st.data())
def test_a_hop_keyed_by_a_uri_serves_every_spelling(data: st.DataObject) -> None:
    """``[sip.hops]``: a key that is a URI routes the requests to that AOR, however the key and
    the Request-URI spell it (a domain key still routes the rest of the domain)."""
    hops = Hops({data.draw(respelling(PARTNER)): "sip:127.0.0.1:5070;transport=tcp",
                 "partner.example": "sip:127.0.0.1:5080"})
    to_psi = hops.peer_for(data.draw(respelling(PARTNER)))
    assert to_psi is not None and (to_psi.transport, to_psi.port) == ("tcp", 5070)
    to_dave = hops.peer_for(data.draw(respelling(DAVE)))
    assert to_dave is not None and to_dave.port == 5080


def test_a_uri_naming_an_ip_address_is_never_sent_to_a_configured_hop() -> None:
    """A registered contact or a dialog's remote target names its address: the table never
    answers for it (not the ``*`` hop), so the endpoint sends to that address itself
    (tests/test_sip_send_soon.py: over UDP without a task)."""
    hops = Hops({"*": "sip:127.0.0.1:5080"})
    for uri in ("sip:alice@127.0.0.1:5099", "<sip:alice@[::1]>",
                "sip:alice@127.0.0.1:5099;transport=UDP", "sips:alice@127.0.0.1:5099"):
        assert hops.peer_for(uri) is None, uri
    assert hops.peer_for("sip:alice@partner.example") == Peer("udp", "127.0.0.1", 5080)


def test_a_hop_found_before_is_the_same_hop_however_many_uris_were_asked() -> None:
    """Hops remembers what it found for a URI (one lookup per MESSAGE otherwise), bounded:
    past its limit it still answers every URI as a table that never saw one."""
    table = {"sip:acms@partner.example": "sip:127.0.0.1:5070", "*": "sip:127.0.0.1:5080"}
    hops = Hops(table)
    uris = [f"sip:u{i}@{'127.0.0.1:' + str(1024 + i) if i % 2 else 'partner.example'}"
            for i in range(2 * Hops.KNOWN + 5)] + ["sip:acms@partner.example"]
    for _ in range(2):
        for uri in uris:
            assert hops.peer_for(uri) == Hops(table).peer_for(uri), uri


def test_a_configured_identity_that_is_no_sip_uri_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as exc:
        _trust(PARTNER, "alice")
    assert exc.value.key == "users[0].id"
    with pytest.raises(ConfigError) as exc:
        _trust("sip:acms@bad host", ALICE)
    assert exc.value.key == "peers[0].psi"


@_SETTINGS
@given(st.data())
def test_an_acmc_takes_flows_from_its_acms_in_any_spelling(data: st.DataObject) -> None:
    """An ACMC takes flows only from its own ACMS (docs/decisions.md "Runtime"), compared by
    19.1.4: the ACMS's own spelling, or the configuration's, changes nothing; a stranger gets
    403."""
    node = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, data.draw(respelling(PRIMARY))),
                                   SipSettings(trusted_hosts=frozenset({"192.0.2.1"}))))
    flow = example_flows()["pending-data-notification"]
    warnings = {}
    for sender in (data.draw(respelling(PRIMARY)), "sip:acms@elsewhere.example"):
        msg = request("MESSAGE", ALICE, from_=f"<{sender}>", to=f"<{ALICE}>",
                      body=codec.encode(flow), content_type=codec.ACM_CONTENT_TYPE)
        msg.stamp_source(Arrival("udp", "192.0.2.1", 5060))
        reply = node._on_message(IncomingRequest(
            node.endpoint, None, msg, Peer("udp", "192.0.2.1", 5060)))  # type: ignore[arg-type]
        warnings[sender] = (reply.status, dict(reply.headers).get("Warning", ""))
    mine, stranger = warnings.values()
    assert "is not my ACMS" not in mine[1]
    assert stranger[0] == 403 and "is not my ACMS" in stranger[1]
