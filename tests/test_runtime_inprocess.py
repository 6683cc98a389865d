"""The five nodes as library objects on loopback (UDP and TCP), temporary SQLite stores: a
profile update through each branch, asserting the Result the primary ACMC receives."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import Addressee, ProfileUpdateRequest, new_transaction_id
from mcacm_sip.core.state import Role, TxState
from mcacm_sip.runtime import RequestOutcome, TraceRecord
from mcacm_sip.runtime.lab import DAVE, DUTY, ROUTINE, Lab, profile_xml

WAIT = 15.0  # generous upper bound; the exchanges take milliseconds on loopback


def run(transport: str, tmp_path: Path, body: Callable[[Lab], Awaitable[None]],
        **kwargs: object) -> None:
    async def main() -> None:
        async with Lab.start(tmp_path, transport=transport, **kwargs) as lab:  # type: ignore[arg-type]
            await asyncio.wait_for(body(lab), 60)

    asyncio.run(main())


def update(lab: Lab, migrated: str, target: Addressee, *elements: str) -> ProfileUpdateRequest:
    return ProfileUpdateRequest(new_transaction_id(), lab.alice.core.me, target, migrated,
                                profile_from_xml(profile_xml("Mike (updated)", *elements)),
                                "please")


def assert_answered(out: RequestOutcome, result: str) -> None:
    assert out.failure is None, out.failure
    assert out.indication is not None  # step 4 reached the primary ACMC
    assert out.result == result


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_automatic_branch(transport: str, tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        migrated = await lab.migrate_mike(WAIT)
        out = await lab.alice.request(update(lab, migrated, Addressee(DAVE), ROUTINE), WAIT)
        assert_answered(out, "success")
        assert out.response is not None
        assert out.response.handler.mc_service_id == "sip:acms@partner.example"  # 10.17.3.2
        assert lab.dave_decider.decided == []  # nobody was asked

    run(transport, tmp_path, body)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_request_in_flight_holds_no_task_of_its_own(transport: str, tmp_path: Path) -> None:
    """An ACMC's MESSAGE goes out from a loop callback, not a task per send (as the ACMS's):
    submitting requests starts no task, and each still gets its answer."""
    async def body(lab: Lab) -> None:
        migrated = await lab.migrate_mike(WAIT)
        before = len(asyncio.all_tasks())
        handles = [lab.alice.submit(update(lab, migrated, Addressee(DAVE), ROUTINE))
                   for _ in range(3)]
        assert len(asyncio.all_tasks()) == before
        for handle in handles:
            assert_answered(await handle.wait(WAIT), "success")

    run(transport, tmp_path, body)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_direct_acmc_branch_reject(transport: str, tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        migrated = await lab.migrate_mike(WAIT)
        handle = lab.alice.submit(update(lab, migrated, Addressee(DAVE)))
        request = await lab.dave_decider.next_request(WAIT)  # step 5 reached DAVE
        assert isinstance(request, ProfileUpdateRequest)
        assert request.migrated_user_id == migrated and request.additional_info == "please"
        lab.dave_decider.answer(request.transaction_id, False, "not today")
        out = await handle.wait(WAIT)
        assert_answered(out, "rejected-by-user")
        assert out.response is not None and out.response.result.text == "not today"
        assert out.response.handler.mc_service_id == DAVE

    run(transport, tmp_path, body)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_partner_acmc_offline_pending_then_logon(transport: str, tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        migrated = await lab.migrate_mike(WAIT)
        handle = lab.alice.submit(update(lab, migrated, Addressee(DAVE)))
        await asyncio.wait_for(handle.indicated, WAIT)
        tx = lab.partner.core.transaction(Role.PARTNER, handle.transaction_id,
                                          "sip:acms@primary.example")
        assert tx is not None and tx.state is TxState.PENDING_USER  # 10.17.3.1
        await lab.dave.logon()  # -> pending notification -> download -> decision
        request = await lab.dave_decider.next_request(WAIT)
        assert request.transaction_id == handle.transaction_id
        lab.dave_decider.answer(request.transaction_id, True, "fine")
        assert_answered(await handle.wait(WAIT), "success")
        assert lab.partner.core.pending_for(DAVE) == ()

    run(transport, tmp_path, body, dave_online=False)


def test_a_logons_200_leaves_before_the_notification_it_releases(tmp_path: Path) -> None:
    """10.17.3.1: the ACMS answers the REGISTER that logs a user on, then notifies it of its
    pending data: the ACMC never gets a notification for a logon it has no 200 for."""
    seen: list[TraceRecord] = []

    async def body(lab: Lab) -> None:
        migrated = await lab.migrate_mike(WAIT)
        handle = lab.alice.submit(update(lab, migrated, Addressee(DAVE)))
        await asyncio.wait_for(handle.indicated, WAIT)
        await lab.dave.logon()
        request = await lab.dave_decider.next_request(WAIT)
        lab.dave_decider.answer(request.transaction_id, True, "fine")
        assert_answered(await handle.wait(WAIT), "success")

    run("udp", tmp_path, body, dave_online=False, trace=seen.append)
    partner = [r for r in seen if r.node == "sip:acms@partner.example"]
    notified = next(i for i, r in enumerate(partner)
                    if r.direction == "out" and b"<pending-data-notification" in r.data)
    logon = max(i for i, r in enumerate(partner[:notified])
                if r.direction == "in" and r.data.startswith(b"REGISTER "))
    assert any(r.direction == "out" and r.data.startswith(b"SIP/2.0 200")
               and b" REGISTER\r\n" in r.data for r in partner[logon:notified])


def test_functional_alias_delivered_on_activation(tmp_path: Path) -> None:
    """Target by FA with nobody active: stored; the PUBLISH that activates it (FA server ->
    NOTIFY -> partner ACMS) delivers the request to the holder."""
    async def body(lab: Lab) -> None:
        migrated = await lab.migrate_mike(WAIT)
        handle = lab.alice.submit(update(lab, migrated, Addressee(functional_alias=DUTY)))
        await asyncio.wait_for(handle.indicated, WAIT)
        assert lab.dave_decider.requests.empty()
        assert await lab.dave.set_functional_alias(DUTY, True) == 200
        request = await lab.dave_decider.next_request(WAIT)
        lab.dave_decider.answer(request.transaction_id, True)
        out = await handle.wait(WAIT)
        assert_answered(out, "success")
        assert out.response is not None and out.response.handler.functional_alias == DUTY

    run("udp", tmp_path, body)


def test_authorisation_failure_is_a_sip_403(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        request = ProfileUpdateRequest(
            new_transaction_id(), lab.alice.core.me, Addressee(DAVE), "sip:nobody@elsewhere",
            profile_from_xml(profile_xml("x")))
        out = await lab.alice.request(request, WAIT)
        # no mapping and no peer domain for the target's host would be 404; DAVE's domain
        # selects the partner, whose verify answers unknown-user
        assert_answered(out, "unknown-user")

    run("udp", tmp_path, body)


def test_partner_restart_after_step_4_completes_once(tmp_path: Path) -> None:
    async def body(lab: Lab) -> None:
        migrated = await lab.migrate_mike(WAIT)
        await lab.dave.logoff()
        handle = lab.alice.submit(update(lab, migrated, Addressee(DAVE)))
        await asyncio.wait_for(handle.indicated, WAIT)
        await lab.restart_partner()
        await lab.dave.logon()
        request = await lab.dave_decider.next_request(WAIT)
        lab.dave_decider.answer(request.transaction_id, True)
        assert_answered(await handle.wait(WAIT), "success")
        assert len(lab.dave_decider.decided) == 1

    run("udp", tmp_path, body)


def test_trace_hook_sees_every_message(tmp_path: Path) -> None:
    seen: list[TraceRecord] = []

    async def body(lab: Lab) -> None:
        await lab.migrate_mike(WAIT)

    run("udp", tmp_path, body, trace=seen.append)
    messages = [r for r in seen if r.data.startswith(b"MESSAGE ")]
    # the add request ACMC->ACMS->ACMS, indication ACMS->ACMS->ACMC, response the same way,
    # each traced once out and once in
    assert len([r for r in messages if r.direction == "out"]) >= 6
    assert all(r.transport == "udp" and r.src[0] == "127.0.0.1" for r in seen)
    assert {r.node for r in seen} >= {"sip:acms@primary.example", "sip:alice@primary.example"}
