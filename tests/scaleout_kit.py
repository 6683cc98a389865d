"""examples/scale-out running for real: Kamailio with the shipped kamailio.cfg on free loopback
ports in front of ACMS workers started as processes from the shipped worker TOMLs (ports, the
database URL and the SIP timers rewritten), each stopped by its PID.

Used by tests/test_scaleout.py and bench/scaleout.py.  The workers log JSON (``--log-format
json``) to a file each; :meth:`Worker.events` reads it.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interop.peers import _bound, _wait_until, core_argv, free_port, sip_ping, spawn, stop
from tools import require_tool

ROOT = Path(__file__).resolve().parents[1]
SCALE_OUT = ROOT / "examples" / "scale-out"
LOOPBACK = "127.0.0.1"
SIP_TIMERS = '[sip]\nt1 = 0.1\nsend_timeout = 3.0\n'
"""Short SIP timers for tests: a silent peer is noticed in seconds, not 32 s."""


@dataclass
class Dispatcher:
    """examples/scale-out/kamailio.cfg running on ``port`` (UDP and TCP)."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    run: Path
    tls_port: int | None = None
    """Its TLS listener (started with a tls.cfg), else None."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def uri(self, transport: str = "udp") -> str:
        if transport == "tls":
            return f"sip:{LOOPBACK}:{self.tls_port};transport=tls"
        return f"sip:{LOOPBACK}:{self.port}" + ("" if transport == "udp"
                                               else f";transport={transport}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def dispatcher(workdir: Path, worker_ports: Sequence[int], *, peer_hop: str,
               ping_interval: int = 1, worker_timeout_ms: int = 1000,
               access_net: str = "127.0.0.1/32", port: int = 0, ready_timeout: float = 10.0,
               tls_config: Path | None = None) -> Iterator[Dispatcher]:
    """The shipped dispatcher config on ``port`` (0: a free one), its list naming
    ``worker_ports``; ready when it answers OPTIONS (Max-Forwards: 0); stopped by PID on
    leaving the block.  Start the workers first: its first probes then find them all.
    ``tls_config`` (a tls.cfg): with its TLS listener too (-A WITH_TLS), on a free port."""
    require_tool("kamailio")
    port = port or free_port()
    run = workdir / f"dispatcher-{port}"
    run.mkdir(parents=True)
    ds_list = run / "dispatcher.list"
    ds_list.write_text("".join(f"1 sip:{LOOPBACK}:{p}\n" for p in worker_ports))
    defines: dict[str, str | None] = {
        "SIP_PORT": str(port), "DS_LIST": f'"{ds_list}"', "PEER_HOP": f'"{peer_hop}"',
        "PING_INTERVAL": str(ping_interval), "WORKER_TIMEOUT": str(worker_timeout_ms),
        "ACCESS_NET": f'"{access_net}"'}
    tls_port = None
    if tls_config is not None:
        tls_port = free_port()
        defines.update({"WITH_TLS": None, "TLS_PORT": str(tls_port),
                        "TLS_CONFIG": f'"{tls_config}"'})
    log = run / "kamailio.log"
    proc = spawn(core_argv(SCALE_OUT / "kamailio.cfg", run, defines), log)
    try:
        _wait_until(lambda: sip_ping(port) is not None
                    and (tls_port is None or _bound(tls_port, "tcp")),
                    proc, log, "kamailio (dispatcher)", ready_timeout)
        yield Dispatcher(port, proc, log, run, tls_port)
    finally:
        stop(proc)


# --------------------------------------------------------------------------- workers


def worker_toml(n: int, port: int, dispatcher_port: int, store: str, extra: str = "") -> str:
    """examples/scale-out/worker-<n>.toml with its port, Kamailio's port and the ``[store]``
    table replaced (``store``: the TOML lines of the table), short SIP timers added, ``extra``
    (TOML) appended."""
    text = (SCALE_OUT / f"worker-{n}.toml").read_text()
    text = re.sub(r"^port = \d+", f"port = {port}", text, count=1, flags=re.M)
    text = text.replace(f"{LOOPBACK}:5060", f"{LOOPBACK}:{dispatcher_port}")
    text = re.sub(r"^\[store\]\n(?:(?!\[).*\n)*", f"[store]\n{store}\n\n", text, count=1,
                  flags=re.M)
    return text.replace("[sip]\n", SIP_TIMERS, 1) + extra


@dataclass
class Worker:
    """One ACMS worker process (``mcacm acms --config``)."""

    n: int
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def hop(self) -> str:
        return f"sip:{LOOPBACK}:{self.port}"

    def start(self, ready_timeout: float = 20.0) -> None:
        """Start (or restart) it; returns once it logged ``node.start`` (it listens)."""
        self.starts += 1
        self.log = self.config.with_suffix(f".{self.starts}.log")
        self.logs.append(self.log)
        argv = [sys.executable, "-m", "mcacm_sip.cli.main", "--log-format", "json", "acms",
                "--config", str(self.config)]
        self.proc = spawn(argv, self.log, cwd=ROOT)
        deadline = time.monotonic() + ready_timeout
        while not any(e.get("event") == "node.start" for e in self.events(self.log)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {self.n} did not start:\n"
                                     f"{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no goodbye, no last commit (what a crash is)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @staticmethod
    def events(log: Path) -> list[dict[str, Any]]:
        if not log.exists():
            return []
        out = []
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def all_events(self) -> list[dict[str, Any]]:
        """The events of every run of this worker, oldest first."""
        return [e for log in self.logs for e in self.events(log)]


@contextlib.contextmanager
def workers(workdir: Path, ports: Sequence[int], dispatcher_port: int, store: Sequence[str],
            extra: str = "") -> Iterator[list[Worker]]:
    """A worker per port from examples/scale-out/worker-<n>.toml (``store[n-1]``: the
    ``[store]`` lines of worker n); started, and stopped by PID on leaving the block."""
    ws = []
    for n, port in enumerate(ports, 1):
        config = workdir / f"worker-{n}.toml"
        config.write_text(worker_toml(n, port, dispatcher_port, store[n - 1], extra))
        ws.append(Worker(n, port, config, config.with_suffix(".log")))
    try:
        for w in ws:
            w.start()
        yield ws
    finally:
        for w in ws:
            w.stop()


def free_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]
