"""Mutual TLS when Kamailio's dispatcher is the hop in front of the workers (docs/scale-out.md
"Trust: where the certificate is checked"): examples/scale-out/kamailio.cfg with its tls.cfg
(-A WITH_TLS; certificates made here), two ACMS workers of the primary PSI on the throwaway
PostgreSQL, the partner ACMS in-process reachable over TLS only.

- the partner's ACMS, whose client certificate chains to the CA and names its From domain
  (partner.example), gets through: ALICE's add-user procedure completes (forward out over TLS,
  indication and response in over TLS to the workers);
- a MESSAGE over TLS whose verified certificate names another domain than its From (a peer
  speaking for ALICE, a stranger speaking for the partner) gets 403 at Kamailio;
- a client without a certificate, or with one from a stranger CA, is refused in the TLS
  handshake (tls.cfg: require_certificate, verify_certificate): no SIP answer at all;
- in no refused case does a worker receive the MESSAGE.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from pathlib import Path

import pytest
from pki_kit import make_pki
from scaleout_kit import LOOPBACK, SCALE_OUT, Dispatcher, Worker, dispatcher, free_ports, workers
from tools import require_kamailio_tls

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    Party,
    Result,
    ResultCode,
)
from mcacm_sip.core.config import AcmcConfig
from mcacm_sip.core.identity import procedure_id
from mcacm_sip.runtime import AcmcNode, AcmcNodeConfig, AcmsNode, AcmsNodeConfig, SipSettings
from mcacm_sip.runtime.base import TlsSettings
from mcacm_sip.runtime.lab import ALICE, DAVE, MIKE, PARTNER, PRIMARY, partner_config
from mcacm_sip.runtime.messaging import PROCEDURE_HEADER
from mcacm_sip.sip.aio import Listen

WAIT = 15.0  # upper bound of one procedure; it takes well under a second on loopback

# Kamailio reads the first DNS subjectAltName ($tls_peer_san_hostname): the domain comes
# first; the IP literal lets our TLS clients check the server's name (RFC 5922 7.3)
LEAVES = {"kamailio": ("primary.example", LOOPBACK), "partner": ("partner.example", LOOPBACK),
          "other": ("other.example", LOOPBACK)}


def tls_cfg(tmp: Path, pki: dict[str, Path]) -> Path:
    """The shipped tls.cfg with the test's certificates."""
    cfg = tmp / "tls.cfg"
    cfg.write_text((SCALE_OUT / "tls.cfg").read_text()
                   .replace("certs/sip.pem", str(pki["kamailio"]))
                   .replace("certs/ca.pem", str(pki["ca"])))
    return cfg


def message(sender: str, body: bytes, tid: str, call_id: str, requester: str) -> bytes:
    return (f"MESSAGE {PRIMARY} SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS {LOOPBACK}:5999;branch=z9hG4bK-{call_id}\r\n"
            f"From: <{sender}>;tag=t1\r\nTo: <{PRIMARY}>\r\n"
            # what a forger would add: Kamailio removes it
            f"P-Asserted-Identity: <{sender}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
            f"{PROCEDURE_HEADER}: {procedure_id(requester, tid)}\r\n"
            f"Content-Type: {codec.ACM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def over_tls(core: Dispatcher, ca: Path, certificate: Path | None, data: bytes
                   ) -> str:
    """Send ``data`` over a new TLS connection to Kamailio, showing ``certificate`` (None:
    none); its answer's status line, or why there was none ("refused: ...")."""
    ctx = ssl.create_default_context(cafile=ca)
    if certificate is not None:
        ctx.load_cert_chain(certificate)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(LOOPBACK, core.tls_port, ssl=ctx), WAIT)
    except (ssl.SSLError, ConnectionError) as exc:
        return f"refused: {exc!r}"
    try:
        writer.write(data)
        await writer.drain()
        while True:  # skip provisional answers
            line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            status = line.split(b"\r\n", 1)[0].decode(errors="replace")
            if not status.startswith("SIP/2.0 1"):
                return status
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError) as exc:
        return f"refused: {exc!r}"
    finally:
        writer.close()


def seen_by_workers(ws: list[Worker], call_id: str) -> list[int]:
    """The workers whose log names ``call_id`` (every MESSAGE a worker takes is logged with
    its Call-ID: acm.received)."""
    return [w.n for w in ws if any(call_id in log.read_text(errors="replace")
                                   for log in w.logs)]


@pytest.mark.timeout(120)
def test_the_certificate_is_checked_at_the_dispatcher(pg_url: str, tmp_path: Path) -> None:
    require_kamailio_tls(SCALE_OUT / "kamailio.cfg")
    pki = make_pki(tmp_path, "interconnect", LEAVES)
    stranger = make_pki(tmp_path, "stranger", {"partner": ("partner.example", LOOPBACK)})
    ports = free_ports(2)
    partner_port, port = free_ports(2)
    stores = [f'url = "{pg_url}"\nworker_id = "acms-{n}"' for n in (1, 2)]
    with workers(tmp_path, ports, port, stores) as ws, \
            dispatcher(tmp_path, ports, port=port, tls_config=tls_cfg(tmp_path, pki),
                       peer_hop=f"sip:{LOOPBACK}:{partner_port};transport=tls") as core:
        async def main() -> dict[str, tuple[str, str]]:
            # the partner system: TLS only, requires a client certificate (Kamailio's
            # [client:default] shows one), sends everything for the primary to Kamailio's
            # TLS port with its own certificate
            partner = AcmsNode(AcmsNodeConfig(partner_config(None), SipSettings(
                listens=(Listen("tls", LOOPBACK, partner_port),), hops={PRIMARY: core.uri("tls")},
                trusted_hosts=frozenset({LOOPBACK}), tls=TlsSettings(
                    certificate=pki["partner"], ca=pki["ca"], require_client_cert=True))))
            alice = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, PRIMARY), SipSettings(
                listens=(Listen("udp", LOOPBACK, 0),), hops={"*": core.uri()},
                trusted_hosts=frozenset({LOOPBACK}))))
            await partner.start()
            await alice.start()
            try:
                out = await alice.add_users((MIKE,), Addressee(DAVE), timeout=WAIT)
                assert out.failure is None and out.result == "success", out
                assert out.indication is not None
                tid = out.transaction_id
            finally:
                await alice.stop()
                await partner.stop()
            took_part = [n for n in (1, 2) if any(
                e.get("event") == "acm.received" and e.get("flow") in (
                    "add-user-configuration-response", "add-user-configuration-indication")
                for e in ws[n - 1].all_events())]
            assert took_part, "no worker got the partner's indication and response"

            refused: dict[str, tuple[str, str]] = {}
            # a verified peer certificate speaking for another domain: the partner's
            # certificate on ALICE's request, a stranger's (right CA) on the partner's answer
            new = uuid.uuid4().hex
            ask = codec.encode(AddUserConfigurationRequest(
                new, Party(ALICE), (MIKE,), Addressee(DAVE)))
            answer = codec.encode(AddUserConfigurationResponse(
                tid, Party(PARTNER), Addressee(ALICE), Result(ResultCode.SUCCESS)))
            cases = {
                "partner-cert-as-alice": (pki["partner"], ALICE, ask, new),
                "other-domain-as-partner": (pki["other"], PARTNER, answer, tid),
                "no-certificate": (None, PARTNER, answer, tid),
                "stranger-ca": (stranger["partner"], PARTNER, answer, tid),
            }
            for case, (cert, sender, body, about) in cases.items():
                call_id = f"{case}-{uuid.uuid4().hex[:8]}"
                data = message(sender, body, about, call_id, ALICE)
                refused[case] = (call_id, await over_tls(core, pki["ca"], cert, data))
            return refused

        refused = asyncio.run(main())

    print({case: status for case, (_, status) in refused.items()})
    log = core.log_text()
    for case in ("partner-cert-as-alice", "other-domain-as-partner"):
        call_id, status = refused[case]
        assert status.startswith("SIP/2.0 403"), (case, status)
    assert log.count("no certificate naming") == 2, log[-3000:]
    for case in ("no-certificate", "stranger-ca"):
        call_id, status = refused[case]
        assert status.startswith("refused:"), (case, status)
    # refused by Kamailio's TLS, for the right reason: the alert it sent (TLS 1.3) or
    # OpenSSL's words in its log (a full-suite run once had the alert "unknown ca" and no
    # log line for it: the alert is what the peer is told, the log is best effort)
    assert "CERTIFICATE_REQUIRED" in refused["no-certificate"][1] \
        or "peer did not return a certificate" in log, (refused["no-certificate"], log[-3000:])
    assert "UNKNOWN_CA" in refused["stranger-ca"][1] \
        or "certificate verify failed" in log, (refused["stranger-ca"], log[-3000:])
    for case, (call_id, _) in refused.items():
        assert seen_by_workers(ws, call_id) == [], case
