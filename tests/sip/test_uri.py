"""mcacm_sip.sip.uri: RFC 3261 §19.1.4 equivalence, checked with the RFC's own examples and with
respellings a foreign stack may write (escapes, case, parameter order, ignored parameters)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from uri_kit import respelled

from mcacm_sip.sip.uri import InvalidUri, Uri, identity, same_identity, uri_glob_match

# RFC 3261 §19.1.4: "The URIs within each of the following sets are equivalent"
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ("SIP:alice@[::1]:5060", "sip:alice@[0:0::1]:5060"),
    ("sips:dave@Partner.Example", "sips:dave@partner.example"),
    ("tel:+1-201-555-0123", "tel:+12015550123"),
]
# "The URIs within each of the following sets are not equivalent"
DIFFERENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:a@h.example", "sips:a@h.example"),
    ("sip:a%3Bb@h.example", "sip:a;b@h.example"),          # an escaped reserved character
    ("sip:a@h.example;user=phone", "sip:a@h.example"),
    ("sip:a@h.example;maddr=239.0.0.1", "sip:a@h.example"),
    ("sip:a@h.example;lr=1", "sip:a@h.example;lr=2"),       # in both: must match
    ("sip:a:pw@h.example", "sip:a@h.example"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_rfc_equivalent(a: str, b: str) -> None:
    assert Uri.parse(a) == Uri.parse(b)
    assert hash(Uri.parse(a)) == hash(Uri.parse(b))
    assert same_identity(a, b)
    assert {Uri.parse(a): 1}.get(Uri.parse(b)) == 1


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_rfc_not_equivalent(a: str, b: str) -> None:
    assert Uri.parse(a) != Uri.parse(b)
    assert not same_identity(a, b)


@pytest.mark.parametrize("text", [
    "alice@h.example", "sip:", "sip:a@", "sip:@h.example",
    "sip:a@h.example:\uff15\uff10\uff16\uff10",
    "sip:a@h.example:99999", "sip:a b@h.example", "sip:a@h.example:-1", "sip:a@[::1",
    "sip:a@bad_host", "sip:a%4@h.example", "sip:a@h.example:\u0661\u0662", "sip:a@999.1.1.1",
])
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidUri):
        Uri.parse(text)
    assert not same_identity(text, text)  # text that is no URI equals nothing


def test_canonical_spelling_and_aor() -> None:
    u = Uri.parse("SIP:%61lice@AtLanTa.CoM:5070;Transport=TCP;lr?Subject=Hi")
    assert str(u) == "sip:alice@atlanta.com:5070;transport=tcp;lr?subject=hi"
    assert str(u.aor) == "sip:alice@atlanta.com:5070"
    assert u.param("transport") == "tcp" and u.param("lr") == "" and u.param("x") is None
    assert u.text == "SIP:%61lice@AtLanTa.CoM:5070;Transport=TCP;lr?Subject=Hi"
    assert Uri.parse("sip:alice;day=tuesday@atlanta.com").user == "alice;day=tuesday"
    assert identity("sip:a@h.example") is identity("sip:a@h.example")


def test_glob() -> None:
    assert uri_glob_match("sip:mike@PRIMARY.example", "sip:*@primary.example")
    assert uri_glob_match("sip:%6Dike@primary.example;transport=tcp", "sip:m?ke@primary.example")
    assert not uri_glob_match("sip:mike@primary.example.evil", "sip:*@primary.example")
    assert not uri_glob_match("sips:mike@primary.example", "sip:*@primary.example")
    assert not uri_glob_match("sip:Mike@primary.example", "sip:m*@primary.example")  # userinfo
    assert uri_glob_match("sip:a@x.primary.example", "sip:*@*.primary.example")
    assert not uri_glob_match("not a uri", "sip:*@primary.example")


# ------------------------------------------------------------------ respellings (property)

@given(respelled())
def test_any_respelling_is_the_same_identity(pair: tuple[str, str]) -> None:
    canonical, spelling = pair
    assert identity(canonical) == identity(spelling)
    assert hash(identity(canonical)) == hash(identity(spelling))
    assert identity(spelling).aor == identity(canonical)


@given(st.text(max_size=60))
def test_parse_is_total(text: str) -> None:
    try:
        u = Uri.parse(text)
    except InvalidUri:
        return
    assert Uri.parse(str(u)) == u  # the canonical spelling parses to the same identity


def test_helpers_of_the_one_home() -> None:
    from mcacm_sip.sip.uri import (
        addr_spec,
        address_of_record,
        registrar_uri,
        try_identity,
        uri_host,
    )
    # a header value's URI (RFC 3261 20.10): parameters after an addr-spec are the header's
    assert addr_spec('"A" <sip:a@h.example;lr>;tag=1') == "sip:a@h.example;lr"
    assert addr_spec("sip:a@h.example;tag=1") == "sip:a@h.example"
    # 10.3 step 5: no parameters, headers or password; None for what is no SIP URI
    assert address_of_record("SIP:%61@H.example;transport=tcp?x=y") == identity("sip:a@h.example")
    assert str(address_of_record("sip:a:pw@h.example;ob")) == "sip:a@h.example"
    assert address_of_record("tel:+123") is None and address_of_record("nonsense") is None
    assert try_identity(None) is None and try_identity("sip:") is None
    # 10.2: the registrar's domain with the PSI's port and scheme (the ACMC dropped both)
    assert registrar_uri("sip:acms@127.0.0.1:5070") == "sip:127.0.0.1:5070"
    assert registrar_uri("<sips:acms@Primary.Example>") == "sips:primary.example"
    assert registrar_uri("sip:acms@[::1]:5070;transport=tcp") == "sip:[::1]:5070"
    # the host of anything, never raising (Warning and log lines)
    assert uri_host("<sip:alice@Host.example:5060;p>") == "host.example"
    assert uri_host("sip:a@[::1]:5060") == "::1"
    assert uri_host("sip:a@bad_host.example") == "bad_host.example"
