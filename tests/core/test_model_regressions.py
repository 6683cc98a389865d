"""Failures the model-based test (tests/core/test_model.py) found, each kept as a plain test of
the shrunk example.  They failed on main before issue 12 (D1-D5, docs/decisions.md "Identity and
authority"), but the wrong-peer one, which held already and is kept as the guard of its rule;
the model's name for each request is the ``req-N`` in its profile."""

from __future__ import annotations

from dataclasses import replace

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    Party,
    ProfileUpdateRequest,
    Result,
    ResultCode,
)
from mcacm_sip.core.events import AcceptMessage, RefuseMessage, ReportKind, SendFlow
from mcacm_sip.core.state import Hop, response_to

from .harness import (
    ALICE,
    ALICE2,
    BOB,
    DAVE,
    ERIN,
    PARTNER,
    PRIMARY,
    SECOND,
    STRANGER,
    Answer,
    Net,
    three_systems,
)
from .test_model import TIMERS, _profile


def _net() -> tuple[Net, dict[str, str]]:
    net = three_systems(TIMERS)
    for user in (ALICE, BOB, ALICE2, DAVE, ERIN):
        net.logon(user)
    migrants = {psi: next(m.partner_id for m in net.acms[psi].mappings())
                for psi in (PRIMARY, SECOND)}
    return net, migrants


def _update(net: Net, user: str, tid: str, to: Addressee, migrant: str, name: str
            ) -> AcceptMessage | RefuseMessage | None:
    request = ProfileUpdateRequest(tid, net.acmc[user].me, to, migrant,
                                   profile_from_xml(_profile(name)))
    actions = net.acmc[user].send_request(request, net.clock.now)
    net.acmc_do(user, actions)
    return net.verdict(next(a for a in actions if isinstance(a, SendFlow)).send_id)


def _results(net: Net, user: str, tid: str) -> list[AcmResponse]:
    """The Results ``user`` was shown for its request ``tid``."""
    return [r.flow for r in net.reports[user] if r.kind is ReportKind.RESPONSE
            and isinstance(r.flow, AcmResponse) and r.transaction_id == tid]


def test_one_id_from_two_primaries_each_decision_answers_its_own_request() -> None:
    """D1/D2: PRIMARY's and SECOND's "t1" both wait for DAVE; each decision reaches the
    requester of the request it decided (on main the second one was refused wrong-response,
    being matched to the other system's t1)."""
    net, migrants = _net()
    assert isinstance(_update(net, ALICE, "t1", Addressee(DAVE), migrants[PRIMARY], "req-1"),
                      AcceptMessage)
    assert isinstance(_update(net, ALICE2, "t1", Addressee(DAVE), migrants[SECOND], "req-2"),
                      AcceptMessage)
    asked = net.to_decide[DAVE]
    assert [r.requester.mc_service_id for r in asked] == [ALICE, ALICE2]
    assert len({r.transaction_id for r in asked}) == 2  # one leg id per transaction (D2)
    for request in list(asked):
        net.decide(DAVE, True, f"decided {request.requester.mc_service_id}")
    for user, migrant in ((ALICE, migrants[PRIMARY]), (ALICE2, migrants[SECOND])):
        [result] = _results(net, user, "t1")  # the requester sees its own id
        assert result.result.text == f"decided {user}"
        assert getattr(result, "migrated_user_id", None) == migrant


def test_a_late_answer_with_another_target_is_refused_even_when_done() -> None:
    """D3: the partner's answer to ALICE's (finished) add-user request, naming BOB as target,
    is refused 400 and nobody hears of it (on main: 200, "late or duplicate response")."""
    net, _ = _net()
    forwarded = next(w.flow for w in net.wire
                     if w.hop is Hop.PEER and isinstance(w.flow, AddUserConfigurationRequest)
                     and w.src == PRIMARY)
    forged = response_to(forwarded, Party(PARTNER), Result(ResultCode.SUCCESS, "FORGED"))
    assert isinstance(forged, AddUserConfigurationResponse)
    before = set(net.acms[PRIMARY].transactions())
    verdict = net.inject(PARTNER, Hop.PEER, PRIMARY,
                         AddUserConfigurationResponse(forged.transaction_id, forged.handler,
                                                      Addressee(BOB), forged.result))
    assert isinstance(verdict, RefuseMessage) and verdict.status == 400, verdict
    assert verdict.warning.startswith("wrong-response"), verdict
    assert set(net.acms[PRIMARY].transactions()) == before
    assert [r for r in net.reports[BOB] if r.kind is ReportKind.RESPONSE] == []


def test_an_answer_from_the_wrong_peer_does_not_end_the_transaction() -> None:
    """D3: SECOND (a configured peer of PRIMARY) answers ALICE's request that went to PARTNER:
    403; the partner's own answer later is the one ALICE gets."""
    net, migrants = _net()
    _update(net, ALICE, "t2", Addressee(DAVE), migrants[PRIMARY], "req-1")
    [forwarded] = [w.flow for w in net.wire if w.hop is Hop.PEER and w.src == PRIMARY
                   and isinstance(w.flow, ProfileUpdateRequest)]
    forged = response_to(forwarded, Party(SECOND), Result(ResultCode.SUCCESS, "FORGED"))
    verdict = net.inject(SECOND, Hop.PEER, PRIMARY, forged)
    assert isinstance(verdict, RefuseMessage) and verdict.status == 403, verdict
    net.decide(DAVE, False, "decided req-1")
    [result] = _results(net, ALICE, "t2")
    assert (result.result.code, result.result.text) == (ResultCode.REJECTED_BY_USER,
                                                        "decided req-1")


def test_a_decision_for_an_id_nobody_uses_is_403_for_anyone() -> None:
    """D4: a decision from a user who was not asked gets 403 whether or not the id exists, as a
    stranger's does (on main: 404 unknown-transaction, which tells that the id is free)."""
    net, migrants = _net()
    _update(net, ALICE, "t3", Addressee(DAVE), migrants[PRIMARY], "req-1")
    [request] = net.to_decide[DAVE]
    for sender, tid in ((ERIN, request.transaction_id), (ERIN, "no-such-id"),
                        (STRANGER, request.transaction_id), (STRANGER, "no-such-id")):
        decision = replace(response_to(request, Party(sender),
                                       Result(ResultCode.SUCCESS, "WRONG")), transaction_id=tid)
        verdict = net.inject(sender, Hop.ACMS, PARTNER, decision)
        assert isinstance(verdict, RefuseMessage) and verdict.status == 403, (sender, tid, verdict)
    net.decide(DAVE, True, "decided req-1")
    assert [r.result.text for r in _results(net, ALICE, "t3")] == ["decided req-1"]


def test_our_own_acmcs_may_use_the_same_id_at_the_same_time() -> None:
    """D1: DAVE's and ERIN's requests "t3" to a primary system are two transactions at their
    ACMS (on main ERIN's was refused 400 duplicate-transaction-id), and an exact repeat of
    either is idempotent."""
    net, _ = _net()
    sent = []
    for user, name in ((ERIN, "req-1"), (DAVE, "req-2")):
        request = AddUserConfigurationRequest("t3", net.acmc[user].me,
                                              (f"sip:{name}@partner.example",), Addressee(BOB))
        actions = net.acmc[user].send_request(request, net.clock.now)
        net.acmc_do(user, actions)
        assert isinstance(net.verdict(next(a for a in actions if isinstance(a, SendFlow)).send_id),
                          AcceptMessage), user
        sent.append((user, request))
    for user, request in sent:
        assert isinstance(net.inject(user, Hop.ACMS, PARTNER, request), AcceptMessage), user
    for user, _request in sent:  # BOB may not decide: each is answered not-authorised at once
        assert len(_results(net, user, "t3")) == 1, user


def test_a_result_whose_page_a_busy_acmc_refused_reaches_it_without_a_new_logon() -> None:
    """The model's busy rule (stop 25): ALICE, logged on, refuses her Result (480) and then
    the page that carries it.  Her ACMC does not ask for a page again, so the ACMS must tell
    her again; on main the Result waited for her next logon, which never came."""
    net, migrants = _net()
    net.scripted[ALICE] = [Answer(480, flows=("profile-update-response",)),
                           Answer(480, flows=("pending-data-download-response",))]
    assert isinstance(_update(net, ALICE, "t1", Addressee(DAVE), migrants[PRIMARY], "req-1"),
                      AcceptMessage)
    net.decide(DAVE, True, "decided req-1")
    assert net.scripted[ALICE] == []  # the Result and its page were refused
    net.advance(TIMERS.answer_timeout)  # no logon: only the ACMS's own timers
    assert [r.result.text for r in _results(net, ALICE, "t1")] == ["decided req-1"]
