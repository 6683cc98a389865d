"""XML encoding and decoding of every ACM flow (TS 23.280 10.17.2) against ``schemas/acm.xsd``.

- :func:`encode` is strict on send: the writer proves the document valid as it writes it
  (each value within its schema type, :func:`_template`), and what it cannot prove (a flow
  that bypassed the model) is validated against the schema, raising
  :class:`~mcacm_sip.acm.errors.EncodeError` if our own output is invalid (a bug).
- :func:`decode` is lax on receive: after the hardened parse (:mod:`.xmlsafe`) and schema
  validation with lxml, unknown elements in ``anyExt`` and ``##other`` extension points and
  attributes of other namespaces (``xml:lang``, a vendor's) are ignored; anything else wrong
  (an undeclared attribute of no namespace or of ours, too) raises a typed
  :class:`~mcacm_sip.acm.errors.AcmError` carrying the element path and the SIP answer.

The mapping between model fields and XML elements is one table (``_SPECS``) read by both
directions; each row names the element and how its value travels.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import operator
import os
import re
from collections.abc import Callable, Collection, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar, cast, get_args

from lxml import etree

from mcacm_sip.acm import model, xmlsafe
from mcacm_sip.acm.errors import (
    AcmError,
    EncodeError,
    InvalidContent,
    NotAcmDocument,
    SchemaViolation,
)
from mcacm_sip.acm.xmlsafe import DEFAULT_LIMITS, Limits, element_path, parse
from mcacm_sip.frozen import builder

__all__ = [
    "ACM_CONTENT_TYPE",
    "ACM_NS",
    "USER_PROFILE_NS",
    "USER_PROFILE_ROOT",
    "check_content_type",
    "decode",
    "document",
    "document_text",
    "encode",
    "encode_all",
    "from_element",
    "profile_element",
    "profile_from_xml",
    "schema",
    "schema_source",
    "to_element",
]

ACM_NS = "urn:mcacm-sip:ns:acm:1.0"
"""Project-owned XML namespace of every ACM document (not a 3GPP value; docs/decisions.md)."""
ACM_CONTENT_TYPE = "application/vnd.mcacm-sip.acm+xml"
"""Project-owned, unregistered media type of an ACM SIP MESSAGE body (overridable per peer)."""
USER_PROFILE_NS = "urn:3gpp:mcptt:user-profile:1.0"
"""Namespace of the embedded MCPTT user profile document (TS 24.484 8.3.2)."""
USER_PROFILE_ROOT = "mcptt-user-profile"
"""Root element of the embedded MCPTT user profile document (TS 24.484 8.3.2)."""

SCHEMA_FILE = "acm.xsd"
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_XML_DECLARATION_TEXT = _XML_DECLARATION.decode("ascii")
_PROFILE_ROOT_TAG = f"{{{USER_PROFILE_NS}}}{USER_PROFILE_ROOT}"


def _tag(local: str) -> str:
    return f"{{{ACM_NS}}}{local}"


_URI = _tag("uri")


# --------------------------------------------------------------------------- schema


def schema_source() -> bytes:
    """The bundled XSD, read through importlib.resources (works from an installed wheel)."""
    return (resources.files("mcacm_sip") / "schemas" / SCHEMA_FILE).read_bytes()


@lru_cache(maxsize=1)
def schema() -> etree.XMLSchema:
    """The compiled schema (built once; lxml validation releases the GIL and is re-entrant)."""
    return etree.XMLSchema(etree.fromstring(schema_source()))


# --------------------------------------------------------------------------- value kinds
# A kind knows how one model value travels as one element: put() appends it under a parent,
# get() reads it back from an element the schema has already validated.


class _Kind:
    def put(self, parent: etree._Element, tag: str, value: Any) -> None:
        raise NotImplementedError

    def write(self, out: list[str], name: str, value: Any) -> None:
        """Append the element ``name`` (a local name in the ACM namespace) as XML text."""
        raise NotImplementedError

    def get(self, el: etree._Element) -> Any:
        raise NotImplementedError


class _FreeText(_Kind):
    """xs:string: white space is content."""

    def put(self, parent: etree._Element, tag: str, value: Any) -> None:
        etree.SubElement(parent, tag).text = value

    def write(self, out: list[str], name: str, value: Any) -> None:
        out.append(f"<{name}>{_escape(value)}</{name}>")

    def get(self, el: etree._Element) -> Any:
        return el.text or ""


class _Token(_Kind):
    """xs:token without inner white space (ids, codes, names): surrounding space dropped.
    ``proof`` holds a value to the lexical space of the row's schema type (:func:`_template`);
    ``types`` are the classes such a value may have (a StrEnum writes as its value)."""

    def __init__(self, proof: Callable[[str], object], types: tuple[type, ...] = (str,),
                 *, ascii_max: int = 0, memo: bool = False) -> None:
        self.proof = proof
        self.types = types
        self.ascii_max = ascii_max
        """> 0: the proof takes any printable ASCII without a space of 1 to this many
        characters (the writer checks that first, without the pattern)"""
        self.memo = memo
        """the writer remembers the values the proof took (a small set: codes, names)"""

    def put(self, parent: etree._Element, tag: str, value: Any) -> None:
        etree.SubElement(parent, tag).text = value

    def write(self, out: list[str], name: str, value: Any) -> None:
        out.append(f"<{name}>{_escape(value)}</{name}>")

    def get(self, el: etree._Element) -> Any:
        return (el.text or "").strip()


class _Flag(_Kind):
    """xs:boolean that is written only when true (absent means false), so a document without
    the flag is the same as before the flag existed."""

    def put(self, parent: etree._Element, tag: str, value: Any) -> None:
        if value:
            etree.SubElement(parent, tag).text = "true"

    def write(self, out: list[str], name: str, value: Any) -> None:
        if value:
            out.append(f"<{name}>true</{name}>")

    def get(self, el: etree._Element) -> Any:
        return (el.text or "").strip() in ("true", "1")


class _DateTime(_Kind):
    """xs:dateTime with a mandatory time zone (datetime.isoformat keeps the offset)."""

    def put(self, parent: etree._Element, tag: str, value: Any) -> None:
        etree.SubElement(parent, tag).text = value.isoformat()

    def write(self, out: list[str], name: str, value: Any) -> None:
        out.append(f"<{name}>{value.isoformat()}</{name}>")

    def get(self, el: etree._Element) -> Any:
        text = (el.text or "").strip()
        try:
            return datetime.fromisoformat(text)
        except ValueError:  # e.g. year 10000 or 24:00:00, valid xs:dateTime but not here
            raise InvalidContent(
                f"{text!r} is outside the date-times this implementation handles",
                path=element_path(el),
                hint="use a time within years 0001-9999, e.g. 2030-01-31T12:00:00Z",
            ) from None


class _Identity(_Kind):
    """An identity wrapped like 24.379 contentType: ``<x type="Normal"><uri>..</uri></x>``."""

    def put(self, parent: etree._Element, tag: str, value: Any) -> None:
        wrapper = etree.SubElement(parent, tag, type="Normal")
        etree.SubElement(wrapper, _URI).text = value

    def write(self, out: list[str], name: str, value: Any) -> None:
        out.append(f'<{name} type="Normal"><uri>{_escape(value)}</uri></{name}>')

    def get(self, el: etree._Element) -> Any:
        if el.get("type") == "Encrypted":  # 24.379 6.6 form; no key management here yet
            raise InvalidContent(
                "encrypted identities are not supported",
                path=element_path(el),
                hint='send the identity in clear: type="Normal" with a <uri> child',
            )
        child = el[0]  # the schema allows exactly one: uri, ##other or anyExt
        if child.tag != _URI:
            raise InvalidContent(
                "identity carries no <uri>",
                path=element_path(el),
                hint="put the URI in a <uri> child",
            )
        return (child.text or "").strip()


class _Profile(_Kind):
    """An embedded MCPTT user profile document (TS 24.484), kept as canonical XML."""

    def put(self, parent: etree._Element, tag: str, value: Any) -> None:
        etree.SubElement(parent, tag).append(profile_element(value))

    def write(self, out: list[str], name: str, value: Any) -> None:
        # A whole element that declares its own namespaces, so it embeds as it is;
        # _checked_profile holds its root to a user profile.
        out.append(f"<{name}>{_checked_profile(value)}</{name}>")

    def get(self, el: etree._Element) -> Any:
        return _profile_from_element(el[0])  # the schema allows exactly one profile root


class _Struct(_Kind):
    """A model class whose fields are child elements, in the order of the table."""

    def __init__(self, cls: type, rows: tuple[_Row, ...], *, one_of: tuple[str, ...] = ()
                 ) -> None:
        self.cls = cls
        self.rows = rows
        bare = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        self.required = frozenset(row.attr for row in rows if row.required
                                  or (row.required is None and row.attr in bare))
        """Rows whose element the schema requires (minOccurs 1): by default, the model fields
        without a default (a test holds the table to the schema)."""
        self.one_of = one_of
        """Rows of which the schema requires at least one (the addressee NOTE's choice)."""
        self.by_tag = {row.tag: row for row in rows}
        self.tag_of_ie = {row.attr: row.tag for row in rows}
        self.many = tuple(row.attr for row in rows if row.many)
        self.read: Callable[[etree._Element], Any] = _reader(self)

    def put(self, parent: etree._Element, tag: str, value: Any) -> None:
        self.fill(etree.SubElement(parent, tag), value)

    def write(self, out: list[str], name: str, value: Any) -> None:
        out.append(f"<{name}>")
        self.write_fields(out, value)
        out.append(f"</{name}>")

    def write_fields(self, out: list[str], value: Any) -> None:
        for row in self.rows:
            item = getattr(value, row.attr)
            if item is None:
                continue
            if row.many:
                for one in item:
                    row.kind.write(out, row.local, one)
            else:
                row.kind.write(out, row.local, item)

    def fill(self, el: etree._Element, value: Any) -> None:
        for row in self.rows:
            item = getattr(value, row.attr)
            if item is None:
                continue
            if row.many:
                for one in item:
                    row.kind.put(el, row.tag, one)
            else:
                row.kind.put(el, row.tag, item)

    def get(self, el: etree._Element) -> Any:
        return self.read(el)

    def get_each(self, el: etree._Element) -> Any:
        """:meth:`get` row by row: what the generated reader (:func:`_reader`) does without a
        call per element, and falls back to when a mandatory field's element is absent."""
        values: dict[str, Any] = {}
        for child in el:
            row = self.by_tag.get(child.tag)
            if row is None:
                continue  # anyExt and ##other content: ignored (lax on receive)
            if row.many:
                values.setdefault(row.attr, []).append(row.kind.get(child))
            else:
                values[row.attr] = row.kind.get(child)
        for attr in self.many:
            if attr in values:
                values[attr] = tuple(values[attr])
        try:
            return self.cls(**values)
        except model.ModelError as exc:
            raise self.refused(el, exc) from None

    def refused(self, el: etree._Element, exc: model.ModelError) -> InvalidContent:
        """The answer to a value the model refuses: the element path and the IE."""
        tag = self.tag_of_ie.get(exc.ie)
        path = element_path(el) + (f"/{etree.QName(tag).localname}" if tag else "")
        return InvalidContent(
            str(exc), path=path, ie=exc.ie, hint="see docs/message-layer.md for this IE")


_ABSENT: Any = object()


def _reader(struct: _Struct) -> Callable[[etree._Element], Any]:
    """:meth:`_Struct.get_each` as one generated function, compiled from the rows once at
    import: one comparison per child element instead of lookups and a call per kind, the
    model class built (and checked) as before.  Only constant element names and the rows'
    attribute names go into the code."""
    defaults = {f.name: f.default for f in dataclasses.fields(struct.cls)}
    env: dict[str, Any] = {"cls": struct.cls, "ModelError": model.ModelError,
                           "ABSENT": _ABSENT, "URI": _URI, "idg": _ID.get,
                           "each": struct.get_each, "refused": struct.refused}
    code = ["def read(el):"]
    mandatory: list[str] = []
    for i, row in enumerate(struct.rows):
        default = defaults[row.attr]
        if default is dataclasses.MISSING:
            default = _ABSENT
            mandatory.append(f"x{i}")
        env[f"d{i}"] = default
        code.append(f"    x{i} = " + ("[]" if row.many else f"d{i}"))
    code += ["    for c in el:", "        t = c.tag"]
    for i, row in enumerate(struct.rows):
        kind = row.kind
        code.append(("        if" if i == 0 else "        elif") + f" t == {row.tag!r}:")
        if type(kind) is _FreeText:
            value = "c.text or ''"
        elif type(kind) is _Token:
            value = "(c.text or '').strip()"
        elif isinstance(kind, _Enum):
            env[f"k{i}"] = kind.enum
            value = f"k{i}((c.text or '').strip())"
        elif isinstance(kind, _Identity):  # the path _Identity.get takes for a clear <uri>
            code.append("            u = c[0] if c.get('type') != 'Encrypted' else None")
            value = "(u.text or '').strip() if u is not None and u.tag == URI else idg(c)"
        elif isinstance(kind, _Struct):
            env[f"k{i}"] = kind.read
            value = f"k{i}(c)"
        else:
            env[f"k{i}"] = kind.get
            value = f"k{i}(c)"
        if row.many:
            code.append(f"            x{i}.append({value})")
        else:
            code.append(f"            x{i} = {value}")
    for i, row in enumerate(struct.rows):
        if row.many:  # no element: the field's default, as get_each leaves it out
            code.append(f"    x{i} = tuple(x{i}) if x{i} else d{i}")
    if mandatory:
        code.append("    if " + " or ".join(f"{x} is ABSENT" for x in mandatory) + ":")
        code.append("        return each(el)")
    code += ["    try:",
             "        return cls(" + ", ".join(f"{row.attr}=x{i}"
                                             for i, row in enumerate(struct.rows)) + ")",
             "    except ModelError as exc:",
             "        raise refused(el, exc) from None"]
    exec("\n".join(code), env)  # our own table: no peer input reaches the code
    return cast(Callable[[etree._Element], Any], env["read"])


class _FlowList(_Kind):
    """ACM Data: complete flow documents, each under its own root element name."""

    def put(self, parent: etree._Element, tag: str, value: Any) -> None:
        wrapper = etree.SubElement(parent, tag)
        for flow in value:
            _SPECS[type(flow)].put(wrapper, _tag(flow.FLOW), flow)

    def write(self, out: list[str], name: str, value: Any) -> None:
        if not value:
            out.append(f"<{name}/>")  # as lxml writes an empty element
            return
        out.append(f"<{name}>")
        for flow in value:
            _SPECS[type(flow)].write(out, flow.FLOW, flow)
        out.append(f"</{name}>")

    def get(self, el: etree._Element) -> Any:
        return tuple(_BY_TAG[child.tag].get(child) for child in el if child.tag in _BY_TAG)


@dataclass(frozen=True, slots=True)
class _Row:
    attr: str
    """Model field."""
    tag: str
    """Clark name of the element."""
    kind: _Kind
    many: bool = False
    """The field is a tuple; each item is one element."""
    local: str = ""
    """Local name of the element (in the ACM namespace)."""
    required: bool | None = None
    """The schema requires the element (None: as the model field has no default)."""


def _row(attr: str, local: str, kind: _Kind, *, many: bool = False,
         required: bool | None = None) -> _Row:
    return _Row(attr, _tag(local), kind, many, local, required)


class _Enum(_Token):
    """A token the schema restricts to the values of a StrEnum; read back as that enum."""

    def __init__(self, enum: type[StrEnum]) -> None:
        super().__init__(re.compile("|".join(re.escape(e.value) for e in enum)).fullmatch,
                         (str, enum))
        self.enum = enum

    def get(self, el: etree._Element) -> Any:
        return self.enum(super().get(el))


# The lexical spaces of the schema's simple types (schemas/acm.xsd), written as the writer's
# proof that a value it writes is valid (:func:`_template`).  XML Schema's \S is any character
# but the four XML white space characters; XML 1.0's Char production bounds every value.
# A value without white space is its own xs:token normal form.
_XML_CHAR_CLASS = "\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff"
_NON_SPACE_CLASS = "\x21-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff"
_PROOF_TEXT = re.compile(f"[{_XML_CHAR_CLASS}]+").fullmatch  # freeTextType
_TID_MAX = 128
_PROOF_TID = re.compile(f"[{_NON_SPACE_CLASS}]{{1,{_TID_MAX}}}").fullmatch  # transactionIdType
_PROOF_URI = re.compile(  # uriType
    f"[A-Za-z][A-Za-z0-9+.\\-]*:[{_NON_SPACE_CLASS}]+").fullmatch
_PROOF_CODE = re.compile(  # resultCodeType: resultKnownType | resultExtensionType
    "|".join(re.escape(c.value) for c in model.ResultCode) + "|x-[a-z0-9][a-z0-9\\-]*").fullmatch
_PROOF_FLOW_NAME = re.compile("[A-Za-z_][A-Za-z0-9._\\-]*").fullmatch  # ASCII NCNames only
# zonedDateTimeType: what datetime.isoformat writes, with an offset xs:dateTime takes
# (whole minutes within 14:00); the date and time fields are a datetime's own
_PROOF_DATETIME = re.compile(
    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\\.[0-9]{6})?"
    "[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00)").fullmatch

_TEXT, _DATETIME = _FreeText(), _DateTime()
_TOKEN_TID = _Token(_PROOF_TID, ascii_max=_TID_MAX)  # (printable ASCII is within \S)
_TOKEN_CODE = _Token(_PROOF_CODE, (str, model.ResultCode), memo=True)
_TOKEN_FLOW_NAME = _Token(_PROOF_FLOW_NAME, memo=True)
_PROVEN_MAX = 256
"""The most values a token's memo of proven values holds (a peer's x- codes cannot make it
grow: once full it only answers)."""
_ENUM_OPERATION, _ENUM_URGENCY = _Enum(model.GroupOperation), _Enum(model.Urgency)
_ID, _PROFILE = _Identity(), _Profile()

_PARTY = _Struct(model.Party, (
    _row("mc_service_id", "mc-service-id", _ID),
    _row("functional_alias", "functional-alias", _ID),
))
_ADDRESSEE = _Struct(model.Addressee, (
    _row("mc_service_id", "mc-service-id", _ID),
    _row("functional_alias", "functional-alias", _ID),
), one_of=("mc_service_id", "functional_alias"))
# a response target the schema types as partyType (10.17.4: its MC service ID is M there)
_PARTY_TARGET = _Struct(model.Addressee, (
    _row("mc_service_id", "mc-service-id", _ID, required=True),
    _row("functional_alias", "functional-alias", _ID),
))
_RESULT = _Struct(model.Result, (
    _row("code", "code", _TOKEN_CODE),
    _row("text", "text", _TEXT),
))
_TID = _row("transaction_id", "transaction-id", _TOKEN_TID)

# One row per IE, in document order; docs/message-layer.md gives the table rows.
_SPECS: dict[type[model.AcmFlow], _Struct] = {
    cls: _Struct(cls, rows)
    for cls, rows in (
        (model.ProfileUpdateRequest, (  # table 10.17.2.15-1
            _TID,
            _row("requester", "requester", _PARTY),  # rows 1-2
            _row("target", "target", _ADDRESSEE),  # rows 3-4, NOTE
            _row("migrated_user_id", "migrated-user-id", _ID),  # row 5
            _row("profile", "profile", _PROFILE),  # row 6
            _row("additional_info", "additional-info", _TEXT),  # row 7
        )),
        (model.ProfileUpdateResponse, (  # table 10.17.2.16-1
            _TID,
            _row("handler", "handler", _PARTY),  # rows 1-2
            _row("target", "target", _ADDRESSEE),  # rows 3-4, NOTE
            _row("migrated_user_id", "migrated-user-id", _ID),  # row 5
            _row("result", "result", _RESULT),  # row 6
        )),
        (model.ProcessIndication, (
            _TID,
            _row("acms", "acms", _ID),
            _row("request", "request", _TOKEN_FLOW_NAME),
            _row("expires", "expires", _DATETIME),
        )),
        (model.PendingDataNotification, (_TID, _row("user", "user", _ID))),
        (model.PendingDataDownloadRequest, (_TID, _row("user", "user", _ID))),
        (model.PendingDataDownloadResponse, (
            _TID,
            _row("user", "user", _ID),
            _row("items", "acm-data", _FlowList(), required=True),
            _row("more", "more-pending", _Flag()),
        )),
        (model.AddUserConfigurationRequest, (
            _TID,
            _row("requester", "requester", _PARTY),
            _row("target", "target", _ADDRESSEE),
            _row("users", "user", _ID, many=True),
        )),
        (model.AddUserConfigurationResponse, (
            _TID,
            _row("handler", "handler", _PARTY),
            _row("target", "target", _ADDRESSEE),
            _row("result", "result", _RESULT),
            _row("users", "user-result", _Struct(model.UserAssignment, (
                _row("primary_id", "primary-id", _ID),
                _row("result", "result", _RESULT),
                _row("partner_id", "partner-id", _ID),
                _row("profile", "profile", _PROFILE),
            )), many=True),
        )),
        (model.RemoveUserConfigurationRequest, (
            _TID,
            _row("requester", "requester", _PARTY),
            _row("target", "target", _ADDRESSEE),
            _row("users", "user", _ID, many=True),
        )),
        (model.RemoveUserConfigurationResponse, (
            _TID,
            _row("handler", "handler", _PARTY),
            _row("target", "target", _ADDRESSEE),
            _row("result", "result", _RESULT),
            _row("users", "user-result", _Struct(model.UserRemoval, (
                _row("primary_id", "primary-id", _ID),
                _row("result", "result", _RESULT),
                _row("partner_id", "partner-id", _ID),
            )), many=True),
        )),
        (model.GroupMembershipUpdateRequest, (  # 10.17.2 table, 10.17.4
            _TID,
            _row("requester", "requester", _PARTY),  # rows 1-2
            _row("target", "target", _ADDRESSEE),  # rows 3-4, NOTE
            _row("group_id", "group-id", _ID),  # row 5
            _row("users", "user", _ID, many=True),  # row 6
            _row("operation", "operation", _ENUM_OPERATION),  # row 7
            _row("urgency", "urgency", _ENUM_URGENCY),  # row 8
        )),
        (model.GroupMembershipUpdateResponse, (  # rows 1-3, then decisions
            _TID,
            _row("handler", "handler", _PARTY),
            _row("target", "target", _PARTY_TARGET),
            _row("group_id", "group-id", _ID),
            _row("operation", "operation", _ENUM_OPERATION),
            _row("users", "user", _ID, many=True),
            _row("result", "result", _RESULT),
        )),
        (model.InterconnectionGroupProvisionRequest, (  # 10.17.4.2.2 step 1
            _TID,
            _row("requester", "requester", _PARTY),
            _row("target", "target", _ADDRESSEE),
            _row("groups", "group-id", _ID, many=True),
        )),
        (model.InterconnectionGroupProvisionResponse, (
            _TID,
            _row("handler", "handler", _PARTY),
            _row("target", "target", _PARTY_TARGET),
            _row("groups", "group-id", _ID, many=True),
            _row("result", "result", _RESULT),
        )),
    )
}
_BY_TAG: dict[str, _Struct] = {_tag(cls.FLOW): spec for cls, spec in _SPECS.items()}
assert set(_SPECS) == set(model.FLOW_TYPES), "every flow class needs a row in _SPECS"


_Written = tuple[str, bool]


def _template(spec: _Struct, root: str, *, declare: bool = True, fast: bool = True
              ) -> Callable[[Any], _Written]:
    """The flow's document as one generated function, compiled from its rows once at import:
    the text :meth:`_Struct.write` gives (a test holds them equal), without a call per
    element.  Only constant element names and the rows' attribute names go into the code.

    With the text it returns whether the document is *proven* valid (strict on send without
    a schema check): every value is held to the lexical space of its schema type (``_PROOF_*``)
    and every struct to its exact model class, every element the schema requires is there,
    the lists the schema keys are unique, every ACM Data item is a flow the schema allows
    there, and every profile passed :func:`_proven_profile`.  What the model builds passes all
    of it; a flow that bypassed the model (``object.__setattr__``, a wrong type) is not
    proven and :func:`encode` validates it (tests/test_acm_proof.py holds both).  ``declare``:
    the root declares the ACM namespace (False: an item inside ACM Data).  ``fast``: the
    checks that prove a common value without its pattern (printable ASCII, the model's URI
    memo, UTC, the values proven before) come first; without them, every value is matched
    (tests/test_acm_proof.py holds the two writers' answers equal)."""
    start = "<" + root + (' xmlns="' + ACM_NS + '">' if declare else ">")
    code = ["def write(v):", "    ok = T(v) is C", "    o = [" + repr(start) + "]",
            "    a = o.append"]
    # esc(x) inlined: _escape's test and translation without a call per value
    env: dict[str, Any] = {"needs": _NEEDS_ESCAPE, "table": _ESCAPES, "tr": str.translate,
                           "pp": _proven_profile, "T": type, "S": str, "C": spec.cls,
                           "uri": _PROOF_URI, "txt": _PROOF_TEXT, "dtm": _PROOF_DATETIME,
                           "U": model._URIS_OK, "UTC": UTC, "PM": _PROVEN_MAX,
                           "DT": datetime, "UP": model.UserProfile, "iso": _iso_text,
                           "len": len, "set": set, "items": _ITEM_TEMPLATES,
                           "other": _write_other_item}
    names = itertools.count()

    def esc(x: str) -> str:
        if not fast:
            return "(tr(" + x + ", table) if needs(" + x + ") else " + x + ")"
        # needs(): "[&<>\r]" searched; in a str, four "in" tests say the same in a fifth of it
        return ("(tr(" + x + ", table) if (needs(" + x + ") if T(" + x + ") is not S else '&' in "
                + x + " or '<' in " + x + " or '>' in " + x + " or '\\r' in " + x + ") else "
                + x + ")")

    def fields(struct: _Struct, var: str, pad: str) -> None:
        for row in struct.rows:
            x = "x" + str(next(names))
            code.append(pad + x + " = " + var + "." + row.attr)
            code.append(pad + "if " + x + " is not None:")
            if row.many:
                y = "y" + str(next(names))
                key = y + ".primary_id" if isinstance(row.kind, _Struct) else y
                # every list the table holds is keyed unique by the schema (xs:unique)
                code.append(pad + "    if len({" + key + " for " + y + " in " + x + "}) != len("
                            + x + ")" + (" or not " + x if row.attr in struct.required else "")
                            + ": ok = False")
                code.append(pad + "    for " + y + " in " + x + ":")
                value(row, y, pad + "        ")
            else:
                value(row, x, pad + "    ")
            if row.attr in struct.required:
                code.append(pad + "else: ok = False")
        if struct.one_of:
            code.append(pad + "if " + " and ".join(var + "." + a + " is None"
                                                   for a in struct.one_of) + ": ok = False")

    def value(row: _Row, x: str, pad: str) -> None:
        kind, n = row.kind, row.local
        open_, close = repr("<" + n + ">"), repr("</" + n + ">")
        if isinstance(kind, _FreeText | _Token):
            # printable ASCII (no control character) is within the XML characters the
            # patterns below take: those values are proven without a match
            if not fast:
                if isinstance(kind, _FreeText):
                    check = "T(" + x + ") is not S or txt(" + x + ") is None"
                else:
                    k = "k" + str(next(names))
                    env[k], env[k + "t"] = kind.proof, kind.types
                    check = "T(" + x + ") not in " + k + "t or " + k + "(" + x + ") is None"
                code.append(pad + "if " + check + ": ok = False")
            elif isinstance(kind, _FreeText):
                code.append(pad + "if T(" + x + ") is not S or (not (" + x + " and " + x
                            + ".isascii() and " + x + ".isprintable()) and txt(" + x
                            + ") is None): ok = False")
            elif kind.memo:  # the values proven so far (the model's few codes and names)
                k = "k" + str(next(names))
                env[k], env[k + "t"], env[k + "m"] = kind.proof, kind.types, {}
                code.extend([pad + "if T(" + x + ") not in " + k + "t: ok = False",
                             pad + "elif " + x + " not in " + k + "m:",
                             pad + "    if " + k + "(" + x + ") is None: ok = False",
                             pad + "    elif len(" + k + "m) < PM: " + k + "m[" + x + "] = None"])
            else:
                k = "k" + str(next(names))
                env[k], env[k + "t"] = kind.proof, kind.types
                ascii = "" if not kind.ascii_max else (
                    "not (" + x + " and len(" + x + ") <= " + str(kind.ascii_max) + " and "
                    + x + ".isascii() and " + x + ".isprintable() and ' ' not in " + x
                    + ") and ")
                code.append(pad + "if T(" + x + ") not in " + k + "t or (" + ascii + k + "("
                            + x + ") is None): ok = False")
            code.append(pad + "a(" + open_ + " + " + esc(x) + " + " + close + ")")
        elif isinstance(kind, _Flag):
            code.append(pad + "if " + x + ": a(" + repr("<" + n + ">true</" + n + ">") + ")")
        elif isinstance(kind, _DateTime):
            t = "t" + str(next(names))
            # x.isoformat(), a UTC datetime's written by the compiled writer (_iso_text)
            code.append(pad + t + " = " + ("iso(" + x + ")" if fast else x + ".isoformat()"))
            # (UTC: isoformat writes the offset +00:00, which the pattern takes)
            code.append(pad + "if T(" + x + ") is not DT or (" + x + ".tzinfo is not UTC and dtm("
                        + t + ") is None): ok = False" if fast else pad + "if T(" + x
                        + ") is not DT or dtm(" + t + ") is None: ok = False")
            code.append(pad + "a(" + open_ + " + " + t + " + " + close + ")")
        elif isinstance(kind, _Identity):
            # a URI the model's pattern took (its memo) is within uriType: no second match
            code.append(pad + "if T(" + x + ") is not S or (" + x + " not in U and uri(" + x
                        + ") is None): ok = False" if fast else pad + "if T(" + x
                        + ") is not S or uri(" + x + ") is None: ok = False")
            code.append(pad + "a(" + repr("<" + n + ' type="Normal"><uri>') + " + " + esc(x)
                        + " + " + repr("</uri></" + n + ">") + ")")
        elif isinstance(kind, _Profile):
            p = "p" + str(next(names))
            code.append(pad + p + " = pp(" + x + ")")
            code.append(pad + "if not " + p + "[1]: ok = False")
            code.append(pad + "a(" + open_ + " + " + p + "[0] + " + close + ")")
        elif isinstance(kind, _Struct):
            k = "k" + str(next(names))
            env[k] = kind.cls
            code.append(pad + "if T(" + x + ") is not " + k + ": ok = False")
            code.append(pad + "a(" + open_ + ")")
            fields(kind, x, pad)
            code.append(pad + "a(" + close + ")")
        elif isinstance(kind, _FlowList):  # ACM Data: each item by its own template
            y, f = "y" + str(next(names)), "f" + str(next(names))
            code.extend([pad + "if not " + x + ":",
                     pad + "    a(" + repr("<" + n + "/>") + ")",  # as lxml writes it
                     pad + "else:",
                     pad + "    a(" + open_ + ")",
                     pad + "    for " + y + " in " + x + ":",
                     pad + "        " + f + " = items.get(T(" + y + "))",
                     pad + "        if " + f + " is None:",
                     pad + "            ok = False",
                     pad + "            other(o, " + y + ")",
                     pad + "        else:",
                     pad + "            " + f + " = " + f + "(" + y + ")",
                     pad + "            a(" + f + "[0])",
                     pad + "            if not " + f + "[1]: ok = False",
                     pad + "    a(" + close + ")"])
        else:
            raise TypeError(f"no writer for {type(kind).__name__}")

    fields(spec, "v", "    ")
    code += ["    a(" + repr("</" + root + ">") + ")", "    return ''.join(o), ok"]
    exec("\n".join(code), env)  # our own table: no peer input reaches the code
    return cast(Callable[[Any], _Written], env["write"])


def _write_other_item(out: list[str], flow: Any) -> None:
    """An ACM Data item the schema does not allow there (a bug): written as before, so that
    the schema check names it."""
    _SPECS[type(flow)].write(out, flow.FLOW, flow)


# ACM Data items (10.17.3.1): the requests and responses, what acmDataType allows
_ITEM_TEMPLATES: dict[type, Callable[[Any], _Written]] = {}




# --------------------------------------------------------------------------- encode


# Flows are immutable: the same object encodes to the same bytes.  A node encodes a flow for
# the store and again for the wire, and rewrites a transaction row with the same flows at each
# state change; the last flows encoded are remembered by identity (an entry holds its flow, so
# the id cannot be reused while it is there) -- validated once, never re-validated.
_Documents = dict[int, tuple[model.AcmFlow, bytes]]
_Texts = dict[int, tuple[model.AcmFlow, str]]
_ENCODED: _Documents = {}
_ENCODED_MAX = 4096
# The last flows decode() returned, with the documents they came from (validated on receipt):
# what :func:`document` keeps for them.  Both caches keep small documents only, so a hostile
# peer's 256 KiB bodies (and our forwards of them) cannot pin memory here: at most
# (4096 + 1024) x 16 KiB.
_RECEIVED: _Documents = {}
_RECEIVED_MAX = 1024
# The text of the last documents the store asked for (:func:`document_text`): a transaction
# row holds three flows and is rewritten at each state change, a send row holds one of them.
_TEXTS: _Texts = {}
_TEXTS_MAX = 1024
_CACHED_MAX_BYTES = 16 * 1024


_D = TypeVar("_D", bytes, str)


def _recall(cache: dict[int, tuple[model.AcmFlow, _D]], flow: model.AcmFlow) -> _D | None:
    hit = cache.get(id(flow))
    return hit[1] if hit is not None and hit[0] is flow else None


def _remember(cache: dict[int, tuple[model.AcmFlow, _D]], limit: int, flow: model.AcmFlow,
              data: _D) -> None:
    if len(data) > _CACHED_MAX_BYTES:  # the caches' size cap (encode_all applies it before)
        return
    if len(cache) >= limit:
        _evict(cache, limit)
    cache[id(flow)] = (flow, data)


def _evict(cache: dict[int, Any], limit: int) -> None:
    # the oldest quarter at once: dropping one entry per call walked, each time, the slots
    # its earlier deletions left at the front of the dict (2 µs a call at 4096)
    for key in list(itertools.islice(cache, limit // 4 or 1)):
        del cache[key]


def encode(flow: model.AcmFlow, *, pretty: bool = False) -> bytes:
    """The flow as a UTF-8 XML document, valid against the bundled schema (strict on send:
    proven by the writer, else validated).

    Raises :class:`EncodeError` if the result is invalid (a bug in this layer), or
    :class:`InvalidContent` if an embedded profile is not an MCPTT user profile document.
    """
    if pretty:
        return _encode(flow, pretty)
    data = _recall(_ENCODED, flow)
    if data is None:
        data = _encode(flow, pretty)
        _remember(_ENCODED, _ENCODED_MAX, flow, data)
    return data


def encode_all(flows: Iterable[model.AcmFlow | None]) -> None:
    """Encode the flows not encoded (nor received) yet, so that :func:`encode` and
    :func:`document` find them: a group commit's new flows are written; those the writer
    proves valid are remembered as they are, the others checked together, in one parse and
    one schema validation (each document validated as a root, inside the internal wrapper of
    :func:`_batch_schema`).  If that batch fails, none of it is remembered and :func:`encode`
    checks each of its flows alone (naming the bad one, as before)."""
    todo: dict[int, model.AcmFlow] = {}
    encoded, received = _ENCODED.get, _RECEIVED.get  # a lookup per flow
    for flow in flows:
        key = id(flow)
        if flow is None or key in todo:
            continue
        hit = encoded(key)
        if hit is not None and hit[0] is flow:
            continue
        hit = received(key)
        if hit is None or hit[0] is not flow:  # (a received flow keeps its own document)
            todo[key] = flow
    if len(todo) < 2:
        return  # nothing to share
    batch: list[tuple[model.AcmFlow, str, bytes]] = []
    try:
        for flow in todo.values():
            text, proven = _TEMPLATES[type(flow)](flow)
            data = text.encode("utf-8")
            if len(data) + len(_XML_DECLARATION) > _CACHED_MAX_BYTES:
                continue  # not remembered: encode() writes it when asked
            if proven:  # valid by the writer's proof (_template): no schema check
                _remember_written(flow, data, text)
            else:
                batch.append((flow, text, data))
        if len(batch) < 2:
            return
        root = etree.fromstring(_BATCH_START + b"".join(d for _, _, d in batch) + _BATCH_END,
                                _OWN_PARSER)
    except (KeyError, UnicodeEncodeError, etree.XMLSyntaxError, AcmError):
        return  # encode() gives each flow's own answer
    if not _batch_schema().validate(root):
        return
    for flow, text, data in batch:
        _remember_written(flow, data, text)


def _remember_written(flow: model.AcmFlow, data: bytes, text: str) -> None:
    """A valid document written by encode_all (``data``, ``text`` without the XML
    declaration, ``data`` at most _CACHED_MAX_BYTES with it): the bytes for the wire, the
    text for the store (:func:`_remember`'s rules for both, in one call)."""
    if len(_ENCODED) >= _ENCODED_MAX:
        _evict(_ENCODED, _ENCODED_MAX)
    if len(_TEXTS) >= _TEXTS_MAX:
        _evict(_TEXTS, _TEXTS_MAX)
    key = id(flow)
    _ENCODED[key] = (flow, _XML_DECLARATION + data)
    _TEXTS[key] = (flow, _XML_DECLARATION_TEXT + text)


_BATCH = "_batch"
_BATCH_START = f'<{_BATCH} xmlns="{ACM_NS}">'.encode()
_BATCH_END = f"</{_BATCH}>".encode()


@lru_cache(maxsize=1)
def _batch_schema() -> etree.XMLSchema:
    """The bundled schema plus one internal element, never sent: ``_batch``, any number of
    flow documents, each a reference to the flow's global element, so each is validated
    exactly as the root it is when sent (its identity constraints included).  A declaration
    more can only make lax content stricter, never looser: what this schema accepts in a
    ``_batch``, the bundled one accepts as a document."""
    xs = "{http://www.w3.org/2001/XMLSchema}"
    source = etree.fromstring(schema_source())
    element = etree.SubElement(source, xs + "element", name=_BATCH)
    choice = etree.SubElement(etree.SubElement(element, xs + "complexType"), xs + "choice",
                              minOccurs="0", maxOccurs="unbounded")
    for cls in model.FLOW_TYPES:
        etree.SubElement(choice, xs + "element", ref="acm:" + cls.FLOW)
    return etree.XMLSchema(source)


def document(flow: model.AcmFlow) -> bytes:
    """The document to keep for ``flow`` (the store): the body it was decoded from if it is
    one of the last flows :func:`decode` returned, else :func:`encode` (what we would send).
    Decoding either gives ``flow`` back."""
    data = _recall(_RECEIVED, flow)
    return encode(flow) if data is None else data


def document_text(flow: model.AcmFlow) -> str:
    """:func:`document` as text (what a store's text column holds), decoded once per flow."""
    hit = _TEXTS.get(id(flow))
    if hit is not None and hit[0] is flow:
        return hit[1]
    text = document(flow).decode("utf-8")
    _remember(_TEXTS, _TEXTS_MAX, flow, text)
    return text


def _encode(flow: model.AcmFlow, pretty: bool) -> bytes:
    if pretty:
        root = to_element(flow)
        _check_own(root, flow)
        _indent(root)
        return _XML_DECLARATION + etree.tostring(root, encoding="UTF-8") + b"\n"
    # Written as text from the same table (_SPECS) that decodes, then parsed and validated:
    # building an lxml tree from Python cost three times the schema check itself.
    template = _TEMPLATES.get(type(flow))
    if template is None:
        raise TypeError(f"not an ACM flow: {type(flow).__name__}")
    text, proven = template(flow)
    if proven:  # strict on send by the writer's own proof (_template): no schema check
        return _XML_DECLARATION + text.encode("utf-8")
    try:
        data = text.encode("utf-8")
        root = etree.fromstring(data, _OWN_PARSER)
    except (UnicodeEncodeError, etree.XMLSyntaxError) as exc:  # a value the model let through
        raise EncodeError(f"our own {flow.FLOW} is not well-formed XML: {exc}") from None
    _check_own(root, flow)
    return _XML_DECLARATION + data


# Parses only what we wrote ourselves (no DOCTYPE can be in it: values are escaped).
_OWN_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _check_own(root: etree._Element, flow: model.AcmFlow) -> None:
    """Strict on send: our own document must satisfy the schema (else a bug, 500)."""
    xsd = schema()
    if not xsd.validate(root):
        error = _schema_error(xsd, root, EncodeError)
        raise EncodeError(f"our own {flow.FLOW} is invalid: {error.message}", path=error.path)


_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})


_NEEDS_ESCAPE = re.compile("[&<>\r]").search


def _escape(value: str) -> str:
    """Character data as lxml writes it (a CR as a reference, so it survives parsing)."""
    return value.translate(_ESCAPES) if _NEEDS_ESCAPE(value) else value


def to_element(flow: model.AcmFlow) -> etree._Element:
    """The flow as an lxml element tree, not yet validated (:func:`encode` validates)."""
    spec = _SPECS.get(type(flow))
    if spec is None:
        raise TypeError(f"not an ACM flow: {type(flow).__name__}")
    root = etree.Element(_tag(flow.FLOW), nsmap={None: ACM_NS})  # type: ignore[dict-item]
    spec.fill(root, flow)
    return root


def _indent(root: etree._Element) -> None:
    """Indent our elements for people to read, leaving embedded profiles byte-for-byte alone
    (their white space is content)."""
    profiles = [(p, list(p)) for p in root.iter(_tag("profile"))]
    for parent, children in profiles:
        for child in children:
            parent.remove(child)
    etree.indent(root, space="  ")
    for parent, children in profiles:
        depth = sum(1 for _ in parent.iterancestors())
        parent.text = "\n" + "  " * (depth + 1)
        children[-1].tail = "\n" + "  " * depth
        parent.extend(children)


# --------------------------------------------------------------------------- decode


def check_content_type(value: str, accepted: Collection[str] = (ACM_CONTENT_TYPE,)) -> None:
    """Raise :class:`NotAcmDocument` (415) unless ``value`` names an accepted media type in UTF-8.

    Media type names are case-insensitive (RFC 2045 5.1); parameters other than charset are
    ignored.
    """
    if value == ACM_CONTENT_TYPE and ACM_CONTENT_TYPE in accepted:
        return  # what ACM peers send: _content_type_rule accepts it too (a test holds it)
    _content_type_rule(value, accepted)


def _content_type_rule(value: str, accepted: Collection[str]) -> None:
    """:func:`check_content_type`'s rule, for any value."""
    media, *params = (part.strip() for part in value.split(";"))
    if media.lower() not in {a.lower() for a in accepted}:
        raise NotAcmDocument(
            f"Content-Type {media or '(empty)'} is not an ACM document",
            hint=f"send the body as {ACM_CONTENT_TYPE}",
        )
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset" and val.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise NotAcmDocument(
                f"charset {val.strip()} is not UTF-8", hint="send the body in UTF-8"
            )


def decode(
    data: bytes,
    *,
    content_type: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> model.AcmFlow:
    """The flow a received body carries, or a typed :class:`AcmError` (path + SIP answer).

    ``content_type``, when given, is checked first (415 unless it is ACM_CONTENT_TYPE).
    """
    if content_type is not None:
        check_content_type(content_type)
    data = bytes(data)  # (a no-op for bytes)
    root = parse(data, limits)
    fast = _FAST_READERS.get(root.tag)
    if fast is None:
        flow = _read(data, from_element, root)
    else:  # from_element's steps, the model read by the reader of valid documents
        xsd = schema()
        if not xsd.validate(root):
            raise _schema_error(xsd, root, SchemaViolation)
        flow = fast(root, data) or _read(data, _BY_TAG[root.tag].get, root)
    _remember(_RECEIVED, _RECEIVED_MAX, flow, data)
    return flow


# ------------------------------------------------------------------ decode: valid documents
# After the schema check, a flow's document is known to hold its sequence: each mandatory
# element once, in order, at a known place, only elements as children (the hardened parse
# drops comments and processing instructions; without a DOCTYPE no entity node is left), the
# values within their schema types.  A reader for such a document takes the elements by
# place instead of by name and builds the model's frozen values without the checks of
# ``__post_init__`` that the schema makes already, keeping those it does not make (below).
# Whatever it is not sure of (an identity that is not a clear <uri>, a check that fails, any
# error) it leaves to the general reader, which returns the value or raises the error as
# before; tests/test_acm_fast_decode.py holds the two equal over valid and invalid documents.

_MC_SERVICE_ID, _FUNCTIONAL_ALIAS = _tag("mc-service-id"), _tag("functional-alias")
_ADDITIONAL_INFO = _tag("additional-info")
_URIS_OK = model._URIS_OK  # (cleared in place, never rebound)
_uri_accepted = model.uri_accepted
_build_party = builder(model.Party, skip_post_init=True)
_build_addressee = builder(model.Addressee, skip_post_init=True)
_build_profile_update_request = builder(model.ProfileUpdateRequest, skip_post_init=True)


def _clear_uri(identity: etree._Element) -> str | None:
    """An identity's URI text (its ``.text``, "" for none, not stripped) when it is in clear
    (a <uri>, as the general reader's ``_Identity.get`` reads it), else None.  The schema's
    identityType holds one child and a ``type`` of Normal or Encrypted."""
    uri = identity[0]
    if uri.tag != _URI or identity.get("type") == "Encrypted":
        return None
    return uri.text or ""


def _accepted_uri(text: str) -> str | None:
    """A URI's text as the general reader takes it (stripped), when it passes the model's URI
    check; else None.  The schema's uriType has a letter first, so the value is not empty."""
    value = text.strip()
    return value if value in _URIS_OK or _uri_accepted(value) else None


_Parts = tuple[str, str, str | None, str | None, str | None, str, str | None]
"""What a profile update request's reader reads before its checks: the transaction id's
text, the URI texts of the requester's MC service ID and functional alias, of the target's,
of the migrated user's ID, and the additional information's text; None: absent."""


def _tree_parts(root: etree._Element) -> _Parts | None:
    """The parts of a schema-valid request's tree, by place; None when an identity is not a
    clear <uri>."""
    tid_el, requester, target, migrated, _, *rest = root
    mc_service_id = _clear_uri(requester[0])
    if mc_service_id is None:
        return None
    alias = None
    if len(requester) > 1 and requester[1].tag == _FUNCTIONAL_ALIAS:
        alias = _clear_uri(requester[1])
        if alias is None:
            return None
    first = target[0]
    if first.tag == _MC_SERVICE_ID:
        target_id = _clear_uri(first)
        if target_id is None:
            return None
        target_alias = None
        if len(target) > 1 and target[1].tag == _FUNCTIONAL_ALIAS:
            target_alias = _clear_uri(target[1])
            if target_alias is None:
                return None
    else:  # the choice's other branch: functional-alias alone
        target_id, target_alias = None, _clear_uri(first)
        if target_alias is None:
            return None
    migrated_user_id = _clear_uri(migrated)
    if migrated_user_id is None:
        return None
    info = (rest[0].text or "") if rest and rest[0].tag == _ADDITIONAL_INFO else None
    return (tid_el.text or "", mc_service_id, alias, target_id, target_alias, migrated_user_id,
            info)


def _read_profile_update_request(root: etree._Element, data: bytes
                                 ) -> model.ProfileUpdateRequest | None:
    """The request of a valid document as the general reader reads it, or None.

    Its parts are read from the bytes by the compiled reader (``_c14n.request_parts``: no
    element proxy, no tag string per element), or from the tree (:func:`_tree_parts`) where
    that one does not read them.  What ``__post_init__`` checks and the schema makes already
    (the profile-update-request element's sequence, partyType, addresseeType, identityType,
    uriType, freeTextType): every mandatory IE present, the addressee NOTE (a choice), the
    optional text not empty and of XML characters; the transaction id's length and spaces (a
    token of 1-128 non-space characters, which ``strip`` only shortens) are checked anyway, as
    is what the schema does not make: the id printable and each URI the model's pattern
    (Unicode white space)."""
    parts = None if _c_request_parts is None else _c_request_parts(
        data, _ACM_NS_BYTES, _PROFILE_NS_BYTES, _PROFILE_ROOT_BYTES)
    # (the compiled reader has found the profile's root element: its canonical text next)
    text = None if parts is None or _c_canonical is None else _c_canonical(
        data, _PROFILE_NS_BYTES, _PROFILE_ROOT_BYTES)
    if parts is None and (parts := _tree_parts(root)) is None:
        return None
    tid_text, requester, alias, target_id, target_alias, migrated, info = parts
    try:
        tid = tid_text.strip()
        if not tid or len(tid) > 128 or not tid.isprintable() or " " in tid:
            return None
        mc_service_id = _accepted_uri(requester)
        if mc_service_id is None:
            return None
        if alias is not None and (alias := _accepted_uri(alias)) is None:
            return None
        if target_id is not None and (target_id := _accepted_uri(target_id)) is None:
            return None
        if target_alias is not None and (target_alias := _accepted_uri(target_alias)) is None:
            return None
        migrated_user_id = _accepted_uri(migrated)
        if migrated_user_id is None or (info is not None and not info):
            return None
        flow: model.ProfileUpdateRequest = _build_profile_update_request(
            tid, _build_party(mc_service_id, alias), _build_addressee(target_id, target_alias),
            migrated_user_id,
            _profile_of(root[4][0], data) if text is None else _user_profile(text), info)
    except AcmError:
        return None  # the general reader raises it again, or the error it meets first
    return flow


_FAST_READERS: dict[str, Callable[[etree._Element, bytes], model.AcmFlow | None]] = {
    _tag(model.ProfileUpdateRequest.FLOW): _read_profile_update_request,
}


def from_element(root: etree._Element, *, validate: bool = True) -> model.AcmFlow:
    """The flow a parsed root element carries (``decode`` after the hardened parse).

    ``validate=False`` skips the lxml schema check for a caller that has validated otherwise.
    """
    spec = _BY_TAG.get(root.tag)
    if spec is None:
        # the tag's own text: libxml2 takes a name with colons and an undeclared prefix
        # (a namespace warning), which etree.QName refuses with a ValueError
        namespace, _, localname = root.tag[1:].rpartition("}") if root.tag.startswith("{") \
            else ("", "", root.tag)
        if namespace != ACM_NS:
            raise NotAcmDocument(
                f"root element {localname} is in namespace {namespace or '(none)'}",
                path="/" + localname,
                hint=f"ACM documents use namespace {ACM_NS}",
            )
        raise SchemaViolation(
            f"{localname} is not an ACM flow",
            path="/" + localname,
            hint="the root must be one of: " + ", ".join(c.FLOW for c in model.FLOW_TYPES),
        )
    xsd = schema()
    if validate and not xsd.validate(root):
        raise _schema_error(xsd, root, SchemaViolation)
    flow: model.AcmFlow = spec.get(root)
    return flow


def _schema_error(
    xsd: etree.XMLSchema, root: etree._Element, cls: Callable[..., AcmError]
) -> AcmError:
    """The first validation error as ``cls``, with our path and a hint for its kind."""
    entry = cast(Any, xsd.error_log)[0]  # lxml-stubs omit _ErrorLog.__getitem__
    path: str | None = None
    if entry.path:
        # libxml2 writes the path with the document's own prefixes (error path only: cost is fine).
        prefixes = {k: v for el in root.iter() for k, v in el.nsmap.items() if k}
        try:
            found = root.getroottree().xpath(entry.path, namespaces=prefixes)
        except etree.XPathError:
            found = None
        if isinstance(found, list) and found and isinstance(found[0], etree._Element):
            path = element_path(found[0])
    message = _strip_namespaces(entry.message)
    if "Missing child element" in message:
        hint = "add the missing element (docs/message-layer.md lists what each flow needs)"
    elif "not expected" in message:
        hint = "remove or reorder the element; extensions belong in <anyExt>"
    elif "not a valid value" in message or "not accepted by the pattern" in message:
        hint = "fix the value's format (docs/message-layer.md gives each type)"
    elif "Duplicate key-sequence" in message:
        hint = "list each user once"
    else:
        hint = "see docs/message-layer.md"
    return cls(message, path=path, hint=hint)


def _strip_namespaces(text: str) -> str:
    return text.replace(f"{{{ACM_NS}}}", "").replace(f"{{{USER_PROFILE_NS}}}", "")


# --------------------------------------------------------------------------- profiles


def _canonical(el: etree._Element) -> str:
    # Exclusive C14N 1.0 in libxml2 (C) yields the same text as C14N 2.0 for documents
    # without QName-valued content, far faster than lxml's C14N 2.0 writer (docs/decisions.md
    # "Message layer"); a test holds the two equal.  Comments are already gone (the parser
    # drops them).
    return etree.tostring(el, method="c14n", exclusive=True, with_comments=False).decode()


C14N_ENV = xmlsafe.C14N_ENV
"""``python``: a received profile's canonical text by libxml2 (:func:`_canonical`) even when
the compiled writer is built; ``c``: the compiled one (mcacm_sip/acm/_c14n.c) or an
ImportError; unset or ``auto``: the compiled one when built."""


def _compiled(choice: str, name: str) -> Any:
    """``_c14n``'s function ``name``, or None (``choice`` ``python``, or ``auto`` and not
    built)."""
    compiled = xmlsafe.load_compiled(choice)
    return None if compiled is None else getattr(compiled, name)


def _load_c14n(choice: str) -> Callable[[bytes, bytes, bytes], str | None] | None:
    """``_c14n.canonical``, or None (:func:`_compiled`)."""
    return cast(Callable[[bytes, bytes, bytes], str | None] | None, _compiled(choice, "canonical"))


_c_canonical = _load_c14n(os.environ.get(C14N_ENV, "auto").strip().lower() or "auto")
"""The received profile's canonical text written from the document's bytes (the same text as
:func:`_canonical`, or None for what it leaves to libxml2: tests/test_acm_c14n.py)."""
C14N = "python" if _c_canonical is None else "c"
"""Which code writes a received profile's canonical text: ``c`` (mcacm_sip/acm/_c14n.c) or
``python`` (libxml2's C14N through lxml)."""
_PROFILE_NS_BYTES = USER_PROFILE_NS.encode()
_PROFILE_ROOT_BYTES = USER_PROFILE_ROOT.encode()
_ACM_NS_BYTES = ACM_NS.encode()


def _load_request_parts(choice: str
                        ) -> Callable[[bytes, bytes, bytes, bytes], _Parts | None] | None:
    """``_c14n.request_parts``, or None (:func:`_compiled`)."""
    return cast(Callable[[bytes, bytes, bytes, bytes], _Parts | None] | None,
                _compiled(choice, "request_parts"))


_c_request_parts = _load_request_parts(
    os.environ.get(C14N_ENV, "auto").strip().lower() or "auto")
"""A profile update request's parts read from its bytes (:func:`_read_profile_update_request`;
the same parts as :func:`_tree_parts`, or None: tests/test_acm_fast_decode.py)."""


_iso_text: Callable[[Any], str] = _compiled(
    os.environ.get(C14N_ENV, "auto").strip().lower() or "auto", "iso_text"
) or operator.methodcaller("isoformat")
"""``value.isoformat()``: the compiled writer's text for a UTC datetime (the same text as
datetime's own writer, in a tenth of its instructions: tests/test_acm_proof.py), else the
value's own method.  The templates (:func:`_template`) write a datetime with it."""


def _profile_from_element(el: etree._Element) -> model.UserProfile:
    return _profile_of(el, _SOURCE.get())


def _profile_of(el: etree._Element, data: bytes | None) -> model.UserProfile:
    """The profile whose root is ``el``, ``data`` the bytes its tree was parsed from (or
    None)."""
    if el.tag != _PROFILE_ROOT_TAG:
        raise InvalidContent(
            f"embedded profile root is {etree.QName(el).localname}, not {USER_PROFILE_ROOT}",
            path=element_path(el),
            ie="profile",
            hint=f"embed an MCPTT user profile document ({USER_PROFILE_NS}, TS 24.484)",
        )
    if data is not None:
        # the document holds this element only once (else None): its text from the bytes,
        # which also hold every namespace name it takes to a plain absolute URI (else None)
        text = None if _c_canonical is None else _c_canonical(
            data, _PROFILE_NS_BYTES, _PROFILE_ROOT_BYTES)
        if text is not None:
            return _user_profile(text)
    namespaces = () if data is not None and _plain(data) else _NAMESPACES(el)
    for _, uri in cast(list[tuple[str, str]], namespaces):
        if any(c in uri for c in _UNESCAPED):
            raise InvalidContent(
                f"namespace name {uri!r} holds &, < or \" (canonical XML would not escape it)",
                path=element_path(el), ie="profile", hint="use a plain namespace URI")
    try:
        return _user_profile(_canonical(el))
    except etree.C14NError:  # e.g. a relative namespace name (C14N 1.0 refuses them)
        raise InvalidContent(
            "the profile cannot be canonicalised (a relative namespace name?)",
            path=element_path(el), ie="profile",
            hint="declare namespaces with absolute URIs") from None


_build_user_profile = builder(model.UserProfile, skip_post_init=True)


def _user_profile(text: str) -> model.UserProfile:
    """``UserProfile(xml=text)``: its check (the text starts with "<", as an element's
    canonical text does) made here, without a call."""
    return _build_user_profile(text) if text.startswith("<") else model.UserProfile(xml=text)


# libxml2's C14N writes namespace names unescaped: with one of these the canonical profile
# would not parse again, and relative ones fail it (docs/decisions.md "Reliability: hostile
# input").
_UNESCAPED = ('&', '<', '"')
_NAMESPACES = etree.XPath("descendant-or-self::*/namespace::*")


def _plain(data: bytes) -> bool:
    """Whether the document ``data`` holds no namespace name with "&", "<" or '"'.  Scanning
    every namespace node of a profile is a fifth of decoding a 3 KB one.  In XML, "&" and "<"
    in an attribute value need a reference (which starts with "&"), and '"' needs one or
    single quotes: a document with no "&" and no "'" has no such namespace name."""
    return b"&" not in data and b"'" not in data


_SOURCE: ContextVar[bytes | None] = ContextVar("profile_source", default=None)
"""The bytes the tree being read was parsed from, when the reader has them (decode,
profile_from_xml): the profile's text is then written from them, or the namespace scan
skipped where :func:`_plain` allows."""


_T = TypeVar("_T")


def _read(data: bytes, read: Callable[[etree._Element], _T], root: etree._Element) -> _T:
    """``read(root)``, where ``data`` are the bytes ``root`` was parsed from by
    :func:`~mcacm_sip.acm.xmlsafe.parse`."""
    source = _SOURCE.set(data)
    try:
        return read(root)
    finally:
        _SOURCE.reset(source)


def profile_from_xml(data: bytes | str, *, limits: Limits = DEFAULT_LIMITS) -> model.UserProfile:
    """A :class:`~mcacm_sip.acm.model.UserProfile` from an MCPTT user profile document.

    The document is parsed as hostile input (:mod:`.xmlsafe`) and kept as canonical XML, so
    two profiles with the same content compare equal.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return _read(raw, _profile_from_element, parse(raw, limits))


@lru_cache(maxsize=256)
def _parsed_profile(xml: str) -> etree._Element:
    data = xml.encode("utf-8")
    try:
        root = parse(data)
    except AcmError as exc:
        raise InvalidContent(
            f"the profile is not a usable XML document: {exc.message}", ie="profile",
            hint="build profiles with profile_from_xml()",
        ) from None
    _read(data, _profile_from_element, root)  # checks the root (the namespace scan as decode)
    return root


@lru_cache(maxsize=256)
def _profile_text(xml: str) -> str:
    # lxml's serialisation of the parsed root: the bytes the tree-built documents carried
    # (empty elements as <x/>), declaring every namespace it uses.
    root = _parsed_profile(xml)
    text = etree.tostring(root, encoding="unicode")
    # An unprefixed element the profile leaves in no namespace would join the ACM document's
    # default namespace once embedded: a prefixed root with no default namespace of its own
    # undeclares it (xmlns="", Namespaces in XML 1.0 section 6.2), which canonical XML drops
    # again at the receiver (the apex has no default to undo).
    if root.prefix is not None and None not in root.nsmap \
            and next(root.iter("{}*"), None) is not None:
        cut = len(root.prefix) + len(USER_PROFILE_ROOT) + 2  # "<p:mcptt-user-profile"
        text = f'{text[:cut]} xmlns=""{text[cut:]}'
    return text


def _checked_profile(profile: model.UserProfile) -> str:
    """The profile's canonical text once its root is known to be a user profile."""
    return _profile_text(profile.xml)


_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


def _proven_profile(profile: model.UserProfile) -> _Written:
    """:func:`_checked_profile`, and whether the schema takes it as it is written
    (:func:`_inert_profile`), so that the document it goes into needs no check for it."""
    return _profile_text(profile.xml), (type(profile) is model.UserProfile
                                        and _inert_profile(profile.xml))


@lru_cache(maxsize=256)
def _inert_profile(xml: str) -> bool:
    """The schema's profileType takes one element of the user profile namespace (the root
    :func:`_parsed_profile` checks) and processes it laxly: it validates only what it has a
    declaration for, i.e. elements of the ACM namespace, and reads xsi: attributes (xsi:type,
    xsi:nil).  A profile with neither, whose text keeps every element's namespace once
    embedded under the ACM document's default namespace (an unprefixed element the profile
    leaves in no namespace would join ours), is valid wherever the writers put it."""
    text = _profile_text(xml)
    # the text is lxml's, standalone: a name of either namespace is declared in it literally
    # (neither holds a character lxml escapes)
    if ACM_NS in text or _XSI_NS in text:
        return False
    if text.startswith(_UNPREFIXED_ROOT) and text[len(_UNPREFIXED_ROOT)] in " \t\r\n/>":
        return True  # the root declares the default namespace: nothing inherits ours
    framed = f'<profile xmlns="{ACM_NS}">{text}</profile>'.encode()
    return ([el.tag for el in etree.fromstring(framed, _OWN_PARSER)[0].iter()]
            == [el.tag for el in _parsed_profile(xml).iter()])


_UNPREFIXED_ROOT = "<" + USER_PROFILE_ROOT


def profile_element(profile: model.UserProfile) -> etree._Element:
    """The profile as a fresh lxml element (the caller may modify or append it)."""
    return copy.deepcopy(_parsed_profile(_profile_text(profile.xml)))


# built last: the templates call _escape and _proven_profile, defined above
_ITEM_TEMPLATES.update({
    cls: _template(_SPECS[cls], cls.FLOW, declare=False)
    for cls in (*get_args(model.AcmRequest), *get_args(model.AcmResponse))})
_TEMPLATES: dict[type[model.AcmFlow], Callable[[Any], _Written]] = {
    cls: _template(spec, cls.FLOW) for cls, spec in _SPECS.items()}
