"""The core's constructors without a call per field (mcacm_sip/frozen.py, state.new_transaction,
Transaction.moved) make what the classes' own constructors make: an instance of the class,
equal field by field, as frozen, as hashable."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcacm_sip.acm.examples import example_flows
from mcacm_sip.acm.model import AcmRequest, ProcessIndication
from mcacm_sip.core.events import (
    DeliveryOutcome,
    Failure,
    FlowFromAcmc,
    FlowFromPeer,
    Put,
    Remove,
    SendFlow,
    make_put,
    make_remove,
    make_send,
)
from mcacm_sip.core.state import (
    Hop,
    Outgoing,
    Purpose,
    Role,
    Transaction,
    TxState,
    make_outgoing,
    new_transaction,
)
from mcacm_sip.frozen import builder
from mcacm_sip.runtime.messaging import Sent
from mcacm_sip.runtime.trust import Origin, _from_acmc, _from_peer, _origin

FLOWS = example_flows()
REQUESTS = [f for f in FLOWS.values() if isinstance(f, AcmRequest)]
texts = st.text(max_size=12)
times = st.none() | st.floats(allow_nan=False)


def _same(got: Any, expected: Any) -> None:
    assert type(got) is type(expected)
    assert got == expected and hash(got) == hash(expected)
    for f in dataclasses.fields(expected):
        assert getattr(got, f.name) is getattr(expected, f.name), f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.__setattr__(dataclasses.fields(expected)[0].name, None)
    assert not hasattr(got, "__dict__")


@settings(max_examples=100, deadline=None)
@given(send_id=texts, purpose=st.sampled_from(list(Purpose)), hop=st.sampled_from(list(Hop)),
       to=texts, flow=st.sampled_from(list(FLOWS.values())), tx_key=st.none() | texts,
       attempts=st.integers(1, 9), next_at=times, give_up_at=times,
       carries=st.lists(texts, max_size=3).map(tuple))
def test_make_outgoing_is_the_constructor(send_id: str, purpose: Purpose, hop: Hop, to: str,
                                          flow: Any, tx_key: str | None, attempts: int,
                                          next_at: float | None, give_up_at: float | None,
                                          carries: tuple[str, ...]) -> None:
    got = make_outgoing(send_id, purpose, hop, to, flow, tx_key, attempts, next_at,
                        give_up_at, carries)
    _same(got, Outgoing(send_id, purpose, hop, to, flow, tx_key, attempts, next_at,
                        give_up_at, carries))
    _same(make_put(got), Put(got))


@settings(max_examples=50, deadline=None)
@given(kind=texts, key=texts, send_id=texts, hop=st.sampled_from(list(Hop)), to=texts,
       flow=st.sampled_from(list(FLOWS.values())), procedure=texts)
def test_make_remove_and_make_send_are_the_constructors(kind: str, key: str, send_id: str,
                                                        hop: Hop, to: str, flow: Any,
                                                        procedure: str) -> None:
    _same(make_remove(kind, key), Remove(kind, key))
    _same(make_send(send_id, hop, to, flow, procedure), SendFlow(send_id, hop, to, flow,
                                                                 procedure))


@settings(max_examples=100, deadline=None)
@given(role=st.sampled_from(list(Role)), tid=st.sampled_from(("tid-1", "x" * 40)),
       peer=st.sampled_from(("sip:acms@primary.example", "sip:ACMS@Primary.example;x=1")),
       request=st.sampled_from(REQUESTS), state=st.sampled_from(list(TxState)),
       created=st.floats(allow_nan=False), deadline=st.floats(allow_nan=False),
       indication=st.booleans(), leg_id=st.sampled_from(("", "leg-2")))
def test_new_transaction_is_the_constructor(role: Role, tid: str, peer: str,
                                            request: AcmRequest, state: TxState,
                                            created: float, deadline: float, indication: bool,
                                            leg_id: str) -> None:
    ind = ProcessIndication(tid, "sip:acms@partner.example", request.FLOW) if indication \
        else None
    got = new_transaction(role, tid, peer, request, state, created, deadline, ind, leg_id)
    expected = Transaction(role, tid, peer, request, state, created, deadline, ind,
                           leg_id=leg_id)
    assert got == expected and got.key == expected.key
    assert got.procedure == expected.procedure
    assert type(got) is Transaction and not hasattr(got, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.state = TxState.DONE  # type: ignore[misc]


def test_a_class_the_builder_cannot_make_alike_is_refused() -> None:
    # a __post_init__ (checks, computed fields) would be skipped: such classes are refused
    with pytest.raises(TypeError, match="DeliveryOutcome"):
        builder(DeliveryOutcome)
    with pytest.raises(TypeError, match="Transaction"):
        builder(Transaction)

    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    with pytest.raises(TypeError, match="Mutable"):
        builder(Mutable)


@settings(max_examples=300, deadline=None)
@given(ok=st.booleans(), reason=st.none() | texts, status=st.none() | st.integers(100, 699),
       warning=st.none() | texts, retry_after=times,
       failure=st.none() | st.sampled_from(list(Failure)), now=st.floats(allow_nan=False),
       send_id=texts)
def test_a_sends_outcome_is_the_constructors(ok: bool, reason: str | None, status: int | None,
                                              warning: str | None, retry_after: float | None,
                                              failure: Failure | None, now: float,
                                              send_id: str) -> None:
    """``Sent.outcome`` (the delivery built without ``__post_init__``): the constructor's
    DeliveryOutcome, or its ValueError for values it refuses, for any Sent."""
    sent = Sent(ok, reason, status, warning, retry_after, failure)
    try:
        expected = DeliveryOutcome(now, send_id, ok, reason, status, warning, retry_after,
                                   failure)
    except ValueError:
        with pytest.raises(ValueError, match="inconsistent delivery outcome"):
            sent.outcome(now, send_id)
        return
    _same(sent.outcome(now, send_id), expected)


@settings(max_examples=50, deadline=None)
@given(now=st.floats(allow_nan=False), who=texts, flow=st.sampled_from(list(FLOWS.values())))
def test_the_trusts_events_are_the_constructors(now: float, who: str, flow: Any) -> None:
    _same(_from_peer(now, who, flow), FlowFromPeer(now, who, flow))
    _same(_from_acmc(now, who, flow), FlowFromAcmc(now, who, flow))


@settings(max_examples=50, deadline=None)
@given(identity=st.none() | texts, source=st.none() | texts,
       certificate=st.none() | st.frozensets(texts, max_size=3))
def test_an_origin_is_the_constructors(identity: str | None, source: str | None,
                                       certificate: frozenset[str] | None) -> None:
    _same(_origin(identity, source, certificate), Origin(identity, source, certificate))
