"""A restarted ACMS continues every open transaction from its SQLite store, exactly once."""

from __future__ import annotations

from pathlib import Path

from mcacm_sip.acm.model import Addressee, ResultCode
from mcacm_sip.core.events import ReportKind
from mcacm_sip.core.state import Role, TxState
from mcacm_sip.store import SqliteStore

from .harness import ALICE, DAVE, DUTY, PARTNER, PRIMARY, Net, migrate, two_systems, update


def sqlite_systems(tmp_path: Path) -> Net:
    return two_systems(primary_store=SqliteStore(str(tmp_path / "primary.sqlite")),
                       partner_store=SqliteStore(str(tmp_path / "partner.sqlite")))


def answers_sent(net: Net, tid: str) -> int:
    return sum(1 for r in net.ladder if r.src == PARTNER and r.dst == PRIMARY
               and r.flow == "profile-update-response" and r.transaction_id == tid
               and r.answer == "200")


def test_partner_restart_after_step_4_completes_exactly_once(tmp_path: Path) -> None:
    net = sqlite_systems(tmp_path)
    net.logon(ALICE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)  # DAVE offline: pending at the partner
    net.down.add(PARTNER)                       # SIGKILL after step 4
    net.restart(PARTNER)                        # a new core from the SQLite file
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.PENDING_USER
    net.logon(DAVE)
    net.decide(DAVE, True)
    assert net.results(ALICE) == [ResultCode.SUCCESS, ResultCode.SUCCESS]
    assert answers_sent(net, tid) == 1
    assert [r.kind for r in net.reports[ALICE] if r.transaction_id == tid] == [
        ReportKind.INDICATION, ReportKind.RESPONSE]


def test_restart_resends_what_was_not_confirmed(tmp_path: Path) -> None:
    net = sqlite_systems(tmp_path)
    net.logon(ALICE)
    net.logon(DAVE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)
    net.down.add(PRIMARY)        # the response cannot be delivered ...
    net.decide(DAVE, True)
    net.down.add(PARTNER)        # ... and the partner dies while retrying
    net.down.discard(PRIMARY)
    net.restart(PARTNER)
    net.advance(120)             # the stored retry fires after the restart
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    assert answers_sent(net, tid) == 1
    assert len([r for r in net.reports[ALICE] if r.kind is ReportKind.RESPONSE
                and r.transaction_id == tid]) == 1


def test_primary_restart_keeps_the_answer_timer_and_mappings(tmp_path: Path) -> None:
    net = sqlite_systems(tmp_path)
    net.logon(ALICE)
    net.logon(DAVE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)
    net.restart(PRIMARY)
    assert net.acms[PRIMARY].mappings()[0].partner_id == mike
    net.advance(25 * 3600 + 1)  # nobody decides: the partner expires it, the primary delivers
    assert net.results(ALICE)[-1] == ResultCode.EXPIRED
    tx = net.acms[PRIMARY].transaction(Role.PRIMARY, tid)
    assert tx is not None and tx.state is TxState.DONE


def test_restart_resubscribes_to_functional_aliases_with_stored_requests(tmp_path: Path
                                                                        ) -> None:
    net = sqlite_systems(tmp_path)
    net.logon(ALICE)
    net.logon(DAVE)
    mike = migrate(net)
    tid = update(net, Addressee(functional_alias=DUTY), mike)
    net.restart(PARTNER)
    assert DUTY in net.subscriptions[PARTNER]
    net.set_holders(PARTNER, DUTY, (DAVE,))
    assert [r.transaction_id for r in net.to_decide[DAVE]] == [tid]
    net.decide(DAVE, False, "no")
    assert net.results(ALICE)[-1] == ResultCode.REJECTED_BY_USER
