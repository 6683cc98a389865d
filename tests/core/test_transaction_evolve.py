"""Transaction.evolve and Mapping.evolve are dataclasses.replace for the procedure's steps:
the same record, key (and procedure) included, whichever fields change; an unknown field is
refused as replace refuses it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcacm_sip.acm.examples import example_flows
from mcacm_sip.acm.model import (
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    UserProfile,
)
from mcacm_sip.core.state import Mapping, Role, Transaction, TxState


def _tx(role: Role) -> Transaction:
    request = example_flows()["profile-update-request"]
    assert isinstance(request, ProfileUpdateRequest)
    return Transaction(role, "tid-1", "sip:acms@primary.example", request, TxState.RECEIVED,
                       1.0, 2.0)


CHANGES: list[dict[str, Any]] = [
    {"state": TxState.RESPONDING},
    {"state": TxState.DONE, "deadline": 9.0, "assignee": "sip:dave@partner.example"},
    {"indication": ProcessIndication("tid-1", "sip:acms@partner.example",
                                     "profile-update-request")},
    {"leg_id": "other-leg"},
    {"transaction_id": "tid-2"},  # the key moves
    {"peer": "sip:acms@elsewhere.example"},  # the partner's key moves (its origin is the peer)
    {"role": Role.PRIMARY},
    {},
]


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("changes", CHANGES, ids=lambda c: ",".join(c) or "nothing")
def test_evolve_is_replace(role: Role, changes: dict[str, Any]) -> None:
    tx = _tx(role)
    expected = dataclasses.replace(tx, **changes)
    got = tx.evolve(**changes)
    assert got == expected and got.key == expected.key
    assert [getattr(got, f.name) for f in dataclasses.fields(Transaction)] == \
        [getattr(expected, f.name) for f in dataclasses.fields(Transaction)]
    assert tx == _tx(role)  # the original is untouched


def test_evolve_refuses_an_unknown_field() -> None:
    with pytest.raises(TypeError, match="no field stat"):
        _tx(Role.PARTNER).evolve(stat=TxState.DONE)
    with pytest.raises(TypeError, match="key"):  # computed, never set
        _tx(Role.PARTNER).evolve(key="x")


def _mapping(side: Role) -> Mapping:
    return Mapping(side, "sip:acms@primary.example", "sip:mike@primary.example",
                   "sip:mike-1@partner.example", None, False)


MAPPING_CHANGES: list[dict[str, Any]] = [
    {"removed": True},
    {"profile": UserProfile("<p/>")},
    {"partner_id": "sip:mike-2@partner.example"},
    {"primary_id": "sip:MIKE@primary.example;transport=udp"},  # the key moves
    {"peer": "sip:acms@elsewhere.example"},
    {"side": Role.PRIMARY},
    {},
]


@pytest.mark.parametrize("side", list(Role))
@pytest.mark.parametrize("changes", MAPPING_CHANGES, ids=lambda c: ",".join(c) or "nothing")
def test_mapping_evolve_is_replace(side: Role, changes: dict[str, Any]) -> None:
    m = _mapping(side)
    expected = dataclasses.replace(m, **changes)
    got = m.evolve(**changes)
    assert got == expected and got.key == expected.key
    assert [getattr(got, f.name) for f in dataclasses.fields(Mapping)] == \
        [getattr(expected, f.name) for f in dataclasses.fields(Mapping)]
    assert m == _mapping(side)


def test_mapping_evolve_refuses_an_unknown_field() -> None:
    with pytest.raises(TypeError, match="no field remove"):
        _mapping(Role.PARTNER).evolve(remove=True)
    with pytest.raises(TypeError, match="key"):
        _mapping(Role.PARTNER).evolve(key="x")


# ------------------------------------------------------------- a step's record (Transaction.moved)

_INDICATION = ProcessIndication("tid-1", "sip:acms@partner.example", "profile-update-request")


@settings(max_examples=200, deadline=None)
@given(role=st.sampled_from(list(Role)), state=st.sampled_from(list(TxState)),
       deadline=st.none() | st.floats(allow_nan=False), indication=st.booleans(),
       response=st.booleans(), assignee=st.none() | st.sampled_from(
           ("sip:dave@partner.example", "sip:fa-1@partner.example")),
       before=st.fixed_dictionaries({}, optional={
           "assignee": st.just("sip:erin@partner.example"), "leg_id": st.just("leg-2"),
           "response": st.just(True), "indication": st.just(True)}))
def test_a_steps_record_is_replace_of_the_fields_it_sets(
        role: Role, state: TxState, deadline: float | None, indication: bool, response: bool,
        assignee: str | None, before: dict[str, Any]) -> None:
    # what the core's steps build (records.AcmsRecords._step) is the record replace gives:
    # the fields given set, the others (None given) kept, key and procedure the same
    answer = example_flows()["profile-update-response"]
    assert isinstance(answer, ProfileUpdateResponse)
    tx = _tx(role)
    if before:
        earlier: dict[str, Any] = {k: (answer if k == "response" else _INDICATION
                                       if k == "indication" else v) for k, v in before.items()}
        tx = dataclasses.replace(tx, **earlier)
    given_fields: dict[str, Any] = {
        "state": state, "deadline": deadline, "indication": _INDICATION if indication else None,
        "response": answer if response else None, "assignee": assignee}
    expected = dataclasses.replace(tx, **{k: v for k, v in given_fields.items()
                                          if v is not None})
    got = tx.moved(state, deadline, given_fields["indication"], given_fields["response"],
                   assignee)
    assert got == expected and got.key == expected.key and got.procedure == expected.procedure
    for f in dataclasses.fields(Transaction):  # the rest carried over as the same objects
        if given_fields.get(f.name) is None:  # (the store compares flows by identity)
            assert getattr(got, f.name) is getattr(tx, f.name)


def test_what_a_2xx_moves_is_a_row_of_the_table() -> None:
    # outbox._ON_2XX names the step a send's 2xx is; each is a trigger of the transition
    # table, for the role that makes such sends (the table stays the one state guard)
    from mcacm_sip.core.acms.outbox import _ON_2XX
    from mcacm_sip.core.state import TRANSITIONS, Purpose, Trigger

    triggers = {(role, trigger) for role, _, trigger in TRANSITIONS}
    assert (Role.PRIMARY, _ON_2XX[Purpose.FORWARD]) in triggers
    assert (Role.PARTNER, _ON_2XX[Purpose.ANSWER]) in triggers
    assert {(role, _ON_2XX[Purpose.DELIVER]) for role in Role} <= triggers
    assert set(_ON_2XX.values()) == {Trigger.PEER_ACCEPTED, Trigger.DELIVERED}
