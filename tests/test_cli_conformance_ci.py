"""``mcacm conformance`` in CI (issue 16): ``--junit FILE`` (JUnit XML, one testcase per
scenario with its verdict and pcap), ``--fail-fast``, and scenario selection by name
(``--scenario``) or clause (``--clause``) -- run as a CI job would, against a running ACMS
process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree
from test_conformance import PARTNER_FIXTURES, LaxPartner, _profile, partner_peer, sync
from test_runtime_processes import ROOT, Proc, free_port, processes, write_configs

from mcacm_sip.cli.main import main
from mcacm_sip.conformance.catalogue import CATALOGUE, cites, select
from mcacm_sip.conformance.junit import NOT_RUN, junit_xml
from mcacm_sip.conformance.report import Verdict
from mcacm_sip.conformance.runner import Runner

PROFILE = ROOT / "examples" / "interop" / "profiles" / "mcacm-sip.toml"


def test_clause_selects_sub_clauses_by_dotted_path() -> None:
    by_clause = {c: {s.id for s in select("partner", clauses=[c])}
                 for c in ("10.17.5", "10.17.7.2", "21.4", "10.17")}
    assert by_clause["10.17.5"] == {"add-user", "remove-user"}
    assert "profile-update-approve" in by_clause["10.17.7.2"]
    assert "add-user" not in by_clause["10.17.7.2"]
    assert by_clause["21.4"] == {"invalid-document", "unknown-content-type"}
    assert by_clause["10.17"] >= by_clause["10.17.5"] | by_clause["10.17.7.2"]
    # dotted paths, not text prefixes: 10.17.5 is not 10.17.52, 10.1 is not 10.17
    assert not any(cites(s, "10.1") for s in CATALOGUE)
    # names and clauses together: their union, in catalogue order
    both = select("partner", ["duplicate"], ["10.17.5"])
    assert [s.id for s in both] == ["add-user", "duplicate", "remove-user"]
    # 10.17.4 selects the group-related scenarios, and only them (both roles)
    assert {s.id for s in select("partner", clauses=["10.17.4"])} == {
        "group-update-auto", "group-update-decided", "group-not-authorised",
        "group-wrong-answer", "group-provision"}
    assert [s.id for s in select("primary", clauses=["10.17.4.2.2"])] == [
        "group-not-authorised", "group-provision"]
    assert not any(s.id.startswith("group-") for s in select("partner", clauses=["10.17.7"]))


@pytest.mark.timeout(120)
def test_junit_report_of_a_clause_against_a_running_partner_acms(tmp_path: Path) -> None:
    cfg = write_configs(tmp_path)
    primary_port = free_port()  # where the partner routes sip:acms@primary.example: the runner
    text = cfg["partner/acms"].read_text()
    hop = next(line for line in text.splitlines() if line.startswith('"sip:acms@primary'))
    cfg["partner/acms"].write_text(text.replace(
        hop, f'"sip:acms@primary.example" = "sip:127.0.0.1:{primary_port}"'))
    partner_port = next(line.split("=")[1].strip() for line in text.splitlines()
                        if line.startswith("port ="))
    profile = tmp_path / "profile.toml"
    profile.write_text(PROFILE.read_text()
                       .replace('listen = "127.0.0.1:5060"', f'listen = "127.0.0.1:{primary_port}"')
                       .replace("t1 = 0.5", "t1 = 0.1"))
    junit, out = tmp_path / "conformance.xml", tmp_path / "results"
    with processes() as procs:
        acms = Proc("partner-acms", ["acms", "--config", str(cfg["partner/acms"])], tmp_path)
        procs.append(acms)
        acms.wait_for_event("node.start")
        run = subprocess.run(
            [str(Path(sys.executable).with_name("mcacm")), "-q", "conformance",
             "--peer", f"sip:acms@127.0.0.1:{partner_port}", "--role", "partner",
             "--profile", str(profile), "--clause", "10.17.5", "--scenario", "duplicate",
             "--junit", str(junit), "--out", str(out)],
            capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    doc = etree.parse(str(junit))
    suite = doc.getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["add-user", "duplicate", "remove-user"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("3", "0", "0", "0")
    for case in cases:
        props = {str(p.get("name")): str(p.get("value")) for p in case.iter("property")}
        assert props["verdict"] == "pass"
        assert props["clause"].startswith(("23.280 10.17.5", "23.280 10.17.2"))
        assert Path(props["pcap"]).is_file() and Path(props["pcap"]).parent == out
        assert case.findtext("system-out") == f"[[ATTACHMENT|{props['pcap']}]]"
        assert case.find("failure") is None and case.find("error") is None


@sync
async def test_fail_fast_stops_at_the_first_failure_and_junit_skips_the_rest(
        tmp_path: Path) -> None:
    scenarios = select("partner", ["invalid-document", "unknown-content-type", "add-user"])
    async with partner_peer(tmp_path, LaxPartner) as (partner, route):
        host, port = partner.addresses["udp"]
        async with Runner.open(_profile("partner", **PARTNER_FIXTURES), "partner",
                               f"sip:acms@{host}:{port}") as runner:
            route(runner.hop())
            report = await runner.run(scenarios=scenarios, fail_fast=True)
    assert [(r.id, r.verdict) for r in report.results] == [
        ("add-user", Verdict.PASS), ("invalid-document", Verdict.FAIL)]
    suite = etree.fromstring(junit_xml(report, scenarios)).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = suite.find("testcase[@name='invalid-document']/failure")
    assert failure is not None and "400" in (failure.get("message") or "")
    skipped = suite.find("testcase[@name='unknown-content-type']/skipped")
    assert skipped is not None and skipped.get("message") == NOT_RUN


def test_selection_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    peer = ["--peer", "sip:acms@127.0.0.1:9", "--role", "partner"]
    for argv, needle in (
        ([*peer, "--scenario", "nope"], "nope"),
        ([*peer, "--clause", "99.1"], "--clause 99.1"),
        ([*peer, "--only", "add-user", "--junit", str(tmp_path / "no" / "such.xml")],
         "--junit"),
    ):
        assert main(["conformance", *argv]) == 2, argv
        assert needle in capsys.readouterr().err, argv
