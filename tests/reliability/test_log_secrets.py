"""No profile contents, additional information or key material in the logs at the default
level (INFO), in both log formats of ``mcacm`` (mcacm_sip/cli/logs.py), nor on the stderr of
``mcacm send`` and of a configuration error.

The markers are not guessed: they are read from what actually crossed the wire (every text
value inside an ``mcptt-user-profile`` and every ``additional-info`` of the traced MESSAGEs),
so a new branch or profile is covered without editing this file.
"""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from lxml import etree
from pki_kit import make_pki

from mcacm_sip.acm.model import Addressee
from mcacm_sip.cli.logs import ConsoleFormatter, JsonFormatter
from mcacm_sip.core.config import ConfigError
from mcacm_sip.demo import run_demo
from mcacm_sip.runtime import TraceRecord
from mcacm_sip.runtime.acmc import Decision, ProgrammableDecider
from mcacm_sip.runtime.base import TlsSettings
from mcacm_sip.runtime.config import parse_sip_settings
from mcacm_sip.runtime.lab import ALICE, DAVE, MIKE, PRIMARY, Lab

MCACM = str(Path(sys.executable).with_name("mcacm"))
PROFILE_NS = "urn:3gpp:mcptt:user-profile:1.0"
ACM_NS = "urn:mcacm-sip:ns:acm:1.0"


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every record at INFO and above, formatted both ways mcacm formats them (JSON lines and
    console lines), as the command would write them to stderr."""
    lines: list[str] = []
    streams = {JsonFormatter(): io.StringIO(), ConsoleFormatter(): io.StringIO()}
    handlers = []
    for formatter, stream in streams.items():
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handlers.append(handler)
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    root.handlers[:] = handlers
    root.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
        for stream in streams.values():
            lines.extend(stream.getvalue().splitlines())


def wire_secrets(records: list[TraceRecord]) -> set[str]:
    """Text values of the profiles and the additional information in the traced MESSAGEs."""
    found: set[str] = set()
    for record in records:
        if not record.data.startswith(b"MESSAGE "):
            continue
        body = record.data.split(b"\r\n\r\n", 1)[1]
        if not body.lstrip().startswith(b"<"):
            continue
        root = etree.fromstring(body)
        for el in root.iter(f"{{{PROFILE_NS}}}*", f"{{{ACM_NS}}}additional-info"):
            for text in (el.text, *el.attrib.values()):
                if text and text.strip():
                    found.add(text.strip())
    return found


BODY_DUMP = {"<?xml", PROFILE_NS, ACM_NS}
"""What any logged ACM body would carry, whatever its values."""


def leaks(lines: list[str], secrets: set[str]) -> list[tuple[str, str]]:
    return [(s, line) for line in lines for s in secrets if s in line]


def test_the_demo_logs_no_profile_contents() -> None:
    traced: list[TraceRecord] = []
    with captured_logs() as lines:
        result = asyncio.run(run_demo("udp", tap=lambda _branch, r: traced.append(r)))
    assert result.ok
    secrets = wire_secrets(traced)
    # the demo carries several distinct profiles and an additional information
    assert len(secrets) >= 4, secrets
    secrets |= BODY_DUMP
    # the logs do talk about those very transactions (so the check has something to bite on)
    assert sum("profile-update-request" in line for line in lines) >= 10
    assert leaks(lines, secrets) == []


def key_lines(pem: Path) -> set[str]:
    """The base64 lines of the private key in ``pem`` (and its armour)."""
    text = pem.read_text()
    key = text[text.index("-----BEGIN PRIVATE KEY-----"):]
    return {line for line in key.splitlines() if line.strip()}


def test_a_tls_lab_logs_no_key_material_and_no_profile(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "lab", {"node": ("primary.example", "partner.example",
                                              "127.0.0.1")})
    tls = TlsSettings(certificate=pki["node"], ca=pki["ca"])
    traced: list[TraceRecord] = []

    async def main() -> None:
        async with Lab.start(tmp_path, "tls", traced.append, tls=tls,
                             dave=ProgrammableDecider(lambda r: Decision(True, "ok"))) as lab:
            out = await lab.alice.add_users((MIKE,), Addressee(DAVE), timeout=15)
            assert out.result == "success"

    with captured_logs() as lines:
        asyncio.run(main())
    assert any(r.transport == "tls" for r in traced)
    secrets = wire_secrets(traced) | key_lines(pki["node"]) | {"PRIVATE KEY"} | BODY_DUMP
    assert len(secrets) > 3
    assert sum("add-user-configuration" in line for line in lines) >= 4
    assert leaks(lines, secrets) == []


def test_a_bad_key_file_is_named_not_shown(tmp_path: Path) -> None:
    marker = "c2VjcmV0LWtleS1tYXRlcmlhbA"
    bad = tmp_path / "bad.pem"
    bad.write_text(f"-----BEGIN PRIVATE KEY-----\n{marker}\n-----END PRIVATE KEY-----\n")
    pki = make_pki(tmp_path, "x", {"leaf": ("127.0.0.1",)})
    for tls in ({"certificate": str(bad)}, {"certificate": str(pki["leaf"]), "key": str(bad)},
                {"ca": str(bad)}):
        with pytest.raises(ConfigError) as exc:
            parse_sip_settings({"sip": {"tls": tls}})
        assert marker not in str(exc.value) and "PRIVATE KEY" not in str(exc.value)


def test_mcacm_send_stderr_and_text_output_carry_no_profile(tmp_path: Path) -> None:
    marker_name, marker_info = "Zx-profile-name-7431", "Zx-additional-info-2210"
    profile = tmp_path / "profile.xml"
    profile.write_text(f'<mcptt-user-profile xmlns="{PROFILE_NS}"><Name>{marker_name}</Name>'
                       "</mcptt-user-profile>")

    async def main() -> tuple[str, str]:
        async with Lab.start(tmp_path, "udp",
                             dave=ProgrammableDecider(lambda r: Decision(True, "ok"))) as lab:
            added = await lab.alice.add_users((MIKE,), Addressee(DAVE), timeout=15)
            assert added.result == "success"
            proc = await asyncio.create_subprocess_exec(
                MCACM, "send", "profile-update-request", "--to", PRIMARY,
                "--via", lab.primary.hop("udp"), "--requester", ALICE, "--target", DAVE,
                "--migrated-user", "sip:mike-1@partner.example", "--profile", str(profile),
                "--info", marker_info, "--timeout", "20",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err
            return out.decode(), err.decode()

    with captured_logs() as lines:  # the nodes' logs too
        out, err = asyncio.run(main())
    assert "profile-update-response" in out and "success" in out
    for text in (out, err, "\n".join(lines)):
        assert marker_name not in text and marker_info not in text
