"""``[sip.limits]``: the SIP layer's caps on what peers may send (mcacm_sip.sip.Limits) come
from any node's TOML, each checked and named in errors, and reach the node's endpoint."""

from __future__ import annotations

import asyncio
import re
import socket
import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest

from mcacm_sip.core.config import ConfigError
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.config import parse_acmc_node, parse_acms_node, parse_sip_settings
from mcacm_sip.sip import Limits

PRIMARY = "sip:acms@primary.example"


def test_defaults_and_configured_values() -> None:
    assert parse_sip_settings({}).limits == Limits()
    got = parse_sip_settings({"sip": {"limits": {
        "max_body_bytes": 4096, "max_connections_per_source": 8, "message_timeout": 2,
        "idle_timeout": 30.5}}}).limits
    assert got == Limits(max_body_bytes=4096, max_connections_per_source=8,
                         message_timeout=2.0, idle_timeout=30.5)
    # every role reads it: the ACMC's table is the same
    acmc = parse_acmc_node({"mc_service_id": "sip:alice@primary.example",
                            "acms_psi": PRIMARY, "sip": {"limits": {"max_headers": 64},
                                                         "trusted_hosts": ["127.0.0.1"]}})
    assert acmc.sip.limits.max_headers == 64


@pytest.mark.parametrize(("bad", "key"), [
    ({"max_body_bytes": 0}, "sip.limits.max_body_bytes"),
    ({"max_headers": "many"}, "sip.limits.max_headers"),
    ({"max_connections": 1.5}, "sip.limits.max_connections"),
    ({"message_timeout": -1}, "sip.limits.message_timeout"),
    ({"max_bodybytes": 1}, "sip.limits.max_bodybytes"),
])
def test_errors_name_the_key(bad: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_acms_node({"psi": PRIMARY, "sip": {"limits": bad}})
    assert err.value.key == key


def test_the_node_enforces_the_configured_body_cap() -> None:
    """A body over the configured cap gets 413 from a running ACMS (it is 1 MiB by default)."""
    async def run() -> None:
        config = parse_acms_node({"psi": PRIMARY, "sip": {"limits": {"max_body_bytes": 2048}}})
        node = AcmsNode(config)
        await node.start()
        try:
            assert node.endpoint.limits.max_body_bytes == 2048
            host, port = node.addresses["udp"]
            body = b"x" * 3000
            request = (f"MESSAGE {PRIMARY} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKlimits\r\n"
                       f"From: <sip:alice@primary.example>;tag=a\r\nTo: <{PRIMARY}>\r\n"
                       f"Call-ID: limits@test\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
                       f"Content-Type: application/vnd.3gpp.mcptt-info+xml\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                sock.setblocking(False)
                await loop.sock_sendto(sock, request, (host, port))
                answer = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
            assert answer.startswith(b"SIP/2.0 413 "), answer[:80]
        finally:
            await node.stop()

    asyncio.run(run())


def test_docs_running_shows_every_limit_with_its_default() -> None:
    text = (Path(__file__).parent.parent / "docs" / "running.md").read_text()
    block = re.search(r"^\[sip\.limits\].*?\n\n", text, re.S | re.M)
    assert block is not None
    assert tomllib.loads(block.group(0))["sip"]["limits"] == asdict(Limits())


def test_the_acms_registrar_takes_its_caps_from_sip_limits() -> None:
    """Issue 13 item 8 end to end: ``[sip.limits] max_contacts_per_aor`` reaches the ACMS's
    registrar; a REGISTER for a configured user with more contacts gets 403 + Warning."""
    config = parse_acms_node({
        "psi": PRIMARY, "users": [{"id": "sip:alice@primary.example"}],
        "sip": {"trusted_hosts": ["127.0.0.1"],
                "limits": {"max_contacts_per_aor": 2, "max_bindings": 5}}})

    async def run() -> None:
        node = AcmsNode(config)
        await node.start()
        try:
            assert node.registrar.limits.max_bindings == 5
            host, port = node.addresses["udp"]
            contacts = ", ".join(f"<sip:alice@127.0.0.1:{6000 + i}>" for i in range(3))
            request = (f"REGISTER sip:primary.example SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKreg;rport\r\n"
                       f"From: <sip:alice@primary.example>;tag=a\r\n"
                       f"To: <sip:alice@primary.example>\r\nCall-ID: reg@test\r\n"
                       f"CSeq: 1 REGISTER\r\nContact: {contacts}\r\nExpires: 600\r\n"
                       f"Content-Length: 0\r\n\r\n").encode()
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                sock.setblocking(False)
                await loop.sock_sendto(sock, request, (host, port))
                answer = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
            assert answer.startswith(b"SIP/2.0 403 "), answer[:80]
            assert b'"too many contacts: at most 2 per address-of-record"' in answer
            assert node.registrar.bindings == 0
        finally:
            await node.stop()

    asyncio.run(run())
