"""Strict on send without a schema check per send: the writer's proof (``codec._template``).

The writer returns with each document whether it proved it valid; :func:`codec.encode` and
:func:`codec.encode_all` skip the schema check only then.  These tests hold the proof sound
(a proven document is valid, whatever values a flow that bypassed the model holds) and
complete enough (every flow the model builds is proven), over every flow class's template.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import pytest
from acm.strategies import FLOW_STRATEGIES, profiles
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from mcacm_sip.acm import codec, errors
from mcacm_sip.acm import model as m
from mcacm_sip.acm.examples import example_flows

_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


def _valid(text: str) -> bool:
    return bool(codec.schema().validate(etree.fromstring(text.encode("utf-8"))))


def _written(flow: Any) -> tuple[str, bool] | None:
    """The template's text and proof, or None when writing raises (nothing is sent)."""
    try:
        return codec._TEMPLATES[type(flow)](flow)
    except Exception:  # a wrong type the writer trips over: encode() raises, nothing is sent
        return None


def _sent_is_valid(flow: Any) -> None:
    """What encode() returns for ``flow``, if anything, is valid; a proven text is too."""
    written = _written(flow)
    if written is not None and written[1]:
        assert _valid(written[0]), written[0]
    try:
        data = codec._encode(flow, False)
    except Exception:
        return
    assert codec.schema().validate(etree.fromstring(data)), data


# --------------------------------------------------------------------------- complete


@pytest.mark.parametrize("cls", m.FLOW_TYPES, ids=lambda c: c.FLOW)
def test_every_flow_the_model_builds_is_proven_and_valid(cls: type[m.AcmFlow]) -> None:
    @_SETTINGS
    @given(FLOW_STRATEGIES[cls])
    def check(flow: m.AcmFlow) -> None:
        text, proven = codec._TEMPLATES[cls](flow)
        assert proven, text
        assert _valid(text)

    check()


def test_the_example_flows_are_proven() -> None:
    for flow in example_flows().values():
        assert codec._TEMPLATES[type(flow)](flow)[1], flow.FLOW


# --------------------------------------------------------------------------- sound

# values a bug could leave in a field: each wrong for some field's schema type
_PROFILE_NS = codec.USER_PROFILE_NS
_ODD_PROFILES = [
    # lax processing validates what the schema declares: an ACM flow inside a profile
    f'<mcptt-user-profile xmlns="{_PROFILE_NS}"><process-indication xmlns="{codec.ACM_NS}"/>'
    "</mcptt-user-profile>",
    # xsi:type is read even under lax processing
    f'<mcptt-user-profile xmlns="{_PROFILE_NS}" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:xs="http://www.w3.org/2001/XMLSchema"><Status xsi:type="xs:int">x</Status>'
    "</mcptt-user-profile>",
    # an unprefixed element of no namespace joins the ACM namespace once embedded
    f'<up:mcptt-user-profile xmlns:up="{_PROFILE_NS}"><process-indication/>'
    "</up:mcptt-user-profile>",
]
class _NotADateTime:
    """Writes as a date-time of the right form, but not a real one."""

    def isoformat(self) -> str:
        return "2030-02-31T00:00:00+00:00"


class _OwnDateTime(datetime):
    """A datetime whose text is its own (the compiled writer calls it)."""

    def isoformat(self, *args: Any, **kwargs: Any) -> str:
        return "own"


_BAD_VALUES: list[Any] = [_NotADateTime(),
    None, "", " ", "two words", "x" * 129, "\t", "a\nb", "sip:a b", "sip:", "sip", "9p:x",
    "x-UPPER", "x-", "success ", "\u00a0", "é", "add ", "ADD", "no", 5, 1.5, b"sip:a@b",
    (), ("sip:a@b.example", "sip:a@b.example"), ("sip:a b",), type("Sub", (str,), {})("x"),
    m.Party("sip:p@x.example"), m.Addressee(functional_alias="sip:fa@x.example"),
    m.Result("x-odd"), datetime(2030, 1, 1), time(12, 0, tzinfo=UTC),
    _OwnDateTime(2030, 1, 1, tzinfo=UTC),
    datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=15))),
    datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=1, seconds=5))),
    m.UserProfile("<mcptt-user-profile/>"),
    *(codec.profile_from_xml(p) for p in _ODD_PROFILES),
]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field of ``obj`` and of the model values and tuples it holds, as attribute
    names and tuple indexes."""
    found: list[tuple[Any, ...]] = []
    for f in dataclasses.fields(obj):
        value, here = getattr(obj, f.name), (*prefix, f.name)
        found.append(here)
        if dataclasses.is_dataclass(value) and not isinstance(value, m.UserProfile):
            found += _paths(value, here)
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                found.append((*here, i))
                if dataclasses.is_dataclass(item):
                    found += _paths(item, (*here, i))
    return found


def _with(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``obj`` with ``value`` at ``path``, set past the model (as a bug would)."""
    if not path:
        return value
    step, rest = path[0], path[1:]
    if isinstance(obj, tuple):
        return (*obj[:step], _with(obj[step], rest, value), *obj[step + 1:])
    new = copy.copy(obj)
    object.__setattr__(new, step, _with(getattr(obj, step), rest, value))
    return new


def test_a_proven_document_is_valid_whatever_a_field_holds() -> None:
    flows = list(example_flows().values())
    items = [f for f in flows if isinstance(f, m.PendingDataDownloadResponse)]
    indication = next(f for f in flows if isinstance(f, m.ProcessIndication))
    values = [*_BAD_VALUES, indication, *flows]
    proven_mutants = 0
    nested: Any = (flows[0], flows[1])
    for flow in [*flows, dataclasses.replace(items[0], items=nested)]:
        for path in _paths(flow):
            for value in values:
                mutant = _with(flow, path, value)
                written = _written(mutant)
                if written is not None and written[1]:
                    proven_mutants += 1
                    assert _valid(written[0]), (flow.FLOW, path, value)
    assert proven_mutants > 100  # the loop proves valid mutants too, not only refusals


_NOT_SURROGATE = st.characters(blacklist_categories=("Cs", "Cn"))
_ANY_TEXT = st.text(_NOT_SURROGATE | st.sampled_from(
    "\t\n\r \x00\x0b\ufffe\u00a0\u2028"), max_size=12)


@settings(max_examples=400, deadline=None)
@given(flow=st.sampled_from(list(example_flows().values())), data=st.data(),
       text=_ANY_TEXT | st.builds("{}:{}".format, st.from_regex("[A-Za-z][A-Za-z0-9+.-]{0,3}",
                                                                fullmatch=True), _ANY_TEXT))
def test_a_proven_document_is_valid_whatever_text_a_field_holds(
        flow: m.AcmFlow, data: st.DataObject, text: str) -> None:
    """Each proof pattern within its schema type's lexical space, over any characters."""
    path = data.draw(st.sampled_from([p for p in _paths(flow)
                                      if isinstance(_get(flow, p), str)]))
    _sent_is_valid(_with(flow, path, text))


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        obj = obj[step] if isinstance(obj, tuple) else getattr(obj, step)
    return obj


_NAMESPACES = [None, _PROFILE_NS, codec.ACM_NS, "urn:other", codec._XSI_NS]


@st.composite
def _wild_profiles(draw: st.DrawFn) -> m.UserProfile:
    """User profiles whose descendants and attributes are of any namespace, ours included."""
    prefixed = draw(st.booleans())
    root = etree.Element(f"{{{_PROFILE_NS}}}{codec.USER_PROFILE_ROOT}",
                         nsmap={("up" if prefixed else None): _PROFILE_NS})  # type: ignore[dict-item]
    parents = [root]
    for _ in range(draw(st.integers(0, 4))):
        ns = draw(st.sampled_from(_NAMESPACES))
        name = draw(st.sampled_from(["x", "process-indication", "transaction-id", "Status"]))
        child = etree.SubElement(draw(st.sampled_from(parents)),
                                 name if ns is None else f"{{{ns}}}{name}")
        if draw(st.booleans()):
            attr_ns = draw(st.sampled_from(_NAMESPACES))
            attr = draw(st.sampled_from(["type", "nil", "a"]))
            child.set(attr if attr_ns is None else f"{{{attr_ns}}}{attr}",
                      draw(st.sampled_from(["true", "xs:int", "q:zz", "v"])))
        child.text = draw(st.none() | st.sampled_from(["1", "x", " "]))
        parents.append(child)
    return codec.profile_from_xml(etree.tostring(root))


@settings(max_examples=300, deadline=None)
@given(profile=_wild_profiles() | profiles())
def test_a_proven_profile_is_valid_wherever_it_is_written(profile: m.UserProfile) -> None:
    base = example_flows()["profile-update-request"]
    assert isinstance(base, m.ProfileUpdateRequest)
    _sent_is_valid(dataclasses.replace(base, profile=profile))
    answer = example_flows()["add-user-configuration-response"]
    assert isinstance(answer, m.AddUserConfigurationResponse) and answer.users
    user = dataclasses.replace(answer.users[0], profile=profile)
    _sent_is_valid(dataclasses.replace(answer, users=(user,)))


@settings(max_examples=300, deadline=None)
@given(profile=_wild_profiles() | profiles())
def test_a_profile_is_received_as_it_was_sent(profile: m.UserProfile) -> None:
    """Embedding moves no element of the profile into another namespace, by either writer:
    an unprefixed element a prefixed root leaves in no namespace does not join the ACM
    document's default namespace.  The wire's writer keeps the text; the tree
    (``pretty=True``, the examples only) keeps every element's name and namespace, though
    lxml may respell a prefix of ours."""
    base = example_flows()["profile-update-request"]
    assert isinstance(base, m.ProfileUpdateRequest)
    flow = dataclasses.replace(base, profile=profile)
    try:
        sent = codec.encode(flow)
    except errors.EncodeError:  # elements of ours the schema refuses where they are written
        assume(False)
    received = codec.decode(sent)
    assert isinstance(received, m.ProfileUpdateRequest) and received.profile == profile
    built = codec.decode(etree.tostring(codec.to_element(flow)))
    assert isinstance(built, m.ProfileUpdateRequest)
    assert _tags(built.profile) == _tags(profile)


def _tags(profile: m.UserProfile) -> list[str]:
    return [el.tag for el in etree.fromstring(profile.xml.encode()).iter()]


# --------------------------------------------------------------------------- the bypass


def test_a_flow_mutated_past_the_model_is_checked_and_refused() -> None:
    # strict on send: what the writer cannot prove goes through the schema check (500)
    flow = dataclasses.replace(example_flows()["profile-update-response"])
    object.__setattr__(flow, "migrated_user_id", "not a uri")
    assert not codec._TEMPLATES[type(flow)](flow)[1]
    with pytest.raises(errors.EncodeError) as info:
        codec.encode(flow)
    assert info.value.sip_status == 500
    assert info.value.path == "/profile-update-response/migrated-user-id/uri"


def test_an_item_acm_data_does_not_allow_is_checked_and_refused() -> None:
    flows = example_flows()
    download = flows["pending-data-download-response"]
    assert isinstance(download, m.PendingDataDownloadResponse)
    bad = dataclasses.replace(download, items=(flows["process-indication"],))  # type: ignore[arg-type]
    assert not codec._TEMPLATES[type(bad)](bad)[1]
    with pytest.raises(errors.EncodeError):
        codec.encode(bad)


# --------------------------------------------------------------------------- the model's URI


_SHAPE_THEN_XML_CHARS = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters() | st.sampled_from("\t\n\r \x00\x1c\x85\xa0\u2028\ufffe"),
               max_size=8)
       | st.builds("{}:{}".format, st.sampled_from(["sip", "x-a.1", "9", ""]),
                   st.text(st.characters() | st.sampled_from("\t \x00\x1f\x85\xa0\ufffe\uffff"),
                           max_size=8)))
def test_the_model_uri_check_is_the_shape_and_xml_characters(value: str) -> None:
    """One pattern since round 6: the URI shape (Python's \\S) and only XML characters."""
    before = bool(_SHAPE_THEN_XML_CHARS.fullmatch(value)) and not m._NOT_XML_CHAR.search(value)
    assert bool(m._URI.fullmatch(value)) == before


_URI_VALUES = (st.text(st.characters() | st.sampled_from("\t\n\r \x00\x1c\x85\xa0\u2028\ufffe"),
                       max_size=8)
               | st.builds("{}:{}".format, st.sampled_from(["sip", "x-a.1", "9", ""]),
                           st.text(st.characters() | st.sampled_from("\t \x00\x1f\x85\xa0\ufffe"),
                                   max_size=8)))


@settings(max_examples=500, deadline=None)
@given(_URI_VALUES)
def test_a_remembered_uri_is_one_the_pattern_accepts(value: str) -> None:
    """The model remembers the URIs it accepted (round 7): checked twice, a value gets the
    pattern's answer both times, and only an accepted one is remembered."""
    answers = []
    for _ in range(2):
        try:
            m._check_uri("x", value, "test", mandatory=True)
            answers.append(True)
        except m.ModelError:
            answers.append(False)
    assert answers == [bool(m._URI.fullmatch(value))] * 2
    assert value not in m._URIS_OK or answers[0]


def test_the_remembered_uris_are_bounded() -> None:
    # a peer sending new or long URIs cannot make the memory grow
    long = "sip:" + "a" * m._URI_OK_MAX_LENGTH
    m._check_uri("x", long, "test", mandatory=True)
    assert long not in m._URIS_OK
    for i in range(m._URIS_OK_MAX + 10):
        m._check_uri("x", f"sip:u{i}@example.org", "test", mandatory=True)
    assert 0 < len(m._URIS_OK) <= m._URIS_OK_MAX


@pytest.mark.parametrize("declaration", [
    'xmlns:n="urn:a&amp;b"', 'xmlns:n="urn:a&lt;b"', "xmlns:n='urn:\"q'", 'xmlns:n="relative"'])
def test_a_profile_canonical_xml_cannot_hold_is_refused_on_send(declaration: str) -> None:
    # the checks decode makes on a received profile, made on one built past profile_from_xml
    text = (f'<mcptt-user-profile xmlns="{codec.USER_PROFILE_NS}" {declaration}>'
            "<n:x/></mcptt-user-profile>")
    base = example_flows()["profile-update-request"]
    assert isinstance(base, m.ProfileUpdateRequest)
    with pytest.raises(errors.InvalidContent) as info:
        codec.encode(dataclasses.replace(base, profile=m.UserProfile(text)))
    assert info.value.ie == "profile"


# ------------------------------------------------------------- the proof's fast checks
# The writer proves common values without their pattern (codec._template, ``fast``):
# printable ASCII, a URI the model's pattern took (its memo), a UTC datetime, a code or name
# proven before.  Its answers (text and proof, or the error) are the matching writer's.

_GENERAL = {cls: codec._template(codec._SPECS[cls], cls.FLOW, fast=False)
            for cls in m.FLOW_TYPES}
_GENERAL_ITEMS = {cls: codec._template(codec._SPECS[cls], cls.FLOW, declare=False,  # type: ignore[attr-defined]
                                      fast=False)
                  for cls in codec._ITEM_TEMPLATES}


def _answer(write: Any, flow: Any) -> object:
    try:
        return write(flow)
    except Exception as exc:  # (the same class: a message may name the value differently)
        return type(exc)


def _same_answers(flow: Any) -> None:
    for _ in range(2):  # (the second time, from the memos the first one filled)
        assert _answer(codec._TEMPLATES[type(flow)], flow) \
            == _answer(_GENERAL[type(flow)], flow), flow
        if type(flow) in codec._ITEM_TEMPLATES:
            assert _answer(codec._ITEM_TEMPLATES[type(flow)], flow) \
                == _answer(_GENERAL_ITEMS[type(flow)], flow), flow


_GOOD_VALUES: list[Any] = ["hot-1", "a" * 128, "sip:a@b.example", "x-odd", "success",
                           "process-indication", "a&b<c>\rd", datetime(2030, 1, 1, tzinfo=UTC),
                           datetime(2030, 1, 1, 0, 0, 0, 5, tzinfo=UTC), m.ResultCode.SUCCESS]


def test_the_fast_checks_answer_as_the_patterns_whatever_a_field_holds() -> None:
    flows = list(example_flows().values())
    for flow in flows:
        _same_answers(flow)
        for path in _paths(flow):
            for value in [*_BAD_VALUES, *_GOOD_VALUES]:
                _same_answers(_with(flow, path, value))


@settings(max_examples=600, deadline=None)
@given(flow=st.sampled_from(list(example_flows().values())), data=st.data(),
       text=_ANY_TEXT | st.builds("{}:{}".format, st.from_regex("[A-Za-z][A-Za-z0-9+.-]{0,3}",
                                                                fullmatch=True), _ANY_TEXT)
       | st.text(st.characters(min_codepoint=0, max_codepoint=0x7f), max_size=130))
def test_the_fast_checks_answer_as_the_patterns_whatever_text_a_field_holds(
        flow: m.AcmFlow, data: st.DataObject, text: str) -> None:
    path = data.draw(st.sampled_from([p for p in _paths(flow)
                                      if isinstance(_get(flow, p), str)]))
    if data.draw(st.booleans()):  # a URI the model took: the writer finds it in the memo
        with contextlib.suppress(m.ModelError):
            m._check_uri("x", text, "test", mandatory=True)
    _same_answers(_with(flow, path, text))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=st.one_of(*FLOW_STRATEGIES.values()))
def test_every_flow_the_model_builds_gets_the_same_answers(flow: m.AcmFlow) -> None:
    _same_answers(flow)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_a_utc_datetime_is_written_as_the_pattern_takes(value: datetime) -> None:
    assert codec._PROOF_DATETIME(value.isoformat()) is not None


@settings(max_examples=1000, deadline=None)
@given(st.datetimes(timezones=st.just(UTC) | st.none() | st.timezones()
                    | st.builds(timezone, st.timedeltas(timedelta(hours=-23),
                                                        timedelta(hours=23)))),
       st.sampled_from([datetime, _OwnDateTime]),
       st.sampled_from([0, 1, 9, 10, 99, 100, 999_999]) | st.integers(0, 999_999))
def test_the_writers_datetime_text_is_isoformat(value: datetime, cls: type[datetime],
                                                 micro: int) -> None:
    """codec._iso_text (the compiled writer for a UTC datetime) gives isoformat()'s text
    (0 microseconds: isoformat leaves out the fraction)."""
    value = cls(value.year, value.month, value.day, value.hour, value.minute, value.second,
                micro, value.tzinfo, fold=value.fold)
    assert codec._iso_text(value) == value.isoformat()


def test_the_writers_datetime_text_of_other_values() -> None:
    assert codec._iso_text(_NotADateTime()) == _NotADateTime().isoformat()
    assert codec._iso_text(time(12, 0, 1, 5, tzinfo=UTC)) == "12:00:01.000005+00:00"
    with pytest.raises(AttributeError):
        codec._iso_text(5)


def test_the_memo_of_proven_values_is_bounded() -> None:
    base = example_flows()["profile-update-response"]
    assert isinstance(base, m.ProfileUpdateResponse)
    for i in range(codec._PROVEN_MAX + 50):
        flow = _with(base, ("result", "code"), f"x-c{i}")
        assert codec._TEMPLATES[type(flow)](flow)[1]
    memos = [v for k, v in codec._TEMPLATES[type(base)].__globals__.items()
             if k.startswith("k") and k.endswith("m")]
    assert memos and all(len(memo) <= codec._PROVEN_MAX for memo in memos)
