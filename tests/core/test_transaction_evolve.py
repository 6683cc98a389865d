"""Transaction.evolve and Mapping.evolve are dataclasses.replace for the procedure's steps:
the same record, key (and procedure) included, whichever fields change; an unknown field is
refused as replace refuses it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mcacm_sip.acm.examples import example_flows
from mcacm_sip.acm.model import ProcessIndication, ProfileUpdateRequest, UserProfile
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
