"""The conformance runner against our own partner and primary ACMS (in-process, loopback,
ports chosen by binding 0): every applicable scenario passes; against deliberately broken
peers exactly the affected scenarios fail."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.model import Party, ProcessIndication, ProfileUpdateResponse
from mcacm_sip.cli.main import main
from mcacm_sip.conformance.catalogue import scenarios_for
from mcacm_sip.conformance.profile import Profile, Role, Timing, load_profile
from mcacm_sip.conformance.report import Report, Verdict
from mcacm_sip.conformance.runner import Runner
from mcacm_sip.core import groups
from mcacm_sip.core.config import (
    REQUEST_FLOWS,
    AcmcConfig,
    AuthorisedUser,
    PeerSystem,
    Timers,
)
from mcacm_sip.core.events import FlowFromAcmc, FlowFromPeer, SendFlow
from mcacm_sip.core.fa_server import FaConfig, FaServerConfig
from mcacm_sip.pcap import read_sip
from mcacm_sip.runtime.acmc import AcmcNode
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.config import AcmcNodeConfig, AcmsNodeConfig, FaServerNodeConfig
from mcacm_sip.runtime.fa_server import FaServerNode
from mcacm_sip.runtime.lab import (
    ALICE,
    DAVE,
    DUTY,
    FA_SERVER,
    LOOPBACK,
    PARTNER,
    PRIMARY,
    partner_config,
    primary_config,
)
from mcacm_sip.sip import Reply
from mcacm_sip.sip import Timers as SipTimers
from mcacm_sip.sip.aio import IncomingRequest, Listen

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "examples" / "interop" / "profiles" / "mcacm-sip.toml"
EVE = "sip:eve@primary.example"
"""The profile's unauthorised requester at the primary."""
NIGHT = "sip:night@partner.example"
"""An FA of the partner that nobody holds."""
ERIN = "sip:erin@partner.example"
"""A second partner user who may decide (the profile's other_decider)."""
FAST = Timing(wait=3.0, quiet=0.3, t1=0.1)
HOME_GROUPS = "sip:grp-*@primary.example"
"""The primary's groups (10.17.4): the profile's group and auto_group, not its foreign_group."""


def _sip() -> SipSettings:
    return SipSettings(listens=(Listen("udp", "127.0.0.1", 0),), transport="udp",
                       send_timeout=4.0, timers=SipTimers(t1=0.1, t2=0.4, t4=0.5),
                       trusted_hosts=LOOPBACK)


def _profile(role: Role, **fixtures: Any) -> Profile:
    """The shipped profile of our stack, on free ports, fast timers, plus ``fixtures``."""
    profile = load_profile(PROFILE)
    fx = dataclasses.replace(profile.roles[role], listen="127.0.0.1:0", **fixtures)
    return dataclasses.replace(profile, timing=FAST, roles={role: fx})


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in its own event loop (the suite has no asyncio plugin)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


# --------------------------------------------------------------------------- peers


@asynccontextmanager
async def partner_peer(tmp: Path, node: type[AcmsNode] = AcmsNode, *,
                       partner_sip: SipSettings | None = None, home_groups: str = HOME_GROUPS
                       ) -> AsyncIterator[tuple[AcmsNode, Callable[[str], None]]]:
    """Our partner ACMS (requesters: alice only), its FA server (DUTY held by dave, NIGHT
    held by nobody); yields the node and a function that points its primary PSI at a hop.
    ``partner_sip``: the partner's own settings; with TLS, the primary is pinned to it
    (``tls = "required"``).  ``home_groups``: the groups the primary may send group requests
    for (``"*"``: a partner that does not check, 10.17.4.2.2 pre-conditions)."""
    sip = _sip()
    fa = FaServerNode(FaServerNodeConfig(FA_SERVER, FaServerConfig(
        (FaConfig(DUTY, frozenset({DAVE})), FaConfig(NIGHT, frozenset({DAVE}))),
        frozenset({PARTNER})), sip))
    tls = partner_sip is not None and partner_sip.tls is not None
    # 10.17.4: the primary is the home of its grp-* groups only (the profile's foreign_group
    # is another system's)
    config = dataclasses.replace(partner_config(str(tmp / "partner.sqlite")), peers=(
        PeerSystem(PRIMARY, ("primary.example",), requesters=(ALICE,), groups=(home_groups,),
                   tls="required" if tls else "optional"),))
    # ERIN may decide every request too, but is never sent one (decision-not-asked)
    config = dataclasses.replace(config, users=(
        *config.users, AuthorisedUser(ERIN, (), REQUEST_FLOWS)))
    partner = node(AcmsNodeConfig(config, partner_sip or sip))
    holder = AcmcNode(AcmcNodeConfig(AcmcConfig(DAVE, PARTNER), sip))  # never logs on
    await fa.start()
    await partner.start()
    holder.set_hops({DUTY: fa.hop(), "*": partner.hop()})
    await holder.start(logon=False)
    assert await holder.set_functional_alias(DUTY, True) == 200  # 24.379 9A activation

    def route(hop: str) -> None:
        partner.set_hops({PRIMARY: hop, "partner.example": fa.hop()})

    try:
        yield partner, route
    finally:
        await holder.stop(logoff=False)
        await partner.stop()
        await fa.stop()


@asynccontextmanager
async def primary_peer(tmp: Path, node: type[AcmsNode] = AcmsNode, *, lax: bool = False,
                       primary_sip: SipSettings | None = None, home_groups: str = HOME_GROUPS
                       ) -> AsyncIterator[tuple[AcmsNode, Callable[[str], None]]]:
    """Our primary ACMS, with a short answer timer (partner-silent); ``lax``: it lets every
    user request (a broken authorisation check, 10.17.7.2 step 2); ``primary_sip``: its own
    settings; with TLS, the partner is pinned to it (``tls = "required"``); ``home_groups``:
    the groups alice may send group requests for (``"*"``: a broken step 2 of 10.17.4.2.2)."""
    config = dataclasses.replace(primary_config(str(tmp / "primary.sqlite")),
                                 timers=Timers(decision_timeout=1.0, answer_grace=0.5))
    # 10.17.4.2.2 step 2: alice may send group requests for her system's grp-* groups only
    config = dataclasses.replace(config, users=tuple(
        dataclasses.replace(u, groups=(home_groups,)) if u.id == ALICE else u
        for u in config.users))
    if lax:
        config = dataclasses.replace(config, users=(*config.users, AuthorisedUser(
            EVE, REQUEST_FLOWS, REQUEST_FLOWS)))
    if primary_sip is not None and primary_sip.tls is not None:
        config = dataclasses.replace(config, peers=tuple(
            dataclasses.replace(p, tls="required") for p in config.peers))
    primary = node(AcmsNodeConfig(config, primary_sip or _sip()))
    await primary.start()
    try:
        yield primary, lambda hop: primary.set_hops({PARTNER: hop})
    finally:
        await primary.stop()


async def _run(profile: Profile, role: Role, peer: AcmsNode, route: Callable[[str], None],
               out: Path | None = None, only: tuple[str, ...] = ()) -> Report:
    host, port = peer.addresses["udp"]
    async with Runner.open(profile, role, f"sip:acms@{host}:{port}", out) as runner:
        route(runner.hop())
        return await runner.run(only)


def _verdicts(report: Report) -> dict[str, Verdict]:
    return {r.id: r.verdict for r in report.results}


def _explain(report: Report) -> str:
    return report.table()


# --------------------------------------------------------------------------- our own stack


PARTNER_FIXTURES = {"fa_held": DUTY, "fa_unheld": NIGHT, "other_decider": ERIN}


@sync
async def test_our_partner_acms_passes_every_scenario(tmp_path: Path) -> None:
    async with partner_peer(tmp_path) as (partner, route):
        report = await _run(_profile("partner", **PARTNER_FIXTURES), "partner", partner, route,
                            tmp_path / "out")
    assert set(_verdicts(report).values()) == {Verdict.PASS}, _explain(report)
    assert [r.id for r in report.results] == [s.id for s in scenarios_for("partner")]
    assert report.exit_code == 0
    # evidence per scenario: a pcap with the SIP messages, a JSON-lines log ending in the verdict
    add = next(r for r in report.results if r.id == "add-user")
    assert add.pcap and add.log
    firsts = [p.data.split(b"\r\n", 1)[0] for p in read_sip(add.pcap)]
    assert any(f.startswith(b"MESSAGE ") for f in firsts) and b"SIP/2.0 200 OK" in firsts
    lines = [json.loads(x) for x in Path(add.log).read_text().splitlines()]
    assert lines[-1] == {"t": lines[-1]["t"], "event": "verdict", "verdict": "pass",
                         "reason": None}


@sync
async def test_our_primary_acms_passes_every_scenario(tmp_path: Path) -> None:
    async with primary_peer(tmp_path) as (primary, route):
        report = await _run(_profile("primary", answer_timeout=1.5), "primary", primary, route)
    assert set(_verdicts(report).values()) == {Verdict.PASS}, _explain(report)
    assert [r.id for r in report.results] == [s.id for s in scenarios_for("primary")]


@sync
async def test_profile_without_fixtures_makes_scenarios_not_applicable(tmp_path: Path) -> None:
    """A profile that names no decider and no FA without holder: those scenarios are N/A
    and the run still exits 0."""
    async with partner_peer(tmp_path) as (partner, route):
        report = await _run(_profile("partner", decider="", fa_unheld=""), "partner", partner,
                            route,
                            only=("fa-no-holder", "profile-update-approve", "add-user"))
    verdicts = _verdicts(report)
    assert verdicts == {"add-user": Verdict.PASS, "profile-update-approve":
                        Verdict.NOT_APPLICABLE, "fa-no-holder": Verdict.NOT_APPLICABLE}
    assert "decider" in report.results[1].reason
    assert report.exit_code == 0


# --------------------------------------------------------------------------- broken peers


class SilentPartner(AcmsNode):
    """Never sends the process indication (it reports it delivered, so nothing retries)."""

    def _deliver(self, send: SendFlow) -> None:
        if isinstance(send.flow, ProcessIndication):
            from mcacm_sip.core.events import DeliveryOutcome
            loop = asyncio.get_running_loop()
            loop.call_soon(self.feed, DeliveryOutcome(loop.time(), send.send_id, True))
            return
        super()._deliver(send)


class LaxPartner(AcmsNode):
    """Answers 200 to a document it cannot decode (and drops it)."""

    def _on_message(self, incoming: IncomingRequest) -> Any:
        msg = incoming.message
        try:
            codec.decode(msg.body, content_type=msg.header("content-type") or "")
        except AcmError as exc:
            if exc.sip_status == 400:
                return Reply(200)
        return super()._on_message(incoming)


class AnyDeciderPartner(AcmsNode):
    """Takes ERIN's decisions as DAVE's (issue 12 rule 3 not enforced)."""

    def __init__(self, config: AcmsNodeConfig) -> None:
        super().__init__(config)
        event = self.trust.event

        def as_dave(now: float, sender: str, flow: Any) -> FlowFromAcmc | FlowFromPeer:
            if sender == ERIN and isinstance(flow, ProfileUpdateResponse):
                return FlowFromAcmc(now, DAVE, dataclasses.replace(flow, handler=Party(DAVE)))
            return event(now, sender, flow)

        self.trust.event = as_dave  # type: ignore[method-assign]


class EchoBlindAcms(AcmsNode):
    """Takes a group-related response whatever group or operation it echoes (D3 not extended
    to 10.17.4); every other check of an answer kept."""

    def __init__(self, config: AcmsNodeConfig) -> None:
        super().__init__(config)
        check = self.core._mismatch

        def blind(req: Any, flow: Any) -> str | None:
            why = check(req, flow)
            return None if why is not None and why == groups.mismatch(req, flow) else why

        self.core._mismatch = blind  # type: ignore[method-assign]


INDICATING = {"add-user", "profile-update-auto", "profile-update-approve",
              "profile-update-reject", "fa-one-holder", "fa-no-holder", "pending-request",
              "remove-user", "unknown-user", "duplicate", "retransmission",
              "same-id-other-body", "decision-not-asked", "group-update-auto",
              "group-update-decided", "group-wrong-answer", "group-provision"}
"""Scenarios in which our partner ACMS owes a process indication."""


@sync
async def test_partner_without_process_indication_fails_exactly_those(tmp_path: Path
                                                                      ) -> None:
    # the runner waits out `wait` for each missing indication: keep it short here
    profile = dataclasses.replace(_profile("partner", **PARTNER_FIXTURES),
                                  timing=dataclasses.replace(FAST, wait=1.0))
    async with partner_peer(tmp_path, SilentPartner) as (partner, route):
        report = await _run(profile, "partner", partner, route)
    verdicts = _verdicts(report)
    failed = {k for k, v in verdicts.items() if v is Verdict.FAIL}
    assert failed == INDICATING, _explain(report)
    assert {k for k, v in verdicts.items() if v is Verdict.PASS} == \
        set(verdicts) - INDICATING, _explain(report)
    assert "process indication" in next(r.reason for r in report.results if r.id == "add-user")
    assert report.exit_code == 1


@sync
async def test_partner_taking_a_decision_from_a_user_not_asked_fails_exactly_that(
        tmp_path: Path) -> None:
    async with partner_peer(tmp_path, AnyDeciderPartner) as (partner, route):
        report = await _run(_profile("partner", **PARTNER_FIXTURES), "partner", partner, route,
                            only=("profile-update-approve", "decision-not-asked"))
    assert _verdicts(report) == {"profile-update-approve": Verdict.PASS,
                                 "decision-not-asked": Verdict.FAIL}, _explain(report)
    assert "refused with 403" in report.results[1].reason


@sync
async def test_partner_accepting_invalid_documents_fails_exactly_that(tmp_path: Path) -> None:
    async with partner_peer(tmp_path, LaxPartner) as (partner, route):
        report = await _run(_profile("partner", **PARTNER_FIXTURES), "partner", partner, route,
                            only=("invalid-document", "unknown-content-type", "add-user"))
    assert _verdicts(report) == {"add-user": Verdict.PASS, "invalid-document": Verdict.FAIL,
                                 "unknown-content-type": Verdict.PASS}, _explain(report)
    assert "400" in report.results[1].reason


@sync
async def test_primary_forwarding_an_unauthorised_request_fails_exactly_that(tmp_path: Path
                                                                           ) -> None:
    async with primary_peer(tmp_path, lax=True) as (primary, route):
        report = await _run(_profile("primary"), "primary", primary, route, only=(
            "add-user", "not-authorised-requester", "invalid-document"))
    assert _verdicts(report) == {"add-user": Verdict.PASS,
                                 "not-authorised-requester": Verdict.FAIL,
                                 "invalid-document": Verdict.PASS}, _explain(report)
    assert "not forwarded" in report.results[1].reason


GROUP_SCENARIOS = ("group-update-auto", "group-update-decided",
                   "group-not-authorised", "group-wrong-answer", "group-provision")


@pytest.mark.parametrize("role", ["partner", "primary"])
@sync
async def test_peer_taking_a_group_response_that_echoes_another_group_fails_exactly_that(
        role: Role, tmp_path: Path) -> None:
    peer = partner_peer(tmp_path, EchoBlindAcms) if role == "partner" else \
        primary_peer(tmp_path, EchoBlindAcms)
    fixtures = PARTNER_FIXTURES if role == "partner" else {}
    async with peer as (acms, route):
        report = await _run(_profile(role, **fixtures), role, acms, route, only=GROUP_SCENARIOS)
    verdicts = _verdicts(report)
    assert verdicts.pop("group-wrong-answer") is Verdict.FAIL, _explain(report)
    assert set(verdicts.values()) == {Verdict.PASS}, _explain(report)
    reason = next(r.reason for r in report.results if r.id == "group-wrong-answer")
    assert "another group refused with 4xx" in reason


@pytest.mark.parametrize("role", ["partner", "primary"])
@sync
async def test_peer_not_authorising_per_group_fails_exactly_that(role: Role, tmp_path: Path
                                                                 ) -> None:
    """A partner that takes group requests for any group from its peer, a primary that lets
    alice send them for any group (10.17.4.2.2 pre-conditions and step 2)."""
    peer = partner_peer(tmp_path, home_groups="*") if role == "partner" else \
        primary_peer(tmp_path, home_groups="*")
    fixtures = PARTNER_FIXTURES if role == "partner" else {}
    async with peer as (acms, route):
        report = await _run(_profile(role, **fixtures), role, acms, route, only=GROUP_SCENARIOS)
    verdicts = _verdicts(report)
    assert verdicts.pop("group-not-authorised") is Verdict.FAIL, _explain(report)
    assert set(verdicts.values()) == {Verdict.PASS}, _explain(report)


# --------------------------------------------------------------------------- the command


def test_cli_stops_at_the_preflight_when_the_peer_is_not_there(tmp_path: Path) -> None:
    """The console script against a peer that is not there: the pre-flight OPTIONS gets no
    answer and the run stops before any scenario (exit 69); it used to play every scenario
    to an inconclusive verdict (exit 3), each waiting for its timers."""
    profile = tmp_path / "profile.toml"
    text = PROFILE.read_text().replace('listen = "127.0.0.1:5060"', 'listen = "127.0.0.1:0"')
    profile.write_text(text.replace("wait = 5.0", "wait = 1.0").replace("quiet = 1.0",
                                                                         "quiet = 0.2"))
    # no peer listens: every scenario is inconclusive (no answer), the exit code says so
    out = subprocess.run(
        [str(Path(sys.executable).with_name("mcacm")), "-q", "conformance",
         "--peer", "sip:acms@127.0.0.1:9;transport=tcp", "--role", "partner",
         "--profile", str(profile), "--json", "--only", "add-user", "unknown-content-type",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 69, out.stderr
    assert "does not answer OPTIONS" in out.stderr and "tcp 127.0.0.1:9" in out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "out" / "add-user.jsonl").exists()


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[wire]\ncontent_type = "nonsense"\n[partner]\nprimary_psi = "sip:a@b"\n')
    for argv, needle in (
        (["--peer", "acms@x", "--role", "partner"], "--peer"),
        (["--peer", "sip:acms@127.0.0.1:9", "--role", "partner", "--profile", str(bad)],
         "wire.content_type"),
        (["--peer", "sip:acms@127.0.0.1:9", "--role", "partner", "--only", "nope"], "nope"),
        (["--peer", "sip:acms@127.0.0.1:9", "--role", "primary", "--only", "fa-no-holder"],
         "--role primary"),
        (["--peer", "sips:acms@127.0.0.1:9", "--role", "partner", "--only", "add-user"],
         "TLS"),
    ):
        assert main(["conformance", *argv]) == 2, argv
        assert needle in capsys.readouterr().err, argv


@sync
async def test_a_foreign_profile_changes_what_is_sent(tmp_path: Path) -> None:
    """With the acme profile's wire conventions our partner ACMS sees a media type it does
    not take: 415, so add-user fails for the reason the profile caused."""
    acme = load_profile(PROFILE.with_name("acme-mcx.toml")).wire
    ours = _profile("partner")
    profile = dataclasses.replace(ours, wire=dataclasses.replace(
        ours.wire, dialect=acme.dialect, identity_header=acme.identity_header))
    async with partner_peer(tmp_path) as (partner, route):
        report = await _run(profile, "partner", partner, route, tmp_path / "out",
                            only=("add-user",))
    assert report.results[0].verdict is Verdict.FAIL
    assert "415" in report.results[0].reason
    sent = [p.data for p in read_sip(tmp_path / "out" / "add-user.pcap")
            if p.data.startswith(b"MESSAGE ")]
    assert sent and b"Content-Type: application/vnd.acme.mcx-acm+xml" in sent[0]
    assert b"P-Preferred-Identity: <sip:acms@primary.example>" in sent[0]
    assert b'xmlns="urn:acme:mcx:acm:2"' in sent[0]
