"""SIP messages: a validating, typed wrapper around the aiosipua parser.

aiosipua (pinned) splits start line and headers, expands compact names, unfolds continuation
lines and splits comma lists. It does not check what a UAS must check before answering (SIP
version, mandatory headers, CSeq, Content-Length on datagrams, size caps) and its accessors raise
lazily; :func:`parse` does those checks once and exposes the result as plain attributes, raising
a typed :class:`SipParseError` that says what to answer. Responses are serialised here, not by
aiosipua, so what we echo is byte-for-byte what we received (RFC 3261 8.2.6.2).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any, NamedTuple, Protocol

from aiosipua import SipMessage, SipRequest, SipResponse
from aiosipua.headers import COMPACT_HEADERS, MULTI_INSTANCE_HEADERS, CaseInsensitiveDict
from aiosipua.message import _split_multi_value

from ..compiled import not_built, wanted
from ..text import ascii_int, is_ascii_digits
from .errors import SipParseError
from .headers import (
    _METHODS,
    InvalidHeader,
    NumberTooLarge,
    Via,
    cseq_parts,
    media_type,
    read_number,
)
from .uri import uri_scheme

# RFC 3261 7.3.3 compact forms, with the event framework's (RFC 6665 8.2.1 / 8.3.1:
# o Event, u Allow-Events) that aiosipua lacks
_COMPACT = {**COMPACT_HEADERS, "o": "event", "u": "allow-events"}


def _expand(name: str) -> str:
    return _COMPACT.get(name.lower(), name)


_STORE_KEYS: dict[str, str] = {}
"""A header name as asked for -> its key in a message's store (``_expand(name).lower()``):
the names asked for are the program's own few, two a request (capped at 256)."""


def _store_key(name: str) -> str:
    key = _STORE_KEYS.get(name)
    if key is None:
        key = _expand(name).lower()
        if len(_STORE_KEYS) < 256:
            _STORE_KEYS[name] = key
    return key


_FOLD = re.compile(r"\n[ \t]+")  # RFC 3261 7.3.1 line folding
_TOKEN = re.compile(r"[!%'*+\-.0-9A-Z_`a-z~]+")
# RFC 3261 25.1: sent-protocol = name SLASH version SLASH transport, SLASH = SWS "/" SWS
# (RFC 4475 3.1.1.1 spells it "SIP  /   2.0 /UDP").
# RFC 3261 7.3.1: only comma-list headers may appear twice; these carry one value (RFC 4475
# 3.3.8 and 3.3.9: a second Call-ID/To/From/CSeq/Max-Forwards/Content-Length is a 400).
_SINGLE = (
    ("call-id", "Call-ID"), ("to", "To"), ("from", "From"), ("cseq", "CSeq"),
    ("max-forwards", "Max-Forwards"), ("content-length", "Content-Length"),
)
_QUOTE_OR_ESCAPE = re.compile(r'\\.|"', re.DOTALL)

SIP_VERSION = "SIP/2.0"
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 8.1.1.7

_MANDATORY = (
    ("via", "Via"), ("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"),
)

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 183: "Session Progress",
    200: "OK", 202: "Accepted", 204: "No Notification",
    301: "Moved Permanently", 302: "Moved Temporarily",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 412: "Conditional Request Failed", 413: "Request Entity Too Large",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 489: "Bad Event",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what a peer may send, and the UDP size rule (RFC 3261 18.1.1).

    docs/decisions.md "Reliability: hostile input" gives the reasons for each value.
    """

    max_header_bytes: int = 65536
    """Largest header block (start line included); larger: 413, and a stream is closed."""
    max_body_bytes: int = 1 << 20
    """Largest Content-Length; larger: 413 before any of the body is read."""
    max_headers: int = 256
    """Most header lines in one message; more: 413."""
    max_connections: int = 1024
    """Inbound TCP/TLS connections open at once, TLS handshakes in progress included; more are
    closed at once, unless the source is privileged (a configured peer or trusted host): then
    the oldest inbound connection from an unprivileged source is closed to make room."""
    max_connections_per_source: int = 64
    """Inbound TCP/TLS connections from one unprivileged IP address; more are closed at once."""
    max_handshakes: int = 64
    """Inbound TLS handshakes in progress (each holds about 100 KiB of TLS state); more are
    closed at once (a privileged source evicts as for ``max_connections``)."""
    max_outbound_connections: int = 256
    """Connections we open ourselves (to configured hops, registered contacts): a budget of
    their own, so that inbound connections never crowd them out."""
    max_buffer_bytes: int = 64 << 20
    """Bytes of incomplete messages buffered over all connections together; the unprivileged
    connection whose data goes over it is closed."""
    handshake_timeout: float = 5.0
    """Seconds an inbound connection may take from its accept to the end of its TLS handshake
    and then to its first byte of SIP; then it is closed (idle connects, stalled handshakes)."""
    message_timeout: float = 10.0
    """Seconds a stream message may take from its first byte to its last (slowloris); then
    the connection is closed."""
    idle_timeout: float = 120.0
    """Seconds a TCP/TLS connection may stay silent before it is closed."""
    udp_mtu_switch: int = 1300
    max_contacts_per_aor: int = 16
    """Registrar bindings of one address-of-record; a REGISTER that would hold more: 403."""
    max_bindings: int = 100000
    """Registrar bindings in total; a REGISTER that would add one more: 503 + Retry-After."""


DEFAULT_LIMITS = Limits()


def _is_token(s: str) -> bool:
    return _TOKEN.fullmatch(s) is not None


# SEMI and EQUAL allow whitespace around them (RFC 3261 25.1; RFC 4475 3.1.1.1 "tag    = x").
_TAG_PARAM = re.compile(r";[ \t]*tag[ \t]*=[ \t]*([^;, \t]*)", re.IGNORECASE)


_UNREAD = "\x00"
"""A tag not read yet: no tag read from a message is a lone NUL (``parse`` refuses one)."""


def _tag_param(value: str) -> str | None:
    """The ``tag`` parameter of a From/To value (outside its ``<...>``), or None: one
    precompiled regex, as it runs twice per message."""
    start = value.rfind(">") + 1
    if value.find(";", start) < 0:
        return None  # no parameter at all (a request's To): the regex needs a ";"
    found = _TAG_PARAM.search(value, start)
    return found.group(1) or None if found else None


def _quotes_balanced(value: str) -> bool:
    """Every quoted-string closed (RFC 3261 25.1: quoted-pair escapes a quote inside one)."""
    if '"' not in value:
        return True
    inside = False
    for m in _QUOTE_OR_ESCAPE.finditer(value):
        if m.group() == '"':
            inside = not inside
    return not inside


class _Message:
    """Fields shared by requests and responses; header access goes to the aiosipua message."""

    __slots__ = (
        "_from_tag", "_head", "_raw", "_to_tag", "_via", "_via_parts", "body", "branch",
        "call_id", "cseq", "store",
    )

    _raw: SipMessage | None
    _head: bytes  # the header block as received (for ``raw``)
    store: dict[str, list[str]]  # lowercase name -> values
    call_id: str
    cseq: int
    _from_tag: str | None  # _UNREAD until read (see ``from_tag``)
    _to_tag: str | None
    _via: Via | None
    _via_parts: _ViaParts | None  # the top Via read but not built yet (see ``via``)
    branch: str
    body: bytes

    @property
    def via(self) -> Via:
        """The top Via, built on first use: matching a response to its transaction needs only
        the branch, and a request's common-form Via is stamped as text (``stamp_source``);
        building the Via cost a tenth of parsing the response."""
        via = self._via
        if via is None:
            assert self._via_parts is not None  # one of the two is always set
            via = self._via = _via_of(self._via_parts)
        return via

    @via.setter
    def via(self, via: Via) -> None:
        self._via = via
        self._via_parts = None  # the Via object is the top Via from now on

    def sent_by(self) -> tuple[str, int | None]:
        """The top Via's sent-by host and port (None: none written), as ``via.host`` and
        ``via.port``: the common form's read from its parts, without building the Via
        (the server transaction's key and the response's destination need only these)."""
        parts = self._via_parts
        if parts is not None:
            return parts[1], parts[2]
        via = self.via
        return via.host, via.port

    def via_has(self, name: str) -> bool:
        """``via.has(name)``: whether the top Via has parameter ``name``; the common form's
        parameter text is searched (a value there holds no ";", a name no "=")."""
        parts = self._via_parts
        if parts is None:
            return self.via.has(name)
        text = parts[3] + ";"
        return f";{name};" in text or f";{name}=" in text

    @property
    def from_tag(self) -> str | None:
        """The From tag (None: none), read on first use: a 200 to our MESSAGE is matched and
        delivered without its tags."""
        tag = self._from_tag
        if tag == _UNREAD:
            tag = self._from_tag = _tag_param(self.store["from"][0])
        return tag

    @property
    def to_tag(self) -> str | None:
        """The To tag (None: none), read on first use."""
        tag = self._to_tag
        if tag == _UNREAD:
            tag = self._to_tag = _tag_param(self.store["to"][0])
        return tag

    @property
    def raw(self) -> SipMessage:
        """The aiosipua message (escape hatch), built on first use: the hot path never needs it
        and building it cost as much as a tenth of handling a MESSAGE."""
        if self._raw is None:
            headers = CaseInsensitiveDict()
            original: dict[str, str] = {}  # lowercase name -> name as received
            _parse_headers(self._head, self._head.find(b"\n"), None, original)
            headers._store = self.store  # pinned aiosipua 0.7.1 internals: the dict's two maps
            headers._original = original
            self._raw = self._make_raw(headers)
            self._raw.body = self.body
        return self._raw

    def _make_raw(self, headers: CaseInsensitiveDict) -> SipMessage:
        raise NotImplementedError

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive, compact names allowed)."""
        key = _STORE_KEYS.get(name)  # _store_key(name), its cache read inline
        values = self.store.get(_store_key(name) if key is None else key)
        return values[0] if values else None

    def headers(self, name: str) -> list[str]:
        """All values of a header; comma lists of Via/Route/Contact/... come split."""
        return list(self.store.get(_expand(name).lower(), ()))

    @property
    def content_type(self) -> str | None:
        """Media type of the body, lowercased, without parameters."""
        return media_type(self.header("content-type"))

    @property
    def vias(self) -> list[str]:
        """Via values as received (the top one stamped by :meth:`Request.stamp_source`)."""
        return self.store["via"]


class Arrival(NamedTuple):
    """Where a request came from as the socket proves it: the only source authorisation may
    use.  Nothing the message says about itself (Via ``received``/``rport``, From,
    P-Asserted-Identity) can change it (docs/decisions.md "Reliability: trust and
    authorisation").  A named tuple: built once per request on the receive path, it costs a
    third of a frozen dataclass."""

    transport: str
    """udp, tcp or tls: the socket it came on."""
    host: str
    """The peer's IP address (no brackets)."""
    port: int
    certificate: Mapping[str, Any] | None = None
    """The verified TLS client certificate of its connection (``getpeercert()`` form); None:
    not TLS, or no verified certificate shown."""


class Request(_Message):
    """A validated request."""

    __slots__ = ("arrival", "method", "uri")

    method: str
    uri: str
    arrival: Arrival | None
    """Set by the endpoint when the request came from a socket (:meth:`stamp_source`); None
    for a request parsed from bytes alone (it came from nowhere we know)."""

    def _make_raw(self, headers: CaseInsensitiveDict) -> SipMessage:
        return SipRequest(headers=headers, method=self.method, uri=self.uri)

    def stamp_source(self, arrival: Arrival) -> None:
        """Record where the request came from: ``arrival``, and in the top Via for routing
        responses only (RFC 3261 18.2.1, RFC 3581 4: :func:`_stamped`)."""
        self.arrival = arrival
        host = arrival.host
        parts = self._via_parts
        if parts is None:
            via = self.via
            params = _stamped(via.params, via.host.strip("[]"), host, arrival.port)
            if params is not None:
                via = self.via = Via(via.transport, via.host, via.port, params, via.protocol)
                self.store["via"][0] = via.echo()
            return
        # A top Via of the common form (``_via_common``), not built yet, is stamped on its
        # parameter text: the same Via and the same echo as the Via object's path
        # (hypothesis: tests/test_sip_parser.py), without building the Via twice and
        # writing it back.
        transport, sent_host, sent_port, param_text = parts
        # The parameters every stack we meet writes: no "received", and "rport" nowhere or
        # only as the last one, bare (``;branch=z9hG4bK..;rport``; a common-form name is
        # lower case, a value holds no ";"): what _stamped gives, written without reading
        # the parameters (tests/test_sip_parser.py compares with the Via object's path).
        if "received" not in param_text and (
                "rport" not in param_text
                or (param_text.endswith(";rport") and param_text.count("rport") == 1)):
            if "rport" in param_text:
                text = f"{param_text}={arrival.port};received={host}"
            elif sent_host == host:
                return
            else:
                text = f"{param_text};received={host}"
        else:
            # (the common form has no brackets around its host)
            params = _stamped(_via_params(param_text), sent_host, host, arrival.port)
            if params is None:
                return
            text = ""  # as Via.echo() writes them
            for k, v in params:
                text = f"{text};{k}" if v is None else f"{text};{k}={v}"
        self._via, self._via_parts = None, (transport, sent_host, sent_port, text)
        self.store["via"][0] = f"SIP/2.0/{transport.upper()} {sent_host}:{sent_port}{text}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id} cseq={self.cseq}>"


class Response(_Message):
    """A validated response."""

    __slots__ = ("cseq_method", "reason", "status")

    status: int
    reason: str
    cseq_method: str

    def _make_raw(self, headers: CaseInsensitiveDict) -> SipMessage:
        return SipResponse(headers=headers, status_code=self.status, reason_phrase=self.reason)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.cseq_method} call-id={self.call_id}>"


def head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Offset and length of the empty line that ends the header block (RFC 3261 7.5), or -1.

    The first one wins, CRLF CRLF or LF LF (LF-only peers, RFC 4475 tolerance): preferring
    CRLF CRLF found later would make a stream's message boundary depend on how much of it has
    arrived.
    """
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start, crlf if crlf >= 0 else len(data))
    return (lf, 2) if lf >= 0 else (crlf, 4)


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Header block and body."""
    end, sep = head_end(data)
    return (data[:end], data[end + sep :]) if end >= 0 else (data, b"")


def _fail_response(status: int | None, reason: str) -> SipParseError:
    return SipParseError(None, reason)  # nothing is ever answered to a response


# Header names as written before the colon -> (lower-case key, name as kept): the few names
# peers write are normalised once, not per line; capped so that made-up names cannot grow it.
_NAMES: dict[str, tuple[str, str]] = {}
_MAX_NAMES = 512
_MAX_NAME_CACHED = 40


def _py_parse_headers(head: bytes, first_nl: int, repeated: set[str] | None = None,
                      original: dict[str, str] | None = None) -> dict[str, list[str]] | None:
    """Header lines into aiosipua's header dict, or None if a line is not ``name: value``.

    Same result as ``aiosipua.SipMessage.parse`` (compact names expanded, continuation lines
    unfolded per RFC 3261 7.3.1, comma lists of MULTI_INSTANCE_HEADERS split), about three
    times faster: aiosipua scans every multi-value header character by character, which cost
    more than the rest of our receive path (docs/sip-layer.md has the figures).
    ``repeated`` (when given) gets the name of every header on more than one line,
    ``original`` (when given) each name as received, by lower-case name.
    """
    store: dict[str, list[str]] = {}
    if first_nl < 0:
        text = ""
    else:
        text = head[first_nl + 1 :].decode("utf-8", "replace").replace("\r\n", "\n")
        if "\n " in text or "\n\t" in text:
            text = _FOLD.sub(" ", text)
    if not text:
        return store
    if "\r" in text:
        return None  # a bare CR: a line that is not ``name: value`` (RFC 3261 7.3.1)
    names = _NAMES
    for line in text.split("\n"):
        name, sep, value = line.partition(":")
        if not sep:
            return None  # a line that is not ``name: value`` (RFC 3261 7.3.1)
        known = names.get(name)
        if known is None:
            stripped = name.strip()
            key = stripped.lower()
            if len(key) == 1:
                key = stripped = _COMPACT.get(key, key)
            elif not key:
                return None
            known = (key, stripped)
            if len(names) < _MAX_NAMES and len(name) <= _MAX_NAME_CACHED:
                names[name] = known
        key = known[0]
        value = value.strip()
        values = store.get(key)
        if values is None:
            values = store[key] = []
            if original is not None:
                original[key] = known[1]
        elif repeated is not None:
            repeated.add(key)
        if "," in value and key in MULTI_INSTANCE_HEADERS:
            if '"' in value or "<" in value:
                values.extend(_split_multi_value(value))
            else:
                values.extend(v.strip() for v in value.split(",") if v.strip())
        else:
            values.append(value)
    return store


PARSER_ENV = "MCACM_SIP_PARSER"
"""``python``: the pure-Python header splitting even when the C one is built; ``c``: the C one
or an ImportError; unset or ``auto``: the C one when built (docs/sip-layer.md)."""


class _HeaderSplitter(Protocol):
    def __call__(self, head: bytes, first_nl: int, repeated: set[str] | None = None,
                 original: dict[str, str] | None = None, /) -> dict[str, list[str]] | None: ...


def _load_c_parser(choice: str) -> _HeaderSplitter | None:
    """``_cparse.parse_headers`` set up with this module's tables, or None (``choice``
    ``python``, or ``auto`` and the extension not built)."""
    if not wanted(PARSER_ENV, choice):
        return None
    try:
        from . import _cparse
    except ImportError as exc:
        if choice == "c":
            raise not_built(PARSER_ENV, "mcacm_sip.sip._cparse") from exc
        return None
    _cparse.configure(_COMPACT, MULTI_INSTANCE_HEADERS, _split_multi_value, _py_parse_headers)
    return _cparse.parse_headers


_c_parse_headers = _load_c_parser(os.environ.get(PARSER_ENV, "auto").strip().lower() or "auto")
_parse_headers: _HeaderSplitter = (
    _py_parse_headers if _c_parse_headers is None else _c_parse_headers)
"""Header lines into the store: the C code when built (the same result, the same rules: it
splits ASCII header blocks and hands anything else to :func:`_py_parse_headers`)."""
PARSER = "python" if _c_parse_headers is None else "c"
"""Which header splitting runs: ``c`` (mcacm_sip/sip/_cparse.c) or ``python``."""


# The Via every stack we meet writes (``SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK..;rport``):
# an ASCII host name or IPv4 address, a port, lower-case parameter names, no white space.
# What it matches reads the same as by _parse_via_general, in one regex call.
_SENT_COMMON_RE = r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9.\-_]+):([0-9]{1,5})"
_PARAMS_COMMON_RE = r"((?:;[a-z0-9.!%*_+`'~\-]+(?:=[^;,\"\s]+)?)*)"
_VIA_COMMON = re.compile(_SENT_COMMON_RE + _PARAMS_COMMON_RE)
# the two halves of _VIA_COMMON, split at the Via's first ";" (no ";" before the parameters)
_SENT_COMMON = re.compile(_SENT_COMMON_RE)
_PARAMS_COMMON = re.compile(_PARAMS_COMMON_RE)


_ViaParts = tuple[str, str, int, str]  # transport, host, port, ";"-separated parameters


def _via_common(value: str) -> _ViaParts | None:
    """The parts of a Via of the common form (always a valid Via), or None for any other."""
    m = _VIA_COMMON.fullmatch(value)
    if m is None:
        return None
    transport, host, port_text, param_text = m.groups()
    port = int(port_text)
    return (transport, host, port, param_text) if 0 < port < 65536 else None


def _via_params(param_text: str) -> tuple[tuple[str, str | None], ...]:
    """The (name, value) pairs of a common-form Via's parameter text (value None: no "=")."""
    if not param_text:
        return ()
    params = []  # (a loop: generators cost more than the work, per request)
    for item in param_text[1:].split(";"):
        key, eq, val = item.partition("=")
        params.append((key, val if eq else None))
    return tuple(params)


def _via_of(parts: _ViaParts) -> Via:
    transport, host, port, param_text = parts
    return Via(transport.upper(), host, port, _via_params(param_text))


def _stamped(params: tuple[tuple[str, str | None], ...], sent_host: str, host: str, port: int
             ) -> tuple[tuple[str, str | None], ...] | None:
    """A request's top Via parameters as :meth:`Request.stamp_source` records its source
    ``host``/``port`` in them, or None when nothing changes.  RFC 3261 18.2.1: ``received``
    when the sent-by host differs from the source; RFC 3581 4: with ``rport``, its value is
    the source port and ``received`` is always added; a ``received`` the peer wrote is
    overwritten with the real source (it is ours to set, not the sender's)."""
    has_rport = has_received = False
    for name, _ in params:
        if name == "rport":
            has_rport = True
        elif name == "received":
            has_received = True
    if not has_rport and not has_received and sent_host == host:
        return None
    rport = str(port)
    out = []
    for name, value in params:
        out.append((name, host if name == "received" else rport if name == "rport" else value))
    if not has_received:
        out.append(("received", host))
    return tuple(out)


def _parse_via(value: str) -> Via | None:
    """The top Via (:class:`~.headers.Via`), or None when it cannot be read (RFC 3261 25.1:
    host and port are ASCII, via-params are tokens; RFC 4475 3.1.2.1 ";;")."""
    parts = _via_common(value)
    return _parse_via_general(value) if parts is None else _via_of(parts)


def _parse_via_general(value: str) -> Via | None:
    """:func:`_parse_via` of any Via: the ``SIP/2.0/UDP host[:port];params`` form read here,
    anything else by ``Via.parse``."""
    sent, semi, param_text = value.partition(";")
    if not sent.isascii():
        return None
    if semi and any(not item.strip() for item in param_text.split(";")):
        return None  # RFC 3261 25.1 via-params are tokens; RFC 4475 3.1.2.1 ";;"
    transport, _, sent_by = sent[8:].partition(" ")
    sent_by = sent_by.strip()
    host, _, port_text = sent_by.partition(":")
    port = ascii_int(port_text) if sent_by.count(":") == 1 else None
    if (not value.startswith("SIP/2.0/") or "," in value or '"' in param_text
            or not transport.isalpha() or port is None or not 0 < port < 65536
            or not host or host.startswith("[") or any(c.isspace() for c in host)):
        try:
            return Via.parse(value)
        except InvalidHeader:
            return None
    params: list[tuple[str, str | None]] = []
    for item in param_text.split(";") if param_text else ():
        key, eq, val = item.partition("=")
        params.append((key.strip().lower(), val.strip() if eq else None))
    return Via(transport.upper(), host, port, tuple(params))


def parse(
    data: bytes, *, datagram: bool = True, limits: Limits = DEFAULT_LIMITS
) -> Request | Response:
    """Parse and validate one SIP message.

    ``datagram`` is True for UDP: a Content-Length larger than the body then gets 400 (RFC 3261
    18.3); on a stream the framer has already cut exactly Content-Length bytes.

    Raises:
        SipParseError: ``status`` is what to answer (400, 413, 505) or None for silence.
    """
    # A request of the common form is read in one C call (``_cparse.request_parts``: the same
    # Request, tests/test_sip_request_parts.py); anything else, every refusal included, is
    # read below. Only while the C splitting is the one in use (tests swap it).
    if _request_parts is not None and _parse_headers is _c_parse_headers:
        found = _request_parts(data, limits.max_header_bytes, limits.max_headers,
                               limits.max_body_bytes)
        if found is not None:
            return _request_of(found)
    end, sep = head_end(data)
    head, body = (data[:end], data[end + sep :]) if end >= 0 else (data, b"")
    first_nl = head.find(b"\n")
    start = (head if first_nl < 0 else head[:first_nl]).strip().decode("utf-8", "replace")
    is_response = start.startswith("SIP/")
    answerable: int | None = None if is_response else 400
    fail = _fail_response if is_response else SipParseError

    if len(head) > limits.max_header_bytes:
        raise fail(413, "Header Block Too Large")
    if len(body) > limits.max_body_bytes:
        raise fail(413, "Body Too Large")
    # (a head no longer than the cap cannot hold more line breaks: a 200 is not counted)
    if len(head) > limits.max_headers and head.count(b"\n") > limits.max_headers:
        raise fail(413, "Too Many Headers")
    parts = start.split(" ", 2)
    if len(parts) != 3 and not (is_response and len(parts) == 2):
        raise fail(None, "Malformed Start Line")  # not SIP at all: nothing to answer
    # RFC 3261 25.1: no CTL in a header, but a quoted-pair may escape NUL (RFC 4475 3.1.1.2);
    # any other NUL would truncate C strings downstream.
    if b"\x00" in head and b"\x00" in head.replace(b"\\\x00", b""):
        raise fail(answerable, "NUL In Header")
    repeated: set[str] = set()
    parsed = _parse_headers(head, first_nl, repeated)
    if parsed is None:
        raise fail(answerable, "Malformed Header Line")
    store = parsed

    # RFC 3261 8.1.1 / 8.2.6: we need these to match and answer.
    vias, froms, tos = store.get("via"), store.get("from"), store.get("to")
    call_ids, cseqs = store.get("call-id"), store.get("cseq")
    if not (vias and vias[0] and froms and froms[0] and tos and tos[0] and call_ids
            and call_ids[0] and cseqs and cseqs[0]):
        for key, pretty in _MANDATORY:
            if not store.get(key) or not store[key][0]:
                raise fail(answerable, f"Missing {pretty}")
    if repeated:
        for key, pretty in _SINGLE:
            if key in repeated:
                raise fail(answerable, f"Multiple {pretty}")
    assert vias and froms and tos and call_ids and cseqs  # (checked above, for mypy)
    frm, to = froms[0], tos[0]
    # RFC 4475 3.1.2.6: an unterminated quoted display name is a 400.
    if ('"' in frm and not _quotes_balanced(frm)) or ('"' in to and not _quotes_balanced(to)):
        raise fail(answerable, "Unbalanced Quotes")

    out: Request | Response
    if is_response:
        if parts[0] != SIP_VERSION:
            raise fail(None, "Unsupported Version")
        status_text = parts[1]
        status = int(status_text) if len(status_text) == 3 and is_ascii_digits(status_text) \
            else 0
        if not 100 <= status <= 699:
            raise fail(None, "Bad Status Code")
        resp = out = Response()
        resp.status = status
        # An empty reason phrase is legal (RFC 3261 25.1: Reason-Phrase = *(...)).
        resp.reason = parts[2] if len(parts) == 3 else ""
    else:
        method, uri, version = parts
        if version != SIP_VERSION:
            if version.startswith("SIP/"):
                raise fail(505, "Version Not Supported")  # RFC 3261 8.2.3... 21.5.7
            raise fail(400, "Malformed Request Line")
        if _TOKEN.fullmatch(method) is None:
            raise fail(400, "Bad Method")
        # RFC 3261 25.1: Request-URI = scheme ":" ...; RFC 4475 3.1.2.7: no "<...>" around it.
        if uri_scheme(uri) is None:
            raise fail(400, "Bad Request-URI")
        req = out = Request()
        req.arrival = None
        req.method = method
        req.uri = uri

    # RFC 3261 20.16: CSeq = 1*DIGIT LWS Method; the number is below 2**31 (DIGIT: ASCII, 25.1).
    try:
        cseq, cseq_method = cseq_parts(cseqs[0], None if is_response else parts[0])
    except InvalidHeader:
        raise fail(answerable, "Bad CSeq") from None
    if is_response:
        out.cseq_method = cseq_method  # type: ignore[union-attr]
    elif cseq_method != parts[0]:
        raise fail(400, "CSeq Method Mismatch")  # RFC 3261 8.1.1.5
    out.cseq = cseq

    # RFC 3261 18.3: Content-Length on a datagram must not exceed what arrived.
    lengths = store.get("content-length")
    if lengths:
        cl = lengths[0]
        declared = int(cl) if len(cl) < 10 and cl.isascii() and cl.isdigit() else -1
        if not 0 <= declared <= len(body):  # else the common case, as read_number reads it
            try:
                declared = read_number("Content-Length", cl, len(body))
            except NumberTooLarge:
                raise fail(answerable, "Content-Length Larger Than Body") from None
            except InvalidHeader:
                raise fail(answerable, "Bad Content-Length") from None
        if declared != len(body):
            body = body[:declared]
    elif not datagram:
        body = b""  # RFC 3261 18.3: on a stream a missing Content-Length means no body

    branch = None
    top = vias[0]
    via_parts = _via_common(top)
    if via_parts is not None:
        out._via = None  # built on first use (``via``)
        out._via_parts = via_parts
        for item in via_parts[3][1:].split(";"):
            key, eq, value = item.partition("=")
            if key == "branch":
                branch = value if eq else None
                break
    else:
        via = _parse_via_general(top)
        if via is None or via.protocol != SIP_VERSION or not via.host or (
                via.port is not None and not 0 < via.port < 65536):
            raise fail(answerable, "Bad Via")
        out._via = via
        out._via_parts = None
        branch = via.branch
    out._raw = None
    out._head = head
    out.branch = branch or ""
    out.store = store
    out.call_id = call_ids[0]
    out._from_tag = out._to_tag = _UNREAD  # read on first use
    out.body = body
    return out


_RequestParts = tuple[str, str, dict[str, list[str]], bytes, str, str, int, str, str, int, str,
                      bytes]
"""What ``_cparse.request_parts`` reads of a request of the common form: method, Request-URI,
the store, the header block, the top Via's transport, host, port and parameter text, its
branch ("" when none), the CSeq number, the Call-ID and the body (cut to Content-Length)."""


def _load_request_parts(compiled: bool
                        ) -> Callable[[bytes, int, int, int], _RequestParts | None] | None:
    """``_cparse.request_parts`` (``compiled``: the C header splitting runs), else None (the
    pure-Python parser reads every request by the general rules)."""
    if not compiled:
        return None
    from . import _cparse
    return _cparse.request_parts


_request_parts = _load_request_parts(_c_parse_headers is not None)


def _request_of(found: _RequestParts) -> Request:
    """The Request :func:`parse` builds, from ``request_parts``' reading."""
    (method, uri, store, head, transport, host, port, param_text, branch, cseq, call_id,
     body) = found
    req = Request()
    req.arrival = None
    req.method = method
    req.uri = uri
    req.cseq = cseq
    req._via = None  # built on first use (``via``)
    req._via_parts = (transport, host, port, param_text)
    req._raw = None
    req._head = head
    req.branch = branch
    req.store = store
    req.call_id = call_id
    req._from_tag = req._to_tag = _UNREAD  # read on first use
    req.body = body
    return req


_SENT_PARTS: dict[str, tuple[str, str, int] | None] = {}
"""The sent-protocol and sent-by of our own top Vias (``SIP/2.0/UDP 192.0.2.1:5060``) as
``_via_common`` reads them, by their text: an endpoint writes a few, so each is read once."""


def _sent_parts(sent: str) -> tuple[str, str, int] | None:
    """Transport, host and port of a Via's text before its first ";", as ``_via_common`` reads
    them, or None when that text is not of the common form."""
    if sent in _SENT_PARTS:
        return _SENT_PARTS[sent]
    m = _SENT_COMMON.fullmatch(sent)
    port = int(m.group(3)) if m is not None else 0
    parts = (m.group(1), m.group(2), port) if m is not None and 0 < port < 65536 else None
    if len(_SENT_PARTS) < 64:
        _SENT_PARTS[sent] = parts
    return parts


_OwnParts = tuple[int, str, dict[str, list[str]], bytes, str, str, str, int, str, str, bytes]
"""What ``own_response`` reads of a response before matching it: status, reason, the store,
the header block, the top Via's branch, its text before the first ";" (sent-protocol and
sent-by), its parameter text, the CSeq number and method, the Call-ID and the body."""


def _py_own_parts(data: bytes, max_header_bytes: int, max_headers: int, max_body_bytes: int
                  ) -> _OwnParts | None:
    """``own_response``'s reading of ``data`` (see there), or None."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > max_header_bytes:
        return None
    head = data[:end]
    first_nl = head.find(b"\n")
    # (as head_end: an LF LF before the CRLF CRLF ends the block there)
    if (first_nl < 0 or not head.isascii() or b"\x00" in head
            or head.find(b"\n\n", first_nl) >= 0):
        return None
    if len(head) > max_headers and head.count(b"\n") > max_headers:
        return None
    parts = head[:first_nl].strip().decode("ascii").split(" ", 2)
    status_text = parts[1] if len(parts) == 3 else ""
    # RFC 3261 7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
    if parts[0] != SIP_VERSION or len(status_text) != 3 or not status_text.isdigit():
        return None
    status = int(status_text)
    repeated: set[str] = set()
    store = _parse_headers(head, first_nl, repeated)
    if store is None or repeated or not 100 <= status <= 699:
        return None
    try:
        vias, frm, to = store["via"], store["from"][0], store["to"][0]
        call_id, cseq_text = store["call-id"][0], store["cseq"][0]
        length = store["content-length"][0]
    except (KeyError, IndexError):
        return None
    number, space, method = cseq_text.partition(" ")
    if (len(vias) != 1 or not space or not frm or not to or not call_id or '"' in frm or '"' in to
            or not number.isdigit() or len(number) > 9 or not length.isdigit()
            or len(length) > 9):
        return None
    via = vias[0]
    semi = via.find(";")
    if semi < 0:
        return None
    param_text = via[semi:]
    branch = ""
    for item in param_text[1:].split(";"):
        key, eq, value = item.partition("=")
        if key == "branch":
            branch = value if eq else ""
            break
    if not branch or _PARAMS_COMMON.fullmatch(param_text) is None:
        return None
    body = data[end + 4 :]
    declared = int(length)
    if len(body) > max_body_bytes or declared > len(body):
        return None
    if declared != len(body):
        body = body[:declared]
    return (status, parts[2], store, head, branch, via[:semi], param_text, int(number), method,
            call_id, body)


def _load_own_parts(compiled: bool) -> Callable[[bytes, int, int, int], _OwnParts | None]:
    """``_cparse.own_parts`` (``compiled``: the C header splitting runs), else
    ``_py_own_parts``."""
    if not compiled:
        return _py_own_parts
    from . import _cparse
    return _cparse.own_parts


_own_parts = _load_own_parts(_c_parse_headers is not None)


def own_response(data: bytes, sent_by: Callable[[str, str], str | None],
                 limits: Limits = DEFAULT_LIMITS) -> Response | None:
    """:func:`parse` of a response of the common form to one of our own client transactions,
    with what its general rules cost cut; None for any other (then :func:`parse` decides).

    ``sent_by(branch, method)`` is the text before the first ";" of the top Via of the live
    client transaction (branch, CSeq method) sent (``SIP/2.0/UDP 192.0.2.1:5060``), or None.
    The headers are split as :func:`parse` splits them; the response is read here only when
    it is ASCII, ends its header block with CRLF CRLF, has no NUL, no header twice, one Via,
    a Content-Length, no quote in From or To, a CSeq ``number METHOD`` of a known method and
    a top Via of the common form whose sent-protocol and sent-by are the ones our request's
    top Via carried, byte for byte (RFC 3261 18.1.2; its branch and the CSeq method find the
    transaction, 17.1.3): the Via is then read from a cached sent-by, the CSeq without its
    general grammar. What it returns is what :func:`parse` returns for ``data``
    (tests/test_sip_own_response.py); the reading is C when the header splitting is."""
    found = _own_parts(data, limits.max_header_bytes, limits.max_headers, limits.max_body_bytes)
    if found is None:
        return None
    status, reason, store, head, branch, sent, param_text, cseq, method, call_id, body = found
    if method not in _METHODS or sent_by(branch, method) != sent:
        return None
    sent_parts = _SENT_PARTS.get(sent) or _sent_parts(sent)
    if sent_parts is None:
        return None
    out = Response()
    out.status = status
    out.reason = reason
    out.cseq_method = method
    out.cseq = cseq
    out._via = None
    out._via_parts = (sent_parts[0], sent_parts[1], sent_parts[2], param_text)
    out._raw = None
    out._head = head
    out.branch = branch
    out.store = store
    out.call_id = call_id
    out._from_tag = out._to_tag = _UNREAD
    out.body = body
    return out


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message read for display or matching only, not for answering: what :func:`read_raw`
    makes of bytes :func:`parse` may refuse (a pcap's truncated message, another stack's
    departures from RFC 3261).  Headers are read as :func:`parse` reads them (compact names
    expanded, folds unfolded, comma lists split); nothing is checked."""

    start: str
    """The start line, stripped."""
    store: Mapping[str, list[str]]
    body: bytes
    """Everything after the empty line, not cut to Content-Length."""

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive, compact names allowed)."""
        values = self.store.get(_expand(name).lower())
        return values[0] if values else None

    @property
    def status(self) -> int | None:
        """The status of a response (``SIP/2.0 200 OK`` -> 200); None for anything else."""
        if not self.start.startswith("SIP/"):
            return None
        code = self.start.split(" ", 2)[1] if " " in self.start else ""
        return ascii_int(code) if len(code) == 3 else None

    @property
    def method(self) -> str | None:
        """The method of a request; None for a response."""
        return None if self.start.startswith("SIP/") else self.start.split(" ", 1)[0]

    @property
    def via(self) -> Via | None:
        """The top Via, or None when absent or unreadable."""
        value = self.header("via")
        try:
            return None if value is None else Via.parse(value)
        except InvalidHeader:
            return None


def read_raw(data: bytes) -> RawMessage:
    """Read any bytes as a SIP message without validating them (lenient on purpose: for
    ladders, traces and captures).  A line that is not ``name: value`` (a header cut off by
    the capture) is skipped; never raises."""
    head, body = _split_head(data)
    first_nl = head.find(b"\n")
    start = (head if first_nl < 0 else head[:first_nl]).strip().decode("utf-8", "replace")
    parsed = _parse_headers(head, first_nl)
    if parsed is None:
        kept = [line for line in head[first_nl + 1 :].replace(b"\r\n", b"\n").split(b"\n")
                if b":" in line and b"\r" not in line and line[:1] not in (b" ", b"\t")
                and line.partition(b":")[0].strip()]
        parsed = _parse_headers(b"\n" + b"\n".join(kept), 0 if kept else -1)
    return RawMessage(start, parsed if parsed is not None else {}, body)


def _check_line(text: str) -> str:
    """Refuse CR/LF in anything we write into a header line (header injection)."""
    if "\r" in text or "\n" in text:
        raise ValueError(f"line break in header text: {text!r}")
    return text


_tag_prefix = secrets.token_hex(4)
_tag_counter = count(1)


def new_tag() -> str:
    """A tag unique to this process run (RFC 3261 19.3: at least 32 bits of randomness)."""
    return f"{_tag_prefix}{next(_tag_counter):012x}"  # fixed width: same-length messages


def _serialise_response(
    start: str,
    vias: Sequence[str],
    frm: str,
    to: str,
    call_id: str,
    cseq: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    content_type: str | None,
    server: str | None,
) -> bytes:
    # (one text grown in place: a list of lines and its join cost a third more, per answer)
    text = f"{start}\r\nVia: " + "\r\nVia: ".join(vias) + "\r\n" if vias else f"{start}\r\n"
    if frm and to and call_id and cseq:
        text += f"From: {frm}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n"
    else:  # empty only in error answers to requests that lacked the header
        for name, value in (("From", frm), ("To", to), ("Call-ID", call_id), ("CSeq", cseq)):
            if value:
                text += f"{name}: {value}\r\n"
    for name, value in headers:
        if not _is_token(name):
            raise ValueError(f"bad header name {name!r}")
        text += f"{name}: {_check_line(value)}\r\n"
    if server:
        text += f"Server: {_check_line(server)}\r\n"
    if content_type:
        text += f"Content-Type: {_check_line(content_type)}\r\n"
    return f"{text}Content-Length: {len(body)}\r\n\r\n".encode() + body


def build_response(
    req: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
    server: str | None = None,
) -> bytes:
    """Serialise a response to ``req`` (RFC 3261 8.2.6).

    Via (all values, in order), From, To, Call-ID and CSeq are copied; a To tag is added when the
    request's To has none (RFC 3261 8.2.6.2), ``to_tag`` or a fresh one. Raises ValueError on a
    status outside 100-699 or CR/LF in the reason or a header value.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"bad status {status}")
    h = req.store
    to = h["to"][0]
    if req.to_tag is None and status > 100:
        to = f"{to};tag={to_tag or new_tag()}"
    # (a reason of ours, from REASONS, holds no line break)
    phrase = _check_line(reason) if reason is not None else REASONS.get(status, "")
    start = f"SIP/2.0 {status} {phrase}"
    return _serialise_response(
        start, h["via"], h["from"][0], to, h["call-id"][0], h["cseq"][0],
        headers, body, content_type, server,
    )


_PLAIN_STARTS: dict[int, str] = {}
"""The text before the top Via of a plain response (``plain_response``), by status."""
_PLAIN_TAILS: dict[str, str] = {}
"""The text after the CSeq line of a plain response, by the Server value (capped)."""


def plain_response(req: Request, status: int, server: str | None = None) -> bytes:
    """``build_response(req, status, server=server)``: the answer of a handler that gives only a
    status (the common 200), in one text, its fixed start and end written once per status and
    Server value; any other case (a status outside 100-699, a header missing or empty, a line
    break in ``server``) is ``build_response``'s, which then decides, raises included
    (tests/test_sip_parser.py: the same bytes for any request and status)."""
    h = req.store
    vias, frm, to = h["via"], h["from"][0], h["to"][0]
    call_id, cseq = h["call-id"][0], h["cseq"][0]
    start = _PLAIN_STARTS.get(status)
    tail = _PLAIN_TAILS.get(server or "")
    if start is None or tail is None or not (vias and frm and to and call_id and cseq):
        if not (vias and frm and to and call_id and cseq) or not 100 <= status <= 699 or (
                server and ("\r" in server or "\n" in server)) or len(_PLAIN_TAILS) >= 16:
            return build_response(req, status, server=server)
        start = _PLAIN_STARTS[status] = f"SIP/2.0 {status} {REASONS.get(status, '')}\r\nVia: "
        tail = _PLAIN_TAILS[server or ""] = (f"Server: {server}\r\n" if server else ""
                                             ) + "Content-Length: 0\r\n\r\n"
    tag = req._to_tag
    if tag == _UNREAD:
        tag = req.to_tag
    if tag is None and status > 100:
        to = f"{to};tag={new_tag()}"
    via = vias[0] if len(vias) == 1 else "\r\nVia: ".join(vias)
    return (f"{start}{via}\r\nFrom: {frm}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}"
            f"\r\n{tail}").encode()


def error_response(data: bytes, err: SipParseError, server: str | None = None) -> bytes | None:
    """Answer a request that failed :func:`parse`, from its headers as :func:`read_raw` reads
    them (lenient: the request is broken somewhere).

    Returns None when there is nothing to answer: ``err.status`` is None or there is no Via.
    A value with a NUL or a line break is left out (never echoed into our answer).
    """
    if err.status is None:
        return None
    store = read_raw(data).store

    def values(key: str) -> list[str]:  # an empty value is no value
        return [v for v in store.get(key, ()) if v and "\x00" not in v and "\r" not in v
                and "\n" not in v]

    vias = values("via")
    if not vias:
        return None

    def first(key: str) -> str:
        found = values(key)
        return found[0] if found else ""

    to = first("to")
    if to and _tag_param(to) is None:
        to = f"{to};tag={new_tag()}"
    return _serialise_response(
        f"SIP/2.0 {err.status} {err.reason}", vias, first("from"), to,
        first("call-id"), first("cseq"), (), b"", None, server,
    )


__all__ = [
    "DEFAULT_LIMITS",
    "MAGIC_COOKIE",
    "REASONS",
    "Arrival",
    "Limits",
    "RawMessage",
    "Request",
    "Response",
    "SipRequest",
    "SipResponse",
    "build_response",
    "error_response",
    "head_end",
    "media_type",
    "new_tag",
    "own_response",
    "parse",
    "plain_response",
    "read_raw",
]
