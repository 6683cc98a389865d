"""The compiled reading of a received body's prolog and marks (``_c14n.prolog_marks``, what
``xmlsafe.parse`` asks before its parse) is the Python code's: whether
``xmlsafe._plain_prolog`` takes the prolog, and the counts of ``</`` and ``=`` the caps read."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tools import require_compiled

from mcacm_sip.acm import xmlsafe

_Marks = Callable[[bytes], tuple[bool, int, int]]


@pytest.fixture(scope="module")
def marks() -> _Marks:
    return require_compiled(xmlsafe._load_marks, "the compiled prolog and marks reader")


_pieces = st.sampled_from([
    b'<?xml version="1.0" encoding="UTF-8"?>', b"<?xml version='1.0' encoding='UTF-8'?>",
    b'<?xml version="1.0" encoding="utf-8"?>', b'<?xml version="1.0"?>',
    b'<?xml version="1.0" encoding="UTF-16"?>', b"\n", b"\r\n", b" ", b"<", b"</", b"=",
    b"!", b"?", b"<!--c-->", b"<?pi?>", b"<!DOCTYPE a>", b"\xef\xbb\xbf", b"a", b"/", b"\x00",
    b'<a b="1">', b"</a>"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(_pieces, max_size=8).map(b"".join) | st.binary(max_size=64))
@example(b"")
@example(b"<")
@example(b'<?xml version="1.0"?>\n<')
@example(b'<?xml version="1.0"?>\n<a/>')
@example(b'<?xml version="1.0"?>\n\n<a/>')
@example(b'<?xml version="1.0"?><!--x--><a/>')
def test_the_compiled_marks_are_the_python_codes(marks: _Marks, data: bytes) -> None:
    assert marks(data) == (xmlsafe._plain_prolog(data), data.count(b"</"), data.count(b"="))


def test_the_hot_path_body_takes_the_plain_prolog(marks: _Marks) -> None:
    data = b'<?xml version="1.0" encoding="UTF-8"?>\n<r xmlns="urn:x" a="1"><b>x</b></r>'
    assert marks(data) == (True, 2, 4)  # (two "=" in the declaration)
