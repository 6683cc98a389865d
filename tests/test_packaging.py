"""What a lab gets from ``pip install mcacm-sip`` (issue 16 "Packaging"): the wheel carries the
example systems, interop profiles, SIPp scenarios, the Wireshark script and the systemd unit;
installed from it, ``mcacm`` finds them without a checkout; ``mcacm init`` writes a system that
``mcacm check`` accepts and that runs; the systemd unit is one systemd accepts."""

from __future__ import annotations

import configparser
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import zipfile
from contextlib import closing
from importlib.util import find_spec
from pathlib import Path

import pytest
from test_cli_lab import mcacm, run
from test_runtime_processes import Proc, processes

from mcacm_sip.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("config/primary/acms.toml", "config/partner/fa-server.toml",
           "config/hardened/make-certs.sh", "interop/profiles/mcacm-sip.toml",
           "interop/sipp/foreign-primary.xml", "interop/kamailio/kamailio.cfg",
           "wireshark/mcacm-xml.lua", "requests/new-profile.xml", "systemd/mcacm@.service")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT),
                           "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' scratch in the checkout
    (found,) = out.glob("mcacm_sip-*.whl")
    return found


@pytest.mark.timeout(400)
def test_the_wheel_ships_the_examples(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SHIPPED:
        assert f"mcacm_sip/examples/{name}" in names, name
    assert not any("/demo/" in n for n in names)  # the generated pcaps stay in the checkout
    # every module of the package (a new subpackage must be listed in pyproject.toml)
    for module in (ROOT / "mcacm_sip").rglob("*.py"):
        assert module.relative_to(ROOT).as_posix() in names, module
    # the compiled parts' types, and the parts themselves when this machine builds them here
    for part in ("mcacm_sip/sip/_cparse", "mcacm_sip/cli/_logline", "mcacm_sip/acm/_c14n"):
        assert f"{part}.pyi" in names
        if find_spec(part.replace("/", ".")) is not None:
            assert any(n.startswith(f"{part}.") and n.endswith(".so") for n in names), part


@pytest.mark.timeout(400)
def test_installed_from_the_wheel_mcacm_finds_its_examples(wheel: Path, tmp_path: Path
                                                           ) -> None:
    """A fresh environment with only the wheel (its dependencies borrowed from this one):
    the default conformance profile and the example configurations are there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    ours = sysconfig.get_paths()["purelib"]
    (site / "deps.pth").write_text(ours + "\n")  # lxml, aiosipua ...; not our editable finder
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                           "install", "--no-deps", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    installed = str(venv / "bin" / "mcacm")
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import mcacm_sip; print(mcacm_sip.example_path())"],
                           capture_output=True, text=True, cwd="/", check=True).stdout.strip()
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout
    listing = subprocess.run([installed, "conformance", "--peer", "sip:acms@127.0.0.1:5070",
                              "--role", "partner", "--list"], capture_output=True, text=True,
                             cwd="/", timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "fa-one-holder" in listing.stdout
    check = subprocess.run([installed, "check", "-q", f"{where}/config/partner/acms.toml"],
                           capture_output=True, text=True, cwd="/", timeout=60)
    assert check.returncode == 0, check.stderr


def _four_free_ports() -> int:
    """A base port whose next three are free too (UDP and TCP)."""
    for base in range(20000, 60000, 97):
        ok = True
        for port in range(base, base + 4):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with closing(socket.socket(socket.AF_INET, kind)) as s:
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError:
                        ok = False
        if ok:
            return base
    raise AssertionError("no four consecutive free ports")


@pytest.mark.timeout(120)
def test_init_writes_a_system_that_check_accepts_and_that_runs(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    done = run("init", str(lab), "--domain", "lab.example", "--port",
               str(_four_free_ports()))
    assert done.returncode == 0, done.stderr
    assert (lab / "certs" / "acms.pem").stat().st_mode & 0o077 == 0  # the key: owner only
    checked = run("check", "-q", *(str(p) for p in sorted(lab.glob("*.toml"))))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("valid") == 3
    with processes() as started:
        for role in ("fa-server", "acms"):
            proc = Proc(role, [role, "--config", str(lab / f"{role}.toml")], tmp_path)
            started.append(proc)
            proc.wait_for_event("node.start")
        # the ACMC logs on at the ACMS, then its user takes the FA at the FA server
        act = run("acmc", "--config", str(lab / "acmc.toml"), "--activate-fa",
                  "sip:duty@lab.example")
    assert act.returncode == 0, act.stderr
    again = run("init", str(lab), "--domain", "lab.example")
    assert again.returncode == 2 and "--force" in again.stderr


def test_init_refuses_a_bad_domain(tmp_path: Path) -> None:
    done = run("init", str(tmp_path / "x"), "--domain", "not a domain")
    assert done.returncode == 2 and "--domain" in done.stderr


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "examples" / "systemd" / "mcacm@.service")
    return unit


@pytest.mark.parametrize("role", ["acms", "fa-server"])
def test_systemd_unit_runs_real_mcacm_commands(role: str) -> None:
    service = _unit()["Service"]
    for key in ("ExecStartPre", "ExecStart"):
        argv = shlex.split(service[key].replace("%i", role))
        assert argv[0] == "/opt/mcacm/bin/mcacm"
        build_parser().parse_args(argv[1:])  # exits 2 on a wrong option
    assert set(service["RestartPreventExitStatus"].split()) == {"69", "78"}


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (ROOT / "examples" / "systemd" / "mcacm@.service").read_text()
    unit = tmp_path / "mcacm@acms.service"
    unit.write_text(text.replace("/opt/mcacm/bin/mcacm", mcacm()[0]))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
