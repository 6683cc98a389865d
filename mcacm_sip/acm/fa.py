"""Functional alias documents of TS 24.379 clause 9A, as typed frozen values with encode/decode.

Documents (namespaces and media types are the real ones):

- ``application/pidf+xml`` (RFC 3863) with the ``urn:3gpp:ns:mcpttPresInfoFA:1.0`` extension
  (table 9A.3.1.2-1): :class:`FaPresence`, in the per-FA shape (entity = tuple id = FA, one
  ``functionalAlias`` per user) or the per-user shape (entity = user, one per FA), 9A.3.1.2;
- ``application/vnd.3gpp.mcptt-info+xml`` (Annex F.1), the subset clause 9A uses:
  :class:`McpttInfo`;
- ``application/simple-filter+xml`` (RFC 4661, 9A.3.2.2): :class:`SimpleFilter`;
- the multipart/mixed bodies of the FA PUBLISH and SUBSCRIBE (9A.2.2.2.6-8): ``*_body`` helpers.

Strict on send: every document encoded here is validated against the bundled XSDs before it is
returned (a failure is a bug and raises ``AssertionError``).  Lax on receive: documents are
parsed by the shared hardened parser, validated (the XSD wildcards skip unknown extensions), and
only the elements clause 9A uses are read.  Every receive failure is an
:class:`~mcacm_sip.acm.errors.AcmError` carrying the SIP status it maps to (400 with a Warning
text, 413, 415), the same errors the ACM message layer raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from importlib.resources import as_file, files
from typing import Any

from lxml import etree

from mcacm_sip.acm import multipart, xmlsafe
from mcacm_sip.acm.errors import (
    AcmError,
    DocumentTooLarge,
    InvalidContent,
    MalformedDocument,
    NotAcmDocument,
    SchemaViolation,
)
from mcacm_sip.acm.multipart import MultipartError, Part
from mcacm_sip.sip.uri import Uri, same_identity, try_identity

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
FA_NS = "urn:3gpp:ns:mcpttPresInfoFA:1.0"
MCPTT_INFO_NS = "urn:3gpp:ns:mcpttInfo:1.0"
FILTER_NS = "urn:ietf:params:xml:ns:simple-filter"
FA_PREFIX = "mcpttPIFA10"  # table 9A.3.1.2-2

CT_PIDF = "application/pidf+xml"
CT_MCPTT_INFO = "application/vnd.3gpp.mcptt-info+xml"
CT_SIMPLE_FILTER = "application/simple-filter+xml"

EVENT_PRESENCE = "presence"
EXPIRES_UNTIL_WITHDRAWN = 4294967295
"""2^32-1: activate / subscribe continuously (9A.2.1.2 NOTE 2); 0 deactivates / fetches once."""
REQUEST_TYPE_FA_STATUS = "functional-alias-status-determination"  # F.1.3 19 c vi

LIMITS = xmlsafe.Limits(max_bytes=64 * 1024, max_depth=32)
"""Caps for one received FA document (docs/decisions.md, "Functional alias")."""

_P = f"{{{PIDF_NS}}}"
_F = f"{{{FA_NS}}}"
_I = f"{{{MCPTT_INFO_NS}}}"
_S = f"{{{FILTER_NS}}}"


class FaStatus(StrEnum):
    """``statusType`` of table 9A.3.1.2-1."""

    ACTIVATING = "activating"
    ACTIVATED = "activated"
    DEACTIVATING = "deactivating"
    TAKE_OVER_POSSIBLE = "take-over-possible"


# --------------------------------------------------------------------------- values


def _check_uri(name: str, value: str | None) -> None:
    if value is not None and not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s\"<>]+$", value):
        raise ValueError(f"{name}: {value!r} is not a URI")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("expires must be timezone-aware")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class FunctionalAliasEntry:
    """One ``<mcpttPIFA10:functionalAlias>`` element (table 9A.3.1.2-1)."""

    functional_alias: str | None = None
    """``functionalAliasID``: the FA, in the per-user shape (9A.3.1.2 per-user item 8)."""
    user: str | None = None
    """``user``: the MCPTT ID holding the FA, in the per-FA shape (9A.3.1.2 per-FA item 8)."""
    status: FaStatus | None = None
    """``status`` (9A.3.1.2 per-user item 9); absent in requests (9A.2.1.2 6c)."""
    expires: datetime | None = None
    """``expires`` (timezone-aware): end of the activation (9A.2.2.3.5 3a); absent in PUBLISH."""
    take_over: bool = False
    """A ``<take-over>true</take-over>`` child: the publisher takes the FA over (9A.2.1.2 6d)."""

    def __post_init__(self) -> None:
        _check_uri("functionalAliasID", self.functional_alias)
        _check_uri("user", self.user)
        object.__setattr__(self, "expires", _utc(self.expires))
        if self.status is not None:
            object.__setattr__(self, "status", FaStatus(self.status))


@dataclass(frozen=True, slots=True)
class FaPresence:
    """An ``application/pidf+xml`` body with FA information (9A.3.1.2), one ``<tuple>``."""

    entity: str
    """``presence/@entity``: the FA (per-FA shape) or the MCPTT ID (per-user shape)."""
    tuple_id: str
    """``tuple/@id``: the FA (per-FA shape) or the MCPTT client ID (per-user shape)."""
    entries: tuple[FunctionalAliasEntry, ...] = ()
    p_id_fa: str | None = None
    """``<p-id-fa>``: the PUBLISH identifier, echoed in the NOTIFY it triggered."""

    def __post_init__(self) -> None:
        _check_uri("entity", self.entity)
        if not self.tuple_id or any(c in self.tuple_id for c in "\"'<>&\r\n\t"):
            raise ValueError(f"tuple id {self.tuple_id!r} unusable")
        object.__setattr__(self, "entries", tuple(self.entries))

    @classmethod
    def per_fa(
        cls, fa: str, entries: Iterable[FunctionalAliasEntry] = (), p_id_fa: str | None = None
    ) -> FaPresence:
        """Per-functional alias status information: entity = tuple id = FA (9A.3.1.2)."""
        return cls(fa, fa, tuple(entries), p_id_fa)

    @classmethod
    def per_user(
        cls,
        user: str,
        entries: Iterable[FunctionalAliasEntry] = (),
        *,
        client_id: str | None = None,
        p_id_fa: str | None = None,
    ) -> FaPresence:
        """Per-user FA information: entity = MCPTT ID, tuple id = MCPTT client ID (9A.3.1.2);
        without a client ID the MCPTT ID stands in (docs/decisions.md)."""
        return cls(user, client_id or user, tuple(entries), p_id_fa)

    @property
    def holders(self) -> tuple[str, ...]:
        """Users listed as holding the FA, in document order (per-FA shape).

        An entry counts unless its status says otherwise (``deactivating``,
        ``take-over-possible``): the resolution NOTIFY lists holders (9A.2.2.3.8).
        """
        active = (None, FaStatus.ACTIVATED, FaStatus.ACTIVATING)
        # one holder per user however often, in whatever RFC 3261 19.1.4 spelling, listed
        seen: dict[Uri | str, str] = {}
        for e in self.entries:
            if e.user is not None and e.status in active:
                seen.setdefault(try_identity(e.user) or e.user, e.user)
        return tuple(seen.values())

    @property
    def take_over(self) -> bool:
        return any(e.take_over for e in self.entries)


@dataclass(frozen=True, slots=True)
class McpttInfo:
    """The ``<mcpttinfo>`` elements clause 9A uses (Annex F.1), identities as ``Normal`` URIs."""

    request_uri: str | None = None
    """``<mcptt-request-uri>``: the FA (9A.2.2.2.6-8) or the targeted MCPTT ID (9A.2.1.3)."""
    calling_user_id: str | None = None
    """``<mcptt-calling-user-id>``: the MCPTT ID on whose behalf (9A.2.2.2.6 2b)."""
    functional_alias: str | None = None
    """``<anyExt><functional-alias-URI>``: FA used with the calling user id (F.1.3 19 k)."""
    request_type: str | None = None
    """``<anyExt><request-type>`` (F.1.3 19 c), e.g. ``functional-alias-status-determination``."""

    def __post_init__(self) -> None:
        _check_uri("mcptt-request-uri", self.request_uri)
        _check_uri("mcptt-calling-user-id", self.calling_user_id)
        _check_uri("functional-alias-URI", self.functional_alias)


_INCLUDE = re.compile(
    r"""^\s*//(?P<p1>[A-Za-z_][\w.\-]*):presence/(?P<p2>[A-Za-z_][\w.\-]*):tuple"""
    r"""\[@id=(?P<q>["'])(?P<id>[^"']+)(?P=q)\]\s*$"""
)


@dataclass(frozen=True, slots=True)
class SimpleFilter:
    """An ``application/simple-filter+xml`` body restricting notifications to one tuple
    (9A.3.2.2): include = ``//pidf:presence/pidf:tuple[@id="<id>"]``."""

    tuple_id: str
    """The MCPTT ID (per-user restriction) or the FA ID (per-FA restriction)."""
    filter_id: str = "fa1"
    """``filter/@id`` (xs:ID, so an NCName)."""

    def __post_init__(self) -> None:
        if not self.tuple_id or any(c in self.tuple_id for c in "\"'<>&\r\n\t"):
            raise ValueError(f"filter tuple id {self.tuple_id!r} unusable")
        if not re.match(r"^[A-Za-z_][\w.\-]*$", self.filter_id):
            raise ValueError(f"filter id {self.filter_id!r} is not an NCName")

    @property
    def include(self) -> str:
        return f'//pidf:presence/pidf:tuple[@id="{self.tuple_id}"]'


@dataclass(frozen=True, slots=True)
class FaHolders:
    """What an FA resolution yields (23.280 10.13.2.13): the FA and the MC service IDs that have
    it active, in activation order (empty: nobody)."""

    fa: str
    holders: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- schemas, parsing


@cache
def _schema(name: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    with as_file(files("mcacm_sip") / "schemas" / name) as path:
        return etree.XMLSchema(etree.parse(str(path), parser))


_SCHEMA_FOR = {
    PIDF_NS: "pidf.xsd",
    MCPTT_INFO_NS: "mcpttinfo-fa.xsd",
    FILTER_NS: "simple-filter.xsd",
}


def _last_error(schema: etree.XMLSchema) -> Any:
    log: Any = schema.error_log  # lxml-stubs lacks the sequence protocol of _ListErrorLog
    return log[-1]


def _parse(data: bytes, root_tag: str, what: str) -> etree._Element:
    """Hardened parse + schema validation of a received body (lax on receive)."""
    root = xmlsafe.parse(data, LIMITS)  # the shared hardened parser: no DTD, caps, typed errors
    if root.tag != root_tag:
        raise NotAcmDocument(f"{what}: root element {root.tag} is not {root_tag}", path="/")
    schema = _schema(_SCHEMA_FOR[etree.QName(root_tag).namespace])
    if not schema.validate(root):
        err = _last_error(schema)
        raise SchemaViolation(f"{what}: {err.message}", path=err.path)
    return root


def _emit(root: etree._Element) -> bytes:
    schema = _schema(_SCHEMA_FOR[etree.QName(root).namespace])
    # strict on send: a document we produce that fails its schema is a bug
    assert schema.validate(root), _last_error(schema).message
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def _fmt_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str, el: etree._Element) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        where = xmlsafe.element_path(el)
        raise InvalidContent(f"expires {text!r} is out of range", path=where) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_true(el: etree._Element) -> bool:
    return (el.text or "").strip() in ("true", "1")


# --------------------------------------------------------------------------- pidf


def encode_presence(doc: FaPresence) -> bytes:
    """``application/pidf+xml`` for ``doc`` (9A.3.1.2); pidf is the default namespace."""
    root = etree.Element(_P + "presence", nsmap={None: PIDF_NS, FA_PREFIX: FA_NS})  # type: ignore[dict-item]
    root.set("entity", doc.entity)
    tup = etree.SubElement(root, _P + "tuple", id=doc.tuple_id)
    status = etree.SubElement(tup, _P + "status")
    for e in doc.entries:
        fa = etree.SubElement(status, _F + "functionalAlias")
        for attr, value in (("functionalAliasID", e.functional_alias), ("user", e.user)):
            if value is not None:
                fa.set(attr, value)
        if e.status is not None:
            fa.set("status", e.status.value)
        if e.expires is not None:
            fa.set("expires", _fmt_time(e.expires))
        if e.take_over:
            etree.SubElement(fa, _F + "take-over").text = "true"
    if doc.p_id_fa is not None:
        # after the tuples: pidf puts extensions in the trailing ##other wildcard (RFC 3863 4.4)
        etree.SubElement(root, _F + "p-id-fa").text = doc.p_id_fa
    return _emit(root)


def decode_presence(data: bytes) -> FaPresence:
    """Decode a received pidf body; FA entries of every tuple are read, in document order."""
    root = _parse(data, _P + "presence", "pidf")
    tuples = root.findall(_P + "tuple")
    entries: list[FunctionalAliasEntry] = []
    presence_take_over = any(_is_true(t) for t in root.findall(_F + "take-over"))
    try:
        for tup in tuples:
            for fa in tup.iterfind(f"{_P}status/{_F}functionalAlias"):
                expires = fa.get("expires")
                status = fa.get("status")
                entries.append(
                    FunctionalAliasEntry(
                        functional_alias=fa.get("functionalAliasID"),
                        user=fa.get("user"),
                        status=FaStatus(status) if status else None,
                        expires=_parse_time(expires, fa) if expires else None,
                        take_over=presence_take_over
                        or any(_is_true(t) for t in fa.iterfind(_F + "take-over")),
                    )
                )
        p_id = root.find(_F + "p-id-fa")
        entity = root.get("entity", "")
        return FaPresence(
            entity=entity,
            tuple_id=tuples[0].get("id", "") if tuples else entity,
            entries=tuple(entries),
            p_id_fa=p_id.text if p_id is not None and p_id.text else None,
        )
    except AcmError:
        raise
    except ValueError as exc:
        raise InvalidContent(f"pidf: {exc}") from None


# --------------------------------------------------------------------------- mcptt-info


def _content(parent: etree._Element, tag: str, uri: str) -> None:
    el = etree.SubElement(parent, _I + tag, type="Normal")  # F.1.3 2a: cleartext is "Normal"
    etree.SubElement(el, _I + "mcpttURI").text = uri


def encode_mcptt_info(info: McpttInfo) -> bytes:
    root = etree.Element(_I + "mcpttinfo", nsmap={None: MCPTT_INFO_NS})  # type: ignore[dict-item]
    params = etree.SubElement(root, _I + "mcptt-Params")
    if info.request_uri is not None:
        _content(params, "mcptt-request-uri", info.request_uri)
    if info.calling_user_id is not None:
        _content(params, "mcptt-calling-user-id", info.calling_user_id)
    if info.functional_alias is not None or info.request_type is not None:
        ext = etree.SubElement(params, _I + "anyExt")
        if info.request_type is not None:
            etree.SubElement(ext, _I + "request-type").text = info.request_type
        if info.functional_alias is not None:
            _content(ext, "functional-alias-URI", info.functional_alias)
    return _emit(root)


def _uri_of(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    if el.get("type") == "Encrypted":
        # 24.379 6.6: decryption needs the XPK; identities must travel in clear here
        raise InvalidContent(
            f"encrypted {etree.QName(el).localname} not supported", path=xmlsafe.element_path(el)
        )
    uri = el.find(_I + "mcpttURI")
    return uri.text.strip() if uri is not None and uri.text else None


def decode_mcptt_info(data: bytes) -> McpttInfo:
    root = _parse(data, _I + "mcpttinfo", "mcptt-info")
    params = root.find(_I + "mcptt-Params")
    if params is None:
        return McpttInfo()
    ext = params.find(_I + "anyExt")
    rtype = ext.find(_I + "request-type") if ext is not None else None
    try:
        return McpttInfo(
            request_uri=_uri_of(params.find(_I + "mcptt-request-uri")),
            calling_user_id=_uri_of(params.find(_I + "mcptt-calling-user-id")),
            functional_alias=_uri_of(ext.find(_I + "functional-alias-URI"))
            if ext is not None
            else None,
            request_type=rtype.text.strip() if rtype is not None and rtype.text else None,
        )
    except AcmError:
        raise
    except ValueError as exc:
        raise InvalidContent(f"mcptt-info: {exc}") from None


# --------------------------------------------------------------------------- simple-filter


def encode_filter(flt: SimpleFilter) -> bytes:
    root = etree.Element(_S + "filter-set", nsmap={None: FILTER_NS})  # type: ignore[dict-item]
    bindings = etree.SubElement(root, _S + "ns-bindings")
    # 9A.3.2.2 items 3-4: prefixes pidf and mcpttPIFA10
    etree.SubElement(bindings, _S + "ns-binding", prefix="pidf", urn=PIDF_NS)
    etree.SubElement(bindings, _S + "ns-binding", prefix=FA_PREFIX, urn=FA_NS)
    # 9A.3.2.2 item 5: an id, no uri, no domain; item 7: include without type
    flt_el = etree.SubElement(root, _S + "filter", id=flt.filter_id)
    what = etree.SubElement(flt_el, _S + "what")
    etree.SubElement(what, _S + "include").text = flt.include
    return _emit(root)


def decode_filter(data: bytes) -> SimpleFilter:
    """Decode a received filter; it must restrict to one pidf tuple by id (9A.3.2.2 item 7)."""
    root = _parse(data, _S + "filter-set", "simple-filter")
    bound = {
        b.get("prefix"): b.get("urn") for b in root.iterfind(f"{_S}ns-bindings/{_S}ns-binding")
    }
    for flt in root.iterfind(_S + "filter"):
        if flt.get("remove") in ("true", "1") or flt.get("enabled") in ("false", "0"):
            continue
        for inc in flt.iterfind(f"{_S}what/{_S}include"):
            m = _INCLUDE.match(inc.text or "")
            if m is None or inc.get("type", "xpath") != "xpath":
                continue
            if all(
                bound.get(m[p], PIDF_NS if m[p] == "pidf" else None) == PIDF_NS
                for p in ("p1", "p2")
            ):
                try:
                    return SimpleFilter(tuple_id=m["id"], filter_id=flt.get("id", "fa1"))
                except ValueError as exc:
                    raise InvalidContent(f"simple-filter: {exc}") from None
    raise InvalidContent("simple-filter: no include selecting a pidf tuple by id (24.379 9A.3.2.2)")


# --------------------------------------------------------------------------- bodies


@dataclass(frozen=True, slots=True)
class FaBodies:
    """The FA-relevant parts of a received (possibly multipart) body, each decoded or None."""

    info: McpttInfo | None = None
    presence: FaPresence | None = None
    filter: SimpleFilter | None = None


_DECODERS = {CT_MCPTT_INFO: "info", CT_PIDF: "presence", CT_SIMPLE_FILTER: "filter"}


def decode_bodies(content_type: str | None, body: bytes) -> FaBodies:
    """Split a SIP body into its FA parts (24.379 9A: PUBLISH and SUBSCRIBE carry two).

    A single-part body of one of the three types, or ``multipart/mixed`` holding them; parts of
    other types are ignored (lax on receive).  No usable part at all: 415.
    """
    if not body:
        return FaBodies()
    if content_type is None:
        raise MalformedDocument("body without Content-Type")
    if len(body) > 4 * LIMITS.max_bytes:
        raise DocumentTooLarge(f"body larger than {4 * LIMITS.max_bytes} bytes")
    try:
        media = multipart.parse_content_type(content_type)[0]
        parts = (
            multipart.decode(content_type, body)
            if media.startswith("multipart/")
            else (Part(content_type, body),)
        )
    except MultipartError as exc:
        raise MalformedDocument(exc.reason) from None
    found: dict[str, object] = {}
    for part in parts:
        slot = _DECODERS.get(part.media_type)
        if slot is None or slot in found:
            continue
        if slot == "info":
            found[slot] = decode_mcptt_info(part.body)
        elif slot == "presence":
            found[slot] = decode_presence(part.body)
        else:
            found[slot] = decode_filter(part.body)
    if not found:
        raise NotAcmDocument(f"no {CT_MCPTT_INFO}, {CT_PIDF} or {CT_SIMPLE_FILTER} part")
    return FaBodies(**found)  # type: ignore[arg-type]


def _two_parts(first: tuple[str, bytes], second: tuple[str, bytes]) -> tuple[str, bytes]:
    return multipart.encode([Part(first[0], first[1]), Part(second[0], second[1])])


def publish_body(
    fa: str, user: str, *, take_over: bool = False, p_id_fa: str | None = None
) -> tuple[str, bytes]:
    """``(Content-Type, body)`` of an FA status change PUBLISH towards the server owning the FA
    (9A.2.2.2.6): mcptt-info (request-uri = FA, calling-user-id = user) + per-FA pidf naming
    the user, without ``expires`` (step 10).  The Expires header decides activation
    (:data:`EXPIRES_UNTIL_WITHDRAWN`) or deactivation (0)."""
    info = encode_mcptt_info(McpttInfo(request_uri=fa, calling_user_id=user))
    pidf = encode_presence(
        FaPresence.per_fa(fa, [FunctionalAliasEntry(user=user, take_over=take_over)], p_id_fa)
    )
    return _two_parts((CT_MCPTT_INFO, info), (CT_PIDF, pidf))


def status_subscribe_body(fa: str, user: str) -> tuple[str, bytes]:
    """SUBSCRIBE body of the FA status determination (9A.2.2.2.7): did ``user`` activate ``fa``?
    mcptt-info (request-uri = FA, calling-user-id = user) + per-user filter (step 8)."""
    info = encode_mcptt_info(McpttInfo(request_uri=fa, calling_user_id=user))
    return _two_parts((CT_MCPTT_INFO, info), (CT_SIMPLE_FILTER, encode_filter(SimpleFilter(user))))


def resolution_subscribe_body(fa: str) -> tuple[str, bytes]:
    """SUBSCRIBE body of the FA resolution (9A.2.2.2.8): who holds ``fa``?  mcptt-info
    (request-uri = FA) + per-FA filter (step 7).  This is what an ACMS sends."""
    info = encode_mcptt_info(McpttInfo(request_uri=fa))
    return _two_parts((CT_MCPTT_INFO, info), (CT_SIMPLE_FILTER, encode_filter(SimpleFilter(fa))))


def user_status_subscribe_body(user: str, requester: str | None = None) -> tuple[str, bytes]:
    """SUBSCRIBE body of the per-user determination (9A.2.1.3): which FAs does ``user`` hold?
    A single mcptt-info part with request-type ``functional-alias-status-determination``."""
    info = McpttInfo(
        request_uri=user, calling_user_id=requester, request_type=REQUEST_TYPE_FA_STATUS
    )
    return CT_MCPTT_INFO, encode_mcptt_info(info)


def resolution_from_notify(fa: str, content_type: str | None, body: bytes) -> FaHolders:
    """Parse a resolution NOTIFY body (9A.2.2.3.8) into what the ACMS consumes.

    The body must be a per-FA pidf for ``fa`` (entity = FA, 9A.3.1.2); anything else is a
    :class:`AcmError`.  An empty body (RFC 6665 allows one, e.g. a terminating NOTIFY) means
    no information, also an error: the caller keeps its previous view.
    """
    doc = decode_bodies(content_type, body).presence
    if doc is None:
        raise InvalidContent("NOTIFY without an application/pidf+xml body")
    if not same_identity(doc.entity, fa):  # by RFC 3261 19.1.4: the server may respell it
        raise InvalidContent(f"pidf entity {doc.entity} is not the subscribed FA {fa}")
    return FaHolders(fa, doc.holders)
