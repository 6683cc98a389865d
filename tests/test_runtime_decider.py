"""The person at the ACMC: each request shown readably, approve/reject with a reason."""

from __future__ import annotations

import asyncio
import io

from mcacm_sip.acm.examples import example_flows
from mcacm_sip.acm.model import ProfileUpdateRequest
from mcacm_sip.runtime.acmc import Decision, InteractiveDecider


def _request() -> ProfileUpdateRequest:
    flow = example_flows()[ProfileUpdateRequest.FLOW]
    assert isinstance(flow, ProfileUpdateRequest)
    return flow


def _decide(typed: str) -> tuple[Decision, str]:
    out = io.StringIO()
    decision = asyncio.run(InteractiveDecider(io.StringIO(typed), out).decide(_request()))
    return decision, out.getvalue()


def test_shows_the_request_and_takes_a_rejection_with_its_reason() -> None:
    decision, shown = _decide("r\nno night shifts for trainees\n")
    request = _request()
    assert decision == Decision(False, "no night shifts for trainees")
    assert request.transaction_id in shown and request.migrated_user_id in shown
    assert request.requester.mc_service_id in shown and "approve or reject? [a/r]" in shown


def test_asks_again_until_the_answer_is_understood_and_the_reason_is_optional() -> None:
    decision, shown = _decide("maybe\napprove\n\n")
    assert decision == Decision(True, None)
    assert shown.count("approve or reject?") == 2


def test_end_of_input_rejects() -> None:
    decision, _ = _decide("")
    assert decision.approve is False and decision.reason == "no decision (input closed)"
