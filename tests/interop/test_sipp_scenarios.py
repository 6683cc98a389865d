"""Each SIPp scenario of examples/interop/sipp (a foreign ACMS, ACMC or FA controlling server)
against our servers on loopback, run with the documented command line (peers.foreign_argv).

The outcome is checked at both ends: SIPp's exit code (0 = every regexp/compare check of the
scenario passed, e.g. the Result it received) and our node's state or Result.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tools import require_tool

from mcacm_sip.acm.model import Addressee
from mcacm_sip.core.config import Timers as ProcedureTimers
from mcacm_sip.core.state import Role, TxState
from mcacm_sip.runtime.acmc import AutoDecider
from mcacm_sip.runtime.lab import (
    ALICE,
    CLOSED_GROUP,
    DAVE,
    DUTY,
    OPEN_GROUP,
    PARTNER,
    PRIMARY,
    Lab,
)

from .ours import update
from .peers import LOOPBACK, Foreign, SippTransport, foreign, free_port, sip_core

WAIT = 15.0  # upper bound; the exchanges take milliseconds on loopback
REGISTRAR = "sip:partner.example"


def run(body: Callable[[], Awaitable[None]]) -> None:
    require_tool("sipp")
    asyncio.run(asyncio.wait_for(body(), 50))


async def finished(peer: Foreign) -> int:
    """sipp's exit code, waited for without blocking our nodes."""
    return await asyncio.to_thread(peer.wait, 30)


# --------------------------------------------------------------------------- foreign primary


@pytest.mark.parametrize(("decision", "expected", "rc"), [
    (True, "success", 0),
    (False, "rejected-by-user", 0),
    (True, "rejected-by-user", 1),  # the scenario's Result check bites
])
def test_foreign_primary_acms(decision: bool, expected: str, rc: int, tmp_path: Path) -> None:
    """foreign-primary.xml -> our partner ACMS: 200, then the process indication (step 4) and
    the response (step 8) for its transaction id; DAVE decides at our side."""
    async def body() -> None:
        async with Lab.start(tmp_path, dave=AutoDecider(decision)) as lab:
            migrated = await lab.migrate_mike()
            tid = str(uuid.uuid4())
            with foreign(tmp_path, "foreign-primary.xml", {
                    "psi": PRIMARY, "partner": PARTNER, "requester": ALICE, "target": DAVE,
                    "migrated": migrated, "tid": tid, "result": expected},
                    target=lab.partner.addresses["udp"], inbox=True) as peer:
                # our partner answers the foreign primary at its address
                lab.partner.set_hops({**lab.hops("partner"), PRIMARY: peer.uri})
                assert await finished(peer) == rc, peer.explain()
            tx = lab.partner.core.transaction(Role.PARTNER, tid, PRIMARY)
            assert tx is not None and tx.response is not None
            assert tx.response.result.code == ("success" if decision else "rejected-by-user")
            assert [r.transaction_id for r, _ in lab.dave_decider.decided] == [tid]

    run(body)


@pytest.mark.parametrize(("scenario", "group", "decision", "expected"), [
    # the lab partner's policy approves adds to grp-open-* (10.17.3.2): nobody is asked
    ("foreign-primary-group-update.xml", OPEN_GROUP, False, "success"),
    # another group: DAVE decides (and rejects)
    ("foreign-primary-group-update.xml", CLOSED_GROUP, False, "rejected-by-user"),
    ("foreign-primary-group-provision.xml", CLOSED_GROUP, True, "success"),
])
def test_foreign_primary_acms_group_related(scenario: str, group: str, decision: bool,
                                            expected: str, tmp_path: Path) -> None:
    """10.17.4 from a foreign primary: its group membership update or interconnection group
    identity provision reaches our partner ACMS; indication and response come back for its
    transaction id with the expected Result; our partner applies only a success."""
    async def body() -> None:
        async with Lab.start(tmp_path, dave=AutoDecider(decision)) as lab:
            tid = str(uuid.uuid4())
            keys = {"psi": PRIMARY, "partner": PARTNER, "requester": ALICE, "target": DAVE,
                    "group": group, "tid": tid, "result": expected}
            if "update" in scenario:
                keys["member"] = "sip:erin@partner.example"
            with foreign(tmp_path, scenario, keys, target=lab.partner.addresses["udp"],
                         inbox=True) as peer:
                lab.partner.set_hops({**lab.hops("partner"), PRIMARY: peer.uri})
                assert await finished(peer) == 0, peer.explain()
            applied = {g.group_id: g for g in lab.partner.core.groups()}
            if expected != "success":
                assert applied == {}
            elif "update" in scenario:
                assert applied[group].members == ("sip:erin@partner.example",)
            else:
                assert applied[group].provisioned

    run(body)


# --------------------------------------------------------------------------- foreign partner


PARTNER_KEYS = {"psi": PARTNER, "primary": PRIMARY, "handler": DAVE}


async def ask_foreign_partner(lab: Lab, peer: Foreign, result: str) -> None:
    """ALICE's request to a foreign partner ACMS: its indication and response reach her."""
    handle = lab.alice.submit(update(lab, "sip:mike-1@partner.example", Addressee(DAVE)))
    out = await handle.wait(WAIT)
    assert await finished(peer) == 0, peer.explain()
    assert out.failure is None, out.failure
    assert out.indication is not None  # the foreign step 4 reached ALICE
    assert out.result == result
    assert out.response is not None and out.response.handler.mc_service_id == DAVE


@pytest.mark.parametrize(("result", "transport"), [
    ("success", "udp"), ("rejected-by-user", "udp"), ("success", "tcp")])
def test_foreign_partner_acms_answers(result: str, transport: SippTransport,
                                      tmp_path: Path) -> None:
    """Our primary ACMS -> foreign-partner.xml, approving or rejecting."""
    async def body() -> None:
        async with Lab.start(tmp_path, transport=transport) as lab:
            with foreign(tmp_path, "foreign-partner.xml", {**PARTNER_KEYS, "result": result},
                         transport=transport) as peer:
                lab.primary.set_hops({PARTNER: peer.uri})
                await ask_foreign_partner(lab, peer, result)

    run(body)


def test_foreign_partner_acms_behind_the_sip_core(tmp_path: Path) -> None:
    """The same through Kamailio (examples/interop/kamailio): the core routes
    acms@partner.example to the foreign ACMS and its MESSAGEs back to our primary."""
    require_tool("kamailio")

    async def body() -> None:
        primary_port = free_port()
        with foreign(tmp_path, "foreign-partner.xml",
                     {**PARTNER_KEYS, "result": "success"}) as peer:
            routes = {"PRIMARY_ACMS": f"sip:{LOOPBACK}:{primary_port}",
                      "PARTNER_ACMS": peer.uri, "PARTNER_FA": peer.uri}
            with sip_core(tmp_path, routes) as core:
                # DAVE belongs to the foreign system now: our ACMC of his stays logged off
                async with Lab.start(tmp_path, dave_online=False, proxy=core.uri("udp"),
                                     ports={"primary": primary_port}) as lab:
                    await ask_foreign_partner(lab, peer, "success")
                    # the foreign MESSAGEs reached our primary through the core
                    assert f"Via: SIP/2.0/UDP {LOOPBACK}:{core.port};branch=".encode() in (
                        peer.messages.read_bytes())

    run(body)


def test_foreign_partner_acms_silent(tmp_path: Path) -> None:
    """Our primary ACMS -> foreign-partner-silent.xml (never answers): ALICE gets Result
    expired when the primary's answer timer runs out (here 1 s)."""
    async def body() -> None:
        timers = ProcedureTimers(decision_timeout=0.5, answer_grace=0.5)
        async with Lab.start(tmp_path, timers=timers) as lab:
            with foreign(tmp_path, "foreign-partner-silent.xml", {},
                         extra=["-d", "1000"]) as peer:
                lab.primary.set_hops({PARTNER: peer.uri})
                request = update(lab, "sip:mike-1@partner.example", Addressee(DAVE))
                out = await lab.alice.submit(request).wait(WAIT)
                assert await finished(peer) == 0, peer.explain()  # it got the request
            assert out.result == "expired", out
            tx = lab.primary.core.transaction(Role.PRIMARY, request.transaction_id, ALICE)
            assert tx is not None and tx.state is TxState.DONE

    run(body)


# --------------------------------------------------------------------------- foreign ACMC


def test_foreign_acmc_logs_on_downloads_and_approves(tmp_path: Path) -> None:
    """foreign-acmc.xml as DAVE while a request waits for him (10.17.3.1): REGISTER ->
    pending data notification -> download -> its approval reaches ALICE as success."""
    async def body() -> None:
        async with Lab.start(tmp_path, dave_online=False) as lab:
            migrated = await lab.migrate_mike()
            handle = lab.alice.submit(update(lab, migrated, Addressee(DAVE)))
            await asyncio.wait_for(handle.indicated, WAIT)
            assert len(lab.partner.core.pending_for(DAVE)) == 1
            with foreign(tmp_path, "foreign-acmc.xml", {
                    "user": DAVE, "registrar": REGISTRAR, "acms": PARTNER,
                    "tid": str(uuid.uuid4())},
                    target=lab.partner.addresses["udp"], inbox=True) as peer:
                assert await finished(peer) == 0, peer.explain()
            out = await handle.wait(WAIT)
            assert out.result == "success", out
            assert out.response is not None and out.response.handler.mc_service_id == DAVE
            assert lab.partner.core.pending_for(DAVE) == ()
            assert not lab.partner.registrar.is_registered(DAVE, lab.partner.endpoint.now())

    run(body)


# --------------------------------------------------------------------------- foreign FA server


def test_foreign_fa_server_names_the_holder(tmp_path: Path) -> None:
    """Our partner ACMS resolves DUTY at foreign-fa-server.xml (SUBSCRIBE Event: presence ->
    200 -> NOTIFY pidf naming DAVE) and hands the request to DAVE, who approves."""
    async def body() -> None:
        async with Lab.start(tmp_path, dave=AutoDecider(True)) as lab:
            migrated = await lab.migrate_mike()
            with foreign(tmp_path, "foreign-fa-server.xml", {"holder": DAVE}) as peer:
                lab.partner.set_hops({**lab.hops("partner"), "partner.example": peer.uri})
                out = await lab.alice.request(
                    update(lab, migrated, Addressee(functional_alias=DUTY)), WAIT)
                assert await finished(peer) == 0, peer.explain()
            assert out.result == "success", out
            assert out.response is not None
            assert out.response.handler.functional_alias == DUTY
            assert out.response.handler.mc_service_id == DAVE

    run(body)
