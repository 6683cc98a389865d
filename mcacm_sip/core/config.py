"""Typed configuration of an ACMS and an ACMC, and their validation from a parsed TOML document.

The TOML shape (docs/procedures.md has the full annotated example)::

    psi = "sip:acms@partner.example"          # this ACMS's identity (PSI)
    automatic_handler = "sip:auto@partner.example"   # optional; default: psi
    decider = "sip:duty@partner.example"      # optional; decides requests without a target
    fa_selection = "first"                    # or "round-robin"
    functional_aliases = ["sip:duty@partner.example"]   # subscribe at start

    [timers]      # seconds; all optional
    decision_timeout = 86400
    answer_grace = 3600
    retry_initial = 1.0
    retry_max = 60.0
    pending_response_ttl = 604800
    retention = 604800

    [migration]   # partner role, 10.17.5
    id_template = "sip:{user}-{n}@partner.example"
    profile_file = "migration-profile.xml"    # or: profile = "<mcptt-user-profile ...>"

    [store]
    path = "acms.sqlite"
    synchronous = "NORMAL"                    # or "FULL"

    [[peers]]
    psi = "sip:acms@primary.example"
    domains = ["primary.example"]
    requesters = ["sip:*@primary.example"]    # URI patterns; default ["*"]
    groups = ["sip:*@primary.example"]        # groups it may send group requests for
                                              # (10.17.4: it is their home); default ["*"]
    flows = ["profile-update-request"]        # default: every request flow
    tls = "required"                          # only over mutually authenticated TLS;
                                              # default "optional"

    [[users]]
    id = "sip:alice@partner.example"
    request = ["profile-update-request"]      # flows the user may send (primary role)
    decide = ["profile-update-request"]       # flows the user may decide (partner role)
    peers = []                                # peers the user may address; default: any
    groups = ["sip:grp-*@partner.example"]    # groups of group-related ACM (10.17.4) the
                                              # user may request / decide; default ["*"]

    [[policy]]
    flow = "profile-update-request"
    action = "approve"                        # approve | reject | manual
    requester = "sip:admin@*"
    profile_contains = "PrivateCall"
    reason = "routine change"

Tables ``sip``, ``listen``, ``runtime`` and ``log`` (and the ACMS's ``limits``) belong to the
runtime and are not read here.  So does every file: reading the TOML file, resolving the names
it gives relative to it and reading the files they name (``profile_file``) is
:mod:`mcacm_sip.runtime.config`'s job; this module only validates values.
Every error is a :class:`ConfigError` naming the offending key (``peers[0].psi``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from mcacm_sip.acm.model import (
    AddUserConfigurationRequest,
    GroupMembershipUpdateRequest,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    ProfileUpdateRequest,
    RemoveUserConfigurationRequest,
    Urgency,
    UserProfile,
)
from mcacm_sip.core.identity import matches_any, pattern_ok, same, uid
from mcacm_sip.core.policy import PolicyAction, PolicyRule

REQUEST_FLOWS: tuple[str, ...] = (
    ProfileUpdateRequest.FLOW,
    AddUserConfigurationRequest.FLOW,
    RemoveUserConfigurationRequest.FLOW,
    GroupMembershipUpdateRequest.FLOW,
    InterconnectionGroupProvisionRequest.FLOW,
)
GROUP_FLOWS: tuple[str, ...] = (
    GroupMembershipUpdateRequest.FLOW,
    InterconnectionGroupProvisionRequest.FLOW,
)
"""The group-related request flows (10.17.4): authorised per group as well as per flow."""
RUNTIME_TABLES = frozenset({"sip", "listen", "runtime", "log", "capture", "metrics"})
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")


class ConfigError(ValueError):
    """A configuration value that cannot be used; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True, slots=True)
class Timers:
    """Timers the spec leaves open (seconds).  docs/procedures.md explains each."""

    decision_timeout: float = 24 * 3600.0
    """Partner: no decision by then -> Result expired towards the primary."""
    answer_grace: float = 3600.0
    """Primary: answer timer = decision_timeout + answer_grace (and extended to the process
    indication's expires + answer_grace).  Partner: how long a response is retried."""
    retry_initial: float = 1.0
    """First retry delay of a failed peer send; doubles each time ..."""
    retry_max: float = 60.0
    """... up to this cap, until the transaction's timer ends it."""
    pending_response_ttl: float = 7 * 24 * 3600.0
    """Primary: how long a response waits for the primary ACMC before it is dropped."""
    retention: float = 7 * 24 * 3600.0
    """How long a finished transaction is kept (duplicate detection, idempotent re-send)."""

    @property
    def answer_timeout(self) -> float:
        return self.decision_timeout + self.answer_grace

    def backoff(self, attempts: int) -> float:
        """Delay before attempt ``attempts + 1``: 1 s, 2 s, 4 s ... capped (decision)."""
        return min(self.retry_initial * 2.0 ** min(max(attempts - 1, 0), 60), self.retry_max)


@dataclass(frozen=True, slots=True)
class PeerSystem:
    """A partner/primary MC system whose ACMS may talk to ours."""

    psi: str
    domains: tuple[str, ...] = ()
    """Hosts of its users' URIs: chooses the partner for a target (primary role)."""
    requesters: tuple[str, ...] = ("*",)
    """URI patterns (or ``*``) of the peer's users allowed to send us requests (partner role)."""
    flows: tuple[str, ...] = REQUEST_FLOWS
    """Request flows the peer may send us (partner role)."""
    groups: tuple[str, ...] = ("*",)
    """URI patterns (or ``*``) of the MC service groups the peer may send group-related
    requests for (partner role, 10.17.4: the peer must be the groups' home system)."""
    tls: Literal["optional", "required"] = "optional"
    """``required``: the peer's requests count only over TLS with a client certificate naming
    it (RFC 5922 7.4); ``optional``: also over UDP/TCP (labs without TLS).  A certificate,
    when shown, must name the peer either way (runtime; docs/decisions.md)."""


@dataclass(frozen=True, slots=True)
class AuthorisedUser:
    """A local user who may use ACM, and for what."""

    id: str
    may_request: tuple[str, ...] = ()
    may_decide: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()
    """PSIs of the peers this user may address; empty: any configured peer."""
    groups: tuple[str, ...] = ("*",)
    """URI patterns (or ``*``) of the MC service groups this user may send group-related
    requests for (primary role) and decide them for (partner role), 10.17.4."""

    def may_group(self, group: str) -> bool:
        """Whether this user may request or decide group-related ACM for ``group``."""
        return matches_any(group, self.groups)


@dataclass(frozen=True, slots=True)
class Migration:
    """Partner role of 10.17.5: how IDs and profiles are assigned to migrating users."""

    id_template: str = "sip:{user}-{n}@migrated.invalid"
    """``{user}``/``{host}``: user part and host of the primary ID (canonical spelling);
    ``{n}``: a sequence number over every ID this worker assigned (required: it keeps two
    primary systems' users apart); ``{worker}``: ``[store] worker_id`` (required with
    ``[store] url``: each worker counts ``{n}`` on its own)."""
    profile: UserProfile | None = None
    """The default migration profile; None: add requests get invalid-profile per user."""
    worker: str = ""
    """``[store] worker_id`` ("" with a single-process store)."""

    def assign(self, primary_id: str, n: int) -> str:
        u = uid(primary_id)
        if u.host:
            user, host = u.user or "", u.host
        else:  # no SIP URI: its text as written
            user, _, host = primary_id.split(":", 1)[-1].partition("@")
        return self.id_template.format(user=user, host=host.split(";")[0], n=n,
                                       worker=self.worker)


DEFAULT_LEASE_SECONDS = 10.0
"""docs/decisions.md "Scale-out: leases": a dead worker's work continues within ~1.3x this."""


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str | None = None
    """SQLite file; None (and no ``url``): in-memory (tests, demo)."""
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    url: str | None = None
    """``postgresql://...``: the PostgreSQL store, several workers (docs/scale-out.md)."""
    worker_id: str | None = None
    """This worker's name in the shared store (required with ``url``; stable across restarts)."""
    lease_seconds: float = 10.0  # DEFAULT_LEASE_SECONDS
    """How long a worker's hold on its transactions lasts without renewal (with ``url``)."""


@dataclass(frozen=True, slots=True)
class AcmsConfig:
    psi: str
    peers: tuple[PeerSystem, ...] = ()
    users: tuple[AuthorisedUser, ...] = ()
    policy: tuple[PolicyRule, ...] = ()
    automatic_handler: str | None = None
    """Handler identity of automatic answers; None: the PSI."""
    decider: str | None = None
    """MC service ID or FA that decides manual requests without a target (add/remove)."""
    fa_selection: Literal["first", "round-robin"] = "first"
    functional_aliases: tuple[str, ...] = ()
    timers: Timers = field(default_factory=Timers)
    migration: Migration = field(default_factory=Migration)
    store: StoreConfig = field(default_factory=StoreConfig)

    @property
    def handler_id(self) -> str:
        return self.automatic_handler or self.psi


_DEFAULT_REQUEST_TIMEOUT = Timers().answer_timeout + 3600.0


@dataclass(frozen=True, slots=True)
class AcmcConfig:
    mc_service_id: str
    acms_psi: str
    functional_alias: str | None = None
    """The FA the user acts under (put in requester / handler)."""
    request_timeout: float = _DEFAULT_REQUEST_TIMEOUT
    """No final answer by then: reported as a timeout (the ACMS normally answers expired first)."""


# --------------------------------------------------------------------------- TOML loading

_T = TypeVar("_T")


@dataclass(slots=True)
class KeyRecord:
    """What the loaders read, for ``mcacm check`` (the effective configuration) and the
    generated reference (docs/config.md): every table's accepted keys, and each value read
    with its type, its default and whether the file gave it."""

    tables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """table path (``""``, ``"peers[0]."``) -> the keys it accepts."""
    values: dict[str, tuple[str, Any, Any, bool]] = field(default_factory=dict)
    """key path -> (type name, effective value, default, given in the file)."""


RECORDER: ContextVar[KeyRecord | None] = ContextVar("mcacm_config_recorder", default=None)
"""Set by :func:`mcacm_sip.runtime.reference.recording`; None (no cost) otherwise."""


def note(key: str, kind: str, value: Any, default: Any, given: bool) -> None:
    """Record one value read (nothing unless a :data:`RECORDER` is set)."""
    record = RECORDER.get()
    if record is not None:
        record.values[key] = (kind, value, default, given)


def get_typed(data: Mapping[str, Any], key: str, path: str, kind: type[_T], default: _T) -> _T:
    """``data[key]`` (``default`` when absent) as a ``kind``; an int is taken as a float."""
    value = data.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(path + key, f"expected {kind.__name__}, got {value!r}")
    note(path + key, kind.__name__, value, default, key in data)
    return value


def _uri(data: Mapping[str, Any], key: str, path: str, *, required: bool) -> str | None:
    value = data.get(key)
    note(path + key, "URI", value, None, value is not None)
    if value is None:
        if required:
            raise ConfigError(path + key, "missing (a URI is required)")
        return None
    if not isinstance(value, str) or not _URI.match(value):
        raise ConfigError(path + key, f"{value!r} is not a URI")
    return value


def get_strings(data: Mapping[str, Any], key: str, path: str, default: tuple[str, ...] = (),
                check: Callable[[str], bool] = lambda _: True, what: str = "string",
                ) -> tuple[str, ...]:
    """A list of strings, each passing ``check`` (``default`` when absent)."""
    value = data.get(key)
    note(path + key, f"list of {what}s", list(default) if value is None else value,
         list(default), value is not None)
    if value is None:
        return default
    if not isinstance(value, list):
        raise ConfigError(path + key, f"expected a list of {what}s")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not check(item):
            raise ConfigError(f"{path}{key}[{i}]", f"{item!r} is not a {what}")
    return tuple(value)


def _flows(data: Mapping[str, Any], key: str, path: str, default: tuple[str, ...]
           ) -> tuple[str, ...]:
    return get_strings(data, key, path, default, lambda f: f in REQUEST_FLOWS,
                    "request flow name (" + ", ".join(REQUEST_FLOWS) + ")")


def _groups(data: Mapping[str, Any], path: str) -> tuple[str, ...]:
    return get_strings(data, "groups", path, ("*",), pattern_ok,
                       "MC service group URI pattern (e.g. sip:grp-*@host or *)")


def check_keys(data: Mapping[str, Any], allowed: set[str] | frozenset[str], path: str) -> None:
    """ConfigError naming the first key of ``data`` not in ``allowed``."""
    record = RECORDER.get()
    if record is not None:
        record.tables[path] = tuple(sorted(allowed))
    for key in data:
        if key not in allowed:
            raise ConfigError(path + key, "unknown key")


def _tables(data: Mapping[str, Any], key: str) -> list[tuple[str, Mapping[str, Any]]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(key, "expected an array of tables ([[" + key + "]])")
    return [(f"{key}[{i}].", v) for i, v in enumerate(value)]


def get_table(data: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, Any]:
    """The table ``key`` (empty when absent)."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(path + key, "expected a table")
    return value


def _timers(data: Mapping[str, Any]) -> Timers:
    names = set(Timers.__dataclass_fields__)
    check_keys(data, names, "timers.")
    values = {n: get_typed(data, n, "timers.", float, getattr(Timers(), n)) for n in names}
    for n, v in values.items():
        if v <= 0:
            raise ConfigError("timers." + n, "must be positive")
    return Timers(**values)


def _policy(path: str, data: Mapping[str, Any]) -> PolicyRule:
    keys = {"flow", "action", "requester", "target", "migrated_user", "profile_contains",
            "profile_regex", "reason", "group", "operation", "urgency"}
    check_keys(data, keys, path)
    action = data.get("action")
    if not isinstance(action, str) or action not in PolicyAction.__members__.values():
        raise ConfigError(path + "action", f"{action!r}: expected approve, reject or manual")
    flow = get_typed(data, "flow", path, str, "*")
    if flow != "*" and flow not in REQUEST_FLOWS:
        raise ConfigError(path + "flow", f"{flow!r} is not a request flow name or '*'")
    opt = {k: data.get(k) for k in keys - {"flow", "action"}}
    for k, v in opt.items():
        if v is not None and not isinstance(v, str):
            raise ConfigError(path + k, "expected a string")
        if k in ("requester", "target", "migrated_user", "group") and v is not None \
                and not pattern_ok(v):
            raise ConfigError(path + k, f"{v!r} is not a URI pattern (e.g. sip:*@host or *)")
        if k == "operation" and v is not None and v not in GroupOperation.__members__.values():
            raise ConfigError(path + k, f"{v!r}: expected add or delete")
        if k == "urgency" and v is not None and v not in Urgency.__members__.values():
            raise ConfigError(path + k, f"{v!r}: expected low, normal or high")
    try:
        return PolicyRule(action=PolicyAction(action), flow=flow, **opt)
    except re.error as exc:
        raise ConfigError(path + "profile_regex", f"bad regular expression: {exc}") from None


def _load_profile(text: str, key: str) -> UserProfile:
    from mcacm_sip.acm.codec import profile_from_xml  # the message layer canonicalises

    try:
        return profile_from_xml(text)
    except Exception as exc:  # any parse/validation failure is a configuration error
        raise ConfigError(key, f"not a usable profile document: {exc}") from None


ReadFile = Callable[[str, str], str]
"""``read_file(name, key)``: the text of the file a configuration names under ``key``
(resolved relative to the configuration file); a :class:`ConfigError` naming ``key`` if it
cannot be read.  :func:`mcacm_sip.runtime.config.file_reader` makes one."""


def no_files(name: str, key: str) -> str:
    """The :data:`ReadFile` of a configuration that did not come from a file."""
    raise ConfigError(key, f"{name!r}: a file can be named only in a configuration file "
                           "(mcacm_sip.runtime.config.load_acms_node)")


_WORKER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

CLUSTER_ID_TEMPLATE = "sip:{user}-{n}.{worker}@migrated.invalid"
"""The default ``id_template`` of a worker with ``[store] url``."""


def _migration(data: Mapping[str, Any], read_file: ReadFile, worker: str | None
               ) -> Migration:
    check_keys(data, {"id_template", "profile", "profile_file"}, "migration.")
    default = Migration().id_template if worker is None else CLUSTER_ID_TEMPLATE
    template = get_typed(data, "id_template", "migration.", str, default)
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise ConfigError("migration.id_template", f"bad template: {exc}") from None
    if "n" not in fields:
        # decision: partner-assigned IDs must be unique per primary system; only the
        # sequence number guarantees it (two primaries may both have a sip:alice@...)
        raise ConfigError("migration.id_template",
                          f"{template!r} has no {{n}}: two primary systems' users could be "
                          "given the same ID")
    if worker is not None and "worker" not in fields:
        # decision (docs/decisions.md "Scale-out"): each worker counts {n} over what it
        # assigned, so two workers migrating at once could give one number twice
        raise ConfigError("migration.id_template",
                          f"{template!r} has no {{worker}}: with [store] url each worker "
                          "counts {n} on its own, so two workers could assign the same ID")
    if worker is None and "worker" in fields:
        raise ConfigError("migration.id_template",
                          f"{template!r} uses {{worker}}, which needs [store] url and "
                          "worker_id")
    try:
        sample = Migration(template, worker=worker or "").assign("sip:user@host.example", 1)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("migration.id_template", f"bad template: {exc!r}") from None
    if not _URI.match(sample):
        raise ConfigError("migration.id_template", f"does not give a URI (e.g. {sample!r})")
    profile = None
    if "profile" in data and "profile_file" in data:
        raise ConfigError("migration.profile", "give profile or profile_file, not both")
    if "profile" in data:
        profile = _load_profile(get_typed(data, "profile", "migration.", str, ""),
                                "migration.profile")
    elif "profile_file" in data:
        text = read_file(get_typed(data, "profile_file", "migration.", str, ""),
                         "migration.profile_file")
        profile = _load_profile(text, "migration.profile_file")
    return Migration(template, profile, worker or "")


def parse_acms_config(data: Mapping[str, Any], read_file: ReadFile = no_files) -> AcmsConfig:
    """Validate a parsed TOML document; ``read_file`` reads the files it names.  ``store.path``
    is kept as written (the runtime resolves it)."""
    check_keys(data, {"psi", "automatic_handler", "decider", "fa_selection", "functional_aliases",
                    "timers", "migration", "store", "peers", "users", "policy", "limits"}
             | RUNTIME_TABLES,
             "")
    psi = _uri(data, "psi", "", required=True)
    assert psi is not None
    selection = get_typed(data, "fa_selection", "", str, "first")
    if selection not in ("first", "round-robin"):
        raise ConfigError("fa_selection", f"{selection!r}: expected 'first' or 'round-robin'")
    peers: list[PeerSystem] = []
    for path, p in _tables(data, "peers"):
        check_keys(p, {"psi", "domains", "requesters", "flows", "groups", "tls"}, path)
        peer_psi = _uri(p, "psi", path, required=True)
        assert peer_psi is not None
        if any(same(q.psi, peer_psi) for q in peers):
            raise ConfigError(path + "psi", f"{peer_psi} is configured twice")
        tls = get_typed(p, "tls", path, str, "optional")
        if tls not in ("optional", "required"):
            raise ConfigError(path + "tls", f"{tls!r}: expected 'optional' or 'required'")
        domains = tuple(d.lower() for d in get_strings(p, "domains", path, ()))
        peers.append(PeerSystem(peer_psi, domains,
                                get_strings(p, "requesters", path, ("*",), pattern_ok,
                                            "URI pattern (e.g. sip:*@host or *)"),
                                _flows(p, "flows", path, REQUEST_FLOWS),
                                _groups(p, path),
                                "required" if tls == "required" else "optional"))
    users: list[AuthorisedUser] = []
    for path, u in _tables(data, "users"):
        check_keys(u, {"id", "request", "decide", "peers", "groups"}, path)
        user_id = _uri(u, "id", path, required=True)
        assert user_id is not None
        if any(same(v.id, user_id) for v in users):
            raise ConfigError(path + "id", f"{user_id} is configured twice")
        user_peers = get_strings(u, "peers", path, ())
        for i, pp in enumerate(user_peers):
            if not any(same(p.psi, pp) for p in peers):
                raise ConfigError(f"{path}peers[{i}]", f"{pp} is not a configured peer psi")
        users.append(AuthorisedUser(user_id, _flows(u, "request", path, ()),
                                    _flows(u, "decide", path, ()), user_peers,
                                    _groups(u, path)))
    store = get_table(data, "store")
    check_keys(store, {"path", "synchronous", "url", "worker_id", "lease_seconds"}, "store.")
    sync = get_typed(store, "synchronous", "store.", str, "NORMAL").upper()
    if sync not in ("NORMAL", "FULL"):
        raise ConfigError("store.synchronous", f"{sync!r}: expected NORMAL or FULL")
    store_path = store.get("path")
    if store_path is not None and not isinstance(store_path, str):
        raise ConfigError("store.path", "expected a string")
    url, worker_id, lease = _shared_store(store, store_path)
    return AcmsConfig(
        psi=psi,
        peers=tuple(peers),
        users=tuple(users),
        policy=tuple(_policy(path, r) for path, r in _tables(data, "policy")),
        automatic_handler=_uri(data, "automatic_handler", "", required=False),
        decider=_uri(data, "decider", "", required=False),
        fa_selection="round-robin" if selection == "round-robin" else "first",
        functional_aliases=get_strings(data, "functional_aliases", "", (),
                                    lambda s: bool(_URI.match(s)), "URI"),
        timers=_timers(get_table(data, "timers")),
        migration=_migration(get_table(data, "migration"), read_file,
                             worker_id if url is not None else None),
        store=StoreConfig(store_path,
                          "FULL" if sync == "FULL" else "NORMAL", url, worker_id, lease),
    )


def _shared_store(store: Mapping[str, Any], path: object
                  ) -> tuple[str | None, str | None, float]:
    """``[store] url``, ``worker_id``, ``lease_seconds`` (docs/scale-out.md): only with a
    PostgreSQL URL; SQLite has one worker and no leases (docs/decisions.md)."""
    url = store.get("url")
    lease = get_typed(store, "lease_seconds", "store.", float, DEFAULT_LEASE_SECONDS)
    worker_id = store.get("worker_id")
    if url is None:
        for key in ("worker_id", "lease_seconds"):
            if key in store:
                raise ConfigError("store." + key, "only with store.url (PostgreSQL); "
                                  "a SQLite store has one worker")
        return None, None, lease
    if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("store.url", f"{url!r}: expected a postgresql:// URL")
    if path is not None:
        raise ConfigError("store.url", "give store.path (SQLite) or store.url (PostgreSQL), "
                          "not both")
    if "synchronous" in store:
        raise ConfigError("store.synchronous", "SQLite only; PostgreSQL uses the server's "
                          "synchronous_commit")
    if not isinstance(worker_id, str) or not worker_id.strip():
        raise ConfigError("store.worker_id", "required with store.url: a name unique to "
                          "this worker and the same after its restarts")
    if not 1.0 <= lease <= 3600.0:
        raise ConfigError("store.lease_seconds", f"{lease}: expected 1 to 3600")
    if not _WORKER_ID.fullmatch(worker_id.strip()):
        # it goes into assigned IDs ({worker} of migration.id_template) and log lines
        raise ConfigError("store.worker_id", f"{worker_id!r}: letters, digits, '.', '_' and "
                          "'-' only")
    return url, worker_id.strip(), lease


def parse_acmc_config(data: Mapping[str, Any]) -> AcmcConfig:
    """``mc_service_id``, ``acms_psi``, optional ``functional_alias`` and ``request_timeout``;
    runtime tables are ignored as for the ACMS."""
    check_keys(data, {"mc_service_id", "acms_psi", "functional_alias", "request_timeout"}
             | RUNTIME_TABLES, "")
    mc_id = _uri(data, "mc_service_id", "", required=True)
    psi = _uri(data, "acms_psi", "", required=True)
    assert mc_id is not None and psi is not None
    timeout = get_typed(data, "request_timeout", "", float, _DEFAULT_REQUEST_TIMEOUT)
    if timeout <= 0:
        raise ConfigError("request_timeout", "must be positive")
    return AcmcConfig(mc_id, psi, _uri(data, "functional_alias", "", required=False), timeout)

