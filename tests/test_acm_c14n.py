"""The compiled canonicaliser (mcacm_sip/acm/_c14n.c) writes the text libxml2's exclusive C14N
writes for a received user profile (codec._canonical), from the document's bytes, or leaves it
to libxml2 (None): for generated profiles embedded in ACM-like documents (prefixes, default
namespaces and xmlns="", redeclarations, attribute orders, quotes, references, white space,
CR/LF, non-ASCII, empty elements, comments, CDATA, processing instructions, namespace names
libxml2 refuses) and for every profile of the corpus and the examples, which it must take."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from lxml import etree
from tools import require_c14n

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.xmlsafe import parse

ROOT = Path(__file__).resolve().parents[1]
PROFILE_NS = codec.USER_PROFILE_NS
ACM_NS = codec.ACM_NS
_Canonical = Callable[[bytes, bytes, bytes], "str | None"]


@pytest.fixture(scope="module")
def c14n() -> _Canonical:
    return require_c14n()


def _libxml2(data: bytes) -> str | None:
    """libxml2's text of the document's one profile element, None where it refuses it."""
    root = parse(data)
    found = list(root.iter(codec._PROFILE_ROOT_TAG))
    assert len(found) == 1
    try:
        return codec._canonical(found[0])
    except etree.C14NError:
        return None


def _compiled(c14n: _Canonical, data: bytes) -> str | None:
    return c14n(data, PROFILE_NS.encode(), codec.USER_PROFILE_ROOT.encode())


# --------------------------------------------------------------------------- generated documents

_URIS = [PROFILE_NS, ACM_NS, "urn:x:other", "http://www.w3.org/2001/XMLSchema-instance",
         "urn:ietf:params:xml:ns:common-policy", "http://www.w3.org/2001/04/xmlenc#",
         "http://example.com:8080/a/b?c=d#e", "urn:a"]
# namespace names libxml2 may refuse (relative, unparsable) or write unescaped
_ODD_URIS = st.sampled_from(["rel/ative", "x", "http://a:b/", "urn:a b", "urn:%41", "urn:%zz",
                             "http://[::1]/", "urn:é", "urn:a#b#c", "a&b:c", "urn:a'b",
                             'urn:a"b', "urn:a<b", "urn:a\tb", "urn:a&#x20;b", "//host/x",
                             "http://host?q", "http:///x", "urn:a?b?c", "mailto:a@b",
                             "z:", "c:/x", "http://h:99999999999/x"]) | st.text(
    alphabet="az:/?#[]@!$&'()*+,;=%-._~ 09", max_size=12)
_PREFIXES = ["a", "b", "cp", "ss", "xsi", "é"]
_LOCALS = ["x", "y", "id", "type", "a", "b", "Z", "index", "é-x", "日本", "list"]
_SPACE = st.sampled_from([" ", "  ", "\n", "\t", "\r\n", "\r", " \n "])
_OPT_SPACE = st.sampled_from(["", "", " ", "\n", "\t", "\r\n"])
_TEXT_PIECES = st.sampled_from([
    "plain", " ", "  ", "\n", "\r\n", "\r", "\t", "é", "日本語", "\U0001f600", ">", "]",
    "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#9;", "&#10;", "&#13;", "&#xD;", "&#xa;",
    "&#38;", "&#60;", "&#62;", "&#x1F600;", "&#233;", "&#x20;", "'", '"', "a=b", "/"])
_ATTR_PIECES = st.sampled_from([
    "v", " ", "  ", "\n", "\r\n", "\r", "\t", "é", "\U0001f600", ">", "/", "=",
    "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#9;", "&#x9;", "&#10;", "&#xA;", "&#13;",
    "&#xd;", "&#38;", "&#60;", "&#34;", "&#39;", "&#x1F600;", "&#32;", "'", '"'])


def _escape_uri(uri: str, quote: str) -> str:
    out = uri.replace("&", "&amp;").replace("<", "&lt;")
    return out.replace(quote, "&quot;" if quote == '"' else "&apos;")


@st.composite
def _declarations(draw: st.DrawFn, odd: bool) -> dict[str, str]:
    decls: dict[str, str] = {}
    for _ in range(draw(st.integers(0, 3))):
        prefix = draw(st.sampled_from(["", *_PREFIXES]))
        uris = st.sampled_from(_URIS)
        if odd:
            uris = uris | _ODD_URIS
        uri = draw(uris | st.just("") if prefix == "" else uris)
        if uri or prefix == "":
            decls[prefix] = uri
    return decls


@st.composite
def _start(draw: st.DrawFn, name: str, decls: dict[str, str],
           attrs: list[tuple[str, str]]) -> str:
    parts = [f"<{name}"]
    items = [(("xmlns" if p == "" else f"xmlns:{p}"), u, True) for p, u in decls.items()]
    items += [(n, v, False) for n, v in attrs]
    items = draw(st.permutations(items))
    for attr, value, is_uri in items:
        quote = draw(st.sampled_from(['"', "'"]))
        text = _escape_uri(value, quote) if is_uri else value.replace(
            quote, "&quot;" if quote == '"' else "&apos;")
        parts.append(f"{draw(_SPACE)}{attr}{draw(_OPT_SPACE)}={draw(_OPT_SPACE)}"
                     f"{quote}{text}{quote}")
    parts.append(draw(_OPT_SPACE))
    return "".join(parts)


@st.composite
def _element(draw: st.DrawFn, scope: dict[str, str], depth: int, odd: bool,
             name: str | None = None, decls: dict[str, str] | None = None) -> str:
    if decls is None:
        decls = draw(_declarations(odd))
    inner = {**scope, **decls}
    if name is None:
        prefixes = [p for p, u in inner.items() if p and u]
        prefix = draw(st.sampled_from(["", *prefixes]))
        name = (f"{prefix}:" if prefix else "") + draw(st.sampled_from(_LOCALS))
    attrs: list[tuple[str, str]] = []
    seen: set[tuple[str | None, str]] = set()
    for _ in range(draw(st.integers(0, 4))):
        prefixes = [p for p, u in inner.items() if p and u]
        prefix = draw(st.sampled_from(["", "xml", *prefixes]))
        local = draw(st.sampled_from(["lang", "space"] if prefix == "xml" else _LOCALS))
        key = (None if prefix == "" else inner.get(prefix, prefix), local)
        if key in seen:
            continue
        seen.add(key)
        value = "".join(draw(st.lists(_ATTR_PIECES, max_size=6)))
        attrs.append(((f"{prefix}:" if prefix else "") + local, value))
    start = draw(_start(name, decls, attrs))
    children: list[str] = []
    if depth < 4:
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["text", "text", "element", "element", "comment",
                                         "rare"]))
            if kind == "text":
                children.append("".join(draw(st.lists(_TEXT_PIECES, min_size=1, max_size=5))))
            elif kind == "element":
                children.append(draw(_element(inner, depth + 1, odd)))
            elif kind == "comment":
                children.append(draw(st.sampled_from(["<!---->", "<!-- c -->",
                                                      "<!--a\r\nb&amp;<x>-->"])))
            else:
                children.append(draw(st.sampled_from(["<![CDATA[a<b&c]]>", "<?pi data?>",
                                                      "<?pi?>"])))
    if not children and draw(st.booleans()):
        return start + "/>"
    return f"{start}>{''.join(children)}</{name}{draw(_OPT_SPACE)}>"


@st.composite
def _documents(draw: st.DrawFn, odd: bool = False) -> bytes:
    """An ACM-like document embedding one profile, or a profile document alone."""
    decl = draw(st.sampled_from(['<?xml version="1.0" encoding="UTF-8"?>\n',
                                 "<?xml version='1.0' encoding='utf-8'?>", "",
                                 '<?xml version="1.0"?>\r\n',
                                 '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
                                 "\ufeff<?xml version=\"1.0\"?>"]))
    prolog = draw(st.sampled_from(["", "<!-- before -->\n", "<?pi before?>"]))
    outer = draw(_declarations(odd))
    alone = draw(st.booleans())
    acm_scope = {"": ACM_NS, **outer} if not alone else {}
    # the profile root: unprefixed with its own default or the ACM document's, or prefixed,
    # declared here or above
    style = draw(st.sampled_from(["default", "default-above", "prefix-here", "prefix-above"]))
    decls = draw(_declarations(odd))
    if style == "default-above" and not alone:
        acm_scope[""] = PROFILE_NS
        decls.pop("", None)
        name = "mcptt-user-profile"
    elif style.startswith("default"):
        decls[""] = PROFILE_NS
        name = "mcptt-user-profile"
    else:
        prefix = draw(st.sampled_from(_PREFIXES))
        name = f"{prefix}:mcptt-user-profile"
        if style == "prefix-above" and not alone:
            acm_scope[prefix] = PROFILE_NS
            decls.pop(prefix, None)
        else:
            decls[prefix] = PROFILE_NS
    profile = draw(_element(acm_scope, 1, odd, name=name, decls=decls))
    if alone:
        body = profile
    else:
        before = draw(st.sampled_from(["", "<transaction-id>t&amp;1</transaction-id>",
                                       "<x><![CDATA[<mcptt-user-profile>]]><?p x?></x>",
                                       "<!-- <mcptt-user-profile/> -->"]))
        after = draw(st.sampled_from(["", "<y a='&lt;'/>", "<anyExt>\r\n</anyExt>"]))
        root_decls = {p: u for p, u in acm_scope.items() if p not in ("", "acm")}
        attrs = "".join(f' xmlns:{p}="{_escape_uri(u, chr(34))}"' for p, u in root_decls.items())
        if acm_scope[""] == PROFILE_NS:  # the ACM elements prefixed, the default the profile's
            body = (f'<acm:profile-update-request xmlns:acm="{ACM_NS}" xmlns="{PROFILE_NS}"'
                    f"{attrs}>{before}<acm:profile>{profile}</acm:profile>{after}"
                    "</acm:profile-update-request>")
        else:
            body = (f'<profile-update-request xmlns="{ACM_NS}"{attrs}>{before}<profile>'
                    f"{profile}</profile>{after}</profile-update-request>")
    epilog = draw(st.sampled_from(["", "\n", "<!-- after -->", "<?pi after?>\n"]))
    return (decl + prolog + body + epilog).encode()


def _check(c14n: _Canonical, data: bytes) -> None:
    try:
        expected = _libxml2(data)
    except AcmError:
        event("not accepted by the parser")
        return
    got = _compiled(c14n, data)
    event("written" if got is not None else "left to libxml2")
    if got is not None:
        assert got == expected, (data, got, expected)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
@example(b'<a:mcptt-user-profile xmlns:a="urn:3gpp:mcptt:user-profile:1.0" xmlns="urn:x:other">'
         b'<y xmlns=""/><a:y z="1" a:z="2" xmlns:b="urn:a" b:z="3" b="&#9;\r\n\t"/>'
         b"</a:mcptt-user-profile>")
def test_the_compiled_text_is_libxml2s(c14n: _Canonical, data: bytes) -> None:
    _check(c14n, data)


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(odd=True))
def test_namespace_names_libxml2_refuses_or_writes_unescaped_are_left_to_it(
        c14n: _Canonical, data: bytes) -> None:
    """Any namespace name in scope: the compiled text is libxml2's, and where libxml2 refuses
    the profile (a relative name) or the codec does (one holding &, < or ") it gives None."""
    _check(c14n, data)
    try:
        root = parse(data)
    except AcmError:
        return
    if _compiled(c14n, data) is not None:
        for el in root.iter():
            for uri in el.nsmap.values():
                assert not any(c in uri for c in codec._UNESCAPED)


def test_the_common_form_is_written(c14n: _Canonical) -> None:
    """Every profile of the corpus and the examples (what peers send) is written by the
    compiled code, not left to libxml2, and equals libxml2's text."""
    files = sorted(ROOT.glob("tests/acm/corpus/**/*.xml")) + sorted(ROOT.glob("examples/**/*.xml"))
    taken = 0
    for path in files:
        data = path.read_bytes()
        try:
            root = parse(data)
        except AcmError:
            continue
        if len(list(root.iter(codec._PROFILE_ROOT_TAG))) != 1:
            continue
        taken += 1
        assert _compiled(c14n, data) == _libxml2(data), path
    assert taken >= 20


@pytest.mark.parametrize("data", [
    # CDATA and a processing instruction inside the profile
    b'<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0"><![CDATA[x]]>'
    b"</mcptt-user-profile>",
    b'<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0"><?pi?></mcptt-user-profile>',
    # an encoding other than UTF-8 (the parser takes US-ASCII)
    b'<?xml version="1.0" encoding="US-ASCII"?>'
    b'<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0"/>',
    # two elements with the profile's name
    b'<a xmlns="urn:mcacm-sip:ns:acm:1.0"><p:mcptt-user-profile xmlns:p="urn:3gpp:mcptt:'
    b'user-profile:1.0"/><mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0"/></a>',
    # a relative namespace name in scope (libxml2 refuses it), one with a quote
    b'<a xmlns="urn:mcacm-sip:ns:acm:1.0" xmlns:r="rel"><mcptt-user-profile xmlns="urn:3gpp:'
    b'mcptt:user-profile:1.0"/></a>',
    b'<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0" xmlns:q=\'urn:a"b\'/>',
    # a reference in a namespace name
    b'<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0" xmlns:q="urn:&#97;"/>',
])
def test_what_it_does_not_take_is_left_to_libxml2(c14n: _Canonical, data: bytes) -> None:
    assert _compiled(c14n, data) is None


def test_no_such_element_and_wrong_arguments(c14n: _Canonical) -> None:
    assert c14n(b"<a/>", PROFILE_NS.encode(), b"mcptt-user-profile") is None
    assert c14n(b"", PROFILE_NS.encode(), b"mcptt-user-profile") is None
    assert c14n(b"<a/>", b"", b"a") is None
    with pytest.raises(TypeError):
        c14n("<a/>", PROFILE_NS.encode(), b"a")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c14n(b"<a/>", PROFILE_NS.encode())  # type: ignore[call-arg]


def test_decode_uses_it_and_gives_the_same_profile(c14n: _Canonical) -> None:
    """A decoded request's profile is the same value with the compiled writer and without,
    and the compiled writer is what decode calls when it is on."""
    data = (ROOT / "examples" / "flows" / "profile-update-request.xml").read_bytes()
    before = codec._c_canonical
    calls: list[bytes] = []

    def counting(d: bytes, ns: bytes, local: bytes) -> str | None:
        calls.append(d)
        return c14n(d, ns, local)

    try:
        codec._c_canonical = None
        by_libxml2 = codec.decode(data)
        codec._c_canonical = counting
        by_c = codec.decode(data)
    finally:
        codec._c_canonical = before
    assert by_c == by_libxml2 and calls == [data]
