"""Every configuration key of every node, read from the loaders themselves.

The loaders (``mcacm_sip.core.config``, ``mcacm_sip.runtime.config``) note, while a
:class:`~mcacm_sip.core.config.KeyRecord` is set, each table's accepted keys and each value
read with its type and default.  From that:

- :func:`check_file` (``mcacm check``) validates a node's TOML and shows its effective
  configuration: every key, the value in force, and which ones are defaults;
- :func:`reference` (``mcacm check --reference``, docs/config.md) lists every key of every role
  by parsing a document that opens every table; the descriptions are the config value types'
  attribute docstrings, else :data:`DESCRIPTIONS`; a key without either makes it fail (a test
  keeps docs/config.md equal to it).
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcacm_sip.core.config import (
    RECORDER,
    AcmcConfig,
    AcmsConfig,
    AuthorisedUser,
    ConfigError,
    KeyRecord,
    PeerSystem,
    StoreConfig,
    Timers,
)
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.config import (
    AcmsLimits,
    parse_acmc_node,
    parse_acms_node,
    parse_fa_server_node,
    read_toml,
)
from mcacm_sip.sip import Limits

ROLES = ("acms", "acmc", "fa-server")
_PARSERS: dict[str, Callable[[Mapping[str, Any], Path], Any]] = {
    "acms": parse_acms_node, "acmc": parse_acmc_node, "fa-server": parse_fa_server_node}
_RUNTIME = {"listen": [{}], "log": {},
            "sip": {"trust": "lab", "hops": {}, "tls": {}, "limits": {}}}
_EVERY_TABLE: dict[str, dict[str, Any]] = {
    # a document that opens every table of a role, so that every loader step runs
    "acms": {"psi": "sip:acms@a.example", "timers": {}, "migration": {}, "store": {},
             "limits": {}, "peers": [{"psi": "sip:acms@b.example"}],
             "users": [{"id": "sip:u@a.example"}], "policy": [{"action": "approve"}],
             **_RUNTIME},
    "acmc": {"mc_service_id": "sip:u@a.example", "acms_psi": "sip:acms@a.example", **_RUNTIME},
    "fa-server": {"psi": "sip:fa@a.example", "store": {},
                  "aliases": [{"uri": "sip:duty@a.example"}], **_RUNTIME},
}
_DOCSTRING_SOURCES: dict[str, tuple[type, ...]] = {
    # table (normalised) -> the value types whose attribute docstrings describe its keys
    "": (AcmsConfig, AcmcConfig), "timers": (Timers,), "limits": (AcmsLimits,),
    "sip.limits": (Limits,), "store": (StoreConfig,), "sip": (SipSettings,),
    "peers": (PeerSystem,), "users": (AuthorisedUser,),
}

DESCRIPTIONS: dict[str, str] = {
    # keys whose value types carry no attribute docstring (or a different name)
    "psi": "This node's identity (PSI): From of what it sends, what its peers address.",
    "acmc.acms_psi": "PSI of the user's ACMS: REGISTER goes to its host, requests to it.",
    "acmc.mc_service_id": "The MC service ID of the user this ACMC acts for.",
    "acms.automatic_handler": "Handler identity of automatic answers (10.17.3.2); default: "
                              "the psi.",
    "fa_selection": "An FA with several holders: ask the first, or each in turn "
                    "(first | round-robin).",
    "functional_aliases": "FAs this ACMS subscribes to at start (24.379 9A resolution).",
    "runtime": "Reserved for the runtime; not read.",
    "trusted": "Identities that may resolve every FA and publish for users (the ACMS).",
    "store.path": "SQLite file, relative to this file; its folder must exist. Absent: "
                  "memory only (nothing survives a restart).",
    "store.synchronous": "SQLite synchronous: NORMAL (group commit) or FULL (an fsync per "
                         "commit).",
    "peers.psi": "The peer ACMS's PSI.",
    "peers.domains": "Domains of targets that go to this peer.",
    "peers.requesters": "URI patterns of the requesters this peer may send for.",
    "peers.flows": "Request flows this peer may send.",
    "peers.tls": "required: believe it only over mutual TLS naming its PSI (RFC 5922).",
    "users.id": "The user's MC service ID.",
    "users.request": "Flows the user may send (primary role).",
    "users.decide": "Flows the user may decide (partner role).",
    "users.peers": "PSIs of the peers the user may address; empty: any.",
    "policy.flow": "The request flow the rule applies to, or *.",
    "policy.action": "approve | reject | manual (10.17.3.2 automatic handling).",
    "policy.requester": "URI pattern the requester must match.",
    "policy.target": "URI pattern the target must match.",
    "policy.migrated_user": "URI pattern the migrated user must match.",
    "policy.profile_contains": "Text the suggested profile must contain.",
    "policy.profile_regex": "Regular expression the suggested profile must match.",
    "policy.reason": "Reason given in the Result of an automatic answer.",
    "migration.id_template": "Partner-assigned MC service ID; {user}, {host}, {n} "
                             "(10.17.5; {n} is required).",
    "migration.profile": "Profile given to migrated users (XML text).",
    "migration.profile_file": "The same, from a file relative to this file.",
    "listen.transport": "udp | tcp | tls; absent: UDP and TCP on this port (RFC 3261 18).",
    "listen.host": "Address to listen on.",
    "listen.port": "Port; 0: any free port.",
    "listen.advertise": "Host written in Via / Contact instead of the address.",
    "sip.hops": "Static next hops (no DNS): a URI, a domain or * -> sip:IP:PORT[;transport=].",
    "sip.t1": "RFC 3261 T1 (RTT estimate); Timer F = 64*T1.",
    "sip.t2": "RFC 3261 T2 (longest retransmit interval).",
    "sip.t4": "RFC 3261 T4 (how long a message stays in the network).",
    "sip.tls.certificate": "PEM chain (+ key) for TLS listeners and as a TLS client; "
                           "relative to this file.",
    "sip.tls.key": "PEM key, if not in certificate.",
    "sip.tls.ca": "Trust anchors for peers (absent: the system store).",
    "sip.tls.require_client_cert": "Mutual TLS on our listeners.",
    "sip.limits.udp_mtu_switch": "A request larger than this goes over TCP "
                                 "(RFC 3261 18.1.1).",
    "log.level": "debug | info | warning | error.",
    "log.format": "console | json (stderr).",
    "aliases.uri": "The functional alias.",
    "aliases.users": "Users who may activate it (<mcptt-user-list>).",
    "aliases.max_simultaneous_activations": "Most holders at once; absent: no limit.",
    "aliases.allow_takeover": "A new activation over the limit displaces the oldest holder.",
    "aliases.subscribers": "Further identities allowed to resolve it.",
    "policy.group": "URI pattern the MC service group must match (10.17.4 requests).",
    "policy.operation": "add | delete: the group membership operation the rule applies to.",
    "policy.urgency": "low | normal | high: the group membership update's urgency.",
    "capture.hep": "Mirror every SIP message to a Homer collector as HEPv3: udp:IP:PORT.",
    "capture.capture_id": "HEP capture agent id of this node.",
    "capture.password": "HEP authentication key, if the collector wants one.",
    "metrics.listen": "HOST:PORT of the Prometheus /metrics endpoint (port 0: any).",
}
_TYPES: dict[str, tuple[str, Any]] = {
    # keys the loaders read without a typed getter: (type, default)
    "runtime": ("table", None), "sip.hops": ("table", {}),
    "store.path": ("str", None), "policy.action": ("str", None),
    "policy.requester": ("URI pattern", None), "policy.target": ("URI pattern", None),
    "policy.migrated_user": ("URI pattern", None), "policy.profile_contains": ("str", None),
    "policy.profile_regex": ("str", None), "policy.reason": ("str", None),
    "listen.transport": ("str", "udp + tcp"), "listen.advertise": ("str", None),
    "aliases.uri": ("URI", None), "aliases.max_simultaneous_activations": ("int", None),
    "psi": ("URI", None), "migration.profile": ("str", None),
    "migration.profile_file": ("str", None),
    "policy.group": ("URI pattern", None), "policy.operation": ("str", None),
    "policy.urgency": ("str", None), "store.url": ("str", None),
    "store.worker_id": ("str", None),
}


@contextmanager
def recording() -> Iterator[KeyRecord]:
    """Note what the loaders read while inside."""
    record = KeyRecord()
    token = RECORDER.set(record)
    try:
        yield record
    finally:
        RECORDER.reset(token)


def detect_role(data: Mapping[str, Any]) -> str:
    """Which node a TOML document configures: an ACMC names its user, an FA server its
    aliases or trusted resolvers, an ACMS the rest."""
    if "mc_service_id" in data or "acms_psi" in data:
        return "acmc"
    if "aliases" in data or "trusted" in data:
        return "fa-server"
    return "acms"


def table_name(path: str) -> str:
    """``peers[0].`` -> ``peers``, ``sip.limits.`` -> ``sip.limits``, ``""`` -> ``""``."""
    return re.sub(r"\[\d+\]", "", path).rstrip(".")


def _subtables(record: KeyRecord, path: str) -> set[str]:
    """Keys of the table at ``path`` that are tables of their own."""
    out = set()
    for other in record.tables:
        if other != path and other.startswith(path):
            out.add(re.split(r"[.\[]", other[len(path):], maxsplit=1)[0])
    return out


# --------------------------------------------------------------------------- mcacm check


@dataclass(frozen=True, slots=True)
class Checked:
    file: str
    role: str
    config: Any
    record: KeyRecord
    data: Mapping[str, Any]


def check_file(path: str, role: str | None = None) -> Checked:
    """Load ``path`` as ``role`` (default: detected) exactly as the node would; ConfigError
    naming the key otherwise.  Opens nothing (safe while the node runs)."""
    data = read_toml(path)
    role = role or detect_role(data)
    with recording() as record:
        config = _PARSERS[role](data, Path(path).parent)
    return Checked(path, role, config, record, data)


def _raw(data: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    node: Any = data
    for part in re.findall(r"([^.\[\]]+)(?:\[(\d+)\])?", path):
        node = node.get(part[0], {}) if isinstance(node, Mapping) else {}
        if part[1] and isinstance(node, list):
            node = node[int(part[1])] if int(part[1]) < len(node) else {}
    return node if isinstance(node, Mapping) else {}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) > 100:
        return json.dumps(value[:97] + "...") + "  # shortened"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str | list):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def effective(checked: Checked) -> dict[str, dict[str, tuple[Any, bool]]]:
    """Table path -> key -> (value in force, given in the file); tables of their own and
    unset optional keys are left out."""
    out: dict[str, dict[str, tuple[Any, bool]]] = {}
    for path, keys in checked.record.tables.items():
        raw = _raw(checked.data, path)
        table: dict[str, tuple[Any, bool]] = {}
        for key in keys:
            if key in _subtables(checked.record, path):
                continue
            noted = checked.record.values.get(path + key)
            if noted is not None and noted[1] is not None:
                table[key] = (noted[1], noted[3])
            elif key in raw:
                table[key] = (raw[key], True)
        out[path] = table
    return out


def render_effective(checked: Checked) -> str:
    """The effective configuration as TOML, defaults marked ``# default``."""
    lines = [f"# {checked.file}: {checked.role}, valid"]
    if "listen" not in checked.data:
        lines.append("# no [[listen]]: UDP and TCP on 127.0.0.1, any free port")
    for path, table in effective(checked).items():
        name = table_name(path)
        if name:
            lines.append("")
            lines.append(f"[[{name}]]" if path.endswith("].") else f"[{name}]")
        for key, (value, given) in table.items():
            lines.append(f"{key} = {_toml(value)}" + ("" if given else "  # default"))
    return "\n".join(lines) + "\n"


def effective_json(checked: Checked) -> dict[str, Any]:
    return {"file": checked.file, "role": checked.role, "valid": True,
            "effective": {table_name(p) if not p.endswith("].") else p.rstrip("."):
                          {k: {"value": v, "default": not g} for k, (v, g) in t.items()}
                          for p, t in effective(checked).items()}}


# --------------------------------------------------------------------------- reference


def attribute_docs(cls: type) -> dict[str, str]:
    """``name -> docstring`` of a dataclass's attributes (the string after each field)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out = {}
    for node, after in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str):
            out[node.target.id] = " ".join(after.value.value.split())
    return out


def _describe(role: str, table: str, key: str) -> str:
    full = f"{table}.{key}" if table else key
    for name in (f"{role}.{full}", full):
        if name in DESCRIPTIONS:
            return DESCRIPTIONS[name]
    for cls in _DOCSTRING_SOURCES.get(table, ()):
        doc = attribute_docs(cls).get(key)
        if doc:
            return doc
    raise ValueError(f"{role}: key {full} has no description: add a docstring to its value "
                     "type's field or an entry to mcacm_sip.runtime.reference.DESCRIPTIONS")


@dataclass(frozen=True, slots=True)
class KeyDoc:
    table: str
    key: str
    kind: str
    default: Any
    description: str


def role_keys(role: str) -> list[KeyDoc]:
    """Every key ``role`` accepts, in the order its loader reads the tables."""
    with recording() as record:
        _PARSERS[role](_EVERY_TABLE[role], Path("."))
    out = []
    for path, keys in record.tables.items():
        table = table_name(path)
        for key in keys:
            if key in _subtables(record, path):
                continue
            full = f"{table}.{key}" if table else key
            noted = record.values.get(path + key)
            if noted is not None:
                kind, default = noted[0], noted[2]
            elif full in _TYPES:
                kind, default = _TYPES[full]
            else:
                raise ValueError(f"{role}: key {full} is read without a type: add it to "
                                 "mcacm_sip.runtime.reference._TYPES")
            out.append(KeyDoc(table, key, kind, default, _describe(role, table, key)))
    return out


_TITLES = {"acms": "ACM server (`mcacm acms`)", "acmc": "ACM client (`mcacm acmc`)",
           "fa-server": "FA controlling server (`mcacm fa-server`)"}


def _cell(value: Any) -> str:
    if value is None or value == "":
        return ""
    text = _toml(value) if not isinstance(value, str) else json.dumps(value)
    return "`" + text.replace("|", "\\|") + "`"


def reference() -> str:
    """docs/config.md: every key of every role, generated (``mcacm check --reference``)."""
    out = ["# Configuration reference",
           "",
           "Generated by `mcacm check --reference` from the loaders and the configuration "
           "value types",
           "(`mcacm_sip/runtime/reference.py`); `tests/test_cli_lab.py` keeps this file equal "
           "to it.",
           "Do not edit by hand. `mcacm check FILE` validates a file and prints its effective "
           "configuration",
           "(docs/cli.md). Relative paths are relative to the configuration file. Array tables "
           "are written",
           "`[[peers]]`; the other tables `[sip.limits]`.",
           ""]
    for role in ROLES:
        out += [f"## {_TITLES[role]}", ""]
        table = None
        for k in role_keys(role):
            if k.table != table:
                table = k.table
                multi = table in ("peers", "users", "policy", "listen", "aliases")
                title = "top level" if not table else f"[[{table}]]" if multi else f"[{table}]"
                out += ["", f"### {title}", "",
                        "| Key | Type | Default | Meaning |", "|---|---|---|---|"]
            kind = re.sub(r"^list of (.+?) \(.*\)s$", r"list of \1s", k.kind)
            text = k.description.replace("|", "/").replace("``", "`")
            out.append(f"| `{k.key}` | {kind} | {_cell(k.default)} | {text} |")
        out.append("")
    return "\n".join(line for line in out).replace("\n\n\n", "\n\n") + "\n"


def check_error(path: str, exc: ConfigError) -> str:
    return f"{path}: {exc}"
