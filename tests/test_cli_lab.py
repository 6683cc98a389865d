"""The lab operator's toolkit, part A (issue 16), run as a user runs it: the ``mcacm`` script of
the environment in a subprocess, with real arguments and real files.

Errors that name their cause (what, where, what to do), Ctrl-C on an ACMC whose ACMS is gone,
the interactive ACMC without a terminal, ``mcacm --version``, ``mcacm check`` and the generated
configuration reference (docs/config.md)."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import TextIO

import pytest
from test_runtime_processes import Proc, free_port, processes, write_configs

from mcacm_sip.cli.logs import ConsoleFormatter, PromptKeepingHandler
from mcacm_sip.runtime.reference import reference

ROOT = Path(__file__).resolve().parent.parent
EXIT_WAIT = 20.0
"""Generous: the failures these guard against took 32 s (Timer F) or forever."""


def mcacm() -> list[str]:
    """The installed ``mcacm`` script beside this interpreter (what a user runs)."""
    script = Path(sys.executable).parent / "mcacm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mcacm_sip.cli.main"]


def run(*args: str, cwd: Path = ROOT, timeout: float = 60.0, stdin: int | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*mcacm(), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL if stdin is None else stdin,
                          env=env)


# --------------------------------------------------------------------------- errors


def test_acms_whose_store_folder_is_missing_exits_78_naming_the_key(tmp_path: Path) -> None:
    cfg = write_configs(tmp_path)["primary/acms"]
    cfg.write_text(cfg.read_text().replace('path = "primary-acms.sqlite"',
                                           'path = "no-such-dir/primary-acms.sqlite"'))
    done = run("acms", "--config", str(cfg))
    assert done.returncode == 78, done.stderr
    assert "store.path" in done.stderr and "no-such-dir" in done.stderr
    assert "mkdir" in done.stderr  # what to do
    assert "Traceback" not in done.stderr


def test_address_in_use_names_the_address(tmp_path: Path) -> None:
    cfg = write_configs(tmp_path)["primary/acms"]
    port = cfg.read_text().split("port = ", 1)[1].split()[0]
    with closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as holder:
        holder.bind(("127.0.0.1", int(port)))
        done = run("acms", "--config", str(cfg))
    assert done.returncode == 69, done.stderr
    assert f"udp 127.0.0.1:{port}" in done.stderr
    assert "[[listen]]" in done.stderr and str(cfg) in done.stderr


def test_acmc_that_cannot_log_on_names_the_hop(tmp_path: Path) -> None:
    """Nobody listens where the ACMC's hop points: exit 69 naming the hop and the registrar
    (t1 = 0.1 in these configurations: Timer F is 6.4 s, not 32)."""
    cfg = write_configs(tmp_path)["primary/acmc"]
    hop = cfg.read_text().split('"*" = "sip:', 1)[1].split('"')[0]
    done = run("acmc", "--config", str(cfg), "--auto", "approve")
    assert done.returncode == 69, done.stderr
    assert f"udp {hop}" in done.stderr, done.stderr
    assert "sip:primary.example" in done.stderr and "[sip.hops]" in done.stderr
    assert "is the ACMS running" in done.stderr


def test_send_to_a_name_without_dns_says_dns_and_the_name() -> None:
    done = run("send", "add-user-configuration-request", "--to", "sip:acms@nothere.invalid",
               "--requester", "sip:alice@primary.example", "--users",
               "sip:mike@primary.example", "--timeout", "10", "-q")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "DNS lookup of nothere.invalid failed" in done.stdout
    assert "--via" in done.stdout  # what to do
    assert "no answer to REGISTER" not in done.stdout


def test_send_to_without_scheme_says_what_to_expects() -> None:
    done = run("send", "add-user-configuration-request", "--to", "acms@primary.example",
               "--requester", "sip:alice@primary.example", "--users",
               "sip:mike@primary.example")
    assert done.returncode == 2
    assert "--to acms@primary.example: give the ACMS's SIP URI" in done.stderr
    assert "sip:acms@primary.example" in done.stderr
    assert "HOST:PORT (e.g." not in done.stderr  # the --via syntax is not what --to takes


# --------------------------------------------------------------------------- the ACMC


def _acmc_logged_on_then_acms_killed(tmp_path: Path, started: list[Proc]) -> Proc:
    cfg = write_configs(tmp_path)
    # the ACMC with RFC 3261's default timers: an unanswered request takes 32 s (Timer F)
    acmc_cfg = cfg["primary/acmc"]
    acmc_cfg.write_text(acmc_cfg.read_text().replace("t1 = 0.1\nsend_timeout = 3.0\n", ""))
    acms = Proc("acms", ["acms", "--config", str(cfg["primary/acms"])], tmp_path)
    started.append(acms)
    acms.wait_for_event("node.start")
    acmc = Proc("acmc", ["acmc", "--config", str(cfg["primary/acmc"]), "--auto", "approve"],
                tmp_path)
    started.append(acmc)
    acmc.wait_for_event("acmc.logon")
    acms.popen.kill()  # the ACMS is gone: the logoff REGISTER gets no answer
    acms.popen.wait()
    return acmc


@pytest.mark.timeout(90)
def test_ctrl_c_on_an_acmc_whose_acms_is_gone_exits(tmp_path: Path) -> None:
    """Before: the logoff REGISTER waited for Timer F, 32 s, longer than the wait here."""
    with processes() as started:
        acmc = _acmc_logged_on_then_acms_killed(tmp_path, started)
        acmc.popen.send_signal(signal.SIGINT)
        assert acmc.popen.wait(EXIT_WAIT) == 0
        assert any(e.get("event") == "node.stopping" for e in acmc.log_events())


@pytest.mark.timeout(90)
def test_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    with processes() as started:
        acmc = _acmc_logged_on_then_acms_killed(tmp_path, started)
        acmc.popen.send_signal(signal.SIGINT)
        acmc.wait_for_event("node.stopping")
        acmc.popen.send_signal(signal.SIGINT)
        assert acmc.popen.wait(EXIT_WAIT) in (0, 130)  # 0: the first stop won the race


def test_interactive_acmc_without_a_terminal_refuses_to_start(tmp_path: Path) -> None:
    cfg = write_configs(tmp_path)["partner/acmc"]
    done = run("acmc", "--config", str(cfg), timeout=EXIT_WAIT)  # stdin: /dev/null
    assert done.returncode == 2
    assert "stdin is not a terminal" in done.stderr
    assert "--auto" in done.stderr and "--json" in done.stderr


class _Asker:
    def __init__(self) -> None:
        self.prompt: str | None = None
        self.out = io.StringIO()
        self.stdout: TextIO = self.out


def test_a_log_line_goes_above_a_waiting_prompt_which_is_redrawn() -> None:
    asker, err = _Asker(), io.StringIO()
    handler = PromptKeepingHandler(asker, err)
    handler.setFormatter(ConsoleFormatter())
    record = logging.LogRecord("mcacm", logging.INFO, "", 0, "MESSAGE from %s", ("x",), None)
    handler.emit(record)
    assert asker.out.getvalue() == ""  # no prompt: nothing re-drawn
    asker.prompt = "approve or reject? [a/r] "
    handler.emit(record)
    assert err.getvalue().count("\r\x1b[K") == 1  # the prompt line cleared first
    assert err.getvalue().rstrip().endswith("MESSAGE from x")
    assert asker.out.getvalue() == asker.prompt  # then the question again, below it


# --------------------------------------------------------------------------- version, check


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("mcacm ") and done.stdout.split()[1][0].isdigit()
    assert re.search(r" \(SIP parser: (c|python), log lines: (c|python), "
                     r"profile C14N: (c|python)\)$", done.stdout.rstrip())


def test_version_names_the_log_line_writer_the_environment_chose() -> None:
    """MCACM_LOG_LINES=python makes log lines in pure Python even when the C writer is built,
    and --version says so."""
    done = run("--version", env={**os.environ, "MCACM_LOG_LINES": "python"})
    assert done.returncode == 0 and ", log lines: python, " in done.stdout


def test_version_names_the_profile_canonicaliser_the_environment_chose() -> None:
    """MCACM_C14N=python has libxml2 write a received profile's canonical text even when the
    compiled writer is built, and --version says so; a value it does not know is refused."""
    done = run("--version", env={**os.environ, "MCACM_C14N": "python"})
    assert done.returncode == 0 and done.stdout.rstrip().endswith(", profile C14N: python)")
    bad = run("--version", env={**os.environ, "MCACM_C14N": "fast"})
    assert bad.returncode != 0 and "MCACM_C14N='fast': want auto, c or python" in bad.stderr


def test_version_names_the_sip_parser_the_environment_chose() -> None:
    """MCACM_SIP_PARSER=python runs the pure-Python header splitting even when the C one is
    built, and --version says so; a value it does not know is refused at start."""
    done = run("--version", env={**os.environ, "MCACM_SIP_PARSER": "python"})
    assert done.returncode == 0 and "(SIP parser: python, " in done.stdout
    bad = run("--version", env={**os.environ, "MCACM_SIP_PARSER": "fast"})
    assert bad.returncode != 0 and "MCACM_SIP_PARSER='fast': want auto, c or python" in bad.stderr


def test_check_accepts_every_example_and_prints_defaults() -> None:
    files = sorted(str(p) for p in (ROOT / "examples" / "config").glob("p*/*.toml"))
    done = run("check", *files)
    assert done.returncode == 0, done.stderr
    assert "acms, valid" in done.stdout and "acmc, valid" in done.stdout \
        and "fa-server, valid" in done.stdout
    assert "max_in_flight = 300  # default" in done.stdout  # the effective configuration
    assert 'psi = "sip:acms@primary.example"\n' in done.stdout


def test_check_shows_the_metrics_endpoint_of_every_role(tmp_path: Path) -> None:
    acmc, fa = tmp_path / "acmc.toml", tmp_path / "fa.toml"
    acmc.write_text('mc_service_id = "sip:a@x.example"\nacms_psi = "sip:acms@x.example"\n'
                    '[sip]\ntrust = "lab"\n[metrics]\nlisten = "127.0.0.1:9465"\n')
    fa.write_text('psi = "sip:fa@x.example"\ntrusted = []\n[sip]\ntrust = "lab"\n'
                  '[metrics]\nlisten = "[::1]:9466"\n')
    done = run("check", str(acmc), str(fa))
    assert done.returncode == 0, done.stderr
    assert 'listen = "127.0.0.1:9465"\n' in done.stdout
    assert 'listen = "[::1]:9466"\n' in done.stdout


@pytest.mark.parametrize(("text", "key"), [
    ('psi = "sip:acms@x.example"\n[sip]\ntrust = "lab"\n[limits]\nmax_in_flight = "many"\n',
     "limits.max_in_flight"),
    ('mc_service_id = "sip:a@x.example"\nacms_psi = "sip:acms@x.example"\n[sip]\n'
     'trust = "lab"\n[[listen]]\nport = 70000\n', "listen[0].port"),
    ('psi = "sip:fa@x.example"\ntrusted = []\n[[aliases]]\nuri = "duty"\n', "aliases[0].uri"),
    ('psi = "sip:acms@x.example"\n[sip]\ntrust = "lab"\n[store]\npath = "nowhere/a.sqlite"\n',
     "store.path"),
    # [metrics] is a table of every node (the ACMC's, the FA server's are checked too)
    ('mc_service_id = "sip:a@x.example"\nacms_psi = "sip:acms@x.example"\n[sip]\n'
     'trust = "lab"\n[metrics]\nlisten = "localhost:9464"\n', "metrics.listen"),
    ('psi = "sip:fa@x.example"\ntrusted = []\n[sip]\ntrust = "lab"\n[metrics]\n'
     'listen = "127.0.0.1"\n', "metrics.listen"),
])
def test_check_exits_78_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "node.toml").write_text(text)
    done = run("check", str(tmp_path / "node.toml"))
    assert done.returncode == 78
    assert f"node.toml: {key}: " in done.stderr


def test_config_reference_is_the_generated_one() -> None:
    """docs/config.md is `mcacm check --reference`; regenerate it with
    `mcacm check --reference --out docs/config.md`."""
    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8") == reference()


def test_reference_lists_every_key_each_loader_accepts() -> None:
    """Each key of the examples is in the reference under its table."""
    text = reference()
    for key in ("max_in_flight", "decision_timeout", "id_template", "profile_contains",
                "max_simultaneous_activations", "registration_expires", "udp_mtu_switch",
                "require_client_cert", "request_timeout", "advertise"):
        assert f"| `{key}` |" in text, key


# --------------------------------------------------------------------------- conformance traps


def _partner_system(tmp: Path, started: list[Proc]) -> tuple[dict[str, Path], Path, str]:
    """The example partner system (FA server, ACMS) on free ports, and the mcacm-sip interop
    profile moved to the same ports; returns the configurations, the profile, the peer URI."""
    ports = {p: str(free_port()) for p in ("5060", "5061", "5070", "5071", "5072")}
    cfg = write_configs(tmp, ports=ports)
    profile = tmp / "mcacm-sip.toml"
    text = (ROOT / "examples" / "interop" / "profiles" / "mcacm-sip.toml").read_text()
    profile.write_text(text.replace("127.0.0.1:5060", f"127.0.0.1:{ports['5060']}")
                       .replace("127.0.0.1:5070", f"127.0.0.1:{ports['5070']}"))
    for name in ("partner/fa-server", "partner/acms"):
        proc = Proc(name.replace("/", "-"), [name.split("/")[1], "--config", str(cfg[name])],
                    tmp)
        started.append(proc)
        proc.wait_for_event("node.start")
    return cfg, profile, f"sip:acms@127.0.0.1:{ports['5070']}"


def test_conformance_against_nobody_stops_before_the_first_scenario(tmp_path: Path) -> None:
    """Before: every scenario waited for Timer F and ended inconclusive (exit 3)."""
    done = run("conformance", "--peer", f"sip:acms@127.0.0.1:{free_port()}", "--role",
               "partner", timeout=EXIT_WAIT)
    assert done.returncode == 69, done.stderr
    assert "does not answer OPTIONS" in done.stderr
    assert "add-user ..." not in done.stderr  # no scenario was started


def test_conformance_peer_without_an_address_is_a_usage_error() -> None:
    done = run("conformance", "--peer", "sip:acms@partner.example", "--role", "partner",
               timeout=EXIT_WAIT)
    assert done.returncode == 2, done.stderr
    assert "names no address" in done.stderr and "[wire] hop" in done.stderr


@pytest.mark.timeout(120)
def test_conformance_says_when_the_deciding_user_is_registered_elsewhere(tmp_path: Path
                                                                        ) -> None:
    """The README's ACMC of dave still running: before, scenarios failed for no fault of the
    peer's (the peer delivered to that ACMC)."""
    with processes() as started:
        cfg, profile, peer = _partner_system(tmp_path, started)
        dave = Proc("dave", ["acmc", "--config", str(cfg["partner/acmc"]), "--auto",
                             "approve"], tmp_path)
        started.append(dave)
        dave.wait_for_event("acmc.logon")
        done = run("conformance", "--peer", peer, "--role", "partner", "--profile",
                   str(profile), "--only", "profile-update-approve", timeout=60)
    assert done.returncode == 69, done.stdout + done.stderr
    assert "sip:dave@partner.example is also registered at the peer" in done.stderr


@pytest.mark.timeout(120)
def test_fa_scenarios_run_from_the_command_line(tmp_path: Path) -> None:
    """`mcacm acmc --activate-fa` makes dave the FA's holder; the shipped profile names it and
    an alias nobody holds.  Before: both scenarios were n/a."""
    with processes() as started:
        cfg, profile, peer = _partner_system(tmp_path, started)
        act = run("acmc", "--config", str(cfg["partner/acmc"]), "--activate-fa",
                  "sip:duty@partner.example", timeout=60)
        assert act.returncode == 0, act.stderr
        done = run("conformance", "--peer", peer, "--role", "partner", "--profile",
                   str(profile), "--only", "fa-one-holder", "fa-no-holder", "--json",
                   timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    verdicts = {s["id"]: s["verdict"] for s in json.loads(done.stdout)["scenarios"]}
    assert verdicts == {"fa-one-holder": "pass", "fa-no-holder": "pass"}


def test_default_conformance_profile_is_package_data() -> None:
    """Installed from a wheel, the default --profile is the shipped one (not a path beside
    a checkout that is not there)."""
    from mcacm_sip import example_path

    assert example_path("interop/profiles/mcacm-sip.toml").is_file()
    done = run("conformance", "--peer", "sip:acms@127.0.0.1:5070", "--role", "partner",
               "--list", cwd=Path("/"))
    assert done.returncode == 0, done.stderr
    assert "fa-one-holder" in done.stdout and "n/a" not in done.stdout.split("fa-one")[1][:80]


# --------------------------------------------------------------------------- pending download


@pytest.mark.timeout(120)
def test_text_pending_download_shows_each_item(tmp_path: Path) -> None:
    """Dave is logged off when a profile update for him arrives; his download shows the
    request itself (before: only "1 pending item(s)", and the item was gone)."""
    ports = {p: str(free_port()) for p in ("5060", "5061", "5070", "5071", "5072")}
    cfg = write_configs(tmp_path, ports=ports)
    with processes() as started:
        for name in ("partner/fa-server", "partner/acms", "primary/acms"):
            proc = Proc(name.replace("/", "-"),
                        [name.split("/")[1], "--config", str(cfg[name])], tmp_path)
            started.append(proc)
            proc.wait_for_event("node.start")
        primary = ["--to", "sip:acms@primary.example", "--via",
                   f"udp:127.0.0.1:{ports['5060']}", "--requester", "sip:alice@primary.example"]
        add = run("send", "add-user-configuration-request", *primary, "--users",
                  "sip:mike@primary.example", "--target", "sip:dave@partner.example", "-q")
        assert add.returncode == 0, add.stdout + add.stderr
        update = run("send", "profile-update-request", *primary, "--target",
                     "sip:dave@partner.example", "--migrated-user",
                     "sip:mike-1@partner.example", "--profile",
                     str(ROOT / "examples" / "requests" / "new-profile.xml"), "--timeout", "3",
                     "-q")
        assert update.returncode == 3  # accepted, waiting for dave
        tid = update.stdout.split()[1]
        download = run("send", "pending-data-download-request", "--to",
                       "sip:acms@partner.example", "--via", f"udp:127.0.0.1:{ports['5070']}",
                       "--requester", "sip:dave@partner.example", "-q")
    assert download.returncode == 0, download.stdout + download.stderr
    assert f"item 1      profile-update-request {tid}" in download.stdout
    assert "requester:      sip:acms@primary.example" in download.stdout \
        or "requester:      sip:alice@primary.example" in download.stdout
    assert "migrated user:  sip:mike-1@partner.example" in download.stdout


def _options(port: int) -> None:
    """One SIP OPTIONS over UDP from a trusted address (RFC 3261 11)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as s:
        s.bind(("127.0.0.1", 0))
        me = s.getsockname()[1]
        s.sendto((f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-lab-{me}\r\n"
                  "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\n"
                  f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: probe-{me}\r\n"
                  "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(),
                 ("127.0.0.1", port))
        s.settimeout(EXIT_WAIT)
        assert s.recv(65536).startswith(b"SIP/2.0 200")


@pytest.mark.timeout(120)
def test_interactive_acmc_on_a_terminal_asks_and_keeps_its_prompt(tmp_path: Path) -> None:
    """On a pseudo-terminal: the ACMC starts, shows a request and asks; a log line written
    while the question waits is followed by the question again; the answer decides."""
    ports = {p: str(free_port()) for p in ("5060", "5061", "5070", "5071", "5072")}
    cfg = write_configs(tmp_path, ports=ports)
    with processes() as started:
        for name in ("partner/fa-server", "partner/acms", "primary/acms"):
            proc = Proc(name.replace("/", "-"),
                        [name.split("/")[1], "--config", str(cfg[name])], tmp_path)
            started.append(proc)
            proc.wait_for_event("node.start")
        main_fd, side_fd = pty.openpty()
        dave = subprocess.Popen([*mcacm(), "acmc", "--config", str(cfg["partner/acmc"])],
                                stdin=side_fd, stdout=side_fd, stderr=side_fd, cwd=ROOT)
        os.close(side_fd)
        screen = b""

        def until(text: bytes, start: int = 0) -> None:
            nonlocal screen
            deadline = time.monotonic() + EXIT_WAIT
            while text not in screen[start:]:
                assert time.monotonic() < deadline, screen.decode(errors="replace")
                ready, _, _ = select.select([main_fd], [], [], 0.5)
                if ready:
                    try:
                        screen += os.read(main_fd, 4096)
                    except OSError:  # the terminal closed: the process ended
                        break
            assert text in screen[start:], screen.decode(errors="replace")

        try:
            until(b"logged on")
            primary = ["--to", "sip:acms@primary.example", "--via",
                       f"udp:127.0.0.1:{ports['5060']}", "--requester",
                       "sip:alice@primary.example", "--target", "sip:dave@partner.example"]
            add = run("send", "add-user-configuration-request", *primary, "--users",
                      "sip:mike@primary.example", "-q")
            assert add.returncode == 0, add.stdout + add.stderr
            update = [*mcacm(), "send", "profile-update-request", *primary,
                      "--migrated-user", "sip:mike-1@partner.example", "--profile",
                      str(ROOT / "examples" / "requests" / "new-profile.xml"), "-q"]
            first = subprocess.Popen(update, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
            until(b"approve or reject? [a/r] ")
            asked = len(screen)
            # an OPTIONS arrives while the question waits: dave's ACMC logs it at INFO, above
            # the question, which is drawn again below it
            _options(int(ports["5071"]))
            until(b"\x1b[K")
            until(b"approve or reject? [a/r] ", start=asked)  # drawn again
            redraw = screen[asked:]
            assert redraw.index(b"\x1b[K") < redraw.index(b"OPTIONS") \
                < redraw.index(b"approve or reject? [a/r]"), redraw
            os.write(main_fd, b"a\r")
            until(b"reason (optional): ")
            os.write(main_fd, b"night shift ok\r")
            out, err = first.communicate(timeout=EXIT_WAIT)
            assert first.returncode == 0, out + err
            dave.send_signal(signal.SIGINT)
            assert dave.wait(EXIT_WAIT) == 0
        finally:
            if dave.poll() is None:
                dave.kill()
                dave.wait()
            os.close(main_fd)
