"""The ACMC core on its own: correlation, its own timeout, failures, downloads."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationResponse,
    Party,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    PendingDataNotification,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    Result,
    ResultCode,
)
from mcacm_sip.core import acmc as acmc_module
from mcacm_sip.core.acmc import AcmcCore
from mcacm_sip.core.config import AcmcConfig
from mcacm_sip.core.events import (
    AcceptMessage,
    Decide,
    DeliveryOutcome,
    Failure,
    FlowFromAcms,
    RefuseMessage,
    ReportKind,
    ReportToUser,
    SendFlow,
    TimerTick,
)

from .harness import UPDATED_XML

ME = "sip:dave@partner.example"
ACMS = "sip:acms@partner.example"
PROFILE = profile_from_xml(UPDATED_XML)


def acmc() -> AcmcCore:
    return AcmcCore(AcmcConfig(ME, ACMS, request_timeout=100.0))


def incoming(tid: str = "t-1") -> ProfileUpdateRequest:
    return ProfileUpdateRequest(tid, Party("sip:alice@primary.example"), Addressee(ME),
                                "sip:mike-1@partner.example", PROFILE)


def test_request_gets_indication_then_response_once() -> None:
    core = acmc()
    tid, actions = core.profile_update(0.0, target=Addressee("sip:x@primary.example"),
                                       migrated_user_id="sip:m-1@primary.example",
                                       profile=PROFILE)
    [send] = actions
    assert isinstance(send, SendFlow) and send.to == ACMS and send.flow.transaction_id == tid
    pi = ProcessIndication(tid, "sip:acms@primary.example", ProfileUpdateRequest.FLOW)
    assert core.handle(FlowFromAcms(1.0, pi)) == [
        AcceptMessage(), ReportToUser(tid, ReportKind.INDICATION, pi)]
    resp = ProfileUpdateResponse(tid, Party("sip:x@primary.example"), Addressee(ME),
                                 "sip:m-1@primary.example", Result(ResultCode.SUCCESS))
    assert core.handle(FlowFromAcms(2.0, resp))[1] == ReportToUser(tid, ReportKind.RESPONSE, resp)
    assert core.handle(FlowFromAcms(3.0, resp)) == [AcceptMessage()]  # a copy: nothing new
    assert core.get_timer() is None


def test_own_timeout_and_refused_request() -> None:
    core = acmc()
    tid, _ = core.add_users(0.0, ("sip:m@partner.example",))
    assert core.get_timer() == 100.0
    assert core.handle(TimerTick(100.0)) == [ReportToUser(tid, ReportKind.TIMEOUT,
                                                    text="no answer before the ACMC's own timer")]
    tid2, [send] = core.remove_users(200.0, ("sip:m@partner.example",))
    assert isinstance(send, SendFlow)
    reason = "403 not-authorised: sip:dave@partner.example may not send it"
    assert core.handle(DeliveryOutcome(201.0, send.send_id, False, reason, 403,
                                       failure=Failure.REFUSED)) == [
        ReportToUser(tid2, ReportKind.FAILED, text=reason)]
    assert core.open_requests == ()


def test_decide_builds_the_response_and_refuses_unknown_ids() -> None:
    core = acmc()
    req = incoming()
    assert core.handle(FlowFromAcms(0.0, req)) == [AcceptMessage(), Decide(req)]
    assert core.handle(FlowFromAcms(0.0, req)) == [AcceptMessage()]  # already asked
    [send] = core.decide("t-1", False, "no", 1.0)
    assert isinstance(send, SendFlow)
    assert send.flow == ProfileUpdateResponse("t-1", Party(ME), Addressee(
        "sip:alice@primary.example"), "sip:mike-1@partner.example",
        Result(ResultCode.REJECTED_BY_USER, "no"))
    with pytest.raises(KeyError):
        core.decide("t-1", True, None, 2.0)


def test_notification_download_and_items() -> None:
    core = acmc()
    actions = core.handle(FlowFromAcms(0.0, PendingDataNotification("n-1", ME)))
    assert actions[0] == AcceptMessage()
    assert isinstance(actions[1], SendFlow)
    assert isinstance(actions[1].flow, PendingDataDownloadRequest)
    other = core.handle(FlowFromAcms(0.0, PendingDataNotification("n-2", "sip:x@y.example")))
    assert isinstance(other[0], RefuseMessage) and other[0].status == 404
    # one fresh request and one already decided (our answer was lost): re-sent, not re-asked
    core.handle(FlowFromAcms(0.0, incoming("t-old")))
    core.decide("t-old", True, None, 0.5)
    dl = PendingDataDownloadResponse("d-1", ME, (incoming("t-new"), incoming("t-old")))
    actions = core.handle(FlowFromAcms(1.0, dl))
    assert actions[0] == AcceptMessage()
    assert actions[1] == Decide(incoming("t-new"))
    assert isinstance(actions[2], SendFlow) and actions[2].flow.transaction_id == "t-old"


def _downloads(actions: Sequence[object]) -> list[SendFlow]:
    return [a for a in actions
            if isinstance(a, SendFlow) and isinstance(a.flow, PendingDataDownloadRequest)]


def _notified(core: AcmcCore, now: float = 0.0) -> SendFlow:
    [dl] = _downloads(core.handle(FlowFromAcms(now, PendingDataNotification("n-1", ME))))
    return dl


def _busy(send: SendFlow, now: float, retry_after: float | None = None) -> DeliveryOutcome:
    return DeliveryOutcome(now, send.send_id, False, "503 store unavailable", status=503,
                           retry_after=retry_after, failure=Failure.REFUSED)


def test_a_download_refused_for_now_is_asked_for_again_after_the_back_off() -> None:
    # the ACMS's store was away (503): the items are still there, the ACMC asks again
    core = acmc()
    first = _notified(core)
    assert core.handle(_busy(first, 1.0)) == []
    assert core.get_timer() == 2.0  # back-off 1 s after the first attempt
    assert core.handle(TimerTick(1.5)) == []
    [second] = _downloads(core.handle(TimerTick(2.0)))
    assert second.flow.transaction_id != first.flow.transaction_id  # a new download request
    core.handle(_busy(second, 2.5, retry_after=30.0))
    assert core.get_timer() == 32.5  # the ACMS's Retry-After is longer than the back-off (2 s)
    [third] = _downloads(core.handle(TimerTick(32.5)))
    core.handle(DeliveryOutcome(33.0, third.send_id, True))
    core.handle(FlowFromAcms(33.1, PendingDataDownloadResponse("d-1", ME, ())))
    assert core.get_timer() is None  # done: nothing more to ask


def test_a_failed_download_is_asked_for_at_most_download_attempts_times() -> None:
    core = acmc()
    send, now, sent = _notified(core), 0.0, 1
    while True:
        now += 1.0
        core.handle(DeliveryOutcome(now, send.send_id, False, "timeout",
                                    failure=Failure.TIMEOUT))
        at = core.get_timer()
        if at is None:
            break
        [send] = _downloads(core.handle(TimerTick(at)))
        now, sent = at, sent + 1
    assert sent == acmc_module.REPEAT_ATTEMPTS


@pytest.mark.parametrize("status", [403, 404, 400])
def test_a_download_refused_for_good_is_not_asked_for_again(status: int) -> None:
    core = acmc()
    first = _notified(core)
    core.handle(DeliveryOutcome(1.0, first.send_id, False, f"{status}", status=status,
                                failure=Failure.REFUSED))
    assert core.get_timer() is None


def test_only_the_latest_download_is_retried() -> None:
    # a second notification started a new download: the first one's failure changes nothing,
    # and the answer to the new one ends a retry that was due
    core = acmc()
    first = _notified(core)
    second = _notified(core, 0.5)
    core.handle(_busy(first, 1.0))
    assert core.get_timer() is None
    core.handle(_busy(second, 1.0))
    assert core.get_timer() == 2.0
    core.handle(FlowFromAcms(1.5, PendingDataDownloadResponse("d-1", ME, ())))
    assert core.get_timer() is None


def _notified_by(core: AcmcCore, worker_cid: str, now: float = 0.0) -> SendFlow:
    [dl] = _downloads(core.handle(FlowFromAcms(now, PendingDataNotification(
        f"n-{worker_cid}", ME), worker_cid)))
    return dl


def test_downloads_towards_two_workers_are_each_retried_with_their_x_cid() -> None:
    # a scaled-out ACMS: two workers hold items for us and each notifies with its own X-CID
    # (docs/scale-out.md); the first download failing is not superseded by the second one,
    # and each retry goes with the X-CID of the notification it follows, so the dispatcher
    # sends it to the worker holding those items (found by CI: a Result refused with 480 at
    # one worker waited there while another worker's download was the only one retried)
    core = acmc()
    first, second = _notified_by(core, "cid-a"), _notified_by(core, "cid-b", 0.1)
    assert (first.procedure, second.procedure) == ("cid-a", "cid-b")
    core.handle(_busy(first, 1.0))
    core.handle(_busy(second, 1.2))
    assert core.get_timer() == 2.0
    [again_a] = _downloads(core.handle(TimerTick(2.0)))
    assert again_a.procedure == "cid-a" and core.get_timer() == 2.2
    [again_b] = _downloads(core.handle(TimerTick(2.2)))
    assert again_b.procedure == "cid-b"
    # the 200s end both: nothing more to ask
    core.handle(DeliveryOutcome(2.5, again_a.send_id, True))
    core.handle(DeliveryOutcome(2.5, again_b.send_id, True))
    assert core.get_timer() is None


def test_the_next_page_goes_with_the_x_cid_of_the_page_before() -> None:
    core = acmc()
    first = _notified_by(core, "cid-a")
    core.handle(DeliveryOutcome(0.5, first.send_id, True))
    page = PendingDataDownloadResponse("d-1", ME, (incoming("t-1"),), more=True)
    [next_page] = _downloads(core.handle(FlowFromAcms(1.0, page, "cid-a")))
    assert next_page.procedure == "cid-a"
    core.handle(_busy(next_page, 1.5))
    [again] = _downloads(core.handle(TimerTick(2.5)))
    assert again.procedure == "cid-a"


def test_a_download_retry_comes_before_a_later_request_timeout() -> None:
    core = acmc()
    core.profile_update(0.0, target=Addressee("sip:x@primary.example"),
                        migrated_user_id="sip:m-1@primary.example", profile=PROFILE)
    assert core.get_timer() == 100.0
    core.handle(_busy(_notified(core), 1.0))
    assert core.get_timer() == 2.0
    _downloads(core.handle(TimerTick(2.0)))
    assert core.get_timer() == 100.0


def test_an_answer_to_a_request_of_an_earlier_session_is_shown_once() -> None:
    # 23.280 10.17.3.1: the primary ACMS kept the answer while we were offline; this ACMC
    # process never sent the request (it was restarted), the user must still see the Result
    core = acmc()
    resp = ProfileUpdateResponse("t-old", Party("sip:x@partner.example"), Addressee(ME),
                                 "sip:m-1@partner.example", Result(ResultCode.SUCCESS))
    download = PendingDataDownloadResponse("d-1", ME, (resp,))
    actions = core.handle(FlowFromAcms(0.0, download))
    assert ReportToUser("t-old", ReportKind.RESPONSE, resp,
                  text="answer to a request not open in this session") in actions
    # delivered again (the ACMS re-sent it after a crash): nothing new for the user
    assert not [a for a in core.handle(FlowFromAcms(1.0, resp)) if isinstance(a, ReportToUser)]


def test_what_it_remembers_is_bounded_and_the_oldest_goes_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Finished requests and sent decisions are kept up to REMEMBERED each (a client that runs
    for months stays bounded); past it the oldest is forgotten, with the defined outcomes."""
    monkeypatch.setattr(acmc_module, "REMEMBERED", 3)
    core = acmc()

    def answer(tid: str) -> ProfileUpdateResponse:
        return ProfileUpdateResponse(tid, Party("sip:x@partner.example"), Addressee(ME),
                                     "sip:m-1@partner.example", Result(ResultCode.SUCCESS))

    for n in range(4):  # four answers to requests of an earlier session
        core.handle(FlowFromAcms(float(n), answer(f"r-{n}")))
        core.handle(FlowFromAcms(float(n), incoming(f"d-{n}")))
        core.decide(f"d-{n}", True, None, float(n))
    assert list(core._finished) == ["r-1", "r-2", "r-3"]
    assert list(core._decided) == ["d-1", "d-2", "d-3"]
    # a repeat of a remembered one: nothing new; of a forgotten one: shown / asked again
    assert not [a for a in core.handle(FlowFromAcms(5.0, answer("r-3")))
                if isinstance(a, ReportToUser)]
    assert any(isinstance(a, ReportToUser) for a in core.handle(FlowFromAcms(5.0, answer("r-0"))))
    again = core.handle(FlowFromAcms(5.0, incoming("d-2")))
    assert isinstance(again[1], SendFlow) and again[1].flow.transaction_id == "d-2"  # re-sent
    assert core.handle(FlowFromAcms(5.0, incoming("d-0"))) == [
        AcceptMessage(), Decide(incoming("d-0"))]



@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("send", "answer", "tick")),
                          st.floats(0.0, 60.0), st.integers(0, 9)), max_size=40))
def test_every_open_request_times_out_at_the_first_tick_past_its_deadline(
        steps: list[tuple[str, float, int]]) -> None:
    """Whatever requests are sent, answered and ticked, in any order: the timer is never later
    than an open request's deadline, a tick times out exactly the open requests whose deadline
    passed, and answering a request does not move the timer (the node re-arms nothing)."""
    core, now = acmc(), 0.0
    deadlines: dict[str, float] = {}  # open requests of this test: transaction id -> deadline
    for what, dt, pick in steps:
        now += dt
        if what == "send":
            tid, _ = core.add_users(now, ("sip:m@partner.example",))
            deadlines[tid] = now + 100.0
        elif what == "answer" and deadlines:
            tid = list(deadlines)[pick % len(deadlines)]  # in the order sent
            before = core.get_timer()
            resp = AddUserConfigurationResponse(tid, Party(ACMS), Addressee(ME),
                                                Result(ResultCode.SUCCESS))
            reports = core.handle(FlowFromAcms(now, resp))
            assert ReportToUser(tid, ReportKind.RESPONSE, resp) in reports
            del deadlines[tid]
            assert core.get_timer() == (before if deadlines else None)
        elif what == "tick":
            due = core.get_timer()
            if due is None:
                continue
            now = max(now, due)
            timed_out = {r.transaction_id for r in core.handle(TimerTick(now))
                         if isinstance(r, ReportToUser) and r.kind is ReportKind.TIMEOUT}
            assert timed_out == {t for t, d in deadlines.items() if d <= now}
            deadlines = {t: d for t, d in deadlines.items() if d > now}
        timer = core.get_timer()
        assert (timer is None) == (not deadlines)
        assert timer is None or timer <= min(deadlines.values())


def _decided(core: AcmcCore, tid: str = "t-1") -> SendFlow:
    core.handle(FlowFromAcms(0.0, incoming(tid)))
    [send] = [a for a in core.decide(tid, True, None, 0.5) if isinstance(a, SendFlow)]
    return send


def _reports(actions: Sequence[object]) -> list[ReportToUser]:
    return [a for a in actions if isinstance(a, ReportToUser)]


def test_a_decision_refused_for_now_is_sent_again_after_the_back_off() -> None:
    # the worker's store was away (503): nothing of the decision was kept there (a 503 is
    # not done), so the ACMC sends it again -- the ACMS takes the same decision twice
    # idempotently -- instead of telling the user it failed and leaving the request to expire
    core = acmc()
    first = _decided(core)
    assert _reports(core.handle(_busy(first, 1.0, retry_after=5.0))) == []
    assert core.get_timer() == 6.0  # the ACMS's Retry-After is longer than the back-off
    [again] = [a for a in core.handle(TimerTick(6.0)) if isinstance(a, SendFlow)]
    assert again.flow == first.flow and again.send_id != first.send_id
    assert _reports(core.handle(_busy(first, 6.1))) == []  # the older MESSAGE: nothing
    assert _reports(core.handle(DeliveryOutcome(6.5, again.send_id, True))) == []
    assert core.get_timer() is None  # nothing more to send


def test_a_decision_refused_for_good_or_too_often_is_reported_failed() -> None:
    core = acmc()
    first = _decided(core)
    [report] = _reports(core.handle(DeliveryOutcome(
        1.0, first.send_id, False, "403 already-answered", status=403,
        failure=Failure.REFUSED)))
    assert report.kind is ReportKind.FAILED and report.transaction_id == "t-1"
    send, now, sent = _decided(core, "t-2"), 1.0, 1
    while True:
        now += 1.0
        reports = _reports(core.handle(DeliveryOutcome(now, send.send_id, False, "timeout",
                                                       failure=Failure.TIMEOUT)))
        if reports:
            break
        [send] = [a for a in core.handle(TimerTick(core.get_timer() or 0.0))
                  if isinstance(a, SendFlow)]
        now, sent = core.get_timer() or now, sent + 1
    assert sent == acmc_module.REPEAT_ATTEMPTS and reports[0].kind is ReportKind.FAILED
