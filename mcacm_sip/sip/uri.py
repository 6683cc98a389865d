"""One URI value type: parse, RFC 3261 §19.1.4 equivalence, serialise.

Every identity the project compares — MC service IDs and functional aliases read from an ACM body,
AORs in the registrar, peer PSIs, configured users — is compared as a :class:`Uri`, never as a
string.  ``Uri.__eq__`` is the RFC's equivalence and ``__hash__`` agrees with it, so a ``Uri`` keys
a dict or a set::

    >>> Uri.parse("sip:%61lice@AtLanTa.CoM") == Uri.parse("sip:alice@atlanta.com;lr")
    True

RFC 3261 §19.1.4, as implemented here:

- ``sip`` and ``sips`` never match; the scheme itself is case-insensitive.
- userinfo (user, password) is case-sensitive; every other part is case-insensitive.
- a character outside RFC 2396's reserved set equals its ``%HH`` escape; an escaped reserved
  character does not equal the character itself.
- user, password, host and port must match; an omitted part (e.g. the default port) does not
  match a present one.
- the ``user``, ``ttl``, ``method``, ``maddr`` and ``transport`` parameters must be in both or
  neither (the RFC's prose names the first four, its examples add ``transport``); any parameter in
  both must match; any other parameter in only one is ignored.
- headers (``?h=v``) must be present in both and match; order is not significant.

``tel`` URIs (RFC 3966 §4) compare the number without visual separators, parameters as above.
Any other scheme compares scheme-insensitively and the rest exactly.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from functools import lru_cache

from ..text import ascii_int

__all__ = [
    "InvalidUri",
    "Uri",
    "addr_spec",
    "address_of_record",
    "identity",
    "registrar_uri",
    "same_identity",
    "try_identity",
    "uri_glob_match",
    "uri_host",
    "uri_scheme",
]


class InvalidUri(ValueError):
    """Text that is not a URI this module understands; the message says why."""


_RESERVED = frozenset(";/?:@&=+$,")  # RFC 2396 2.2
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")
# what may stand unescaped in each part (RFC 3261 25.1); anything else is escaped when normalised
_USER_OK = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_OK = _UNRESERVED | frozenset("&=+$,")
_PARAM_OK = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_OK = _UNRESERVED | frozenset("[]/?:+$")
_HEX = frozenset("0123456789abcdefABCDEF")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.?\Z")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}\Z", re.ASCII)
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_TEL_VISUAL = str.maketrans("", "", "-.()")

MUST_MATCH = frozenset({"user", "ttl", "method", "maddr", "transport"})
"""URI parameters that must be in both URIs or in neither (§19.1.4)."""


def _normalise(text: str, allowed: frozenset[str], what: str) -> str:
    """The canonical spelling of one URI part: escapes of unreserved characters decoded, other
    escapes in upper-case hex, characters not allowed literally escaped (UTF-8)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            hh = text[i + 1:i + 3]
            if len(hh) != 2 or not set(hh) <= _HEX:
                raise InvalidUri(f"bad escape {text[i:i + 3]!r} in the {what}")
            ch = chr(int(hh, 16))
            out.append(ch if ch in _UNRESERVED else "%" + hh.upper())
            i += 3
            continue
        if c in allowed:
            out.append(c)
        elif c in _RESERVED:
            raise InvalidUri(f"{c!r} may not stand unescaped in the {what}")
        elif c.isprintable() and not c.isspace() and c not in '"<>\\^`{|}':
            # lax on receive: an unescaped character the grammar does not allow (e.g. a
            # non-ASCII letter) is taken as its UTF-8 escape
            out.extend(f"%{b:02X}" for b in c.encode())
        else:
            raise InvalidUri(f"{c!r} in the {what}")
        i += 1
    return "".join(out)


def _host(text: str) -> str:
    if text.startswith("["):
        try:
            if not text.endswith("]") or not _IPV6.match(text[1:-1]):
                raise ValueError(text)
            return ipaddress.IPv6Address(text[1:-1]).compressed  # ::1 == 0::1 == 0:0::1
        except ValueError:
            raise InvalidUri(f"bad IPv6 reference {text!r}") from None
    if _IPV4.match(text):
        if any(int(part) > 255 for part in text.split(".")):
            raise InvalidUri(f"bad IPv4 address {text!r}")
        return text
    if not text.isascii() or not _HOSTNAME.match(text):
        raise InvalidUri(f"bad host {text!r}")
    return text.lower()


def _port(text: str) -> int:
    port = ascii_int(text) if len(text) <= 5 else None  # ASCII DIGIT only (RFC 3261 25.1)
    if port is None or port > 65535:
        raise InvalidUri(f"bad port {text!r}")
    return port


def _params(text: str, what: str) -> tuple[tuple[str, str | None], ...]:
    """``;a=B;c`` -> (("a", "b"), ("c", None)): names and values lower-cased (case-insensitive)."""
    out: dict[str, str | None] = {}
    for part in text.split(";")[1:] if text else ():
        name, eq, value = part.partition("=")
        name = _normalise(name, _PARAM_OK, what).lower()
        if not name:
            raise InvalidUri(f"empty {what} name")
        out[name] = _normalise(value, _PARAM_OK, what).lower() if eq else None
    return tuple(out.items())


def _headers(text: str) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for part in text.split("&") if text else ():
        name, _, value = part.partition("=")
        name = _normalise(name, _HEADER_OK, "header").lower()
        if not name:
            raise InvalidUri("empty header name")
        out[name] = _normalise(value, _HEADER_OK, "header").lower()
    return tuple(sorted(out.items()))


@dataclass(frozen=True, slots=True, eq=False)
class Uri:
    """A parsed URI; parts are in canonical spelling (see :func:`_normalise`)."""

    scheme: str
    """Lower case: ``sip``, ``sips``, ``tel`` or another scheme."""
    user: str | None = None
    password: str | None = None
    host: str = ""
    """Lower case; an IPv6 address without brackets.  Empty for tel and opaque URIs."""
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    """Names and values lower case, in the order written (duplicates: the last one)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Sorted by name."""
    opaque: str = ""
    """The rest of a URI of another scheme, as written."""
    text: str = field(default="", compare=False)
    """The URI as it was written (for logs and for echoing a peer's own spelling)."""
    # identities are parsed once (``identity`` caches) and hashed and printed per message:
    # both are kept after the first time
    _hash: int | None = field(default=None, init=False, repr=False, compare=False)
    _canonical: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> Uri:
        """Parse an addr-spec (no display name, no ``<>``); raise :class:`InvalidUri`."""
        return _parse(text)

    # ------------------------------------------------------------------ equivalence

    def _must_match(self) -> tuple[tuple[str, str | None], ...]:
        return tuple(sorted(p for p in self.params if p[0] in MUST_MATCH))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Uri):
            return NotImplemented
        if (self.scheme, self.user, self.password, self.host, self.port, self.headers,
                self.opaque) != (other.scheme, other.user, other.password, other.host,
                                 other.port, other.headers, other.opaque):
            return False
        if self._must_match() != other._must_match():
            return False
        mine, theirs = dict(self.params), dict(other.params)
        return all(theirs[k] == v for k, v in mine.items() if k in theirs)

    def __hash__(self) -> int:
        if self._hash is None:
            # only what equal URIs must share: parameters outside MUST_MATCH may differ
            object.__setattr__(self, "_hash", hash((
                self.scheme, self.user, self.password, self.host, self.port, self.headers,
                self.opaque, self._must_match())))
        assert self._hash is not None
        return self._hash

    # ------------------------------------------------------------------ derived values

    @property
    def aor(self) -> Uri:
        """RFC 3261 10.3 step 5: the address of record, ``scheme:user@host[:port]``."""
        if not (self.params or self.headers or self.password):
            return self
        bare = replace(self, password=None, params=(), headers=())
        return replace(bare, text=str(bare))

    def param(self, name: str) -> str | None:
        """A parameter's (lower-case) value; "" for a parameter without a value."""
        for key, value in self.params:
            if key == name:
                return "" if value is None else value
        return None

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        """The canonical spelling: equivalent URIs without ignored parameters print alike."""
        if self._canonical is None:
            object.__setattr__(self, "_canonical", self._spell())
        assert self._canonical is not None
        return self._canonical

    def _spell(self) -> str:
        if self.scheme not in ("sip", "sips", "tel"):
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.scheme == "tel":
            parts.append(self.user or "")
        else:
            if self.user is not None:
                parts.append(self.user)
                if self.password is not None:
                    parts += [":", self.password]
                parts.append("@")
            parts.append(self.hostport)
        parts += [f";{k}" if v is None else f";{k}={v}" for k, v in self.params]
        if self.headers:
            parts += ["?", "&".join(f"{k}={v}" for k, v in self.headers)]
        return "".join(parts)

    def __repr__(self) -> str:
        return f"Uri({self.text or str(self)!r})"


def _parse(text: str) -> Uri:
    raw = text.strip()
    scheme, colon, rest = raw.partition(":")
    if not colon or not _SCHEME.match(scheme):
        raise InvalidUri(f"{text!r} has no scheme (expected e.g. sip:user@host)")
    scheme = scheme.lower()
    if not rest:
        raise InvalidUri(f"{text!r} is empty after the scheme")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        number = _normalise(number, _USER_OK, "telephone number").translate(_TEL_VISUAL)
        if not number:
            raise InvalidUri(f"{text!r} has no number")
        return Uri("tel", user=number, params=_params(";" + params if params else "",
                                                      "parameter"), text=raw)
    if scheme not in ("sip", "sips"):
        return Uri(scheme, opaque=rest, text=raw)
    # '@' cannot stand unescaped after the userinfo (RFC 3261 25.1), but '?' and ';' can stand
    # in the user part: the last '@' ends the userinfo
    userinfo, at, hostpart = rest.rpartition("@")
    user = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        user = _normalise(user, _USER_OK, "user part")
        if not user:
            raise InvalidUri(f"{text!r} has an empty user part")
        password = _normalise(pw, _PASSWORD_OK, "password") if colon else None
    hostpart, _, headers = hostpart.partition("?")
    hostport, semi, params = hostpart.partition(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        host_text, port_text = hostport[:end + 1], hostport[end + 1:]
        if end < 0 or (port_text and not port_text.startswith(":")):
            raise InvalidUri(f"bad IPv6 reference in {text!r}")
        port_text = port_text[1:] if port_text else ""
        has_port = bool(hostport[end + 1:])
    else:
        host_text, sep, port_text = hostport.partition(":")
        has_port = bool(sep)
    if not host_text:
        raise InvalidUri(f"{text!r} has no host")
    return Uri(scheme, user, password, _host(host_text),
               _port(port_text) if has_port else None,
               _params(semi + params, "parameter"), _headers(headers), text=raw)


def uri_scheme(text: str) -> str | None:
    """The scheme of a URI, lower case (RFC 3261 25.1 ``scheme ":"``), or None when the text
    does not start with one (e.g. ``<sip:...>``, RFC 4475 3.1.2.7). Nothing after it is read."""
    scheme, colon, _ = text.partition(":")
    return scheme.lower() if colon and _SCHEME.match(scheme) else None


@lru_cache(maxsize=4096)  # identities repeat; a pure function of a string
def identity(text: str) -> Uri:
    """The :class:`Uri` of an identity given as text (cached); raise :class:`InvalidUri`."""
    return _parse(text)


def try_identity(text: str | None) -> Uri | None:
    """:func:`identity`, or None for text that is no URI (or None): for lookups of a name taken
    from a message, where an unparseable name simply matches nobody."""
    if text is None:
        return None
    try:
        return identity(text)
    except InvalidUri:
        return None


@lru_cache(maxsize=4096)  # per request on the registrar's and the trust's path
def address_of_record(text: str | Uri | None) -> Uri | None:
    """RFC 3261 10.3 step 5: the address of record a SIP or SIPS URI names (no parameters, no
    headers, no password); None for text that is no SIP or SIPS URI with a host.  Every
    §19.1.4 spelling of one AOR gives an equal value, and ``str()`` of it is one text."""
    u = text if isinstance(text, Uri) else try_identity(text)
    if u is None or u.scheme not in ("sip", "sips") or not u.host:
        return None
    return u.aor


def addr_spec(value: str) -> str:
    """The URI of a header value: a name-addr's ``<...>`` or an addr-spec without the header's
    parameters (RFC 3261 20.10: ``"A" <sip:a@h;lr>;tag=1`` -> ``sip:a@h;lr``,
    ``sip:a@h;tag=1`` -> ``sip:a@h``)."""
    value = value.strip()
    lt, gt = value.find("<"), value.rfind(">")
    if 0 <= lt < gt:
        return value[lt + 1 : gt].strip()
    return value.split(";", 1)[0].strip()


@lru_cache(maxsize=1024)
def uri_host(text: str) -> str:
    """The host of a URI or header value, lower case, an IPv6 address without brackets:
    ``<sip:alice@Host.example:5060;p>`` -> ``host.example``.  Never raises: for text that is no
    URI, the part between ``@`` (if any) and the port, lower-cased (a name for log and Warning
    lines, which nothing compares)."""
    uri = addr_spec(text)
    u = try_identity(uri)
    if u is not None and u.host:
        return u.host
    host = uri.split(":", 1)[-1].rpartition("@")[2]
    if host.startswith("["):
        return host[1:host.find("]")].lower()
    for sep in (";", "?", ":"):
        host = host.split(sep, 1)[0]
    return host.lower()


def registrar_uri(text: str | Uri) -> str:
    """The Request-URI of a REGISTER to the registrar of ``text``'s domain (RFC 3261 10.2:
    "the userinfo and "@" components of the SIP URI MUST NOT be present"):
    ``sip:acms@Primary.Example:5070`` -> ``sip:primary.example:5070``; ``sips`` stays."""
    u = text if isinstance(text, Uri) else identity(addr_spec(text))
    return f"{'sips' if u.scheme == 'sips' else 'sip'}:{u.hostport}"


def same_identity(a: str | Uri, b: str | Uri) -> bool:
    """Whether two identities are equivalent (§19.1.4); text that is no URI equals nothing."""
    try:
        ua = a if isinstance(a, Uri) else identity(a)
        ub = b if isinstance(b, Uri) else identity(b)
    except InvalidUri:
        return False
    return ua == ub


def uri_glob_match(uri: str | Uri, pattern: str) -> bool:
    """Whether ``uri`` matches a configured pattern such as ``sip:*@primary.example``.

    The pattern is a URI whose user part and host may hold ``*`` and ``?`` wildcards; each part is
    compared as §19.1.4 compares it (user case-sensitive after unescaping, host
    case-insensitive); a port in the pattern must be the URI's; parameters of the URI are
    ignored.  A pattern that is no URI matches nothing.
    """
    try:
        u = uri if isinstance(uri, Uri) else identity(uri)
        p = _glob_pattern(pattern)
    except InvalidUri:
        return False
    if p.scheme != u.scheme or (p.port is not None and p.port != u.port):
        return False
    if p.user is None:
        user_ok = u.user is None
    else:
        user_ok = u.user is not None and fnmatchcase(u.user, p.user)
    return user_ok and fnmatchcase(u.host, p.host)


@lru_cache(maxsize=256)
def _glob_pattern(pattern: str) -> Uri:
    # wildcards are not URI characters: parse with stand-ins, then put them back
    stand_in = pattern.replace("*", "wildcardstar").replace("?", "wildcardquery")
    u = _parse(stand_in)

    def back(s: str) -> str:
        return s.replace("wildcardstar", "*").replace("wildcardquery", "?")
    return replace(u, user=None if u.user is None else back(u.user), host=back(u.host))
