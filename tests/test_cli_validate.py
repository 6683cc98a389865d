"""``mcacm validate``: the broken documents of the message-layer corpus (tests/acm/corpus), each
reported with the path, SIP status and hint a user needs; FA bodies by their namespace; exit
codes 0 / 1 / 2.  The corpus runs through the console script, as a user runs it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mcacm_sip.cli.main import main

MCACM = str(Path(sys.executable).with_name("mcacm"))
ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "acm" / "corpus"
BAD = CORPUS / "bad"
FLOWS = ROOT / "examples" / "flows"
EXPECTED: dict[str, dict[str, object]] = json.loads((CORPUS / "expected.json").read_text())


def test_every_corpus_document_gets_its_verdict_path_and_status() -> None:
    names = sorted(EXPECTED)
    proc = subprocess.run([MCACM, "validate", "--json", *(str(CORPUS / n) for n in names)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    reports = {str(Path(r["file"]).relative_to(CORPUS)): r for r in json.loads(proc.stdout)}
    assert sorted(reports) == names
    for name, expected in EXPECTED.items():
        report = reports[name]
        if name.startswith("good/"):
            assert report["valid"] and report["problems"] == [], name
        elif name == "bad/foreign-root.xml":
            # not an ACM document, but a valid pidf: checked as the FA body it is
            assert report["valid"] and report["root"] == "presence"
        else:
            assert not report["valid"], name
            problems = report["problems"]
            assert problems[0]["sip_status"] == expected["status"], name
            assert all(p["reason"] and p["hint"] for p in problems), name
            if expected["path"] is not None:
                assert any((p["path"] or "").startswith(str(expected["path"]))
                           for p in problems), (name, problems)
    assert f"{len(names) - sum(r['valid'] for r in reports.values())} of {len(names)} " \
        "documents invalid" in proc.stderr


@pytest.mark.parametrize(("name", "line"), [
    ("profile-update-request.missing-target.xml",
     ":12: /profile-update-request/migrated-user-id: Unexpected child with tag "
     "'migrated-user-id' at position 3. Tag 'target' expected. (add <target> here)"),
    ("success-without-profile.xml",
     ":20: /add-user-configuration-response/user-result[1]/profile: user-result with code "
     "success lacks <profile> (give the partner-assigned MC service ID and profile, or a "
     "negative code)"),
    ("identity-encrypted.xml",
     ":5: /profile-update-request/requester/mc-service-id: encrypted identities are not "
     "supported (send the identity in clear: type=\"Normal\" with a <uri> child)"),
    ("duplicate-user.xml",
     ":21: /add-user-configuration-request/user[2]/uri: duplicated value"),
    ("no-namespace.xml",
     ":1: /pending-data-notification: root element pending-data-notification is in namespace "
     "(none) (ACM documents use namespace urn:mcacm-sip:ns:acm:1.0)"),
    ("not-well-formed.xml", ":1: not well-formed XML: "),
    ("billion-laughs.xml", ": document contains a DOCTYPE"),
    ("result-code-unknown.xml", ":24: /profile-update-response/result/code: value must be one "
                                "of ['success', "),
])
def test_text_line_per_problem(name: str, line: str, capsys: pytest.CaptureFixture[str]
                               ) -> None:
    path = BAD / name
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}{line}" in out, out


def test_text_through_the_console_script_and_stdin() -> None:
    bad = (BAD / "profile-update-request.missing-target.xml").read_bytes()
    good = FLOWS / "profile-update-request.xml"
    proc = subprocess.run([MCACM, "validate", str(good), "-"], input=bad,
                          capture_output=True, timeout=60)
    assert proc.returncode == 1
    out = proc.stdout.decode()
    assert f"{good}: valid (profile-update-request)" in out
    assert "<stdin>:12: /profile-update-request/migrated-user-id: " in out
    assert proc.stderr.decode() == "1 of 2 documents invalid\n"


def test_all_examples_valid_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(FLOWS.glob("*.xml"))
    assert main(["validate", *map(str, files)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(files) and all(": valid (" in line for line in out)
    assert main(["validate", "-q", *map(str, files)]) == 0
    assert capsys.readouterr() == ("", "")  # -q: nothing to say about valid documents


@pytest.mark.parametrize(("example", "edits", "expected"), [
    # TS 24.379 9A bodies, broken by one edit of the examples, found by their namespace
    ("fa-publish-pidf.xml", [("<tuple", "<tupl"), ("</tuple>", "</tupl>")],
     ":6: /presence/tupl: pidf: Element 'tupl': This element is not expected."),
    ("fa-simple-filter.xml", [("<filter ", "<filtre "), ("</filter>", "</filtre>")],
     ":8: /filter-set/filtre: simple-filter: Element 'filtre': This element is not expected."),
    ("fa-mcptt-info.xml", [("mcptt-Params>", "mcptt-params>")],
     ":4: /mcpttinfo/mcptt-params: mcptt-info: Element 'mcptt-params': This element is not "
     "expected."),
    ("fa-publish-pidf.xml", [("<presence", "<presense"), ("</presence>", "</presense>")],
     ": /: pidf: root element presense is not presence"),
])
def test_fa_documents_by_namespace(example: str, edits: list[tuple[str, str]], expected: str,
                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (FLOWS / example).read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    broken = tmp_path / example
    broken.write_text(text)
    assert main(["validate", str(broken)]) == 1
    out = capsys.readouterr().out
    assert f"{broken}{expected}" in out, out


def test_json_for_stdin(monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    data = (BAD / "success-without-partner-id.xml").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["validate", "--json", "-"]) == 1
    [report] = json.loads(capsys.readouterr().out)
    assert report["file"] == "<stdin>" and report["valid"] is False
    [problem] = report["problems"]
    assert problem["path"] == "/add-user-configuration-response/user-result[1]/partner-id"
    assert problem["stage"] == "rule" and problem["line"] and problem["sip_status"] == 400


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(FLOWS / "process-indication.xml"),
                 str(tmp_path / "missing.xml")]) == 2
    captured = capsys.readouterr()
    assert "missing.xml: cannot read" in captured.err and captured.out == ""
    assert main(["validate", "-", "-"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["validate"])
    assert exc.value.code == 2
