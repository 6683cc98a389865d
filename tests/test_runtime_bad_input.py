"""Bad input over real loopback SIP against the Lab's primary ACMS: each class of bad MESSAGE
body gets its defined answer (docs/message-layer.md "Errors and the SIP answer", docs/decisions.md
"Duplicates"), nothing is stored for it, and the node keeps serving valid requests.

The MESSAGEs come from a bare test endpoint with ``From: ALICE`` (a configured ACMC user with
every right), so authorisation is never what refuses them.  TCP throughout: the oversized body
(300 KB) does not fit a UDP datagram.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import Addressee, AddUserConfigurationRequest, new_transaction_id
from mcacm_sip.runtime import TraceRecord
from mcacm_sip.runtime.lab import ALICE, DAVE, MIKE, PARTNER, PRIMARY, Lab
from mcacm_sip.sip.aio import FinalResponse, Listen, SipEndpoint

BAD = Path(__file__).parent / "acm" / "corpus" / "bad"
WAIT = 15.0  # upper bound only; every exchange takes milliseconds on loopback
ACM = codec.ACM_CONTENT_TYPE
WARNING = re.compile(r'^399 \S+ "(?P<text>.*)"$')


def warning_text(final: FinalResponse) -> str:
    """The text of the ``Warning: 399 <host> "<text>"`` header (RFC 3261 20.43)."""
    value = final.message.header("warning")
    assert value is not None, f"{final.status} without Warning"
    match = WARNING.match(value)
    assert match is not None, value
    return match["text"]


def add_request(lab: Lab, tid: str, user: str = MIKE) -> AddUserConfigurationRequest:
    return AddUserConfigurationRequest(tid, lab.alice.core.me, (user,), Addressee(DAVE))


# --------------------------------------------------------------------------- the classes


@dataclass(frozen=True)
class BadInput:
    name: str
    body: Callable[[Lab], bytes]
    content_type: str
    status: int
    check: Callable[[FinalResponse], None]


def corpus(name: str) -> Callable[[Lab], bytes]:
    return lambda _lab: (BAD / name).read_bytes()


def oversized(lab: Lab) -> bytes:
    # a valid document followed by white space up to 300 KB: only the size is wrong
    return codec.encode(add_request(lab, new_transaction_id())).ljust(300 * 1024, b" ")


def accepts_acm(final: FinalResponse) -> None:
    # RFC 3261 21.4.13: a 415 lists what would have been accepted
    assert final.message.header("accept") == ACM


def refuses_doctype(final: FinalResponse) -> None:
    assert "DOCTYPE" in warning_text(final)


def names_failing_element(final: FinalResponse) -> None:
    text = warning_text(final)
    # the misplaced element's path, and what the schema expected in its place
    assert text.startswith("/profile-update-request/profile:"), text
    assert "migrated-user-id" in text


def names_attribute_element(final: FinalResponse) -> None:
    text = warning_text(final)
    assert text.startswith("/profile-update-request:"), text
    assert "priority" in text, text


def has_warning(final: FinalResponse) -> None:
    assert warning_text(final)


def not_xml(final: FinalResponse) -> None:
    assert "not XML" in warning_text(final)
    accepts_acm(final)


CASES = [
    # endpoint check before the handler (RFC 3261 8.2.3)
    BadInput("unknown-content-type", corpus("not-xml-json.xml"), "application/json", 415,
             accepts_acm),
    BadInput("doctype", corpus("billion-laughs.xml"), ACM, 400, refuses_doctype),
    BadInput("schema-invalid", corpus("profile-update-request.missing-migrated-user-id.xml"),
             ACM, 400, names_failing_element),
    # the codec's 256 KiB cap (docs/decisions.md "Limits"); under the SIP layer's 1 MiB
    BadInput("oversized", oversized, ACM, 413, has_warning),
    # not XML at all is NotAcmDocument: 415 (docs/message-layer.md error table)
    BadInput("not-xml", corpus("not-xml-json.xml"), ACM, 415, not_xml),
    BadInput("not-well-formed", corpus("not-well-formed.xml"), ACM, 400, has_warning),
    # issue 12 rule 8 (docs/message-layer.md "Schema habits"): an undeclared attribute of the
    # ACM namespace or of none is refused, naming the element that carries it
    BadInput("unknown-attribute", corpus("unknown-attribute-without-namespace.xml"), ACM, 400,
             names_attribute_element),
]


# --------------------------------------------------------------------------- harness


class Trace:
    """The Lab's trace hook, with a way to wait until some messages have been seen."""

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []
        self._changed = asyncio.Event()

    def __call__(self, record: TraceRecord) -> None:
        self.records.append(record)
        self._changed.set()

    def messages(self, node: str, direction: str, *parts: bytes) -> list[TraceRecord]:
        return [r for r in self.records if r.node == node and r.direction == direction
                and r.data.startswith(b"MESSAGE ") and all(p in r.data for p in parts)]

    async def until(self, count: int, node: str, direction: str, *parts: bytes) -> None:
        while len(self.messages(node, direction, *parts)) < count:
            self._changed.clear()
            await self._changed.wait()


class Client:
    """A bare SIP endpoint sending raw MESSAGEs to the primary ACMS as ALICE."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.endpoint = SipEndpoint([Listen("tcp", "127.0.0.1", 0)])

    async def send(self, body: bytes, content_type: str = ACM) -> FinalResponse:
        # a new request each time: new Call-ID, new branch
        request = self.endpoint.new_request(
            "MESSAGE", self.lab.primary.hop("tcp"), from_uri=ALICE, to_uri=PRIMARY,
            body=body, content_type=content_type)
        return await self.endpoint.send(request, timeout=WAIT)


def run(tmp_path: Path, body: Callable[[Lab, Client, Trace], Awaitable[None]]) -> None:
    trace = Trace()

    async def main() -> None:
        async with Lab.start(tmp_path, transport="tcp", trace=trace) as lab:
            client = Client(lab)
            await client.endpoint.start()
            try:
                await asyncio.wait_for(body(lab, client, trace), 60)
            finally:
                await client.endpoint.close()

    asyncio.run(main())


async def refused(lab: Lab, client: Client, case: BadInput) -> None:
    final = await client.send(case.body(lab), case.content_type)
    assert final.status == case.status, (case.name, final.status, final.message.reason)
    case.check(final)


async def completes(lab: Lab, user: str) -> str:
    """A valid request still goes end to end: the Result reaches the primary ACMC."""
    out = await lab.alice.add_users((user,), Addressee(DAVE), timeout=WAIT)
    assert out.failure is None, out.failure
    assert out.indication is not None and out.result == "success", out
    return out.transaction_id


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_its_answer_and_nothing_is_stored(case: BadInput, tmp_path: Path) -> None:
    async def body(lab: Lab, client: Client, trace: Trace) -> None:
        await refused(lab, client, case)
        assert lab.primary.core.transactions() == ()
        assert trace.messages(PRIMARY, "out") == []  # nothing forwarded to anyone
        assert lab.primary.failed is not None and not lab.primary.failed.done()

    run(tmp_path, body)


def test_duplicate_request_is_answered_twice_and_processed_once(tmp_path: Path) -> None:
    async def body(lab: Lab, client: Client, trace: Trace) -> None:
        tid = new_transaction_id()
        document = codec.encode(add_request(lab, tid))
        response = (b"<add-user-configuration-response", tid.encode())
        assert (await client.send(document)).status == 200
        await trace.until(1, ALICE, "in", *response)  # step 10 reached the primary ACMC
        # the same request again in a new MESSAGE (a retry after a lost 200)
        assert (await client.send(document)).status == 200
        # decision: the duplicate is not processed again, what exists is re-sent
        await trace.until(2, ALICE, "in", *response)
        forwarded = trace.messages(PRIMARY, "out", b"<add-user-configuration-request",
                                   tid.encode())
        assert len(forwarded) == 1
        # one transaction at each ACMS core
        assert [(t.transaction_id, t.peer) for t in lab.primary.core.transactions()] == [
            (tid, PARTNER)]
        assert [(t.transaction_id, t.peer) for t in lab.partner.core.transactions()] == [
            (tid, PRIMARY)]

    run(tmp_path, body)


def test_node_keeps_working_after_every_kind_of_bad_input(tmp_path: Path) -> None:
    async def body(lab: Lab, client: Client, trace: Trace) -> None:
        for case in CASES:
            await refused(lab, client, case)
        tid = new_transaction_id()
        document = codec.encode(add_request(lab, tid))
        for _ in range(2):
            assert (await client.send(document)).status == 200
        valid = await completes(lab, "sip:nina@primary.example")
        # the bad bodies left nothing behind; the duplicate made one transaction
        assert sorted(t.transaction_id for t in lab.primary.core.transactions()) == sorted(
            (tid, valid))

    run(tmp_path, body)


def test_foreign_attributes_are_ignored_on_receive_and_not_sent_on(tmp_path: Path) -> None:
    """Issue 12 rule 8: xml:lang and a vendor's attributes are accepted and dropped; what the
    primary forwards is our own strict encoding (strict on send)."""
    async def body(lab: Lab, client: Client, trace: Trace) -> None:
        tid = new_transaction_id()
        root = etree.fromstring(codec.encode(add_request(lab, tid)))
        for el in root.iter():
            el.set("{urn:example:vendor:1}hint", "v1")
            el.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        assert (await client.send(etree.tostring(root, xml_declaration=True,
                                                 encoding="UTF-8"))).status == 200
        response = (b"<add-user-configuration-response", tid.encode())
        await trace.until(1, ALICE, "in", *response)  # the Result reached the primary ACMC
        [forwarded] = trace.messages(PRIMARY, "out", b"<add-user-configuration-request",
                                     tid.encode())
        assert b"urn:example:vendor:1" not in forwarded.data
        assert b"xml:lang" not in forwarded.data

    run(tmp_path, body)
