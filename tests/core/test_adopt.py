"""A surviving worker adopts a dead worker's records (``AdoptRecords``) and continues them
exactly as a restart would: retries at their stored times, re-sends of what had no known
outcome, each answer delivered once (docs/decisions.md "Scale-out: leases", rule 4)."""

from __future__ import annotations

from dataclasses import replace

from mcacm_sip.acm.model import Addressee, ResultCode
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.events import AdoptRecords, ReleaseRecords, ReportKind, SendFlow
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.state import Role, Snapshot, TxState
from mcacm_sip.store import MemoryStore

from .harness import ALICE, DAVE, PARTNER, PRIMARY, migrate, two_systems, update
from .test_restart import answers_sent


def test_takeover_after_step_4_completes_exactly_once() -> None:
    net = two_systems(primary_store=MemoryStore(), partner_store=MemoryStore())
    net.logon(ALICE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)  # DAVE offline: pending at the partner
    net.down.add(PARTNER)                       # the partner's worker dies after step 4
    survivor = net.take_over(PARTNER)
    tx = survivor.transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.PENDING_USER
    assert [i.key for i in survivor.pending_for(DAVE)] == [tx.key]
    net.logon(DAVE)
    net.decide(DAVE, True)
    assert net.results(ALICE) == [ResultCode.SUCCESS, ResultCode.SUCCESS]
    assert answers_sent(net, tid) == 1


def test_takeover_continues_a_retry_at_its_stored_time() -> None:
    net = two_systems(primary_store=MemoryStore(), partner_store=MemoryStore())
    net.logon(ALICE)
    net.logon(DAVE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)
    net.down.add(PRIMARY)        # the response cannot be delivered ...
    net.decide(DAVE, True)
    net.down.add(PARTNER)        # ... and the partner's worker dies while retrying
    net.down.discard(PRIMARY)
    retry_at = net.acms[PARTNER].get_timer()
    survivor = net.take_over(PARTNER)
    assert answers_sent(net, tid) == 0      # nothing re-sent before the retry time
    assert survivor.get_timer() == retry_at
    net.advance(120)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    assert answers_sent(net, tid) == 1
    assert len([r for r in net.reports[ALICE] if r.kind is ReportKind.RESPONSE
                and r.transaction_id == tid]) == 1


def test_adopting_what_it_holds_changes_nothing() -> None:
    net = two_systems(primary_store=MemoryStore(), partner_store=MemoryStore())
    net.logon(ALICE)
    mike = migrate(net)
    update(net, Addressee(DAVE), mike)
    store = net.stores[PARTNER]
    core = net.acms[PARTNER]
    before = core.transactions()
    assert core.handle(AdoptRecords(net.clock.now, store.load())) == []
    assert core.transactions() == before


def test_an_adopted_send_in_flight_is_sent_again_once() -> None:
    # a send whose outcome the dead worker never learnt (next_at None) goes out at adoption
    net = two_systems(primary_store=MemoryStore(), partner_store=MemoryStore())
    net.logon(ALICE)
    net.logon(DAVE)
    mike = migrate(net)
    update(net, Addressee(DAVE), mike)
    net.down.add(PRIMARY)
    net.decide(DAVE, True)       # the answer is stored, its delivery failed: a retry is due
    snap = net.stores[PARTNER].load()
    in_flight = tuple(replace(o, next_at=None) for o in snap.outgoing)  # died while sending
    assert in_flight
    fresh = AcmsCore(net.acms[PARTNER].config)
    fresh.start(net.clock.now)
    adopted = replace(snap, outgoing=in_flight)
    sends = [a for a in fresh.handle(AdoptRecords(net.clock.now, adopted))
             if isinstance(a, SendFlow)]
    assert sorted(s.send_id for s in sends) == sorted(o.send_id for o in in_flight)
    again = fresh.handle(AdoptRecords(net.clock.now, Snapshot(outgoing=in_flight)))
    assert [a for a in again if isinstance(a, SendFlow)] == []


def test_released_transactions_are_forgotten_with_their_items_and_sends() -> None:
    # another worker holds them now (docs/decisions.md "Scale-out: leases", rule 5)
    net = two_systems(primary_store=MemoryStore(), partner_store=MemoryStore())
    net.logon(ALICE)
    net.logon(DAVE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)
    net.down.add(PRIMARY)
    net.decide(DAVE, True)       # the answer's delivery failed: a retry is due
    core = net.acms[PARTNER]
    tx = core.transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and core.sends_of(tx.key) and core.get_timer() is not None
    kept = [t for t in core.transactions() if t.key != tx.key]
    assert core.handle(ReleaseRecords(net.clock.now, frozenset({tx.key}))) == []  # no Remove
    assert core.transaction(Role.PARTNER, tid, PRIMARY) is None
    assert core.sends_of(tx.key) == ()
    assert list(core.transactions()) == kept
    net.down.discard(PRIMARY)
    net.advance(300)             # its retry timer is dead: nothing is re-sent from here
    assert answers_sent(net, tid) == 0
    # the same request again is new to this core (its holder answers it elsewhere)
    assert core.handle(AdoptRecords(net.clock.now, Snapshot(transactions=(tx,)))) == []
    assert core.transaction(Role.PARTNER, tid, PRIMARY) == tx


def test_mappings_and_groups_other_workers_wrote_are_taken_in() -> None:
    net = two_systems(primary_store=MemoryStore(), partner_store=MemoryStore())
    core = net.acms[PARTNER]
    group = PartnerGroup(PRIMARY, "sip:team@primary.example", True, (DAVE,), 1.0)
    assert core.handle(AdoptRecords(net.clock.now, Snapshot(groups=(group,)))) == []
    assert core.groups() == (group,)
    grown = replace(group, members=(DAVE, "sip:erin@partner.example"), updated=2.0)
    core.handle(AdoptRecords(net.clock.now, Snapshot(groups=(grown,))))
    assert core.groups() == (grown,)  # the other worker's is the newer


def test_items_adopted_for_a_user_logged_on_already_are_notified() -> None:
    # DAVE logs on while the worker holding his item is dead: the survivors hold nothing for
    # him then, so nobody notifies at the logon; the adopter must, when it takes the item over
    # (10.17.3.1; docs/decisions.md "Scale-out: the procedure header ...")
    net = two_systems(primary_store=MemoryStore(), partner_store=MemoryStore())
    net.logon(ALICE)
    mike = migrate(net)
    update(net, Addressee(DAVE), mike)          # DAVE offline: pending at the partner
    net.down.add(PARTNER)                       # its worker dies ...
    net.logon(DAVE)                             # ... DAVE logs on meanwhile
    assert net.received(DAVE, "pending-data-notification") == []
    net.take_over(PARTNER)
    assert len(net.received(DAVE, "pending-data-notification")) == 1
    net.decide(DAVE, True)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
