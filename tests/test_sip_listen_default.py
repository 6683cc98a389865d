"""Issue 12 rule 9: both SIP transports on every listening address by default.

RFC 3261 18: "All SIP elements MUST implement UDP and TCP"; 18.2.1: "For any port and interface
that a server listens on for UDP, it MUST listen on that same port and interface for TCP" (a peer
sends a request too large for UDP over TCP to the same address, 18.1.1).  The shipped example
configurations are checked over real processes in tests/test_runtime_processes.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcacm_sip.core.config import ConfigError
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.config import parse_sip_settings
from mcacm_sip.runtime.lab import Lab
from mcacm_sip.sip.aio import Listen, SipEndpoint


def test_the_default_listens_on_udp_and_tcp() -> None:
    assert parse_sip_settings({}).listens == SipSettings().listens == (
        Listen("udp", "127.0.0.1", 0), Listen("tcp", "127.0.0.1", 0))


def test_a_listen_table_without_transport_is_udp_and_tcp_on_its_port() -> None:
    got = parse_sip_settings({"listen": [{"host": "::1", "port": 5099, "advertise": "a.example"}]})
    assert got.listens == (Listen("udp", "::1", 5099, "a.example"),
                           Listen("tcp", "::1", 5099, "a.example"))
    # naming one transport is the operator's choice: that one only
    one = parse_sip_settings({"listen": [{"transport": "udp", "port": 5099}]})
    assert one.listens == (Listen("udp", "127.0.0.1", 5099),)
    with pytest.raises(ConfigError, match=r"listen\[0\]\.transport"):
        parse_sip_settings({"listen": [{"transport": "sctp"}]})


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_any_free_port_is_the_same_port_for_udp_and_tcp(host: str) -> None:
    async def main() -> tuple[int, int]:
        ep = SipEndpoint([Listen("udp", host, 0), Listen("tcp", host, 0)])
        await ep.start()
        try:
            return ep.local_address("udp")[1], ep.local_address("tcp")[1]
        finally:
            await ep.close()

    udp, tcp = asyncio.run(main())
    assert udp == tcp != 0


def test_lab_nodes_listen_on_udp_and_tcp_on_one_port(tmp_path: Path) -> None:
    async def main() -> None:
        async with Lab.start(tmp_path, transport="udp") as lab:
            for node in (lab.primary, lab.partner):
                assert node.endpoint.local_address("udp") == node.endpoint.local_address("tcp")

    asyncio.run(main())
