"""Plays the catalogue against a peer ACMS over SIP and judges what it does.

One SIP endpoint carries every identity the runner plays (over TLS with ``[wire.tls]
acmc_certificate``, the ACMC gets a second endpoint with its own certificate and connections,
docs/conformance.md "TLS"):

- ``--role partner``: the foreign primary ACMS (``[partner] primary_psi``) that sends the peer
  requests, and the ACMC of ``decider`` (REGISTERed at the peer) that receives the requests
  the peer routes to a user, and answers them;
- ``--role primary``: the ACMC of ``requester`` (REGISTERed at the peer) that sends requests,
  and the partner ACMS (``[primary] partner_psi``) that receives what the peer forwards and
  answers it in the scripted way.

Each request the runner sends is followed by a :class:`~mcacm_sip.runtime.sender.Exchange`
(the sans-I/O state of ``mcacm send``): it matches the process indication and the final
response by transaction id and validates them.  What else arrives (requests to decide,
forwarded requests, pending-data notifications) is recorded as :class:`Arrival` s.  Each
scenario script turns what it saw into :class:`~.report.Checks`; every SIP message of a
scenario goes to its pcap, every event to its JSON-lines log.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    AcmResponse,
    ModelError,
    PendingDataDownloadResponse,
    PendingDataNotification,
    ProcessIndication,
)
from mcacm_sip.conformance.catalogue import Scenario, not_applicable, scenarios_for
from mcacm_sip.conformance.profile import Fixtures, Profile, Role, WireTls
from mcacm_sip.conformance.report import Checks, Report, ScenarioResult, Verdict
from mcacm_sip.core.config import PeerSystem
from mcacm_sip.pcap import PcapWriter
from mcacm_sip.runtime.base import (
    TlsSettings,
    TraceHook,
    TraceRecord,
    hop_peer,
    hop_uri,
    named_transport,
    node_trace,
)
from mcacm_sip.runtime.messaging import message_reply, warning_text
from mcacm_sip.runtime.sender import Exchange, SendableRequest
from mcacm_sip.runtime.trust import certificate_names, names_peer
from mcacm_sip.sip import Peer, Reply, SipTimeout, SipTransportError, Timers, Transport
from mcacm_sip.sip.aio import IncomingRequest, Listen, SipEndpoint, is_ip
from mcacm_sip.sip.aio.usages import RegistrationClient, RegistrationError
from mcacm_sip.sip.message import read_raw
from mcacm_sip.sip.uri import Uri, addr_spec, address_of_record, registrar_uri, uri_host

_ANSWERS = (ProcessIndication, AcmResponse, PendingDataDownloadResponse)
"""What answers a request we sent (and goes to its Exchange)."""

Script = Callable[["Runner", Checks], Awaitable[None]]
SCRIPTS: dict[tuple[str, Role], Script] = {}


def script(id: str, *roles: Role) -> Callable[[Script], Script]:
    def register(fn: Script) -> Script:
        for role in roles:
            SCRIPTS[(id, role)] = fn
        return fn
    return register


class SetupFailed(Exception):
    """The runner could not bring the scenario to the point of judging (Inconclusive)."""


class PeerNotReady(Exception):
    """The pre-flight found that no scenario could be judged (unreachable peer, another
    registration of our ACMC's user): the run stops before the first scenario."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage
        """True: the command line is at fault (no hop for --peer)."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """A MESSAGE that reached the runner and was not an answer to one of its requests."""

    time: float
    uri: str
    """Request-URI: our PSI or our ACMC contact."""
    sender: str | None
    flow: AcmFlow | None
    status: int
    """What we answered."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """The SIP outcome of one MESSAGE we sent."""

    status: int | None
    """None: no final answer (timeout, transport failure)."""
    reason: str = ""
    warning: str | None = None
    accept: str | None = None
    body: bytes = b""
    call_id: str = ""
    untrusted: str | None = None
    """Set on a 403 over TLS that may refuse our set-up rather than the request (the runner
    cannot tell them apart): to our PSI when our certificate does not name it (RFC 5922
    7.4), to our ACMC when it shares the PSI's certificate.  The text says what to fix;
    the scripts judge such a 403 Inconclusive."""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        if self.status is None:
            return self.reason or "no answer"
        return f"{self.status} {self.reason}" + (f" ({self.warning})" if self.warning else "")


def parse_peer(uri: str) -> tuple[str, Peer | None, Transport | None]:
    """``--peer``: the Request-URI we send to, the next hop if it names an IP address and a
    port, and the transport it names.  Raises ValueError for something that is no SIP URI
    or names a transport other than udp, tcp or tls."""
    raw = uri.strip().strip("<>")
    if not raw.lower().startswith(("sip:", "sips:")):
        raise ValueError(f"{uri}: not a sip: or sips: URI")
    host = uri_host(raw)
    transport = named_transport(raw)
    hop: Peer | None = None
    if is_ip(host):
        try:
            hop = hop_peer(raw, transport or "udp")
        except ValueError:  # an IP without a port: let the endpoint use 5060 / 5061
            hop = None
    return raw, hop, transport


# --------------------------------------------------------------------------- the runner


class Runner:
    """Build with :meth:`open` (it listens); :meth:`run` plays the catalogue."""

    def __init__(self, profile: Profile, role: Role, peer: str, out: Path | None = None,
                 progress: Callable[[str], None] | None = None,
                 trace: TraceHook | None = None) -> None:
        self.profile = profile
        self._trace = trace
        """Also given every SIP message (``mcacm capture -- conformance``)."""
        self.role: Role = role
        self.peer_uri, hop, named = parse_peer(peer)
        wire = profile.wire
        if hop is None and wire.hop:
            hop = hop_peer(wire.hop, named or wire.transport)
        self.transport: Transport = named or (hop.transport if hop else wire.transport)
        self.peer_hop = hop
        self.fx: Fixtures | None = profile.roles.get(role)
        self.out = out
        self._say = progress or (lambda _: None)
        listen = (self.fx.listen if self.fx else "127.0.0.1:0")
        host, _, port = listen.rpartition(":")
        tls, acmc_tls = _tls_settings(wire.tls, self.transport)
        self.unnamed: str | None = None
        """Why our certificate may not name our PSI (RFC 5922 7.1), None if it does."""
        if tls is not None and tls.certificate is not None and self.fx is not None:
            self.unnamed = _unnamed(tls.certificate, self.fx.psi)
        self.endpoint = self._endpoint(Listen(self.transport, host.strip("[]"), int(port)), tls)
        self.acmc_endpoint = self.endpoint if acmc_tls is None else \
            self._endpoint(Listen("tls", host.strip("[]"), 0), acmc_tls)
        """Where our ACMC registers its contact and sends from: its own TLS endpoint (own
        certificate, own connections) when ``[wire.tls] acmc_certificate`` is set."""
        self.wait = profile.timing.wait
        self.quiet = profile.timing.quiet
        self._exchanges: dict[str, Exchange] = {}
        self.arrivals: list[Arrival] = []
        self.partner_status = 200
        """(role primary) our SIP answer to requests the peer forwards to our partner PSI."""
        self._changed = asyncio.Event()
        self._records: list[TraceRecord] = []
        self._log: list[dict[str, Any]] = []
        self._registration: RegistrationClient | None = None
        self.registered_as: str | None = None
        self.assigned: dict[Uri, str] = {}
        """Primary ID -> partner ID, learnt in ``add-user`` (either role)."""

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    @asynccontextmanager
    async def open(cls, profile: Profile, role: Role, peer: str, out: Path | None = None,
                   progress: Callable[[str], None] | None = None,
                   trace: TraceHook | None = None) -> AsyncIterator[Runner]:
        runner = cls(profile, role, peer, out, progress, trace)
        endpoints = list(dict.fromkeys((runner.endpoint, runner.acmc_endpoint)))
        try:
            for endpoint in endpoints:
                await endpoint.start()
                endpoint.serve("MESSAGE", runner._on_message)
            yield runner
        finally:
            await runner.logoff()
            for endpoint in endpoints:
                await endpoint.close()

    def _endpoint(self, listen: Listen, tls: TlsSettings | None) -> SipEndpoint:
        t1 = self.profile.timing.t1
        return SipEndpoint(
            [listen], timers=Timers(t1=t1, t2=8 * t1, t4=10 * t1),
            tls_server=tls.server_context() if tls else None,
            tls_client=tls.client_context() if tls else None,
            trace=node_trace(self._traced, "conformance"),
            locate=lambda _uri: self.peer_hop)  # everything we send goes to the peer

    def endpoint_for(self, identity: str) -> SipEndpoint:
        """The endpoint that sends as ``identity``: a PSI (ours, or the unknown one) from
        the PSI's endpoint, a user from the ACMC's."""
        assert self.fx is not None
        psis = (address_of_record(self.fx.psi), address_of_record(self.fx.unknown_psi))
        return self.endpoint if address_of_record(identity) in psis else self.acmc_endpoint

    def hop(self) -> str:
        """A SIP URI for the peer's next-hop table: where our PSI and contacts are."""
        return hop_uri(self.endpoint, self.transport)

    @property
    def psi(self) -> str:
        assert self.fx is not None
        return self.fx.psi

    @property
    def acmc_user(self) -> str:
        """The ACMC we play: the decider (role partner) or the requester (role primary)."""
        assert self.fx is not None
        return self.fx.decider if self.role == "partner" else self.fx.requester

    async def preflight(self) -> None:
        """Before any scenario: a hop for the peer, an answer to OPTIONS (RFC 3261 11: any
        final response proves a SIP stack there) within the profile's wait instead of Timer F
        per scenario, and no other binding of the user whose ACMC we play (the peer could
        deliver requests there, and scenarios would fail for nothing of the peer's doing).
        Raises PeerNotReady."""
        if self.peer_hop is None:
            raise PeerNotReady(f"--peer {self.peer_uri} names no address and the profile "
                               "has no [wire] hop: give sip:acms@IP:PORT or set [wire] hop",
                               usage=True)
        hop = self.peer_hop
        where = f"{hop.transport} {hop.host}:{hop.port}"
        options = self.endpoint.new_request("OPTIONS", self.peer_uri, from_uri=self.psi
                                            if self.fx else "sip:conformance@invalid",
                                            to_uri=self.peer_uri, transport=self.transport)
        try:
            final = await self.endpoint.send(options, timeout=self.wait)
        except (SipTimeout, SipTransportError) as exc:
            raise PeerNotReady(f"the peer {self.peer_uri} at {where} does not answer OPTIONS "
                               f"({exc}): is it running and listening there? (the profile's "
                               "[timing] wait is the time allowed)") from None
        self._say(f"pre-flight: OPTIONS answered {final.status} by {where}")
        if not self.acmc_user:
            return
        try:
            await self.logon()
        except SetupFailed as exc:
            raise PeerNotReady(str(exc)) from None
        assert self._registration is not None
        others = self._registration.core.others
        if others:
            user = self.acmc_user
            raise PeerNotReady(
                f"{user} is also registered at the peer from {', '.join(others)}: the peer "
                "may deliver requests to that ACMC instead of to the runner (false fails): "
                "stop that ACMC (with the example system: the README's `mcacm acmc` of "
                "this user) or name another user in the profile")

    async def run(self, only: tuple[str, ...] = (), *, scenarios: tuple[Scenario, ...] = (),
                  fail_fast: bool = False) -> Report:
        """Play the scenarios of our role (or those named in ``only``, or ``scenarios``), in
        catalogue order; ``fail_fast``: stop after the first Fail (the report then lacks the
        scenarios not played)."""
        results = []
        for s in scenarios or scenarios_for(self.role, only):
            results.append(await self.play(s))
            if fail_fast and results[-1].verdict is Verdict.FAIL:
                break
        return Report(self.peer_uri, self.role, self.profile.name, tuple(results))

    async def play(self, scenario: Scenario) -> ScenarioResult:
        why = not_applicable(scenario, self.role, self.fx, self.transport)
        if why is not None:
            return ScenarioResult(scenario.id, scenario.title, scenario.clause,
                                  Verdict.NOT_APPLICABLE, why)
        self._say(f"{scenario.id} ...")
        self._records, self._log, self.arrivals = [], [], []
        self._exchanges.clear()
        self.partner_status = 200
        checks = Checks()
        started = time.time()
        try:
            if self.acmc_user and self.registered_as is None:
                await self.logon()
            await SCRIPTS[(scenario.id, self.role)](self, checks)
        except SetupFailed as exc:
            checks.unobservable("set-up", str(exc))
        except (OSError, SipTransportError) as exc:
            checks.unobservable("set-up", f"transport failure: {exc}")
        except ModelError as exc:  # a fixture the message layer refuses (e.g. not a URI)
            checks.unobservable("set-up", f"cannot build the request: {exc}")
        await asyncio.sleep(0)  # let answers in flight be traced
        result = ScenarioResult(scenario.id, scenario.title, scenario.clause, checks.verdict,
                                checks.reason, tuple(checks.items), time.time() - started)
        for c in checks.items:
            self._event("check", what=c.what, ok=c.ok, detail=c.detail or None)
        self._event("verdict", verdict=str(result.verdict), reason=result.reason or None)
        self._say(f"{scenario.id}: {result.verdict.name.lower()}"
                  + (f" ({result.reason})" if result.reason else ""))
        return self._save(result)

    # ------------------------------------------------------------------ evidence

    def _traced(self, record: TraceRecord) -> None:
        self._records.append(record)
        if self._trace is not None:
            self._trace(record)

    def _event(self, event: str, **fields: Any) -> None:
        self._log.append({"t": round(time.time(), 6), "event": event, **fields})

    def _save(self, result: ScenarioResult) -> ScenarioResult:
        if self.out is None:
            return result
        self.out.mkdir(parents=True, exist_ok=True)
        pcap, log = self.out / f"{result.id}.pcap", self.out / f"{result.id}.jsonl"
        with open(pcap, "wb") as f:
            writer = PcapWriter(f)
            for r in self._records:
                writer.write(r.time, r.transport, r.src, r.dst, r.data)
            writer.close_all(time.time())
        with open(log, "w", encoding="utf-8") as text:
            _write_lines(text, self._log)
        return replace(result, pcap=str(pcap), log=str(log))

    # ------------------------------------------------------------------ ACMC logon

    async def logon(self) -> None:
        """REGISTER our ACMC identity at the peer (23.280 10.17.3.1 logon)."""
        user = self.acmc_user
        registration = RegistrationClient(
            self.acmc_endpoint, registrar=registrar_uri(self.peer_uri), aor=user, expires=600,
            transport=self.transport)
        try:
            await registration.register()
        except RegistrationError as exc:
            await registration.close()
            self._event("register", user=user, status=exc.status)
            hint = self._untrusted(exc.status or 0, user)
            raise SetupFailed(f"REGISTER {user} at the peer failed: "
                              f"{exc.status or 'no answer'}"
                              + (f": {hint}" if hint else "")) from None
        self._event("register", user=user, status=200)
        self._registration, self.registered_as = registration, user

    async def logoff(self) -> None:
        """Remove our ACMC's binding (logged off until :meth:`logon`)."""
        registration, self._registration, self.registered_as = self._registration, None, None
        if registration is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(registration.unregister(), self.wait)
            self._event("unregister", user=self.acmc_user)

    # ------------------------------------------------------------------ MESSAGE in

    def _on_message(self, incoming: IncomingRequest) -> Reply:
        msg = incoming.message
        now = time.time()
        body, ctype = self.profile.wire.dialect.incoming(msg.body, msg.header("content-type"))
        sender = _aor(msg.header("from"))
        try:
            flow = codec.decode(body, content_type=ctype or "")
        except AcmError as exc:
            self._arrived(Arrival(now, msg.uri, sender, None, exc.sip_status, exc.warning_text))
            return message_reply(uri_host(self.psi), exc.sip_status, exc.warning_text)
        tid = getattr(flow, "transaction_id", "")
        ex = self._exchanges.get(tid)
        if ex is not None and isinstance(flow, _ANSWERS):
            status, text = ex.on_message(body, ctype, now)  # 10.17.7.2 steps 4 and 8 / 10
            self._event("received", flow=flow.FLOW, transaction_id=tid, sender=sender,
                        answered=status, note=text)
            self._changed.set()
            return Reply(200) if text is None else message_reply(uri_host(self.psi), status,
                                                                 text)
        status = self.partner_status if (isinstance(flow, AcmRequest) and self.role == "primary"
                                         and address_of_record(addr_spec(msg.uri))
                                         == address_of_record(self.psi)) \
            else 200
        self._arrived(Arrival(now, msg.uri, sender, flow, status))
        if status >= 300:
            return message_reply(uri_host(self.psi), status, "not-authorised: scripted refusal")
        return Reply(200)

    def _arrived(self, arrival: Arrival) -> None:
        self.arrivals.append(arrival)
        flow = arrival.flow
        self._event("received", flow=flow.FLOW if flow else None, sender=arrival.sender,
                    uri=arrival.uri, transaction_id=getattr(flow, "transaction_id", None),
                    answered=arrival.status, error=arrival.error)
        self._changed.set()

    def requests(self, tid: str) -> list[Arrival]:
        """Requests with transaction id ``tid`` that reached us (forwards / deliveries)."""
        return [a for a in self.arrivals if isinstance(a.flow, AcmRequest)
                and a.flow.transaction_id == tid]

    def notifications(self) -> list[Arrival]:
        return [a for a in self.arrivals if isinstance(a.flow, PendingDataNotification)]

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until ``done()``; returns it."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    async def idle(self, seconds: float) -> None:
        """Watch for ``seconds`` (for what must not happen)."""
        await self.until(lambda: False, seconds)

    # ------------------------------------------------------------------ MESSAGE out

    async def send(self, body: bytes, *, identity: str, uri: str | None = None,
                   content_type: str | None = None, native: bool = True) -> Sent:
        """One MESSAGE to the peer (Request-URI ``uri``, default ``--peer``) from ``identity``
        with the profile's headers; ``native``: ``body`` is in our dialect (translated)."""
        wire = self.profile.wire
        target = uri or self.peer_uri
        headers = []
        if wire.identity_header:
            headers.append((wire.identity_header, f"<{identity}>"))
        if wire.icsi:
            headers.append(("P-Asserted-Service", wire.icsi))
        endpoint = self.endpoint_for(identity)
        request = endpoint.new_request(
            "MESSAGE", target, from_uri=identity, to_uri=target,
            body=wire.dialect.outgoing(body) if native else body,
            content_type=content_type or wire.dialect.content_type, headers=headers,
            transport=self.transport)
        try:
            final = await endpoint.send(request)
        except SipTimeout:
            sent = Sent(None, "no answer (RFC 3261 Timer F)", call_id=request.call_id)
        except SipTransportError as exc:
            sent = Sent(None, f"cannot reach the peer: {exc}", call_id=request.call_id)
        else:
            m = final.message
            sent = Sent(final.status, m.reason, warning_text(m.header("warning")),
                        m.header("accept"), m.body, request.call_id,
                        self._untrusted(final.status, identity))
        self._event("sent", identity=identity, uri=target, status=sent.status,
                    reason=sent.reason, warning=sent.warning, call_id=request.call_id)
        self._changed.set()
        return sent

    def _untrusted(self, status: int, identity: str) -> str | None:
        if status != 403 or self.transport != "tls" or self.fx is None:
            return None
        if address_of_record(identity) == address_of_record(self.fx.psi):
            if self.unnamed is None:
                return None
            return f"the peer does not believe our PSI over TLS: {self.unnamed} (RFC 5922 7.4)"
        if self.acmc_endpoint is self.endpoint and self.unnamed is None \
                and address_of_record(identity) != address_of_record(self.fx.unknown_psi):
            return ("our ACMC sends on connections whose certificate names our PSI, and a "
                    "peer may bind such a connection to our system (trust.py rule 3): give "
                    "it its own certificate, [wire.tls] acmc_certificate")
        return None

    async def send_flow(self, flow: AcmFlow, *, identity: str) -> Sent:
        self._event("sending", flow=flow.FLOW, transaction_id=getattr(flow, "transaction_id",
                                                                       None))
        return await self.send(codec.encode(flow), identity=identity)

    def follow(self, request: SendableRequest) -> Exchange:
        """The Exchange that collects the answers to ``request`` (made on first use)."""
        ex = self._exchanges.get(request.transaction_id)
        if ex is None:
            ex = self._exchanges[request.transaction_id] = Exchange(request, time.time())
        return ex

    async def request(self, request: SendableRequest, *, identity: str,
                      body: bytes | None = None) -> tuple[Exchange, Sent]:
        """Send ``request`` and follow it: its indication and response reach the Exchange."""
        ex = self.follow(request)
        self._event("sending", flow=request.FLOW, transaction_id=request.transaction_id,
                    identity=identity)
        sent = await self.send(codec.encode(request) if body is None else body,
                               identity=identity)
        if sent.status is None:
            ex.on_failure(sent.reason, time.time())
        else:
            ex.on_final(sent.status, sent.reason, sent.warning, time.time())
        return ex, sent

    def sent_bytes(self, call_id: str) -> bytes | None:
        """The bytes of the first request we sent with ``call_id`` (from the trace)."""
        for r in self._records:
            if r.direction == "out":
                msg = read_raw(r.data)
                if msg.method is not None and msg.header("call-id") == call_id:
                    return r.data
        return None

    def answers_to(self, call_id: str, after: float) -> list[int]:
        """Statuses of the responses with ``call_id`` that reached our endpoint after
        ``after`` (a retransmitted request's answers land here: RFC 3261 18.2.2)."""
        out = []
        for r in self._records:
            if r.direction == "in" and r.time >= after:
                # read leniently: a peer's answer counts even where parse() would refuse it
                msg = read_raw(r.data)
                if msg.status is not None and msg.header("call-id") == call_id:
                    out.append(msg.status)
        return out

    async def retransmit(self, data: bytes) -> None:
        """Send ``data`` again, byte for byte, from a second UDP socket of ours that stays
        open for the quiet time: the peer answers the source (RFC 3581 4) or the Via's
        sent-by (our endpoint); both are traced."""
        hop = self.peer_hop
        if hop is None:
            raise SetupFailed("a retransmission needs the peer's address (an IP in --peer or "
                              "[wire] hop)")
        loop = asyncio.get_running_loop()
        runner = self

        class Copy(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                runner._traced(TraceRecord(time.time(), "in", "udp", (str(addr[0]),
                               int(addr[1])), local, data, "conformance"))
                runner._changed.set()

        transport, _ = await loop.create_datagram_endpoint(
            Copy, remote_addr=(hop.host, hop.port))
        name = transport.get_extra_info("sockname")
        local = (str(name[0]), int(name[1]))
        try:
            transport.sendto(data)
            self._traced(TraceRecord(time.time(), "out", "udp", local, (hop.host, hop.port),
                                     data, "conformance"))
            self._event("retransmitted", bytes=len(data), source=f"{local[0]}:{local[1]}")
            await self.idle(self.quiet)
        finally:
            transport.close()


def _tls_settings(tls: WireTls | None, transport: Transport
                  ) -> tuple[TlsSettings | None, TlsSettings | None]:
    """The TLS settings of our PSI's and our ACMC's endpoints (None, None: no TLS).
    Raises ValueError (a ConfigError for a file) naming the ``[wire.tls]`` key."""
    if transport != "tls":
        return None, None
    if tls is None:
        raise ValueError("wire.tls: TLS to the peer needs a [wire.tls] table in the profile "
                         "(certificate, key, ca; docs/conformance.md)")
    tls.check()
    return tls.settings(), tls.acmc_settings()


def _unnamed(certificate: Path, psi: str) -> str | None:
    """Why a peer that binds our PSI to our certificate (RFC 5922 7.4; trust.py rule 1)
    would refuse it: the certificate names neither the PSI nor its host; None if it does.
    The stdlib decodes a PEM file only through a private helper: without it, we cannot
    tell (a reason is returned, so a 403 to our PSI stays Inconclusive)."""
    decode = getattr(_ssl, "_test_decode_cert", None)
    try:
        names = certificate_names(decode(str(certificate))) if decode else None
    except (OSError, ValueError):
        names = None
    if names is None:
        return f"cannot read the names of {certificate.name}; check that it names " \
               f"{uri_host(psi)}"
    if not names_peer(names, PeerSystem(psi)):
        return (f"[wire.tls] certificate names {', '.join(sorted(names)) or 'nothing'}, "
                f"not {uri_host(psi)}")
    return None


def _aor(value: str | None) -> str | None:
    if not value:
        return None
    aor = address_of_record(addr_spec(value.split(",")[0]))
    return None if aor is None else str(aor)


def _write_lines(f: TextIO, events: list[dict[str, Any]]) -> None:
    for e in events:
        f.write(json.dumps(e, default=str) + "\n")


# the scenario scripts register themselves in SCRIPTS
from mcacm_sip.conformance import scripts  # noqa: E402,F401

__all__ = ["SCRIPTS", "Arrival", "Runner", "Sent", "SetupFailed", "parse_peer"]
