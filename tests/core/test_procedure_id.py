"""procedure_id is the RFC 4122 4.3 name-based UUID (version 5) of the requester's canonical
identity and the origin's transaction id, as uuid.uuid5 computes it; a transaction carries
its own, the same however it was made (constructed, evolved, replaced)."""

from __future__ import annotations

import dataclasses
import uuid

from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.acm.examples import example_flows
from mcacm_sip.acm.model import ProfileUpdateRequest
from mcacm_sip.core.identity import _PROCEDURE_NS, id_key, procedure_id
from mcacm_sip.core.state import Role, Transaction, TxState

_IDS = st.one_of(st.text(), st.from_regex(r"sips?:[a-zA-Z0-9.%-]{1,12}@[a-z0-9.-]{1,12}",
                                          fullmatch=True))


@given(_IDS, st.text())
def test_procedure_id_is_uuid5(requester: str, transaction_id: str) -> None:
    expected = uuid.uuid5(_PROCEDURE_NS, f"{id_key(requester)}\n{transaction_id}")
    got = procedure_id(requester, transaction_id)
    assert got == expected.hex
    assert uuid.UUID(got).version == 5 and uuid.UUID(got).variant == uuid.RFC_4122


def test_a_transaction_carries_its_procedure_through_every_change() -> None:
    request = example_flows()["profile-update-request"]
    assert isinstance(request, ProfileUpdateRequest)
    tx = Transaction(Role.PARTNER, "tid-1", "sip:acms@primary.example", request,
                     TxState.RECEIVED, 1.0, 2.0)
    assert tx.procedure == procedure_id(request.requester.mc_service_id, "tid-1")
    assert tx.evolve(state=TxState.RESPONDING).procedure == tx.procedure
    moved = tx.evolve(transaction_id="tid-2")
    assert moved.procedure == procedure_id(request.requester.mc_service_id, "tid-2")
    assert dataclasses.replace(tx, transaction_id="tid-2").procedure == moved.procedure
    assert moved == dataclasses.replace(tx, transaction_id="tid-2")  # not compared
