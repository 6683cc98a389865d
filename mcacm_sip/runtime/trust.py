"""Whom an ACMS believes: the origin of a request (claimed identity, source address, TLS client
certificate) judged against the configured peer systems and trusted hosts.

Rules (docs/decisions.md "Reliability: trust and authorisation"), each a 403 with a Warning:

1. A request claiming a peer ACMS's PSI that came on a TLS connection with a verified
   certificate: the certificate must name that peer (RFC 5922 7.4, RFC 3261 26.3.2.2).
2. A peer with ``tls = "required"``: its PSI counts only with such a certificate (no UDP/TCP,
   no TLS without a client certificate).
3. A connection whose certificate names a configured peer speaks only for that peer: it may
   not claim a local user or another peer (a partner does not act for our users).
4. With ``sip.trusted_hosts`` set (an IMS core in front), an identity counts only from those
   hosts (RFC 3325 9.1: only the trust domain asserts) or from a peer authenticated by 1.
   Without it (a lab), From is believed: deploy so that From cannot be forged.

Then the sender is a peer ACMS (``FlowFromPeer``) or an ACMC user (``FlowFromAcmc``: the core
authorises it, 23.280 10.17.7.2 step 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from mcacm_sip.acm.model import AcmFlow
from mcacm_sip.core.config import PeerSystem
from mcacm_sip.core.events import FlowFromAcmc, FlowFromPeer
from mcacm_sip.frozen import builder
from mcacm_sip.runtime.base import identity_from, trusted_source
from mcacm_sip.runtime.config import configured_aor
from mcacm_sip.sip import Request
from mcacm_sip.sip.uri import Uri, address_of_record


def certificate_names(cert: Mapping[str, Any] | None) -> frozenset[str] | None:
    """The identities a verified certificate gives (RFC 5922 7.1): its subjectAltName DNS names
    and SIP URIs (a URI with a user part as the canonical text of its AOR, RFC 3261 19.1.4 --
    one text for every spelling --, else its host), DNS names lower case; the subject CN only
    when there is no subjectAltName.  None: no certificate."""
    if not cert:
        return None
    names: set[str] = set()
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            names.add(str(value).lower())
        elif kind == "URI" and str(value).lower().startswith(("sip:", "sips:")):
            aor = address_of_record(str(value))
            if aor is not None:
                names.add(_certificate_name(aor))
    if not cert.get("subjectAltName"):
        names.update(str(v).lower() for rdn in cert.get("subject", ()) for k, v in rdn
                     if k == "commonName")
    return frozenset(names)


def names_peer(names: Iterable[str], peer: PeerSystem) -> bool:
    """Whether certificate ``names`` name ``peer``: its PSI, its PSI's host or one of its
    domains (exact match; no wildcards, RFC 5922 7.2)."""
    psi = address_of_record(peer.psi)
    own = {d.lower() for d in peer.domains}
    if psi is not None:
        own |= {_certificate_name(psi), psi.host}
    return not own.isdisjoint(names)


def _certificate_name(aor: Uri) -> str:
    # the canonical text stands for the Uri: equal texts <=> equivalent AORs (19.1.4)
    return str(aor) if aor.user is not None else aor.host


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from, as far as the ACMS can tell."""

    identity: str | None
    """AOR: P-Asserted-Identity from a trusted host, else From (``sender_identity``)."""
    source: str | None
    """Source IP: the socket's peer address (``Request.arrival``), never the Via."""
    certificate: frozenset[str] | None = None
    """Names of the verified TLS client certificate of its connection; None: none shown."""


_origin: Final[Callable[[str | None, str | None, frozenset[str] | None], Origin]] = \
    builder(Origin)  # one per MESSAGE in: Origin(...) without a call per field


def origin_of(request: Request, trusted_hosts: frozenset[str]) -> Origin:
    """The origin of a request that came from a socket: identity from its headers as far as
    the source allows, source address and certificate from its arrival only."""
    arrival = request.arrival
    if arrival is None:
        return _origin(identity_from(request, None, trusted_hosts), None, None)
    # (source_ip and certificate_names read once: one Origin per MESSAGE in)
    source, cert = arrival.host, arrival.certificate
    return _origin(identity_from(request, source, trusted_hosts), source,
                   certificate_names(cert) if cert else None)


CLAIMS_KEPT = 1024
"""Identities :class:`Trust` remembers the configured peer and user of (then it starts
over)."""


class Trust:
    """The ACMS's view of its peers and trusted hosts; :meth:`refusal` applies rules 1-4."""

    def __init__(self, peers: Iterable[PeerSystem], users: Iterable[str],
                 trusted_hosts: frozenset[str]) -> None:
        self.peers: dict[Uri, PeerSystem] = {
            configured_aor(p.psi, f"peers[{i}].psi"): p for i, p in enumerate(peers)}
        self.users: dict[Uri, str] = {
            configured_aor(u, f"users[{i}].id"): u for i, u in enumerate(users)}
        """AOR -> the configured MC service ID (keys compare by RFC 3261 19.1.4)."""
        self.trusted_hosts = trusted_hosts
        self._claims: dict[str | None, tuple[PeerSystem | None, str | None]] = {}
        """Identity -> the configured peer and user its AOR is (:meth:`_claim`)."""

    def _claim(self, identity: str | None) -> tuple[PeerSystem | None, str | None]:
        """The configured peer system and the configured user that ``identity`` names (None:
        none), remembered per identity text: configuration only, the same for every request
        claiming it (each request's source and certificate are judged in :meth:`refusal`;
        a peer's ``Uri`` key compares by RFC 3261 19.1.4, in Python, at every look-up)."""
        claim = self._claims.get(identity)
        if claim is None:
            aor = address_of_record(identity)
            claim = (None, None) if aor is None else (self.peers.get(aor), self.users.get(aor))
            if len(self._claims) >= CLAIMS_KEPT:  # identities are the sender's to choose
                self._claims.clear()
            self._claims[identity] = claim
        return claim

    def refusal(self, origin: Origin) -> str | None:
        """Why ``origin`` is not believed (the Warning text of a 403), or None."""
        identity, cert = origin.identity, origin.certificate
        claimed = self._claim(identity)[0]
        authenticated = [] if cert is None else [p for p in self.peers.values()
                                                 if names_peer(cert, p)]
        trusted_hop = origin.source in self.trusted_hosts
        if claimed is not None:
            if claimed in authenticated:
                return None  # rule 1: the certificate names the peer it claims
            if claimed.tls == "required":  # rule 2
                how = "with no client certificate" if cert is None else \
                    f"with a certificate for {', '.join(sorted(cert)) or 'no name'}"
                return (f"not-authorised: {claimed.psi} must connect over TLS with a "
                        f"certificate naming it; this came {how}")
            if cert is not None and not trusted_hop:  # rule 1 (a relaying core is exempt)
                return (f"not-authorised: the TLS certificate "
                        f"({', '.join(sorted(cert)) or 'no name'}) does not name {claimed.psi}")
        elif authenticated:  # rule 3
            return (f"not-authorised: connection authenticated as {authenticated[0].psi} "
                    f"claims {identity}")
        if not trusted_source(origin.source, self.trusted_hosts):  # rule 4
            return f"not-authorised: {origin.source} is not a trusted host"
        return None

    def event(self, now: float, sender: str, flow: AcmFlow) -> FlowFromAcmc | FlowFromPeer:
        """A configured peer PSI -> peer ACMS; anything else a local ACMC user, whom the core
        authorises (23.280 10.17.7.2 step 2; strangers get 403 there)."""
        peer, user = self._claim(sender)
        if peer is not None:
            return _from_peer(now, peer.psi, flow)
        return _from_acmc(now, sender if user is None else user, flow)


# one event per MESSAGE in: built without the dataclass __init__'s call per field
# (mcacm_sip.frozen; the classes have no checks to run)
_from_peer: Final[Callable[[float, str, AcmFlow], FlowFromPeer]] = builder(FlowFromPeer)
_from_acmc: Final[Callable[[float, str, AcmFlow], FlowFromAcmc]] = builder(FlowFromAcmc)
