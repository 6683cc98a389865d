"""Two MC systems on loopback, in-process: the primary ACMS and ACMC, the partner ACMS and ACMC
and the partner's FA controlling server, on free ports with temporary SQLite stores (tests and
``mcacm demo``).

    async with Lab.start(tmp_path, transport="udp") as lab:
        migrated = await lab.migrate_mike()     # 10.17.5.2, MIKE's partner ID
        ...

With ``proxy`` every node sends through one SIP core (hop ``*``, e.g. Kamailio with
examples/interop/kamailio/kamailio.cfg); ``ports`` pins the servers' ports so the core's
routing table can name them before they start; ``tls`` gives every node its certificate.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    RemoveUserConfigurationRequest,
)
from mcacm_sip.core.config import (
    REQUEST_FLOWS,
    AcmcConfig,
    AcmsConfig,
    AuthorisedUser,
    Migration,
    PeerSystem,
    StoreConfig,
)
from mcacm_sip.core.config import Timers as ProcedureTimers
from mcacm_sip.core.fa_server import FaConfig, FaServerConfig
from mcacm_sip.core.policy import PolicyAction, PolicyRule
from mcacm_sip.runtime.acmc import AcmcNode, Decider, ProgrammableDecider
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.base import SipSettings, TlsSettings, TraceHook
from mcacm_sip.runtime.config import AcmcNodeConfig, AcmsNodeConfig, FaServerNodeConfig
from mcacm_sip.runtime.fa_server import FaServerNode
from mcacm_sip.runtime.metrics import MetricsSettings
from mcacm_sip.sip import Limits, Timers, Transport
from mcacm_sip.sip.aio import Listen

PRIMARY = "sip:acms@primary.example"
PARTNER = "sip:acms@partner.example"
FA_SERVER = "sip:fa@partner.example"
ALICE = "sip:alice@primary.example"
"""Primary user allowed to send every request."""
DAVE = "sip:dave@partner.example"
"""Partner user who decides (directly or as holder of DUTY)."""
DUTY = "sip:duty@partner.example"
"""Functional alias in the partner system, held by DAVE when activated."""
MIKE = "sip:mike@primary.example"
"""Primary user who migrates to the partner system."""
PROFILE_XML = ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
               "<Name>Mike (migrated)</Name></mcptt-user-profile>")
ROUTINE = "Routine"
"""Partner policy: a profile containing this element is approved automatically."""


OPEN_GROUPS = "sip:grp-open-*@primary.example"
"""Partner policy: adding users to these primary groups (10.17.4) is approved automatically."""
OPEN_GROUP = "sip:grp-open-1@primary.example"
CLOSED_GROUP = "sip:grp-command@primary.example"
"""A primary group whose membership updates the partner's ACMC (DAVE) decides."""
LOOPBACK = frozenset({"127.0.0.1"})
"""The lab's trusted host: every node of it, and a SIP core in front, sends from there."""


def profile_xml(name: str, *elements: str) -> str:
    extra = "".join(f"<{e}/>" for e in elements)
    return ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
            f"<Name>{name}</Name>{extra}</mcptt-user-profile>")


def _sip(transport: Transport, port: int = 0, tls: TlsSettings | None = None,
         limits: Limits | None = None) -> SipSettings:
    # RFC 3261 18: UDP and TCP on every address (TLS labs: the TLS listener only)
    listens = ((Listen("tls", "127.0.0.1", port),) if transport == "tls"
               else (Listen("udp", "127.0.0.1", port), Listen("tcp", "127.0.0.1", port)))
    # short Timer F: a node that is down is noticed in seconds, not 32 s; every node (and a
    # SIP core in front) is on loopback: the trusted host (issue 13, docs/running.md "Trust")
    return SipSettings(listens=listens, transport=transport, send_timeout=4.0,
                       timers=Timers(t1=0.1, t2=0.4, t4=0.5), tls=tls,
                       trusted_hosts=LOOPBACK, limits=limits or Limits())


def fa_config() -> FaServerConfig:
    """The partner's FA controlling server: DUTY, which DAVE may activate; the partner ACMS may
    resolve it (24.379 9A.2.2.3)."""
    return FaServerConfig((FaConfig(DUTY, frozenset({DAVE})),), frozenset({PARTNER}))


def primary_config(store: str | None, timers: ProcedureTimers | None = None) -> AcmsConfig:
    return AcmsConfig(
        psi=PRIMARY,
        peers=(PeerSystem(PARTNER, ("partner.example",)),),
        users=(AuthorisedUser(ALICE, REQUEST_FLOWS, REQUEST_FLOWS),),
        timers=timers or ProcedureTimers(),
        store=StoreConfig(store))


def partner_config(store: str | None, timers: ProcedureTimers | None = None) -> AcmsConfig:
    return AcmsConfig(
        psi=PARTNER,
        peers=(PeerSystem(PRIMARY, ("primary.example",)),),
        users=(AuthorisedUser(DAVE, (), REQUEST_FLOWS),),
        policy=(PolicyRule(PolicyAction.APPROVE, AddUserConfigurationRequest.FLOW),
                PolicyRule(PolicyAction.APPROVE, RemoveUserConfigurationRequest.FLOW),
                PolicyRule(PolicyAction.APPROVE, "profile-update-request",
                           profile_contains=ROUTINE, reason="routine change"),
                # 10.17.3 per group and operation: joining an open interop group is routine
                PolicyRule(PolicyAction.APPROVE, "group-membership-update-request",
                           group=OPEN_GROUPS, operation="add", reason="open interop group")),
        migration=Migration("sip:{user}-{n}@partner.example", profile_from_xml(PROFILE_XML)),
        timers=timers or ProcedureTimers(),
        store=StoreConfig(store))


@dataclass
class Lab:
    """The five nodes, started and wired (hops set); :meth:`close` stops them all."""

    transport: Transport
    directory: Path
    fa: FaServerNode
    primary: AcmsNode
    partner: AcmsNode
    alice: AcmcNode
    dave: AcmcNode
    dave_decider: ProgrammableDecider
    trace: TraceHook | None = None
    _acmcs: list[AcmcNode] = field(default_factory=list)
    proxy: str | None = None
    """The SIP core every node sends through (hop ``*``); None: nodes send to each other."""
    ports: Mapping[str, int] = field(default_factory=dict)
    tls: TlsSettings | None = None
    timers: ProcedureTimers | None = None

    @classmethod
    @asynccontextmanager
    async def start(cls, directory: Path | None = None, transport: Transport = "udp",
                    trace: TraceHook | None = None, dave: Decider | None = None,
                    dave_online: bool = True, *, proxy: str | None = None,
                    ports: Mapping[str, int] | None = None, tls: TlsSettings | None = None,
                    timers: ProcedureTimers | None = None, limits: Limits | None = None,
                    metrics: bool = False) -> AsyncIterator[Lab]:
        """Start the five nodes; DAVE's ACMC decides with ``dave`` (default: a
        :class:`ProgrammableDecider` that holds requests) and logs on if ``dave_online``.

        ``proxy``: SIP URI of a SIP core (``sip:127.0.0.1:5060;transport=tcp``) set as hop
        ``*`` of every node.  ``ports``: fixed ports of "fa", "primary", "partner" (others:
        any free port).  ``tls``: every node's certificate and CA (needed for transport
        "tls").  ``timers``: both ACMSs' procedure timers (e.g. a short answer timer).
        ``limits``: the SIP limits of every node (e.g. small connection budgets).
        ``metrics``: every node serves ``/metrics`` on a free loopback port
        (``node.metrics.address``)."""
        ports = dict(ports or {})
        m = MetricsSettings(("127.0.0.1", 0) if metrics else None)
        with tempfile.TemporaryDirectory(prefix="mcacm-lab-") as tmp:
            base = Path(directory or tmp)
            sip = _sip(transport, tls=tls, limits=limits)
            fa = FaServerNode(FaServerNodeConfig(FA_SERVER, fa_config(),
                                                 _sip(transport, ports.get("fa", 0), tls,
                                                      limits), metrics=m),
                              trace=trace)
            primary = AcmsNode(AcmsNodeConfig(primary_config(str(base / "primary.sqlite"),
                                                             timers),
                                              _sip(transport, ports.get("primary", 0), tls,
                                                   limits), metrics=m),
                               trace=trace)
            partner = AcmsNode(AcmsNodeConfig(partner_config(str(base / "partner.sqlite"),
                                                             timers),
                                              _sip(transport, ports.get("partner", 0), tls,
                                                   limits), metrics=m),
                               trace=trace)
            decider = dave if isinstance(dave, ProgrammableDecider) else ProgrammableDecider(
                None if dave is None else dave.decide)
            alice = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, PRIMARY), sip, metrics=m),
                             trace=trace)
            dave_node = AcmcNode(AcmcNodeConfig(AcmcConfig(DAVE, PARTNER), sip, metrics=m),
                                 decider,
                                 trace=trace)
            lab = cls(transport, base, fa, primary, partner, alice, dave_node, decider, trace,
                      proxy=proxy, ports=ports, tls=tls, timers=timers)
            try:
                for node in (fa, primary, partner):
                    await node.start()
                lab.wire()
                await alice.start()
                await dave_node.start(logon=dave_online)
                yield lab
            finally:
                await lab.close()

    def hops(self, node: str) -> dict[str, str]:
        """The ``[sip.hops]`` table of one node of the lab."""
        t = self.transport
        if self.proxy is not None:  # everything through the SIP core, which routes by PSI
            return {"*": self.proxy}
        if node == "primary":
            return {PARTNER: self.partner.hop(t)}
        if node == "partner":
            return {PRIMARY: self.primary.hop(t), "partner.example": self.fa.hop(t)}
        if node == "alice":
            return {"*": self.primary.hop(t)}
        if node == "dave":
            return {DUTY: self.fa.hop(t), "*": self.partner.hop(t)}
        return {}

    def wire(self) -> None:
        self.fa.set_hops(self.hops("fa"))
        self.primary.set_hops(self.hops("primary"))
        self.partner.set_hops(self.hops("partner"))
        self.alice.set_hops(self.hops("alice"))
        self.dave.set_hops(self.hops("dave"))

    async def migrate_mike(self, timeout: float = 15.0) -> str:
        """23.280 10.17.5.2: ALICE adds MIKE's configuration at the partner (automatic by
        policy); MIKE's partner-assigned ID.  Raises RuntimeError if that fails."""
        out = await self.alice.add_users((MIKE,), Addressee(DAVE), timeout=timeout)
        users = out.response.users if isinstance(out.response, AddUserConfigurationResponse) \
            else ()
        if out.result != "success" or not users or users[0].partner_id is None:
            raise RuntimeError(f"MIKE did not migrate: {out}")
        return users[0].partner_id

    async def restart_partner(self) -> AcmsNode:
        """Stop the partner ACMS (its sockets close, its store stays) and start a new one on
        the same store; everyone's hops follow its new address."""
        await self.partner.stop()
        self.partner = AcmsNode(AcmsNodeConfig(partner_config(
            str(self.directory / "partner.sqlite"), self.timers),
            _sip(self.transport, self.ports.get("partner", 0), self.tls)), trace=self.trace)
        self.partner.set_hops(self.hops("partner"))  # before start: it re-sends at once
        await self.partner.start()
        self.wire()
        return self.partner

    async def close(self) -> None:
        for node in (self.alice, self.dave):
            await node.stop()
        for server in (self.partner, self.primary, self.fa):
            await server.stop()
