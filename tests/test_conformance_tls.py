"""The conformance runner over mutual TLS against our own partner and primary ACMS, each
pinning the other system (the runner's PSI) with ``tls = "required"`` and requiring client
certificates (mcacm_sip/runtime/trust.py).  Certificates are made here (tests/pki_kit.py),
one lab CA:

- ``primary`` / ``partner``: a system's domain.  The ACMS under test shows its own (checked
  against the host of ``--peer``, RFC 5922 7.3); the runner shows the other one, its PSI's
  domain (the peer checks it as a client certificate, trust.py rule 1, and as the server it
  connects to for our PSI);
- ``acmc``: our ACMC (decider / requester), named 127.0.0.1 (the peer connects to its
  registered contact, an IP literal), a certificate that names no peer (trust.py rule 3);
- ``other``: a runner certificate for another domain.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pki_kit import make_pki
from test_conformance import (
    PARTNER_FIXTURES,
    ROOT,
    _profile,
    partner_peer,
    primary_peer,
    sync,
)

from mcacm_sip.cli.main import main
from mcacm_sip.conformance.catalogue import scenarios_for
from mcacm_sip.conformance.profile import (
    ConfigError,
    Profile,
    Role,
    WireTls,
    load_profile,
    parse_profile,
)
from mcacm_sip.conformance.report import Report, Verdict
from mcacm_sip.conformance.runner import Runner
from mcacm_sip.pcap import read_sip
from mcacm_sip.runtime.base import SipSettings, TlsSettings
from mcacm_sip.runtime.lab import LOOPBACK
from mcacm_sip.sip import Timers as SipTimers
from mcacm_sip.sip.aio import Listen

LEAVES = {"primary": ("primary.example",), "partner": ("partner.example",),
          "acmc": ("127.0.0.1",), "other": ("other.example",)}
OURS: dict[Role, str] = {"partner": "primary", "primary": "partner"}
"""--role -> the runner's certificate (its PSI's system)."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"), "lab", LEAVES)


def acms_sip(pki: dict[str, Path], system: str) -> SipSettings:
    return SipSettings(listens=(Listen("udp", "127.0.0.1"), Listen("tls", "127.0.0.1")),
                       send_timeout=4.0, timers=SipTimers(t1=0.1, t2=0.4, t4=0.5),
                       tls=TlsSettings(pki[system], ca=pki["ca"], require_client_cert=True),
                       trusted_hosts=LOOPBACK)


def tls_profile(role: Role, pki: dict[str, Path], certificate: str, hop: str) -> Profile:
    profile = _profile(role, **(PARTNER_FIXTURES if role == "partner" else
                                {"answer_timeout": 1.5}))
    wire = dataclasses.replace(profile.wire, transport="tls", hop=hop, tls=WireTls(
        pki[certificate], ca=pki["ca"], acmc_certificate=pki["acmc"]))
    return dataclasses.replace(profile, wire=wire)


async def run_tls(role: Role, tmp: Path, pki: dict[str, Path], certificate: str,
                  out: Path | None = None) -> Report:
    peer = partner_peer(tmp, partner_sip=acms_sip(pki, "partner")) if role == "partner" \
        else primary_peer(tmp, primary_sip=acms_sip(pki, "primary"))
    async with peer as (acms, route):
        profile = tls_profile(role, pki, certificate, acms.hop("tls"))
        # the peer by name: its certificate is checked against that host (RFC 5922 7.3)
        async with Runner.open(profile, role, f"sip:acms@{role}.example;transport=tls",
                               out) as runner:
            route(runner.hop())
            return await runner.run()


@pytest.mark.parametrize("role", ["partner", "primary"])
@sync
async def test_runner_over_mutual_tls_passes_every_applicable_scenario(
        role: Role, tmp_path: Path, pki: dict[str, Path]) -> None:
    report = await run_tls(role, tmp_path, pki, OURS[role], tmp_path / "out")
    verdicts = {r.id: r.verdict for r in report.results}
    assert [r.id for r in report.results] == [s.id for s in scenarios_for(role)]
    # retransmitting the same bytes is a UDP matter: the only scenario that does not apply
    assert {k for k, v in verdicts.items() if v is not Verdict.PASS} == {"retransmission"}, \
        report.table()
    assert verdicts["retransmission"] is Verdict.NOT_APPLICABLE
    assert report.exit_code == 0
    # the evidence shows TLS both ways: our request out, what the peer sends us in
    add = next(r for r in report.results if r.id == "add-user")
    assert add.pcap is not None
    messages = [p.data for p in read_sip(add.pcap) if p.data.startswith(b"MESSAGE ")]
    assert any(m.startswith(f"MESSAGE sip:acms@{role}.example;transport=tls ".encode())
               for m in messages)
    assert any(m.startswith(f"MESSAGE sip:acms@{OURS[role]}.example".encode())
               for m in messages)
    assert all(b"Via: SIP/2.0/TLS " in m for m in messages)


# scenarios whose request, sent as our PSI, the peer must take or refuse by its ACM logic
REFUSED_OUR_PSI = {s.id for s in scenarios_for("partner")} - {
    "retransmission",  # not applicable over TLS
    "not-authorised-peer",  # sent as a PSI the peer does not know: 403 either way
    "invalid-document", "unknown-content-type"}  # refused before anyone's identity counts


@sync
async def test_a_runner_certificate_for_another_domain_is_refused_inconclusively(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    report = await run_tls("partner", tmp_path, pki, "other")
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
    data = {"wire": {"transport": "tls", "tls": {"certificate": pki["primary"].name,
                                                 "ca": pki["ca"].name}},
            "partner": {"primary_psi": "sip:acms@primary.example"}}
    tls = parse_profile(data, pki["ca"].parent).wire.tls
    assert tls is not None and tls.certificate == pki["primary"] and tls.ca == pki["ca"]
    assert tls.acmc_settings() is None  # the ACMC shares the runner's certificate
    for table, key in (({"ca": pki["ca"].name}, "wire.tls.certificate"),
                       ({"certificate": pki["primary"].name, "acmc_key": pki["ca"].name},
                        "wire.tls.acmc_key"),
                       ({"certificate": pki["primary"].name, "chain": "x"}, "wire.tls.chain")):
        with pytest.raises(ConfigError) as err:
            parse_profile({"wire": {"tls": table}}, pki["ca"].parent)
        assert key in str(err.value), table
    with pytest.raises(ConfigError) as err:
        parse_profile({"wire": {"transport": "tls"}})
    assert "wire.tls" in str(err.value)
    # files are read when TLS is used: a missing or unusable one is named by its key
    for tls, key in ((WireTls(pki["primary"], ca=tmp_path / "missing.pem"), "wire.tls.ca"),
                     (WireTls(pki["ca"]), "wire.tls.certificate"),  # a CA without its key
                     (WireTls(pki["primary"], acmc_certificate=pki["ca"]),
                      "wire.tls.acmc_certificate")):
        with pytest.raises(ConfigError) as err:
            tls.check()
        assert key in str(err.value), tls


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
         "wire.tls.certificate"),
    ):
        assert main(["conformance", *argv, "--only", "add-user"]) == 2, argv
        assert needle in capsys.readouterr().err, argv


@sync
async def test_an_acmc_sharing_the_psi_certificate_is_refused_inconclusively(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    """Without ``acmc_certificate`` our requester's ACMC speaks on the connections that
    authenticate our (partner) PSI: the primary refuses it (trust.py rule 3), already at its
    REGISTER (the registrar judges the connection's certificate too, issue 13).  That is the
    runner's set-up, not the peer's fault: Inconclusive, never Fail, saying what to set."""
    async with primary_peer(tmp_path, primary_sip=acms_sip(pki, "primary")) as (acms, route):
        profile = tls_profile("primary", pki, "partner", acms.hop("tls"))
        assert profile.wire.tls is not None
        profile = dataclasses.replace(profile, wire=dataclasses.replace(
            profile.wire, tls=dataclasses.replace(profile.wire.tls, acmc_certificate=None)))
        async with Runner.open(profile, "primary", "sip:acms@primary.example;transport=tls"
                               ) as runner:
            route(runner.hop())
            report = await runner.run(("add-user", "not-authorised-requester"))
    assert {r.verdict for r in report.results} == {Verdict.INCONCLUSIVE}, report.table()
    for r in report.results:
        assert "REGISTER" in r.reason and "403" in r.reason, r.reason
        assert "acmc_certificate" in r.reason, r.reason


def test_the_tls_example_profile_loads_and_names_a_missing_file(
        capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "examples" / "interop" / "profiles" / "acme-mcx-tls.toml"
    profile = load_profile(path)
    tls = profile.wire.tls
    assert profile.wire.transport == "tls" and tls is not None
    assert tls.certificate == path.parent / "certs" / "lab-primary.pem"
    assert tls.acmc_certificate == path.parent / "certs" / "lab-acmc.pem"
    assert tls.require_client_cert
    # --list needs no certificate; a run without the lab's files is a usage error naming it
    assert main(["conformance", "--peer", "sip:acms@acme.example;transport=tls", "--role",
                 "partner", "--profile", str(path), "--list"]) == 0
    listing = capsys.readouterr().out
    assert "retransmission" in listing and "UDP matter (transport tls)" in listing
    assert main(["conformance", "--peer", "sip:acms@acme.example;transport=tls", "--role",
                 "partner", "--profile", str(path), "--only", "add-user"]) == 2
    assert "wire.tls.certificate" in capsys.readouterr().err
