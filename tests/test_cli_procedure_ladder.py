"""One procedure, one picture (issue 16): ``mcacm capture`` wraps ``send`` (one-shot or load)
and ``conformance`` and writes the ladder afterwards; ``mcacm ladder --transaction ID`` /
``--call-id`` keep one ACM procedure of a capture, with the nodes named from their TOML
configurations instead of raw ports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_runtime_processes import ROOT, WAIT, Proc, processes, write_configs
from tools import require_tool

import mcacm_sip.cli.main  # noqa: F401  (registers the subcommands before ladder_cmd)
from mcacm_sip.cli.ladder_cmd import node_names, parse_names
from mcacm_sip.pcap import read_sip
from mcacm_sip.runtime.wire import summarise

MCACM = [sys.executable, "-m", "mcacm_sip.cli.main"]
PROFILE = ROOT / "examples" / "interop" / "profiles" / "mcacm-sip.toml"


def mcacm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MCACM, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=WAIT * 2)


@pytest.mark.timeout(120)
def test_capture_send_and_conformance_then_one_transaction_named(tmp_path: Path) -> None:
    cfg = write_configs(tmp_path)
    partner_cfg = cfg["partner/acms"]
    text = partner_cfg.read_text()
    partner_port = next(x.split("=")[1].strip() for x in text.splitlines()
                        if x.startswith("port ="))
    primary = next(x for x in text.splitlines() if x.startswith('"sip:acms@primary'))
    primary_port = primary.split(":")[-1].strip().strip('"')
    pcap, conf_pcap, conf_ladder = (tmp_path / "load.pcap", tmp_path / "conf.pcap",
                                    tmp_path / "conf.txt")
    profile = tmp_path / "profile.toml"
    profile.write_text(PROFILE.read_text().replace(
        'listen = "127.0.0.1:5060"', f'listen = "127.0.0.1:{primary_port}"')
        .replace("t1 = 0.5", "t1 = 0.1"))
    with processes() as procs:
        partner = Proc("partner", ["acms", "--config", str(partner_cfg)], tmp_path)
        procs.append(partner)
        partner.wait_for_event("node.start")
        load = mcacm("-q", "capture", "--out", str(pcap), "--", "send",
                     "add-user-configuration-request", "--count", "2", "--rate", "20",
                     "--transaction-id", "proc-{n}", "--as", "acms",
                     "--psi", "sip:acms@primary.example", "--listen",
                     f"127.0.0.1:{primary_port}", "--to", "sip:acms@partner.example",
                     "--via", f"udp:127.0.0.1:{partner_port}",
                     "--requester", "sip:alice@primary.example",
                     "--users", "sip:u{n}@primary.example", "--json")
        assert load.returncode == 0, load.stdout + load.stderr
        assert json.loads(load.stdout)["successful"] == 2
        conf = mcacm("-q", "capture", "--out", str(conf_pcap), "--ladder", str(conf_ladder),
                     "--names", str(partner_cfg), "--", "conformance",
                     "--peer", f"sip:acms@127.0.0.1:{partner_port}", "--role", "partner",
                     "--profile", str(profile), "--scenario", "add-user")
        assert conf.returncode == 0, conf.stdout + conf.stderr
    # conformance under capture: its messages in the pcap, its ladder beside it, named
    conf_messages = list(read_sip(conf_pcap))
    assert any(p.data.startswith(b"MESSAGE ") for p in conf_messages)
    drawn = conf_ladder.read_text()
    assert "acms@partner.example" in drawn and "add-user-configuration-request" in drawn

    # the load capture holds both procedures; one transaction is one picture
    packets = list(read_sip(pcap))
    assert sum(p.data.startswith(b"MESSAGE ") for p in packets) == 6  # 2 x (req, ind, resp)
    ladder = mcacm("ladder", str(pcap), "--transaction", "proc-1", "--names", str(partner_cfg),
                   "--names", f"127.0.0.1:{primary_port}=primary-acms", "--json")
    assert ladder.returncode == 0, ladder.stderr
    rows = json.loads(ladder.stdout)
    labels = [r["label"] for r in rows]
    assert len(rows) == 6, labels  # the request, indication, response and their 200s
    assert {r["src"] for r in rows} | {r["dst"] for r in rows} == {
        "acms@partner.example", "primary-acms"}
    carried = [p for p in packets if b"proc-1" in p.data]
    call_ids = {str(summarise(p.data).call_id) for p in carried}
    assert len(call_ids) == 3  # each flow in its own MESSAGE
    one = mcacm("ladder", str(pcap), "--call-id", sorted(call_ids)[0])
    assert one.returncode == 0 and one.stdout.count("200 OK") == 1, one.stdout
    none = mcacm("ladder", str(pcap), "--transaction", "proc-9")
    assert none.returncode == 1 and "no SIP message of proc-9" in none.stderr


def test_names_from_node_configurations_and_files(tmp_path: Path) -> None:
    examples = ROOT / "examples" / "config"
    assert node_names(examples / "partner" / "acms.toml") == {
        "127.0.0.1:5070": "acms@partner.example"}
    assert node_names(examples / "primary" / "acmc.toml") == {
        "127.0.0.1:5061": "alice@primary.example"}
    names = tmp_path / "names.txt"
    names.write_text("# lab\n127.0.0.1:5080=kamailio\n[::1]:5060=acms-v6  # ipv6\n")
    assert parse_names([str(names), str(examples / "partner" / "fa-server.toml")]) == {
        "127.0.0.1:5080": "kamailio", "[::1]:5060": "acms-v6",
        "127.0.0.1:5072": "fa@partner.example"}


@pytest.mark.interop
def test_sngrep_match_expression_shows_the_same_procedure(tmp_path: Path) -> None:
    """The documented sngrep invocation (docs/cli.md): its match expression with a transaction
    id keeps exactly the dialogs ``mcacm ladder --transaction`` keeps."""
    sngrep = require_tool("sngrep")
    pcap = ROOT / "examples" / "demo" / "2a-direct-approve" / "exchange.pcap"
    packets = list(read_sip(pcap))
    found = (re.search(rb"<transaction-id>([^<]+)</", p.data) for p in packets)
    tid = next(m.group(1).decode() for m in found if m)
    ours = json.loads(mcacm("ladder", str(pcap), "--transaction", tid, "--json").stdout)
    out = tmp_path / "sngrep.pcap"
    subprocess.run([sngrep, "-I", str(pcap), "-N", "-q", "-O", str(out), tid], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    theirs = list(read_sip(out))
    assert len(theirs) == len(ours) > 2
    assert {summarise(p.data).call_id for p in theirs} == {
        summarise(p.data).call_id for p in packets if tid.encode() in p.data}
