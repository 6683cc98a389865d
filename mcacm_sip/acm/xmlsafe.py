"""Hardened XML parsing for bodies received from peers.

Defences, cheapest first, each failing with a typed error (:mod:`mcacm_sip.acm.errors`):

1. a byte-size cap (default 256 KiB) checked before anything else -> 413;
2. a prolog scan (a handful of ``bytes`` operations at C speed): the body must be UTF-8 XML and
   must not contain a DOCTYPE -> 415 / 400.  With no DOCTYPE there is no entity declaration, so
   no billion laughs, no XXE and no external DTD, whatever the parser would have done;
3. libxml2 with entity substitution, DTD loading, network access and huge trees all off; its own
   hard depth limit (256 without XML_PARSE_HUGE) stops a 100 000-deep document early with
   bounded memory;
4. the configurable nesting-depth cap (default 64) checked on the tree by one precompiled
   XPath (libxml2 walks each level once, no Python per element), only when the body holds
   at least as many ``</`` as the cap (each ancestor of the deepest element ends with its own
   end tag, so depth d needs d - 1 of them): ordinary documents pay one ``bytes.count``;
5. the attributes-per-element cap (default 64): validating attributes costs far more than
   parsing them (figures: docs/decisions.md "Attribute cap"); the precise XPath check runs
   only when the body holds more ``=`` than the cap (every attribute needs one), so ordinary
   documents pay one ``bytes.count``.

Comments and processing instructions are dropped while parsing: nothing in an ACM document
means anything by them, and text split by a comment reads back whole.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import cast

from lxml import etree

from mcacm_sip.acm.errors import (
    DocumentTooDeep,
    DocumentTooLarge,
    MalformedDocument,
    NotAcmDocument,
    TooManyAttributes,
    UnsafeDocument,
)
from mcacm_sip.compiled import not_built, wanted

__all__ = ["DEFAULT_LIMITS", "Limits", "element_path", "parse"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps applied to every received document (docs/decisions.md, "Message layer")."""

    max_bytes: int = 256 * 1024
    """Largest body accepted, in bytes (larger: 413)."""
    max_depth: int = 64
    """Deepest element nesting accepted; the root is depth 1 (deeper: 400)."""
    max_attributes: int = 64
    """Most attributes on one element, namespace declarations aside (more: 400)."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        # libxml2 refuses depth > 256 by itself (no XML_PARSE_HUGE); a higher cap would lie.
        if not 1 <= self.max_depth <= 256:
            raise ValueError("max_depth must be within 1..256")


DEFAULT_LIMITS = Limits()

# The prolog: optional UTF-8 BOM, then white space, XML declaration, comments and PIs.
_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?(?:[ \t\r\n]+|<\?.*?\?>|<!--.*?-->)*", re.DOTALL)
_XML_DECL = re.compile(rb"<\?xml[ \t\r\n].*?\?>", re.DOTALL)
_ENCODING = re.compile(rb"""encoding[ \t\r\n]*=[ \t\r\n]*["']([A-Za-z0-9._\-]*)["']""")
_UTF8_NAMES = frozenset({b"utf-8", b"utf8", b"us-ascii", b"ascii"})


_COMMON_DECLARATIONS = (
    b'<?xml version="1.0" encoding="UTF-8"?>',
    b"<?xml version='1.0' encoding='UTF-8'?>",
    b'<?xml version="1.0" encoding="utf-8"?>',
    b'<?xml version="1.0"?>',
    b"",
)


def _plain_prolog(data: bytes) -> bool:
    """Whether the prolog is a usual declaration (or none), at most one LF, then directly
    the root element's start tag: nothing for :func:`_check_prolog` to refuse."""
    for known in _COMMON_DECLARATIONS:
        if data.startswith(known):
            pos = len(known) + (data[len(known):len(known) + 1] == b"\n")
            return data[pos:pos + 1] == b"<" and data[pos + 1:pos + 2] not in (b"!", b"?", b"")
    return False  # (not reached: b"" starts every document)


def _check_prolog(data: bytes) -> None:
    """Reject what is not UTF-8 XML, and any DOCTYPE, before the parser sees a byte."""
    if _plain_prolog(data):
        return
    end = _PROLOG.match(data)
    pos = end.end() if end else 0
    decl = _XML_DECL.match(data, 3 if data.startswith(b"\xef\xbb\xbf") else 0)
    if decl:
        enc = _ENCODING.search(decl.group())
        if enc and enc.group(1).lower() not in _UTF8_NAMES:
            raise NotAcmDocument(
                f"document encoding {enc.group(1).decode('ascii', 'replace')} is not UTF-8",
                hint="send the document in UTF-8 (the XML default)",
            )
    if data.startswith(b"<!DOCTYPE", pos):
        raise UnsafeDocument(
            "document contains a DOCTYPE (DTDs and entity declarations are never processed)",
            hint="remove the DOCTYPE; ACM documents need no DTD or entities",
        )
    if data.startswith(b"<!", pos):
        raise MalformedDocument(
            "markup before the root element is neither a comment nor a processing instruction",
            hint="start the document with its root element",
        )
    if not data.startswith(b"<", pos) or len(data) <= pos + 1:
        what = "empty body" if not data.strip() else "body is not XML (or not UTF-8)"
        raise NotAcmDocument(what, hint="send a UTF-8 XML document")


C14N_ENV = "MCACM_C14N"
"""``python``: the received documents' Python and libxml2 code alone even when the compiled
part (mcacm_sip/acm/_c14n.c: a profile's canonical text, a request's parts, the prolog and
the caps' marks) is built; ``c``: the compiled part or an ImportError; unset or ``auto``: the
compiled part when built."""


def load_compiled(choice: str) -> ModuleType | None:
    """``mcacm_sip.acm._c14n``, or None (``choice`` ``python``, or ``auto`` and not built)."""
    if not wanted(C14N_ENV, choice):
        return None
    try:
        from mcacm_sip.acm import _c14n
    except ImportError as exc:
        if choice == "c":
            raise not_built(C14N_ENV, "mcacm_sip.acm._c14n") from exc
        return None
    return _c14n


def _load_marks(choice: str) -> Callable[[bytes], tuple[bool, int, int]] | None:
    compiled = load_compiled(choice)
    return None if compiled is None else cast(Callable[[bytes], tuple[bool, int, int]],
                                              compiled.prolog_marks)


_marks = _load_marks(os.environ.get(C14N_ENV, "auto").strip().lower() or "auto")
"""``_c14n.prolog_marks``: whether :func:`_check_prolog`'s fast path takes the prolog, and the
counts of ``</`` and ``=`` :func:`parse` reads, in one pass (tests/test_acm_xmlsafe_marks.py:
the same as the Python code's); None: the Python code."""


class _Parsers(threading.local):
    """lxml parsers are not thread-safe: one per thread."""

    def __init__(self) -> None:
        self.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )


_PARSERS = _Parsers()


@lru_cache(maxsize=8)
def _crowded_xpath(max_attributes: int) -> etree.XPath:
    return etree.XPath(f"//*[count(@*) > {max_attributes}]")


@lru_cache(maxsize=8)
def _too_deep_xpath(max_depth: int) -> etree.XPath:
    # /*/*/... with max_depth+1 steps selects the elements nested deeper than the cap.
    return etree.XPath("/*" * (max_depth + 1))


_BYTES_LIKE = (bytes, bytearray, memoryview)  # (a `|` union is made anew at each call)


def parse(data: bytes, limits: Limits = DEFAULT_LIMITS) -> etree._Element:
    """Parse a received body into its root element, or raise a typed error."""
    if not isinstance(data, _BYTES_LIKE):
        raise TypeError("parse() takes the body as bytes")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise DocumentTooLarge(
            f"document is {len(data)} bytes, the limit is {limits.max_bytes}",
            hint="split the data or raise the peer's max_bytes limit",
        )
    if _marks is None:
        _check_prolog(data)
        ends = equals = -1  # (counted below)
    else:
        plain, ends, equals = _marks(data)
        if not plain:
            _check_prolog(data)
    try:
        root = etree.fromstring(data, _PARSERS.parser)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, limits) from None
    # nesting deeper than the cap (depth > max_depth) needs max_depth ancestors, each
    # closed by its own end tag "</" (well-formed: the parser accepted it; no DOCTYPE, so no
    # entity can hold markup); comments and CDATA can only add to the count
    if ends < 0:
        ends, equals = data.count(b"</"), data.count(b"=")
    deep = None if ends < limits.max_depth else _first_found(
        _too_deep_xpath(limits.max_depth), root)
    if deep is not None:
        raise DocumentTooDeep(
            f"elements nest deeper than {limits.max_depth} levels",
            path=element_path(deep),
            hint="flatten the document; extension content must stay shallow",
        )
    # more attributes than the cap on one element need more "=" than the cap
    crowded = None if equals <= limits.max_attributes else _first_found(
        _crowded_xpath(limits.max_attributes), root)
    if crowded is not None:
        raise TooManyAttributes(
            f"an element has more than {limits.max_attributes} attributes",
            path=element_path(crowded),
            hint="ACM documents need a handful of attributes per element",
        )
    return root


def _first_found(xpath: etree.XPath, root: etree._Element) -> etree._Element | None:
    """The first element ``xpath`` finds under ``root``, or None.  It runs only when the
    body's count of a mark shows the cap may be exceeded, so ordinary documents pay one
    ``bytes.count`` per cap."""
    found = xpath(root)
    if not found:
        return None
    assert isinstance(found, list) and isinstance(found[0], etree._Element)
    return found[0]


def _syntax_error(exc: etree.XMLSyntaxError, limits: Limits) -> Exception:
    msg = str(exc.msg or exc)
    if "Excessive depth" in msg:
        return DocumentTooDeep(
            f"elements nest deeper than {limits.max_depth} levels (parser stopped at line "
            f"{exc.lineno})",
            hint="flatten the document; extension content must stay shallow",
        )
    # With no DOCTYPE, an entity reference other than the five predefined ones is undefined.
    hint = (
        "use only the predefined entities (&lt; &gt; &amp; &quot; &apos;)"
        if "ntity" in msg
        else "check the document with an XML parser"
    )
    return MalformedDocument(f"not well-formed XML: {msg}", hint=hint)


def element_path(el: etree._Element) -> str:
    """``/root/child[2]/leaf``: local names, with a position only where siblings repeat."""
    steps: list[str] = []
    node: etree._Element | None = el
    while node is not None:
        name = node.tag.rpartition("}")[2]  # (etree.QName refuses a name with colons)
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))
