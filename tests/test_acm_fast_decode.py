"""The reader of schema-valid documents (codec._FAST_READERS) returns what the general reader
returns, field for field, or leaves the document to it: over drawn profile update requests,
valid and invalid, with the values the schema takes and the model refuses (Unicode white space
and unprintable characters in ids and URIs), identities that are not a clear <uri>, both
branches of the addressee's choice, extension content, prefixes and CDATA.  An invalid
document gets the same typed error, path, IE and hint as before."""

from __future__ import annotations

from typing import Any

import pytest
from acm.strategies import flows
from fuzz.contract import check_request_parts
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tools import require_compiled

from mcacm_sip.acm import codec, model, xmlsafe
from mcacm_sip.acm.errors import AcmError

ACM_NS = codec.ACM_NS
PROFILE_NS = codec.USER_PROFILE_NS
OTHER = '<o:x xmlns:o="urn:other">o</o:x>'


def hot(tid: str) -> bytes:
    """bench/acms_hotpath.py's request."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<profile-update-request '
        f'xmlns="{ACM_NS}"><transaction-id>{tid}</transaction-id>'
        '<requester><mc-service-id type="Normal"><uri>sip:alice@primary.example</uri>'
        '</mc-service-id></requester><target><mc-service-id type="Normal">'
        "<uri>sip:dave@partner.example</uri></mc-service-id></target>"
        '<migrated-user-id type="Normal"><uri>sip:mike-1@partner.example</uri>'
        f'</migrated-user-id><profile><mcptt-user-profile xmlns="{PROFILE_NS}"><Name>Mike'
        "</Name><Routine/></mcptt-user-profile></profile>"
        "<additional-info>routine</additional-info></profile-update-request>").encode()


def _general(data: bytes) -> model.AcmFlow:
    """decode before the fast reader: the hardened parse, from_element (validate, read)."""
    return codec._read(data, codec.from_element, xmlsafe.parse(data))


def _outcome(read: Any, data: bytes) -> tuple[object, ...]:
    model._URIS_OK.clear()  # each side checks its URIs itself (the memo only remembers)
    try:
        flow = read(data)
    except AcmError as exc:
        return ("error", type(exc), exc.message, exc.path, getattr(exc, "ie", None), exc.hint,
                exc.sip_status, exc.warning_text)
    fields = tuple((name, type(value), value)
                   for name, value in ((f, getattr(flow, f)) for f in flow.__slots__))
    nested = tuple((type(v), tuple((f, type(getattr(v, f)), getattr(v, f)) for f in v.__slots__))
                   for _, _, v in fields if hasattr(v, "__slots__"))
    return ("flow", type(flow), fields, nested)


def _same(data: bytes) -> tuple[object, ...]:
    new = _outcome(codec.decode, data)
    assert new == _outcome(_general, data)
    return new


# --------------------------------------------------------------------------- documents

_ws = st.sampled_from(["", "", "", " ", "\t", "\n ", "\r\n"])
# characters the schema's \\S takes (some of them Python white space, or not printable)
_odd = st.sampled_from(["\u00a0", "\x85", "\u2028", "\u1680", "\u3000", "\x7f", "\u200b",
                        "é", "&amp;", "&lt;", "]]&gt;", "\U0001f600"])


def _mostly(valid: list[str], invalid: list[str]) -> st.SearchStrategy[str]:
    """One of ``valid`` nine times in ten, else one of ``invalid``."""
    return st.sampled_from(valid * 3 * len(invalid)) if not invalid else st.one_of(
        st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid),
        st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid),
        st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid),
        st.sampled_from(invalid))


@st.composite
def _text(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """Element text: a value with odd characters around or inside it, maybe as CDATA."""
    value = draw(base)
    if draw(st.integers(0, 2)) == 0:  # after a URI's scheme, which the pattern holds to ASCII
        odd = "".join(draw(st.lists(_odd, min_size=1, max_size=3)))
        cut = draw(st.integers(value.find(":") + 1, len(value)))
        value = value[:cut] + odd + value[cut:]
    if draw(st.integers(0, 4)) == 0 and "&" not in value and "]]" not in value:
        value = f"<![CDATA[{value}]]>"
    return draw(_ws) + value + draw(_ws)


_uri_text = _text(_mostly(["sip:alice@primary.example", "tel:+123", "urn:x", "x-acm.1:v",
                           "sip:dave@partner.example"], ["sip:", "1sip:a", "sip:a b", ""]))
_tid_text = _text(_mostly(["hot-1", "a" * 128, "0b9c", "x"], ["a" * 129, "a b", ""]))


@st.composite
def _identity(draw: st.DrawFn, name: str, p: str) -> str:
    attr = draw(_mostly(["", ' type="Normal"', ' xmlns:v="urn:v" v:a="1"'],
                        [' type="Encrypted"', ' type="bogus"', ' other="1"']))
    child = draw(_mostly(["uri"], ["other", "other-uri", "anyExt", "none", "two"]))
    text = draw(_uri_text)
    uri = f"<{p}uri>{text}</{p}uri>"
    inner = {"uri": uri, "other": OTHER, "anyExt": f"<{p}anyExt/>", "none": "",
             "other-uri": f'<o:uri xmlns:o="urn:other">{text}</o:uri>',  # valid, not ours
             "two": uri + uri}[child]
    return f"<{p}{name}{attr}>{inner}</{p}{name}>"


@st.composite
def _tail(draw: st.DrawFn, p: str) -> str:
    # a foreign element may hold one of ours (processed laxly): an ACM <uri> inside it is
    # not an identity's
    other = draw(st.sampled_from(
        ["", OTHER, f'<o:x xmlns:o="urn:other"><{p}uri>sip:o@other.example</{p}uri></o:x>']))
    return other + (f"<{p}anyExt>{OTHER}</{p}anyExt>" if draw(st.booleans()) else "")


@st.composite
def _party(draw: st.DrawFn, name: str, p: str) -> str:
    inner = draw(_identity("mc-service-id", p))
    if draw(st.booleans()):
        inner += draw(_identity("functional-alias", p))
    return f"<{p}{name}>{inner}{draw(_tail(p))}</{p}{name}>"


@st.composite
def _addressee(draw: st.DrawFn, p: str) -> str:
    branch = draw(_mostly(["id", "id+alias", "alias"], ["none", "alias+id"]))
    inner = "".join(draw(_identity(n, p)) for n in {
        "id": ["mc-service-id"], "id+alias": ["mc-service-id", "functional-alias"],
        "alias": ["functional-alias"], "none": [],
        "alias+id": ["functional-alias", "mc-service-id"]}[branch])
    return f"<{p}target>{inner}{draw(_tail(p))}</{p}target>"


@st.composite
def _profile(draw: st.DrawFn, p: str) -> str:
    root = draw(_mostly([
        f'<mcptt-user-profile xmlns="{PROFILE_NS}"><Name>Mike</Name><Routine/>'
        "</mcptt-user-profile>",
        f'<up:mcptt-user-profile xmlns:up="{PROFILE_NS}" a="&quot;&amp;">x</up:mcptt-user-profile>',
    ], [
        f'<other-root xmlns="{PROFILE_NS}"/>',
        f'<mcptt-user-profile xmlns="{PROFILE_NS}" xmlns:r="rel/ative"/>',
        "<mcptt-user-profile/>",
    ]))
    return f"<{p}profile>{root}" + (f"<{p}anyExt/>" if draw(st.booleans()) else "") \
        + f"</{p}profile>"


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A profile update request document, mostly valid, with the odd values above."""
    prefixed = draw(st.booleans())
    p = "a:" if prefixed else ""
    decl = f'xmlns:a="{ACM_NS}"' if prefixed else f'xmlns="{ACM_NS}"'
    parts = [f"<{p}transaction-id>{draw(_tid_text)}</{p}transaction-id>",
             draw(_party("requester", p)), draw(_addressee(p)),
             draw(_identity("migrated-user-id", p)), draw(_profile(p))]
    if draw(st.booleans()):
        text = draw(_text(_mostly(["routine", "a b\n c", "  "], [""])))
        # its own prefix, bound to our namespace name written with a reference, or plainly
        q, own = draw(st.sampled_from([
            (p, ""), ("i:", ' xmlns:i="urn:mcacm-sip:ns:acm&#58;1.0"'),
            ("i:", f' xmlns:i="{ACM_NS}"')]))
        parts.append(f"<{q}additional-info{own}>{text}</{q}additional-info>")
    parts.append(draw(_tail(p)))
    if draw(st.integers(0, 9)) == 0:  # an element out of place or missing
        i = draw(st.integers(0, len(parts) - 1))
        moved = parts.pop(i)
        if draw(st.booleans()):
            parts.insert(draw(st.integers(0, len(parts))), moved)
    head = draw(st.sampled_from(['<?xml version="1.0" encoding="UTF-8"?>\n', ""]))
    return (f"{head}<{p}profile-update-request {decl}>" + "".join(parts)
            + f"</{p}profile-update-request>").encode()


# --------------------------------------------------------------------------- properties


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
@example(hot("hot-1"))
def test_a_request_decodes_as_the_general_reader_reads_it(data: bytes) -> None:
    _same(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows)
def test_every_flow_the_model_builds_decodes_as_before(flow: model.AcmFlow) -> None:
    data = codec.encode(flow)
    assert _same(data)[0] == "flow"
    assert codec.decode(data) == flow
    if isinstance(flow, model.ProfileUpdateRequest):  # and the fast reader read it
        root = xmlsafe.parse(data)
        assert codec._read_profile_update_request(root, data) == flow


@pytest.mark.parametrize("tid, uri, taken", [
    ("hot-1", "sip:alice@primary.example", True),
    ("a\u00a0b", "sip:alice@primary.example", False),  # valid \S, not printable
    ("a\x85b", "sip:alice@primary.example", False),
    ("\u00a0", "sip:alice@primary.example", False),  # stripped to nothing: missing IE
    ("hot-1", "sip:a\u00a0b", False),  # the schema's \S, the model's white space
    ("hot-1", "sip:a\u2028", True),  # stripped at the end: the value is sip:a
])
def test_what_the_schema_takes_and_the_model_refuses_is_left_to_the_general_reader(
        tid: str, uri: str, taken: bool) -> None:
    data = hot(tid).replace(b"sip:alice@primary.example", uri.encode())
    root = xmlsafe.parse(data)
    assert codec.schema().validate(root)
    model._URIS_OK.clear()
    assert (codec._read_profile_update_request(root, data) is not None) is taken
    outcome = _same(data)
    assert (outcome[0] == "flow") is taken


def test_the_hot_path_request_takes_the_fast_reader() -> None:
    data = hot("hot-1")
    root = xmlsafe.parse(data)
    flow = codec._read_profile_update_request(root, data)
    assert flow is not None and flow == _general(data)
    assert type(flow) is model.ProfileUpdateRequest and type(flow.target) is model.Addressee
    with pytest.raises(AttributeError):
        flow.transaction_id = "x"  # type: ignore[misc]  # frozen as the constructor's


@given(st.text(st.sampled_from("< \t\n\u00a0x>")) | st.text())
def test_a_profile_is_built_as_its_constructor_builds_it(text: str) -> None:
    try:
        want: object = model.UserProfile(xml=text)
    except model.ModelError as exc:
        want = (type(exc), str(exc))
    try:
        got: object = codec._user_profile(text)
    except model.ModelError as exc:
        got = (type(exc), str(exc))
    assert got == want and type(got) is type(want)


# ------------------------------------------------------------ the parts read from the bytes

_Reader = Any


@pytest.fixture(scope="module")
def request_parts() -> _Reader:
    return require_compiled(codec._load_request_parts, "the compiled request reader")


def _parts(reader: _Reader, data: bytes) -> object:
    return reader(data, codec._ACM_NS_BYTES, codec._PROFILE_NS_BYTES, codec._PROFILE_ROOT_BYTES)


# what the parser drops or reads differently, put before any element of a drawn document
_inserts = st.sampled_from(["<!--c-->", "<?pi x?>", "<![CDATA[]]>", "&#13;", "&#x85;", "\r",
                            "&amp;", " "])


@st.composite
def _marked(draw: st.DrawFn) -> bytes:
    data = draw(requests())
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.sampled_from([i for i, c in enumerate(data) if c == ord("<")][1:]))
        data = data[:at] + draw(_inserts).encode() + data[at:]
    return data


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests() | _marked())
@example(hot("hot-1"))
def test_the_bytes_give_the_parts_the_tree_gives(request_parts: _Reader, data: bytes) -> None:
    """``_c14n.request_parts`` reads what ``_tree_parts`` reads from any schema-valid request
    (or leaves it to the tree), and takes it only when the profile's first element is the user
    profile's root (whose canonical text the reader then asks for)."""
    check_request_parts(data, request_parts)
    _same(data)


def test_the_hot_path_request_is_read_from_its_bytes(request_parts: _Reader) -> None:
    data = hot("hot-1").replace(b"routine", b"a&amp;b\r\nc")
    assert _parts(request_parts, data) == (
        "hot-1", "sip:alice@primary.example", None, "sip:dave@partner.example", None,
        "sip:mike-1@partner.example", "a&b\nc")
