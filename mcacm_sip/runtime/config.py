"""TOML configuration of the three node roles: the procedure part (``mcacm_sip.core.config``
for ACMS and ACMC, the FA server shape here) plus the runtime tables every role shares.

Runtime tables (docs/running.md has annotated examples)::

    [[listen]]                         # one table per address; default: 127.0.0.1:0
    transport = "udp"                  # udp | tcp | tls (tls needs [sip.tls] certificate);
                                       # absent: udp AND tcp on this host and port (RFC 3261 18)
    host = "127.0.0.1"
    port = 5060                        # 0: any free port
    advertise = "acms.primary.example" # optional: host written in Via/Contact

    [sip]
    icsi = "urn:urn-7:3gpp-service.ims.icsi.mcptt"   # P-Asserted-Service
    trusted_hosts = ["10.0.0.1"]       # the only sources that identify anyone (PAI believed)
    trust = "strict"                   # or "lab": From believed from anywhere (docs/running.md)
    transport = "udp"                  # for hops that name none (udp | tcp | tls)
    send_timeout = 32.0
    registration_expires = 600         # ACMC
    t1 = 0.5                           # RFC 3261 timers (t1, t2, t4)

    [sip.hops]                         # static next hops (no DNS)
    "sip:acms@partner.example" = "sip:192.0.2.7:5060"
    "partner.example" = "sip:192.0.2.8:5062;transport=tcp"
    "*" = "sip:192.0.2.1:5060"         # everything else (an ACMC: its ACMS)
    # "sip:acms@partner.example" = "sips:192.0.2.7:5061"  (or ;transport=tls): over TLS

    [sip.tls]                          # needed for any TLS; paths relative to this file
    certificate = "acms.pem"           # our chain (+ key), for listeners and as TLS client
    key = "acms.key"                   # optional: if not in certificate
    ca = "interconnect-ca.pem"         # trust anchors for peers; absent: system store
    require_client_cert = true         # mutual TLS on our listeners (default false)

    [sip.limits]                       # caps on what peers may send (mcacm_sip.sip.Limits)
    max_body_bytes = 1048576           # larger Content-Length: 413
    max_connections_per_source = 64    # inbound TCP/TLS connections from one IP address
    message_timeout = 10.0             # seconds a stream message may take (slowloris)
    max_contacts_per_aor = 16          # registrar: per AOR (403 past it); max_bindings: total
    # also: max_header_bytes, max_headers, max_connections, max_handshakes,
    # max_outbound_connections, max_buffer_bytes, handshake_timeout, idle_timeout, udp_mtu_switch

    [capture]                          # optional: mirror every SIP message to Homer (HEPv3)
    hep = "udp:127.0.0.1:9060"         # the collector
    capture_id = 2001                  # our capture agent id; password = "..." (optional)

    [log]
    level = "info"                     # debug | info | warning | error
    format = "console"                 # console | json

    [limits]                           # ACMS only (docs/running.md "Overload")
    max_in_flight = 300                # sends late (> T1) or awaiting a retry; over it: 503
    retry_after = 5                    # seconds, the Retry-After of those 503s
    max_profile_bytes = 131072         # larger profile in a request: 413, nothing stored
    max_open_per_peer = 2000           # open partner transactions of one peer; more: 503
    max_bytes_per_peer = 67108864      # bytes retained for one peer's transactions; more: 503
    max_store_bytes = 536870912        # bytes retained for all transactions; more: 503
    download_items = 50                # pending items per download response (one page)
    download_bytes = 49152             # bytes of pending items per download response

    [metrics]                          # any node: Prometheus endpoint (docs/cli.md)
    listen = "127.0.0.1:9464"          # GET /metrics; port 0: any free one

Every error is a :class:`~mcacm_sip.core.config.ConfigError` naming the key.
"""

from __future__ import annotations

import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, cast

from mcacm_sip.core.config import (
    AcmcConfig,
    AcmsConfig,
    ConfigError,
    ReadFile,
    check_keys,
    get_strings,
    get_table,
    get_typed,
    parse_acmc_config,
    parse_acms_config,
)
from mcacm_sip.core.fa_server import FaConfig, FaServerConfig
from mcacm_sip.core.quota import Quotas
from mcacm_sip.runtime.base import TRUST_KEY, SipSettings, TlsSettings, TrustMode, hop_peer
from mcacm_sip.runtime.hep import parse_capture
from mcacm_sip.runtime.metrics import MetricsSettings, parse_metrics
from mcacm_sip.sip import Limits, Timers, Transport
from mcacm_sip.sip.aio import Listen
from mcacm_sip.sip.uri import Uri, address_of_record

LogFormat = Literal["console", "json"]
LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: LogFormat = "console"


_QUOTAS = Quotas()


@dataclass(frozen=True, slots=True)
class AcmsLimits:
    """``[limits]``: overload protection of an ACMS (RFC 3261 21.5.4; docs/decisions.md
    "Reliability: crashes, peer failure, overload")."""

    max_in_flight: int = 300
    """Sends whose outcome is not known within T1 of their start, or waiting for a retry (the
    backlog: ``AcmsNode.backlog``).  Above it a
    request that would open a new transaction is answered 503; answers, indications,
    decisions, downloads and duplicates of open transactions are still taken, so load drains."""
    retry_after: int = 5
    """Retry-After (seconds, RFC 3261 20.33) of those 503 answers, and of the quota ones."""
    max_profile_bytes: int = _QUOTAS.max_profile_bytes
    """Largest user profile in a request; larger: 413 (core/quota.py, docs/running.md)."""
    max_open_per_peer: int = _QUOTAS.max_open_per_peer
    """Open partner transactions of one peer ACMS; more: 503 + Retry-After."""
    max_bytes_per_peer: int = _QUOTAS.max_bytes_per_peer
    """Bytes retained for one peer ACMS's transactions; more: 503 + Retry-After."""
    max_store_bytes: int = _QUOTAS.max_store_bytes
    """Bytes retained for all transactions; more: 503 + Retry-After."""

    download_items: int = _QUOTAS.download_items
    """Most pending items in one download response (10.17.3.1 pages)."""
    download_bytes: int = _QUOTAS.download_bytes
    """Most bytes of pending items in one download response (a larger item goes alone)."""

    def quotas(self) -> Quotas:
        return Quotas(self.max_profile_bytes, self.max_open_per_peer, self.max_bytes_per_peer,
                      self.max_store_bytes, self.retry_after, self.download_items,
                      self.download_bytes)


@dataclass(frozen=True, slots=True)
class AcmsNodeConfig:
    acms: AcmsConfig
    sip: SipSettings = field(default_factory=SipSettings)
    log: LogSettings = field(default_factory=LogSettings)
    limits: AcmsLimits = field(default_factory=AcmsLimits)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    """``[metrics] listen``: the Prometheus endpoint (runtime/metrics.py)."""


@dataclass(frozen=True, slots=True)
class AcmcNodeConfig:
    acmc: AcmcConfig
    sip: SipSettings = field(default_factory=SipSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    """``[metrics] listen``: the Prometheus endpoint (runtime/metrics.py)."""


@dataclass(frozen=True, slots=True)
class FaServerNodeConfig:
    psi: str
    """The FA controlling server's own identity (From of its NOTIFYs)."""
    fa: FaServerConfig
    sip: SipSettings = field(default_factory=SipSettings)
    log: LogSettings = field(default_factory=LogSettings)
    store_path: str | None = None
    """``[store] path``: the SQLite file keeping the FA holders; None: in memory only."""
    store_url: str | None = None
    """``[store] url``: the FA holders in PostgreSQL instead (store/pg_fa.py)."""
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    """``[metrics] listen``: the Prometheus endpoint (runtime/metrics.py)."""


# --------------------------------------------------------------------------- helpers


def configured_aor(text: str, key: str) -> Uri:
    """A configured identity as the AOR the node compares it by (RFC 3261 19.1.4); a
    ConfigError naming ``key`` if it is no SIP URI."""
    aor = address_of_record(text)
    if aor is None:
        raise ConfigError(key, f"{text!r} is not a SIP URI")
    return aor


def parse_transport(data: Mapping[str, Any], path: str) -> Transport:
    """``transport`` of a table (default udp); ConfigError naming ``path``transport otherwise."""
    value = get_typed(data, "transport", path, str, "udp")
    if value not in ("udp", "tcp", "tls"):
        raise ConfigError(path + "transport", f"{value!r}: expected udp, tcp or tls")
    return cast(Transport, value)


def _listens(data: Mapping[str, Any]) -> tuple[Listen, ...]:
    value = data.get("listen")
    if value is None:
        return SipSettings().listens
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise ConfigError("listen", "expected one or more [[listen]] tables")
    out = []
    for i, item in enumerate(value):
        path = f"listen[{i}]."
        check_keys(item, {"transport", "host", "port", "advertise"}, path)
        # RFC 3261 18: UDP and TCP MUST be implemented, 18.2.1 on the same port: a table that
        # names no transport listens on both (decision, docs/decisions.md "Transports")
        transports: tuple[Transport, ...] = (
            (parse_transport(item, path),) if "transport" in item else ("udp", "tcp"))
        port = get_typed(item, "port", path, int, 0)
        if not 0 <= port < 65536:
            raise ConfigError(path + "port", f"{port} is not a port number")
        advertise = item.get("advertise")
        if advertise is not None and not isinstance(advertise, str):
            raise ConfigError(path + "advertise", "expected a string")
        host = get_typed(item, "host", path, str, "127.0.0.1")
        out += [Listen(t, host, port, advertise) for t in transports]
    return tuple(out)


def _tls(sip: Mapping[str, Any], base: Path, listens: tuple[Listen, ...]
         ) -> TlsSettings | None:
    """``[sip.tls]``: every file must exist and load now, not at the first connection."""
    if "tls" not in sip:
        return None
    p = "sip.tls."
    table = get_table(sip, "tls", "sip.")
    check_keys(table, {"certificate", "key", "ca", "require_client_cert"}, p)
    paths: dict[str, Path | None] = {}
    for key in ("certificate", "key", "ca"):
        value = get_typed(table, key, p, str, "")
        path = base / value if value else None
        if path is not None and not path.is_file():
            raise ConfigError(p + key, f"no such file: {path}")
        paths[key] = path
    tls = TlsSettings(paths["certificate"], paths["key"], paths["ca"],
                      get_typed(table, "require_client_cert", p, bool, False))
    if tls.certificate is None and (tls.key is not None or tls.require_client_cert):
        raise ConfigError(p + "certificate", "missing (key / require_client_cert need it)")
    try:
        tls.client_context()
        if any(lst.transport == "tls" for lst in listens):
            tls.server_context()
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError("sip.tls", f"cannot load the certificate, key or CA: {exc}") from None
    return tls


def parse_sip_settings(data: Mapping[str, Any], base: Path = Path(".")) -> SipSettings:
    """The ``[[listen]]`` and ``[sip]`` tables of any role (``base``: for relative paths)."""
    sip = get_table(data, "sip")
    p = "sip."
    check_keys(sip, {"icsi", "trusted_hosts", "trust", "transport", "send_timeout",
                   "registration_expires", "t1", "t2", "t4", "hops", "tls", "limits"}, p)
    listens = _listens(data)
    tls = _tls(sip, base, listens)
    hops = get_table(sip, "hops", p)
    for key, uri in hops.items():
        if not isinstance(uri, str):
            raise ConfigError(f"sip.hops.{key}", "expected a SIP URI string")
        try:
            hop = hop_peer(uri)
        except ValueError as exc:
            raise ConfigError(f"sip.hops.{key}", str(exc)) from None
        if hop.transport == "tls" and tls is None:
            raise ConfigError(f"sip.hops.{key}", "a TLS hop needs a [sip.tls] table")
    for i, lst in enumerate(listens):
        if lst.transport == "tls" and (tls is None or tls.certificate is None):
            raise ConfigError(f"listen[{i}].transport", "tls needs [sip.tls] certificate")
    transport = parse_transport(sip, p)
    if transport == "tls" and tls is None:
        raise ConfigError("sip.transport", "tls needs a [sip.tls] table")
    numbers = {}
    for key, default in (("send_timeout", 32.0), ("t1", 0.5), ("t2", 4.0), ("t4", 5.0)):
        numbers[key] = get_typed(sip, key, p, float, default)
        if numbers[key] <= 0:
            raise ConfigError(p + key, "must be positive")
    trust = get_typed(sip, "trust", p, str, "strict")
    if trust not in ("strict", "lab"):
        raise ConfigError(TRUST_KEY, f"{trust!r}: expected strict or lab")
    expires = get_typed(sip, "registration_expires", p, int, 600)
    if expires < 1:
        raise ConfigError("sip.registration_expires", "must be positive")
    return SipSettings(
        listens=listens,
        icsi=get_typed(sip, "icsi", p, str, SipSettings().icsi),
        trusted_hosts=frozenset(get_strings(sip, "trusted_hosts", p)),
        trust=cast(TrustMode, trust),
        hops=dict(hops),
        transport="tcp" if transport == "tcp" else "tls" if transport == "tls" else "udp",
        send_timeout=numbers["send_timeout"],
        registration_expires=expires,
        timers=Timers(t1=numbers["t1"], t2=numbers["t2"], t4=numbers["t4"]),
        tls=tls,
        limits=_sip_limits(sip),
        capture=parse_capture(data),
    )


def _sip_limits(sip: Mapping[str, Any]) -> Limits:
    """``[sip.limits]``: each field of :class:`~mcacm_sip.sip.Limits`, positive, of its type
    (docs/decisions.md "Reliability: hostile input" gives the defaults' reasons)."""
    p = "sip.limits."
    table = get_table(sip, "limits", "sip.")
    defaults = Limits()
    check_keys(table, {f.name for f in fields(Limits)}, p)
    values: dict[str, Any] = {}
    for f in fields(Limits):
        default = getattr(defaults, f.name)
        value = get_typed(table, f.name, p, type(default), default)
        if value <= 0:
            raise ConfigError(p + f.name, "must be positive")
        values[f.name] = value
    return Limits(**values)


def parse_log_settings(data: Mapping[str, Any]) -> LogSettings:
    log = get_table(data, "log")
    check_keys(log, {"level", "format"}, "log.")
    level = get_typed(log, "level", "log.", str, "info").lower()
    if level not in LEVELS:
        raise ConfigError("log.level", f"{level!r}: expected one of {', '.join(LEVELS)}")
    fmt = get_typed(log, "format", "log.", str, "console")
    if fmt not in ("console", "json"):
        raise ConfigError("log.format", f"{fmt!r}: expected console or json")
    return LogSettings(level, "json" if fmt == "json" else "console")


def parse_acms_limits(data: Mapping[str, Any]) -> AcmsLimits:
    """The ACMS's ``[limits]`` table; each value a positive integer."""
    table = get_table(data, "limits")
    check_keys(table, set(AcmsLimits.__dataclass_fields__), "limits.")
    values = {name: get_typed(table, name, "limits.", int, getattr(AcmsLimits(), name))
              for name in AcmsLimits.__dataclass_fields__}
    for name, value in values.items():
        if value < 1:
            raise ConfigError("limits." + name, "must be a positive integer")
    return AcmsLimits(**values)


# --------------------------------------------------------------------------- trust


def check_trust(sip: SipSettings, believed: Mapping[str, bool]) -> None:
    """Issue 13 "secure by default": every party this node believes by identity
    (``believed``: description -> authenticated by mutual TLS) must be authenticated by the
    socket -- a trusted host (``sip.trusted_hosts``) or a verified certificate -- unless
    ``sip.trust = "lab"`` says, by name, that From is believed from anywhere.

    Raises ConfigError naming ``sip.trust`` (the CLI exits 78)."""
    if sip.trust == "lab":
        if sip.trusted_hosts:
            raise ConfigError(TRUST_KEY, '"lab" believes From from any address, which '
                                         "contradicts sip.trusted_hosts: remove one of them")
        return
    if sip.trusted_hosts:
        return
    unproven = [who for who, by_tls in believed.items() if not by_tls]
    if unproven:
        shown = ", ".join(unproven[:3]) + (f" (+{len(unproven) - 3})" if len(unproven) > 3
                                          else "")
        raise ConfigError(TRUST_KEY, f"nothing authenticates {shown}: set sip.trusted_hosts "
                                     "(the addresses they or the SIP core send from), mutual "
                                     'TLS for peers ([[peers]] tls = "required"), or '
                                     'sip.trust = "lab" to believe From from any address '
                                     "(a lab only)")


def check_acms_trust(config: AcmsNodeConfig) -> None:
    """An ACMS believes its peers (by certificate when ``tls = "required"``) and users."""
    acms = config.acms
    believed = {f"peer {p.psi}": p.tls == "required" for p in acms.peers}
    believed.update({f"user {u.id}": False for u in acms.users})
    check_trust(config.sip, believed)


def check_acmc_trust(config: AcmcNodeConfig) -> None:
    """An ACMC believes its ACMS (it takes requests to decide only from it)."""
    check_trust(config.sip, {f"its ACMS {config.acmc.acms_psi}": False})


def check_fa_server_trust(config: FaServerNodeConfig) -> None:
    """An FA server believes the users who activate aliases and the identities that resolve
    them."""
    fa = config.fa
    who = {*fa.trusted, *(u for a in fa.aliases for u in (*a.users, *a.subscribers))}
    check_trust(config.sip, {w: False for w in sorted(who)})


# --------------------------------------------------------------------------- files


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML file at ``path``; ConfigError if it cannot be read or parsed."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"{path} is not valid TOML: {exc}") from None


def file_reader(base: Path) -> ReadFile:
    """The core's :data:`~mcacm_sip.core.config.ReadFile` for a configuration file in
    ``base``: names relative to it, UTF-8."""
    def read(name: str, key: str) -> str:
        file = base / name
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(key, f"cannot read {file}: {exc}") from None
    return read


# --------------------------------------------------------------------------- roles


def check_store_folder(path: str | None) -> None:
    """``[store] path`` must name a file in an existing folder: said at start (and by ``mcacm
    check``), not as a traceback when SQLite first opens it."""
    if path is None:
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise ConfigError("store.path", f"the folder {folder} does not exist: create it "
                                        f"(mkdir -p {folder}) or give another path; a "
                                        "relative path is relative to the configuration file")


def parse_acms_node(data: Mapping[str, Any], base: Path = Path(".")) -> AcmsNodeConfig:
    acms, sip = parse_acms_config(data, file_reader(base)), parse_sip_settings(data, base)
    if acms.store.path is not None:  # relative to the configuration file
        acms = replace(acms, store=replace(acms.store, path=str(base / acms.store.path)))
    check_store_folder(acms.store.path)
    _check_peer_tls(acms, sip)
    config = AcmsNodeConfig(acms, sip, parse_log_settings(data), parse_acms_limits(data),
                            parse_metrics(data))
    check_acms_trust(config)
    return config


def _check_peer_tls(acms: AcmsConfig, sip: SipSettings) -> None:
    """A peer with ``tls = "required"`` can only be believed if our TLS listener asks for
    client certificates (RFC 5922 7.4)."""
    for i, peer in enumerate(acms.peers):
        if peer.tls == "required" and not (
                sip.tls is not None and sip.tls.require_client_cert
                and any(lst.transport == "tls" for lst in sip.listens)):
            raise ConfigError(f"peers[{i}].tls", "required needs a tls listener and "
                                                 "[sip.tls] require_client_cert = true")


def parse_acmc_node(data: Mapping[str, Any], base: Path = Path(".")) -> AcmcNodeConfig:
    config = AcmcNodeConfig(parse_acmc_config(data), parse_sip_settings(data, base),
                            parse_log_settings(data), parse_metrics(data))
    check_acmc_trust(config)
    return config


def parse_fa_server_node(data: Mapping[str, Any], base: Path = Path(".")
                         ) -> FaServerNodeConfig:
    """FA controlling server (24.379 9A.2.2.3)::

        psi = "sip:fa-server@partner.example"
        trusted = ["sip:acms@partner.example"]     # may resolve every FA, publish for users

        [[aliases]]
        uri = "sip:duty@partner.example"
        users = ["sip:dave@partner.example"]        # <mcptt-user-list>
        max_simultaneous_activations = 1            # optional
        allow_takeover = false
        subscribers = []                            # further identities allowed to resolve

        [store]                                     # optional; absent: holders in memory only
        path = "fa-server.sqlite"                   # relative to this file
    """
    check_keys(data, {"psi", "trusted", "aliases", "store", "listen", "sip", "log", "capture",
                      "metrics"}, "")
    psi = data.get("psi")
    if not isinstance(psi, str) or ":" not in psi:
        raise ConfigError("psi", "missing or not a URI")
    raw = data.get("aliases", [])
    if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
        raise ConfigError("aliases", "expected an array of tables ([[aliases]])")
    aliases = []
    for i, a in enumerate(raw):
        path = f"aliases[{i}]."
        check_keys(a, {"uri", "users", "max_simultaneous_activations", "allow_takeover",
                     "subscribers"}, path)
        uri = a.get("uri")
        if not isinstance(uri, str) or ":" not in uri:
            raise ConfigError(path + "uri", "missing or not a URI")
        limit = a.get("max_simultaneous_activations")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ConfigError(path + "max_simultaneous_activations", "expected an integer >= 1")
        aliases.append(FaConfig(uri, frozenset(get_strings(a, "users", path)), limit,
                                get_typed(a, "allow_takeover", path, bool, False),
                                frozenset(get_strings(a, "subscribers", path))))
    try:
        fa = FaServerConfig(tuple(aliases), frozenset(get_strings(data, "trusted", "")))
    except ValueError as exc:
        raise ConfigError("aliases", str(exc)) from None
    store = get_table(data, "store")
    check_keys(store, {"path", "url"}, "store.")
    store_path = store.get("path")
    if store_path is not None and (not isinstance(store_path, str) or not store_path):
        raise ConfigError("store.path", "expected a file name")
    store_url = store.get("url")
    if store_url is not None:
        if not isinstance(store_url, str) or not store_url.startswith(
                ("postgresql://", "postgres://")):
            raise ConfigError("store.url", f"{store_url!r}: expected a postgresql:// URL")
        if store_path is not None:
            raise ConfigError("store.url", "give store.path (SQLite) or store.url "
                              "(PostgreSQL), not both")
    config = FaServerNodeConfig(psi, fa, parse_sip_settings(data, base),
                                parse_log_settings(data),
                                None if store_path is None else str(base / store_path),
                                store_url, parse_metrics(data))
    check_store_folder(config.store_path)
    check_fa_server_trust(config)
    return config


def load_acms_node(path: str | Path) -> AcmsNodeConfig:
    return parse_acms_node(read_toml(path), Path(path).parent)


def load_acmc_node(path: str | Path) -> AcmcNodeConfig:
    return parse_acmc_node(read_toml(path), Path(path).parent)


def load_fa_server_node(path: str | Path) -> FaServerNodeConfig:
    return parse_fa_server_node(read_toml(path), Path(path).parent)
