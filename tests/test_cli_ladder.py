"""``mcacm ladder`` and ``mcacm capture`` as a user runs them (the console script in a
subprocess): on a capture SIPp made (tshark on ``lo``), on our examples, on our own capture of
the demo, and with bad input."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from interop.peers import free_port, run_sipp, sipp_uas, spawn, stop
from tools import require_tools

from mcacm_sip.cli.main import main
from mcacm_sip.pcap import SipPacket, read_sip

ROOT = Path(__file__).resolve().parent.parent
MCACM = str(Path(sys.executable).parent / "mcacm")
DEMO = ROOT / "examples" / "demo"


def mcacm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MCACM, *args], capture_output=True, text=True, timeout=60)




# --------------------------------------------------------------------------- SIPp


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_ladder_of_a_capture_made_by_sipp(tmp_path: Path, transport: str) -> None:
    require_tools("sipp", "tshark")
    capture = tmp_path / "sipp.pcapng"
    probe = free_port()  # nobody listens: datagrams to it only show the capture is live
    with sipp_uas(tmp_path, transport=transport) as uas:  # type: ignore[arg-type]
        log = tmp_path / "tshark.log"
        # -P -l: a line per captured packet, so the test sees what dumpcap has
        tshark = spawn(["tshark", "-i", "lo", "-f", f"{transport} port {uas.port} or "
                        f"udp port {probe}", "-w", str(capture), "-P", "-l"], log)
        try:
            def shown(containing: str) -> int:
                text = log.read_text(errors="replace")
                assert tshark.poll() is None, text
                return sum(containing in line for line in text.splitlines())

            def carrying() -> int:  # packets with SIP, or TCP segments with data; no probes
                text = log.read_text(errors="replace")
                return sum(re.match(r"\s*\d+ ", line) is not None
                           and f"\u2192 {probe}" not in line
                           and ("MESSAGE" in line or re.search(r"\bLen=[1-9]", line) is not None)
                           for line in text.splitlines())

            deadline = time.monotonic() + 30
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                while not shown(f"\u2192 {probe}"):  # the capture filter is attached
                    assert time.monotonic() < deadline, "tshark captured nothing"
                    s.sendto(b"probe", ("127.0.0.1", probe))
                    time.sleep(0.1)
            run = run_sipp("uac_message.xml", uas.address, tmp_path, calls=2,
                           transport=transport)  # type: ignore[arg-type]
            assert run.stats.successful == 2, run.explain()
            # two MESSAGEs and their 200s are in: tshark's live one-pass output names them
            # SIP, or, over TCP, sometimes only "TCP segment of a reassembled PDU" -- count
            # the segments that carry data
            while carrying() < 4:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            stop(tshark)  # SIGTERM: tshark writes what it has and exits
    packets = list(read_sip(capture))
    assert len(packets) == 4, packets

    done = mcacm("ladder", str(capture), "--names", f"127.0.0.1:{uas.port}=sipp-uas")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    uac = f"127.0.0.1:{packets[0].src[1]}"
    assert lines[0].split() == ["sipp-uas", uac]  # named participants first
    labels = [line.strip(" |") for line in lines[1::2]]
    assert labels == ["MESSAGE mcpttinfo", "200 OK (MESSAGE)"] * 2
    arrows = [line.split()[1] for line in lines[2::2]]
    # the MESSAGEs go from the UAC (right column) to the UAS, the 200s back
    assert arrows == ["|<" + "-" * 24 + "|", "|" + "-" * 24 + ">|"] * 2

    doc = json.loads(mcacm("ladder", str(capture), "--json").stdout)
    assert [(m["src"], m["dst"], m["label"], m["transport"]) for m in doc] == [
        (uac, f"127.0.0.1:{uas.port}", "MESSAGE mcpttinfo", transport),
        (f"127.0.0.1:{uas.port}", uac, "200 OK (MESSAGE)", transport)] * 2
    assert doc[0]["t"] == 0.0 and doc[-1]["t"] >= doc[0]["t"]


# --------------------------------------------------------------------------- ours


def test_ladder_of_an_example_names_and_json() -> None:
    pcap = str(DEMO / "7-not-authorised" / "exchange.pcap")
    done = mcacm("ladder", pcap, "--names", "127.0.0.1:5063=bob", "--names",
                 "127.0.0.1=somebody")  # an IP alone names every port of it
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].split() == ["bob", "somebody"]
    assert "| profile-update-request  |" in done.stdout
    doc = json.loads(mcacm("ladder", pcap, "--json").stdout)
    assert [(m["src"], m["dst"], m["label"]) for m in doc] == [
        ("127.0.0.1:5063", "127.0.0.1:5060", "MESSAGE profile-update-request"),
        ("127.0.0.1:5060", "127.0.0.1:5063", "403 Forbidden (MESSAGE)")]


def test_tcp_connections_are_drawn_under_the_listening_address() -> None:
    doc = json.loads(mcacm("ladder", str(DEMO / "demo-tcp.pcap"), "--json").stdout)
    ends = {m["src"] for m in doc} | {m["dst"] for m in doc}
    assert ends == {f"127.0.0.1:{p}" for p in (5060, 5062, 5063, 5070, 5073, 5074, 5080)}


def test_two_nodes_connecting_from_one_ephemeral_port_keep_their_columns() -> None:
    # Linux picks a connect()'s ephemeral port per destination: two nodes' connections to
    # different peers can share a local port number (each a distinct connection)
    def register(listen: int, to: int) -> bytes:
        return (f"REGISTER sip:acms.example SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP 127.0.0.1:{listen};branch=z9hG4bK-{listen}\r\n"
                f"From: <sip:u{listen}@acms.example>;tag=a\r\nTo: <sip:u{listen}@acms.example>\r\n"
                f"Call-ID: c{listen}\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n").encode()
    from mcacm_sip.cli import ladder_cmd  # after cli.main (it imports main's helpers)

    shared = ("127.0.0.1", 40000)
    packets = [SipPacket(1.0, "tcp", shared, ("127.0.0.1", 5060), register(5063, 5060)),
               SipPacket(2.0, "tcp", shared, ("127.0.0.1", 5070), register(5073, 5070))]
    events, _ = ladder_cmd.events(packets)
    assert [(e.src, e.dst) for e in events] == [("127.0.0.1:5063", "127.0.0.1:5060"),
                                                ("127.0.0.1:5073", "127.0.0.1:5070")]


def test_capture_the_demo_then_draw_it(tmp_path: Path) -> None:
    out = tmp_path / "demo.pcap"
    done = mcacm("capture", "--out", str(out), "--", "demo", "-q", "--transport", "tcp")
    assert done.returncode == 0, done.stderr
    packets = list(read_sip(out))
    assert f"{len(packets)} SIP messages written to {out}" in done.stderr
    # every message once: as many as the demo's ladders draw, plus setup and teardown
    assert len(packets) > 150 and {p.transport for p in packets} == {"tcp"}
    doc = json.loads(mcacm("ladder", str(out), "--json").stdout)
    labels = [m["label"] for m in doc]
    assert labels.count("403 Forbidden (MESSAGE)") == 1
    assert "MESSAGE profile-update-request" in labels and "PUBLISH presence" in " ".join(labels)
    # the nodes' real (kernel-chosen) ports, one column per node
    assert len({m["src"] for m in doc}) == 7


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """In-process (the exit codes are the console script's; no interpreter start-up)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_usage_and_input_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = str(tmp_path / "x.pcap")
    assert run_main(capsys, "capture", "--out", out)[0] == 2
    assert run_main(capsys, "capture", "--out", out, "--", "ladder", "x")[0] == 2
    assert run_main(capsys, "capture", "--out", str(tmp_path / "no" / "x.pcap"), "--",
                    "demo")[0] == 69
    assert run_main(capsys, "ladder", out, "--names", "nonsense")[0] == 2
    assert run_main(capsys, "ladder", out, "--names", "host.example:5060=x")[0] == 2
    code, err = run_main(capsys, "ladder", "/nonexistent/x.pcap")
    assert code == 66 and "x.pcap" in err
    code, err = run_main(capsys, "ladder", str(ROOT / "README.md"))
    assert code == 65 and "not a pcap" in err
    empty = tmp_path / "empty.pcap"
    empty.write_bytes((DEMO / "7-not-authorised" / "exchange.pcap").read_bytes()[:24])
    code, err = run_main(capsys, "ladder", str(empty))
    assert code == 1 and "no SIP messages" in err
