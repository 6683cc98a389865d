"""multipart/mixed codec (RFC 2046 5.1) at its edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.acm import multipart
from mcacm_sip.acm.multipart import MultipartError, Part

XML = "application/pidf+xml"


def test_round_trip_two_parts_keeps_bytes_and_types() -> None:
    parts = (Part(XML, b"<a/>"), Part("application/simple-filter+xml", b"<b/>\r\n"))
    ctype, body = multipart.encode(parts)
    assert ctype.startswith("multipart/mixed;boundary=")
    assert multipart.decode(ctype, body) == parts


@given(
    st.lists(
        st.tuples(st.sampled_from([XML, "text/plain", "application/sdp"]), st.binary(max_size=200)),
        min_size=1,
        max_size=4,
    )
)
def test_round_trip_any_content(raw: list[tuple[str, bytes]]) -> None:
    parts = tuple(Part(t, b) for t, b in raw)
    assert multipart.decode(*multipart.encode(parts)) == parts


def test_boundary_inside_a_part_is_avoided_or_refused() -> None:
    parts = [Part(XML, b"x\r\n--fixed\r\ny")]
    with pytest.raises(ValueError, match="occurs inside"):
        multipart.encode(parts, boundary="fixed")
    assert multipart.decode(*multipart.encode(parts)) == tuple(parts)


def test_preamble_epilogue_padding_and_quoted_boundary() -> None:
    body = (
        b"This is the preamble.\r\n"
        b"--b 1  \r\n"  # transport padding after the boundary (RFC 2046 5.1.1)
        b"Content-Type: application/pidf+xml\r\n"
        b"Content-Length: 4\r\n"
        b"\r\n<a/>\r\n"
        b"--b 1--\r\nepilogue, ignored\r\n--b 1\r\n"
    )
    (part,) = multipart.decode('multipart/mixed; boundary="b 1"', body)
    assert part.body == b"<a/>" and part.media_type == XML
    assert part.headers == (("Content-Length", "4"),)


def test_lookalike_lines_stay_content() -> None:
    body = b"--xx\r\nContent-Type: text/plain\r\n\r\n--xxy\r\n --xx\r\n--xx--\r\n"
    (part,) = multipart.decode("multipart/mixed;boundary=xx", body)
    assert part.body == b"--xxy\r\n --xx"


def test_part_without_headers_defaults_to_text_plain() -> None:
    (part,) = multipart.decode("multipart/mixed;boundary=q", b"--q\r\n\r\nhello\r\n--q--")
    assert (part.media_type, part.body) == ("text/plain", b"hello")


def test_bare_lf_line_ends_are_tolerated() -> None:
    body = b"--q\nContent-Type: application/pidf+xml\n\n<a/>\n--q--\n"
    (part,) = multipart.decode("multipart/mixed;boundary=q", body)
    assert part.body == b"<a/>"


@pytest.mark.parametrize(
    ("ctype", "body", "why"),
    [
        ("multipart/mixed", b"--q\r\n\r\nx\r\n--q--", "without a boundary"),
        ("multipart/mixed;boundary=q", b"--q\r\nContent-Type: text/plain\r\n\r\nx", "close"),
        ("multipart/mixed;boundary=q", b"--q--\r\n", "without any part"),
        ("multipart/mixed;boundary=q", b"--q\r\nno colon here\r\n\r\nx\r\n--q--", "header"),
        ("multipart/mixed;boundary=q", b"--q\r\nContent-Type: text/plain\r\nx\r\n--q--", "empty"),
        ("multipart/mixed;boundary=" + "a" * 71, b"", "invalid boundary"),
        ('multipart/mixed;boundary="ends with space "', b"", "invalid boundary"),
        ('multipart/mixed;boundary="open', b"", "unterminated"),
        ("application/pidf+xml", b"<a/>", "not a multipart"),
        ("nonsense", b"", "bad Content-Type"),
    ],
)
def test_malformed_bodies_are_400(ctype: str, body: bytes, why: str) -> None:
    with pytest.raises(MultipartError, match=why) as exc:
        multipart.decode(ctype, body)
    assert exc.value.status == 400


def test_part_count_is_capped() -> None:
    ctype, body = multipart.encode([Part("text/plain", b"x")] * 17)
    with pytest.raises(MultipartError, match="more than 16"):
        multipart.decode(ctype, body)


def test_header_injection_is_refused_on_encode() -> None:
    with pytest.raises(ValueError, match="injection"):
        multipart.encode([Part("text/plain\r\nX-Evil: 1", b"x")])


def test_content_type_parameters() -> None:
    assert multipart.parse_content_type('Multipart/Mixed; Boundary="a\\"b"; charset=utf-8') == (
        "multipart/mixed",
        {"boundary": 'a"b', "charset": "utf-8"},
    )
