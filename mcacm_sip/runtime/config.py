"""TOML configuration of the three node roles: the procedure part (``mcacm_sip.core.config``
for ACMS and ACMC, the FA server shape here) plus the runtime tables every role shares.

Runtime tables (docs/running.md has annotated examples)::

    [[listen]]                         # one table per socket; default: udp 127.0.0.1:0
    transport = "udp"                  # udp | tcp
    host = "127.0.0.1"
    port = 5060                        # 0: any free port
    advertise = "acms.primary.example" # optional: host written in Via/Contact

    [sip]
    icsi = "urn:urn-7:3gpp-service.ims.icsi.mcptt"   # P-Asserted-Service
    trusted_hosts = ["10.0.0.1"]       # sources whose P-Asserted-Identity is believed
    transport = "udp"                  # for hops that name none
    send_timeout = 32.0
    registration_expires = 600         # ACMC
    t1 = 0.5                           # RFC 3261 timers (t1, t2, t4)

    [sip.hops]                         # static next hops (no DNS)
    "sip:acms@partner.example" = "sip:192.0.2.7:5060"
    "partner.example" = "sip:192.0.2.8:5062;transport=tcp"
    "*" = "sip:192.0.2.1:5060"         # everything else (an ACMC: its ACMS)

    [log]
    level = "info"                     # debug | info | warning | error
    format = "console"                 # console | json

Every error is a :class:`~mcacm_sip.core.config.ConfigError` naming the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mcacm_sip.core.config import (
    AcmcConfig,
    AcmsConfig,
    ConfigError,
    parse_acmc_config,
    parse_acms_config,
)
from mcacm_sip.core.fa_server import FaConfig, FaServerConfig
from mcacm_sip.runtime.base import SipSettings, hop_peer
from mcacm_sip.sip import Listen, Timers

LogFormat = Literal["console", "json"]
LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: LogFormat = "console"


@dataclass(frozen=True, slots=True)
class AcmsNodeConfig:
    acms: AcmsConfig
    sip: SipSettings = field(default_factory=SipSettings)
    log: LogSettings = field(default_factory=LogSettings)


@dataclass(frozen=True, slots=True)
class AcmcNodeConfig:
    acmc: AcmcConfig
    sip: SipSettings = field(default_factory=SipSettings)
    log: LogSettings = field(default_factory=LogSettings)


@dataclass(frozen=True, slots=True)
class FaServerNodeConfig:
    psi: str
    """The FA controlling server's own identity (From of its NOTIFYs)."""
    fa: FaServerConfig
    sip: SipSettings = field(default_factory=SipSettings)
    log: LogSettings = field(default_factory=LogSettings)


# --------------------------------------------------------------------------- helpers


def _table(data: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(path + key, "expected a table")
    return value


def _unknown(data: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(path + key, "unknown key")


def _typed(data: Mapping[str, Any], key: str, path: str, kind: type[Any], default: Any) -> Any:
    value = data.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ConfigError(path + key, f"expected {kind.__name__}, got {value!r}")
    return value


def _str_list(data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(path + key, "expected a list of strings")
    return tuple(value)


def _listens(data: Mapping[str, Any]) -> tuple[Listen, ...]:
    value = data.get("listen")
    if value is None:
        return SipSettings().listens
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise ConfigError("listen", "expected one or more [[listen]] tables")
    out = []
    for i, item in enumerate(value):
        path = f"listen[{i}]."
        _unknown(item, {"transport", "host", "port", "advertise"}, path)
        transport = _typed(item, "transport", path, str, "udp")
        if transport not in ("udp", "tcp"):
            raise ConfigError(path + "transport", f"{transport!r}: expected udp or tcp")
        port = _typed(item, "port", path, int, 0)
        if not 0 <= port < 65536:
            raise ConfigError(path + "port", f"{port} is not a port number")
        advertise = item.get("advertise")
        if advertise is not None and not isinstance(advertise, str):
            raise ConfigError(path + "advertise", "expected a string")
        out.append(Listen(transport, _typed(item, "host", path, str, "127.0.0.1"), port,
                          advertise))
    return tuple(out)


def parse_sip_settings(data: Mapping[str, Any]) -> SipSettings:
    """The ``[[listen]]`` and ``[sip]`` tables of any role."""
    sip = _table(data, "sip")
    p = "sip."
    _unknown(sip, {"icsi", "trusted_hosts", "transport", "send_timeout", "registration_expires",
                   "t1", "t2", "t4", "hops"}, p)
    hops = _table(sip, "hops", p)
    for key, uri in hops.items():
        if not isinstance(uri, str):
            raise ConfigError(f"sip.hops.{key}", "expected a SIP URI string")
        try:
            hop_peer(uri)
        except ValueError as exc:
            raise ConfigError(f"sip.hops.{key}", str(exc)) from None
    transport = _typed(sip, "transport", p, str, "udp")
    if transport not in ("udp", "tcp"):
        raise ConfigError("sip.transport", f"{transport!r}: expected udp or tcp")
    numbers = {}
    for key, default in (("send_timeout", 32.0), ("t1", 0.5), ("t2", 4.0), ("t4", 5.0)):
        numbers[key] = _typed(sip, key, p, float, default)
        if numbers[key] <= 0:
            raise ConfigError(p + key, "must be positive")
    expires = _typed(sip, "registration_expires", p, int, 600)
    if expires < 1:
        raise ConfigError("sip.registration_expires", "must be positive")
    return SipSettings(
        listens=_listens(data),
        icsi=_typed(sip, "icsi", p, str, SipSettings().icsi),
        trusted_hosts=frozenset(_str_list(sip, "trusted_hosts", p)),
        hops=dict(hops),
        transport="tcp" if transport == "tcp" else "udp",
        send_timeout=numbers["send_timeout"],
        registration_expires=expires,
        timers=Timers(t1=numbers["t1"], t2=numbers["t2"], t4=numbers["t4"]),
    )


def parse_log_settings(data: Mapping[str, Any]) -> LogSettings:
    log = _table(data, "log")
    _unknown(log, {"level", "format"}, "log.")
    level = _typed(log, "level", "log.", str, "info").lower()
    if level not in LEVELS:
        raise ConfigError("log.level", f"{level!r}: expected one of {', '.join(LEVELS)}")
    fmt = _typed(log, "format", "log.", str, "console")
    if fmt not in ("console", "json"):
        raise ConfigError("log.format", f"{fmt!r}: expected console or json")
    return LogSettings(level, "json" if fmt == "json" else "console")


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"{path} is not valid TOML: {exc}") from None


# --------------------------------------------------------------------------- roles


def parse_acms_node(data: Mapping[str, Any], base: Path = Path(".")) -> AcmsNodeConfig:
    return AcmsNodeConfig(parse_acms_config(data, base), parse_sip_settings(data),
                          parse_log_settings(data))


def parse_acmc_node(data: Mapping[str, Any]) -> AcmcNodeConfig:
    return AcmcNodeConfig(parse_acmc_config(data), parse_sip_settings(data),
                          parse_log_settings(data))


def parse_fa_server_node(data: Mapping[str, Any]) -> FaServerNodeConfig:
    """FA controlling server (24.379 9A.2.2.3)::

        psi = "sip:fa-server@partner.example"
        trusted = ["sip:acms@partner.example"]     # may resolve every FA, publish for users

        [[aliases]]
        uri = "sip:duty@partner.example"
        users = ["sip:dave@partner.example"]        # <mcptt-user-list>
        max_simultaneous_activations = 1            # optional
        allow_takeover = false
        subscribers = []                            # further identities allowed to resolve
    """
    _unknown(data, {"psi", "trusted", "aliases", "listen", "sip", "log"}, "")
    psi = data.get("psi")
    if not isinstance(psi, str) or ":" not in psi:
        raise ConfigError("psi", "missing or not a URI")
    raw = data.get("aliases", [])
    if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
        raise ConfigError("aliases", "expected an array of tables ([[aliases]])")
    aliases = []
    for i, a in enumerate(raw):
        path = f"aliases[{i}]."
        _unknown(a, {"uri", "users", "max_simultaneous_activations", "allow_takeover",
                     "subscribers"}, path)
        uri = a.get("uri")
        if not isinstance(uri, str) or ":" not in uri:
            raise ConfigError(path + "uri", "missing or not a URI")
        limit = a.get("max_simultaneous_activations")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ConfigError(path + "max_simultaneous_activations", "expected an integer >= 1")
        aliases.append(FaConfig(uri, frozenset(_str_list(a, "users", path)), limit,
                                _typed(a, "allow_takeover", path, bool, False),
                                frozenset(_str_list(a, "subscribers", path))))
    try:
        fa = FaServerConfig(tuple(aliases), frozenset(_str_list(data, "trusted", "")))
    except ValueError as exc:
        raise ConfigError("aliases", str(exc)) from None
    return FaServerNodeConfig(psi, fa, parse_sip_settings(data), parse_log_settings(data))


def load_acms_node(path: str | Path) -> AcmsNodeConfig:
    return parse_acms_node(read_toml(path), Path(path).parent)


def load_acmc_node(path: str | Path) -> AcmcNodeConfig:
    return parse_acmc_node(read_toml(path))


def load_fa_server_node(path: str | Path) -> FaServerNodeConfig:
    return parse_fa_server_node(read_toml(path))
