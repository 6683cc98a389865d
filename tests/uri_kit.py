"""Hypothesis strategies for RFC 3261 §19.1.4: the spellings a foreign stack may give an identity
(escaped user characters, host and scheme in any case, parameters the comparison ignores)."""

from __future__ import annotations

from hypothesis import strategies as st

from mcacm_sip.sip.uri import identity

_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()")
IGNORED_PARAMS = (";lr", ";x-foo=Bar", ";ob")
"""Parameters §19.1.4 ignores when only one side has them."""

user_parts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
_labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
hosts = st.lists(_labels, min_size=1, max_size=3).map(".".join)


@st.composite
def respelling(draw: st.DrawFn, uri: str, *, params: bool = True) -> str:
    """An equivalent spelling of ``uri`` (``scheme:user@host[:port]``, no parameters): each
    unreserved user character maybe as ``%hh`` / ``%HH``, host letters and the scheme in
    random case, and (``params``) some parameters the comparison ignores."""
    u = identity(uri)
    assert u.scheme in ("sip", "sips") and not u.params, uri
    scheme = "".join(c.upper() if draw(st.booleans()) else c for c in u.scheme)
    user = ""
    if u.user is not None:
        user = "".join(f"%{ord(c):02{draw(st.sampled_from('xX'))}}"
                       if c in _UNRESERVED and draw(st.booleans()) else c
                       for c in u.user) + "@"
    host = "".join(c.upper() if draw(st.booleans()) else c for c in u.hostport)
    extra = draw(st.lists(st.sampled_from(IGNORED_PARAMS), max_size=2, unique=True)) \
        if params else []
    spelled = f"{scheme}:{user}{host}{''.join(extra)}"
    assert identity(spelled) == u  # the kit itself must not change the identity
    return spelled


@st.composite
def respelled(draw: st.DrawFn) -> tuple[str, str]:
    """A canonical identity and an RFC-equivalent spelling of it."""
    scheme = draw(st.sampled_from(["sip", "sips"]))
    canonical = f"{scheme}:{draw(user_parts)}@{draw(hosts)}"
    return canonical, draw(respelling(canonical))
