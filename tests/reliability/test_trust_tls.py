"""Mutual TLS between the two systems' ACMSs, with the client certificate bound to the PSI the
peer claims (RFC 5922 7.4, RFC 3261 26.3.2.2; mcacm_sip/runtime/trust.py).

The partner ACMS lists the primary with ``tls = "required"``.  Certificates are made here: one
interconnection CA with a correct certificate for the primary (DNS name, or SIP URI), an
expired one, one for another domain; and a rogue CA.  Where each is refused:

==========================  ==================================  ===========================
client certificate           where                               what the sender sees
==========================  ==================================  ===========================
correct (DNS or SIP URI)    accepted                            200, add succeeds end to end
unknown CA                  TLS handshake (partner's listener)  connection fails (503)
expired                     TLS handshake (partner's listener)  connection fails (503)
none                        TLS handshake (partner's listener)  connection fails (503)
wrong name (same CA)        partner's MESSAGE handler           403 + Warning "does not name"
none, over UDP              partner's MESSAGE handler           403 + Warning "must connect"
==========================  ==================================  ===========================
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pki_kit import make_pki
from test_runtime_tls import mutual, systems

from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationRequest,
    Party,
    ResultCode,
    new_transaction_id,
)
from mcacm_sip.core.config import ConfigError, PeerSystem, parse_acms_config
from mcacm_sip.core.events import Failure
from mcacm_sip.runtime import AcmsNode, TraceRecord
from mcacm_sip.runtime.base import SipSettings, TlsSettings, hop_uri, make_endpoint
from mcacm_sip.runtime.config import AcmsNodeConfig, parse_acms_node
from mcacm_sip.runtime.lab import (
    ALICE,
    DAVE,
    MIKE,
    PARTNER,
    PRIMARY,
    partner_config,
)
from mcacm_sip.runtime.messaging import Sent, send_message
from mcacm_sip.runtime.trust import certificate_names
from mcacm_sip.sip import Timers
from mcacm_sip.sip.aio import Listen, SipEndpoint

WAIT = 15.0
TIMERS = Timers(t1=0.1, t2=0.4, t4=0.5)
LEAVES = {"primary": ("primary.example",), "primary-uri": (PRIMARY,),
          "partner": ("partner.example",), "expired": ("primary.example",),
          "other": ("other.example",)}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pki")
    files = make_pki(tmp, "interconnect", LEAVES, expired=("expired",))
    rogue = make_pki(tmp, "rogue", {"primary": ("primary.example",)})
    return {**files, "rogue": rogue["primary"]}


def acms_sip(tls: TlsSettings) -> SipSettings:
    # lab trust (no trusted host): the certificate rules are judged alone, with no relaying
    # trusted host exempt from them (the client is on loopback too)
    return SipSettings(listens=(Listen("udp", "127.0.0.1"), Listen("tls", "127.0.0.1")),
                       send_timeout=2.0, timers=TIMERS, tls=tls, trust="lab")


def partner_requiring_tls(tmp: Path, pki: dict[str, Path]) -> AcmsNodeConfig:
    config = partner_config(str(tmp / "partner.sqlite"))
    peers = tuple(dataclasses.replace(p, tls="required") for p in config.peers)
    return AcmsNodeConfig(dataclasses.replace(config, peers=peers), acms_sip(
        TlsSettings(pki["partner"], ca=pki["ca"], require_client_cert=True)))


def add_request() -> AddUserConfigurationRequest:
    return AddUserConfigurationRequest(new_transaction_id(), Party(ALICE), (MIKE,),
                                       Addressee(DAVE))


@asynccontextmanager
async def client(certificate: Path | None, ca: Path, hops: dict[str, str]
                 ) -> AsyncIterator[tuple[SipEndpoint, SipSettings]]:
    """A bare SIP endpoint (the would-be primary) with ``certificate`` as TLS client cert."""
    settings = SipSettings(send_timeout=2.0, timers=TIMERS, hops=hops,
                           tls=TlsSettings(certificate, ca=ca))
    endpoint = make_endpoint(settings, "test", None)
    await endpoint.start()
    try:
        yield endpoint, settings
    finally:
        await endpoint.close()


@asynccontextmanager
async def partner_node(config: AcmsNodeConfig, seen: list[TraceRecord]
                       ) -> AsyncIterator[AcmsNode]:
    node = AcmsNode(config, trace=seen.append)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def arrived(seen: list[TraceRecord]) -> list[TraceRecord]:
    return [r for r in seen if r.direction == "in" and r.data.startswith(b"MESSAGE ")]


# ------------------------------------------------------------------ end to end, accepted


def test_a_peer_with_a_certificate_naming_it_is_served_end_to_end(
        pki: dict[str, Path], tmp_path: Path) -> None:
    seen: list[TraceRecord] = []

    async def main() -> None:
        async with systems(tmp_path, mutual(pki, "primary", pki["ca"]),
                           mutual(pki, "partner", pki["ca"]), seen,
                           partner_requires_tls=True) as (_, _, alice):
            out = await alice.add_users((MIKE,), Addressee(DAVE), timeout=WAIT)
        assert out.failure is None and out.result == ResultCode.SUCCESS
        into_partner = [r for r in arrived(seen) if r.node == PARTNER]
        assert into_partner and {r.transport for r in into_partner} == {"tls"}

    asyncio.run(main())


# ------------------------------------------------------------------ refused


async def claim(endpoint: SipEndpoint, settings: SipSettings, identity: str) -> Sent:
    """An add request from ALICE, sent with From / P-Asserted-Identity ``identity``."""
    return await send_message(endpoint, settings, uri=PARTNER, to=PARTNER, identity=identity,
                              flow=add_request())


@pytest.mark.parametrize("leaf", ["primary", "primary-uri"])
def test_a_certificate_naming_the_peer_by_dns_or_sip_uri_is_accepted(
        leaf: str, pki: dict[str, Path], tmp_path: Path) -> None:
    async def main() -> None:
        async with partner_node(partner_requiring_tls(tmp_path, pki), []) as partner, \
                client(pki[leaf], pki["ca"], {PARTNER: partner.hop("tls")}) as (ep, st):
            # the partner's indication goes back to this endpoint (which answers 405)
            partner.set_hops({PRIMARY: hop_uri(ep, "udp")})
            sent = await claim(ep, st, PRIMARY)
            assert sent.ok
            assert [t.peer for t in partner.core.transactions()] == [PRIMARY]

    asyncio.run(main())


HANDSHAKE_REFUSED: dict[str, Callable[[dict[str, Path]], Path | None]] = {
    "unknown-ca": lambda pki: pki["rogue"],
    "expired": lambda pki: pki["expired"],
    "no-client-certificate": lambda pki: None,
}


@pytest.mark.parametrize("fault", sorted(HANDSHAKE_REFUSED))
def test_a_certificate_the_pki_does_not_vouch_for_fails_the_handshake(
        fault: str, pki: dict[str, Path], tmp_path: Path) -> None:
    seen: list[TraceRecord] = []

    async def main() -> None:
        async with partner_node(partner_requiring_tls(tmp_path, pki), seen) as partner, \
                client(HANDSHAKE_REFUSED[fault](pki), pki["ca"],
                       {PARTNER: partner.hop("tls")}) as (endpoint, settings):
            sent = await claim(endpoint, settings, PRIMARY)
            # no SIP answer: the connection fails (transport), or with TLS 1.3 the client's
            # side completes first and the server's alert closes it unanswered (timeout)
            assert not sent.ok and sent.status is None
            assert sent.failure in (Failure.TRANSPORT, Failure.TIMEOUT)
            assert partner.core.transactions() == ()
        assert arrived(seen) == []  # not one byte of SIP got through

    asyncio.run(main())


def test_a_certificate_for_another_name_is_answered_403(pki: dict[str, Path],
                                                        tmp_path: Path) -> None:
    seen: list[TraceRecord] = []

    async def main() -> None:
        async with partner_node(partner_requiring_tls(tmp_path, pki), seen) as partner, \
                client(pki["other"], pki["ca"], {PARTNER: partner.hop("tls")}) as (ep, st):
            sent = await claim(ep, st, PRIMARY)
            assert sent.status == 403
            assert sent.warning == (f"not-authorised: {PRIMARY} must connect over TLS with a "
                                    "certificate naming it; this came with a certificate for "
                                    "other.example")
            assert partner.core.transactions() == ()
        assert len(arrived(seen)) == 1  # it arrived, and was judged

    asyncio.run(main())


def test_a_peer_that_must_use_tls_is_refused_over_udp(pki: dict[str, Path],
                                                     tmp_path: Path) -> None:
    async def main() -> None:
        async with partner_node(partner_requiring_tls(tmp_path, pki), []) as partner, \
                client(None, pki["ca"], {PARTNER: partner.hop("udp")}) as (ep, st):
            sent = await claim(ep, st, PRIMARY)
            assert sent.status == 403
            assert sent.warning is not None and sent.warning.startswith(
                f"not-authorised: {PRIMARY} must connect over TLS")
            assert "with no client certificate" in sent.warning
            assert partner.core.transactions() == ()

    asyncio.run(main())


def test_a_certificate_binds_also_without_tls_required(pki: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """tls = "optional" (the default): UDP is believed, but a certificate that is shown must
    name the peer; and a connection authenticated as the peer speaks only for the peer."""
    config = dataclasses.replace(partner_requiring_tls(tmp_path, pki),
                                 acms=partner_config(str(tmp_path / "partner.sqlite")))

    async def main() -> None:
        async with partner_node(config, []) as partner:
            async with client(pki["other"], pki["ca"], {PARTNER: partner.hop("tls")}) as (
                    ep, st):
                wrong = await claim(ep, st, PRIMARY)
            async with client(pki["primary"], pki["ca"], {PARTNER: partner.hop("tls")}) as (
                    ep, st):
                as_user = await claim(ep, st, DAVE)  # the primary poses as a partner user
            assert partner.core.transactions() == ()
        assert (wrong.status, wrong.warning) == (
            403, f"not-authorised: the TLS certificate (other.example) does not name {PRIMARY}")
        assert (as_user.status, as_user.warning) == (
            403, f"not-authorised: connection authenticated as {PRIMARY} claims {DAVE}")

    asyncio.run(main())


# ------------------------------------------------------------------ names and configuration


def test_certificate_names_follow_rfc5922() -> None:
    def cert(*san: tuple[str, str], cn: str = "cn.example") -> dict[str, object]:
        return {"subject": ((("commonName", cn),),), "subjectAltName": san}

    assert certificate_names(None) is None and certificate_names({}) is None
    assert certificate_names(cert(("DNS", "Primary.Example"), ("URI", PRIMARY),
                                  ("URI", "sip:primary.example"), ("URI", "https://x.example"),
                                  ("IP Address", "127.0.0.1"))) == frozenset(
        {"primary.example", PRIMARY})
    # 7.1: the CN counts only when there is no subjectAltName
    assert certificate_names(cert()) == frozenset({"cn.example"})


def test_tls_required_needs_listeners_that_ask_for_certificates(pki: dict[str, Path],
                                                                tmp_path: Path) -> None:
    peer = {"psi": PRIMARY, "domains": ["primary.example"], "tls": "required"}
    base = {"psi": PARTNER, "peers": [peer], "listen": [{"transport": "tls"}],
            "sip": {"tls": {"certificate": str(pki["partner"]), "ca": str(pki["ca"]),
                            "require_client_cert": True}}}
    assert parse_acms_node(base).acms.peers[0].tls == "required"
    assert parse_acms_config({**base, "peers": [{"psi": PRIMARY}]}).peers[0] == PeerSystem(
        PRIMARY)  # default: optional

    def error(data: dict[str, object]) -> str:
        with pytest.raises(ConfigError) as exc:
            parse_acms_node(data)
        return exc.value.key

    sip_tls = base["sip"]["tls"]  # type: ignore[index]
    assert error({**base, "sip": {"tls": {**sip_tls, "require_client_cert": False}}}
                 ) == "peers[0].tls"
    assert error({**base, "listen": [{"transport": "udp"}]}) == "peers[0].tls"
    assert error({**base, "peers": [{**peer, "tls": "yes"}]}) == "peers[0].tls"

