"""Hypothesis strategies for hostile input: SIP messages of every method we handle (valid, then
mutated) and ACM/FA XML bodies (valid from tests/acm/strategies.py or examples/flows, then
mutated), plus plain random bytes.

The same mutation operators serve the atheris harnesses (fuzz/), which apply them with bytes
drawn from their own fuzzed input (:func:`mutate_with`).
"""

from __future__ import annotations

import random
from pathlib import Path

from acm.strategies import flows
from hypothesis import strategies as st

from mcacm_sip.acm import codec

ROOT = Path(__file__).resolve().parents[2]
SIP_CORPUS = ROOT / "tests" / "sip" / "corpus"
FLOW_EXAMPLES = ROOT / "examples" / "flows"

METHODS = ("MESSAGE", "OPTIONS", "REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "ACK", "CANCEL",
           "INFO")
"""What our nodes serve (MESSAGE, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, OPTIONS) and a few they
answer 405 / drop."""

INJECTION = "\r\nX-Injected: 1"
"""What a CR/LF in a value would smuggle into an answer echoing it (contract.INJECTED)."""

# Fragments a mutation splices in: what attacks on SIP framing and XML parsers are made of.
SIP_FRAGMENTS = (
    b"\r\n", b"\n", b"\r", b"\x00", b"\r\n\r\n", b"Content-Length: 99999999\r\n",
    b"Content-Length: -1\r\n", b"l: 3\r\n", b"Via: SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx\r\n",
    b"v: SIP/2.0/TCP a:0\r\n", b" \t", b",,,", b"<sip:a@b>;tag=", b";;;=", b"\xff\xfe", b"SIP/2.0 ",
    b"INVITE sip:x SIP/2.0\r\n", b"CSeq: 4294967296 MESSAGE\r\n", b"Require: foo\r\n",
    INJECTION.encode(),
)
XML_FRAGMENTS = (
    b'<!DOCTYPE r [<!ENTITY a "aaaa">]>', b"&a;", b"&#13;&#10;X-Injected: 1", b"&#0;", b"&#x1;",
    b"<![CDATA[\r\nX]]>", b"<!-- c -->", b"<?pi x?>", b"<x:y xmlns:x='urn:q'/>", b"</",
    b"<a>" * 70, b" xmlns='urn:x'", b" a='1' a='2'", b"\xc3\x28", b"\x00", b"\xef\xbb\xbf",
    b'<?xml version="1.0" encoding="ISO-8859-1"?>', b"9999-12-31T23:59:60Z", b"sip:", b"&lt;",
    b"<!ENTITY % p SYSTEM 'file:///etc/passwd'>", b"]]>",
)


def _valid_flow_bodies() -> list[bytes]:
    return sorted(p.read_bytes() for p in FLOW_EXAMPLES.glob("*.xml")
                  if not p.name.startswith("fa-"))


FLOW_FILES = _valid_flow_bodies()
FA_FILES = {p.name: p.read_bytes() for p in sorted(FLOW_EXAMPLES.glob("fa-*.xml"))}


# --------------------------------------------------------------------------- mutations


def mutate_with(data: bytes, rng: random.Random, fragments: tuple[bytes, ...]) -> bytes:
    """One random mutation of ``data``: a byte flip, a truncation, a deleted, duplicated or
    oversized slice, or a hostile fragment spliced in."""
    n = len(data)
    i, j = sorted((rng.randint(0, n), rng.randint(0, n)))
    op = rng.randrange(7)
    if op == 0 and n:
        k = rng.randrange(n)
        return data[:k] + bytes([data[k] ^ (1 << rng.randrange(8))]) + data[k + 1:]
    if op == 1:
        return data[:i]
    if op == 2:
        return data[:i] + data[j:]
    if op == 3:
        return data[:j] + data[i:j] + data[j:]
    if op == 4:
        return data[:i] + data[i:j] * rng.randint(2, 64) + data[j:]
    if op == 5:
        return data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[i:]
    return data[:i] + rng.choice(fragments) + data[i:]


def _mutated(valid: st.SearchStrategy[bytes], fragments: tuple[bytes, ...],
             max_mutations: int) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = draw(valid)
        rng = random.Random(draw(st.integers(0, 2**32 - 1)))
        for _ in range(draw(st.integers(1, max_mutations))):
            data = mutate_with(data, rng, fragments)
        return data

    return build()


# --------------------------------------------------------------------------- SIP


_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
_host = st.sampled_from(["127.0.0.1", "[::1]", "acms.primary.example", "10.0.0.7"])
_user_uri = st.builds("sip:{}@{}".format, _token, _host)
_header_value = _token | st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
                                 max_size=30)


@st.composite
def _headers(draw: st.DrawFn, method: str, response: bool) -> list[tuple[str, str]]:
    """The header list of a valid request or response of ``method``."""
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS"]))
    port = draw(st.integers(1, 65535))
    via = f"SIP/2.0/{transport} {draw(_host)}:{port};branch=z9hG4bK{draw(_token)}"
    if draw(st.booleans()):
        via += ";rport"
    to = f"<{draw(_user_uri)}>" + (f";tag={draw(_token)}" if response or draw(st.booleans())
                                   else "")
    compact = draw(st.booleans())
    headers = [
        ("v" if compact else "Via", via),
        ("Max-Forwards", str(draw(st.integers(0, 70)))),
        ("f" if compact else "From", f"<{draw(_user_uri)}>;tag={draw(_token)}"),
        ("t" if compact else "To", to),
        ("i" if compact else "Call-ID", f"{draw(_token)}@{draw(_token)}"),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    if method in ("REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH"):
        headers.append(("Expires", str(draw(st.integers(0, 100000)))))
    if method in ("SUBSCRIBE", "NOTIFY", "PUBLISH"):
        headers.append(("Event", draw(st.sampled_from(["presence", "reg", "x-acm", "conference"]))))
    if method == "NOTIFY":
        headers.append(("Subscription-State", draw(st.sampled_from(
            ["active;expires=60", "terminated;reason=timeout", "pending"]))))
    if method in ("REGISTER", "SUBSCRIBE"):
        headers.append(("m" if compact else "Contact", f"<{draw(_user_uri)}>"))
    if method == "MESSAGE":
        headers.append(("P-Asserted-Identity", f"<{draw(_user_uri)}>"))
    for _ in range(draw(st.integers(0, 2))):
        headers.append((draw(st.sampled_from(["Subject", "User-Agent", "X-Extra", "Supported"])),
                        draw(_header_value)))
    draw(st.randoms()).shuffle(headers)  # order is free (RFC 3261 7.3.1), Via first or not
    return headers


_BODIES: dict[str, st.SearchStrategy[tuple[str, bytes]]] = {
    "MESSAGE": st.sampled_from(FLOW_FILES).map(lambda b: (codec.ACM_CONTENT_TYPE, b)),
    "PUBLISH": st.just(("application/pidf+xml", FA_FILES["fa-publish-pidf.xml"])),
    "SUBSCRIBE": st.just(("application/simple-filter+xml", FA_FILES["fa-simple-filter.xml"])),
    "NOTIFY": st.just(("application/pidf+xml", FA_FILES["fa-notify-per-fa.xml"])),
}


@st.composite
def valid_sip(draw: st.DrawFn) -> bytes:
    """A well-formed request of one of :data:`METHODS`, or a response to one."""
    method = draw(st.sampled_from(METHODS))
    response = draw(st.booleans())
    if response:
        status = draw(st.sampled_from([100, 200, 202, 400, 403, 404, 413, 415, 481, 500, 503]))
        start = f"SIP/2.0 {status} {draw(st.sampled_from(['OK', 'Bad', '', 'Nope Nope']))}"
    else:
        start = f"{method} {draw(_user_uri)} SIP/2.0"
    headers = draw(_headers(method, response))
    body = b""
    if method in _BODIES and not response and draw(st.booleans()):
        ctype, body = draw(_BODIES[method])
        headers.append(("c" if draw(st.booleans()) else "Content-Type", ctype))
    headers.append(("l" if draw(st.booleans()) else "Content-Length", str(len(body))))
    eol = "\r\n" if draw(st.integers(0, 9)) else "\n"  # LF-only peers (RFC 4475)
    head = eol.join([start, *(f"{n}: {v}" for n, v in headers)]) + eol + eol
    return head.encode("utf-8", "surrogatepass") + body


_corpus = st.sampled_from(sorted(p.read_bytes() for p in SIP_CORPUS.glob("*.sip")))

sip_messages = _mutated(valid_sip() | _corpus, SIP_FRAGMENTS, 4)
"""Valid SIP messages (drawn, or from the torture corpus) after 1-4 mutations."""
sip_inputs = st.one_of(valid_sip(), sip_messages, st.binary(max_size=1500))

DIGIT_LOOKALIKES = tuple(c for c in map(chr, range(0x10000)) if c.isdigit() and not c.isascii())
"""Characters Python's ``isdigit()`` takes that are not ASCII DIGIT (RFC 3261 25.1): other
scripts' decimal digits (``int()`` reads them) and superscripts etc. (``int()`` refuses them)."""
_any_text = st.text(st.characters(codec="utf-8"), max_size=16)


@st.composite
def unicode_in_headers(draw: st.DrawFn) -> bytes:
    """A valid message whose start line or one header line got arbitrary Unicode: its ASCII
    digits swapped for look-alikes, its value replaced, or text inserted anywhere."""
    data = draw(valid_sip())
    end = data.find(b"\r\n\r\n")
    end, sep = (end, 4) if end >= 0 else (data.find(b"\n\n"), 2)
    lines = data[:end].decode("utf-8", "surrogatepass").split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    line = lines[i]
    how = draw(st.sampled_from(["digits", "value", "insert"]))
    if how == "digits":
        line = "".join(draw(st.sampled_from(DIGIT_LOOKALIKES)) if c.isdigit() and draw(
            st.booleans()) else c for c in line)
    elif how == "value":
        name, _, _ = line.partition(":")
        line = f"{name}: {draw(_any_text)}"
    else:
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(_any_text) + line[at:]
    lines[i] = line
    head = "\n".join(lines).encode("utf-8", "surrogatepass")
    return head + data[end:end + sep] + data[end + sep:]

"""Anything a peer can send in one datagram or one framed stream message."""

# --------------------------------------------------------------------------- XML


def _encoded(flow: object) -> bytes:
    return codec.encode(flow)  # type: ignore[arg-type]


valid_acm = flows.map(_encoded) | st.sampled_from(FLOW_FILES)
"""Valid ACM bodies: every flow class, drawn, plus the example documents."""
acm_bodies = st.one_of(
    valid_acm,
    _mutated(valid_acm, XML_FRAGMENTS, 4),
    st.binary(max_size=512),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
"""Anything a peer can put in a MESSAGE body claiming ACM_CONTENT_TYPE."""

FA_CONTENT_TYPES = ("application/pidf+xml", "application/simple-filter+xml",
                    "application/vnd.3gpp.mcptt-info+xml", "multipart/mixed;boundary=b", "text/x")
_fa_valid = st.sampled_from(sorted(FA_FILES.values()))
fa_bodies = st.tuples(
    st.sampled_from(FA_CONTENT_TYPES),
    _fa_valid | _mutated(_fa_valid, XML_FRAGMENTS, 4) | st.binary(max_size=256),
)
"""(Content-Type, body) pairs for the FA server's PUBLISH / SUBSCRIBE / NOTIFY decoders."""
