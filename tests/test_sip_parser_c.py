"""The compiled header splitting (mcacm_sip/sip/_cparse.c) is the pure-Python one, faster.

The parser's own tests run over both (the ``sip_parser`` fixture, tests/conftest.py); here the
two are compared directly, over generated header blocks and over mutated corpus messages: the
same store, the same repeated names, the same names as received, and for whole messages the
same parse result, or the same refusal and the same error answer.  Skipped when the extension
was not built, failed then under MCACM_REQUIRE_INTEROP=1 (.ci/run).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tools import REQUIRE_ENV, require_c_parser

from mcacm_sip.sip import message
from mcacm_sip.sip.errors import SipParseError
from mcacm_sip.sip.message import _HeaderSplitter as HeaderSplitter

CORPUS = Path(__file__).parent / "sip" / "corpus"
SEEDS = sorted(CORPUS.glob("*.sip")) + sorted((CORPUS / "rfc4475").glob("*.dat"))


@pytest.fixture(scope="module")
def c_split() -> HeaderSplitter:
    return require_c_parser()


def split(splitter: HeaderSplitter, head: bytes) -> tuple[Any, ...]:
    """Everything a splitting says of a header block, in its three call forms."""
    first_nl = head.find(b"\n")
    repeated: set[str] = set()
    original: dict[str, str] = {}
    return (splitter(head, first_nl), splitter(head, first_nl, repeated),
            splitter(head, first_nl, None, original), repeated, original)


# What the header rules turn on: compact and long names in any case, the separators, folding,
# bare CRs, the white space str.strip() removes (\x0b, \x1c, U+0085), quotes and <...> in
# comma lists, NUL, UTF-8 and bytes that are not UTF-8.
_PIECES = [b"Via", b"v", b"V", b"f", b"From", b"t", b"To", b"i", b"Call-ID", b"CSeq", b"m",
           b"Contact", b"Route", b"record-route", b"l", b"Content-Length", b"o", b"u", b"X-A",
           b"x-a", b"k", b"q", b":", b": ", b" ", b"\t", b"\r\n", b"\n", b"\r", b"\r\n ",
           b"\n\t", b",", b", ", b'"', b"<", b">", b";", b"=", b"\\", b"\x00", b"\x0b", b"\x0c",
           b"\x1c", b"\x1f", b"\x7f", b"\x85", b"\xc2\x85", b"\xc2\xa0", b"\xc3\xa9", b"\xff",
           b"\xe2\x80\xa8", b"a", b"1", b"SIP/2.0/UDP h:1;branch=z9hG4bK1", b"<sip:x@y>",
           b"sip:x@y"]
_HEADS = st.lists(st.sampled_from(_PIECES), max_size=48).map(b"".join)


@settings(max_examples=4000, deadline=None)
@given(st.one_of(_HEADS, st.binary(max_size=200)),
       st.sampled_from([b"MESSAGE sip:a@b SIP/2.0\r\n", b"SIP/2.0 200 OK\n", b"", b"x"]))
@example(b"Via: a, b,, c\r\nv: d\r\nX-A : 1\r\nx-a: 2", b"x\n")
@example(b':v', b"x\n")
@example(b"A: 1\r\n b\r\n\t c", b"x\n")
@example(b'Contact: "a,b" <sip:x>, <sip:y>\r\nm: ,', b"x\n")
def test_c_splits_every_header_block_as_python_does(c_split: HeaderSplitter, head: bytes,
                                                     start: bytes) -> None:
    block = start + head
    assert split(c_split, block) == split(message._py_parse_headers, block)


@contextmanager
def splitting(splitter: HeaderSplitter) -> Iterator[None]:
    before = message._parse_headers
    message._parse_headers = splitter
    try:
        yield
    finally:
        message._parse_headers = before


def outcome(data: bytes, datagram: bool) -> tuple[Any, ...]:
    """What parse, error_response and read_raw make of ``data``, as comparable values."""
    raw = message.read_raw(data)
    seen: tuple[Any, ...] = (raw.start, dict(raw.store), raw.body)
    try:
        msg = message.parse(data, datagram=datagram)
    except SipParseError as err:
        answer = message.error_response(data, err)
        # the To tag error_response adds is new each time
        return ("refused", err.status, err.reason,
                answer if answer is None else answer.split(b";tag=")[0], *seen)
    fields = ("method", "uri", "status", "reason", "cseq_method")
    return ("parsed", type(msg).__name__, tuple(getattr(msg, f, None) for f in fields),
            msg.call_id, msg.cseq, msg.from_tag, msg.to_tag, msg.branch, msg.via, msg.store,
            msg.body, msg.raw.headers._original, *seen)


def mutate(rng: random.Random, data: bytes, pieces: list[bytes] = _PIECES, most: int = 6,
           span: int = 30) -> bytes:
    """``data`` with 1 to ``most`` random edits: a byte changed, one of ``pieces`` inserted, up
    to 8 bytes deleted, or up to ``span`` bytes of it copied elsewhere."""
    out = bytearray(data)
    for _ in range(rng.randint(1, most)):
        i = rng.randrange(len(out) + 1)
        op = rng.randrange(4)
        if op == 0 and out:
            out[min(i, len(out) - 1)] = rng.randrange(256)
        elif op == 1:
            out[i:i] = rng.choice(pieces)
        elif op == 2:
            del out[i:i + rng.randint(1, 8)]
        else:
            j = rng.randrange(len(out) + 1)
            out[i:i] = out[j:j + rng.randint(1, span)]
    return bytes(out)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name)
def test_c_and_python_parse_every_mutated_corpus_message_alike(c_split: HeaderSplitter,
                                                              seed: Path) -> None:
    """Each corpus message and 60 mutations of it: the same message, or the same refusal and
    the same error answer (every defined 400 and its reason), on datagrams and streams."""
    rng = random.Random(seed.name)
    original = seed.read_bytes()
    for data in [original, *(mutate(rng, original) for _ in range(60))]:
        for datagram in (True, False):
            with splitting(message._py_parse_headers):
                want = outcome(data, datagram)
            with splitting(c_split):
                got = outcome(data, datagram)
            assert got == want, data


def test_c_refuses_what_it_is_not_given(c_split: HeaderSplitter) -> None:
    """Wrong argument types raise TypeError (never a crash); a first_nl past the end is an
    empty block, as in Python."""
    bad: Callable[..., object] = c_split
    for args in [("x", 0), (b"x", "0"), (b"x", 0, []), (b"x", 0, None, []), (b"x",)]:
        with pytest.raises(TypeError):
            bad(*args)
    assert c_split(b"x\n", 10) == message._py_parse_headers(b"x\n", 10) == {}


def test_huge_header_blocks_split_alike(c_split: HeaderSplitter) -> None:
    """Blocks far above the parser's caps (read_raw reads captures uncapped): a 1 MiB value,
    100 000 lines, one 50 000-character name."""
    blocks = [b"x\nA: " + b"v" * (1 << 20),
              b"x\n" + b"\r\n".join(b"H%d: %d" % (i % 300, i) for i in range(100000)),
              b"x\n" + b"N" * 50000 + b": 1\r\nv: a," + b" ," * 30000]
    for block in blocks:
        assert split(c_split, block) == split(message._py_parse_headers, block)


def test_the_environment_chooses_the_splitting() -> None:
    """MCACM_SIP_PARSER: unset or auto (the C one when built), python, c; anything else is
    refused at import."""
    def parser(value: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != message.PARSER_ENV}
        if value is not None:
            env[message.PARSER_ENV] = value
        return subprocess.run(
            [sys.executable, "-c", "from mcacm_sip.sip import message as m; print(m.PARSER, "
             "m._parse_headers is m._py_parse_headers)"],
            capture_output=True, text=True, env=env, timeout=60)

    built = find_spec("mcacm_sip.sip._cparse") is not None
    assert parser("python").stdout.split() == ["python", "True"]
    if built:
        assert parser(None).stdout.split() == ["c", "False"]
        assert parser("auto").stdout.split() == ["c", "False"]
        assert parser("c").stdout.split() == ["c", "False"]
    bad = parser("fast")
    assert bad.returncode != 0 and "want auto, c or python" in bad.stderr


def test_without_the_extension_its_tests_skip_or_in_ci_fail(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that could not build it runs the parser in pure Python and skips the tests
    over C; CI (.ci/run, MCACM_REQUIRE_INTEROP=1) fails them instead."""
    def not_built(choice: str) -> None:
        raise ImportError("cannot import name '_cparse'")

    monkeypatch.setattr(message, "_load_c_parser", not_built)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install gcc python3-dev"):
        require_c_parser()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="MCACM_REQUIRE_INTEROP=1 requires it"):
        require_c_parser()
