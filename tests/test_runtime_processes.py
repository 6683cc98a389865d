"""The five ``mcacm`` processes on loopback, configured from examples/config/ (ports replaced by
free ones, stores in a temporary directory, UDP or -- by configuration only -- TCP): a profile
update to completion, with the partner ACMS SIGKILLed after step 4 and restarted; the
procedure completes exactly once.  And each of them answers over UDP and over TCP on its one
port, as shipped (RFC 3261 18)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from mcacm_sip.sip.aio import Listen, SipEndpoint

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "config"
EXAMPLE_PORTS = ("5060", "5061", "5070", "5071", "5072")
WAIT = 30.0
PROFILE = ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
           "<Name>Mike (night shift)</Name></mcptt-user-profile>")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_PORTS = random.Random()
_HANDED_OUT: set[int] = set()  # a test asks for several ports before binding any of them


def free_port() -> int:
    """A loopback port free for both UDP and TCP, below the kernel's ephemeral range: a port
    the kernel hands out is also handed to the outgoing connections of the nodes and tests
    that run meanwhile, and one of them took a port a lab chose minutes before it bound it
    (test_docs_run[cli.md]: "address already in use")."""
    low = _ephemeral_low()
    first = max(1024, low - 12000)
    while True:
        port = _PORTS.randrange(first, low)
        if port in _HANDED_OUT:
            if len(_HANDED_OUT) > (low - first) // 2:
                _HANDED_OUT.clear()  # long since bound or released
            continue
        with closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as udp, \
                closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as tcp:
            try:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port


def write_configs(tmp: Path, transport: str = "udp", ports: dict[str, str] | None = None
                  ) -> dict[str, Path]:
    """examples/config with each example port replaced by a free one (``ports``: example port
    -> the one used) and the hops' default transport set to ``transport`` (every example node
    listens on both UDP and TCP)."""
    ports = ports if ports is not None else {p: str(free_port()) for p in EXAMPLE_PORTS}
    pattern = re.compile(r"(?<=[:= ])(" + "|".join(EXAMPLE_PORTS) + r")\b")
    out = {}
    for side in ("primary", "partner"):
        (tmp / side).mkdir()
        for src in (EXAMPLES / side).glob("*.toml"):
            text = pattern.sub(lambda m: ports[m.group(1)], src.read_text())
            # short SIP timers: a dead peer is noticed in a second, not 32 s
            sip = f'[sip]\nt1 = 0.1\nsend_timeout = 3.0\ntransport = "{transport}"\n'
            text = text.replace("[sip]\n", sip, 1) if "[sip]\n" in text else text + "\n" + sip
            (tmp / side / src.name).write_text(text)
            out[f"{side}/{src.stem}"] = tmp / side / src.name
    return out


class Proc:
    def __init__(self, name: str, args: list[str], tmp: Path, stdout_pipe: bool = False
                 ) -> None:
        self.name = name
        self.err_path = tmp / f"{name}.{time.monotonic_ns()}.log"
        self.err = open(self.err_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "mcacm_sip.cli.main", "--log-format", "json", *args],
            stdout=subprocess.PIPE if stdout_pipe else subprocess.DEVNULL, stderr=self.err,
            stdin=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def log_events(self) -> list[dict[str, Any]]:
        lines = self.err_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for_event(self, event: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if any(e.get("event") == event for e in self.log_events()):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no {event}; log:\n{self.err_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self.err.close()


@contextmanager
def processes() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):  # by PID, each one
            proc.stop()


def read_events(stream: IO[bytes], until: str) -> list[dict[str, Any]]:
    """JSON lines from an ACMC's stdout up to and including the first event ``until``."""
    events: list[dict[str, Any]] = []
    while True:
        line = stream.readline()
        if not line:
            raise AssertionError(f"stdout ended before {until}: {events}")
        events.append(json.loads(line))
        if events[-1]["event"] == until:
            return events


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_profile_update_survives_partner_sigkill_after_step_4(transport: str, tmp_path: Path
                                                              ) -> None:
    cfg = write_configs(tmp_path, transport)
    (tmp_path / "profile.xml").write_text(PROFILE)
    with processes() as procs:
        def start(name: str, *args: str, pipe: bool = False) -> Proc:
            proc = Proc(name, list(args), tmp_path, pipe)
            procs.append(proc)
            return proc

        fa = start("fa", "fa-server", "--config", str(cfg["partner/fa-server"]))
        primary = start("primary", "acms", "--config", str(cfg["primary/acms"]))
        partner = start("partner", "acms", "--config", str(cfg["partner/acms"]))
        for proc in (fa, primary, partner):
            proc.wait_for_event("node.start")

        # 10.17.5: mike migrates (approved by the partner's policy)
        add = subprocess.run(
            [sys.executable, "-m", "mcacm_sip.cli.main", "-q", "acmc", "--config",
             str(cfg["primary/acmc"]), "--json", "--add-users", "sip:mike@primary.example",
             "--target", "sip:dave@partner.example", "--timeout", str(WAIT)],
            capture_output=True, cwd=ROOT, timeout=WAIT * 2, check=False)
        assert add.returncode == 0, add.stderr.decode()
        answer = [json.loads(x) for x in add.stdout.splitlines()][-1]
        migrated = answer["message"]["users"][0]["partner_id"]
        assert migrated == "sip:mike-1@partner.example"

        # 10.17.7.2 step 1; dave (partner ACMC) is not running: the request waits at the
        # partner (10.17.3.1)
        alice = start("alice", "acmc", "--config", str(cfg["primary/acmc"]), "--json",
                      "--update-profile", migrated, "--profile", str(tmp_path / "profile.xml"),
                      "--target", "sip:dave@partner.example", "--info", "night shift",
                      "--timeout", str(WAIT), pipe=True)
        assert alice.popen.stdout is not None
        first = read_events(alice.popen.stdout, "indication")  # step 4 reached the primary
        tid = first[-1]["transaction_id"]

        partner.stop(signal.SIGKILL)
        partner = start("partner-again", "acms", "--config", str(cfg["partner/acms"]))
        partner.wait_for_event("node.start")
        dave = start("dave", "acmc", "--config", str(cfg["partner/acmc"]), "--auto",
                     "approve", "--json")

        rest = read_events(alice.popen.stdout, "response")
        assert alice.popen.wait(WAIT) == 0
        tail = alice.popen.stdout.read().decode()
        responses = [e for e in first + rest if e["event"] == "response"]
        assert len(responses) == 1 and responses[0]["transaction_id"] == tid
        assert responses[0]["message"]["result"]["code"] == "success"
        assert responses[0]["message"]["handler"]["mc_service_id"] == "sip:dave@partner.example"
        assert "response" not in tail  # nothing doubled after the final answer

        dave.stop()
        decided = [e for e in dave.log_events() if e.get("event") == "acmc.decided"]
        assert [e["transaction_id"] for e in decided] == [tid]  # decided exactly once
        # every SIP transaction of dave's ACMC (REGISTER, MESSAGEs) ran on the configured one,
        # but that over UDP a request too large for it came over TCP (RFC 3261 18.1.1), which
        # every node listens on as shipped
        used = {e["transport"] for e in dave.log_events() if e.get("transport")}
        assert used == {transport} if transport == "tcp" else transport in used


@pytest.mark.timeout(120)
def test_every_example_node_answers_over_udp_and_tcp_on_its_port(tmp_path: Path) -> None:
    """Issue 12 rule 9, RFC 3261 18 ("All SIP elements MUST implement UDP and TCP") and 18.2.1
    (TCP on every port and interface UDP listens on): each node started from an example
    configuration, unchanged but for its port, answers OPTIONS over UDP and over TCP there."""
    ports = {p: str(free_port()) for p in EXAMPLE_PORTS}
    cfg = write_configs(tmp_path, ports=ports)
    with processes() as procs:
        for name, args in (("fa", ["fa-server", "--config", str(cfg["partner/fa-server"])]),
                           ("primary", ["acms", "--config", str(cfg["primary/acms"])]),
                           ("partner", ["acms", "--config", str(cfg["partner/acms"])]),
                           ("alice", ["acmc", "--config", str(cfg["primary/acmc"]),
                                      "--auto", "reject", "--json"]),
                           ("dave", ["acmc", "--config", str(cfg["partner/acmc"]),
                                     "--auto", "approve", "--json"])):
            procs.append(Proc(name, args, tmp_path))
        for proc in procs[:3]:
            proc.wait_for_event("node.start")
        for proc in procs[3:]:
            proc.wait_for_event("acmc.logon")  # listening (its ACMS reached it over UDP)

        async def probe() -> dict[tuple[str, str], int]:
            client = SipEndpoint([Listen("udp", "127.0.0.1", 0), Listen("tcp", "127.0.0.1", 0)])
            await client.start()
            try:
                answers = {}
                for example, port in ports.items():
                    for transport in ("udp", "tcp"):
                        request = client.new_request(
                            "OPTIONS", f"sip:127.0.0.1:{port};transport={transport}",
                            from_uri="sip:probe@test.invalid", to_uri=f"sip:127.0.0.1:{port}")
                        final = await client.send(request, timeout=WAIT)
                        answers[(example, transport)] = final.status
                return answers
            finally:
                await client.close()

        answers = asyncio.run(probe())
    assert answers == {(p, t): 200 for p in EXAMPLE_PORTS for t in ("udp", "tcp")}
