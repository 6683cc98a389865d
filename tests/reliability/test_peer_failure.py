"""Peer failure (issue 8; RELIABILITY.md "Peer failure").

Already proved on the fake clock in tests/core/test_procedure.py: the partner unreachable ->
FORWARD retried 1, 2, 4 ... 60 s -> Result expired at the answer timer, retries stop
(``test_peer_unreachable_retries_with_backoff_then_expires``); the partner back before that ->
the transaction completes once (``test_peer_back_before_expiry_completes``); the primary ACMC
offline -> its answer is delivered on logon (``..._offline_for_the_answer_gets_it_on_logon_once``).

Here: the primary ACMC offline for days (fake clock, with an ACMS restart in between) and the
same three stories between real ``mcacm acms`` processes on loopback.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from core.harness import ALICE, DAVE, PRIMARY, Answer, Net, migrate, two_systems, update

from mcacm_sip.acm.model import (
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    Party,
    PendingDataDownloadResponse,
    ResultCode,
    new_transaction_id,
)
from mcacm_sip.core.config import AcmcConfig
from mcacm_sip.core.events import ReportKind, ReportToUser
from mcacm_sip.core.state import Role, TxState
from mcacm_sip.runtime.acmc import AcmcNode
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.config import AcmcNodeConfig
from mcacm_sip.runtime.lab import LOOPBACK
from mcacm_sip.sip import Timers
from mcacm_sip.store import SqliteStore

from .systems import Acmc, Systems, finished

DAY = 86400.0

# --------------------------------------------------------------------------- fake clock


def offline_for_days(tmp_path: Path, days: float) -> tuple[Net, str]:
    """ALICE asks, logs off; DAVE approves; ``days`` pass with the primary ACMS restarted
    from its SQLite store half-way.  Returns (net, transaction id)."""
    net = two_systems(primary_store=SqliteStore(str(tmp_path / "primary.sqlite")),
                      partner_store=SqliteStore(str(tmp_path / "partner.sqlite")))
    net.logon(ALICE)
    net.logon(DAVE)
    tid = update(net, Addressee(DAVE), migrate(net))
    net.logoff(ALICE)
    net.decide(DAVE, True)
    net.advance(days * DAY / 2)
    net.restart(PRIMARY)
    net.advance(days * DAY / 2)
    return net, tid


def downloaded(net: Net) -> list[str]:
    """Transaction ids of the responses ALICE's pending data downloads carried."""
    return [item.transaction_id for f in net.received(ALICE, "pending-data-download-response")
            if isinstance(f, PendingDataDownloadResponse) for item in f.items]


def test_primary_acmc_offline_for_days_gets_the_stored_answer_on_logon_once(tmp_path: Path
                                                                            ) -> None:
    # 23.280 10.17.3.1 (pending data on logon) and 10.17.7.2 steps 9-10
    net, tid = offline_for_days(tmp_path, 5)
    items = net.acms[PRIMARY].pending_for(ALICE)
    assert [i.flow.transaction_id for i in items] == [tid]
    net.logon(ALICE)
    assert downloaded(net) == [tid]
    download = net.received(ALICE, "pending-data-download-response")[-1]
    assert isinstance(download, PendingDataDownloadResponse)
    assert download.items[0].result.code == ResultCode.SUCCESS  # type: ignore[union-attr]
    assert net.acms[PRIMARY].pending_for(ALICE) == ()
    tx = net.acms[PRIMARY].transaction(Role.PRIMARY, tid)
    assert tx is not None and tx.state is TxState.DONE
    net.logoff(ALICE)
    net.logon(ALICE)  # delivered once: nothing is pending any more
    assert downloaded(net) == [tid]


def test_the_answer_waits_no_longer_than_pending_response_ttl(tmp_path: Path) -> None:
    # decision (docs/decisions.md "Procedures"): timers.pending_response_ttl, 7 days default
    net, tid = offline_for_days(tmp_path, 8)
    assert net.acms[PRIMARY].pending_for(ALICE) == ()
    net.logon(ALICE)
    assert downloaded(net) == []
    tx = net.acms[PRIMARY].transaction(Role.PRIMARY, tid)
    assert tx is not None and tx.state is TxState.DONE


def test_a_response_the_logged_on_acmc_did_not_take_is_notified_at_once() -> None:
    """Regression (found by the crash runs on a busy machine): a DELIVER to a logged-on ACMC
    that timed out went to the pending store, and the ACMC -- still logged on -- was only told
    at its next logon.  Now it is notified at once (10.17.3.1) and downloads the response."""
    net = two_systems()
    net.logon(ALICE)
    net.logon(DAVE)
    tid = update(net, Addressee(DAVE), migrate(net))
    net.scripted[ALICE] = [Answer(408)]  # the response (step 10) is not answered in time
    net.decide(DAVE, True)
    assert downloaded(net) == [tid]
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    assert net.acms[PRIMARY].pending_for(ALICE) == ()
    tx = net.acms[PRIMARY].transaction(Role.PRIMARY, tid)
    assert tx is not None and tx.state is TxState.DONE


def test_the_notification_is_repeated_while_the_acmc_stays_logged_on() -> None:
    net = two_systems()
    net.logon(ALICE)
    net.logon(DAVE)
    tid = update(net, Addressee(DAVE), migrate(net))
    net.scripted[ALICE] = [Answer(408), Answer(503)]  # the response, then the notification
    net.decide(DAVE, True)
    assert downloaded(net) == []
    net.advance(2)  # back-off (retry_initial 1 s): notified again, downloads
    assert downloaded(net) == [tid]
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    net.advance(3600)  # nothing left to tell: no more notifications
    assert len(net.received(ALICE, "pending-data-notification")) == 1


# --------------------------------------------------------------------------- processes


async def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    give_up = time.monotonic() + within
    while not condition():
        assert time.monotonic() < give_up, "condition not met in time"
        await asyncio.sleep(0.05)


def add_request() -> AddUserConfigurationRequest:
    return AddUserConfigurationRequest(new_transaction_id(), Party(ALICE),
                                       ("sip:mike@primary.example",))


def forwards(systems: Systems, tid: str) -> list[object]:
    """Statuses of the primary's attempts to forward ``tid`` (10.17.7.2 step 3)."""
    return [e.get("status") for e in systems.events("primary", "acm.sent")
            if e.get("transaction_id") == tid and e.get("flow") == add_request().FLOW]


@pytest.mark.timeout(60)
def test_partner_unreachable_retries_then_result_expired_at_the_configured_time(
        tmp_path: Path) -> None:
    # decision: answer timer = decision_timeout + answer_grace (3 s here) -> Result expired
    systems = Systems(tmp_path)
    systems.write(timers={"decision_timeout": 2.0, "answer_grace": 1.0}, send_timeout=0.5)

    async def run() -> None:
        acmc = Acmc(systems.primary_port)
        await acmc.start()
        try:
            request = add_request()
            assert await acmc.send(request) == 200
            response = await acmc.response(request.transaction_id, within=20)
            assert response.result.code == ResultCode.EXPIRED
            attempts = forwards(systems, request.transaction_id)
            assert len(attempts) >= 2 and 200 not in attempts  # retried, never reached
        finally:
            await acmc.close()

    try:
        systems.start("primary")  # the partner never runs
        asyncio.run(run())
    finally:
        systems.stop_all()


@pytest.mark.timeout(60)
def test_partner_back_before_the_answer_timer_completes_once(tmp_path: Path) -> None:
    systems = Systems(tmp_path)
    systems.write()

    async def run() -> None:
        acmc = Acmc(systems.primary_port)
        await acmc.start()
        try:
            request = add_request()
            tid = request.transaction_id
            assert await acmc.send(request) == 200
            await until(lambda: len(forwards(systems, tid)) >= 2)  # failed and retried
            await asyncio.to_thread(systems.start, "partner")
            response = await acmc.response(tid, within=20)
            assert response.result.code == ResultCode.SUCCESS
            await until(lambda: 200 in forwards(systems, tid))
        finally:
            await acmc.close()
        assert len(acmc.responses(tid)) == 1

    try:
        systems.start("primary")
        asyncio.run(run())
    finally:
        systems.stop_all()
    assert len(finished(systems.stored("partner"), Role.PARTNER)) == 1


@pytest.mark.timeout(90)
def test_offline_primary_acmc_gets_its_answer_on_logon_across_an_acms_restart(
        tmp_path: Path) -> None:
    # 23.280 10.17.3.1: the response waits in the primary's pending store (SQLite) while
    # ALICE is logged off, survives a SIGKILL of the primary ACMS, and comes on logon
    systems = Systems(tmp_path)
    systems.write()

    def steps(tid: str, state: TxState) -> bool:
        return any(e.get("transaction_id") == tid and e.get("to_state") == state
                   for e in systems.events("primary", "procedure.step"))

    async def run() -> None:
        sip = SipSettings(hops={"*": f"sip:127.0.0.1:{systems.primary_port}"},
                          timers=Timers(t1=0.1), send_timeout=2.0, trusted_hosts=LOOPBACK)
        alice = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, PRIMARY), sip))
        await alice.start()
        try:
            handle = alice.submit(add_request())
            tid = handle.transaction_id
            await until(lambda: steps(tid, TxState.FORWARDING))  # accepted and stored
            await alice.logoff()
            await asyncio.to_thread(systems.start, "partner")
            await until(lambda: steps(tid, TxState.PENDING_USER))  # step 9: stored for her
            [*_, primary] = (p for p in systems.procs if p.name == "primary")
            primary.stop(signal.SIGKILL)
            await asyncio.to_thread(systems.start, "primary")
            # days later she logs on from a NEW ACMC process, which never sent the request:
            # notification -> download -> the response is still shown to her, once
            await alice.stop(logoff=False)
            reports: list[ReportToUser] = []
            later = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, PRIMARY), sip),
                             on_report=reports.append)
            await later.start()  # logon (10.17.3.1)
            try:
                await until(lambda: steps(tid, TxState.DONE))
                [shown] = [r for r in reports if r.transaction_id == tid]
                assert shown.kind is ReportKind.RESPONSE and isinstance(shown.flow, AcmResponse)
                assert shown.flow.result.code == ResultCode.SUCCESS
            finally:
                await later.stop()
        finally:
            await alice.stop()

    try:
        systems.start("primary")
        asyncio.run(run())
    finally:
        systems.stop_all()
    stored = systems.stored("primary")
    assert stored.pending == ()
    assert len(finished(stored, Role.PRIMARY)) == 1
