"""Transaction.evolve is dataclasses.replace for the procedure's steps: the same record, key
included, whichever fields change; an unknown field is refused as replace refuses it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mcacm_sip.acm.examples import example_flows
from mcacm_sip.acm.model import ProcessIndication, ProfileUpdateRequest
from mcacm_sip.core.state import Role, Transaction, TxState


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
