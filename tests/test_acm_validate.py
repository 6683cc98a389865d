"""validate_document: every problem of a document, with path, reason and fix hint, as data."""

from __future__ import annotations

import json

import pytest
from acm.make_corpus import CORPUS

from mcacm_sip.acm import codec
from mcacm_sip.acm.examples import example_documents
from mcacm_sip.acm.validate import Problem, validate_document

EXPECTED = json.loads((CORPUS / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(example_documents()))
def test_examples_have_no_problems(name: str) -> None:
    assert validate_document(example_documents()[name]) == []


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_corpus_verdicts_agree_with_decode(rel: str) -> None:
    expected = EXPECTED[rel]
    problems = validate_document((CORPUS / rel).read_bytes())
    if expected["verdict"] == "ok":
        assert problems == []
        return
    assert problems, "a bad document must have at least one problem"
    assert all(isinstance(p, Problem) and p.reason and p.hint for p in problems)
    stages = {p.stage for p in problems}
    if expected["xsd"] and expected["status"] == 400:
        assert "schema" in stages
    elif expected["verdict"] == "InvalidContent":
        assert stages <= {"rule", "model", "schema"} and stages & {"rule", "model"}
        assert any(p.path and p.path.startswith(expected["path"]) for p in problems)
    if expected["status"] != 400:
        assert problems[0].sip_status == expected["status"]


def test_reports_every_schema_error_with_its_own_path() -> None:
    data = example_documents()["profile-update-response.xml"]
    data = data.replace(b"<code>success</code>", b"<code>ok</code>").replace(
        b"<transaction-id>6f1c1c9e-3a5e-4d0b-9a43-2b7d8a1e0c55", b"<transaction-id>a b"
    )
    problems = validate_document(data)
    assert [p.path for p in problems] == [
        "/profile-update-response/transaction-id",
        "/profile-update-response/result/code",
    ]
    assert all(p.stage == "schema" and p.line for p in problems)


def test_missing_element_hint_names_it() -> None:
    data = (CORPUS / "bad" / "profile-update-request.missing-target.xml").read_bytes()
    (problem,) = validate_document(data)
    assert problem.path == "/profile-update-request/migrated-user-id"
    assert "<target>" in problem.hint


def test_rules_beyond_xsd_report_all_missing_parts() -> None:
    data = example_documents()["add-user-configuration-response.xml"]
    root_free = data.replace(b"<partner-id", b"<!--").replace(b"</partner-id>", b"-->")
    problems = validate_document(root_free)
    assert [(p.stage, p.path) for p in problems] == [
        ("rule", "/add-user-configuration-response/user-result[1]/partner-id")
    ]
    assert "partner-id" in problems[0].reason


def test_foreign_document_is_415() -> None:
    (problem,) = validate_document(b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>')
    assert problem.sip_status == 415 and codec.ACM_NS in problem.hint
