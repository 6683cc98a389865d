"""What the ACMS, ACMC and FA server nodes share: the message trace, static next hops, the
sender identity rule, the Warning header, the single core timer and the :class:`Node` base.

The nodes are thin adapters (docs/running.md): sockets, the wall clock and the store live here,
the procedure logic in :mod:`mcacm_sip.core`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import itertools
import logging
import ssl
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from mcacm_sip.runtime.hep import CaptureSettings, HepMirror
from mcacm_sip.sip import Limits, Peer, Request, Timers, Transport
from mcacm_sip.sip.aio import Listen, MessageTrace, SipEndpoint, TracedMessage, is_ip
from mcacm_sip.sip.aio.timer import TimerDriver
from mcacm_sip.sip.headers import Warning
from mcacm_sip.sip.uri import Uri, addr_spec, address_of_record, identity
from mcacm_sip.sip.uri import uri_host as uri_host  # the nodes import it from here

log = logging.getLogger("mcacm.runtime")

# --------------------------------------------------------------------------- message trace


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One SIP message as it crossed a socket of a node (for ladders and debugging)."""

    time: float
    """Wall clock (``time.time()``)."""
    direction: Literal["in", "out"]
    transport: Transport
    src: tuple[str, int]
    dst: tuple[str, int]
    """Real socket addresses: our side is the UDP socket's or the TCP/TLS connection's own
    end (an outbound connection's ephemeral port), so a message's ``out`` and ``in``
    records name the same pair of addresses."""
    data: bytes
    """The raw message bytes (a retransmission is traced again)."""
    node: str = ""
    """The tracing node's identity (PSI or MC service ID)."""


TraceHook = Callable[[TraceRecord], None]


_R = TypeVar("_R")


def tee(*hooks: Callable[[_R], None] | None) -> Callable[[_R], None] | None:
    """One trace hook calling each of ``hooks`` that is set (None if none is)."""
    live = [h for h in hooks if h is not None]
    if len(live) <= 1:
        return live[0] if live else None

    def each(record: _R) -> None:
        for hook in live:
            hook(record)
    return each


def node_trace(hook: TraceHook, node: str) -> MessageTrace:
    """The endpoint's message trace (docs/sip-api.md) as :class:`TraceRecord` s of ``node``."""

    def record(m: TracedMessage) -> None:
        remote = (m.remote.host, m.remote.port)
        src, dst = (remote, m.local) if m.direction == "in" else (m.local, remote)
        hook(TraceRecord(m.time, m.direction, m.transport, src, dst, m.data, node))

    return record


# --------------------------------------------------------------------------- settings

TrustMode = Literal["strict", "lab"]
TRUST_KEY = "sip.trust"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``[sip.tls]``: our certificate for TLS listeners and for outgoing connections (mutual
    authentication), and whom we trust (RFC 3261 26.2, RFC 5922)."""

    certificate: Path | None = None
    """PEM: our certificate chain, leaf first (may hold the key too).  Needed to listen on
    TLS; without it we connect out as a TLS client that shows no certificate."""
    key: Path | None = None
    """PEM private key, if not in ``certificate``."""
    ca: Path | None = None
    """PEM trust anchors for the peers' certificates (servers and clients); None: the system
    store."""
    require_client_cert: bool = False
    """Our TLS listeners refuse a client without a certificate signed by ``ca``."""

    def server_context(self) -> ssl.SSLContext:
        """For our TLS listeners.  Raises OSError / ssl.SSLError / ValueError on bad files."""
        if self.certificate is None:
            raise ValueError("a TLS listener needs a certificate")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self._ca())
        ctx.load_cert_chain(self.certificate, self.key)
        ctx.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_NONE
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """For connections we open: the server's certificate must chain to ``ca`` and name
        the host of the URI we send to (RFC 5922 7.3); ours is shown if we have one."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self._ca())
        if self.certificate is not None:
            ctx.load_cert_chain(self.certificate, self.key)
        return ctx

    def _ca(self) -> str | None:
        return None if self.ca is None else str(self.ca)


@dataclass(frozen=True, slots=True)
class SipSettings:
    """The runtime tables of every role's TOML (``[[listen]]``, ``[sip]``, ``[sip.hops]``)."""

    listens: tuple[Listen, ...] = (Listen("udp", "127.0.0.1", 0), Listen("tcp", "127.0.0.1", 0))
    """RFC 3261 18: UDP and TCP, on the same port (any free one by default)."""
    icsi: str = "urn:urn-7:3gpp-service.ims.icsi.mcptt"
    """P-Asserted-Service of the MESSAGEs we send (architecture.md 4; configurable ICSI)."""
    trusted_hosts: frozenset[str] = frozenset()
    """Source IPs (the IMS core, trusted peers) whose P-Asserted-Identity is believed; with
    any set, nobody else is identified (docs/running.md "Trust")."""
    trust: TrustMode = "strict"
    """``[sip] trust``: "strict" (default): every peer and user this node believes by identity
    must be authenticated by ``trusted_hosts`` or mutual TLS, else the node does not start;
    "lab": From is believed from any address (WARNING at start)."""
    hops: Mapping[str, str] = field(default_factory=dict)
    """Static next hops instead of DNS: a URI (``sip:acms@partner.example``), a domain
    (``partner.example``) or ``*`` -> the SIP URI of the address to send to."""
    transport: Transport = "udp"
    """Transport of requests whose hop names none."""
    send_timeout: float = 32.0
    """Give up on a MESSAGE after this many seconds (RFC 3261 Timer F is 64*T1)."""
    registration_expires: int = 600
    """ACMC: REGISTER Expires; refreshed at half the granted time (RFC 3261 10.2)."""
    timers: Timers = field(default_factory=Timers)
    limits: Limits = field(default_factory=Limits)
    tls: TlsSettings | None = None
    """``[sip.tls]``; None: no TLS (no ``tls`` listener, no ``;transport=tls`` / sips: hop)."""
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    """``[capture]``: every SIP message mirrored to a HEP collector (runtime/hep.py)."""


def named_transport(uri: str) -> Transport | None:
    """The transport a SIP URI names (``sips:`` or ``;transport=tls``: TLS; ``;transport=``
    in any case), None if it names none.  Raises ValueError for another transport."""
    u = identity(uri.strip().strip("<>"))  # a URI, not a header value: its parameters count
    if u.scheme == "sips":
        return "tls"
    value = u.param("transport")  # lower case
    if value is None:
        return None
    if value not in ("udp", "tcp", "tls"):
        raise ValueError(f"{uri}: transport must be udp, tcp or tls")
    return cast(Transport, value)


def hop_peer(uri: str, default: Transport = "udp") -> Peer:
    """The transport address a hop URI names: ``sip:127.0.0.1:5070;transport=tcp``
    (``sips:`` or ``;transport=tls``: TLS).

    Raises ValueError unless the host is an IP literal with a port.
    """
    u = identity(uri.strip().strip("<>"))  # a URI, not a header value: its parameters count
    if not is_ip(u.host) or not u.port:
        raise ValueError(f"{uri}: a hop needs an IP address and a port")
    return Peer(named_transport(uri) or default, u.host, u.port)


class Hops:
    """Where requests go when their Request-URI does not name an address (no DNS/SRV here)."""

    KNOWN = 1024

    def __init__(self, hops: Mapping[str, str], default: Transport = "udp") -> None:
        self._by_aor: dict[Uri, Peer] = {}
        """A key that is a SIP URI: its AOR, compared by RFC 3261 19.1.4."""
        self._by_domain: dict[str, Peer] = {}
        """A domain (lower case) or ``*``."""
        self._known: dict[str, Peer | None] = {}
        """Request-URI -> its hop, as found before: the same few URIs (peer PSIs, our ACMS,
        registered contacts) are looked up for every MESSAGE; at most ``KNOWN`` kept."""
        for key, uri in hops.items():
            aor = None if key == "*" or ":" not in key else address_of_record(key)
            if aor is not None:
                self._by_aor[aor] = hop_peer(uri, default)
            else:
                self._by_domain[key.lower()] = hop_peer(uri, default)

    def peer_for(self, uri: str) -> Peer | None:
        """The hop for ``uri``: its exact AOR, else its domain, else ``*``; None for a URI
        that names an IP address (a registered contact, a dialog's remote target: the
        endpoint sends to that address itself)."""
        try:
            return self._known[uri]
        except KeyError:
            pass
        if len(self._known) >= self.KNOWN:
            self._known.clear()
        peer = self._known[uri] = self._find(uri)
        return peer

    def _find(self, uri: str) -> Peer | None:
        host = uri_host(uri)
        if is_ip(host):
            return None
        aor = address_of_record(addr_spec(uri))
        if aor is not None and aor in self._by_aor:
            return self._by_aor[aor]
        return self._by_domain.get(host) or self._by_domain.get("*")


def make_endpoint(settings: SipSettings, node: str, trace: TraceHook | None) -> SipEndpoint:
    """The node's endpoint: its listeners, static hops as the ``locate`` hook, its trace."""
    tls = settings.tls
    listens_tls = any(lst.transport == "tls" for lst in settings.listens)
    return SipEndpoint(settings.listens, timers=settings.timers, limits=settings.limits,
                       tls_server=tls.server_context() if tls and listens_tls else None,
                       tls_client=tls.client_context() if tls else None,
                       trace=None if trace is None else node_trace(trace, node),
                       locate=Hops(settings.hops, settings.transport).peer_for,
                       privileged=privileged_sources(settings.trusted_hosts, settings.hops))


def privileged_sources(trusted_hosts: frozenset[str], hops: Mapping[str, str]) -> frozenset[str]:
    """Addresses whose connections always get in (``Limits.max_connections``): the trusted
    hosts and every configured next hop (peer ACMSs, our ACMS, the SIP core)."""
    return frozenset(trusted_hosts) | {hop_peer(uri).host for uri in hops.values()}


def addresses(endpoint: SipEndpoint, listens: Sequence[Listen]) -> dict[str, tuple[str, int]]:
    """Transport -> (host, port) actually bound (ports are real when 0 was configured)."""
    return {lst.transport: endpoint.local_address(lst.transport) for lst in listens}


def hop_uri(endpoint: SipEndpoint, transport: Transport) -> str:
    """A SIP URI other nodes can use as a hop to reach ``endpoint`` over ``transport``."""
    host, port = endpoint.local_address(transport)
    host = f"[{host}]" if ":" in host else host
    return f"sip:{host}:{port}" + ("" if transport == "udp" else f";transport={transport}")


# --------------------------------------------------------------------------- identity


def source_ip(request: Request) -> str | None:
    """Where a request came from: the socket's peer address (:class:`~mcacm_sip.sip.Arrival`),
    never its Via (a peer can write any ``received``; RFC 3261 18.2.1 keeps that for routing
    responses).  None for a request that came from no socket."""
    arrival = request.arrival
    return None if arrival is None else arrival.host


def sender_identity(request: Request, trusted_hosts: frozenset[str]) -> str | None:
    """Who sent ``request`` (docs/decisions.md "Runtime"): P-Asserted-Identity when the request
    came from a trusted host (RFC 3325 9.1: only a trust domain may assert), else the From URI.
    Returned as the AOR (no parameters); None if unparseable."""
    return identity_from(request, source_ip(request), trusted_hosts)


def identity_from(request: Request, source: str | None, trusted_hosts: frozenset[str]
                  ) -> str | None:
    """:func:`sender_identity` of ``request`` that came from ``source`` (its
    :func:`source_ip`, which the caller has read)."""
    if source in trusted_hosts:
        asserted = request.header("p-asserted-identity")
        if asserted:  # one text per asserting peer: remembered (a From has its own tag)
            return _asserted(asserted)
    raw = request.header("from")
    return identity_in(raw) if raw else None


def identity_in(value: str) -> str | None:
    """The identity a From or P-Asserted-Identity value names: the canonical text of the
    AOR of its first URI (RFC 3261 19.1.4), None if that is no SIP or SIPS URI."""
    aor = address_of_record(addr_spec(value.split(",")[0]))
    return None if aor is None else str(aor)


_asserted = lru_cache(maxsize=256)(identity_in)
""":func:`identity_in` of a P-Asserted-Identity value, remembered: the same few texts (one
per peer or proxy asserting) arrive with every request of a trusted host."""


def trusted_source(source: str | None, trusted_hosts: frozenset[str]) -> bool:
    """Whether a request from ``source`` may identify anyone: always without a trust domain,
    else only from its hosts (RFC 3325 9.1; docs/decisions.md "Reliability: trust and
    authorisation")."""
    return not trusted_hosts or source in trusted_hosts


def warning(host: str, text: str) -> tuple[str, str]:
    """``Warning: 399 <host> "<text>"`` (RFC 3261 20.43) with the text quoted and one line."""
    return ("Warning", str(Warning.ours(host, text)))


# --------------------------------------------------------------------------- free heap


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    return trim


MALLOC_TRIM = _malloc_trim()
HEAP_RELEASE_INTERVAL = 30.0
"""Seconds between two :func:`release_free_heap` trims of a running ACMS."""
PACED_COLLECTION_INTERVAL = 0.1
"""Seconds between two paced collections (:func:`paced_collection`) of a paced process: its
pause follows what arrived since the previous one (docs/decisions.md "Round 12 (issue 18),
the tail")."""
YOUNG_COLLECTION_THRESHOLD = 10_000
"""A paced process's generation-0 threshold (CPython's is 700): allocations less
deallocations between two young collections (docs/decisions.md "Round 12 (issue 18), the
tail")."""
HEAP_AUDIT_INTERVAL = 3600.0
"""Seconds between two paced collections that traverse the frozen heap too (an audit)."""


_NEVER = 1 << 30  # gen-1 collections before a full one: never, in practice


def full_collections_paced() -> bool:
    """Whether this process runs its full garbage collections from :func:`release_free_heap`
    (:func:`paced_full_collections`) instead of whenever CPython's thresholds say."""
    return gc.get_threshold()[2] >= _NEVER


@contextlib.contextmanager
def paced_full_collections() -> Iterator[None]:
    """Run a server process with its full (generation 2) collections paced: one from each
    :func:`release_free_heap` tick (every ``PACED_COLLECTION_INTERVAL``), none in between.

    A full collection traverses every tracked object: with a loaded ACMS's retained
    transactions one took up to 104 ms, about every 2 000 requests, and each one held up every
    request that arrived meanwhile (the 100 ms tail of the ingress bench's p99).  Each paced
    collection freezes what survived it (:func:`paced_collection`), so the next one
    traverses only what arrived since: its pause follows the request rate, not the heap the
    node retains.  What start-up made (modules, schemas, configuration) is frozen too.
    Young collections run every ``YOUNG_COLLECTION_THRESHOLD`` net allocations instead of
    CPython's 700: a request's objects are mostly freed by their reference counts before
    one runs, and what a request keeps is traversed by the paced collection anyway (with 700
    it was traversed in generations 0 and 1 first: about 20 k instructions a request).
    Process-wide, so only a process that is one node runs it (``mcacm acms``), not a library
    user's.
    """
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, old[1], _NEVER)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def paced_collection(audit: bool = False) -> None:
    """One paced full collection: every object not frozen is traversed (``audit``: the frozen
    ones too), then whatever survived is frozen (``gc.freeze``), never traversed again until
    the next audit.

    A frozen object is still freed when its last reference goes; only a reference cycle of
    objects that lived through a collection and then became garbage waits for an audit
    (``HEAP_AUDIT_INTERVAL``).  The node's per-request state forms none (the transaction
    layer's completed state and timer entries are tuples of atoms, the core's records are
    frozen values): ``test_paced_collections_leave_no_cycle_of_a_request_frozen``.
    """
    if audit:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


async def release_free_heap(interval: float, collect_interval: float = PACED_COLLECTION_INTERVAL,
                            audit_interval: float = HEAP_AUDIT_INTERVAL) -> None:
    """Every ``collect_interval`` seconds the paced full garbage collection, if this process
    paces them (:func:`paced_full_collections`; every ``audit_interval`` one that traverses
    the frozen heap too); every ``interval`` seconds give the C heap's free pages back to the
    kernel (glibc).

    Under steady message churn the live C heap (libxml2, SQLite, large Python objects) stays
    flat, but glibc keeps the pages it freed inside its heap, so RSS grows with the traffic
    seen.  ``malloc_trim(0)`` returns them, in a few milliseconds (figures: docs/decisions.md
    "Benchmarks", bench/memory.py).
    """
    if MALLOC_TRIM is None and not full_collections_paced():
        return
    tick = min(interval, collect_interval) if full_collections_paced() else interval
    trims, audits = max(1, round(interval / tick)), max(1, round(audit_interval / tick))
    for n in itertools.count(1):
        await asyncio.sleep(tick)
        if full_collections_paced():
            paced_collection(audit=n % audits == 0)
        if MALLOC_TRIM is not None and n % trims == 0:
            MALLOC_TRIM(0)


# --------------------------------------------------------------------------- node base


class Node:
    """The endpoint side every node shares: its SIP endpoint (listeners, static hops, trace),
    who sent a request, the tasks it runs and its one core timer (if it has a core)."""

    def __init__(self, sip: SipSettings, identity: str, trace: TraceHook | None) -> None:
        self._sip = sip
        self.host = uri_host(identity)
        """Our host, as the Warning headers of our refusals name it."""
        self.hep = HepMirror(sip.capture) if sip.capture.hep is not None else None
        """``[capture] hep``: the copy of every message for Homer."""
        self.endpoint = make_endpoint(sip, identity, tee(trace, self.hep))
        self._timer: TimerDriver | None = None
        """Drives the core's timer (:meth:`get_timer`/:meth:`handle_timer`) on the wall clock."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False

    def set_hops(self, hops: Mapping[str, str]) -> None:
        """Replace the static next hops (``[sip.hops]``), e.g. once every node listens."""
        self.endpoint.locate = Hops(hops, self._sip.transport).peer_for
        self.endpoint.privileged = privileged_sources(self._sip.trusted_hosts, hops)

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        """Transport -> (host, port) actually listened on."""
        return addresses(self.endpoint, self._sip.listens)

    def _announce_trust(self) -> None:
        """At start: say loudly when this node believes whoever writes From (lab mode)."""
        if self._sip.trust == "lab":
            log.warning("%s = \"lab\": From is believed from any address; anyone who can "
                        "reach %s can act as any user or peer (never in service)", TRUST_KEY,
                        self.addresses, extra={"event": "node.lab_trust"})

    def hop(self, transport: Transport = "udp") -> str:
        """A SIP URI other nodes can put in ``[sip.hops]`` to reach this node."""
        return hop_uri(self.endpoint, transport)

    def _sender(self, request: Request) -> str | None:
        """Who sent ``request``; None when nobody can tell (outside the trust domain)."""
        if not trusted_source(source_ip(request), self._sip.trusted_hosts):
            return None
        return sender_identity(request, self._sip.trusted_hosts)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _halt(self, *more: asyncio.Task[Any]) -> None:
        """Stop taking events: the timer, then every task (``more`` too) cancelled and awaited."""
        self._running = False
        if self.hep is not None:
            self.hep.close()
        if self._timer is not None:
            self._timer.stop()
        tasks = [*self._tasks, *more]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
