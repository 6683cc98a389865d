"""Every shell block of README.md and docs/*.md that starts servers or runs ``mcacm``, pasted
as a user would (issue 16): in a copy of examples/ (the example ports moved to free ones, so
that parallel runs do not collide), with the environment's ``mcacm`` on PATH as after
``. .venv/bin/activate``.

Rules the documents follow (docs/cli.md "Documentation blocks"):


- a line ending in ``&`` starts a server; the test waits until it listens and stops it (by
  PID) at the end of the file, or when a later block of the same file starts servers of its own;
- a block that starts no server runs against the example system of README.md "Running the
  servers" (FA server, both ACMSs, dave's ACMC approving): started if other servers (or none)
  are running;
- every other line is run with bash and must exit 0, or N where its comment says ``# exit N``;
  ``make`` lines are left out (their targets are tested by CI itself);
- a block preceded by ``<!-- not-run: why -->`` is illustrative only: :data:`NOT_RUN` is the
  whole list, so that it stays short.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_runtime_processes import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE_PORTS = ("5060", "5061", "5063", "5070", "5071", "5072", "5073", "5090")
NOT_RUN = {("README.md", "192.0.2.7"), ("conformance.md", "both roles"),
           ("cli.md", "test_packaging.py"), ("cli.md", "where-is-request-x"),
           ("cli.md", "foreground server"), ("scale-out.md", "sngrep")}
"""(file, words of the marker's reason) of the blocks marked ``<!-- not-run: ... -->``."""
STANDARD_SYSTEM = (
    "mcacm fa-server --config examples/config/partner/fa-server.toml &",
    "mcacm acms --config examples/config/primary/acms.toml &",
    "mcacm acms --config examples/config/partner/acms.toml &",
    "mcacm acmc --config examples/config/partner/acmc.toml --auto approve &",
)
COMMAND_TIMEOUT = 300.0
"""Generous: under load a peer send that failed once is retried after a back-off."""


@dataclass
class Block:
    file: str
    line: int
    commands: list[str]
    not_run: str | None = None


def blocks(path: Path) -> list[Block]:
    """The ``sh`` blocks of ``path`` that run something, commands joined over ``\\``."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"(<!-- not-run: (.*?) -->\n)?```sh\n(.*?)```", text, re.S):
        commands, current = [], ""
        for raw in m.group(3).splitlines():
            line = raw.rstrip()
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            if current.strip() and not current.lstrip().startswith("#"):
                commands.append(current.strip())
            current = ""
        if any(c.startswith("mcacm ") or is_server(c) for c in commands):
            out.append(Block(path.name, text[:m.start()].count("\n") + 1, commands,
                             m.group(2)))
    return out


def bare(command: str) -> str:
    """The command without its trailing comment (a ``#`` after a blank, outside quotes)."""
    quote = None
    for i, ch in enumerate(command):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].strip()
    return command.strip()


def is_server(command: str) -> bool:
    return bare(command).endswith("&")


def expected_exit(command: str) -> int:
    found = re.search(r"#.*\bexit (\d+)", command)
    return int(found.group(1)) if found else 0


@dataclass
class Lab:
    """A copy of examples/ with the example ports replaced, and the servers started in it."""

    home: Path
    ports: dict[str, str]
    servers: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                "PYTHONUNBUFFERED": "1"}

    def remap(self, text: str) -> str:
        return re.sub(r"(?<![\d.])(" + "|".join(EXAMPLE_PORTS) + r")(?!\d)",
                      lambda m: self.ports[m.group(1)], text)

    def start(self, command: str) -> None:
        line = self.remap(bare(command).rstrip("&").strip())
        log = open(self.home / f"server-{len(self.servers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(["bash", "-c", "exec " + line], cwd=self.home, env=self.env(),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.servers.append((line, proc))
        config = re.search(r"--config (\S+)", line)
        if config is not None:
            self._wait_listening(self.home / config.group(1), proc, line)

    def _wait_listening(self, config: Path, proc: subprocess.Popen[bytes], line: str) -> None:
        data = tomllib.loads(config.read_text())
        ports = [lst.get("port", 0) for lst in data.get("listen", [])
                 if lst.get("transport", "tcp") in ("tcp", "tls")]
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"{line} exited {proc.returncode}: "
                                         + self.logs())
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                assert time.monotonic() < deadline, f"{line} does not listen on {port}"
                time.sleep(0.05)
        if "acmc" in line.split():  # logged on: its REGISTER was answered
            log = self.home / f"server-{len(self.servers) - 1}.log"
            while "logged on" not in log.read_text(errors="replace"):
                assert proc.poll() is None and time.monotonic() < deadline, \
                    f"{line} did not log on: " + self.logs()
                time.sleep(0.05)

    def stop_servers(self) -> None:
        for line, proc in reversed(self.servers):  # each by its PID
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise AssertionError(f"{line} did not stop on SIGTERM") from None
        self.servers.clear()

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", self.remap(command)], cwd=self.home,
                              env=self.env(), capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.home.glob("server-*.log")))


def make_lab(tmp: Path) -> Lab:
    chosen: set[str] = set()
    while len(chosen) < len(EXAMPLE_PORTS):
        chosen.add(str(free_port()))
    lab = Lab(tmp, dict(zip(EXAMPLE_PORTS, sorted(chosen), strict=True)))
    shutil.copytree(ROOT / "examples", tmp / "examples",
                    ignore=shutil.ignore_patterns("demo", "*.sqlite*", "certs"))
    for path in [*(tmp / "examples" / "config").rglob("*.toml"),
                 *(tmp / "examples" / "interop" / "profiles").glob("*.toml")]:
        path.write_text(lab.remap(path.read_text()))
    return lab


def _documents() -> list[Path]:
    return [p for p in DOCS if blocks(p)]


def test_the_not_run_list_is_what_the_documents_mark() -> None:
    marked = [(b.file, b.not_run) for p in DOCS for b in blocks(p) if b.not_run]
    assert len(marked) == len(NOT_RUN), marked
    for file, why in marked:
        assert any(file == f and words in why for f, words in NOT_RUN), (file, why)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("doc", _documents(), ids=lambda p: p.name)
def test_every_shell_block_runs_as_documented(doc: Path, tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    try:
        for block in blocks(doc):
            if block.not_run:
                continue
            where = f"{block.file}:{block.line}"
            starts = [c for c in block.commands if is_server(c)]
            if starts:
                lab.stop_servers()
            elif [line for line, _ in lab.servers] != [lab.remap(bare(c).rstrip("&").strip())
                                                       for c in STANDARD_SYSTEM]:
                lab.stop_servers()
                for command in STANDARD_SYSTEM:
                    lab.start(command)
            for command in block.commands:
                if is_server(command):
                    lab.start(command)
                    continue
                if command.startswith("make "):
                    continue
                try:
                    done = lab.run(command)
                except subprocess.TimeoutExpired as exc:
                    raise AssertionError(f"{where}: {command}\nno exit in {COMMAND_TIMEOUT} s"
                                         f"\nservers:\n{lab.logs()}") from exc
                assert done.returncode == expected_exit(command), (
                    f"{where}: {command}\nexit {done.returncode}\nstdout:\n{done.stdout[-3000:]}"
                    f"\nstderr:\n{done.stderr[-3000:]}\nservers:\n{lab.logs()}")
    finally:
        lab.stop_servers()
