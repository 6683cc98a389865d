"""One class per SIP header the project reads or writes, each parsing and writing itself.

The pattern is Sippy's (``SipHeader``/``SipWarning``): a small frozen value with
``parse(value)`` and ``__str__``.  Parsing is lax where RFC 3261 25 lets a receiver be (linear
white space around separators, case of tokens and parameter names, numbers larger than the
header allows where the RFC says how to read them) and refuses the rest with a precise
:class:`InvalidHeader` subclass; numbers are ASCII ``DIGIT`` only
(:func:`mcacm_sip.text.ascii_int`).
Writing is strict: ``str(x)`` raises :class:`InvalidHeader` for a value we must not send (a line
break, a non-token, a number out of range), so ``parse(str(x)) == x`` for every value that writes.

The message parser keeps header values as text (``Request.header``); these objects are built
only where a value is read, so the receive path pays nothing for headers nobody looks at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import ClassVar, TypeVar

from ..text import header_text, is_ascii_digits

__all__ = [
    "MAX_DELTA_SECONDS",
    "BadNumber",
    "BadSyntax",
    "CSeq",
    "Contact",
    "ContentType",
    "Event",
    "Expires",
    "InvalidHeader",
    "MinExpires",
    "MissingPart",
    "NameAddr",
    "NumberTooLarge",
    "Path",
    "RecordRoute",
    "RetryAfter",
    "Route",
    "SubscriptionState",
    "Via",
    "Warning",
    "cseq_parts",
    "delta_seconds",
    "media_type",
    "read_number",
    "warning_value",
]

MAX_DELTA_SECONDS = 2**32 - 1
"""RFC 3261 20.19 / 25.1: delta-seconds above this are read as this value."""
MAX_CSEQ = 2**31 - 1
"""RFC 3261 8.1.1.5 / 20.16: a CSeq number is below 2**31."""

_TOKEN = re.compile(r"[!%'*+\-.0-9A-Z_`a-z~]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
Params = tuple[tuple[str, "str | None"], ...]


# --------------------------------------------------------------------------------------------
# errors


class InvalidHeader(ValueError):
    """A header value that cannot be read (on receive) or must not be written (on send)."""

    def __init__(self, header: str, detail: str) -> None:
        super().__init__(f"{header}: {detail}")
        self.header = header
        self.detail = detail


class MissingPart(InvalidHeader):
    """A part the header's grammar requires is absent (e.g. a CSeq without its method)."""


class BadNumber(InvalidHeader):
    """A number that is not ``1*DIGIT`` in ASCII (a sign, a space, another script's digits)."""


class NumberTooLarge(InvalidHeader):
    """A number beyond what the header allows (a CSeq of 2**31, a Via port of 65536)."""


class BadSyntax(InvalidHeader):
    """Any other departure from the header's grammar (a non-token, an unclosed quote)."""


# --------------------------------------------------------------------------------------------
# shared pieces


def _is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def read_number(header: str, text: str, limit: int | None = None, *, cap: bool = False) -> int:
    """``1*DIGIT`` (RFC 3261 25.1, ASCII only).  Above ``limit``: ``limit`` when ``cap``,
    else NumberTooLarge.  Any length is read (int() refuses over 4300 digits)."""
    text = text.strip()
    if len(text) < 10 and text.isascii() and text.isdigit():  # the common case, fast
        short = int(text)
        if limit is None or short <= limit:
            return short
    if not text:
        raise MissingPart(header, "number missing")
    if not is_ascii_digits(text):
        raise BadNumber(header, f"not a number: {text[:40]!r}")
    significant = text.lstrip("0")
    value = int(significant or "0") if len(significant) <= 40 else None
    if limit is not None and (value is None or value > limit):
        if cap:
            return limit
        raise NumberTooLarge(header, f"{text[:40]} is above {limit}")
    if value is None:
        raise NumberTooLarge(header, f"{text[:40]}... has {len(text)} digits")
    return value


def delta_seconds(header: str, text: str) -> int:
    """RFC 3261 20.19 / 25.1 delta-seconds, larger values read as 2**32-1."""
    return read_number(header, text, MAX_DELTA_SECONDS, cap=True)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` where it is not inside a quoted-string or ``<...>``."""
    parts: list[str] = []
    start = 0
    quoted = False
    angle = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == sep and not angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise BadSyntax("header", "unclosed quoted-string")
    parts.append(text[start:])
    return parts


def _parse_params(header: str, text: str) -> Params:
    """``;name[=value]`` items (RFC 3261 25.1 generic-param): names lowercased, white space
    around ``;`` and ``=`` dropped, an empty item (``;;``) skipped."""
    out: list[tuple[str, str | None]] = []
    try:
        items = _split_outside_quotes(text, ";")
    except BadSyntax:
        raise BadSyntax(header, "unclosed quoted-string in a parameter") from None
    for item in items:
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not name:
            if eq or item.strip():
                raise BadSyntax(header, f"parameter without a name: {item!r}")
            continue
        if not _is_token(name):
            raise BadSyntax(header, f"bad parameter name {name!r}")
        out.append((name, value.strip() if eq else None))
    return tuple(out)


def _param(params: Params, name: str) -> str | None:
    return next((v for k, v in params if k == name), None)


def _check_text(header: str, text: str) -> str:
    """Anything we write into a header line: no CR, LF or other control (header injection)."""
    if any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in text):
        raise BadSyntax(header, f"control character in {text!r}")
    return text


def _write_params(header: str, params: Params) -> str:
    out = []
    for name, value in params:
        if not _is_token(name) or name != name.lower():
            raise BadSyntax(header, f"bad parameter name {name!r}")
        if value is None:
            out.append(";" + name)
        else:
            _check_text(header, value)
            if not value or (any(c in value for c in ";, \t") and not value.startswith('"')):
                raise BadSyntax(header, f"parameter value needs quoting: {value!r}")
            out.append(f";{name}={value}")
    return "".join(out)


_H = TypeVar("_H")


# --------------------------------------------------------------------------------------------
# numbers


@dataclass(frozen=True, slots=True)
class _Seconds:
    """A header that is one delta-seconds (RFC 3261 25.1)."""

    name: ClassVar[str] = ""
    seconds: int

    @classmethod
    def parse(cls: type[_H], value: str) -> _H:
        return cls(delta_seconds(cls.name, value))  # type: ignore[call-arg, attr-defined]

    def __str__(self) -> str:
        if not 0 <= self.seconds <= MAX_DELTA_SECONDS:
            raise NumberTooLarge(self.name, f"{self.seconds} is outside 0..{MAX_DELTA_SECONDS}")
        return str(self.seconds)


@dataclass(frozen=True, slots=True)
class Expires(_Seconds):
    """``Expires: 3600`` (RFC 3261 20.19); above 2**32-1 reads as 2**32-1."""

    name: ClassVar[str] = "Expires"


@dataclass(frozen=True, slots=True)
class MinExpires(_Seconds):
    """``Min-Expires: 60`` (RFC 3261 20.23)."""

    name: ClassVar[str] = "Min-Expires"


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """``Retry-After: 18000;duration=3600`` / ``Retry-After: 120 (I'm in a meeting)``
    (RFC 3261 20.33: delta-seconds [comment] *(;param))."""

    name: ClassVar[str] = "Retry-After"
    seconds: int
    comment: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, value: str) -> RetryAfter:
        cut = min((i for i in (value.find("("), value.find(";")) if i >= 0), default=len(value))
        number_text, rest = value[:cut], value[cut:]
        comment: str | None = None
        if rest.startswith("("):  # RFC 3261 25.1 comment: nested parentheses allowed
            depth = end = 0
            while end < len(rest):
                depth += (rest[end] == "(") - (rest[end] == ")")
                if depth == 0:
                    break
                end += 1
            if depth:
                raise BadSyntax(cls.name, "unclosed comment")
            comment, rest = rest[1:end], rest[end + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise BadSyntax(cls.name, "text after the comment")
        return cls(delta_seconds(cls.name, number_text), comment,
                   _parse_params(cls.name, rest[1:]))

    @property
    def duration(self) -> int | None:
        value = _param(self.params, "duration")
        return None if value is None else delta_seconds(self.name, value)

    def __str__(self) -> str:
        if not 0 <= self.seconds <= MAX_DELTA_SECONDS:
            raise NumberTooLarge(self.name, f"{self.seconds} is outside 0..{MAX_DELTA_SECONDS}")
        out = str(self.seconds)
        if self.comment is not None:
            _check_text(self.name, self.comment)
            if "(" in self.comment or ")" in self.comment:
                raise BadSyntax(self.name, "parentheses inside the comment")
            out += f" ({self.comment})"
        return out + _write_params(self.name, self.params)


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: 4711 INVITE`` (RFC 3261 20.16: 1*DIGIT LWS Method, the number below 2**31)."""

    name: ClassVar[str] = "CSeq"
    number: int
    method: str

    @classmethod
    def parse(cls, value: str) -> CSeq:
        return cls(*cseq_parts(value))

    def __str__(self) -> str:
        if not 0 <= self.number <= MAX_CSEQ:
            raise NumberTooLarge(self.name, f"{self.number} is outside 0..{MAX_CSEQ}")
        if not _is_token(self.method):
            raise BadSyntax(self.name, f"bad method {self.method!r}")
        return f"{self.number} {self.method}"


# Methods known to be tokens: a response's CSeq method is one of these, not matched again
_METHODS = frozenset({"ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS",
                      "PRACK", "PUBLISH", "REFER", "REGISTER", "SUBSCRIBE", "UPDATE"})


def cseq_parts(value: str, method: str | None = None) -> tuple[int, str]:
    """:meth:`CSeq.parse` without building the object: the message parser's per-message
    reading (RFC 3261 20.16).  ``method``: a token already checked (the request line's), which
    the CSeq method then need not be checked against again when it is the same."""
    parts = value.split()
    if len(parts) != 2:
        raise MissingPart(CSeq.name, f"want 'number method': {value!r}") if len(parts) < 2 \
            else BadSyntax(CSeq.name, f"want 'number method': {value!r}")
    number, cseq_method = parts
    if len(number) < 10 and number.isascii() and number.isdigit():
        number_value = int(number)  # the common case: short enough to be below 2**31
    else:
        number_value = read_number(CSeq.name, number, MAX_CSEQ)
    if cseq_method != method and cseq_method not in _METHODS \
            and _TOKEN.fullmatch(cseq_method) is None:
        raise BadSyntax(CSeq.name, f"bad method {cseq_method!r}")
    return number_value, cseq_method


# --------------------------------------------------------------------------------------------
# Via


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 20.42): ``SIP/2.0/UDP host[:port];params``.

    Lax on receive: white space around the ``/`` of sent-protocol and around ``:`` and ``;``
    (RFC 3261 25.1 SLASH, COLON, SEMI are SWS-tolerant; RFC 4475 3.1.1.1), the transport
    upper-cased, parameter names lower-cased.
    """

    name: ClassVar[str] = "Via"
    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, value: str) -> Via:
        sent, _, param_text = value.partition(";")
        pieces = sent.split("/")
        if len(pieces) != 3:
            raise MissingPart(cls.name, f"want 'SIP/2.0/transport sent-by': {value!r}")
        proto_name, version, rest = (p.strip() for p in pieces)
        transport, _, sent_by = rest.partition(" ") if " " in rest else rest.partition("\t")
        transport = transport.strip()
        sent_by = sent_by.strip()
        if not (_is_token(proto_name) and _is_token(version) and _is_token(transport)):
            raise BadSyntax(cls.name, f"bad sent-protocol in {value!r}")
        if not sent_by:
            raise MissingPart(cls.name, "sent-by missing")
        host, port = _host_port(cls.name, sent_by)
        if not host.isascii():  # RFC 3261 25.1: hostname, IPv4 and IPv6 are ASCII
            raise BadSyntax(cls.name, f"host is not ASCII: {host!r}")
        return cls(transport.upper(), host, port, _parse_params(cls.name, param_text),
                   f"{proto_name.upper()}/{version}")

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def has(self, name: str) -> bool:
        """Whether the parameter is present (``rport`` usually comes without a value)."""
        return any(k == name for k, _ in self.params)

    def with_param(self, name: str, value: str | None) -> Via:
        """This Via with parameter ``name`` set to ``value`` (replaced in place, else added)."""
        if not self.has(name):
            return replace(self, params=(*self.params, (name, value)))
        return replace(self, params=tuple((k, value if k == name else v)
                                          for k, v in self.params))

    def echo(self) -> str:
        """The value as a peer wrote it, for the Via we copy back into our responses (RFC 3261
        8.2.6.2): unlike ``str()`` it writes what lax parsing let through (an unquoted value
        with a space, an empty value), since refusing our own echo would leave the request
        unanswered."""
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        return f"{self.protocol}/{self.transport} {sent_by}{params}"

    def __str__(self) -> str:
        if not _is_token(self.transport) or not self.host or any(c in self.host for c in " ;,"):
            raise BadSyntax(self.name, f"bad transport or host: {self.transport!r} {self.host!r}")
        _check_text(self.name, self.host)
        sent_by = self.host if self.port is None else f"{self.host}:{_port(self.name, self.port)}"
        return f"{self.protocol}/{self.transport} {sent_by}" + _write_params(self.name, self.params)


def _port(header: str, port: int) -> int:
    if not 0 < port < 65536:
        raise NumberTooLarge(header, f"port {port} is outside 1..65535")
    return port


def _host_port(header: str, text: str) -> tuple[str, int | None]:
    """``host[:port]`` with an IPv6 reference kept in brackets (RFC 3261 25.1 hostport)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise BadSyntax(header, f"unclosed IPv6 reference {text!r}")
        host, rest = text[: close + 1], text[close + 1 :].strip()
    else:
        host, colon, port_text = text.partition(":")
        rest = colon + port_text
        host = host.strip()
    if any(c.isspace() for c in host) or not host.strip("[]"):
        raise BadSyntax(header, f"bad host {host!r}")
    if not rest:
        return host, None
    if not rest.startswith(":"):
        raise BadSyntax(header, f"text after the host: {rest!r}")
    return host, _port(header, read_number(header, rest[1:], 65535) or 0)


# --------------------------------------------------------------------------------------------
# name-addr headers


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``["display"] <uri>;params`` or ``uri;params`` (RFC 3261 20.10, 25.1 name-addr /
    addr-spec): one value of Contact, Route, Record-Route, Path, From or To.  ``uri`` is the
    URI's text as written (compare it as :class:`mcacm_sip.sip.uri.Uri`)."""

    name: ClassVar[str] = "Name-Addr"
    star_ok: ClassVar[bool] = False
    uri: str
    display: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls: type[_N], value: str) -> _N:
        value = value.strip()
        if value == "*" and cls.star_ok:
            return cls("*")  # RFC 3261 20.10: "Contact: *" (REGISTER removing all bindings)
        quoted = _QUOTED.match(value) if value.startswith('"') else None
        lt = value.find("<", quoted.end() if quoted else 0)
        if lt >= 0:
            gt = value.find(">", lt)
            if gt < 0:
                raise BadSyntax(cls.name, f"unclosed '<' in {value!r}")
            display_text = value[:lt].strip()
            display: str | None = None
            if display_text.startswith('"'):
                found = _QUOTED.fullmatch(display_text)
                if found is None:
                    raise BadSyntax(cls.name, f"bad display name {display_text!r}")
                display = re.sub(r"\\(.)", r"\1", found.group(1))
            elif display_text:
                display = " ".join(display_text.split())
            uri = value[lt + 1 : gt].strip()
            rest = value[gt + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise BadSyntax(cls.name, f"text after '>': {rest!r}")
            param_text = rest[1:]
        else:
            display = None
            uri, _, param_text = value.partition(";")  # RFC 3261 20.10: params are the header's
            uri = uri.strip()
        if not uri:
            raise MissingPart(cls.name, "URI missing")
        if ":" not in uri:
            raise BadSyntax(cls.name, f"not a URI: {uri!r}")
        return cls(uri, display, _parse_params(cls.name, param_text))

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def __str__(self) -> str:
        _check_text(self.name, self.uri)
        if not self.uri or ":" not in self.uri or any(c in self.uri for c in "<> "):
            raise BadSyntax(self.name, f"bad URI {self.uri!r}")
        out = f"<{self.uri}>"
        if self.display is not None:
            _check_text(self.name, self.display)
            quoted = self.display.replace("\\", "\\\\").replace('"', '\\"')
            out = f'"{quoted}" {out}'
        return out + _write_params(self.name, self.params)


_N = TypeVar("_N", bound=NameAddr)


@dataclass(frozen=True, slots=True)
class Contact(NameAddr):
    """One Contact value (RFC 3261 20.10); ``Contact: *`` has the uri ``*``."""

    name: ClassVar[str] = "Contact"
    star_ok: ClassVar[bool] = True

    @property
    def is_star(self) -> bool:
        return self.uri == "*"

    @property
    def expires(self) -> int | None:
        """The ``expires`` parameter as delta-seconds (RFC 3261 20.10), None when absent."""
        value = self.param("expires")
        return None if value is None else delta_seconds(self.name, value)

    def __str__(self) -> str:
        if self.is_star:
            if self.display is not None or self.params:
                raise BadSyntax(self.name, "'*' takes no display name or parameters")
            return "*"
        return NameAddr.__str__(self)


@dataclass(frozen=True, slots=True)
class Route(NameAddr):
    """One Route value (RFC 3261 20.34)."""

    name: ClassVar[str] = "Route"


@dataclass(frozen=True, slots=True)
class RecordRoute(NameAddr):
    """One Record-Route value (RFC 3261 20.30)."""

    name: ClassVar[str] = "Record-Route"


@dataclass(frozen=True, slots=True)
class Path(NameAddr):
    """One Path value (RFC 3327 4: ``Path: <sip:P1.EXAMPLE.COM;lr>``)."""

    name: ClassVar[str] = "Path"


# --------------------------------------------------------------------------------------------
# Warning


@dataclass(frozen=True, slots=True)
class Warning:
    """``Warning: 399 host "text"`` (RFC 3261 20.43: 3DIGIT SP warn-agent SP warn-text).

    :meth:`ours` makes any text safe to write (one line, control characters replaced, at most
    200 characters: :func:`mcacm_sip.text.header_text`).
    """

    name: ClassVar[str] = "Warning"
    code: int
    agent: str
    text: str

    @classmethod
    def ours(cls, host: str, text: str, code: int = 399) -> Warning:
        return cls(code, host, header_text(text))

    @classmethod
    def parse(cls, value: str) -> Warning:
        value = value.strip()
        code_text, _, rest = value.partition(" ")
        if not rest:
            raise MissingPart(cls.name, f"want 'code agent \"text\"': {value!r}")
        if len(code_text) != 3:
            raise BadNumber(cls.name, f"warn-code is not 3 digits: {code_text!r}")
        code = read_number(cls.name, code_text)
        agent, _, text = rest.strip().partition(" ")
        text = text.strip()
        if not text:
            raise MissingPart(cls.name, "warn-text missing")
        found = _QUOTED.fullmatch(text)
        if found is None:
            raise BadSyntax(cls.name, f"warn-text is not a quoted-string: {text!r}")
        return cls(code, agent, re.sub(r"\\(.)", r"\1", found.group(1)))

    def __str__(self) -> str:
        if not 300 <= self.code <= 399:
            raise NumberTooLarge(self.name, f"warn-code {self.code} is outside 300..399")
        if not self.agent or any(c.isspace() for c in self.agent):
            raise BadSyntax(self.name, f"bad warn-agent {self.agent!r}")
        _check_text(self.name, self.agent)
        _check_text(self.name, self.text)
        quoted = self.text.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.code} {self.agent} "{quoted}"'


def warning_value(host: str, text: str) -> str:
    """``399 <host> "<text>"``: the value of :meth:`Warning.ours`, written."""
    return str(Warning.ours(host, text))


# --------------------------------------------------------------------------------------------
# event framework (RFC 6665)


@dataclass(frozen=True, slots=True)
class Event:
    """``Event: presence;id=1`` (RFC 6665 8.2.1: event-type *(;event-param)).  The package
    is lower-cased on receive, as the project compares it."""

    name: ClassVar[str] = "Event"
    package: str
    params: Params = ()

    @classmethod
    def parse(cls, value: str) -> Event:
        token, _, rest = value.partition(";")
        token = token.strip().lower()
        if not token:
            raise MissingPart(cls.name, "event-type missing")
        if not _is_token(token):
            raise BadSyntax(cls.name, f"bad event-type {token!r}")
        return cls(token, _parse_params(cls.name, rest))

    @property
    def id(self) -> str | None:
        return _param(self.params, "id")

    def __str__(self) -> str:
        if not _is_token(self.package):
            raise BadSyntax(self.name, f"bad event-type {self.package!r}")
        return self.package + _write_params(self.name, self.params)


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """``Subscription-State: active;expires=60`` (RFC 6665 8.2.3: substate-value
    *(;subexp-params)); the state lower-cased on receive.  ``expires`` and ``retry-after``
    are delta-seconds when read."""

    name: ClassVar[str] = "Subscription-State"
    state: str
    params: Params = ()

    @classmethod
    def parse(cls, value: str) -> SubscriptionState:
        token, _, rest = value.partition(";")
        token = token.strip().lower()
        if not token:
            raise MissingPart(cls.name, "substate-value missing")
        if not _is_token(token):
            raise BadSyntax(cls.name, f"bad substate-value {token!r}")
        return cls(token, _parse_params(cls.name, rest))

    @classmethod
    def of(cls, state: str, *, expires: int | None = None, reason: str | None = None,
           retry_after: int | None = None) -> SubscriptionState:
        params: list[tuple[str, str | None]] = []
        if expires is not None:
            params.append(("expires", str(expires)))
        if reason is not None:
            params.append(("reason", reason))
        if retry_after is not None:
            params.append(("retry-after", str(retry_after)))
        return cls(state, tuple(params))

    def _seconds(self, key: str) -> int | None:
        value = _param(self.params, key)
        return None if value is None else delta_seconds(self.name, value)

    @property
    def expires(self) -> int | None:
        return self._seconds("expires")

    @property
    def retry_after(self) -> int | None:
        return self._seconds("retry-after")

    @property
    def reason(self) -> str | None:
        return _param(self.params, "reason")

    def __str__(self) -> str:
        if not _is_token(self.state):
            raise BadSyntax(self.name, f"bad substate-value {self.state!r}")
        return self.state + _write_params(self.name, self.params)


# --------------------------------------------------------------------------------------------
# Content-Type


def media_type(value: str | None) -> str | None:
    """``type/subtype`` of a Content-Type or Accept value, lowercased, without parameters; no
    check (the receive path's per-message reading; :class:`ContentType` reads the whole value)."""
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower() or None


@dataclass(frozen=True, slots=True)
class ContentType:
    """``Content-Type: application/vnd.3gpp.mcptt-info+xml;charset=UTF-8`` (RFC 3261 20.15:
    m-type SLASH m-subtype *(SEMI m-parameter)); type and subtype lower-cased on receive
    (RFC 2045 5.1: they are case-insensitive)."""

    name: ClassVar[str] = "Content-Type"
    type: str
    subtype: str
    params: Params = ()

    @classmethod
    def parse(cls, value: str) -> ContentType:
        media, _, rest = value.partition(";")
        major, slash, minor = media.partition("/")
        major, minor = major.strip().lower(), minor.strip().lower()
        if not slash or not major or not minor:
            raise MissingPart(cls.name, f"want 'type/subtype': {media.strip()!r}")
        if not (_is_token(major) and _is_token(minor)):
            raise BadSyntax(cls.name, f"bad media type {media.strip()!r}")
        return cls(major, minor, _parse_params(cls.name, rest))

    @property
    def media_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def __str__(self) -> str:
        if not (_is_token(self.type) and _is_token(self.subtype)):
            raise BadSyntax(self.name, f"bad media type {self.type!r}/{self.subtype!r}")
        return self.media_type + _write_params(self.name, self.params)
