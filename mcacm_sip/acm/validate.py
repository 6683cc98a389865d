"""Validation for people: every problem of an ACM document, each with a path, reason and fix.

:func:`validate_document` returns data (a list of :class:`Problem`, empty when the document is
good) for the ``mcacm validate`` command or an API.  It uses xmlschema for its path-precise
diagnostics and reports all schema errors, not just the first; then the rules XSD 1.0 cannot
express (a successful user assignment needs its partner ID and profile, an embedded profile
must be an ``mcptt-user-profile``, identities must be in clear), and finally the model's own
checks through :func:`~mcacm_sip.acm.codec.decode`.  The hot path (``decode``) never uses this
module: lxml is an order of magnitude faster there.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from lxml import etree

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.xmlsafe import DEFAULT_LIMITS, Limits, element_path, parse

__all__ = ["Problem", "validate_document"]

Stage = Literal["parse", "schema", "rule", "model"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document."""

    path: str | None
    """XPath-like location with local names, e.g. ``/profile-update-request/target``."""
    reason: str
    """What is wrong."""
    hint: str
    """How to fix it."""
    stage: Stage
    """Which check found it: the hardened parse, the XSD, a rule beyond XSD 1.0, the model."""
    line: int | None = None
    """Line of the element in the document, when known."""
    sip_status: int = 400
    """The SIP answer a receiver gives this document (415 / 413 / 400)."""


@lru_cache(maxsize=1)
def _schema() -> Any:
    import xmlschema  # imported on first use: it costs ~0.5 s, and only validation needs it

    return xmlschema.XMLSchema10(io.BytesIO(codec.schema_source()))


_NS = {"a": codec.ACM_NS, "up": codec.USER_PROFILE_NS}
_CLARK = re.compile(r"\{[^}]*\}")
_PREFIX = re.compile(r"'[A-Za-z_][\w.\-]*:")


def _clean(text: str) -> str:
    """Error text with namespace URIs and prefixes removed: element names as people write them."""
    return _PREFIX.sub("'", _CLARK.sub("", text))


def validate_document(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> list[Problem]:
    """All problems of ``data`` as an ACM document; an empty list means it is good."""
    try:
        root = parse(data, limits)
    except AcmError as exc:
        return [Problem(exc.path, exc.message, exc.hint, "parse", sip_status=exc.sip_status)]
    qname = etree.QName(root)
    if qname.namespace != codec.ACM_NS:
        return [Problem(
            f"/{qname.localname}",
            f"root element {qname.localname} is in namespace {qname.namespace or '(none)'}",
            f"ACM documents use namespace {codec.ACM_NS}", "parse", _line(root), 415,
        )]
    problems = [_schema_problem(err) for err in _schema().iter_errors(root)]
    problems += _rule_problems(root)
    if not problems:
        try:
            codec.decode(data, limits=limits)
        except AcmError as exc:
            problems.append(Problem(exc.path, exc.message, exc.hint, "model",
                                    sip_status=exc.sip_status))
    return problems


def _schema_problem(err: Any) -> Problem:
    elem = getattr(err, "invalid_child", None)
    if not isinstance(elem, etree._Element):
        elem = err.elem if isinstance(err.elem, etree._Element) else None
    path = element_path(elem) if elem is not None else err.path
    reason = _clean(str(err.reason or err.message))
    expected = getattr(err, "expected", None)
    if expected:
        names = " or ".join(f"<{_CLARK.sub('', str(e.name)).split(':')[-1]}>" for e in expected
                            if getattr(e, "name", None))
        hint = f"add {names} here" if names else "add the missing element"
    elif "Unexpected child" in reason:
        hint = "remove the element or move it into <anyExt> (the extension point)"
    elif "duplicated value" in reason:
        hint = "list each user once"
    elif "must be one of" in reason or "pattern" in reason or "not a valid" in reason:
        hint = "correct the value; docs/message-layer.md gives each element's type"
    else:
        hint = "see docs/message-layer.md for this element"
    line = _line(elem) if elem is not None else None
    return Problem(path, reason, hint, "schema", line)


def _rule_problems(root: etree._Element) -> list[Problem]:
    problems: list[Problem] = []

    def add(el: etree._Element, reason: str, hint: str, missing: str = "") -> None:
        path = element_path(el) + (f"/{missing}" if missing else "")
        problems.append(Problem(path, reason, hint, "rule", _line(el)))

    for prof in _xpath(root, "//a:profile/*[1]"):
        if etree.QName(prof).namespace == codec.USER_PROFILE_NS and \
                etree.QName(prof).localname != codec.USER_PROFILE_ROOT:
            add(prof, f"embedded profile root is {etree.QName(prof).localname}, not "
                f"{codec.USER_PROFILE_ROOT}",
                "embed an MCPTT user profile document (TS 24.484 8.3.2) as <profile>'s child")
    # 10.17.7.1: an accepted user gets a partner-assigned MC service ID and a profile.
    for res in _xpath(root, "//a:add-user-configuration-response/a:user-result"
                      "[normalize-space(a:result/a:code)='success']"):
        for local in ("partner-id", "profile"):
            if not _xpath(res, f"a:{local}"):
                add(res, f"user-result with code success lacks <{local}>",
                    "give the partner-assigned MC service ID and profile, or a negative code",
                    missing=local)
    for ident in _xpath(root, "//a:*[@type='Encrypted']"):
        add(ident, "encrypted identities are not supported",
            'send the identity in clear: type="Normal" with a <uri> child')
    for ident in _xpath(root, _IDENTITIES_WITHOUT_URI):
        add(ident, "identity carries no <uri>", "put the URI in a <uri> child")
    return problems


_IDENTITY_NAMES = ("mc-service-id", "functional-alias", "migrated-user-id", "acms", "user",
                   "primary-id", "partner-id")
_IDENTITIES_WITHOUT_URI = (
    "//a:*[" + " or ".join(f"self::a:{n}" for n in _IDENTITY_NAMES) + "]"
    "[*][not(a:uri)][not(@type='Encrypted')]"
)


def _line(el: etree._Element) -> int | None:
    line = el.sourceline
    return line if isinstance(line, int) else None


def _xpath(el: etree._Element, expr: str) -> list[etree._Element]:
    found = el.xpath(expr, namespaces=_NS)
    return [e for e in found if isinstance(e, etree._Element)] if isinstance(found, list) else []
