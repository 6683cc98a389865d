"""docs/procedures.md carries the transition table generated from the code."""

from __future__ import annotations

from pathlib import Path

from mcacm_sip.core.state import TRANSITIONS, transitions_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "procedures.md"


def test_procedures_doc_has_the_generated_transition_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- BEGIN GENERATED TRANSITIONS -->")[1].split(
        "<!-- END GENERATED TRANSITIONS -->")[0]
    assert block.strip() == transitions_markdown().strip(), (
        "regenerate with mcacm_sip.core.state.transitions_markdown()")


def test_every_transition_cites_a_clause_or_a_decision() -> None:
    for (role, state, trigger), (_next, why) in TRANSITIONS.items():
        assert "10.17" in why or "(decision)" in why or "2xx" in why, (role, state, trigger)
