"""``Served.answer`` remembers the (method, Request-URI, Content-Type) of requests that went to
their handler whatever their body, and lets the same three through again without the checks:
each answer is the one a Served that remembers nothing gives (RFC 3261 8.2: 405, 416, 420, 415,
OPTIONS' 200)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mcacm_sip.sip import Request, parse
from mcacm_sip.sip.served import Served

# few values of each: the same three come back often
_METHOD = st.sampled_from(["MESSAGE", "OPTIONS", "PUBLISH"])
_URI = st.sampled_from(["sip:acms@h", "urn:x", "SIP:b@h"])
_TYPE = st.sampled_from([None, "application/x", "Application/X;v=1", "text/plain", ";"])
_REQUIRE = st.sampled_from([None, "100rel", ","])
_REQUEST = st.tuples(_METHOD, _URI, _TYPE, st.booleans(), _REQUIRE)
_SERVE = st.tuples(st.sampled_from(["MESSAGE", "SUBSCRIBE"]),
                   st.sampled_from([None, ("application/x",), ("text/plain", "application/x")]))


def request(method: str, uri: str, kind: str | None, body: bool, require: str | None
            ) -> Request:
    head = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bKx\r\n"
            f"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n")
    if kind is not None:
        head += f"Content-Type: {kind}\r\n"
    if require is not None:
        head += f"Require: {require}\r\n"
    content = b"<x/>" if body else b""
    msg = parse(f"{head}Content-Length: {len(content)}\r\n\r\n".encode() + content)
    assert isinstance(msg, Request)
    return msg


@settings(max_examples=500, deadline=None)
@given(st.lists(_SERVE, min_size=1, max_size=2),
       st.lists(st.one_of(_REQUEST, _SERVE), min_size=1, max_size=30))
@example([("MESSAGE", ("application/x",))], [("MESSAGE", "sip:acms@h", "text/plain", False, None),
                                             ("MESSAGE", "sip:acms@h", "text/plain", True, None)])
@example([("MESSAGE", ("application/x",))],
         [("MESSAGE", "sip:acms@h", "application/x", True, None), ("MESSAGE", ("text/plain",)),
          ("MESSAGE", "sip:acms@h", "application/x", True, None)])
@example([("MESSAGE", None)], [("MESSAGE", "sip:acms@h", None, True, None),
                               ("MESSAGE", "sip:acms@h", None, True, "100rel")])
def test_a_remembered_request_gets_the_answer_of_a_served_that_remembers_nothing(
        serve: list[tuple[str, tuple[str, ...] | None]],
        steps: list[tuple[str, str, str | None, bool, str | None]
                    | tuple[str, tuple[str, ...] | None]]) -> None:
    """Any sequence of requests (served or not, any scheme, Content-Type, body or none,
    Require or not) and of methods served meanwhile: the same answers as a fresh Served's
    (checked to fail when a 415 left for an empty body is remembered, when a request with a
    Require is looked up, or when serving a method does not forget)."""
    served = Served()
    for method, accept in serve:
        served.add(method, accept)
    for step in steps:
        if len(step) == 2:
            served.add(*step)
            continue
        fresh = Served()
        for name, types in served._accept.items():
            fresh.add(name, types)
        msg = request(*step)
        assert served.answer(msg) == fresh.answer(msg)
