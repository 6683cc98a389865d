"""Functional alias controlling server, sans-I/O (TS 24.379 clause 9A.2.2.3, 23.280 10.13).

The server owning a set of functional aliases.  It takes decoded SIP facts (a PUBLISH, an initial
or in-dialog SUBSCRIBE, a clock tick) with ``now`` (POSIX seconds) and returns actions: the
:class:`Answer` owed to the request, :class:`NotifySubscriber` bodies for subscriptions, and
events for in-process consumers (:class:`HoldersChanged`, :class:`Revoked`,
:class:`Ignored`).  The asyncio runtime serves it with the SIP layer's publication and
subscription usages: they own SIP-ETag, dialogs and NOTIFY transactions; this core owns status
codes and bodies.

Stored information (9A.2.2.3.2): per FA, its holders (MCPTT ID, activation time, expiration).
Activation with Expires 4294967295 lasts until withdrawn; :meth:`FaServer.handle_timer` still
honours the stored expiration (9A.2.2.3.6 "expiration of the functional alias association"),
which with that value lies 136 years ahead.  Decisions the spec leaves open: docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.fa import (
    CT_PIDF,
    EXPIRES_UNTIL_WITHDRAWN,
    REQUEST_TYPE_FA_STATUS,
    FaBodies,
    FaHolders,
    FaPresence,
    FaStatus,
    FunctionalAliasEntry,
    decode_bodies,
    encode_presence,
)
from mcacm_sip.sip.uri import Uri, identity, same_identity, try_identity

SubscriptionId = str
"""The runtime's handle of a subscription dialog (e.g. Call-ID + tags); opaque here."""

_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    406: "Not Acceptable",
    415: "Unsupported Media Type",
    413: "Request Entity Too Large",
    423: "Interval Too Brief",
    481: "Call/Transaction Does Not Exist",
}


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class FaConfig:
    """One functional alias owned by this server (the 24.484 FA entry elements 9A.2.2.3.3 uses)."""

    uri: str
    users: frozenset[str] = frozenset()
    """``<mcptt-user-list>``: MCPTT IDs allowed to activate the FA (9A.2.2.3.3 step 4a)."""
    max_simultaneous_activations: int | None = None
    """``<max-simultaneous-activations>`` (step 5); None: no limit."""
    allow_takeover: bool = False
    """``<allow-takeover>`` (step 6)."""
    subscribers: frozenset[str] = frozenset()
    """Further identities allowed to resolve the FA or learn its status (9A.2.2.3.4 step 5,
    local policy); the server's trusted PSIs are always allowed."""

    def __post_init__(self) -> None:
        if self.max_simultaneous_activations is not None and self.max_simultaneous_activations < 1:
            raise ValueError(f"{self.uri}: max_simultaneous_activations must be >= 1")
        object.__setattr__(self, "users", frozenset(self.users))
        object.__setattr__(self, "subscribers", frozenset(self.subscribers))


@dataclass(frozen=True, slots=True)
class FaServerConfig:
    aliases: tuple[FaConfig, ...]
    trusted: frozenset[str] = frozenset()
    """PSIs of MC servers in the trust domain (serving MC servers, the ACMS): they may publish on
    behalf of a user (9A.2.2.2.6 step 6: P-Asserted-Identity is the server's PSI) and resolve or
    watch every FA."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "trusted", frozenset(self.trusted))
        # every identity must parse (InvalidUri is a ValueError naming it): the server
        # compares them as URIs
        for text in (*self.trusted, *(u for a in self.aliases for u in a.users | a.subscribers)):
            identity(text)
        uris = [identity(a.uri) for a in self.aliases]
        if len(set(uris)) != len(uris):  # RFC 3261 19.1.4: two spellings are one FA
            raise ValueError("functional alias configured twice")


# --------------------------------------------------------------------------- events, actions


@dataclass(frozen=True, slots=True)
class Publish:
    """A PUBLISH for the controlling function of an FA (9A.2.2.3.3).  For an RFC 3903 removal
    without body, pass the body of the publication being removed."""

    expires: int | None
    content_type: str | None
    body: bytes
    asserted_identity: str | None
    """P-Asserted-Identity: the user itself, or a trusted serving server's PSI."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    """An initial SUBSCRIBE, Event: presence (9A.2.2.3.4, 9A.2.2.3.7, 9A.2.2.2.4)."""

    subscription: SubscriptionId
    expires: int | None
    content_type: str | None
    body: bytes
    asserted_identity: str | None
    accept: tuple[str, ...] | None = None
    """Accept header media types; None when absent (pidf assumed, RFC 3856 6.7)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The final response owed to the request being handled."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    warning: str | None = None
    """Text for ``Warning: 399 <host> "<text>"`` (24.379 4.4 habit), naming why."""


class TerminationReason(StrEnum):
    """RFC 6665 4.1.3 Subscription-State reasons this server uses."""

    TIMEOUT = "timeout"  # one-time fetch (Expires 0) or unsubscribe
    NORESOURCE = "noresource"


@dataclass(frozen=True, slots=True)
class NotifySubscriber:
    """A NOTIFY to send in ``subscription`` with a pidf body (9A.2.2.3.5 / .8)."""

    subscription: SubscriptionId
    body: bytes
    content_type: str = CT_PIDF
    terminated: TerminationReason | None = None
    """None: Subscription-State active; else terminated with this reason."""


@dataclass(frozen=True, slots=True)
class HoldersChanged:
    """The holder list of an FA changed: what the ACMS core consumes (fa -> holder IDs)."""

    holders: FaHolders


@dataclass(frozen=True, slots=True)
class Revoked:
    """``user`` lost ``fa`` to a take-over by ``by`` (23.280 10.13.6 revoke notification)."""

    fa: str
    user: str
    by: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """The request was answered 200 but changed nothing (9A.2.2.3.3 steps 8-9); for the log."""

    reason: str


FaServerAction = Answer | NotifySubscriber | HoldersChanged | Revoked | Ignored


@dataclass(frozen=True, slots=True)
class Holder:
    """A user information entry of an FA (9A.2.2.3.2)."""

    user: str
    activated_at: float
    expires_at: float


class _Kind(StrEnum):
    RESOLUTION = "resolution"  # 9A.2.2.3.7: who holds the FA
    STATUS = "status"  # 9A.2.2.3.4: does the handled user hold the FA
    USER = "user"  # 9A.2.2.2.4: which FAs does the user hold


@dataclass(slots=True)
class _Sub:
    kind: _Kind
    target: str  # the FA (resolution, status: as configured) or the user (per-user)
    key: Uri  # ``target`` as compared (RFC 3261 19.1.4)
    user: str | None = None  # the handled MCPTT ID of a status subscription
    user_key: Uri | None = None


@dataclass(frozen=True, slots=True)
class _Fa:
    """One FA as the server compares its identities: every ID a :class:`Uri`, mapped to the
    configured spelling (the one reported in holder lists and notifications)."""

    cfg: FaConfig
    user_ids: Mapping[Uri, str]
    subscriber_ids: frozenset[Uri]

    @classmethod
    def of(cls, cfg: FaConfig) -> _Fa:
        return cls(cfg, {identity(u): u for u in sorted(cfg.users)},
                   frozenset(identity(s) for s in cfg.subscribers))


def _answer(
    status: int, warning: str | None = None, headers: Sequence[tuple[str, str]] = ()
) -> Answer:
    return Answer(status, _REASONS[status], tuple(headers), warning)


def _interval_too_brief(expires: int | None) -> bool:
    # 9A.2.2.3.3 step 3 / 9A.2.2.3.4 step 3 / 9A.2.2.3.7 step 2: missing, or nonzero below 2^32-1
    return expires is None or expires not in (0, EXPIRES_UNTIL_WITHDRAWN)


_TOO_BRIEF = _answer(
    423, "Expires must be 4294967295 or 0", [("Min-Expires", str(EXPIRES_UNTIL_WITHDRAWN))]
)


# --------------------------------------------------------------------------- the server


class FaServer:
    """The FA controlling server core.  Not thread-safe; one instance per server process."""

    def __init__(
        self, config: FaServerConfig, initial: Mapping[str, Iterable[Holder]] | None = None
    ) -> None:
        self.config = config
        # every identity is compared as a Uri (RFC 3261 19.1.4): an FA, a holder, a publisher
        # or a subscriber in any spelling is the configured one
        self._fa: dict[Uri, _Fa] = {identity(a.uri): _Fa.of(a) for a in config.aliases}
        self._trusted = frozenset(identity(t) for t in config.trusted)
        # insertion order = activation order: the ACMS "first" policy relies on it
        self._holders: dict[Uri, dict[Uri, Holder]] = {fa: {} for fa in self._fa}
        for text, holders in (initial or {}).items():
            fa = try_identity(text)
            if fa is not None and fa in self._holders:
                self._holders[fa] = {key: h for h in holders
                                     if (key := try_identity(h.user)) is not None}
        self._subs: dict[SubscriptionId, _Sub] = {}

    # ------------------------------------------------------------------ queries

    def holders(self, fa: str) -> tuple[str, ...]:
        """MCPTT IDs holding ``fa`` (any spelling), oldest activation first (empty for an
        unknown FA)."""
        return tuple(h.user for h in self.records(fa))

    def aliases_of(self, user: str) -> tuple[str, ...]:
        """The FAs ``user`` holds, in configuration order ("per user" determination)."""
        key = try_identity(user)
        return tuple(self._fa[fa].cfg.uri for fa, hs in self._holders.items() if key in hs)

    def records(self, fa: str) -> tuple[Holder, ...]:
        """The holder records of ``fa``, oldest activation first: what a store saves."""
        key = try_identity(fa)
        return tuple(self._holders[key].values()) if key in self._holders else ()

    def state(self) -> dict[str, tuple[Holder, ...]]:
        """Every FA's holder records, for persistence (feed back as ``initial``)."""
        return {self._fa[fa].cfg.uri: tuple(hs.values()) for fa, hs in self._holders.items()}

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` next has something to do."""
        return min(
            (h.expires_at for hs in self._holders.values() for h in hs.values()), default=None
        )

    # ------------------------------------------------------------------ PUBLISH

    def publish(self, ev: Publish, now: float) -> list[FaServerAction]:
        """Receiving functional alias status change (9A.2.2.3.3); the first action is the Answer."""
        try:
            bodies = decode_bodies(ev.content_type, ev.body)
        except AcmError as exc:
            return [_answer(exc.sip_status, exc.warning_text)]
        info, doc = bodies.info, bodies.presence
        # conditions 2 and 5: mcptt-info with request-uri and calling-user-id, and a pidf body
        if info is None or info.request_uri is None or info.calling_user_id is None:
            return [
                _answer(400, "mcptt-info with mcptt-request-uri and mcptt-calling-user-id required")
            ]
        if doc is None:
            return [_answer(400, "application/pidf+xml body required")]
        fa, user = info.request_uri, info.calling_user_id  # steps 1-2
        if _interval_too_brief(ev.expires):  # step 3
            return [_TOO_BRIEF]
        if not self._may_act_for(ev.asserted_identity, user):
            # 24.379 trusts its IMS domain here; we check who speaks (docs/decisions.md)
            return [_answer(403, f"{ev.asserted_identity} may not publish for {user}")]
        fa_key, user_key = try_identity(fa), identity(user)  # _may_act_for parsed the user
        known = self._fa.get(fa_key) if fa_key is not None else None
        if known is None or fa_key is None:  # step 4
            return [_answer(403, f"functional alias {fa} does not exist")]
        cfg = known.cfg
        activate = ev.expires != 0
        holders = self._holders[fa_key]
        take_over = doc.take_over and user_key not in holders
        revoke: Uri | None = None
        if activate:
            if user_key not in known.user_ids:  # step 4a
                return [_answer(403, f"{user} is not in the user list of {fa}")]
            full = (
                cfg.max_simultaneous_activations is not None
                and len(holders) >= cfg.max_simultaneous_activations
            )
            if take_over:
                if not cfg.allow_takeover:  # step 6
                    return [_answer(403, f"take-over of {fa} not allowed")]
                if full:  # 23.280 10.13.6: the longest-standing holder is replaced
                    revoke = next(iter(holders))
            elif full and user_key not in holders:  # step 5
                return self._refuse_full(cfg, user_key, doc.p_id_fa)
        answer = _answer(200, headers=[("Expires", str(ev.expires))])  # step 7
        # steps 8-9: a body about someone else changes nothing; the tuple id is the FA per
        # 9A.3.1.2 or the handled MCPTT ID per step 9 -- both are accepted (docs/decisions.md)
        if not same_identity(doc.entity, fa):
            return [
                answer,
                Ignored(f"pidf entity {doc.entity} is not {fa} (24.379 9A.2.2.3.3 step 8)"),
            ]
        if not (same_identity(doc.tuple_id, fa) or same_identity(doc.tuple_id, user)):
            return [answer, Ignored(f"tuple id {doc.tuple_id} is neither {fa} nor {user} (step 9)")]
        before = tuple(holders)
        actions: list[FaServerAction] = [answer]
        # holder lists name users as configured (step 4a admitted only configured users)
        name = known.user_ids.get(user_key, user)
        if revoke is not None:
            actions.append(Revoked(cfg.uri, holders.pop(revoke).user, name))
        if activate:  # step 12: insert the user information entry, or refresh it in place
            old = holders.get(user_key)
            holders[user_key] = Holder(
                name, old.activated_at if old else now, now + EXPIRES_UNTIL_WITHDRAWN
            )
        else:  # step 11
            holders.pop(user_key, None)
        changed_users = {u for u in (revoke, user_key) if u is not None}
        actions += self._after_change(fa_key, before, changed_users, doc.p_id_fa, now)  # 13-14
        return actions

    def _refuse_full(self, cfg: FaConfig, user: Uri, p_id_fa: str | None) -> list[FaServerAction]:
        # step 5; stage 2 10.13.4 step 3: an authorised user is offered take-over
        if not cfg.allow_takeover:
            return [_answer(403, f"max-simultaneous-activations of {cfg.uri} reached")]
        fa = identity(cfg.uri)
        entry = FunctionalAliasEntry(user=self._fa[fa].user_ids.get(user, str(user)),
                                     status=FaStatus.TAKE_OVER_POSSIBLE)
        body = encode_presence(FaPresence.per_fa(cfg.uri, [entry], p_id_fa))
        notes: list[FaServerAction] = [
            NotifySubscriber(sid, body)
            for sid, sub in self._subs.items()
            if sub.kind is _Kind.STATUS and sub.key == fa and sub.user_key == user
        ]
        return [
            _answer(403, f"max-simultaneous-activations of {cfg.uri} reached; take-over-possible"),
            *notes,
        ]

    def deactivate(self, fa: str, user: str, now: float) -> list[FaServerAction]:
        """Automatic or administrative deactivation (9A.2.2.3.6): remove ``user`` from ``fa``."""
        fa_key, user_key = try_identity(fa), try_identity(user)
        holders = self._holders.get(fa_key) if fa_key is not None else None
        if fa_key is None or holders is None or user_key is None or user_key not in holders:
            return []
        return self._remove(fa_key, user_key, now)

    def _remove(self, fa: Uri, user: Uri, now: float) -> list[FaServerAction]:
        holders = self._holders[fa]
        before = tuple(holders)
        del holders[user]
        return self._after_change(fa, before, {user}, None, now)

    def handle_timer(self, now: float) -> list[FaServerAction]:
        """Deactivate every holder whose expiration time has passed (9A.2.2.3.6 item 2)."""
        actions: list[FaServerAction] = []
        for fa, holders in self._holders.items():
            for user in [u for u, h in holders.items() if h.expires_at <= now]:
                actions += self._remove(fa, user, now)
        return actions

    def _after_change(
        self, fa: Uri, before: tuple[Uri, ...], users: set[Uri], p_id_fa: str | None, now: float
    ) -> list[FaServerAction]:
        actions: list[FaServerAction] = []
        uri = self._fa[fa].cfg.uri
        changed = before != tuple(self._holders[fa])
        if changed:
            holders = tuple(h.user for h in self._holders[fa].values())
            actions.append(HoldersChanged(FaHolders(uri, holders)))
        for sid, sub in self._subs.items():
            if sub.kind is _Kind.STATUS and sub.key == fa:
                # 9A.2.2.3.5: every accepted PUBLISH is reported to the status watchers, with
                # the p-id-fa so that the publisher can match it
                actions.append(NotifySubscriber(sid, self._status_body(fa, sub.user_key, p_id_fa)))
            elif changed and sub.kind is _Kind.RESOLUTION and sub.key == fa:
                # 23.280 10.13.10: notifications whenever the list changes
                actions.append(NotifySubscriber(sid, self._resolution_body(fa)))
            elif changed and sub.kind is _Kind.USER and sub.key in users:
                actions.append(NotifySubscriber(sid, self._user_body(sub.target, sub.key)))
        return actions

    # ------------------------------------------------------------------ SUBSCRIBE

    def subscribe(self, ev: Subscribe, now: float) -> list[FaServerAction]:
        """An initial SUBSCRIBE: Answer, then the first NOTIFY (RFC 6665 4.2.1.2); with Expires 0
        that NOTIFY terminates the subscription (one-time fetch)."""
        try:
            bodies = decode_bodies(ev.content_type, ev.body)
        except AcmError as exc:
            return [_answer(exc.sip_status, exc.warning_text)]
        if ev.accept is not None and not any(
            a.split(";")[0].strip().lower() in (CT_PIDF, "application/*", "*/*") for a in ev.accept
        ):
            return [_answer(406, f"only {CT_PIDF} notifications")]  # RFC 6665 8.3.1
        info = bodies.info
        if info is None or info.request_uri is None:
            return [_answer(400, "mcptt-info with mcptt-request-uri required")]
        if _interval_too_brief(ev.expires):
            return [_TOO_BRIEF]
        sub, refusal = self._classify(bodies, ev.asserted_identity)
        if sub is None:
            return [refusal or _answer(403)]
        terminated = TerminationReason.TIMEOUT if ev.expires == 0 else None
        if terminated is None:
            self._subs[ev.subscription] = sub
        return [
            _answer(200, headers=[("Expires", str(ev.expires))]),
            NotifySubscriber(ev.subscription, self._body_for(sub), terminated=terminated),
        ]

    def _classify(self, bodies: FaBodies, who: str | None) -> tuple[_Sub | None, Answer | None]:
        info = bodies.info
        assert info is not None and info.request_uri is not None
        target, calling = info.request_uri, info.calling_user_id
        key = try_identity(target)
        known = self._fa.get(key) if key is not None else None
        if known is None or key is None:
            if info.request_type == REQUEST_TYPE_FA_STATUS:
                # 9A.2.2.2.4 step 4: only the user itself or an authorised (trusted) party
                if not self._may_act_for(who, target):
                    return None, _answer(403, f"{who} may not learn the FAs of {target}")
                return _Sub(_Kind.USER, target, identity(target)), None
            # 9A.2.2.3.4 step 4 / 9A.2.2.3.7 step 3
            return None, _answer(403, f"functional alias {target} does not exist")
        cfg = known.cfg
        # the filter tells the two FA procedures apart: tuple id = FA (resolution, 9A.2.2.2.8
        # step 7) or = the calling MCPTT ID (status, 9A.2.2.3.4 condition 5)
        wanted = bodies.filter.tuple_id if bodies.filter else (calling or target)
        allowed = self._trusted | known.subscriber_ids
        if same_identity(wanted, target):
            # resolution authorisation: docs/decisions.md
            if (w := try_identity(who)) is None or w not in allowed:
                return None, _answer(403, f"{who} may not resolve {target}")
            return _Sub(_Kind.RESOLUTION, cfg.uri, key), None
        calling_key = try_identity(calling)
        if calling is None or calling_key is None or not same_identity(wanted, calling):
            return None, _answer(
                400, "simple-filter selects neither the FA nor mcptt-calling-user-id"
            )
        # 9A.2.2.3.4 step 5 (local policy): the FA's users and subscribers, on their own behalf
        if (calling_key not in known.user_ids and calling_key not in allowed) \
                or not self._may_act_for(who, calling):
            return None, _answer(403, f"{calling} not authorised for notifications of {target}")
        return _Sub(_Kind.STATUS, cfg.uri, key, calling, calling_key), None

    def refresh(
        self, subscription: SubscriptionId, expires: int | None, now: float
    ) -> list[FaServerAction]:
        """An in-dialog SUBSCRIBE: re-subscribe (4294967295) or de-subscribe (0) (9A.2.1.3)."""
        sub = self._subs.get(subscription)
        if sub is None:
            return [_answer(481, "no such subscription")]
        if _interval_too_brief(expires):
            return [_TOO_BRIEF]
        terminated = None
        if expires == 0:
            del self._subs[subscription]
            terminated = TerminationReason.TIMEOUT
        return [
            _answer(200, headers=[("Expires", str(expires))]),
            NotifySubscriber(subscription, self._body_for(sub), terminated=terminated),
        ]

    def drop(self, subscription: SubscriptionId) -> None:
        """Forget a subscription whose dialog ended (NOTIFY answered 481, timeout, ...)."""
        self._subs.pop(subscription, None)

    def subscriptions(self) -> tuple[SubscriptionId, ...]:
        return tuple(self._subs)

    # ------------------------------------------------------------------ bodies

    def _may_act_for(self, who: str | None, user: str) -> bool:
        """Whether ``who`` (P-Asserted-Identity) speaks for ``user``: itself or a trusted
        server, by RFC 3261 19.1.4; a ``user`` that is no URI is nobody's."""
        w, u = try_identity(who), try_identity(user)
        return w is not None and u is not None and (w == u or w in self._trusted)

    def _entry(self, fa: str, h: Holder, per_user: bool) -> FunctionalAliasEntry:
        expires = datetime.fromtimestamp(min(h.expires_at, 253402300799.0), UTC)  # year 9999 cap
        return FunctionalAliasEntry(
            functional_alias=fa if per_user else None,
            user=None if per_user else h.user,
            status=FaStatus.ACTIVATED,
            expires=expires,  # 9A.2.2.3.5 step 3a
        )

    def _resolution_body(self, fa: Uri) -> bytes:
        # 9A.2.2.3.8 step 3: per-FA information listing every holder
        uri = self._fa[fa].cfg.uri
        return encode_presence(
            FaPresence.per_fa(uri, [self._entry(uri, h, False)
                                    for h in self._holders[fa].values()])
        )

    def _status_body(self, fa: Uri, user: Uri | None, p_id_fa: str | None) -> bytes:
        # 9A.2.2.3.5 steps 2-3: only the handled user's entry, with the handled p-id-fa
        uri = self._fa[fa].cfg.uri
        h = self._holders[fa].get(user) if user is not None else None
        entries = [self._entry(uri, h, False)] if h else []
        return encode_presence(FaPresence.per_fa(uri, entries, p_id_fa))

    def _user_body(self, user: str, key: Uri) -> bytes:
        entries = [
            self._entry(self._fa[fa].cfg.uri, hs[key], True)
            for fa, hs in self._holders.items() if key in hs
        ]
        return encode_presence(FaPresence.per_user(user, entries))

    def _body_for(self, sub: _Sub) -> bytes:
        if sub.kind is _Kind.RESOLUTION:
            return self._resolution_body(sub.key)
        if sub.kind is _Kind.STATUS:
            return self._status_body(sub.key, sub.user_key, None)
        return self._user_body(sub.target, sub.key)


def holders_changed(actions: Sequence[FaServerAction]) -> list[FaHolders]:
    """The holder lists among ``actions``, for an in-process ACMS."""
    return [a.holders for a in actions if isinstance(a, HoldersChanged)]


__all__ = [
    "Answer",
    "FaConfig",
    "FaServer",
    "FaServerAction",
    "FaServerConfig",
    "Holder",
    "HoldersChanged",
    "Ignored",
    "NotifySubscriber",
    "Publish",
    "Revoked",
    "Subscribe",
    "SubscriptionId",
    "TerminationReason",
    "holders_changed",
]
