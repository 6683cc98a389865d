"""Issue 13 item 2, secure by default: a node whose peers or users are authenticated neither
by a trusted address nor by mutual TLS starts only with ``[sip] trust = "lab"`` (a WARNING at
start); otherwise it refuses to start, naming ``sip.trust`` (the CLI exits 78).  The hardened
example (examples/config/hardened/) loads, and runs end to end: two systems over mutual TLS,
their ACMCs and FA server by trusted address.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pki_kit import make_pki

from mcacm_sip.acm.model import Addressee
from mcacm_sip.cli.main import EX_CONFIG, main
from mcacm_sip.core.config import AcmcConfig, AcmsConfig, ConfigError, PeerSystem
from mcacm_sip.runtime import AcmsNode
from mcacm_sip.runtime.acmc import AcmcNode
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.config import (
    AcmcNodeConfig,
    AcmsNodeConfig,
    load_acmc_node,
    load_acms_node,
    load_fa_server_node,
    parse_acmc_node,
    parse_acms_node,
    parse_fa_server_node,
)
from mcacm_sip.runtime.fa_server import FaServerNode
from mcacm_sip.runtime.lab import DAVE, LOOPBACK, MIKE, PRIMARY

ROOT = Path(__file__).resolve().parents[1]
HARDENED = ROOT / "examples" / "config" / "hardened"
ACMS = {"psi": PRIMARY, "users": [{"id": "sip:alice@primary.example"}],
        "peers": [{"psi": "sip:acms@partner.example"}]}
ACMC = {"mc_service_id": "sip:alice@primary.example", "acms_psi": PRIMARY}
FA = {"psi": "sip:fa@partner.example", "trusted": ["sip:acms@partner.example"],
      "aliases": [{"uri": "sip:duty@partner.example", "users": [DAVE]}]}
PARSERS: dict[str, tuple[Any, dict[str, Any]]] = {
    "acms": (parse_acms_node, ACMS), "acmc": (parse_acmc_node, ACMC),
    "fa-server": (parse_fa_server_node, FA)}


@pytest.mark.parametrize("role", PARSERS)
def test_without_trusted_hosts_tls_or_lab_no_role_loads(role: str) -> None:
    parse, data = PARSERS[role]
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert err.value.key == "sip.trust"
    assert "nothing authenticates" in str(err.value) and 'trust = "lab"' in str(err.value)
    # either named way out loads
    assert parse({**data, "sip": {"trusted_hosts": ["10.0.0.1"]}}).sip.trust == "strict"
    assert parse({**data, "sip": {"trust": "lab"}}).sip.trust == "lab"


@pytest.mark.parametrize("role", PARSERS)
def test_the_cli_exits_78_naming_the_key(role: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, data = PARSERS[role]
    path = tmp_path / f"{role}.toml"
    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            continue
        lines.append(f"{key} = {toml(value)}")
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for table in value:
                lines.append(f"[[{key}]]")
                lines.extend(f"{k} = {toml(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")
    assert main([role, "--config", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "sip.trust" in err and str(path) in err


def toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return f'"{value}"'


def test_lab_and_trusted_hosts_contradict_each_other() -> None:
    with pytest.raises(ConfigError) as err:
        parse_acms_node({**ACMS, "sip": {"trust": "lab", "trusted_hosts": ["127.0.0.1"]}})
    assert err.value.key == "sip.trust" and "contradicts" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_acms_node({**ACMS, "sip": {"trust": "open"}})
    assert err.value.key == "sip.trust"


def test_mutual_tls_alone_authenticates_peers_but_not_users() -> None:
    """An ACMS with only ``tls = "required"`` peers and no users needs no trusted host; a user
    (no certificate names users) does."""
    peers_only = AcmsConfig(PRIMARY, (PeerSystem("sip:acms@partner.example", tls="required"),))
    AcmsNodeConfig(peers_only)  # the dataclass itself checks nothing
    from mcacm_sip.runtime.config import check_acms_trust

    check_acms_trust(AcmsNodeConfig(peers_only))
    with pytest.raises(ConfigError, match=r"user sip:alice@primary\.example"):
        parse_acms_node({**ACMS, "peers": []})
    # nobody to believe at all: nothing to authenticate
    parse_acms_node({"psi": PRIMARY})


def test_a_node_built_in_code_refuses_too() -> None:
    """The library objects apply the same rule as the loader (a program is no way around it)."""
    with pytest.raises(ConfigError) as err:
        AcmcNode(AcmcNodeConfig(AcmcConfig(DAVE, PRIMARY)))
    assert err.value.key == "sip.trust"
    with pytest.raises(ConfigError):
        AcmsNode(AcmsNodeConfig(parse_acms_node({**ACMS, "sip": {"trust": "lab"}}).acms))


def test_lab_trust_is_a_warning_at_start(caplog: pytest.LogCaptureFixture) -> None:
    config = AcmcNodeConfig(AcmcConfig(DAVE, PRIMARY), SipSettings(trust="lab"))

    async def run() -> None:
        node = AcmcNode(config)
        await node.start(logon=False)
        await node.stop(logoff=False)

    with caplog.at_level(logging.WARNING):
        asyncio.run(run())
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "node.lab_trust"]
    assert record.levelno == logging.WARNING and "sip.trust" in record.getMessage()


def test_strict_nodes_say_nothing_about_lab_trust(caplog: pytest.LogCaptureFixture) -> None:
    config = AcmcNodeConfig(AcmcConfig(DAVE, PRIMARY),
                            SipSettings(trusted_hosts=LOOPBACK))

    async def run() -> None:
        node = AcmcNode(config)
        await node.start(logon=False)
        await node.stop(logoff=False)

    with caplog.at_level(logging.WARNING):
        asyncio.run(run())
    assert not [r for r in caplog.records if getattr(r, "event", None) == "node.lab_trust"]


# ------------------------------------------------------------------ the hardened example


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hardened_copy(tmp: Path) -> Path:
    """The example in ``tmp`` with its lab PKI (made by its own make-certs.sh where openssl
    exists, else by pki_kit with the same names) and free ports instead of 5060-5073."""
    out = tmp / "hardened"
    shutil.copytree(HARDENED, out)
    if shutil.which("openssl"):
        subprocess.run([str(out / "make-certs.sh")], check=True, capture_output=True)
    else:
        pki = make_pki(tmp, "lab", {"primary": ("primary.example",),
                                    "partner": ("partner.example",)})
        (out / "certs").mkdir()
        for name in ("ca", "primary", "partner"):
            shutil.copy(pki[name], out / "certs" / f"{name}.pem")
    ports = {p: free_port(socket.SOCK_DGRAM if p in (5060, 5061, 5070, 5071, 5072)
                          else socket.SOCK_STREAM)
             for p in (5060, 5061, 5063, 5070, 5071, 5072, 5073)}
    for path in out.glob("*.toml"):
        text = path.read_text()
        text = re.sub(r"(port = |127\.0\.0\.1:)(50\d\d)\b",
                      lambda m: m.group(1) + str(ports[int(m.group(2))]), text)
        path.write_text(text)
    return out


def test_the_hardened_example_loads_as_documented(tmp_path: Path) -> None:
    out = hardened_copy(tmp_path)
    for name in ("primary-acms", "partner-acms"):
        config = load_acms_node(out / f"{name}.toml")
        assert config.sip.trust == "strict" and config.sip.trusted_hosts
        assert config.sip.tls is not None and config.sip.tls.require_client_cert
        assert all(p.tls == "required" for p in config.acms.peers)
        assert {lst.transport for lst in config.sip.listens} == {"udp", "tls"}
    for name in ("primary-acmc", "partner-acmc"):
        assert load_acmc_node(out / f"{name}.toml").sip.trusted_hosts
    assert load_fa_server_node(out / "partner-fa-server.toml").sip.trusted_hosts


def test_the_hardened_example_runs_end_to_end(tmp_path: Path) -> None:
    """ALICE adds MIKE at the partner (approved by its policy): the two ACMSs speak over
    mutual TLS, each ACMC over UDP from its trusted host.  Nothing is in lab trust."""
    out = hardened_copy(tmp_path)

    async def main_() -> None:
        fa = FaServerNode(load_fa_server_node(out / "partner-fa-server.toml"))
        primary = AcmsNode(load_acms_node(out / "primary-acms.toml"))
        partner = AcmsNode(load_acms_node(out / "partner-acms.toml"))
        alice = AcmcNode(load_acmc_node(out / "primary-acmc.toml"))
        nodes: list[Any] = [fa, primary, partner, alice]
        started: list[Any] = []
        try:
            for node in nodes[:3]:
                await node.start()
                started.append(node)
            await alice.start()
            started.append(alice)
            outcome = await alice.add_users((MIKE,), Addressee(DAVE), timeout=15.0)
            assert outcome.result == "success", outcome
        finally:
            for node in reversed(started):
                await node.stop()

    asyncio.run(main_())
