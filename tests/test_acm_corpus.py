"""The table-driven corpus of good and bad ACM documents, hostile input, and xmllint agreement."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from acm.make_corpus import CORPUS, rendered
from hypothesis import given, settings
from hypothesis import strategies as st
from tools import require_tool

from mcacm_sip.acm import codec, errors, model, xmlsafe
from mcacm_sip.acm.examples import example_documents, example_flows
from mcacm_sip.acm.xmlsafe import Limits

ROOT = Path(__file__).resolve().parent.parent
XSD = ROOT / "mcacm_sip" / "schemas" / "acm.xsd"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text())

pytestmark = pytest.mark.usefixtures("profile_c14n")  # over both canonicalisers


def test_corpus_files_match_their_generator() -> None:
    on_disk = {
        str(p.relative_to(CORPUS)): p.read_bytes()
        for p in CORPUS.rglob("*")
        if p.is_file()
    }
    assert on_disk == rendered(), "stale corpus: run python tests/acm/make_corpus.py"


def test_corpus_covers_every_flow_and_both_verdicts() -> None:
    bad = [k for k, v in EXPECTED.items() if v["verdict"] != "ok"]
    good = [k for k, v in EXPECTED.items() if v["verdict"] == "ok"]
    assert len(bad) > 50 and len(good) > 10
    for cls in model.FLOW_TYPES:
        assert any(k.startswith(f"bad/{cls.FLOW}.missing-") for k in bad), cls.FLOW


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_corpus_document_gets_its_verdict(rel: str) -> None:
    expected = EXPECTED[rel]
    data = (CORPUS / rel).read_bytes()
    if expected["verdict"] == "ok":
        flow = codec.decode(data)
        codec.decode(codec.encode(flow))  # what we accepted, we can send on (strict on send)
        if expected["same_as"]:
            assert flow == example_flows()[expected["same_as"]]
        return
    with pytest.raises(errors.AcmError) as info:
        codec.decode(data)
    error = info.value
    assert type(error).__name__ == expected["verdict"], error
    assert error.sip_status == expected["status"]
    if expected["path"] is not None:
        assert error.path is not None and error.path.startswith(expected["path"]), error.path
    assert error.warning_text and error.hint


# --------------------------------------------------------------------------- xmllint agreement


def _xmllint() -> str:
    return require_tool("xmllint")


def _xmllint_valid(path: Path) -> bool:
    run = subprocess.run(
        [_xmllint(), "--noout", "--nonet", "--schema", str(XSD), str(path)],
        capture_output=True, timeout=30, check=False,
    )
    return run.returncode == 0


@pytest.mark.parametrize("name", sorted(example_documents()))
def test_example_validates_with_xmllint(name: str) -> None:
    assert _xmllint_valid(ROOT / "examples" / "flows" / name)


@pytest.mark.parametrize(
    "rel", sorted(k for k, v in EXPECTED.items() if v["verdict"] == "ok" or v["xsd"])
)
def test_xmllint_agrees_where_the_xsd_decides(rel: str) -> None:
    assert _xmllint_valid(CORPUS / rel) == (EXPECTED[rel]["verdict"] == "ok")


# --------------------------------------------------------------------------- hostile, by outcome


def _notification(tid: str = "t1", ext: str = "") -> bytes:
    return (
        f'<pending-data-notification xmlns="{codec.ACM_NS}"><transaction-id>{tid}'
        f"</transaction-id><user><uri>sip:a@x.example</uri></user>{ext}"
        "</pending-data-notification>"
    ).encode()


def test_oversize_document_is_413_before_parsing() -> None:
    big = _notification(ext="<anyExt>" + "<x/>" * 80_000 + "</anyExt>")
    assert len(big) > 256 * 1024
    with pytest.raises(errors.DocumentTooLarge) as info:
        codec.decode(big)
    assert info.value.sip_status == 413


def test_fifty_megabyte_document_is_413() -> None:
    with pytest.raises(errors.DocumentTooLarge):
        codec.decode(b"<a>" + b" " * (50 * 1024 * 1024) + b"</a>")


def test_hundred_thousand_deep_document_is_rejected_as_too_deep() -> None:
    deep = b"<a>" * 100_000 + b"</a>" * 100_000
    with pytest.raises(errors.DocumentTooDeep) as info:
        codec.decode(deep, limits=Limits(max_bytes=1_000_000))
    assert info.value.sip_status == 400


@settings(max_examples=200, deadline=None)
@given(cap=st.integers(1, 40), depth=st.integers(1, 45), leaf=st.sampled_from(["<x/>", "t", ""]),
       siblings=st.lists(st.integers(0, 45), max_size=4), comment=st.booleans())
def test_depth_cap_is_exact_whatever_the_leaves(cap: int, depth: int, leaf: str,
                                                siblings: list[int], comment: bool) -> None:
    """Refused iff an element nests deeper than the cap, including documents with as few end
    tags as that depth allows (the deepest element empty, ``<x/>``, its ancestors' end tags
    the only ``</``), which the cheap count before the tree walk must not let through."""
    body = leaf
    for level in range(depth - (leaf == "<x/>"), 0, -1):
        # empty siblings at some levels: more "<" without more "</"
        extra = "<s/>" * siblings.count(level) + ("<!--</c>-->" if comment else "")
        body = f"<e{level}>{extra}{body}</e{level}>"
    root = xmlsafe.parse(body.encode())
    deepest = max(sum(1 for _ in el.iterancestors()) + 1 for el in root.iter())
    if deepest > cap:
        with pytest.raises(errors.DocumentTooDeep):
            xmlsafe.parse(body.encode(), Limits(max_depth=cap))
    else:
        assert xmlsafe.parse(body.encode(), Limits(max_depth=cap)) is not None


def test_limits_are_configurable() -> None:
    data = example_documents()["profile-update-request.xml"]
    with pytest.raises(errors.DocumentTooLarge):
        codec.decode(data, limits=Limits(max_bytes=len(data) - 1))
    with pytest.raises(errors.DocumentTooDeep) as info:
        codec.decode(data, limits=Limits(max_depth=3))
    assert info.value.path is not None and info.value.path.count("/") == 4
    codec.decode(data, limits=Limits(max_bytes=len(data), max_depth=16))


# --------------------------------------------------------------------------- content type, errors


@pytest.mark.parametrize("value", [
    "application/vnd.mcacm-sip.acm+xml",
    "Application/VND.mcacm-sip.ACM+xml; charset=UTF-8",
    'application/vnd.mcacm-sip.acm+xml;charset="utf-8";foo=bar',
])
def test_content_type_accepted(value: str) -> None:
    codec.check_content_type(value)
    codec.decode(_notification(), content_type=value)


@pytest.mark.parametrize("value", [
    "application/xml", "application/vnd.3gpp.mcptt-info+xml", "",
    "application/vnd.mcacm-sip.acm+xml; charset=ISO-8859-1",
])
def test_content_type_refused_with_415(value: str) -> None:
    with pytest.raises(errors.NotAcmDocument) as info:
        codec.decode(_notification(), content_type=value)
    assert info.value.sip_status == 415


_TYPES = st.sampled_from([codec.ACM_CONTENT_TYPE, codec.ACM_CONTENT_TYPE.upper(),
                          f" {codec.ACM_CONTENT_TYPE}", f"{codec.ACM_CONTENT_TYPE};x",
                          f"{codec.ACM_CONTENT_TYPE}; charset=latin1", "application/xml"])


@settings(max_examples=300, deadline=None)
@given(_TYPES | st.text(max_size=40), st.lists(_TYPES | st.text(max_size=12), max_size=3))
def test_the_content_type_shortcut_answers_as_the_rule(value: str, accepted: list[str]) -> None:
    """check_content_type's shortcut for the exact ACM type (round 7) gives the rule's answer."""
    def answer(check: Callable[[str, list[str]], None]) -> str | None:
        try:
            check(value, accepted)
        except errors.NotAcmDocument as exc:
            return exc.message
        return None
    assert answer(codec.check_content_type) == answer(codec._content_type_rule)


def test_warning_names_the_element_and_quotes_safely() -> None:
    data = (CORPUS / "bad" / "profile-update-request.missing-requester.mc-service-id.xml")
    with pytest.raises(errors.SchemaViolation) as info:
        codec.decode(data.read_bytes())
    header = errors.warning_value("acms.mcptt.partner.example", info.value.warning_text)
    assert header.startswith('399 acms.mcptt.partner.example "/profile-update-request/requester')
    assert "mc-service-id" in header
    assert errors.warning_value("h", errors.AcmError('say "hi" \\', path="/x").warning_text) == \
        '399 h "/x: say \\"hi\\" \\\\"'


def test_encode_refuses_its_own_invalid_output() -> None:
    flow = example_flows()["pending-data-notification"]
    object.__setattr__(flow, "transaction_id", "two words")  # bypasses the model: a bug
    with pytest.raises(errors.EncodeError) as info:
        codec.encode(flow)
    assert info.value.sip_status == 500
    assert info.value.path == "/pending-data-notification/transaction-id"


def test_encode_refuses_a_profile_that_is_not_a_user_profile() -> None:
    flow = example_flows()["profile-update-request"]
    object.__setattr__(flow, "profile", model.UserProfile("<mcptt-service-config/>"))
    with pytest.raises(errors.InvalidContent) as info:
        codec.encode(flow)
    assert info.value.ie == "profile"


def test_profile_from_xml_refuses_other_documents() -> None:
    with pytest.raises(errors.InvalidContent, match="not mcptt-user-profile"):
        codec.profile_from_xml(b'<mcptt-service-config xmlns="urn:3gpp:mcptt:user-profile:1.0"/>')
    with pytest.raises(errors.UnsafeDocument):
        codec.profile_from_xml('<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>')


def test_examples_equal_the_generator_output() -> None:
    for name, data in example_documents().items():
        assert (ROOT / "examples" / "flows" / name).read_bytes() == data, name
