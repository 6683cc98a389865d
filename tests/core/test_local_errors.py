"""Local vs remote delivery failures (issue 14 item 5; docs/decisions.md "Local and remote
errors"): a send that failed on our side (our own flow cannot be encoded) is never retried as if
the network had failed, and its transaction ends with a defined outcome; the typed failures that
replaced invented SIP statuses keep the retry decisions they had."""

from __future__ import annotations

import pytest

from mcacm_sip.acm.model import (
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    Party,
    new_transaction_id,
)
from mcacm_sip.core.acms import LOCAL_ERROR, AcmsCore, transient
from mcacm_sip.core.events import (
    AcmsAction,
    DeliveryOutcome,
    Failure,
    FlowFromAcmc,
    Put,
    SendFlow,
    TimerTick,
    UserLoggedOn,
)
from mcacm_sip.core.state import Outgoing, Role, TxState
from mcacm_sip.runtime.lab import ALICE, MIKE, PARTNER, primary_config

T0 = 1_700_000_000.0


def forwarding() -> tuple[AcmsCore, str, SendFlow]:
    """The primary ACMS with ALICE's add-user request being forwarded to the partner."""
    core = AcmsCore(primary_config(None))
    core.handle(UserLoggedOn(T0, ALICE))
    tid = new_transaction_id()
    actions = core.handle(FlowFromAcmc(T0, ALICE, AddUserConfigurationRequest(
        tid, Party(ALICE), (MIKE,))))
    [send] = [a for a in actions if isinstance(a, SendFlow) and a.to == PARTNER]
    return core, tid, send


def sends(actions: list[AcmsAction]) -> list[SendFlow]:
    return [a for a in actions if isinstance(a, SendFlow)]


def test_a_forward_we_cannot_encode_is_answered_at_once_and_never_retried() -> None:
    core, tid, send = forwarding()
    actions = core.handle(DeliveryOutcome(
        T0 + 1, send.send_id, False, "local error: cannot encode add-user-configuration-request",
        failure=Failure.LOCAL_ERROR))
    # decision: the primary ACMC learns at once, Result x-local-error in the partner's place
    [answer] = sends(actions)
    assert answer.to == ALICE and isinstance(answer.flow, AddUserConfigurationResponse)
    assert answer.flow.transaction_id == tid and answer.flow.result.code == LOCAL_ERROR
    assert answer.flow.result.text is not None and "local error" in answer.flow.result.text
    # no retry scheduled for the forward, and none ever leaves
    assert not any(isinstance(a, Put) and isinstance(a.record, Outgoing)
                   and a.record.send_id == send.send_id for a in actions)
    for minutes in (1, 10, 60, 600):
        assert not [s for s in sends(core.handle(TimerTick(T0 + 60 * minutes)))
                    if s.to == PARTNER]
    tx = core.transaction(Role.PRIMARY, tid, ALICE)
    assert tx is not None and tx.state is not TxState.FORWARDING


@pytest.mark.parametrize("failure", [Failure.TIMEOUT, Failure.TRANSPORT])
def test_a_forward_that_got_no_answer_is_still_retried(failure: Failure) -> None:
    core, tid, send = forwarding()
    assert sends(core.handle(DeliveryOutcome(T0 + 1, send.send_id, False, "no answer",
                                             failure=failure))) == []
    retried = sends(core.handle(TimerTick(T0 + 120)))
    assert [(s.to, s.flow.transaction_id) for s in retried] == [(PARTNER, tid)]


# The decisions before the failures were typed: SIP status -> retried?  None stood for no
# answer (timeout, transport), 480 for "not registered".
_BEFORE = {None: True, 408: True, 480: True, 500: True, 502: True, 503: True, 504: True,
           301: False, 400: False, 401: False, 403: False, 404: False, 413: False,
           415: False, 488: False, 501: False, 505: False, 513: False, 600: False, 603: False}


@pytest.mark.parametrize(("status", "retried"), [(s, r) for s, r in _BEFORE.items()
                                                 if s is not None])
def test_refusals_keep_their_retry_decision(status: int, retried: bool) -> None:
    assert transient(Failure.REFUSED, status) is retried


@pytest.mark.parametrize("failure", [Failure.TIMEOUT, Failure.TRANSPORT, Failure.NO_BINDING])
def test_no_answer_and_no_binding_stay_transient(failure: Failure) -> None:
    assert transient(failure) is _BEFORE[None] is _BEFORE[480]


def test_a_local_error_is_never_transient() -> None:
    assert not transient(Failure.LOCAL_ERROR)


@pytest.mark.parametrize(("ok", "status", "failure"), [
    (True, None, Failure.TIMEOUT), (False, None, None), (False, None, Failure.REFUSED),
    (False, 480, Failure.NO_BINDING), (True, 200, None)])
def test_an_inconsistent_outcome_is_a_local_error_at_once(
        ok: bool, status: int | None, failure: Failure | None) -> None:
    with pytest.raises(ValueError, match="inconsistent delivery outcome"):
        DeliveryOutcome(T0, "s", ok, None, status, failure=failure)
