"""Group-related ACM (TS 23.280 10.17.4) on the sans-I/O cores with a fake clock: the group
membership update and the interconnection group identity provision through every branch of the
generic ACM pattern, as the 10.17.7.2 tests do (docs/decisions.md "Group-related ACM")."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mcacm_sip.acm.model import (
    Addressee,
    GroupMembershipUpdateRequest,
    GroupMembershipUpdateResponse,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    InterconnectionGroupProvisionResponse,
    Party,
    PendingDataDownloadResponse,
    Result,
    ResultCode,
    Urgency,
)
from mcacm_sip.core.config import AuthorisedUser, PeerSystem, Timers
from mcacm_sip.core.events import (
    AcceptMessage,
    FlowFromAcmc,
    FlowFromPeer,
    RefuseMessage,
    ReportKind,
)
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.policy import PolicyAction, PolicyRule
from mcacm_sip.core.state import Hop, Role, TxState
from mcacm_sip.store import SqliteStore

from .harness import (
    ALICE,
    ALL_REQUESTS,
    DAVE,
    DUTY,
    ERIN,
    MALLORY,
    PARTNER,
    PRIMARY,
    Net,
    partner_config,
    primary_config,
    two_systems,
)

GROUP = "sip:grp-interop-1@primary.example"
OTHER_GROUP = "sip:grp-secret@primary.example"
GMU = GroupMembershipUpdateRequest.FLOW
IGP = InterconnectionGroupProvisionRequest.FLOW
P1, P2 = "sip:p1@partner.example", "sip:p2@partner.example"


def gmu(net: Net, target: Addressee, users: tuple[str, ...] = (P1, P2),
        operation: GroupOperation = GroupOperation.ADD, group: str = GROUP,
        urgency: Urgency | None = None, requester: str = ALICE) -> str:
    """10.17.4 step 1 from ``requester``'s ACMC; returns the transaction id."""
    tid, actions = net.acmc[requester].group_membership_update(
        net.clock.now, target=target, group_id=group, users=users, operation=operation,
        urgency=urgency)
    net.acmc_do(requester, actions)
    return tid


def provide(net: Net, target: Addressee, groups: tuple[str, ...] = (GROUP,)) -> str:
    """10.17.4.2.2 step 1 from ALICE's ACMC; returns the transaction id."""
    tid, actions = net.acmc[ALICE].provide_groups(net.clock.now, target=target, groups=groups)
    net.acmc_do(ALICE, actions)
    return tid


def applied(net: Net, group: str = GROUP) -> PartnerGroup | None:
    return next((g for g in net.acms[PARTNER].groups() if g.group_id == group), None)


def kept(net: Net, group: str = GROUP) -> PartnerGroup:
    found = applied(net, group)
    assert found is not None, f"the partner applied nothing for {group}"
    return found


def online(**kwargs: object) -> Net:
    net = two_systems(**kwargs)  # type: ignore[arg-type]
    net.logon(ALICE)
    net.logon(DAVE)
    return net


# --------------------------------------------------------------------------- automatic


def test_group_update_approved_automatically_by_a_rule_per_group_and_operation() -> None:
    policy = (PolicyRule(PolicyAction.APPROVE, GMU, group="sip:grp-interop-*@primary.example",
                         operation="add", reason="interop groups are open"),)
    net = online(partner=partner_config(policy=policy))
    tid = gmu(net, Addressee(DAVE))
    # step 4: process indication, then 10.17.3.2: the partner ACMS answers itself (no ACMC)
    assert net.report_kinds(ALICE) == [ReportKind.INDICATION, ReportKind.RESPONSE]
    assert net.asked == []
    resp = net.reports[ALICE][-1].flow
    assert isinstance(resp, GroupMembershipUpdateResponse)
    assert resp.transaction_id == tid and resp.result.code == ResultCode.SUCCESS
    assert (resp.group_id, resp.operation, resp.users) == (GROUP, "add", (P1, P2))
    assert resp.handler == Party(PARTNER) and resp.target.mc_service_id == ALICE
    group = applied(net)
    assert group is not None and group.members == (P1, P2) and not group.provisioned
    # a delete is not covered by the rule: manual, DAVE decides
    tid2 = gmu(net, Addressee(DAVE), (P1,), GroupOperation.DELETE)
    assert [r.transaction_id for r in net.to_decide[DAVE]] == [tid2]
    net.decide(DAVE, True)
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    assert kept(net).members == (P2,)


def test_policy_by_urgency_and_a_request_without_urgency_counts_as_normal() -> None:
    policy = (PolicyRule(PolicyAction.APPROVE, GMU, urgency="high"),
              PolicyRule(PolicyAction.REJECT, GMU, urgency="normal", reason="ask on a weekday"))
    net = online(partner=partner_config(policy=policy))
    gmu(net, Addressee(DAVE), urgency=Urgency.HIGH)
    assert net.results(ALICE) == [ResultCode.SUCCESS]
    gmu(net, Addressee(DAVE), (P2,), GroupOperation.DELETE)  # no urgency: normal
    assert net.results(ALICE)[-1] == ResultCode.REJECTED_BY_POLICY
    assert kept(net).members == (P1, P2)  # rejected: unchanged


# --------------------------------------------------------------------------- partner ACMC


def test_group_update_decided_by_the_partner_acmc_shows_it_and_applies_only_success() -> None:
    net = online()
    tid = gmu(net, Addressee(DAVE), urgency=Urgency.LOW)
    asked = net.to_decide[DAVE]
    assert [r.transaction_id for r in asked] == [tid]
    assert isinstance(asked[0], GroupMembershipUpdateRequest)
    assert (asked[0].group_id, asked[0].users, asked[0].urgency) == (GROUP, (P1, P2), "low")
    net.decide(DAVE, False, "not in this exercise")
    assert net.results(ALICE) == [ResultCode.REJECTED_BY_USER]
    assert applied(net) is None  # a rejection applies nothing
    gmu(net, Addressee(DAVE))
    net.decide(DAVE, True, "welcome")
    assert net.results(ALICE)[-1] == ResultCode.SUCCESS
    resp = net.reports[ALICE][-1].flow
    assert isinstance(resp, GroupMembershipUpdateResponse) and resp.handler == Party(DAVE)
    assert kept(net).members == (P1, P2)


def test_provision_via_a_functional_alias_with_one_holder() -> None:
    net = online(partner=partner_config(functional_aliases=(DUTY,)))
    net.logon(ERIN)
    net.set_holders(PARTNER, DUTY, (ERIN,))
    tid = provide(net, Addressee(functional_alias=DUTY),
                  (GROUP, "sip:grp-interop-2@primary.example"))
    assert [r.transaction_id for r in net.to_decide[ERIN]] == [tid]
    net.decide(ERIN, True)
    resp = net.reports[ALICE][-1].flow
    assert isinstance(resp, InterconnectionGroupProvisionResponse)
    assert resp.result.code == ResultCode.SUCCESS and resp.handler == Party(ERIN, DUTY)
    assert {g.group_id for g in net.acms[PARTNER].groups() if g.provisioned} == {
        GROUP, "sip:grp-interop-2@primary.example"}


def test_provision_to_an_fa_nobody_holds_waits_then_goes_to_the_new_holder() -> None:
    net = online(partner=partner_config(functional_aliases=(DUTY,)))
    net.set_holders(PARTNER, DUTY, ())
    tid = provide(net, Addressee(functional_alias=DUTY))
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.PENDING_FA
    net.logon(ERIN)
    net.set_holders(PARTNER, DUTY, (ERIN,))
    net.decide(ERIN, True)
    assert net.results(ALICE) == [ResultCode.SUCCESS]
    assert kept(net).provisioned


def test_partner_acmc_offline_gets_the_group_update_by_pending_download() -> None:
    net = two_systems()
    net.logon(ALICE)
    tid = gmu(net, Addressee(DAVE))
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.PENDING_USER  # 10.17.3.1
    net.logon(DAVE)
    download = net.received(DAVE, "pending-data-download-response")
    assert isinstance(download[0], PendingDataDownloadResponse)
    assert [type(f) for f in download[0].items] == [GroupMembershipUpdateRequest]
    net.decide(DAVE, True)
    assert net.results(ALICE) == [ResultCode.SUCCESS]


def test_primary_acmc_offline_for_the_answer_gets_it_on_logon() -> None:
    net = online()
    provide(net, Addressee(DAVE))
    net.logoff(ALICE)
    net.decide(DAVE, True)
    assert net.results(ALICE) == []
    assert len(net.acms[PRIMARY].pending_for(ALICE)) == 1  # step 9: pending at the primary
    net.logon(ALICE)
    assert net.results(ALICE) == [ResultCode.SUCCESS]


def test_no_decision_expires_with_the_fake_clock_and_applies_nothing() -> None:
    timers = Timers(decision_timeout=600.0, answer_grace=60.0)
    net = online(primary=primary_config(timers=timers), partner=partner_config(timers=timers))
    gmu(net, Addressee(DAVE))
    net.advance(599.0)
    assert net.results(ALICE) == []
    net.advance(2.0)
    assert net.results(ALICE) == [ResultCode.EXPIRED]
    assert applied(net) is None
    assert net.to_decide[DAVE]  # DAVE still has it on screen; deciding now is too late
    net.decide(DAVE, True)
    assert net.results(ALICE) == [ResultCode.EXPIRED] and applied(net) is None


# --------------------------------------------------------------------------- authorisation


def test_primary_authorises_per_group_and_stops_on_failure() -> None:
    """10.17.4.2.2 step 2: not authorised for the group -> 403, nothing stored or sent."""
    users = (AuthorisedUser(ALICE, ALL_REQUESTS, ALL_REQUESTS,
                            groups=("sip:grp-interop-*@primary.example",)),
             AuthorisedUser(MALLORY))
    net = online(primary=primary_config(users=users))
    sent_before = len(net.wire)
    provide(net, Addressee(DAVE), (GROUP, OTHER_GROUP))
    report = net.reports[ALICE][-1]
    assert report.kind is ReportKind.FAILED and "403" in (report.text or "")
    assert OTHER_GROUP in (report.text or "")
    assert net.acms[PRIMARY].transactions() == ()
    assert all(w.hop is Hop.ACMS for w in net.wire[sent_before:])  # nothing left the primary
    gmu(net, Addressee(DAVE), group=GROUP)  # the allowed group goes through
    assert [r.transaction_id for r in net.to_decide[DAVE]] != []


def test_partner_refuses_a_group_the_peer_is_not_home_of() -> None:
    """Authorisation at both ends: peers[].groups; Result not-authorised, nothing applied."""
    peers = (PeerSystem(PRIMARY, ("primary.example",), groups=("sip:*@primary.example",)),)
    net = online(partner=partner_config(peers=peers))
    gmu(net, Addressee(DAVE), group="sip:grp-x@elsewhere.example")
    assert net.results(ALICE) == [ResultCode.NOT_AUTHORISED]
    assert net.asked == [] and net.acms[PARTNER].groups() == ()
    gmu(net, Addressee(DAVE))  # its own group: DAVE decides
    assert len(net.to_decide[DAVE]) == 1


def test_a_target_not_allowed_to_decide_the_group_gets_not_authorised() -> None:
    users = (AuthorisedUser(DAVE, (), ALL_REQUESTS, groups=("sip:grp-ops-*@primary.example",)),
             AuthorisedUser(ERIN, (), ALL_REQUESTS))
    net = online(partner=partner_config(users=users))
    gmu(net, Addressee(DAVE))
    assert net.results(ALICE) == [ResultCode.NOT_AUTHORISED]
    assert net.asked == []


def test_fa_holders_not_allowed_the_group_are_skipped() -> None:
    users = (AuthorisedUser(DAVE, (), ALL_REQUESTS, groups=("sip:grp-ops-*@primary.example",)),
             AuthorisedUser(ERIN, (), ALL_REQUESTS))
    net = online(partner=partner_config(users=users, functional_aliases=(DUTY,)))
    net.logon(ERIN)
    net.set_holders(PARTNER, DUTY, (DAVE, ERIN))  # DAVE first, but not allowed GROUP
    tid = gmu(net, Addressee(functional_alias=DUTY))
    assert net.to_decide[DAVE] == [] and [r.transaction_id for r in net.to_decide[ERIN]] == [tid]


# --------------------------------------------------------------------------- integrity


def test_a_response_for_another_group_is_refused_and_the_right_one_still_taken() -> None:
    net = online()
    tid = gmu(net, Addressee(DAVE))
    primary = net.acms[PRIMARY]
    good = GroupMembershipUpdateResponse(tid, Party(DAVE), Addressee(ALICE), GROUP,
                                         GroupOperation.ADD, (P2, P1), Result("success"))
    for forged in (replace(good, group_id=OTHER_GROUP),
                   replace(good, operation=GroupOperation.DELETE),
                   replace(good, users=(P1,))):
        v = net.inject(PARTNER, Hop.PEER, PRIMARY, forged)
        assert isinstance(v, RefuseMessage) and v.status == 400, forged
        assert v.warning.startswith("wrong-response:")
    tx = primary.transaction(Role.PRIMARY, tid, ALICE)
    assert tx is not None and tx.state is TxState.INDICATED and net.results(ALICE) == []
    # the user list in another order and spelling is the same answer (D3 compares as URIs)
    assert net.inject(PARTNER, Hop.PEER, PRIMARY,
                      replace(good, users=(P2, "sip:p1@PARTNER.example"))) == AcceptMessage()
    assert net.results(ALICE) == [ResultCode.SUCCESS]


def test_a_decision_from_the_partner_acmc_for_other_users_is_refused() -> None:
    net = online()
    tid = gmu(net, Addressee(DAVE))
    forged = GroupMembershipUpdateResponse(tid, Party(DAVE), Addressee(ALICE), GROUP,
                                           GroupOperation.ADD, (P1, "sip:evil@partner.example"),
                                           Result("success"))
    v = net.inject(DAVE, Hop.ACMS, PARTNER, forged)
    assert isinstance(v, RefuseMessage) and v.status == 400
    assert applied(net) is None
    net.decide(DAVE, True)
    assert kept(net).members == (P1, P2)


def test_a_repeat_is_idempotent_and_another_body_under_the_id_is_refused() -> None:
    net = online()
    tid = gmu(net, Addressee(DAVE))
    req = net.received(DAVE, GMU)[0]
    assert isinstance(req, GroupMembershipUpdateRequest)
    original = GroupMembershipUpdateRequest(tid, Party(ALICE), Addressee(DAVE), GROUP,
                                            (P1, P2), GroupOperation.ADD)
    now = net.clock.now
    forwarded = [w for w in net.wire if w.hop is Hop.PEER and w.flow.FLOW == GMU]
    assert AcceptMessage() in net.acms[PRIMARY].handle(FlowFromAcmc(now, ALICE, original))
    net.run()
    assert [w for w in net.wire if w.hop is Hop.PEER and w.flow.FLOW == GMU] == forwarded
    other = replace(original, operation=GroupOperation.DELETE)
    actions = net.acms[PARTNER].handle(FlowFromPeer(now, PRIMARY, other))
    refusal = [a for a in actions if isinstance(a, RefuseMessage)]
    assert refusal and refusal[0].status == 400
    assert refusal[0].warning.startswith("transaction-id-reused")
    assert len(net.to_decide[DAVE]) == 1


# --------------------------------------------------------------------------- restart


def test_what_the_partner_applied_survives_a_restart(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "partner.sqlite"))
    policy = (PolicyRule(PolicyAction.APPROVE, IGP), PolicyRule(PolicyAction.APPROVE, GMU))
    net = online(partner=partner_config(policy=policy), partner_store=store)
    provide(net, Addressee(DAVE))
    gmu(net, Addressee(DAVE))
    before = net.acms[PARTNER].groups()
    net.restart(PARTNER)
    assert net.acms[PARTNER].groups() == before
    assert before[0].provisioned and before[0].members == (P1, P2)
    gmu(net, Addressee(DAVE), (P1,), GroupOperation.DELETE)
    assert kept(net).members == (P2,) and kept(net).provisioned
