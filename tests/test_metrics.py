"""The Prometheus endpoint of an ACMS (issue 16): a running partner ACMS with ``[metrics]``
is scraped before, during and after a demo-like run -- 20 add-user requests from its peer
primary ACMS (``mcacm send --count``), then a peer that stops answering: the counters move as
the procedures did (Results by value, SIP requests and answers by method and status, the
request -> Result histogram, commits), the 503 shed and the retries show, the gauges return."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_runtime_processes import ROOT, WAIT, Proc, free_port, processes, write_configs

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import Addressee, ProfileUpdateRequest, new_transaction_id
from mcacm_sip.core.config import ConfigError
from mcacm_sip.runtime.acmc import Decision, ProgrammableDecider
from mcacm_sip.runtime.lab import DAVE, DUTY, Lab, profile_xml
from mcacm_sip.runtime.metrics import parse_metrics

MCACM = [sys.executable, "-m", "mcacm_sip.cli.main"]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def retried(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "mcacm_acm_retries_total")


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.timeout(120)
def test_scraped_during_a_demo_like_run(tmp_path: Path) -> None:
    cfg = write_configs(tmp_path)
    partner_cfg = cfg["partner/acms"]
    text = partner_cfg.read_text()
    partner_port = next(x.split("=")[1].strip() for x in text.splitlines()
                        if x.startswith("port ="))
    primary_port = next(x for x in text.splitlines() if x.startswith('"sip:acms@primary'))
    primary_port = primary_port.split(":")[-1].strip().strip('"')
    # the shed below rests on the stray request's two sends' first attempts (see there):
    # they last [sip] send_timeout, longer than a loaded machine takes to send the next request
    assert "send_timeout = 3.0\n" in text
    text = text.replace("send_timeout = 3.0\n", "send_timeout = 15.0\n")
    partner_cfg.write_text(text + '\n[metrics]\nlisten = "127.0.0.1:0"\n'
                                  "\n[limits]\nmax_in_flight = 2\n")
    as_primary = ["--as", "acms", "--psi", "sip:acms@primary.example",
                  "--to", "sip:acms@partner.example", "--via", f"udp:127.0.0.1:{partner_port}",
                  "--requester", "sip:alice@primary.example"]
    with processes() as procs:
        partner = Proc("partner", ["acms", "--config", str(partner_cfg)], tmp_path)
        procs.append(partner)
        partner.wait_for_event("node.metrics")
        port = next(e["port"] for e in partner.log_events() if e.get("event") == "node.metrics")
        before = scrape(port)
        assert value(before, "mcacm_acm_results_total", role="partner", result="success") == 0
        assert value(before, "mcacm_open_transactions", role="partner") == 0

        load = subprocess.run(
            [*MCACM, "-q", "send", "add-user-configuration-request", *as_primary,
             "--listen", f"127.0.0.1:{primary_port}", "--users", "sip:u{n}@primary.example",
             "--count", "20", "--rate", "20", "--concurrency", "1", "--json"],
            capture_output=True, text=True, cwd=ROOT, timeout=WAIT * 2)
        assert load.returncode == 0, load.stdout + load.stderr
        after = scrape(port)
        assert value(after, "mcacm_acm_results_total", role="partner", result="success") == 20
        assert value(after, "mcacm_acm_request_result_seconds_count", role="partner") == 20
        assert value(after, "mcacm_sip_requests_total", direction="in", method="MESSAGE") == 20
        # each request: 200 to its MESSAGE; our indication and response each answered 200
        assert value(after, "mcacm_sip_responses_total", direction="out", method="MESSAGE",
                     status="200") == 20
        assert value(after, "mcacm_sip_responses_total", direction="in", method="MESSAGE",
                     status="200") == 40
        assert value(after, "mcacm_store_commit_seconds_count") >= 20
        assert value(after, "mcacm_open_transactions", role="partner") == 0
        assert value(after, "mcacm_pending_items") == 0
        assert value(after, "mcacm_shed_total", reason="overload") == 0

        # the primary goes away: our indication and response cannot be delivered.  The
        # backlog that [limits] max_in_flight bounds counts sends without an outcome, less those
        # issued under T1 ago.  The policy answered at once, so no decision is awaited and the
        # indication is not retried once its first attempt fails (core/acms/outbox.py
        # _MATTERS_WHILE); only the response is.  So the backlog is 2 only while both first
        # attempts run: from T1 after they were issued until [sip] send_timeout.  Wait until
        # that state holds: retransmissions (Timer E fires T1 after a UDP request was sent, RFC
        # 3261 17.1.2.2; the two sends were issued in the same step, so both are older than T1)
        # and no outcome for either yet (acm.sent in the partner's log)
        stray = ["--listen", f"127.0.0.1:{free_port()}", "--users", "sip:late@primary.example",
                 "--timeout", "1", "-q"]
        first = subprocess.run([*MCACM, "send", "add-user-configuration-request", *as_primary,
                                *stray], capture_output=True, text=True, cwd=ROOT, timeout=WAIT)
        assert first.returncode == 3, first.stdout + first.stderr  # no indication reached us
        events = partner.log_events()
        answered = {e.get("transaction_id") for e in events if e.get("event") == "acm.sent"}
        tid = next((e["transaction_id"] for e in events if e.get("event") == "acm.received"
                    and e.get("transaction_id") not in answered), None)
        assert tid is not None, "the partner logged no acm.received for the stray request"
        deadline = time.monotonic() + WAIT
        while True:
            late = scrape(port)
            resent = (value(late, "mcacm_sip_retransmissions_total")
                      - value(after, "mcacm_sip_retransmissions_total"))
            if resent >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        ended = [e for e in partner.log_events()
                 if e.get("event") == "acm.sent" and e.get("transaction_id") == tid]
        assert resent >= 2 and not ended, (resent, ended)
        shed = subprocess.run([*MCACM, "send", "add-user-configuration-request", *as_primary,
                               *stray], capture_output=True, text=True, cwd=ROOT, timeout=WAIT)
        assert shed.returncode == 5 and "503" in shed.stdout, shed.stdout + shed.stderr
        deadline = time.monotonic() + WAIT
        while True:  # the response's retry: send_timeout, then [timers] retry_initial (1 s)
            now = scrape(port)
            if retried(now) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert value(now, "mcacm_shed_total", reason="overload") == 1
    retries = {dict(k[1])["purpose"]: v for k, v in now.items()
               if k[0] == "mcacm_acm_retries_total"}
    assert retried(now) >= 1 and set(retries) <= {"indicate", "answer"}, retries
    assert value(now, "mcacm_open_transactions", role="partner") == 1
    assert value(now, "mcacm_sip_responses_total", direction="out", method="MESSAGE",
                 status="503") == 1
    # no per-user or per-id label anywhere: the label values come from bounded sets
    labels = {k for (_, pairs) in now for k, _ in pairs}
    assert labels <= {"direction", "method", "status", "role", "result", "reason", "purpose",
                      "le"}


def test_listen_must_be_an_ip_and_port() -> None:
    assert parse_metrics({}).listen is None
    assert parse_metrics({"metrics": {"listen": "[::1]:9464"}}).listen == ("::1", 9464)
    for bad in ("localhost:9464", "127.0.0.1", "127.0.0.1:99999", 9464):
        with pytest.raises(ConfigError, match=r"metrics\.listen"):
            parse_metrics({"metrics": {"listen": bad}})
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        parse_metrics({"metrics": {"port": 1}})


def test_a_metrics_port_in_use_names_itself(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = tmp_path / "acms.toml"
    config.write_text('psi = "sip:acms@x.example"\n[sip]\ntrust = "lab"\n'
                      f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    run = subprocess.run([*MCACM, "acms", "--config", str(config)], capture_output=True,
                         text=True, cwd=ROOT, timeout=WAIT)
    taken.close()
    assert run.returncode == 69, run.stderr
    assert f"[metrics] listen 127.0.0.1:{port}" in run.stderr
    assert f"or change [metrics] listen port in {config}" in run.stderr


@pytest.mark.timeout(120)
def test_every_node_scraped_during_a_lab_run(tmp_path: Path) -> None:
    """``[metrics]`` on the ACMCs and the FA server too (the lab's five nodes, in process):
    ALICE's Results, DAVE's pending download and decisions, the FA server's subscription,
    NOTIFYs and holders move as the procedures did; nothing before."""

    def update(lab: Lab, migrated: str, target: Addressee) -> ProfileUpdateRequest:
        return ProfileUpdateRequest(new_transaction_id(), lab.alice.core.me, target, migrated,
                                    profile_from_xml(profile_xml("Mike (updated)")), "please")

    async def main() -> tuple[Samples, ...]:
        decider = ProgrammableDecider(lambda request: Decision(True, "fine"))
        async with Lab.start(tmp_path, dave=decider, dave_online=False, metrics=True) as lab:
            ports = [node.metrics.address[1] for node in (lab.alice, lab.dave, lab.fa)
                     if node.metrics is not None and node.metrics.address is not None]
            assert len(ports) == 3
            before = [await asyncio.to_thread(scrape, port) for port in ports]
            mike = await lab.migrate_mike(WAIT)
            # DAVE offline: the request waits as a pending item (10.17.3.1) until he logs on
            handle = lab.alice.submit(update(lab, mike, Addressee(DAVE)))
            await asyncio.wait_for(asyncio.shield(handle.indicated), WAIT)
            await lab.dave.logon()
            assert (await handle.wait(WAIT)).result == "success"
            # by FA: the partner resolves DUTY (SUBSCRIBE); DAVE's activation delivers it
            handle = lab.alice.submit(update(lab, mike, Addressee(functional_alias=DUTY)))
            await asyncio.wait_for(asyncio.shield(handle.indicated), WAIT)
            assert await lab.dave.set_functional_alias(DUTY, True) == 200
            assert (await handle.wait(WAIT)).result == "success"
            held = await asyncio.to_thread(scrape, ports[2])
            assert await lab.dave.set_functional_alias(DUTY, False) == 200
            after = [await asyncio.to_thread(scrape, port) for port in ports]
        return (*before, held, *after)

    b_alice, b_dave, b_fa, held, alice, dave, fa = asyncio.run(main())
    for name, labels in (("mcacm_acmc_results_total", {"result": "success"}),
                         ("mcacm_acmc_decisions_total", {"decision": "approve"})):
        assert value(b_alice, name, **labels) == value(b_dave, name, **labels) == 0
    assert value(b_dave, "mcacm_acmc_pending_items_downloaded_total") == 0
    assert value(b_fa, "mcacm_fa_holders") == 0
    assert value(b_fa, "mcacm_fa_subscriptions_accepted_total") == 0

    # ALICE: three Results (MIKE's migration, two updates), her MESSAGEs and REGISTER
    assert value(alice, "mcacm_acmc_results_total", result="success") == 3
    assert value(alice, "mcacm_acmc_decisions_total", decision="approve") == 0
    assert value(alice, "mcacm_sip_requests_total", direction="out", method="MESSAGE") >= 3
    assert value(alice, "mcacm_sip_responses_total", direction="in", method="REGISTER",
                 status="200") >= 1
    # DAVE: one pending item downloaded, two decisions sent, two PUBLISHes answered 200
    assert value(dave, "mcacm_acmc_pending_items_downloaded_total") == 1
    assert value(dave, "mcacm_acmc_decisions_total", decision="approve") == 2
    assert value(dave, "mcacm_acmc_results_total", result="success") == 0
    assert value(dave, "mcacm_sip_responses_total", direction="in", method="PUBLISH",
                 status="200") == 2
    # the FA server: the partner's SUBSCRIBE, NOTIFYs, one holder while DUTY was active
    assert value(fa, "mcacm_fa_subscriptions_accepted_total") >= 1
    assert value(fa, "mcacm_sip_requests_total", direction="out", method="NOTIFY") >= 2
    assert value(fa, "mcacm_sip_requests_total", direction="in", method="PUBLISH") == 2
    assert value(held, "mcacm_fa_holders") == 1 and value(fa, "mcacm_fa_holders") == 0
    assert value(fa, "mcacm_fa_changes_total", change="activated") == 1
    assert value(fa, "mcacm_fa_changes_total", change="deactivated") == 1
    for samples in (alice, dave, fa):  # bounded label values only: no user, FA or id
        keys = {k for (_, pairs) in samples for k, _ in pairs}
        assert keys <= {"direction", "method", "status", "result", "decision", "change"}
