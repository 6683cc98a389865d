"""Who sent a request (``runtime.base.sender_identity``): the remembered identity of a
P-Asserted-Identity value is the one the general rule gives (issue 18, round 11)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mcacm_sip.runtime.base import sender_identity, source_ip
from mcacm_sip.sip import Request
from mcacm_sip.sip.message import Arrival, parse
from mcacm_sip.sip.uri import addr_spec, address_of_record

TRUSTED = frozenset({"127.0.0.1"})


def _general(request: Request, trusted_hosts: frozenset[str]) -> str | None:
    """The rule as round 10 wrote it, nothing remembered."""
    raw: str | None = None
    if source_ip(request) in trusted_hosts:
        raw = request.header("p-asserted-identity")
    raw = raw or request.header("from")
    if not raw:
        return None
    aor = address_of_record(addr_spec(raw.split(",")[0]))
    return None if aor is None else str(aor)


_NAMES = st.sampled_from([
    "<sip:acms@primary.example>", "<sip:ACMS@Primary.Example;lr>", "sip:acms@primary.example",
    '"A" <sips:a@h.example:5061;transport=tls>', "<tel:+123>", "<sip:a@h>, <sip:b@h>",
    "<sip:%61cms@primary.example>", "garbage", "<>", " <sip:x@y.example> ",
])


def _request(pai: str | None, sender: str, host: str) -> Request:
    head = ("MESSAGE sip:acms@partner.example SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n"
            f"From: {sender};tag=1\r\nTo: <sip:acms@partner.example>\r\nCall-ID: c-1\r\n"
            "CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
            + (f"P-Asserted-Identity: {pai}\r\n" if pai is not None else "")
            + "Content-Length: 0\r\n\r\n")
    req = parse(head.encode())
    assert isinstance(req, Request)
    req.stamp_source(Arrival("udp", host, 5061))
    return req


@settings(max_examples=300, deadline=None)
@given(pai=st.none() | st.just("") | _NAMES, sender=_NAMES.filter(lambda n: "," not in n),
       host=st.sampled_from(["127.0.0.1", "192.0.2.1"]), again=st.booleans())
@example(pai="<sip:acms@primary.example>", sender="<sip:other@x.example>",
         host="127.0.0.1", again=True)
def test_the_remembered_asserted_identity_is_the_general_rules(
        pai: str | None, sender: str, host: str, again: bool) -> None:
    """Trusted host or not, asserted or not, first time or remembered: the same identity
    (checked to fail with the From's identity remembered for the asserted one, and with an
    empty P-Asserted-Identity taken as asserted)."""
    req = _request(pai, sender, host)
    if again:
        sender_identity(req, TRUSTED)
    assert sender_identity(req, TRUSTED) == _general(req, TRUSTED)
