"""Group-related ACM (TS 23.280 10.17.4) between real ``mcacm`` processes configured from
examples/config/ (free ports, stores in a temporary directory): a group membership update the
partner's policy hands to its ACMC (``mcacm acmc --auto approve`` as dave) and an
interconnection group identity provision addressed to the duty functional alias, each started
by ``mcacm acmc`` as alice; what the partner applied is read with ``mcacm groups --json``
while it runs, while it is stopped and after it restarted (the state is the store's, not the
process's)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_runtime_processes import (
    EXAMPLE_PORTS,
    ROOT,
    WAIT,
    Proc,
    free_port,
    processes,
    write_configs,
)

from mcacm_sip.core.config import AcmcConfig
from mcacm_sip.runtime.acmc import AcmcNode
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.config import AcmcNodeConfig
from mcacm_sip.sip import Timers
from mcacm_sip.sip.aio import Listen

PRIMARY = "sip:acms@primary.example"
PARTNER = "sip:acms@partner.example"
DAVE = "sip:dave@partner.example"
DUTY = "sip:duty@partner.example"
COMMAND = "sip:grp-command@primary.example"
"""No partner policy rule matches it: dave decides its membership updates."""
OPEN = "sip:grp-open-1@primary.example"
"""The example partner policy approves adds to grp-open-* alone (10.17.3.2)."""
ERIN, FRANK = "sip:erin@partner.example", "sip:frank@partner.example"


def mcacm(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcacm_sip.cli.main", "-q", *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=WAIT * 2,
                          check=False)


def alice(cfg: dict[str, Path], *argv: str) -> dict[str, Any]:
    """``mcacm acmc`` as alice with one request; its final response (exit 0 required)."""
    done = mcacm("acmc", "--config", str(cfg["primary/acmc"]), "--json", *argv,
                 "--timeout", str(WAIT))
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    responses = [e for e in events if e["event"] == "response"]
    assert len(responses) == 1, events
    return dict(responses[0]["message"])


def applied(cfg: dict[str, Path]) -> dict[str, tuple[bool, list[str]]]:
    """``mcacm groups --json`` on the partner's configuration: group -> (provisioned,
    members); every record's home is the primary system."""
    done = mcacm("groups", "--config", str(cfg["partner/acms"]), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {r["peer"] for r in rows} <= {PRIMARY}
    return {r["group"]: (r["provisioned"], r["members"]) for r in rows}


def activate_duty(fa_port: str, partner_port: str) -> None:
    """dave activates the duty FA at the FA server process (24.379 9A.2.2.2 PUBLISH).
    ``mcacm acmc`` has no option for it, so a client of our library sends the PUBLISH as
    dave; the deliveries then go to dave's ``mcacm acmc`` process, which is logged on."""
    async def run() -> int:
        sip = SipSettings(listens=(Listen("udp", "127.0.0.1", 0),), transport="udp",
                          send_timeout=4.0, timers=Timers(t1=0.1, t2=0.4, t4=0.5),
                          trusted_hosts=frozenset({"127.0.0.1"}))
        holder = AcmcNode(AcmcNodeConfig(AcmcConfig(DAVE, PARTNER), sip))
        holder.set_hops({DUTY: f"sip:127.0.0.1:{fa_port}",
                         "*": f"sip:127.0.0.1:{partner_port}"})
        await holder.start(logon=False)
        try:
            return await holder.set_functional_alias(DUTY, True)
        finally:
            await holder.stop(logoff=False)

    assert asyncio.run(run()) == 200


@pytest.mark.timeout(180)
def test_group_update_and_provision_between_processes_survive_a_partner_restart(
        tmp_path: Path) -> None:
    ports = {p: str(free_port()) for p in EXAMPLE_PORTS}
    cfg = write_configs(tmp_path, ports=ports)
    with processes() as procs:
        def start(name: str, *args: str) -> Proc:
            proc = Proc(name, list(args), tmp_path)
            procs.append(proc)
            return proc

        fa = start("fa", "fa-server", "--config", str(cfg["partner/fa-server"]))
        primary = start("primary", "acms", "--config", str(cfg["primary/acms"]))
        partner = start("partner", "acms", "--config", str(cfg["partner/acms"]))
        for proc in procs:
            proc.wait_for_event("node.start")
        dave = start("dave", "acmc", "--config", str(cfg["partner/acmc"]), "--auto", "approve",
                     "--json")
        dave.wait_for_event("acmc.logon")
        activate_duty(ports["5072"], ports["5070"])
        assert fa.popen.poll() is None

        # 10.17.4: no partner policy rule for grp-command, so dave's ACMC decides
        update = alice(cfg, "--group-update", COMMAND, "--members", ERIN, FRANK,
                       "--operation", "add", "--urgency", "high", "--target", DAVE)
        assert update["result"]["code"] == "success", update
        assert update["handler"]["mc_service_id"] == DAVE
        assert (update["group_id"], update["operation"]) == (COMMAND, "add")
        # 10.17.4.2.2 via the FA: the partner resolves duty to its holder, dave
        provision = alice(cfg, "--provide-groups", COMMAND, OPEN, "--target-fa", DUTY)
        assert provision["result"]["code"] == "success", provision
        assert provision["handler"] == {"mc_service_id": DAVE, "functional_alias": DUTY}
        decided = {e["transaction_id"] for e in dave.log_events()
                   if e.get("event") == "acmc.decided"}
        assert len(decided) == 2  # both went to dave's ACMC, one decision each

        expected = {COMMAND: (True, [ERIN, FRANK]), OPEN: (True, [])}
        assert applied(cfg) == expected  # while the partner ACMS runs

        partner.stop(signal.SIGTERM)
        assert applied(cfg) == expected  # the store file alone, nobody serving
        partner = start("partner-again", "acms", "--config", str(cfg["partner/acms"]))
        partner.wait_for_event("node.start")
        assert applied(cfg) == expected

        # the restarted partner goes on from the stored state: erin joins grp-open-1 by
        # policy alone (10.17.3.2), frank leaves grp-command by dave's decision
        joined = alice(cfg, "--group-update", OPEN, "--members", ERIN, "--operation", "add",
                       "--target", DAVE)
        assert joined["result"]["code"] == "success"
        assert joined["handler"]["mc_service_id"] == PARTNER
        left = alice(cfg, "--group-update", COMMAND, "--members", FRANK,
                     "--operation", "delete", "--target", DAVE)
        assert left["result"]["code"] == "success", left
        assert left["handler"]["mc_service_id"] == DAVE
        assert applied(cfg) == {COMMAND: (True, [ERIN]), OPEN: (True, [ERIN])}

        # the primary's side (docs/cli.md "Group-related ACM at the primary"): no group state
        # beyond the transaction, so mcacm groups shows nothing there; mcacm inspect, while
        # the primary runs, shows the four group transactions with what they were about
        shown = mcacm("groups", "--config", str(cfg["primary/acms"]))
        assert shown.returncode == 0 and shown.stdout == "no group-related ACM applied yet\n"
        done = mcacm("inspect", str(cfg["primary/acms"]), "--all", "--json")
        assert done.returncode == 0, done.stderr
        txs = [t for t in json.loads(done.stdout)["transactions"] if t["group"] is not None]
        received = [e["transaction_id"] for e in primary.log_events()
                    if e.get("event") == "acm.received"
                    and e.get("flow") in ("group-membership-update-request",
                                          "interconnection-group-provision-request")]
        assert sorted(t["transaction_id"] for t in txs) == sorted(received)
        assert {(t["role"], t["state"], t["peer"], t["result"]) for t in txs} == {
            ("primary", "done", PARTNER, "success")}
        assert sorted((t["group"]["operation"] or "provision", tuple(t["group"]["groups"]),
                       tuple(t["group"]["users"]), t["group"]["urgency"]) for t in txs) == [
            ("add", (COMMAND,), (ERIN, FRANK), "high"), ("add", (OPEN,), (ERIN,), None),
            ("delete", (COMMAND,), (FRANK,), None), ("provision", (COMMAND, OPEN), (), None)]
        first = next(t["transaction_id"] for t in txs if t["group"]["urgency"] == "high")
        text = mcacm("inspect", str(cfg["primary/acms"]), "--transaction", first)
        assert text.returncode == 0, text.stderr
        assert f"    groups    {COMMAND}\n" in text.stdout
        assert f"    operation add {ERIN}, {FRANK} (urgency high)\n" in text.stdout
        assert "    result    success\n" in text.stdout


@pytest.mark.timeout(180)
@pytest.mark.parametrize("role", ["partner", "primary"])
def test_shipped_profile_passes_the_group_scenarios_against_the_example_servers(
        role: str, tmp_path: Path) -> None:
    """``mcacm conformance`` with examples/interop/profiles/mcacm-sip.toml against ``mcacm
    acms`` started from examples/config, as the profile's header says (ports replaced): the
    group scenarios pass (in role partner group-provision goes to the FA the decider holds:
    ``fa_held``, activated first with ``mcacm acmc --activate-fa`` as the profile says)."""
    ports = {p: str(free_port()) for p in EXAMPLE_PORTS}
    cfg = write_configs(tmp_path, ports=ports)
    profile = tmp_path / "profile.toml"
    text = (ROOT / "examples" / "interop" / "profiles" / "mcacm-sip.toml").read_text()
    for example in ("5060", "5070"):  # where the peer sends to the PSI the runner plays
        text = text.replace(f"127.0.0.1:{example}", f"127.0.0.1:{ports[example]}")
    profile.write_text(text.replace("wait = 5.0", "wait = 10.0"))
    scenarios = ["group-update-auto", "group-update-decided", "group-not-authorised",
                 "group-wrong-answer", "group-provision"]
    with processes() as procs:
        if role == "partner":
            procs.append(Proc("fa", ["fa-server", "--config", str(cfg["partner/fa-server"])],
                              tmp_path))
        procs.append(Proc(role, ["acms", "--config", str(cfg[f"{role}/acms"])], tmp_path))
        for proc in procs:
            proc.wait_for_event("node.start")
        if role == "partner":
            act = mcacm("acmc", "--config", str(cfg["partner/acmc"]), "--activate-fa",
                        "sip:duty@partner.example")
            assert act.returncode == 0, act.stderr
        peer = ports["5070" if role == "partner" else "5060"]
        done = mcacm("conformance", "--peer", f"sip:acms@127.0.0.1:{peer}", "--role", role,
                     "--profile", str(profile), "--json", "--only", *scenarios)
    report = json.loads(done.stdout)
    verdicts = {s["id"]: s["verdict"] for s in report["scenarios"]}
    expected = {"group-update-auto": "pass", "group-update-decided": "pass",
                "group-not-authorised": "pass", "group-wrong-answer": "pass",
                "group-provision": "pass"} if role == "partner" else {
                "group-update-decided": "pass", "group-not-authorised": "pass",
                "group-wrong-answer": "pass", "group-provision": "pass"}
    assert verdicts == expected, done.stdout + done.stderr
    assert done.returncode == 0
