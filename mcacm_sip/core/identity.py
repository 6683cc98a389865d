"""Identities in the procedure core: every comparison and every key goes through
:mod:`mcacm_sip.sip.uri` (RFC 3261 §19.1.4), never through the text as written.

- :func:`uid` is the :class:`~mcacm_sip.sip.uri.Uri` of an identity (cached); text that is no
  URI (an ACM body may carry one: its schema only asks for ``scheme:rest``) becomes an opaque
  value equal to nothing but the very same text, so bad input never raises.
- :func:`id_key` is the canonical text of an identity, the key of every dict, set and stored
  record keyed by one: equivalent spellings give the same key (parameters the RFC ignores when
  only one side has them are left out of it, decision: docs/decisions.md "Identity and
  authority").  A cached str: a lookup costs a string hash, not a URI comparison.
- :func:`same` compares two identities (§19.1.4).
- :func:`matches_pattern` is a configured pattern (``peers[].requesters``, policy conditions):
  ``*`` alone matches every identity, anything else is a URI glob (:func:`uri_glob_match`).

Flows keep the spelling they arrived with (we echo a peer's own text); only comparisons
normalise.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from functools import lru_cache
from typing import NewType

from mcacm_sip.acm.model import AcmFlow
from mcacm_sip.sip.uri import MUST_MATCH, InvalidUri, Uri, identity, uri_glob_match

__all__ = [
    "ANY",
    "IdKey",
    "flow_procedure",
    "id_key",
    "matches_any",
    "matches_pattern",
    "pattern_ok",
    "procedure_id",
    "same",
    "uid",
]

IdKey = NewType("IdKey", str)
"""The canonical text of an identity (:func:`id_key`): what identity-keyed dicts and sets are
keyed by.  A distinct type, so mypy refuses a key that did not go through :func:`id_key`."""

ANY = "*"
"""The pattern that matches every identity (the default of ``peers[].requesters``)."""


@lru_cache(maxsize=8192)
def uid(text: str) -> Uri:
    """The identity of ``text``: its parsed URI, or (no URI) an opaque value whose scheme no
    parse gives, so it equals only the same text."""
    try:
        return identity(text)
    except InvalidUri:
        return Uri("", opaque=text, text=text)


@lru_cache(maxsize=8192)
def id_key(text: str) -> IdKey:
    """Canonical text of an identity for keys: equivalent URIs give equal keys."""
    u = uid(text)
    if not u.scheme:
        return IdKey("!" + text)  # no URI: a key no URI's canonical text can be
    kept = tuple(sorted(p for p in u.params if p[0] in MUST_MATCH))
    return IdKey(str(replace(u, params=kept) if kept != u.params else u))


def same(a: str | None, b: str | None) -> bool:
    """Whether two identities (either may be absent) are the same party (§19.1.4)."""
    if a is None or b is None:
        return a is b
    if a == b:  # the same text names the same party (the common case: no URI compared)
        return True
    return _same_uris(a, b)


def _same_uris(a: str, b: str) -> bool:
    """:func:`same` of two present identities, compared as URIs."""
    if id_key(a) != id_key(b):  # the fields every pair of equal URIs shares (cached)
        return False
    ua, ub = uid(a), uid(b)
    # only a parameter both spell, with different values, still tells them apart
    return not (ua.params and ub.params) or ua == ub


def matches_pattern(text: str, pattern: str) -> bool:
    """Whether the identity ``text`` matches a configured pattern (``*``: any)."""
    return pattern == ANY or uri_glob_match(uid(text), pattern)


def matches_any(text: str, patterns: tuple[str, ...]) -> bool:
    """Whether the identity ``text`` matches one of ``patterns`` (:func:`matches_pattern`):
    a list holding ``*`` matches without a pattern's call (the default lists are ``("*",)``)."""
    return ANY in patterns or any(matches_pattern(text, p) for p in patterns)


def pattern_ok(pattern: str) -> bool:
    """Whether ``pattern`` can match anything: ``*`` or a URI glob such as ``sip:*@host``."""
    if pattern == ANY:
        return True
    scheme, _, rest = pattern.partition(":")
    if scheme.lower() in ("sip", "sips") and "@" not in rest and any(c in rest for c in "*?"):
        # sip:mike* would be a host pattern: user and host are matched separately
        return False
    probe = pattern.replace("*", "x").replace("?", "x")
    try:
        identity(probe)
    except InvalidUri:
        return False
    return True


_PROCEDURE_NS = uuid.UUID("5d1c8e4a-0f7b-4c1e-9a57-6d2b8f3e1a90")
"""Namespace of :func:`procedure_id` (RFC 4122 4.3 name-based UUIDs): fixed, so every node of
every release derives the same value."""
_PROCEDURE_NS_BYTES = _PROCEDURE_NS.bytes
try:  # CPython's own SHA-1: the same digest as OpenSSL's, whose set-up (its method fetched
    # per new hash) cost more than the digest itself
    from _sha1 import sha1 as _sha1  # type: ignore[import-not-found]
except ImportError:  # (a CPython built without it)
    _sha1 = hashlib.sha1
_PROCEDURE_HASH = _sha1(_PROCEDURE_NS_BYTES)
"""The SHA-1 state after the namespace: each procedure id continues a copy of it."""
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
"""RFC 4122 4.1.1: a hex digit of ``clock_seq_hi`` with its top two bits set to the variant
10x (the digit's two low bits kept)."""


def procedure_id(requester: str, transaction_id: str) -> str:
    """The routing and correlation value of one ACM procedure (the ``X-CID`` header,
    docs/decisions.md "Scale-out: the procedure header"): a name-based UUID (RFC 4122 4.3,
    version 5) of the requester's canonical identity and the origin's transaction id, as 32
    lower-case hex digits.  Every node that knows the request derives the same value, so the
    flows of one procedure hash alike at a dispatcher although their Call-IDs differ.  A
    routing hint only: nothing is authorised by it."""
    sha = _PROCEDURE_HASH.copy()
    sha.update(f"{id_key(requester)}\n{transaction_id}".encode())
    d = sha.hexdigest()
    # uuid.uuid5(...).hex without a UUID object, on the text of the digest's first 16 bytes:
    # RFC 4122 4.1.3 version 5 in the high nibble of time_hi (hex digit 12), 4.1.1 variant
    # 10x in the top bits of clock_seq_hi (hex digit 16)
    return f"{d[:12]}5{d[13:16]}{_VARIANT[d[16]]}{d[17:32]}"


def flow_procedure(flow: AcmFlow) -> str | None:
    """:func:`procedure_id` of a flow that names its procedure's requester: a request (its
    requester), a pending-data notification or download (the user, 10.17.3.1: each is a
    procedure of its own).  None for an indication or a response: they name only the
    transaction id, the sender takes the value from the request it answers."""
    requester = getattr(flow, "requester", None)
    who = requester.mc_service_id if requester is not None else getattr(flow, "user", None)
    return None if who is None else procedure_id(who, flow.transaction_id)
