"""Interop profiles: what a peer ACMS does differently, and the fixtures the catalogue needs.

A profile is a TOML file (docs/conformance.md annotates one)::

    name = "mcacm-sip"

    [wire]                                   # how the peer's ACM documents travel
    content_type = "application/vnd.mcacm-sip.acm+xml"
    namespace = "urn:mcacm-sip:ns:acm:1.0"
    identity_header = "P-Asserted-Identity"  # or "P-Preferred-Identity", "" = From only
    icsi = "urn:urn-7:3gpp-service.ims.icsi.mcptt"   # P-Asserted-Service ("" = none)
    transport = "udp"                        # when --peer names none
    hop = "sip:192.0.2.7:5060"               # next hop when --peer names no address

    [wire.tls]                               # when the transport is tls (paths: relative
    certificate = "runner.pem"               #  to this file); names our PSI's domain
    key = "runner.key"                       # if not in certificate
    ca = "lab-ca.pem"                        # trust anchors for the peer's certificate
    acmc_certificate = "acmc.pem"            # what our ACMC shows (default: certificate)

    [timing]
    wait = 5.0        # seconds to wait for what must happen
    quiet = 1.0       # seconds to watch for what must not happen
    t1 = 0.5          # RFC 3261 T1 of our SIP endpoint

    [partner]         # --role partner: we play the primary ACMS
    primary_psi = "sip:acms@primary.example"   # our PSI as configured at the peer
    listen = "127.0.0.1:5090"                  # where the peer sends to that PSI
    requester = "sip:alice@primary.example"
    ...

    [primary]         # --role primary: we play the peer's ACMC and the partner ACMS
    ...

Every error is a :class:`~mcacm_sip.core.config.ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lxml import etree

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.model import UserProfile
from mcacm_sip.acm.xmlsafe import parse
from mcacm_sip.core.config import (
    REQUEST_FLOWS,
    ConfigError,
    check_keys,
    get_strings,
    get_table,
    get_typed,
)
from mcacm_sip.runtime.base import TlsSettings
from mcacm_sip.runtime.config import parse_transport, read_toml
from mcacm_sip.sip import Transport
from mcacm_sip.sip.uri import try_identity

Role = Literal["partner", "primary"]
ROLES: tuple[Role, ...] = ("partner", "primary")
Policy = Literal["approve", "reject", "manual"]
_POLICIES = ("approve", "reject", "manual")
_PROFILE_XML = ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
                "<Name>conformance</Name></mcptt-user-profile>")


_UNKNOWN_PSI = "sip:acms@unconfigured.invalid"


def _is_uri(value: str) -> bool:
    return try_identity(value) is not None  # fixtures are compared as URIs (sip/uri.py)


# --------------------------------------------------------------------------- wire dialect


@dataclass(frozen=True, slots=True)
class Dialect:
    """How the peer's ACM bodies differ from ours (architecture.md 4: Content-Type and
    namespace are overridable per peer).  The runner works in our native form; a peer that
    uses ours costs nothing (both directions return the input)."""

    content_type: str = codec.ACM_CONTENT_TYPE
    namespace: str = codec.ACM_NS

    @property
    def native(self) -> bool:
        return (self.content_type.lower() == codec.ACM_CONTENT_TYPE
                and self.namespace == codec.ACM_NS)

    def outgoing(self, body: bytes) -> bytes:
        """One of our encoded documents in the peer's namespace (our encoder writes the
        namespace once, as the default namespace declaration of the root)."""
        if self.namespace == codec.ACM_NS:
            return body
        return body.replace(f'xmlns="{codec.ACM_NS}"'.encode(),
                            f'xmlns="{self.namespace}"'.encode(), 1)

    def incoming(self, body: bytes, content_type: str | None) -> tuple[bytes, str | None]:
        """A body the peer sent, in our native form: its media type mapped to ours (only if
        it is the profile's), its elements moved from its namespace into ours.  A body that
        does not parse is returned as is, for the codec to report."""
        if content_type is not None:
            media, sep, params = content_type.partition(";")
            if media.strip().lower() == self.content_type.lower():
                content_type = codec.ACM_CONTENT_TYPE + sep + params
        if self.namespace == codec.ACM_NS or not body:
            return body, content_type
        try:
            root = parse(body)
        except AcmError:
            return body, content_type
        prefix = f"{{{self.namespace}}}"
        for el in root.iter():
            if isinstance(el.tag, str) and el.tag.startswith(prefix):
                el.tag = f"{{{codec.ACM_NS}}}" + el.tag[len(prefix):]
        etree.cleanup_namespaces(root)
        return etree.tostring(root, encoding="UTF-8", xml_declaration=True), content_type


# --------------------------------------------------------------------------- profile


@dataclass(frozen=True, slots=True)
class WireTls:
    """``[wire.tls]``: the runner's certificates and trust anchors (absolute paths)."""

    certificate: Path
    """PEM chain (key may follow): shown by our listener and on connections we open.  It
    must name our PSI's domain (the peer checks it, RFC 5922 7.4) and the host the peer
    connects to for our ACMC contact (an IP literal: an IP subjectAltName, RFC 5922 7.3)."""
    key: Path | None = None
    ca: Path | None = None
    """Trust anchors for the peer's certificate (None: the system store)."""
    require_client_cert: bool = False
    """Our listener refuses a peer that connects without a certificate."""
    acmc_certificate: Path | None = None
    """What our ACMC (the decider / the requester) shows, on its own connections: a peer
    that binds a connection to the peer it authenticates (trust.py rule 3) refuses user
    requests on the PSI's connection.  None: the ACMC shares ``certificate``."""
    acmc_key: Path | None = None

    def check(self) -> None:
        """Raises ConfigError naming the key of a file that is missing or unusable."""
        for key in _TLS_FILES:
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ConfigError(f"wire.tls.{key}", f"{str(path)!r}: no such file")
        for key, settings in (("certificate", self.settings()),
                              ("acmc_certificate", self.acmc_settings())):
            if settings is None:
                continue
            try:  # fail before the run, naming the key, not at the first connection
                settings.server_context()
                settings.client_context()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ConfigError(f"wire.tls.{key}", f"with its key and ca: {exc}") from None

    def settings(self) -> TlsSettings:
        return TlsSettings(self.certificate, self.key, self.ca, self.require_client_cert)

    def acmc_settings(self) -> TlsSettings | None:
        if self.acmc_certificate is None:
            return None
        return TlsSettings(self.acmc_certificate, self.acmc_key, self.ca,
                           self.require_client_cert)


@dataclass(frozen=True, slots=True)
class Wire:
    dialect: Dialect = field(default_factory=Dialect)
    identity_header: str = "P-Asserted-Identity"
    """The header carrying the sender's identity in what we send ("" = From only)."""
    icsi: str = "urn:urn-7:3gpp-service.ims.icsi.mcptt"
    """P-Asserted-Service of what we send ("" = none)."""
    transport: Transport = "udp"
    hop: str | None = None
    """SIP URI of the next hop when ``--peer`` names no IP address and port."""
    tls: WireTls | None = None
    """``[wire.tls]``; required when the transport is tls."""


@dataclass(frozen=True, slots=True)
class Timing:
    wait: float = 5.0
    """Seconds to wait for something that must happen (an answer, a delivery)."""
    quiet: float = 1.0
    """Seconds to watch for something that must not happen (a second delivery)."""
    t1: float = 0.5
    """RFC 3261 T1 of the runner's endpoint (T2 = 8 T1, T4 = 10 T1)."""


@dataclass(frozen=True, slots=True)
class Fixtures:
    """The peer's users and aliases a role's scenarios need; an empty field makes the
    scenarios that need it Not applicable."""

    psi: str
    """Our PSI as configured at the peer: the primary's (role partner) or the partner's
    (role primary)."""
    listen: str = "127.0.0.1:0"
    """HOST:PORT of our socket; the peer must route ``psi`` (and ACMC contacts) here."""
    requester: str = ""
    """A primary-system user allowed to send every request."""
    unauthorised_requester: str = ""
    """A primary-system user the peer does not authorise."""
    users: tuple[str, ...] = ()
    """Primary-system users to add for migration (and to remove again)."""
    migrated_user: str = ""
    """A partner-assigned ID known to the peer (role partner; default: learnt from the add)."""
    unknown_user: str = ""
    """A partner-assigned ID the peer never assigned (role partner)."""
    decider: str = ""
    """A peer user allowed to decide every request, whose ACMC the runner plays."""
    other_decider: str = ""
    """Another peer user allowed to decide every request, never the one a request is sent to
    (role partner: the runner sends its decisions, which the peer must refuse)."""
    fa_held: str = ""
    """An FA of the peer held by ``decider`` only (role partner)."""
    fa_unheld: str = ""
    """An FA of the peer that nobody holds (role partner)."""
    routine_profile: UserProfile | None = None
    """A profile the peer's policy approves automatically (role partner)."""
    policy: Mapping[str, Policy] = field(default_factory=dict)
    """Request flow -> how the peer handles it by local policy (role partner)."""
    unknown_psi: str = _UNKNOWN_PSI
    """A PSI the peer does not know as a peer system (role partner)."""
    target: str = ""
    """A partner-system user to address (role primary)."""
    target_fa: str = ""
    """A partner-system FA to address (role primary)."""
    answer_timeout: float | None = None
    """The peer's wait for the partner's answer before it reports ``expired`` (role primary)."""
    group: str = ""
    """An MC service group of the primary system (10.17.4): role partner, one of ours whose
    membership updates the peer's policy hands to ``decider``; role primary, one of the peer's
    that ``requester`` may send group-related requests for."""
    auto_group: str = ""
    """A group of ours whose ``add`` updates the peer's policy approves alone (role partner,
    10.17.3.2)."""
    foreign_group: str = ""
    """A group the peer does not authorise: role partner, one our system may not send for
    (not its home system); role primary, one ``requester`` may not send for (10.17.4.2.2
    step 2)."""
    group_users: tuple[str, ...] = ()
    """Partner-system users a group membership update adds (10.17.4, MC service ID list)."""

    @property
    def profile(self) -> UserProfile:
        """The suggested profile of profile updates (not the routine one)."""
        return codec.profile_from_xml(_PROFILE_XML)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str = "unnamed"
    wire: Wire = field(default_factory=Wire)
    timing: Timing = field(default_factory=Timing)
    roles: Mapping[Role, Fixtures] = field(default_factory=dict)


_FIXTURE_URIS = ("psi", "requester", "unauthorised_requester", "migrated_user", "unknown_user",
                 "decider", "other_decider", "fa_held", "fa_unheld", "unknown_psi", "target",
                 "target_fa", "group", "auto_group", "foreign_group")


def _uri(table: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
    value = get_typed(table, key, path, str, default)
    if value and not _is_uri(value):
        raise ConfigError(path + key, f"{value!r} is not a URI")
    return value


def _positive(table: Mapping[str, Any], key: str, path: str, default: float) -> float:
    value = get_typed(table, key, path, float, default)
    if value <= 0:
        raise ConfigError(path + key, "must be positive")
    return value


def _fixtures(table: Mapping[str, Any], role: Role) -> Fixtures:
    p = f"{role}."
    psi_key = "primary_psi" if role == "partner" else "partner_psi"
    allowed = {psi_key, "listen", "users", "group_users", "policy", "routine_profile",
               "answer_timeout",
               *(k for k in _FIXTURE_URIS if k != "psi")}
    check_keys(table, allowed, p)
    psi = _uri(table, psi_key, p)
    if not psi:
        raise ConfigError(p + psi_key, "missing: the PSI the peer has configured for us")
    listen = get_typed(table, "listen", p, str, "127.0.0.1:0")
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(p + "listen", f"{listen!r}: give HOST:PORT")
    policy: dict[str, Policy] = {}
    for flow, value in get_table(table, "policy", p).items():
        if flow not in REQUEST_FLOWS:
            raise ConfigError(f"{p}policy.{flow}", "not a request flow: "
                              + ", ".join(REQUEST_FLOWS))
        if value not in _POLICIES:
            raise ConfigError(f"{p}policy.{flow}", f"{value!r}: expected approve, reject or "
                                                   "manual")
        policy[flow] = value
    routine: UserProfile | None = None
    if "routine_profile" in table:
        text = get_typed(table, "routine_profile", p, str, "")
        try:
            routine = codec.profile_from_xml(text)
        except AcmError as exc:
            raise ConfigError(p + "routine_profile", exc.message) from None
    timeout = table.get("answer_timeout")
    uris = {k: _uri(table, k, p) for k in _FIXTURE_URIS if k not in ("psi", "unknown_psi")}
    return Fixtures(
        psi=psi, listen=listen,
        users=get_strings(table, "users", p, check=_is_uri, what="URI"),
        group_users=get_strings(table, "group_users", p, check=_is_uri, what="URI"),
        policy=policy, routine_profile=routine,
        unknown_psi=_uri(table, "unknown_psi", p, _UNKNOWN_PSI),
        answer_timeout=None if timeout is None else _positive(table, "answer_timeout", p, 1.0),
        **uris)


_TLS_FILES = ("certificate", "key", "ca", "acmc_certificate", "acmc_key")


def _wire_tls(wire: Mapping[str, Any], base: Path) -> WireTls | None:
    """``[wire.tls]`` with its paths resolved against ``base`` (the profile's directory).
    The files are read when TLS is used (:meth:`WireTls.check`): a profile whose lab
    certificates are elsewhere still lists and runs over UDP / TCP."""
    if "tls" not in wire:
        return None
    table, p = get_table(wire, "tls", "wire."), "wire.tls."
    check_keys(table, {*_TLS_FILES, "require_client_cert"}, p)
    files: dict[str, Path | None] = {}
    for key in _TLS_FILES:
        value = get_typed(table, key, p, str, "")
        files[key] = (base / value) if value else None
    certificate = files.pop("certificate")
    if certificate is None:
        raise ConfigError(p + "certificate", "missing: the runner's certificate (PEM)")
    if files["acmc_key"] is not None and files["acmc_certificate"] is None:
        raise ConfigError(p + "acmc_key", "given without acmc_certificate")
    return WireTls(certificate, files["key"], files["ca"],
                   get_typed(table, "require_client_cert", p, bool, False),
                   files["acmc_certificate"], files["acmc_key"])


def parse_profile(data: Mapping[str, Any], base: Path | None = None) -> Profile:
    """A profile from parsed TOML; ConfigError naming the key on any problem.  ``base``:
    the directory relative paths (``[wire.tls]``) start from (default: the working one)."""
    check_keys(data, {"name", "description", "wire", "timing", *ROLES}, "")
    wire = get_table(data, "wire")
    check_keys(wire, {"content_type", "namespace", "identity_header", "icsi", "transport",
                      "hop", "tls"}, "wire.")
    content_type = get_typed(wire, "content_type", "wire.", str, codec.ACM_CONTENT_TYPE)
    if "/" not in content_type or ";" in content_type:
        raise ConfigError("wire.content_type", f"{content_type!r}: give type/subtype")
    namespace = get_typed(wire, "namespace", "wire.", str, codec.ACM_NS)
    if not _is_uri(namespace):
        raise ConfigError("wire.namespace", f"{namespace!r} is not a namespace URI")
    header = get_typed(wire, "identity_header", "wire.", str, "P-Asserted-Identity")
    if header and not all(c.isalnum() or c == "-" for c in header):
        raise ConfigError("wire.identity_header", f"{header!r} is not a header name")
    transport = parse_transport(wire, "wire.")
    hop = get_typed(wire, "hop", "wire.", str, "") or None
    tls = _wire_tls(wire, base or Path())
    if transport == "tls" and tls is None:
        raise ConfigError("wire.tls", "transport tls needs a [wire.tls] table (certificate)")
    timing = get_table(data, "timing")
    check_keys(timing, {"wait", "quiet", "t1"}, "timing.")
    roles = {role: _fixtures(get_table(data, role), role) for role in ROLES if role in data}
    return Profile(
        name=get_typed(data, "name", "", str, "unnamed"),
        wire=Wire(Dialect(content_type, namespace), header,
                  get_typed(wire, "icsi", "wire.", str, Wire().icsi),
                  transport, hop, tls),
        timing=Timing(*(_positive(timing, k, "timing.", getattr(Timing(), k))
                        for k in ("wait", "quiet", "t1"))),
        roles=roles)


def load_profile(path: str | Path) -> Profile:
    return parse_profile(read_toml(path), Path(path).parent)


__all__ = ["ROLES", "ConfigError", "Dialect", "Fixtures", "Policy", "Profile", "Role",
           "Timing", "Wire", "WireTls", "load_profile", "parse_profile"]
