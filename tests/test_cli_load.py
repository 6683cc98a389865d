"""``mcacm send --count N --rate R`` (issue 16): a lab load-tests an ACMS from the command line,
as with SIPp -- here 200 add-user requests at 100/s, each for another user, to a running
partner ACMS, as its peer primary ACMS; the CSV statistics and the summary add up."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_runtime_processes import ROOT, WAIT, Proc, processes, write_configs

from mcacm_sip.cli.main import main
from mcacm_sip.runtime.load import CSV_FIELDS, percentile

MCACM = [sys.executable, "-m", "mcacm_sip.cli.main"]


def _hop_port(config: Path, key: str) -> str:
    line = next(x for x in config.read_text().splitlines() if x.startswith(key))
    return line.split(":")[-1].strip().strip('"')


@pytest.mark.timeout(120)
def test_200_requests_at_100_per_second_to_a_running_acms(tmp_path: Path) -> None:
    cfg = write_configs(tmp_path)
    partner_cfg = cfg["partner/acms"]
    partner_port = next(x.split("=")[1].strip() for x in partner_cfg.read_text().splitlines()
                        if x.startswith("port ="))
    primary_port = _hop_port(partner_cfg, '"sip:acms@primary.example"')
    stats = tmp_path / "load.csv"
    with processes() as procs:
        partner = Proc("partner", ["acms", "--config", str(partner_cfg)], tmp_path)
        procs.append(partner)
        partner.wait_for_event("node.start")
        run = subprocess.run(
            [*MCACM, "-q", "send", "add-user-configuration-request", "--count", "200",
             "--rate", "100", "--as", "acms", "--psi", "sip:acms@primary.example",
             "--listen", f"127.0.0.1:{primary_port}", "--to", "sip:acms@partner.example",
             "--via", f"udp:127.0.0.1:{partner_port}", "--requester",
             "sip:alice@primary.example", "--users", "sip:user{n}@primary.example",
             "--stats", str(stats), "--stats-interval", "0.5", "--timeout", "20", "--json"],
            capture_output=True, text=True, cwd=ROOT, timeout=WAIT * 3)
        events = partner.log_events()
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert (summary["sent"], summary["successful"], summary["failed"]) == (200, 200, 0)
    assert summary["verdicts"] == {"positive": 200} and summary["failures"] == {}
    rt = summary["response_time_ms"]
    assert 0 < rt["p50"] <= rt["p90"] <= rt["p99"] <= rt["max"]
    # the ACMS saw 200 distinct add-user transactions, one per user
    received = {e["transaction_id"] for e in events if e.get("event") == "acm.received"
                and e.get("flow") == "add-user-configuration-request"}
    assert len(received) == 200
    rows = list(csv.DictReader(stats.open()))
    assert rows and list(rows[0]) == list(CSV_FIELDS)
    last = rows[-1]
    assert (last["sent"], last["successful"], last["failed"], last["in_progress"]) == (
        "200", "200", "0", "0")
    assert int(last["retransmissions"]) == summary["retransmissions"]
    assert float(last["rt_p99_ms"]) == rt["p99"]
    sent = [int(r["sent"]) for r in rows]
    assert sent == sorted(sent)  # cumulative: never goes back


def test_load_against_nobody_counts_every_request_failed(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    # a closed UDP port: ICMP unreachable or Timer F; each request fails on its own
    code = main(["-q", "send", "add-user-configuration-request", "--count", "3", "--rate", "50",
                 "--as", "acms", "--psi", "sip:acms@primary.example", "--listen",
                 "127.0.0.1:0", "--to", "sip:acms@127.0.0.1:9", "--requester",
                 "sip:alice@primary.example", "--users", "sip:u{n}@primary.example",
                 "--timeout", "1", "--json"])
    assert code == 2  # --as acms needs a fixed --listen port: a usage error first
    assert "--listen" in capsys.readouterr().err
    code = main(["-q", "send", "add-user-configuration-request", "--count", "3", "--rate", "50",
                 "--to", "sip:acms@127.0.0.1:9", "--requester", "sip:alice@primary.example",
                 "--users", "sip:u{n}@primary.example", "--timeout", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 3 and out["sent"] == 0 and out["register"] == {"status": None}


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["send", "add-user-configuration-request", "--to", "sip:acms@127.0.0.1:9",
            "--requester", "sip:alice@primary.example", "--users", "sip:u@primary.example"]
    for extra, needle in ((["--count", "0"], "--count"), (["--count", "2", "--rate", "0"],
                                                           "--rate"),
                          (["--count", "2", "--transaction-id", "fixed"], "{n}"),
                          (["--count", "2", "--concurrency", "0"], "--concurrency")):
        assert main([*base, *extra]) == 2, extra
        assert needle in capsys.readouterr().err
    templated = ["send", "add-user-configuration-request", "--to", "sip:acms@127.0.0.1:9",
                 "--requester", "sip:a{n}@primary.example", "--users", "sip:u@primary.example",
                 "--count", "2"]
    assert main(templated) == 2
    assert "--as acms" in capsys.readouterr().err


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (
        50.0, 90.0, 99.0)
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


@pytest.mark.timeout(120)
def test_load_as_an_acmc_through_both_systems(tmp_path: Path) -> None:
    """As alice's ACMC (one REGISTER for the run) through the primary ACMS to the partner's
    policy and back (10.17.5.2, 10.17.7.2 steps 1-10): each request its own user."""
    cfg = write_configs(tmp_path)
    primary_cfg = cfg["primary/acms"]
    primary_port = next(x.split("=")[1].strip() for x in primary_cfg.read_text().splitlines()
                        if x.startswith("port ="))
    with processes() as procs:
        for name in ("primary/acms", "partner/acms"):
            proc = Proc(name.replace("/", "-"), ["acms", "--config", str(cfg[name])], tmp_path)
            procs.append(proc)
            proc.wait_for_event("node.start")
        run = subprocess.run(
            [*MCACM, "-q", "send", "add-user-configuration-request", "--count", "20",
             "--rate", "20", "--to", "sip:acms@primary.example", "--via",
             f"udp:127.0.0.1:{primary_port}", "--requester", "sip:alice@primary.example",
             "--users", "sip:acmc{n}@primary.example", "--target",
             "sip:dave@partner.example", "--timeout", "20", "--json"],
            capture_output=True, text=True, cwd=ROOT, timeout=WAIT * 3)
    summary = json.loads(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert summary["register"] == {"status": 200}
    assert (summary["sent"], summary["successful"], summary["failed"]) == (20, 20, 0)
