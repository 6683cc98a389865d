"""The flows the ACMS core builds without re-running the model's checks (model.trusted) are the
flows the checking constructors build from the same values: over every valid input the two are
equal, and where a value is not known to be checked (a PSI of a configuration built in code)
the checking constructor still runs and still refuses."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from acm.strategies import FLOW_STRATEGIES, parties, requests, results, transaction_ids, uris
from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.acm import codec, errors
from mcacm_sip.acm import model as m
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    InvalidIE,
    ProcessIndication,
    ProfileUpdateRequest,
    trusted,
    trusted_replace,
)
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.acms.partner import _ts
from mcacm_sip.core.config import AcmsConfig, PeerSystem
from mcacm_sip.core.events import (
    DeliveryOutcome,
    Failure,
    FlowFromPeer,
    Put,
    SendFlow,
    store_changes,
)
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.state import (
    Mapping,
    Outgoing,
    PendingItem,
    Record,
    Role,
    Snapshot,
    Transaction,
    TxState,
    response_to,
    result_of,
)
from mcacm_sip.runtime.lab import PRIMARY, partner_config
from mcacm_sip.store.base import apply_to


def _values(flow: Any) -> list[Any]:
    return [getattr(flow, f.name) for f in dataclasses.fields(flow)]


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b and _values(a) == _values(b)


@pytest.mark.parametrize("cls", list(FLOW_STRATEGIES), ids=lambda c: c.FLOW)
@given(data=st.data())
def test_trusted_equals_the_checking_constructor(cls: type[m.AcmFlow], data: st.DataObject
                                                 ) -> None:
    flow = data.draw(FLOW_STRATEGIES[cls])
    values = _values(flow)
    assert _same(trusted(cls, *values), cls(*values))
    # defaults are filled as the class fills them
    required = [f for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    given_values = values[:len(required)]
    assert _same(trusted(cls, *given_values), cls(*given_values))


@pytest.mark.parametrize("cls", list(FLOW_STRATEGIES), ids=lambda c: c.FLOW)
@given(data=st.data(), tid=transaction_ids)
def test_trusted_replace_equals_replace(cls: type[m.AcmFlow], data: st.DataObject, tid: str
                                        ) -> None:
    flow = data.draw(FLOW_STRATEGIES[cls])
    assert _same(trusted_replace(flow, transaction_id=tid),
                 dataclasses.replace(flow, transaction_id=tid))


@given(request=requests, handler=parties, result=results)
def test_response_to_builds_what_the_checks_accept(request: m.AcmRequest, handler: m.Party,
                                                   result: m.Result) -> None:
    # response_to uses trusted(): every response it makes passes the class's own checks
    # (the checking constructor, given the same values, accepts them and gives an equal value)
    response = response_to(request, handler, result)
    assert _same(response, type(response)(*_values(response)))
    assert m.ANSWER_FOR[type(request)] is type(response)
    assert response.transaction_id == request.transaction_id


@given(tid=transaction_ids, psi=uris, flow=st.sampled_from([c.FLOW for c in m.FLOW_TYPES]),
       deadline=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_the_partners_indication_equals_the_checked_one(tid: str, psi: str, flow: str,
                                                        deadline: float) -> None:
    assert _same(trusted(ProcessIndication, tid, psi, flow, _ts(deadline)),
                 ProcessIndication(tid, psi, flow, _ts(deadline)))


def test_trusted_refuses_a_wrong_number_of_fields() -> None:
    with pytest.raises(TypeError, match="acms"):
        trusted(ProcessIndication, "tid")
    with pytest.raises(TypeError, match="positional argument"):
        trusted(ProcessIndication, "tid", "sip:a@b", "x", None, 1)
    with pytest.raises(TypeError, match="no field transaction"):
        trusted_replace(ProcessIndication("tid", "sip:a@b", "x"), transaction="t")


def test_result_of_is_the_checked_result_once() -> None:
    assert result_of("success", "policy") == m.Result("success", "policy")
    assert result_of("success", "policy") is result_of("success", "policy")
    with pytest.raises(InvalidIE):
        result_of("not-a-code")


def _core(psi: str) -> AcmsCore:
    return AcmsCore(AcmsConfig(psi=psi, peers=(PeerSystem("sip:acms@primary.example",
                                                          ("primary.example",)),)))


def _request() -> ProfileUpdateRequest:
    return ProfileUpdateRequest("tid-1", m.Party("sip:alice@primary.example"),
                                m.Addressee("sip:dave@partner.example"),
                                "sip:mike-1@partner.example", m.UserProfile("<p/>"))


def test_a_psi_the_model_refuses_is_still_refused_at_the_indication() -> None:
    # a configuration built in code is not checked by config.py: the indication carrying its
    # PSI goes through the checking constructor, which refuses it as before (a trusted build
    # would have sent an indication naming a non-URI ACMS)
    core = _core("not a uri")
    with pytest.raises(InvalidIE, match="acms"):
        core.handle(FlowFromPeer(1.0, "sip:acms@primary.example", _request()))


def test_a_checked_psi_makes_a_checked_indication() -> None:
    core = _core("sip:acms@partner.example")
    actions = core.handle(FlowFromPeer(1.0, "sip:acms@primary.example", _request()))
    [tx] = core.transactions()
    assert tx.indication is not None
    assert _same(tx.indication, ProcessIndication(
        "tid-1", "sip:acms@partner.example", ProfileUpdateRequest.FLOW,
        datetime.fromtimestamp(tx.created + core.config.timers.decision_timeout, UTC)))
    assert actions


# ------------------------------------------------------------- what an automatic answer stores

ROUTINE_XML = ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0"><Name>Mike</Name>'
               '<Routine/></mcptt-user-profile>')


def _partner(profile: m.UserProfile) -> AcmsCore:
    return AcmsCore(partner_config(None), Snapshot(mappings=(Mapping(
        Role.PARTNER, PRIMARY, "sip:mike@primary.example", "sip:mike-1@partner.example",
        profile, False),)))


def _update(tid: str, profile: m.UserProfile) -> ProfileUpdateRequest:
    return ProfileUpdateRequest(tid, m.Party("sip:alice@primary.example"),
                                m.Addressee("sip:dave@partner.example"),
                                "sip:mike-1@partner.example", profile)


def test_an_automatic_answer_stores_its_transaction_once_and_logs_both_steps(
        caplog: pytest.LogCaptureFixture) -> None:
    # 10.17.7.2 step 4 then 10.17.3.2 in one handle(): the received state is never stored on
    # its own (its Put would be overwritten in the same store transaction); the stored state,
    # the log and a restart are what they were
    routine = profile_from_xml(ROUTINE_XML)
    core = _partner(routine)
    with caplog.at_level(logging.INFO, logger="mcacm.acms"):
        actions = core.handle(FlowFromPeer(5.0, PRIMARY, _update("tid-1", routine)))
    puts = [a.record for a in store_changes(actions) if isinstance(a, Put)]
    [tx] = [r for r in puts if isinstance(r, Transaction)]
    assert tx.state is TxState.RESPONDING and tx.response is not None
    assert tx == core.transactions()[0]
    steps = [(r.from_state, r.to_state) for r in caplog.records  # type: ignore[attr-defined]
             if getattr(r, "event", None) == "procedure.step"]
    assert steps == [("new", "received"), ("received", "responding")]
    tables: dict[str, dict[str, Record]] = {k: {} for k in (
        Transaction.KIND, Outgoing.KIND, PendingItem.KIND, Mapping.KIND, PartnerGroup.KIND)}
    apply_to(tables, store_changes(actions))
    restored = AcmsCore.restore(partner_config(None), Snapshot(
        transactions=tuple(tables[Transaction.KIND].values()),  # type: ignore[arg-type]
        outgoing=tuple(tables[Outgoing.KIND].values())))  # type: ignore[arg-type]
    assert restored.transactions() == core.transactions()
    resent = [a for a in restored.start(6.0) if isinstance(a, SendFlow)]
    assert sorted(type(s.flow).__name__ for s in resent) == [
        "ProcessIndication", "ProfileUpdateResponse"]


def test_a_profile_update_to_the_profile_held_stores_no_mapping() -> None:
    # 10.17.7: the agreed profile is kept; the same profile again changes nothing to store
    routine = profile_from_xml(ROUTINE_XML)
    core = _partner(routine)
    actions = core.handle(FlowFromPeer(5.0, PRIMARY, _update("tid-1", routine)))
    assert not [a for a in store_changes(actions)
                if isinstance(a, Put) and isinstance(a.record, Mapping)]
    other = profile_from_xml(ROUTINE_XML.replace("Mike", "Mike (new)"))
    actions = core.handle(FlowFromPeer(6.0, PRIMARY, _update("tid-2", other)))
    [mapping] = [a.record for a in store_changes(actions)
                 if isinstance(a, Put) and isinstance(a.record, Mapping)]
    assert mapping.profile == other and core.mappings()[0].profile == other


def test_a_trusted_flow_holding_a_bad_value_is_still_refused_on_send() -> None:
    # trusted() is no way past strict on send: the codec's proof of what it writes does not
    # rest on the model, so a value the model would have refused is not proven and the
    # schema check refuses it (what a core bug feeding trusted() would meet)
    for bad in (trusted(ProcessIndication, "two words", "sip:acms@partner.example", "x"),
                trusted(ProcessIndication, "tid", "not a uri", "x")):
        with pytest.raises(errors.EncodeError) as info:
            codec.encode(bad)
        assert info.value.sip_status == 500


def test_a_failed_indication_no_longer_needed_is_logged_as_dropped_not_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    # answered automatically: the indication mattered only while a decision was awaited
    # (10.17.7.2 step 5), the response still matters (step 9); the log says which is retried
    routine = profile_from_xml(ROUTINE_XML)
    core = _partner(routine)
    sends = {type(a.flow).__name__: a.send_id
             for a in core.handle(FlowFromPeer(5.0, PRIMARY, _update("tid-1", routine)))
             if isinstance(a, SendFlow)}
    kept: dict[str, list[str]] = {}
    with caplog.at_level(logging.INFO, logger="mcacm.acms"):
        for name in ("ProcessIndication", "ProfileUpdateResponse"):
            actions = core.handle(DeliveryOutcome(6.0, sends[name], False, "no answer", None,
                                                  None, None, Failure.TIMEOUT))
            kept[name] = [str(a.record.purpose) for a in store_changes(actions)
                          if isinstance(a, Put) and isinstance(a.record, Outgoing)]
    lines = {r.getMessage().split(" (")[1].split()[0]: r.getMessage() for r in caplog.records
             if r.getMessage().startswith("send ")}
    assert "dropped: no longer needed" in lines["indicate"] and "retried" not in lines["indicate"]
    assert "retried" in lines["answer"]
    assert kept == {"ProcessIndication": [], "ProfileUpdateResponse": ["answer"]}
    assert core.sends_in_flight == 1  # the response, waiting for its retry
