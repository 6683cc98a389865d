"""The core's shortcuts (issue 18, round 11) give what the general code gives: each test
compares a fast path with the general one it stands for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from uri_kit import respelled

from mcacm_sip.core.identity import _same_uris, matches_any, matches_pattern, same

_IDENTITIES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["sip:alice@example.com", "sip:alice@example.com;maddr=x",
                     "sip:alice@example.com;transport=tcp", "sips:alice@example.com",
                     "sip:%61lice@EXAMPLE.com", "tel:+123", "sip:bad@", "*"]),
    respelled().map(lambda pair: pair[1]))
_PATTERNS = st.lists(st.sampled_from(["*", "sip:*@example.com", "sip:alice@*", "sip:bob@*",
                                      "sips:*@*", "not a pattern"]), max_size=4).map(tuple)


@given(_IDENTITIES)
def test_the_same_text_is_the_same_party_as_uris_compare_it(text: str) -> None:
    copy = "".join(list(text))  # equal text, another object: not shortcut by identity
    assert same(text, copy) is True
    assert _same_uris(text, copy) is True


@given(_IDENTITIES, _IDENTITIES)
def test_same_compares_other_texts_as_uris(a: str, b: str) -> None:
    assert same(a, b) is (a == b or _same_uris(a, b))
    assert same(a, None) is False and same(None, b) is False and same(None, None) is True


@given(_IDENTITIES, _PATTERNS)
def test_matches_any_is_any_pattern_matching(text: str, patterns: tuple[str, ...]) -> None:
    assert matches_any(text, patterns) is any(matches_pattern(text, p) for p in patterns)
