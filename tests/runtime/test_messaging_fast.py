"""ACM MESSAGEs out (runtime/messaging.py): what is made once or built without its checks is
what the general way gives (issue 18, round 11)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.core.events import DeliveryOutcome
from mcacm_sip.runtime.messaging import _DELIVERED, PROCEDURE_HEADER, Sent, acm_headers

_texts = st.text(max_size=12)


@given(now=st.floats(allow_nan=False), send_id=_texts)
def test_a_delivery_is_the_outcome_the_constructor_gives(now: float, send_id: str) -> None:
    """The shared 2xx outcome, another ``Sent(True)`` and the checked constructor agree
    (checked to fail with the shared one's reason given as "")."""
    general = DeliveryOutcome(now, send_id, True)
    assert _DELIVERED.outcome(now, send_id) == general
    assert Sent(True).outcome(now, send_id) == general


@given(identity=_texts, icsi=_texts, procedure=st.none() | _texts, again=st.booleans())
def test_the_remembered_asserted_headers_are_the_ones_built_each_time(
        identity: str, icsi: str, procedure: str | None, again: bool) -> None:
    """(checked to fail with the ICSI left out of what the headers are remembered by)"""
    if again:
        acm_headers(identity, icsi, procedure)
    built = (("P-Asserted-Identity", f"<{identity}>"), ("P-Asserted-Service", icsi))
    assert acm_headers(identity, icsi, procedure) == (
        built if procedure is None else (*built, (PROCEDURE_HEADER, procedure)))
