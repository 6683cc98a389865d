"""The conformance runner over mutual TLS against our own partner ACMS, which pins the
primary (the runner's PSI) with ``tls = "required"`` and requires client certificates
(mcacm_sip/runtime/trust.py).  Certificates are made here (tests/pki_kit.py), one lab CA:

- ``partner``: the ACMS under test, named ``partner.example`` (the host of ``--peer``);
- ``runner``: our PSI's domain ``primary.example`` (the partner checks it as a client
  certificate, rule 1, and as the server it connects to for our PSI, RFC 5922 7.3);
- ``acmc``: our decider's ACMC, named 127.0.0.1 (the partner connects to its registered
  contact, an IP literal), a certificate that names no peer (trust.py rule 3);
- ``other``: a runner certificate for another domain.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pki_kit import make_pki
from test_conformance import PARTNER_FIXTURES, _profile, partner_peer, sync

from mcacm_sip.cli.main import main
from mcacm_sip.conformance.catalogue import scenarios_for
from mcacm_sip.conformance.profile import ConfigError, Profile, WireTls, parse_profile
from mcacm_sip.conformance.report import Report, Verdict
from mcacm_sip.conformance.runner import Runner
from mcacm_sip.pcap import read_sip
from mcacm_sip.runtime.base import SipSettings, TlsSettings
from mcacm_sip.sip import Listen
from mcacm_sip.sip import Timers as SipTimers

LEAVES = {"partner": ("partner.example",), "runner": ("primary.example",),
          "acmc": ("127.0.0.1",), "other": ("other.example",)}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"), "lab", LEAVES)


def partner_sip(pki: dict[str, Path]) -> SipSettings:
    return SipSettings(listens=(Listen("udp", "127.0.0.1"), Listen("tls", "127.0.0.1")),
                       send_timeout=4.0, timers=SipTimers(t1=0.1, t2=0.4, t4=0.5),
                       tls=TlsSettings(pki["partner"], ca=pki["ca"], require_client_cert=True))


def tls_profile(pki: dict[str, Path], certificate: str, hop: str) -> Profile:
    profile = _profile("partner", **PARTNER_FIXTURES)
    wire = dataclasses.replace(profile.wire, transport="tls", hop=hop, tls=WireTls(
        pki[certificate], ca=pki["ca"], acmc_certificate=pki["acmc"]))
    return dataclasses.replace(profile, wire=wire)


async def run_tls(tmp: Path, pki: dict[str, Path], certificate: str,
                  out: Path | None = None) -> Report:
    async with partner_peer(tmp, partner_sip=partner_sip(pki)) as (partner, route):
        profile = tls_profile(pki, certificate, partner.hop("tls"))
        # the peer by name: its certificate is checked against partner.example (RFC 5922 7.3)
        async with Runner.open(profile, "partner", "sip:acms@partner.example;transport=tls",
                               out) as runner:
            route(runner.hop())
            return await runner.run()


@sync
async def test_runner_over_mutual_tls_passes_every_applicable_scenario(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    report = await run_tls(tmp_path, pki, "runner", tmp_path / "out")
    verdicts = {r.id: r.verdict for r in report.results}
    assert [r.id for r in report.results] == [s.id for s in scenarios_for("partner")]
    # retransmitting the same bytes is a UDP matter: the only scenario that does not apply
    assert {k for k, v in verdicts.items() if v is not Verdict.PASS} == {"retransmission"}, \
        report.table()
    assert verdicts["retransmission"] is Verdict.NOT_APPLICABLE
    assert report.exit_code == 0
    # the evidence shows TLS both ways: our request out, the peer's indication in
    add = next(r for r in report.results if r.id == "add-user")
    assert add.pcap is not None
    messages = [p.data for p in read_sip(add.pcap) if p.data.startswith(b"MESSAGE ")]
    assert any(m.startswith(b"MESSAGE sip:acms@partner.example;transport=tls ")
               for m in messages)
    assert any(m.startswith(b"MESSAGE sip:acms@primary.example") for m in messages)
    assert all(b"Via: SIP/2.0/TLS " in m for m in messages)


# scenarios whose request, sent as our PSI, the peer must take or refuse by its ACM logic
REFUSED_OUR_PSI = {s.id for s in scenarios_for("partner")} - {
    "retransmission",  # not applicable over TLS
    "not-authorised-peer",  # sent as a PSI the peer does not know: 403 either way
    "invalid-document", "unknown-content-type"}  # refused before anyone's identity counts


@sync
async def test_a_runner_certificate_for_another_domain_is_refused_inconclusively(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    report = await run_tls(tmp_path, pki, "other")
    verdicts = {r.id: r.verdict for r in report.results}
    inconclusive = {k for k, v in verdicts.items() if v is Verdict.INCONCLUSIVE}
    assert inconclusive == REFUSED_OUR_PSI, report.table()
    assert {k for k, v in verdicts.items() if v is Verdict.PASS} == \
        {"not-authorised-peer", "invalid-document", "unknown-content-type"}, report.table()
    add = next(r for r in report.results if r.id == "add-user")
    # the reason shows the peer's 403 and what to fix on our side
    assert "403" in add.reason and "must connect over TLS" in add.reason, add.reason
    assert "names other.example, not primary.example" in add.reason, add.reason
    assert report.exit_code == 3


# --------------------------------------------------------------------------- profile / CLI


def test_wire_tls_paths_are_relative_to_the_profile(tmp_path: Path, pki: dict[str, Path]
                                                   ) -> None:
    data = {"wire": {"transport": "tls", "tls": {"certificate": pki["runner"].name,
                                                 "ca": pki["ca"].name}},
            "partner": {"primary_psi": "sip:acms@primary.example"}}
    tls = parse_profile(data, pki["ca"].parent).wire.tls
    assert tls is not None and tls.certificate == pki["runner"] and tls.ca == pki["ca"]
    assert tls.acmc_settings() is None  # the ACMC shares the runner's certificate
    for table, key in (({"ca": pki["ca"].name}, "wire.tls.certificate"),
                       ({"certificate": "missing.pem"}, "wire.tls.certificate"),
                       ({"certificate": pki["runner"].name, "acmc_key": pki["ca"].name},
                        "wire.tls.acmc_key"),
                       ({"certificate": pki["runner"].name, "chain": "x"}, "wire.tls.chain")):
        with pytest.raises(ConfigError) as err:
            parse_profile({"wire": {"tls": table}}, pki["ca"].parent)
        assert key in str(err.value), table
    with pytest.raises(ConfigError) as err:
        parse_profile({"wire": {"transport": "tls"}})
    assert "wire.tls" in str(err.value)


def test_cli_tls_usage_errors(tmp_path: Path, pki: dict[str, Path],
                              capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('[wire.tls]\ncertificate = "cert.pem"\n'
                       '[partner]\nprimary_psi = "sip:acms@primary.example"\n')
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    for argv, needle in (
        # the shipped profile has no [wire.tls]: TLS named in --peer is a usage error
        (["--peer", "sips:acms@127.0.0.1:9", "--role", "partner"], "wire.tls"),
        # a file that is no certificate: refused before anything is sent, naming the key
        (["--peer", "sips:acms@127.0.0.1:9", "--role", "partner", "--profile", str(profile)],
         "[wire.tls] certificate"),
    ):
        assert main(["conformance", *argv, "--only", "add-user"]) == 2, argv
        assert needle in capsys.readouterr().err, argv
