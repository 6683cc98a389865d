"""Whom an ACMS believes (``runtime.trust``): the configured peer and user an identity names
are remembered per identity text (issue 18, round 12); the decisions, made per request on its
source and certificate, are the ones the look-up made at every request gives, and
``origin_of`` reads a request's arrival as the general rule does."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mcacm_sip.core.config import PeerSystem
from mcacm_sip.runtime import trust as trust_module
from mcacm_sip.runtime.base import sender_identity, source_ip
from mcacm_sip.runtime.trust import Origin, Trust, certificate_names, origin_of
from mcacm_sip.sip import Request
from mcacm_sip.sip.message import Arrival, parse
from mcacm_sip.sip.uri import address_of_record

PEERS = (PeerSystem("sip:acms@primary.example", ("primary.example",)),
         PeerSystem("sip:acms@strict.example", ("strict.example",), tls="required"))
USERS = ("sip:alice@partner.example", "sip:Bob@partner.example")
TRUSTED = frozenset({"127.0.0.1"})


class _General(Trust):
    """The look-up as round 11 made it: the AOR's peer and user at every request."""

    def _claim(self, identity: str | None) -> tuple[PeerSystem | None, str | None]:
        aor = address_of_record(identity)
        return (None, None) if aor is None else (self.peers.get(aor), self.users.get(aor))


_IDENTITIES = st.sampled_from([
    None, "sip:acms@primary.example", "sip:ACMS@Primary.Example", "sip:acms@primary.example:5060",
    "sips:acms@primary.example", "sip:acms@strict.example", "sip:alice@partner.example",
    "sip:%61lice@partner.example", "sip:bob@partner.example", "sip:Bob@partner.example",
    "sip:mallory@primary.example", "tel:+123", "garbage", "",
])
_CERTS = st.sampled_from([None, frozenset(), frozenset({"primary.example"}),
                          frozenset({"strict.example"}), frozenset({"other.example"})])


@settings(max_examples=400, deadline=None)
@given(identity=_IDENTITIES, source=st.sampled_from([None, "127.0.0.1", "192.0.2.7"]),
       cert=_CERTS, trusted=st.sampled_from([frozenset(), TRUSTED]),
       asked=st.lists(_IDENTITIES, max_size=3))
@example(identity="sip:ACMS@Primary.Example", source="192.0.2.7", cert=None,
         trusted=TRUSTED, asked=["sip:acms@primary.example"])
def test_the_remembered_claim_decides_as_the_look_up_at_every_request(
        identity: str | None, source: str | None, cert: frozenset[str] | None,
        trusted: frozenset[str], asked: list[str | None]) -> None:
    """First time or remembered (after other identities were asked about): the same refusal
    and the same event, for every source and certificate (checked to fail with the claims
    remembered per host of the identity)."""
    fast, general = Trust(PEERS, USERS, trusted), _General(PEERS, USERS, trusted)
    origin = Origin(identity, source, cert)
    for other in asked:
        fast.refusal(Origin(other, source, cert))
    for _ in range(2):
        assert fast.refusal(origin) == general.refusal(origin)
        if identity is not None:
            assert fast.event(1.0, identity, None) == general.event(1.0, identity, None)  # type: ignore[arg-type]


def test_the_remembered_claims_are_bounded(monkeypatch: object) -> None:
    """An identity is the sender's to choose: the memory starts over at ``CLAIMS_KEPT``, and
    what it says after is still the look-up's."""
    fast, general = Trust(PEERS, USERS, TRUSTED), _General(PEERS, USERS, TRUSTED)
    for n in range(trust_module.CLAIMS_KEPT + 5):
        fast.refusal(Origin(f"sip:u{n}@partner.example", "127.0.0.1", None))
    assert len(fast._claims) <= trust_module.CLAIMS_KEPT
    for identity in ("sip:acms@primary.example", "sip:alice@partner.example", "sip:u3@x"):
        origin = Origin(identity, "192.0.2.7", None)
        assert fast.refusal(origin) == general.refusal(origin)
        assert fast.event(1.0, identity, None) == general.event(1.0, identity, None)  # type: ignore[arg-type]


def _request(host: str | None, certificate: dict[str, object] | None) -> Request:
    head = ("MESSAGE sip:acms@partner.example SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n"
            "From: <sip:acms@primary.example>;tag=1\r\nTo: <sip:acms@partner.example>\r\n"
            "Call-ID: c-1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
            "P-Asserted-Identity: <sip:alice@partner.example>\r\nContent-Length: 0\r\n\r\n")
    req = parse(head.encode())
    assert isinstance(req, Request)
    if host is not None:
        req.stamp_source(Arrival("tls" if certificate else "udp", host, 5061,
                                 certificate=certificate))
    return req


@given(host=st.sampled_from([None, "127.0.0.1", "192.0.2.7"]),
       certificate=st.sampled_from([None, {}, {"subjectAltName": (("DNS", "Primary.Example"),)},
                                    {"subject": ((("commonName", "cn.example"),),)}]),
       trusted=st.sampled_from([frozenset(), TRUSTED]))
def test_the_origin_is_the_general_rules(host: str | None,
                                         certificate: dict[str, object] | None,
                                         trusted: frozenset[str]) -> None:
    """The arrival read once: the identity, source and certificate names the three general
    functions give (checked to fail with the certificate read only on a trusted source)."""
    req = _request(host, certificate)
    arrival = req.arrival
    assert origin_of(req, trusted) == Origin(
        sender_identity(req, trusted), source_ip(req),
        certificate_names(None if arrival is None else arrival.certificate))
