"""The procedure header ``X-CID`` (docs/decisions.md "Scale-out: the procedure header"): every
ACM MESSAGE of one procedure carries the same value, whoever sends it and whatever its Call-ID,
so that a dispatcher hashing on it sends them all to one worker and sngrep / Homer link them;
the ACMC's request has it as its Call-ID; and it is a routing hint only: a forged value routes
but neither authorises nor refuses anything."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.acm import codec
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    Addressee,
    Party,
    PendingDataNotification,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    Result,
    ResultCode,
    new_transaction_id,
)
from mcacm_sip.core.config import AcmcConfig
from mcacm_sip.core.identity import flow_procedure, procedure_id
from mcacm_sip.runtime import AcmcNode, AcmcNodeConfig, SipSettings, TraceRecord
from mcacm_sip.runtime.lab import ALICE, DAVE, LOOPBACK, PARTNER, PRIMARY, Lab, profile_xml
from mcacm_sip.runtime.messaging import PROCEDURE_HEADER, procedure_of
from mcacm_sip.sip import Reply
from mcacm_sip.sip.aio import FinalResponse, IncomingRequest, Listen, SipEndpoint

WAIT = 15.0  # upper bound only; the exchanges take milliseconds on loopback


def head(data: bytes) -> tuple[str, dict[str, str]]:
    """Start line and headers (lower-case names, first value) of a SIP message."""
    lines = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return lines[0], headers


def sent_messages(seen: list[TraceRecord]) -> list[tuple[str, dict[str, str], bytes]]:
    """(sending node, headers, body) of every MESSAGE request a node sent."""
    out = []
    for rec in seen:
        if rec.direction == "out" and rec.data.startswith(b"MESSAGE "):
            _, headers = head(rec.data)
            out.append((rec.node, headers, rec.data.split(b"\r\n\r\n", 1)[1]))
    return out


def update(lab: Lab, migrated: str) -> ProfileUpdateRequest:
    return ProfileUpdateRequest(new_transaction_id(), lab.alice.core.me, Addressee(DAVE),
                                migrated, profile_from_xml(profile_xml("Mike (updated)")))


class Client:
    """A bare SIP endpoint on 127.0.0.1 (a trusted host of the Lab: its P-Asserted-Identity
    is believed) sending raw MESSAGEs with whatever X-CID a test gives."""

    def __init__(self) -> None:
        self.endpoint = SipEndpoint([Listen("udp", "127.0.0.1", 0)])

    async def send(self, to_hop: str, to: str, sender: str, body: bytes, procedure: str
                   ) -> FinalResponse:
        request = self.endpoint.new_request(
            "MESSAGE", to_hop, from_uri=sender, to_uri=to, body=body,
            content_type=codec.ACM_CONTENT_TYPE,
            headers=(("P-Asserted-Identity", f"<{sender}>"), (PROCEDURE_HEADER, procedure)))
        return await self.endpoint.send(request, timeout=WAIT)


def run(tmp_path: Path, body: Callable[[Lab, Client, list[TraceRecord]], Awaitable[None]],
        **lab_options: bool) -> None:
    seen: list[TraceRecord] = []

    async def main() -> None:
        async with Lab.start(tmp_path, transport="udp", trace=seen.append,
                             **lab_options) as lab:  # type: ignore[arg-type]
            client = Client()
            await client.endpoint.start()
            try:
                await asyncio.wait_for(body(lab, client, seen), 60)
            finally:
                await client.endpoint.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- the value


@given(st.sampled_from(["sip:alice@primary.example", "sip:alice@PRIMARY.example",
                        "sip:alice@primary.example;x-app=1"]),
       st.text(min_size=1, max_size=40))
def test_equivalent_spellings_name_one_procedure(spelling: str, tid: str) -> None:
    # RFC 3261 19.1.4: the host is case-insensitive, a parameter other than user, ttl, method,
    # maddr, transport is ignored when one side lacks it: the same requester, so the same
    # procedure, whichever node spelled it
    value = procedure_id(spelling, tid)
    assert value == procedure_id(ALICE, tid)
    assert len(value) == 32 and procedure_of(value) == value  # a Call-ID-safe word


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_different_transactions_are_different_procedures(a: str, b: str) -> None:
    assert (procedure_id(ALICE, a) == procedure_id(ALICE, b)) == (a == b)
    assert procedure_id(ALICE, a) != procedure_id(DAVE, a)


@given(st.text(max_size=300))
def test_a_received_value_is_used_only_when_it_is_a_word(value: str) -> None:
    # lax on receive: anything that is not a Call-ID-like word of at most 128 characters
    # (header injection, spaces, a novel) is ignored, never an error
    got = procedure_of(value)
    assert got is None or (got == value.strip() and 0 < len(got) <= 128
                           and not any(c in got for c in " \t\r\n,;\"<>"))


# --------------------------------------------------------------------------- on the wire


def test_every_message_of_a_procedure_carries_one_value(tmp_path: Path) -> None:
    """Direct branch, five nodes: request, forward, indications, delivery, decision and
    responses are sent by four different nodes under as many Call-IDs, all with X-CID =
    procedure_id(requester, transaction id); the ACMC's request's Call-ID is that value."""
    async def body(lab: Lab, _client: Client, seen: list[TraceRecord]) -> None:
        migrated = await lab.migrate_mike(WAIT)
        request = update(lab, migrated)
        expected = procedure_id(ALICE, request.transaction_id)
        assert flow_procedure(request) == expected
        seen.clear()
        handle = lab.alice.submit(request)
        asked = await lab.dave_decider.next_request(WAIT)
        lab.dave_decider.answer(asked.transaction_id, True)
        out = await handle.wait(WAIT)
        assert out.result == "success"
        ours = [(node, h) for node, h, b in sent_messages(seen)
                if request.transaction_id.encode() in b]
        senders = {node for node, _ in ours}
        assert senders == {ALICE, PRIMARY, PARTNER, DAVE}, senders
        assert len({h["call-id"] for _, h in ours}) >= 6  # flows of their own (RFC 3428)
        for node, headers in ours:
            assert headers.get("x-cid") == expected, (node, headers)
        first = [h for node, h in ours if node == ALICE]
        assert first[0]["call-id"] == expected  # what sngrep / Homer link the others to

    run(tmp_path, body)


def test_a_forged_header_neither_authorises_nor_refuses(tmp_path: Path) -> None:
    """Authorisation never reads X-CID: a stranger copying a live procedure's value is refused
    as without it; the partner's user deciding under a made-up value is obeyed as with the
    right one (the value only chose where the MESSAGE went)."""
    async def body(lab: Lab, client: Client, _seen: list[TraceRecord]) -> None:
        migrated = await lab.migrate_mike(WAIT)
        request = update(lab, migrated)
        live = procedure_id(ALICE, request.transaction_id)
        handle = lab.alice.submit(request)
        asked = await lab.dave_decider.next_request(WAIT)  # the procedure is open
        # a stranger (no configured user of the partner) answers with the live value
        stranger = "sip:mallory@partner.example"
        forged = ProfileUpdateResponse(
            asked.transaction_id, Party(stranger), Addressee(ALICE), migrated,
            Result(ResultCode.SUCCESS))
        final = await client.send(lab.partner.hop("udp"), PARTNER, stranger,
                                  codec.encode(forged), live)
        assert final.status == 403, (final.status, final.message.header("warning"))
        # DAVE, asked, decides with a value that names nothing: obeyed
        decision = ProfileUpdateResponse(
            asked.transaction_id, Party(DAVE), Addressee(ALICE), migrated,
            Result(ResultCode.REJECTED_BY_USER, "forged header, real user"))
        final = await client.send(lab.partner.hop("udp"), PARTNER, DAVE,
                                  codec.encode(decision), "0" * 32)
        assert final.status == 200, (final.status, final.message.header("warning"))
        out = await handle.wait(WAIT)
        assert out.result == ResultCode.REJECTED_BY_USER

    run(tmp_path, body)


def test_the_pending_data_download_goes_with_the_notification(tmp_path: Path) -> None:
    """10.17.3.1 on a cluster: the worker that notifies holds the pending items.  Its
    notification carries the X-CID of the oldest queued item's procedure (which the dispatcher
    hashes to that worker), the download that follows echoes it, and so does the download
    response (a next page goes there too).  Without it the download was a procedure of its own
    and could reach a worker holding nothing for the user (the cluster demo's branch 6 failed
    so about one run in three)."""
    async def body(lab: Lab, _client: Client, seen: list[TraceRecord]) -> None:
        migrated = await lab.migrate_mike(WAIT)
        handle = lab.alice.submit(update(lab, migrated))
        await asyncio.wait_for(handle.indicated, WAIT)  # pending for DAVE, logged off
        seen.clear()
        await lab.dave.logon()  # -> notification -> download -> delivered request
        await lab.dave_decider.next_request(WAIT)
        flows = {b"<pending-data-notification": "notification",
                 b"<pending-data-download-request": "download",
                 b"<pending-data-download-response": "download response"}
        cids: dict[str, str] = {}
        for _node, headers, payload in sent_messages(seen):
            for marker, name in flows.items():
                if marker in payload:
                    cids[name] = headers.get("x-cid", "")
        assert set(cids) == set(flows.values()), cids
        # the queued item's procedure: the partner worker holding it is where it hashes
        assert set(cids.values()) == {procedure_id(ALICE, handle.transaction_id)}, cids

    run(tmp_path, body, dave_online=False)


def test_a_retried_download_goes_back_to_the_worker_that_notified() -> None:
    """Two workers of a scaled-out ACMS hold items for ALICE and each notifies her with its
    own X-CID; both downloads meet a 503 (the store is away): ALICE's ACMC asks each again,
    with the X-CID of the notification it follows, so the dispatcher sends each retry to the
    worker holding those items.  Here a bare endpoint plays both workers.  (Before: only the
    later download was retried, and without its X-CID: the first worker's items waited for
    the next notification -- found by a CI run of tests/test_scaleout.py.)"""
    cids = [procedure_id(PRIMARY, "worker-a"), procedure_id(PRIMARY, "worker-b")]
    downloads: list[str] = []

    def acms(incoming: IncomingRequest) -> Reply:
        downloads.append(incoming.message.header(PROCEDURE_HEADER) or "")
        if downloads.count(downloads[-1]) == 1:  # each worker's first: its store is away
            return Reply(503, headers=(("Retry-After", "1"),))
        return Reply(200)

    async def main() -> None:
        fake = SipEndpoint([Listen("udp", "127.0.0.1", 0)])
        fake.serve("MESSAGE", acms)
        await fake.start()
        host, port = fake.local_address()
        alice = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, PRIMARY), SipSettings(
            listens=(Listen("udp", "127.0.0.1", 0),), hops={"*": f"sip:{host}:{port}"},
            trusted_hosts=LOOPBACK)))
        await alice.start(logon=False)
        try:
            a_host, a_port = alice.endpoint.local_address()
            for cid in cids:  # each worker notifies (10.17.3.1)
                note = codec.encode(PendingDataNotification(new_transaction_id(), ALICE))
                final = await fake.send(fake.new_request(
                    "MESSAGE", f"sip:{a_host}:{a_port}", from_uri=PRIMARY, to_uri=ALICE,
                    body=note, content_type=codec.ACM_CONTENT_TYPE,
                    headers=(("P-Asserted-Identity", f"<{PRIMARY}>"), (PROCEDURE_HEADER, cid))),
                    timeout=WAIT)
                assert final.status == 200
            async with asyncio.timeout(WAIT):
                while len(downloads) < 4:
                    await asyncio.sleep(0.05)
        finally:
            await alice.stop()
            await fake.close()

    asyncio.run(main())
    assert Counter(downloads) == {cids[0]: 2, cids[1]: 2}, downloads
