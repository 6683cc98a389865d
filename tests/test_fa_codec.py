"""FA documents (TS 24.379 9A.3): round trips, the example corpus, xmllint, hostile bodies."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tools import require_tool

from mcacm_sip.acm import fa
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.fa import FaPresence, FaStatus, FunctionalAliasEntry, McpttInfo, SimpleFilter

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "mcacm_sip" / "schemas"
FLOWS = ROOT / "examples" / "flows"
FA = "sip:fa-duty-officer@mcx.partner-b.example"
USER = "sip:mcptt-id-b1042@mcx.partner-b.example"

SCHEMA_OF = {
    "fa-notify-per-fa.xml": "pidf.xsd",
    "fa-notify-per-user.xml": "pidf.xsd",
    "fa-publish-pidf.xml": "pidf.xsd",
    "fa-mcptt-info.xml": "mcpttinfo-fa.xsd",
    "fa-mcptt-info-determination.xml": "mcpttinfo-fa.xsd",
    "fa-simple-filter.xml": "simple-filter.xsd",
}

uris = st.from_regex(r"sip:[a-z][a-z0-9\-]{0,12}@[a-z]{1,8}\.example", fullmatch=True)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
entries = st.builds(
    FunctionalAliasEntry,
    functional_alias=st.none() | uris,
    user=st.none() | uris,
    status=st.none() | st.sampled_from(FaStatus),
    expires=st.none() | times,
    take_over=st.booleans(),
)


@given(
    uris, uris, st.lists(entries, max_size=5), st.none() | st.text("abcdef0123456789-", min_size=1)
)
def test_presence_round_trip(
    entity: str, tuple_id: str, es: list[FunctionalAliasEntry], pid: str | None
) -> None:
    doc = FaPresence(entity, tuple_id, tuple(es), pid)
    assert fa.decode_presence(fa.encode_presence(doc)) == doc


@given(
    st.none() | uris,
    st.none() | uris,
    st.none() | uris,
    st.none() | st.just(fa.REQUEST_TYPE_FA_STATUS),
)
def test_mcptt_info_round_trip(r: str | None, c: str | None, f: str | None, t: str | None) -> None:
    info = McpttInfo(r, c, f, t)
    assert fa.decode_mcptt_info(fa.encode_mcptt_info(info)) == info


@given(uris)
def test_filter_round_trip(target: str) -> None:
    flt = SimpleFilter(target)
    assert fa.decode_filter(fa.encode_filter(flt)) == flt


def test_shapes_follow_9a_3_1_2() -> None:
    per_fa = FaPresence.per_fa(FA, [FunctionalAliasEntry(user=USER)])
    assert (per_fa.entity, per_fa.tuple_id, per_fa.holders) == (FA, FA, (USER,))
    per_user = FaPresence.per_user(USER, [FunctionalAliasEntry(functional_alias=FA)])
    assert (per_user.entity, per_user.tuple_id) == (USER, USER)
    # pidf is the default namespace, the extension uses prefix mcpttPIFA10 (table 9A.3.1.2-2)
    text = fa.encode_presence(per_fa).decode()
    assert 'xmlns="urn:ietf:params:xml:ns:pidf"' in text and "<mcpttPIFA10:functionalAlias" in text


def test_holders_skip_entries_that_do_not_hold() -> None:
    doc = FaPresence.per_fa(
        FA,
        [
            FunctionalAliasEntry(user="sip:a@x.example", status=FaStatus.ACTIVATED),
            FunctionalAliasEntry(user="sip:b@x.example", status=FaStatus.DEACTIVATING),
            FunctionalAliasEntry(user="sip:c@x.example", status=FaStatus.TAKE_OVER_POSSIBLE),
            FunctionalAliasEntry(user="sip:d@x.example"),
        ],
    )
    assert doc.holders == ("sip:a@x.example", "sip:d@x.example")


# --------------------------------------------------------------------------- example corpus


@pytest.mark.parametrize("name", sorted(SCHEMA_OF))
def test_examples_decode(name: str) -> None:
    data = (FLOWS / name).read_bytes()
    decoded = {
        "pidf.xsd": fa.decode_presence,
        "mcpttinfo-fa.xsd": fa.decode_mcptt_info,
        "simple-filter.xsd": fa.decode_filter,
    }[SCHEMA_OF[name]](data)
    assert decoded is not None


def test_example_contents() -> None:
    notify = fa.decode_presence((FLOWS / "fa-notify-per-fa.xml").read_bytes())
    assert notify.holders == (USER, "sip:mcptt-id-b2210@mcx.partner-b.example")
    assert notify.entries[0].expires == datetime(2161, 3, 14, 9, 12, 55, tzinfo=UTC)
    publish = fa.decode_presence((FLOWS / "fa-publish-pidf.xml").read_bytes())
    assert publish.take_over and publish.p_id_fa == "5f0c1e52-7d0b-4f43-9c1e-2b7a54d9e6a1"
    info = fa.decode_mcptt_info((FLOWS / "fa-mcptt-info-determination.xml").read_bytes())
    assert (info.request_type, info.functional_alias) == (fa.REQUEST_TYPE_FA_STATUS, FA)
    assert fa.decode_filter((FLOWS / "fa-simple-filter.xml").read_bytes()).tuple_id == FA


def _xmllint(schema: str, doc: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("xmllint"), "--noout", "--nonet", "--schema", str(SCHEMAS / schema),
         str(doc)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("name", sorted(SCHEMA_OF))
def test_examples_valid_with_xmllint(name: str) -> None:
    result = _xmllint(SCHEMA_OF[name], FLOWS / name)
    assert result.returncode == 0, result.stderr


def test_encoded_bodies_valid_with_xmllint(tmp_path: Path) -> None:
    docs = {
        "pidf.xsd": fa.encode_presence(
            FaPresence.per_fa(FA, [FunctionalAliasEntry(user=USER, take_over=True)], "p-1")
        ),
        "mcpttinfo-fa.xsd": fa.encode_mcptt_info(
            McpttInfo(FA, USER, FA, fa.REQUEST_TYPE_FA_STATUS)
        ),
        "simple-filter.xsd": fa.encode_filter(SimpleFilter(FA)),
    }
    for schema, data in docs.items():
        path = tmp_path / (schema + ".xml")
        path.write_bytes(data)
        result = _xmllint(schema, path)
        assert result.returncode == 0, result.stderr


def test_bad_extension_value_fails_in_xmllint_too(tmp_path: Path) -> None:
    # the pidf wildcard is lax, but the bundled extension schema is known, so it is enforced
    bad = (FLOWS / "fa-notify-per-fa.xml").read_bytes().replace(b'"activated"', b'"busy"', 1)
    path = tmp_path / "bad.xml"
    path.write_bytes(bad)
    assert _xmllint("pidf.xsd", path).returncode != 0
    with pytest.raises(AcmError) as exc:
        fa.decode_presence(bad)
    assert exc.value.sip_status == 400


# --------------------------------------------------------------------------- lax on receive


def test_unknown_extensions_are_ignored() -> None:
    data = (
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:example:other"'
        b' xmlns:f="urn:3gpp:ns:mcpttPresInfoFA:1.0" entity="' + FA.encode() + b'">'
        b'<tuple id="t1"><status><basic>open</basic><x:mood>calm</x:mood>'
        b'<f:functionalAlias user="' + USER.encode() + b'" x:flag="1"><x:more/></f:functionalAlias>'
        b"</status><x:device/><note>hi</note></tuple><x:trailer/></presence>"
    )
    doc = fa.decode_presence(data)
    assert doc.holders == (USER,) and doc.tuple_id == "t1"
    info = (
        b'<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0" xmlns:x="urn:example:other">'
        b"<mcptt-Params><session-type>private</session-type>"
        b'<mcptt-request-uri type="Normal"><mcpttURI>'
        + FA.encode()
        + b"</mcpttURI></mcptt-request-uri>"
        b"<x:unknown/><anyExt><x:future>1</x:future></anyExt></mcptt-Params></mcpttinfo>"
    )
    assert fa.decode_mcptt_info(info) == McpttInfo(request_uri=FA)


def test_filter_with_other_prefix_binding_is_understood() -> None:
    data = (
        b'<filter-set xmlns="urn:ietf:params:xml:ns:simple-filter"><ns-bindings>'
        b'<ns-binding prefix="p" urn="urn:ietf:params:xml:ns:pidf"/></ns-bindings>'
        b'<filter id="f"><what><include>//p:presence/p:tuple[@id=\'' + USER.encode() + b"']"
        b"</include></what></filter></filter-set>"
    )
    assert fa.decode_filter(data).tuple_id == USER


# --------------------------------------------------------------------------- hostile bodies

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b.example">&lol2;</presence>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b.example"><note>&x;</note>
</presence>"""
DEEP = (
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b.example"><tuple id="t"><status>'
    + b"<x:a xmlns:x='urn:x'>" * 40
    + b"</x:a>" * 40
    + b"</status></tuple></presence>"
)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (BILLION_LAUGHS, 400),
        (XXE, 400),
        (DEEP, 400),
        (b"<presence" + b" " * 70_000 + b"/>", 413),
        (b"not xml", 415),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b.example">', 400),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>', 400),  # entity is required
        (b'<filter-set xmlns="urn:ietf:params:xml:ns:simple-filter"/>', 415),  # wrong root
    ],
)
def test_hostile_or_broken_pidf_is_refused(data: bytes, status: int) -> None:
    with pytest.raises(AcmError) as exc:
        fa.decode_presence(data)
    assert exc.value.sip_status == status


def test_encrypted_identity_is_refused_with_400() -> None:
    data = (
        b'<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0"><mcptt-Params>'
        b'<mcptt-request-uri type="Encrypted"><e:EncryptedData xmlns:e="http://www.w3.org/2001/04/xmlenc#"/>'
        b"</mcptt-request-uri></mcptt-Params></mcpttinfo>"
    )
    with pytest.raises(AcmError, match="encrypted") as exc:
        fa.decode_mcptt_info(data)
    assert exc.value.sip_status == 400


def test_filter_without_tuple_selection_is_refused() -> None:
    data = (
        b'<filter-set xmlns="urn:ietf:params:xml:ns:simple-filter"><filter id="f"><what>'
        b"<include>//pidf:presence</include></what></filter></filter-set>"
    )
    with pytest.raises(AcmError, match=r"9A\.3\.2\.2"):
        fa.decode_filter(data)


# --------------------------------------------------------------------------- bodies and helpers


def test_publish_body_has_both_parts() -> None:
    ctype, body = fa.publish_body(FA, USER, take_over=True, p_id_fa="p-7")
    parts = fa.decode_bodies(ctype, body)
    assert parts.info == McpttInfo(request_uri=FA, calling_user_id=USER)
    assert parts.presence is not None and parts.presence.take_over
    assert parts.presence.entries[0].expires is None  # 9A.2.2.2.6: no expires in PUBLISH
    assert parts.presence.p_id_fa == "p-7"


def test_resolution_body_and_notify_parsing() -> None:
    parts = fa.decode_bodies(*fa.resolution_subscribe_body(FA))
    assert parts.info == McpttInfo(request_uri=FA) and parts.filter == SimpleFilter(FA)
    notify = (FLOWS / "fa-notify-per-fa.xml").read_bytes()
    got = fa.resolution_from_notify(FA, fa.CT_PIDF, notify)
    assert got == fa.FaHolders(FA, (USER, "sip:mcptt-id-b2210@mcx.partner-b.example"))
    with pytest.raises(AcmError, match="not the subscribed FA"):
        fa.resolution_from_notify("sip:other@x.example", fa.CT_PIDF, notify)


def test_decode_bodies_ignores_foreign_parts_and_refuses_none() -> None:
    from mcacm_sip.acm import multipart

    ctype, body = multipart.encode(
        [
            multipart.Part("application/sdp", b"v=0"),
            multipart.Part(fa.CT_SIMPLE_FILTER, fa.encode_filter(SimpleFilter(FA))),
        ]
    )
    assert fa.decode_bodies(ctype, body).filter == SimpleFilter(FA)
    with pytest.raises(AcmError) as exc:
        fa.decode_bodies("application/sdp", b"v=0")
    assert exc.value.sip_status == 415
    with pytest.raises(AcmError) as exc:
        fa.decode_bodies("multipart/mixed;boundary=q", b"--q\r\n")
    assert exc.value.sip_status == 400


def test_values_refuse_non_uris() -> None:
    with pytest.raises(ValueError, match="not a URI"):
        FunctionalAliasEntry(user="alice")
    with pytest.raises(ValueError, match="timezone-aware"):
        FunctionalAliasEntry(user=USER, expires=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="NCName"):
        SimpleFilter(FA, filter_id="1bad")
