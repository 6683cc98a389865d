"""multipart/mixed bodies (RFC 2046 5.1), as TS 24.379 clause 9A PUBLISH and SUBSCRIBE carry them.

Small and strict where it matters: the encoder picks a boundary that occurs in no part (RFC 2046
5.1.1: "must not appear inside any of the encapsulated parts"), the decoder finds delimiters only
at the start of a line, ignores preamble and epilogue, and answers every malformed body with a
:class:`MultipartError` carrying SIP status 400.  Part contents are kept byte for byte.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MULTIPART_MIXED = "multipart/mixed"

# RFC 2046 5.1.1: bcharsnospace := DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," / "-"
#   / "." / "/" / ":" / "=" / "?"; bchars := bcharsnospace / " "; 1-70 chars, no final space.
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
# RFC 2045 5.1 token characters
_TOKEN = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$")
_MAX_PARTS = 16


class MultipartError(ValueError):
    """A multipart body that cannot be decoded; answered with ``status`` (400) and ``reason``."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its Content-Type value, its content, and any other part headers."""

    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def media_type(self) -> str:
        """``type/subtype`` in lower case, without parameters."""
        return parse_content_type(self.content_type)[0]


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into the lower-cased media type and its parameters.

    Parameter names are lower-cased; quoted-string values are unquoted (RFC 2045 5.1, RFC 822
    quoted-pair).  Raises :class:`MultipartError` for a value that is not ``type/subtype``.
    """
    media, _, rest = value.partition(";")
    media = media.strip().lower()
    kind, slash, sub = media.partition("/")
    if not slash or not _TOKEN.match(kind or "-") or not kind or not sub or not _TOKEN.match(sub):
        raise MultipartError(f"bad Content-Type {value!r}")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        j = rest.find("=", i)
        if j < 0:
            if rest[i:].strip(" \t;"):
                raise MultipartError(f"bad Content-Type parameter in {value!r}")
            break
        name = rest[i:j].strip(" \t;").lower()
        i = j + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            out: list[str] = []
            i += 1
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(rest[i])
                i += 1
            if i >= n:
                raise MultipartError(f"unterminated quoted parameter in {value!r}")
            i += 1
            val = "".join(out)
        else:
            k = rest.find(";", i)
            k = n if k < 0 else k
            val = rest[i:k].strip()
            i = k
        if not name or not _TOKEN.match(name):
            raise MultipartError(f"bad Content-Type parameter in {value!r}")
        params[name] = val
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] != ";":
            raise MultipartError(f"bad Content-Type parameter in {value!r}")
        i += 1
    return media, params


def _check_boundary(boundary: str) -> None:
    if not _BOUNDARY.match(boundary):
        raise MultipartError(f"invalid boundary {boundary!r} (RFC 2046 5.1.1)")


def encode(parts: Sequence[Part], boundary: str | None = None) -> tuple[str, bytes]:
    """Encode ``parts`` as multipart/mixed; return ``(Content-Type value, body)``.

    Without ``boundary`` a random one is chosen; a given or chosen boundary that occurs inside a
    part is rejected (RFC 2046 5.1.1) -- with a random one that means choosing again.
    """
    if not parts:
        raise ValueError("a multipart body needs at least one part (RFC 2046 5.1.1)")
    for part in parts:
        for name, value in (("Content-Type", part.content_type), *part.headers):
            if any(c in name + value for c in "\r\n\0") or ":" in name:
                raise ValueError(f"header injection in part header {name!r}")
    while True:
        chosen = boundary or "mcacm-" + secrets.token_hex(12)
        _check_boundary(chosen)
        marker = b"--" + chosen.encode("ascii")
        if not any(marker in part.body for part in parts):
            break
        if boundary is not None:
            raise ValueError(f"boundary {boundary!r} occurs inside a part (RFC 2046 5.1.1)")
    out = bytearray()
    for part in parts:
        # RFC 2046 5.1.1: dash-boundary, CRLF, part headers, CRLF, content, then CRLF before
        # the next delimiter (that CRLF belongs to the delimiter, not to the content).
        out += marker + b"\r\n"
        out += f"Content-Type: {part.content_type}\r\n".encode()
        for name, value in part.headers:
            out += f"{name}: {value}\r\n".encode()
        out += b"\r\n" + part.body + b"\r\n"
    out += marker + b"--\r\n"
    quoted = chosen if _TOKEN.match(chosen) else '"' + chosen + '"'
    return f"{MULTIPART_MIXED};boundary={quoted}", bytes(out)


def _line_end(data: bytes, start: int) -> int:
    """Index just past the line that starts at ``start`` (CRLF or bare LF), or len(data)."""
    nl = data.find(b"\n", start)
    return len(data) if nl < 0 else nl + 1


def _parse_part(raw: bytes) -> Part:
    # Headers end at the first empty line (RFC 2046 5.1.1, RFC 822 syntax); no headers at all
    # means the part starts with the empty line.
    if raw.startswith(b"\r\n"):
        head, body = b"", raw[2:]
    elif raw.startswith(b"\n"):
        head, body = b"", raw[1:]
    else:
        m = re.search(rb"\r?\n\r?\n", raw)
        if m is None:
            raise MultipartError("body part without an empty line after its headers")
        head, body = raw[: m.start()], raw[m.end() :]
    headers: list[tuple[str, str]] = []
    for line in re.split(rb"\r?\n", head) if head else []:
        if line[:1] in (b" ", b"\t") and headers:  # RFC 822 folding
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip().decode("utf-8", "replace"))
            continue
        name_b, colon, value_b = line.partition(b":")
        if not colon or not name_b.strip():
            raise MultipartError("malformed body part header line")
        headers.append(
            (name_b.strip().decode("ascii", "replace"), value_b.strip().decode("utf-8", "replace"))
        )
    ctype = "text/plain"  # RFC 2046 5.1.1: the default for a part without Content-Type
    rest: list[tuple[str, str]] = []
    for name, value in headers:
        if name.lower() == "content-type":
            ctype = value
        else:
            rest.append((name, value))
    parse_content_type(ctype)
    return Part(ctype, body, tuple(rest))


def decode(content_type: str, body: bytes, *, max_parts: int = _MAX_PARTS) -> tuple[Part, ...]:
    """Decode a ``multipart/*`` body whose Content-Type value is ``content_type``.

    Raises :class:`MultipartError` for a missing or invalid boundary, a missing close delimiter,
    no parts, more than ``max_parts`` parts, or a malformed part.
    """
    media, params = parse_content_type(content_type)
    if not media.startswith("multipart/"):
        raise MultipartError(f"{media} is not a multipart type")
    boundary = params.get("boundary")
    if boundary is None:
        raise MultipartError("multipart Content-Type without a boundary parameter")
    _check_boundary(boundary)
    dash = b"--" + boundary.encode("ascii")
    parts: list[Part] = []
    start: int | None = None  # where the current part's content begins
    pos = 0
    while pos < len(body):
        end = _line_end(body, pos)
        line = body[pos:end]
        # RFC 2046 5.1.1: a delimiter line is dash-boundary [--] then optional transport
        # padding (LWSP), at the beginning of a line; anything else is content.
        if line.startswith(dash):
            tail = line[len(dash) :]
            closing = tail.startswith(b"--")
            if closing:
                tail = tail[2:]
            if tail.strip(b" \t\r\n") == b"" and (tail.endswith(b"\n") or end == len(body)):
                if start is not None:
                    content_end = pos
                    # the CRLF before the delimiter is part of the delimiter
                    if body[content_end - 2 : content_end] == b"\r\n":
                        content_end -= 2
                    elif body[content_end - 1 : content_end] == b"\n":
                        content_end -= 1
                    if len(parts) >= max_parts:
                        raise MultipartError(f"more than {max_parts} body parts")
                    parts.append(_parse_part(body[start:content_end]))
                if closing:
                    if not parts:
                        raise MultipartError("multipart body without any part")
                    return tuple(parts)  # the rest is the epilogue, ignored
                start = end
        pos = end
    raise MultipartError("multipart body without its close delimiter")


def find(parts: Iterable[Part], media_type: str) -> Part | None:
    """The first part of ``media_type`` (case-insensitive), or None."""
    wanted = media_type.lower()
    return next((p for p in parts if p.media_type == wanted), None)
