"""Homer/HEP (issue 16): a running partner ACMS with ``[capture] hep`` mirrors every SIP message
it sends and receives to a collector as HEPv3.  The test is the collector: a UDP socket whose
datagrams go into a pcap, which tshark decodes with a HEP dissector (examples/wireshark/hep.lua
where Wireshark has none of its own): the inner SIP is dissected, each correlation id is its
message's ACM procedure (its X-CID, or for an answer its request's), a REGISTER's its Call-ID,
and the capture agent id and password are the configured ones."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_runtime_processes import ROOT, WAIT, Proc, processes, write_configs
from tools import require_tool

from mcacm_sip.core.config import AcmcConfig, ConfigError
from mcacm_sip.pcap import PcapWriter, read_sip
from mcacm_sip.runtime.acmc import AcmcNode
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.base import SipSettings, TraceRecord
from mcacm_sip.runtime.config import AcmcNodeConfig, AcmsNodeConfig
from mcacm_sip.runtime.hep import CaptureSettings, hep3, parse_capture
from mcacm_sip.runtime.lab import ALICE, LOOPBACK, PRIMARY, primary_config
from mcacm_sip.runtime.wire import summarise
from mcacm_sip.sip.aio import Listen

LUA = ROOT / "examples" / "wireshark" / "hep.lua"
MCACM = [sys.executable, "-m", "mcacm_sip.cli.main"]
FIELDS = ("hep.capture_id", "hep.auth_key", "hep.correlation_id", "hep.src_port", "sip.Call-ID",
          "sip.Method", "sip.Status-Code", "sip.CSeq.method", "hep.src_ip6")


def tshark_fields(pcap: Path, port: int) -> list[dict[str, str]]:
    tshark = require_tool("tshark")
    argv = [tshark, "-n", "-X", f"lua_script:{LUA}", "-d", f"udp.port=={port},hep", "-r",
            str(pcap), "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]
    for name in FIELDS:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return [dict(zip(FIELDS, line.split("|"), strict=True)) for line in out.stdout.splitlines()]


@pytest.mark.interop
@pytest.mark.timeout(120)
def test_every_message_mirrored_as_hep_and_dissected_by_tshark(tmp_path: Path) -> None:
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    port = collector.getsockname()[1]
    cfg = write_configs(tmp_path)
    partner_cfg = cfg["partner/acms"]
    text = partner_cfg.read_text()
    partner_port = next(x.split("=")[1].strip() for x in text.splitlines()
                        if x.startswith("port ="))
    primary = next(x for x in text.splitlines() if x.startswith('"sip:acms@primary'))
    primary_port = primary.split(":")[-1].strip().strip('"')
    partner_cfg.write_text(text + f'\n[capture]\nhep = "udp:127.0.0.1:{port}"\n'
                                  'capture_id = 4711\npassword = "homer-secret"\n')
    packets: list[tuple[float, tuple[str, int], bytes]] = []
    with processes() as procs:
        partner = Proc("partner", ["acms", "--config", str(partner_cfg)], tmp_path)
        procs.append(partner)
        partner.wait_for_event("node.start")
        send = subprocess.run(
            [*MCACM, "-q", "send", "add-user-configuration-request", "--as", "acms",
             "--psi", "sip:acms@primary.example", "--listen", f"127.0.0.1:{primary_port}",
             "--to", "sip:acms@partner.example", "--via", f"udp:127.0.0.1:{partner_port}",
             "--requester", "sip:alice@primary.example", "--users",
             "sip:mike@primary.example", "--json"],
            capture_output=True, text=True, cwd=ROOT, timeout=WAIT)
        assert send.returncode == 0, send.stdout + send.stderr
        # our MESSAGE and its 200, the indication and the response and their 200s: 6
        collector.settimeout(WAIT)
        while len(packets) < 6:
            data, source = collector.recvfrom(65535)
            packets.append((time.time(), source, data))
    collector.close()
    pcap = tmp_path / "hep.pcap"
    with open(pcap, "wb") as f:
        writer = PcapWriter(f)
        for at, source, data in packets:
            writer.write(at, "udp", source, ("127.0.0.1", port), data)
        # and one message between IPv6 ends, encoded as the node would
        writer.write(time.time(), "udp", ("127.0.0.1", 40000), ("127.0.0.1", port), hep3(
            TraceRecord(time.time(), "out", "udp", ("::1", 5060), ("::1", 5070),
                        b"OPTIONS sip:x@[::1] SIP/2.0\r\nCall-ID: v6@test\r\n"
                        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"), 7, None, "v6@test"))
    rows = tshark_fields(pcap, port)
    assert len(rows) == 7
    mirrored, v6 = rows[:6], rows[6]
    # every ACM MESSAGE names its procedure in X-CID; an answer does not, it is its request's
    sip = [summarise(data[data.index(b"\x00\x00\x00\x0f") + 6:]) for _, _, data in packets]
    procedure = {s.call_id: s.procedure for s in sip if s.method == "MESSAGE"}
    assert len(set(procedure.values())) == 1 and None not in procedure.values(), procedure
    for row, s in zip(mirrored, sip, strict=True):
        assert row["hep.capture_id"] == "4711" and row["hep.auth_key"] == "homer-secret"
        assert row["sip.Call-ID"] == s.call_id
        assert row["hep.correlation_id"] == procedure[s.call_id] != s.call_id
    assert sorted(r["sip.Method"] for r in mirrored if r["sip.Method"]) == ["MESSAGE"] * 3
    assert [r["sip.Status-Code"] for r in mirrored if r["sip.Status-Code"]] == ["200"] * 3
    assert {r["sip.CSeq.method"] for r in mirrored} == {"MESSAGE"}
    assert len({r["sip.Call-ID"] for r in mirrored}) == 3  # one per MESSAGE and its answer
    assert (v6["hep.src_ip6"], v6["sip.Method"], v6["hep.correlation_id"]) == (
        "::1", "OPTIONS", "v6@test")


@pytest.mark.interop
@pytest.mark.timeout(60)
def test_a_register_correlates_by_its_call_id(tmp_path: Path) -> None:
    """A message of no ACM procedure (REGISTER, its 200) keeps the Call-ID as correlation id,
    as tshark decodes it."""
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(WAIT)
    port = collector.getsockname()[1]
    asyncio.run(_register(("127.0.0.1", port)))
    pcap = tmp_path / "register.pcap"
    with open(pcap, "wb") as f:
        writer = PcapWriter(f)
        for _ in range(4):
            data, source = collector.recvfrom(65535)
            writer.write(time.time(), "udp", source, ("127.0.0.1", port), data)
    collector.close()
    rows = tshark_fields(pcap, port)
    assert {r["sip.CSeq.method"] for r in rows} == {"REGISTER"} and len(rows) == 4
    assert all(r["sip.Call-ID"] and r["hep.correlation_id"] == r["sip.Call-ID"] for r in rows)


def test_capture_settings() -> None:
    assert parse_capture({}).hep is None
    settings = parse_capture({"capture": {"hep": "udp:[::1]:9060", "capture_id": 9}})
    assert (settings.hep, settings.capture_id, settings.password) == (("::1", 9060), 9, None)
    for bad in ("tcp:127.0.0.1:9060", "udp:homer:9060", "udp:127.0.0.1", "127.0.0.1:9060"):
        with pytest.raises(ConfigError, match=r"capture\.hep"):
            parse_capture({"capture": {"hep": bad}})
    with pytest.raises(ConfigError, match=r"capture\.capture_id"):
        parse_capture({"capture": {"capture_id": -1}})


async def _register(hep: tuple[str, int]) -> None:
    """An ACMS and an ACMC, both mirroring to ``hep``: the ACMC logs on, both stop."""
    sip = SipSettings(listens=(Listen("udp", "127.0.0.1", 0),), trusted_hosts=LOOPBACK)
    acms = AcmsNode(AcmsNodeConfig(primary_config(None), dataclasses.replace(
        sip, capture=CaptureSettings(hep, 1))))
    await acms.start()
    acmc = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, PRIMARY), dataclasses.replace(
        sip, hops={"*": acms.hop()}, capture=CaptureSettings(hep, 2))))
    try:
        await acmc.start()
    finally:
        await acmc.stop(logoff=False)
        await acms.stop()


def test_an_acmc_mirrors_its_register_too() -> None:
    """``[capture]`` is a table of every node: the ACMC's REGISTER (and the ACMS's answer)
    reach the collector from both ends, each with its own capture id."""
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(WAIT)
    hep = ("127.0.0.1", collector.getsockname()[1])
    asyncio.run(_register(hep))
    seen: list[tuple[int, bytes]] = []
    while len(seen) < 4:  # REGISTER out, in; 200 out, in
        data = collector.recv(65535)
        capture_id = int.from_bytes(data[data.index(b"\x00\x00\x00\x0c\x00\x0a") + 6:][:4],
                                    "big")
        seen.append((capture_id, data[data.index(b"\x00\x00\x00\x0f") + 6:].split(b"\r\n")[0]))
    collector.close()
    assert sorted(seen) == [(1, b"REGISTER sip:primary.example SIP/2.0"), (1, b"SIP/2.0 200 OK"),
                            (2, b"REGISTER sip:primary.example SIP/2.0"), (2, b"SIP/2.0 200 OK")]


@pytest.mark.interop
@pytest.mark.timeout(60)
def test_sngrep_as_the_collector_recovers_each_message(tmp_path: Path) -> None:
    """A second, independent HEP reader: sngrep listening for HEP (``-L``) writes what it
    decoded to a pcap -- each message with the addresses and ports it crossed."""
    sngrep = require_tool("sngrep")
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    out = tmp_path / "sngrep.pcap"
    proc = subprocess.Popen([sngrep, "-N", "-q", "-L", f"udp:127.0.0.1:{port}", "-O", str(out)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:  # listening once the port is taken
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    break
            assert proc.poll() is None, "sngrep exited"
            time.sleep(0.05)
        asyncio.run(_register(("127.0.0.1", port)))
        packets: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []
        while len(packets) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)  # sngrep writes as it decodes
            packets = [(p.src, p.dst, p.data.split(b"\r\n")[0])
                       for p in read_sip(out)] if out.exists() else []
    finally:
        proc.terminate()
        proc.wait(10)
    firsts = sorted(first for _, _, first in packets)
    assert firsts == [b"REGISTER sip:primary.example SIP/2.0"] * 2 + [b"SIP/2.0 200 OK"] * 2
    ports = {src[1] for src, _, _ in packets} | {dst[1] for _, dst, _ in packets}
    assert len(ports) == 2 and port not in ports  # the nodes' own ends, not the collector's
