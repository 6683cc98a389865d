"""``mcacm demo``: every branch ends with the Result the change request implies, in-process over
UDP and TCP, through ``main()`` (text, table, JSON, exit codes) and as a user runs it (the
console script in a subprocess)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mcacm_sip import demo as demo_module
from mcacm_sip.acm.model import Addressee
from mcacm_sip.cli import demo_cmd
from mcacm_sip.cli.main import main
from mcacm_sip.demo import BRANCHES, Branch, Demo, DemoResult, automatic, run_demo
from mcacm_sip.runtime.lab import DAVE

# Written out here (not read from BRANCHES) so that a changed expectation fails a test.
EXPECTED = {
    "0": "success",                    # 10.17.5.2 add user configuration
    "1": "success",                    # automatic by local policy
    "2a": "success",                   # partner ACMC approves
    "2b": "rejected-by-user",          # partner ACMC rejects
    "3": "success",                    # FA with one holder
    "4": "success",                    # FA with nobody active, delivered on activation
    "5": "success",                    # partner ACMC offline, delivered on logon
    "6": "success",                    # primary ACMC offline for the answer
    "7": "not-authorised (SIP 403)",   # authorisation failure at the primary ACMS
    "8a": "unknown-user",
    "8b": "not-migrated",
    "9a": "success",                   # 10.17.4 group update, automatic by policy
    "9b": "success",                   # 10.17.4 group update, the partner ACMC decides
    "9c": "success",                   # 10.17.4.2.2 provision via the duty FA
}


def labels(result: DemoResult, key: str) -> list[str]:
    """``sender -> receiver: label`` of each message of branch ``key``."""
    branch = next(b for b in result.branches if b.key == key)
    return [f"{m['from']} -> {m['to']}: {m['label']}" for m in branch.to_json()["messages"]]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_every_branch_ends_with_its_result(transport: str, tmp_path: Path) -> None:
    result = asyncio.run(run_demo(transport, keep=tmp_path / "stores"))  # type: ignore[arg-type]
    assert {b.key: b.actual for b in result.branches} == EXPECTED
    assert result.ok
    # the stores were kept where asked, one SQLite file per ACMS
    assert {p.name for p in (tmp_path / "stores").glob("*.sqlite")} == {
        "primary.sqlite", "partner.sqlite"}

    # each branch's ladder shows the exchanges that make it what it is
    assert "partner-acms -> primary-acms: MESSAGE add-user-configuration-response" in labels(
        result, "0")
    auto = labels(result, "1")
    assert not any("partner-acmc" in line for line in auto)  # nobody was asked
    assert "primary-acms -> primary-acmc: MESSAGE profile-update-response" in auto
    assert "partner-acms -> partner-acmc: MESSAGE profile-update-request" in labels(result, "2a")
    fa3 = labels(result, "3")
    assert "partner-acmc-2 -> fa-server: PUBLISH presence expires=4294967295" in fa3
    assert "partner-acms -> partner-acmc-2: MESSAGE profile-update-request" in fa3
    fa4 = labels(result, "4")
    publish = fa4.index("partner-acmc -> fa-server: PUBLISH presence expires=4294967295")
    indication = fa4.index("primary-acms -> primary-acmc: MESSAGE process-indication")
    delivered = fa4.index("partner-acms -> partner-acmc: MESSAGE profile-update-request")
    assert indication < publish < delivered  # stored first, delivered on activation
    offline = labels(result, "5")
    logon = offline.index("partner-acmc -> partner-acms: REGISTER expires=600")
    assert offline.index("partner-acms -> partner-acmc: MESSAGE pending-data-notification") \
        > logon
    assert "partner-acms -> partner-acmc: MESSAGE pending-data-download-response" in offline
    primary_side = labels(result, "6")
    assert primary_side.index("primary-acmc -> primary-acms: REGISTER expires=0") < \
        primary_side.index("partner-acms -> primary-acms: MESSAGE profile-update-response") < \
        primary_side.index("primary-acms -> primary-acmc: MESSAGE pending-data-download-response")
    # 10.17.7.2 step 2: refused at the primary, nothing forwarded; the Warning says why
    refused = next(b for b in result.branches if b.key == "7")
    assert "bob's ACMC got: 403 not-authorised: sip:bob@primary.example may not send " \
        "profile-update-request" in refused.notes
    assert labels(result, "7") == [
        "primary-acmc-2 -> primary-acms: MESSAGE profile-update-request",
        "primary-acms -> primary-acmc-2: 403 Forbidden (MESSAGE)"]
    assert "primary-acms -> partner-acms: MESSAGE remove-user-configuration-request" in labels(
        result, "8b")
    # 10.17.4: automatic (nobody asked), by the partner ACMC, and the provision via the FA
    group_auto = labels(result, "9a")
    assert not any("partner-acmc" in line for line in group_auto)
    assert "primary-acms -> primary-acmc: MESSAGE group-membership-update-response" in group_auto
    assert "partner-acms -> partner-acmc: MESSAGE group-membership-update-request" in labels(
        result, "9b")
    provision = labels(result, "9c")
    assert "partner-acms -> partner-acmc-2: MESSAGE interconnection-group-provision-request" \
        in provision
    assert "partner-acms -> primary-acms: MESSAGE interconnection-group-provision-response" \
        in provision
    notes = next(b for b in result.branches if b.key == "9c").notes
    assert "partner keeps sip:grp-command@primary.example: provisioned=yes, members=" \
        "sip:erin@partner.example" in notes


def test_text_output_has_ladders_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    for branch in BRANCHES:
        assert f"=== {branch.key}. {branch.title}" in out
    assert "primary-acmc              primary-acms" in out  # a ladder's column heads
    assert "14/14 branches ended with the expected Result" in out
    assert "demo: 8b Removed user" in err  # progress on stderr


def test_json_lists_every_branch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--transport", "tcp"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["transport"] == "tcp"
    assert {b["key"]: b["actual"] for b in doc["branches"]} == EXPECTED
    assert all(b["ok"] and b["messages"] for b in doc["branches"])
    assert doc["participants"]["fa-server"]["uri"] == "sip:fa@partner.example"


def test_a_wrong_result_fails_the_run(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A branch whose Result differs from the expected one makes the exit status 1."""
    wrong = Branch("x", "automatic, expecting a rejection", "10.17.3.2", "rejected-by-policy",
                   automatic)

    async def with_wrong(*args: object, **kwargs: object) -> DemoResult:
        return await run_demo(*args, branches=(BRANCHES[0], wrong), **kwargs)  # type: ignore[arg-type, misc]

    monkeypatch.setattr(demo_cmd, "run_demo", with_wrong)
    assert main(["demo", "-q"]) == 1
    out = capsys.readouterr().out
    assert "rejected-by-policy" in out and "FAIL" in out
    assert "1/2 branches ended with the expected Result" in out


def test_a_broken_branch_is_reported_not_raised() -> None:
    async def broken(demo: Demo) -> str:
        raise RuntimeError("boom")

    result = asyncio.run(run_demo("udp", branches=(Branch("b", "broken", "-", "success",
                                                          broken),)))
    assert not result.ok
    assert result.branches[0].actual == "error: boom"


def test_a_step_that_never_happens_is_a_fail_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting for dave to be asked about a request the partner's policy answers itself ends
    at the step timeout with a row that says so; the next branch still runs."""
    monkeypatch.setattr(demo_module, "STEP_TIMEOUT", 0.3)

    async def wrong_wait(demo: Demo) -> str:
        handle = demo.alice.submit(demo.update(Addressee(DAVE), demo_module.GHOST))
        demo.note("sent an update for an unknown user")
        await demo.decide(demo.dave_decides, DAVE, handle, True, "never")
        return "asked"

    result = asyncio.run(run_demo("udp", branches=(
        Branch("w", "waits in vain", "-", "success", wrong_wait), BRANCHES[0])))
    assert result.branches[0].actual == "timed out after: sent an update for an unknown user"
    assert result.branches[1].actual == "success"
    assert not result.ok


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--transport", "sctp"])
    assert exc.value.code == 2
    (tmp_path / "something").write_text("x")
    assert main(["demo", "--keep", str(tmp_path)]) == 2  # --keep wants a new/empty dir
    assert "must be a new or empty directory" in capsys.readouterr().err


def test_console_script_as_a_user_runs_it(tmp_path: Path) -> None:
    mcacm = Path(sys.executable).with_name("mcacm")
    assert mcacm.exists(), "the console script is installed with the package"
    proc = subprocess.run([str(mcacm), "demo", "-q"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for key, expected in EXPECTED.items():
        row = next(line for line in lines if line.startswith(f"{key} "))
        assert row.split()[-1] == "ok" and expected in row
    assert proc.stderr == ""  # -q: only the table
