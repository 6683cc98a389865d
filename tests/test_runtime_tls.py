"""The primary and the partner ACMS talk over TLS with mutual authentication (RFC 3261 26.2,
RFC 5922 7.3): each presents a certificate naming its system's domain, signed by an
interconnection CA the test makes; the ACMC reaches its ACMS over UDP."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pki_kit import make_pki

from mcacm_sip.acm.model import Addressee, AddUserConfigurationRequest, new_transaction_id
from mcacm_sip.core.config import AcmcConfig, ConfigError
from mcacm_sip.runtime import AcmcNode, AcmsNode, TraceRecord
from mcacm_sip.runtime.base import SipSettings, TlsSettings
from mcacm_sip.runtime.config import AcmcNodeConfig, AcmsNodeConfig, parse_sip_settings
from mcacm_sip.runtime.lab import (
    ALICE,
    DAVE,
    LOOPBACK,
    MIKE,
    PARTNER,
    PRIMARY,
    partner_config,
    primary_config,
)
from mcacm_sip.sip import Timers
from mcacm_sip.sip.aio import Listen

WAIT = 15.0
TIMERS = Timers(t1=0.1, t2=0.4, t4=0.5)
SYSTEMS = {"primary": ("primary.example",), "partner": ("partner.example",)}


def acms_sip(tls: TlsSettings) -> SipSettings:
    # a short send timeout: a refused handshake is noticed in a second
    return SipSettings(listens=(Listen("udp", "127.0.0.1"), Listen("tls", "127.0.0.1")),
                       send_timeout=1.0, timers=TIMERS, tls=tls, trusted_hosts=LOOPBACK)


def mutual(pki: dict[str, Path], leaf: str, ca: Path) -> TlsSettings:
    return TlsSettings(certificate=pki[leaf], ca=ca, require_client_cert=True)


@asynccontextmanager
async def systems(tmp: Path, primary_tls: TlsSettings, partner_tls: TlsSettings,
                  seen: list[TraceRecord], *, partner_requires_tls: bool = False
                  ) -> AsyncIterator[tuple[AcmsNode, AcmsNode, AcmcNode]]:
    """Primary and partner ACMS (udp + tls listeners, TLS between them) and ALICE's ACMC;
    ``partner_requires_tls``: the partner lists the primary with ``tls = "required"``."""
    partner_acms = partner_config(str(tmp / "partner.sqlite"))
    if partner_requires_tls:
        partner_acms = dataclasses.replace(partner_acms, peers=tuple(
            dataclasses.replace(p, tls="required") for p in partner_acms.peers))
    primary = AcmsNode(AcmsNodeConfig(primary_config(str(tmp / "primary.sqlite")),
                                      acms_sip(primary_tls)), trace=seen.append)
    partner = AcmsNode(AcmsNodeConfig(partner_acms, acms_sip(partner_tls)), trace=seen.append)
    alice = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, PRIMARY), SipSettings(
        send_timeout=WAIT, timers=TIMERS, trusted_hosts=LOOPBACK)), trace=seen.append)
    await primary.start()
    await partner.start()
    try:
        primary.set_hops({PARTNER: partner.hop("tls")})
        partner.set_hops({PRIMARY: primary.hop("tls")})
        alice.set_hops({"*": primary.hop("udp")})
        await alice.start()
        try:
            yield primary, partner, alice
        finally:
            await alice.stop()
    finally:
        await partner.stop()
        await primary.stop()


def messages(seen: list[TraceRecord], node: str, direction: str) -> list[TraceRecord]:
    return [r for r in seen if r.node == node and r.direction == direction
            and r.data.startswith(b"MESSAGE ")]


def test_acms_to_acms_over_mutually_authenticated_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "interconnect", SYSTEMS)
    seen: list[TraceRecord] = []

    async def main() -> None:
        async with systems(tmp_path, mutual(pki, "primary", pki["ca"]),
                           mutual(pki, "partner", pki["ca"]), seen) as (primary, partner, alice):
            out = await alice.add_users((MIKE,), Addressee(DAVE), timeout=WAIT)
            assert out.failure is None and out.indication is not None
            assert out.result == "success"
            assert out.response is not None
            assert out.response.users[0].partner_id == "sip:mike-1@partner.example"  # type: ignore[union-attr]
            tls_at = {PRIMARY: primary.addresses["tls"], PARTNER: partner.addresses["tls"]}

        # the request went primary -> partner, indication and response partner -> primary,
        # each over TLS into the other's TLS listener
        for sender, receiver, count in ((PRIMARY, PARTNER, 1), (PARTNER, PRIMARY, 2)):
            arrived = [r for r in messages(seen, receiver, "in") if r.transport == "tls"]
            assert len(arrived) == count
            assert all(r.dst == tls_at[receiver] for r in arrived)
            assert {r.data for r in arrived} <= {r.data for r in messages(seen, sender, "out")}
        assert not [r for r in messages(seen, PARTNER, "in") if r.transport != "tls"]

    asyncio.run(main())


class Events(logging.Handler):
    """Collects the runtime's log records, to wait for one."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.changed.set()

    async def first(self, event: str, peer: str) -> logging.LogRecord:
        while True:
            for record in self.records:
                if (getattr(record, "event", None), getattr(record, "peer", None)) == (event,
                                                                                      peer):
                    return record
            self.changed.clear()
            await self.changed.wait()


@pytest.mark.parametrize("fault", ["primary-cert-from-another-ca",
                                   "partner-cert-names-another-domain"])
def test_no_acm_message_crosses_an_unauthenticated_connection(fault: str, tmp_path: Path
                                                              ) -> None:
    pki = make_pki(tmp_path, "interconnect", SYSTEMS)
    rogue = make_pki(tmp_path, "rogue", SYSTEMS)  # right names, wrong CA
    if fault == "primary-cert-from-another-ca":  # the partner (server) refuses the client
        primary_tls, partner_tls = mutual(rogue, "primary", pki["ca"]), mutual(pki, "partner",
                                                                               pki["ca"])
    else:  # RFC 5922 7.3: the primary (client) wants partner.example in the certificate
        primary_tls, partner_tls = mutual(pki, "primary", pki["ca"]), mutual(pki, "primary",
                                                                             pki["ca"])
    seen: list[TraceRecord] = []
    logger = logging.getLogger("mcacm.runtime")

    async def main() -> None:
        events = Events()
        logger.addHandler(events)
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            async with systems(tmp_path, primary_tls, partner_tls, seen) as (_, partner, alice):
                handle = alice.submit(AddUserConfigurationRequest(
                    new_transaction_id(), alice.core.me, (MIKE,), Addressee(DAVE)))
                # the primary's forward to the partner fails (the core retries it later)
                sent = await asyncio.wait_for(events.first("acm.sent", PARTNER), WAIT)
                assert sent.failure in ("timeout", "transport")  # type: ignore[attr-defined]
                assert partner.core.transactions() == ()  # nothing reached the partner
                assert not handle.indicated.done()
        finally:
            logger.removeHandler(events)
            logger.setLevel(level)
        assert messages(seen, PARTNER, "in") == []

    asyncio.run(main())


def test_tls_configuration(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, "interconnect", SYSTEMS)
    listen = {"listen": [{"transport": "tls", "host": "127.0.0.1"}]}
    tls = {"certificate": pki["primary"].name, "ca": pki["ca"].name, "require_client_cert": True}
    settings = parse_sip_settings({**listen, "sip": {
        "tls": tls, "transport": "tls",
        "hops": {PARTNER: "sips:127.0.0.1:5061", "x.example": "sip:127.0.0.1:5062;transport=tls"},
    }}, tmp_path)  # paths relative to the configuration file
    assert settings.tls == TlsSettings(pki["primary"], None, pki["ca"], True)
    assert settings.transport == "tls" and settings.listens[0].transport == "tls"
    server = settings.tls.server_context()
    assert server.verify_mode is ssl.CERT_REQUIRED
    assert settings.tls.client_context().check_hostname

    def error(data: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as exc:
            parse_sip_settings(data, tmp_path)
        return exc.value.key

    assert error(listen) == "listen[0].transport"  # no certificate to listen with
    assert error({"sip": {"hops": {"*": "sips:127.0.0.1:5061"}}}) == "sip.hops.*"
    assert error({"sip": {"transport": "tls"}}) == "sip.transport"
    assert error({"sip": {"tls": {**tls, "ca": "missing.pem"}}}) == "sip.tls.ca"
    assert error({"sip": {"tls": {**tls, "certificate": pki["ca"].name}}}) == "sip.tls"  # no key
    assert error({"sip": {"tls": {"require_client_cert": True}}}) == "sip.tls.certificate"
    assert error({"sip": {"tls": {"cert": "x"}}}) == "sip.tls.cert"
