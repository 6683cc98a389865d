"""23.280 10.17.7.2 end to end on in-memory cores: every branch of steps 1-10 and every failure."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

from mcacm_sip.acm.model import (
    Addressee,
    Party,
    PendingDataDownloadResponse,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    Result,
    ResultCode,
    new_transaction_id,
)
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.config import PeerSystem
from mcacm_sip.core.events import (
    AcceptMessage,
    FlowFromPeer,
    RefuseMessage,
    ReportKind,
    SendFlow,
    verdict_of,
)
from mcacm_sip.core.policy import PolicyAction, PolicyRule
from mcacm_sip.core.state import Hop, Role, TxState

from .harness import (
    ALICE,
    DAVE,
    DESK,
    DUTY,
    ERIN,
    MALLORY,
    OFFLINE,
    PARTNER,
    PRIMARY,
    Net,
    migrate,
    partner_config,
    primary_config,
    two_systems,
    update,
)

APPROVE = (True, "fine")


def ready(**kwargs: object) -> tuple[Net, str]:
    """Both systems, ALICE and DAVE logged on, MIKE migrated; returns (net, partner id)."""
    net = two_systems(**kwargs)  # type: ignore[arg-type]
    net.logon(ALICE)
    net.logon(DAVE)
    return net, migrate(net)


def forwarded(net: Net, tid: str) -> int:
    return sum(1 for r in net.ladder if r.src == PRIMARY and r.dst == PARTNER
               and r.flow == "profile-update-request" and r.transaction_id == tid)


# --------------------------------------------------------------------------- steps 1-10


def test_direct_acmc_approves_and_the_primary_acmc_gets_indication_then_success() -> None:
    net, mike = ready()
    tid = update(net, Addressee(DAVE), mike)
    # step 4: process indication relayed to the requester; step 5: request at DAVE
    assert net.report_kinds(ALICE)[-1] is ReportKind.INDICATION
    assert [r.transaction_id for r in net.to_decide[DAVE]] == [tid]
    net.decide(DAVE, True, "applied")
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    resp = net.reports[ALICE][-1].flow
    assert isinstance(resp, ProfileUpdateResponse)
    assert resp.handler == Party(DAVE) and resp.migrated_user_id == mike
    # the agreed profile is kept with the mapping at both ends (10.17.7.1)
    req = net.received(DAVE, "profile-update-request")[0]
    assert isinstance(req, ProfileUpdateRequest)
    for psi in (PRIMARY, PARTNER):
        m = next(m for m in net.acms[psi].mappings() if m.partner_id == mike)
        assert m.profile == req.profile
    tx = net.acms[PRIMARY].transaction(Role.PRIMARY, tid)
    assert tx is not None and tx.state is TxState.DONE


def test_acmc_rejects_with_reason() -> None:
    net, mike = ready()
    update(net, Addressee(DAVE), mike)
    net.decide(DAVE, False, "not during the exercise")
    resp = net.reports[ALICE][-1].flow
    assert isinstance(resp, ProfileUpdateResponse)
    assert resp.result == Result(ResultCode.REJECTED_BY_USER, "not during the exercise")


def test_policy_approves_automatically_without_any_acmc() -> None:
    rule = PolicyRule(PolicyAction.APPROVE, ProfileUpdateRequest.FLOW, requester="sip:alice@*",
                      reason="routine")
    partner = partner_config(policy=(*partner_config().policy, rule))
    net, mike = ready(partner=partner)
    update(net, Addressee(DAVE), mike)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    resp = net.reports[ALICE][-1].flow
    assert isinstance(resp, ProfileUpdateResponse) and resp.handler == Party(PARTNER)
    assert net.received(DAVE, "profile-update-request") == []  # 10.17.3.2 -> step 8


def test_policy_rejects_by_profile_content() -> None:
    rule = PolicyRule(PolicyAction.REJECT, ProfileUpdateRequest.FLOW,
                      profile_contains="PrivateCall", reason="private calls need approval")
    partner = partner_config(policy=(*partner_config().policy, rule),
                             automatic_handler="sip:robot@partner.example")
    net, mike = ready(partner=partner)
    update(net, Addressee(DAVE), mike)
    resp = net.reports[ALICE][-1].flow
    assert isinstance(resp, ProfileUpdateResponse)
    assert resp.result == Result(ResultCode.REJECTED_BY_POLICY, "private calls need approval")
    assert resp.handler == Party("sip:robot@partner.example")


# --------------------------------------------------------------------------- authorisation


def test_primary_authorisation_failure_gives_403_and_nothing_is_forwarded() -> None:
    net, mike = ready()
    net.logon(MALLORY)
    tid = update(net, Addressee(DAVE), mike, requester=MALLORY)
    report = net.reports[MALLORY][-1]
    assert report.kind is ReportKind.FAILED and report.transaction_id == tid
    assert report.text is not None and report.text.startswith("403 not-authorised:")
    assert forwarded(net, tid) == 0
    assert net.acms[PRIMARY].transaction(Role.PRIMARY, tid) is None  # not stored


def test_unconfigured_user_and_spoofed_requester_are_refused() -> None:
    net, mike = ready()
    core = net.acms[PRIMARY]
    req = ProfileUpdateRequest(new_transaction_id(), Party(ALICE), Addressee(DAVE), mike,
                               next(iter(core.mappings())).profile)  # type: ignore[arg-type]
    from mcacm_sip.core.events import FlowFromAcmc
    for sender in ("sip:eve@primary.example", MALLORY):
        verdict = verdict_of(core.handle(FlowFromAcmc(net.clock.now, sender, req)))
        assert isinstance(verdict, RefuseMessage) and verdict.status == 403


def test_unknown_peer_system_gets_403_and_nothing_is_stored() -> None:
    net, mike = ready()
    partner = net.acms[PARTNER]
    before = len(partner.transactions())
    flow = ProfileUpdateRequest(new_transaction_id(), Party("sip:x@rogue.example"),
                                Addressee(DAVE), mike, next(iter(partner.mappings())).profile)  # type: ignore[arg-type]
    actions = partner.handle(FlowFromPeer(net.clock.now, "sip:acms@rogue.example", flow))
    assert actions == [RefuseMessage(403, "not-authorised: sip:acms@rogue.example is not a "
                                   "configured peer system")]
    assert len(partner.transactions()) == before


def test_requester_not_allowed_at_the_partner_gets_not_authorised() -> None:
    partner = partner_config(peers=(PeerSystem(PRIMARY, ("primary.example",),
                                               requesters=("sip:chief@primary.example",)),))
    net = two_systems(partner=partner)
    net.logon(ALICE)
    net.logon(DAVE)
    _tid, actions = net.acmc[ALICE].add_users(net.clock.now, ("sip:mike@primary.example",),
                                              Addressee(DAVE))
    net.acmc_do(ALICE, actions)
    # accepted (200) and indicated, then answered not-authorised: authorisation at both ends
    assert net.report_kinds(ALICE) == [ReportKind.INDICATION, ReportKind.RESPONSE]
    assert net.results(ALICE) == [ResultCode.NOT_AUTHORISED]
    assert net.acms[PRIMARY].mappings() == ()


def test_flow_not_allowed_for_the_peer_gets_not_authorised() -> None:
    partner = partner_config(peers=(PeerSystem(PRIMARY, ("primary.example",),
                                               flows=("add-user-configuration-request",)),))
    net, mike = ready(partner=partner)
    update(net, Addressee(DAVE), mike)
    assert net.results(ALICE)[-1] == ResultCode.NOT_AUTHORISED


def test_target_who_may_not_decide_gets_not_authorised() -> None:
    net, mike = ready()
    update(net, Addressee("sip:nobody@partner.example"), mike)
    assert net.results(ALICE)[-1] == ResultCode.NOT_AUTHORISED


# --------------------------------------------------------------------------- step 4 verify


def test_unknown_migrated_user() -> None:
    net, _mike = ready()
    update(net, Addressee(DAVE), "sip:ghost-7@partner.example")
    assert net.results(ALICE)[-1] == ResultCode.UNKNOWN_USER
    assert net.received(DAVE, "profile-update-request") == []


def test_removed_user_gets_not_migrated_and_mapping_is_withdrawn_at_both_ends() -> None:
    net, mike = ready()
    _tid, actions = net.acmc[ALICE].remove_users(net.clock.now, ("sip:mike@primary.example",),
                                                 Addressee(DAVE))
    net.acmc_do(ALICE, actions)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    removal = net.reports[ALICE][-1].flow
    assert removal is not None and removal.users[0].partner_id == mike  # type: ignore[union-attr]
    for psi in (PRIMARY, PARTNER):
        assert all(m.removed for m in net.acms[psi].mappings())
    update(net, Addressee(DAVE), mike)
    assert net.results(ALICE)[-1] == ResultCode.NOT_MIGRATED


def test_add_assigns_ids_from_the_template_and_readding_reuses_them() -> None:
    net, mike = ready()
    assert mike == "sip:mike-1@partner.example"
    assert migrate(net, "sip:nina@primary.example") == "sip:nina-2@partner.example"
    assert migrate(net, "sip:mike@primary.example") == mike
    added = net.reports[ALICE][-1].flow
    assert added is not None and added.users[0].profile is not None  # type: ignore[union-attr]


# --------------------------------------------------------------------------- pending (10.17.3.1)


def test_partner_acmc_offline_pending_then_logon_notification_download_decide() -> None:
    net = two_systems()
    net.logon(ALICE)
    mike = migrate(net)
    tid = update(net, Addressee(DAVE), mike)
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.PENDING_USER
    assert [i.tx_key for i in net.acms[PARTNER].pending_for(DAVE)] != []
    net.logon(DAVE)
    assert len(net.received(DAVE, "pending-data-notification")) == 1
    download = net.received(DAVE, "pending-data-download-response")
    assert isinstance(download[0], PendingDataDownloadResponse)
    assert [f.transaction_id for f in download[0].items] == [tid]
    net.decide(DAVE, True)
    assert net.results(ALICE) == [ResultCode.SUCCESS, ResultCode.SUCCESS]
    assert net.acms[PARTNER].pending_for(DAVE) == ()  # decided -> left the queue


def test_primary_acmc_offline_for_the_answer_gets_it_on_logon_once() -> None:
    net, mike = ready()
    update(net, Addressee(DAVE), mike)
    net.logoff(ALICE)
    net.decide(DAVE, True)
    assert net.results(ALICE) == [ResultCode.SUCCESS]  # only the earlier add so far
    assert len(net.acms[PRIMARY].pending_for(ALICE)) == 1
    net.logon(ALICE)
    assert net.results(ALICE) == [ResultCode.SUCCESS, ResultCode.SUCCESS]
    # the response item left the queue when the download response was acknowledged
    assert net.acms[PRIMARY].pending_for(ALICE) == ()
    net.logoff(ALICE)
    net.logon(ALICE)
    assert len(net.received(ALICE, "pending-data-notification")) == 1


def test_failed_direct_delivery_falls_back_to_pending() -> None:
    net, mike = ready()
    net.online.discard(DAVE)  # registered, but the MESSAGE is not answered
    tid = update(net, Addressee(DAVE), mike)
    assert any(r.dst == DAVE and r.answer == OFFLINE for r in net.ladder)
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.PENDING_USER
    net.logon(DAVE)
    net.decide(DAVE, True)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS


def test_download_for_someone_else_is_refused() -> None:
    net, _ = ready()
    from mcacm_sip.acm.model import PendingDataDownloadRequest
    from mcacm_sip.core.events import FlowFromAcmc
    flow = PendingDataDownloadRequest(new_transaction_id(), ERIN)
    verdict = verdict_of(net.acms[PARTNER].handle(FlowFromAcmc(net.clock.now, DAVE, flow)))
    assert isinstance(verdict, RefuseMessage) and verdict.status == 403


# --------------------------------------------------------------------------- functional aliases


def test_fa_with_one_holder_delivers_to_that_acmc() -> None:
    net, mike = ready()
    net.set_holders(PARTNER, DUTY, (DAVE,))
    update(net, Addressee(functional_alias=DUTY), mike)
    assert DUTY in net.subscriptions[PARTNER]
    net.decide(DAVE, True)
    resp = net.reports[ALICE][-1].flow
    assert isinstance(resp, ProfileUpdateResponse)
    assert resp.result.positive and resp.handler == Party(DAVE, DUTY)


def test_fa_with_several_holders_policy_first_and_round_robin() -> None:
    for selection, expected in (("first", [DAVE, DAVE, DAVE]),
                                ("round-robin", [DAVE, ERIN, DAVE])):
        net, mike = ready(partner=partner_config(fa_selection=selection))
        net.logon(ERIN)
        net.set_holders(PARTNER, DUTY, (DAVE, ERIN))
        for _ in range(3):
            update(net, Addressee(functional_alias=DUTY), mike)
        got = [who for who, f in net.delivered if f.FLOW == "profile-update-request"
               and who in (DAVE, ERIN)]
        assert got == expected, selection


def test_fa_not_active_stores_then_delivers_on_activation() -> None:
    net, mike = ready()
    tid = update(net, Addressee(functional_alias=DUTY), mike)
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.PENDING_FA
    assert net.to_decide[DAVE] == []
    net.set_holders(PARTNER, DUTY, (DAVE,))  # NOTIFY: DAVE activated the FA
    assert [r.transaction_id for r in net.to_decide[DAVE]] == [tid]
    net.decide(DAVE, True)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS


def test_a_response_goes_to_the_user_who_sent_the_request_even_when_it_names_an_fa() -> None:
    """Step 9/10 routing follows the stored request (decision): ALICE asked under the FA
    DESK, the answer names DESK, it reaches ALICE -- not DESK's holders (here MALLORY)."""
    net, mike = ready()
    net.acmc[ALICE].config = replace(net.acmc[ALICE].config, functional_alias=DESK)
    net.logon(MALLORY)
    net.set_holders(PRIMARY, DESK, (MALLORY,))
    tid = update(net, Addressee(DAVE), mike)
    req = net.to_decide[DAVE].pop()
    answer = ProfileUpdateResponse(tid, Party(DAVE), Addressee(functional_alias=DESK),
                                   req.migrated_user_id,  # type: ignore[union-attr]
                                   Result(ResultCode.SUCCESS))
    net.acmc[DAVE]._to_decide.pop(tid)
    net.acmc_do(DAVE, [SendFlow("manual", Hop.ACMS, PARTNER, answer)])
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    assert net.received(MALLORY, "profile-update-response") == []
    assert DESK not in net.subscriptions[PRIMARY]


def test_a_response_naming_an_fa_the_requester_did_not_use_is_refused() -> None:
    net, mike = ready()
    tid = update(net, Addressee(DAVE), mike)
    req = net.to_decide[DAVE].pop()
    answer = ProfileUpdateResponse(tid, Party(DAVE), Addressee(functional_alias=DESK),
                                   req.migrated_user_id,  # type: ignore[union-attr]
                                   Result(ResultCode.SUCCESS))
    net.acmc[DAVE]._to_decide.pop(tid)
    net.acmc_do(DAVE, [SendFlow("manual", Hop.ACMS, PARTNER, answer)])
    assert net.ladder[-1].answer.startswith("400 wrong-response: target sip:desk@")
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.WITH_ACMC  # untouched


# --------------------------------------------------------------------------- timers


def test_no_decision_before_expiry_gives_expired_at_the_primary_acmc() -> None:
    net, mike = ready()
    tid = update(net, Addressee(DAVE), mike)
    net.advance(24 * 3600 - 1)
    assert net.results(ALICE) == [ResultCode.SUCCESS]
    net.advance(2)
    assert net.results(ALICE)[-1] == ResultCode.EXPIRED
    # a late decision is refused and the decider learns why
    net.decide(DAVE, True)
    late = net.reports[DAVE][-1]
    assert late.kind is ReportKind.FAILED and "already-answered" in (late.text or "")
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.response is not None
    assert tx.response.result.code == ResultCode.EXPIRED


def test_peer_unreachable_retries_with_backoff_then_expires() -> None:
    net, mike = ready()
    net.down.add(PARTNER)
    t0 = net.clock.now
    tid = update(net, Addressee(DAVE), mike)
    net.advance(600)
    times = [r.at - t0 for r in net.ladder
             if r.transaction_id == tid and r.dst == PARTNER]
    gaps = [b - a for a, b in pairwise(times)]
    assert gaps[:8] == [1, 2, 4, 8, 16, 32, 60, 60]
    net.advance(25 * 3600)
    assert net.results(ALICE)[-1] == ResultCode.EXPIRED
    assert net.acms[PRIMARY].get_timer() is not None  # only the retention timer is left
    attempts = forwarded(net, tid)
    net.advance(3600)
    assert forwarded(net, tid) == attempts  # retries stopped with the expiry


def test_peer_back_before_expiry_completes() -> None:
    net, mike = ready()
    net.down.add(PARTNER)
    tid = update(net, Addressee(DAVE), mike)
    net.advance(100)
    net.down.discard(PARTNER)
    net.advance(60)
    net.decide(DAVE, True)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    assert forwarded(net, tid) > 1
    assert len([r for r in net.reports[ALICE] if r.transaction_id == tid
                and r.kind is ReportKind.RESPONSE]) == 1


def test_primary_unreachable_for_the_response_is_retried() -> None:
    net, mike = ready()
    tid = update(net, Addressee(DAVE), mike)
    net.down.add(PRIMARY)
    net.decide(DAVE, True)
    net.advance(30)
    net.down.discard(PRIMARY)
    net.advance(60)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.DONE


def test_finished_transactions_are_pruned_after_retention() -> None:
    net, mike = ready()
    update(net, Addressee(DAVE), mike)
    net.decide(DAVE, True)
    net.advance(7 * 24 * 3600 + 1)
    assert net.acms[PRIMARY].transactions() == ()
    assert net.acms[PARTNER].transactions() == ()
    assert net.acms[PRIMARY].get_timer() is None


# --------------------------------------------------------------------------- duplicates


def test_duplicate_request_from_the_peer_is_not_processed_twice() -> None:
    net, mike = ready()
    tid = update(net, Addressee(DAVE), mike)
    req = net.received(DAVE, "profile-update-request")[0]
    before = len(net.ladder)
    partner = net.acms[PARTNER]
    actions = partner.handle(FlowFromPeer(net.clock.now, PRIMARY, req))
    assert isinstance(verdict_of(actions), AcceptMessage)
    # the process indication is re-sent, nothing is delivered again
    sends = [a for a in actions if isinstance(a, SendFlow)]
    assert [s.flow.FLOW for s in sends] == ["process-indication"]
    assert len(net.ladder) == before and len(net.to_decide[DAVE]) == 1
    assert len([t for t in partner.transactions() if t.transaction_id == tid]) == 1


def test_duplicate_request_from_the_acmc_is_not_forwarded_twice() -> None:
    net, mike = ready()
    tid = update(net, Addressee(DAVE), mike)
    original = next(f for who, f in net.delivered
                    if who == PRIMARY and f.transaction_id == tid)
    net.acmc_do(ALICE, [SendFlow("again", Hop.ACMS, PRIMARY, original)])
    assert forwarded(net, tid) == 1
    net.decide(DAVE, True)
    assert net.results(ALICE).count(ResultCode.SUCCESS) == 2  # add + this update, once


def test_duplicate_response_from_the_peer_is_delivered_once() -> None:
    net, mike = ready()
    update(net, Addressee(DAVE), mike)
    net.decide(DAVE, True)
    resp = next(f for who, f in net.delivered
                if who == PRIMARY and f.FLOW == "profile-update-response")
    actions = net.acms[PRIMARY].handle(FlowFromPeer(net.clock.now, PARTNER, resp))
    assert actions == [AcceptMessage()]


def test_same_transaction_id_from_two_peers_are_two_transactions() -> None:
    other = "sip:acms@third.example"
    partner = partner_config(peers=(*partner_config().peers, PeerSystem(other)))
    net, mike = ready(partner=partner)
    tid = update(net, Addressee(DAVE), mike)
    req = net.received(DAVE, "profile-update-request")[0]
    assert isinstance(req, ProfileUpdateRequest)
    actions = net.acms[PARTNER].handle(FlowFromPeer(net.clock.now, other, req))
    assert isinstance(verdict_of(actions), AcceptMessage)
    # the third system never got mike assigned: unknown-user for it, DAVE's copy unaffected
    sent = [a.flow for a in actions if isinstance(a, SendFlow) and a.to == other]
    assert [getattr(f, "result", None) for f in sent][-1] == Result(
        ResultCode.UNKNOWN_USER, f"{mike} was not assigned to {other}")
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.WITH_ACMC


def test_target_in_no_known_partner_system_gets_404() -> None:
    net, _ = ready(primary=replace(primary_config(), peers=(PeerSystem(PARTNER,
                                                                       ("partner.example",)),
                                                            PeerSystem("sip:acms@x.example"))))
    tid = update(net, Addressee("sip:zed@nowhere.example"), "sip:zed-1@nowhere.example")
    report = net.reports[ALICE][-1]
    assert report.kind is ReportKind.FAILED and (report.text or "").startswith(
        "404 no-partner-system")
    assert net.acms[PRIMARY].transaction(Role.PRIMARY, tid) is None


def test_acms_core_is_constructible_without_a_snapshot() -> None:
    core = AcmsCore(partner_config())
    assert core.get_timer() is None and core.transactions() == ()


# --------------------------------------------------------------------------- bad input


def test_every_class_of_bad_input_gets_a_defined_answer() -> None:
    from mcacm_sip.acm.model import (
        AddUserConfigurationResponse,
        PendingDataNotification,
        ProcessIndication,
    )
    from mcacm_sip.core.events import FlowFromAcmc

    net, mike = ready()
    tid = update(net, Addressee(DAVE), mike)
    now = net.clock.now
    primary, partner = net.acms[PRIMARY], net.acms[PARTNER]
    good = ProfileUpdateResponse(tid, Party(DAVE), Addressee(ALICE), mike,
                                 Result(ResultCode.SUCCESS))

    def status(core: AcmsCore, event: object) -> tuple[int, str]:
        v = verdict_of(core.handle(event))  # type: ignore[arg-type]
        assert isinstance(v, RefuseMessage), v
        return v.status, v.warning.split(":")[0]

    pi = ProcessIndication(tid, PRIMARY, ProfileUpdateRequest.FLOW)
    assert status(primary, FlowFromAcmc(now, ALICE, pi)) == (400, "unexpected-flow")
    assert status(primary, FlowFromPeer(now, PARTNER, PendingDataNotification("n", ALICE))) \
        == (400, "unexpected-flow")
    assert status(primary, FlowFromPeer(now, PARTNER, replace(good, transaction_id="nope"))) \
        == (404, "unknown-transaction")
    wrong_type = AddUserConfigurationResponse(tid, Party(DAVE), Addressee(ALICE),
                                              Result(ResultCode.SUCCESS))
    assert status(primary, FlowFromPeer(now, PARTNER, wrong_type)) == (400, "wrong-response")
    assert status(partner, FlowFromAcmc(now, MALLORY, good)) == (403, "not-authorised")
    assert status(partner, FlowFromAcmc(now, ERIN, good)) == (403, "not-authorised")
    assert status(partner, FlowFromAcmc(now, DAVE, replace(good, migrated_user_id=
                                                           "sip:other-1@partner.example"))) \
        == (400, "wrong-response")
    # nothing of that changed the transaction: DAVE can still decide it
    net.decide(DAVE, True)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
