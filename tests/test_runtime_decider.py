"""The person at the ACMC: each request shown readably, approve/reject with a reason."""

from __future__ import annotations

import asyncio
import io

from mcacm_sip.acm.examples import example_flows
from mcacm_sip.acm.model import ProfileUpdateRequest
from mcacm_sip.runtime.acmc import Decision, InteractiveDecider, RequestHandle, RequestOutcome


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


def test_a_request_handle_waits_times_out_and_is_cancelled_without_losing_the_outcome() -> None:
    """``wait(timeout)`` returns the outcome so far with ``failure`` set when nothing came in
    time; a waiter cancelled or timed out leaves the request followed: a later ``wait`` gets
    the response, and every waiter at once gets the same outcome."""
    async def main() -> None:
        handle = RequestHandle(RequestOutcome("t-1"))
        early = await handle.wait(0.0)
        assert early.failure == "no final response in 0.0 s" and early.response is None
        cancelled = asyncio.ensure_future(handle.wait())
        await asyncio.sleep(0)
        cancelled.cancel()
        waiters = [asyncio.ensure_future(handle.wait(60.0)) for _ in range(2)]
        await asyncio.sleep(0)
        assert not handle.done.done() and not any(w.done() for w in waiters)
        handle.outcome.failure = None
        handle.done.set_result(handle.outcome)
        assert await asyncio.gather(*waiters) == [handle.outcome, handle.outcome]
        assert await handle.wait(1.0) is handle.outcome
        assert cancelled.cancelled()

    asyncio.run(main())
