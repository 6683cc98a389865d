"""Durable records of an ACMS and the transaction state machine as data (h11 style).

Every record is a frozen value with a ``key``; the core changes state only by replacing a record,
and each replacement becomes a :class:`~mcacm_sip.core.events.Put` for the store.  The transition
table :data:`TRANSITIONS` is the single source of truth for what may follow what; the table in
``docs/procedures.md`` is generated from it (:func:`transitions_markdown`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import lru_cache
from typing import Any, ClassVar

from mcacm_sip.acm.model import (
    ANSWER_FOR,
    AcmFlow,
    AcmRequest,
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    GroupMembershipUpdateRequest,
    GroupMembershipUpdateResponse,
    InterconnectionGroupProvisionRequest,
    InterconnectionGroupProvisionResponse,
    Party,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    RemoveUserConfigurationResponse,
    Result,
    UserProfile,
    trusted,
)
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.identity import id_key, procedure_id
from mcacm_sip.frozen import builder, draft_of


class Role(StrEnum):
    """The part an ACMS plays in one transaction (23.280 10.17.1)."""

    PRIMARY = "primary"
    """The request came from one of our own ACMCs; we forward it to a partner ACMS."""
    PARTNER = "partner"
    """The request came from a peer (primary) ACMS; we decide it, by policy or by an ACMC."""


class TxState(StrEnum):
    """States of a transaction at one ACMS.  ``new`` is never stored."""

    NEW = "new"
    # primary role
    FORWARDING = "forwarding"
    FORWARDED = "forwarded"
    INDICATED = "indicated"
    ANSWERED = "answered"
    # partner role
    RECEIVED = "received"
    WITH_ACMC = "with-acmc"
    RESPONDING = "responding"
    # both roles: the flow to hand to an ACMC (partner: the request; primary: the response)
    DELIVERING = "delivering"
    PENDING_USER = "pending-user"
    PENDING_FA = "pending-fa"
    DONE = "done"


class Trigger(StrEnum):
    """What moves a transaction."""

    REQUEST = "request"
    PEER_ACCEPTED = "peer-2xx"
    SEND_FAILED = "send-failed"
    PEER_REFUSED = "peer-refused"
    LOCAL_ERROR = "local-error"
    INDICATION = "indication"
    RESPONSE = "response"
    REFUSED = "verify-failed"
    AUTO = "policy-auto"
    ROUTE_ACMC = "route-acmc"
    ROUTE_PENDING = "route-pending"
    ROUTE_FA = "route-fa-inactive"
    DELIVERED = "delivered"
    DELIVERY_FAILED = "delivery-failed"
    DECISION = "decision"
    DOWNLOADED = "downloaded"
    REASSIGN = "reassign"
    EXPIRED = "expired"
    GAVE_UP = "gave-up"


OPEN_PRIMARY = (TxState.FORWARDING, TxState.FORWARDED, TxState.INDICATED)
"""Primary states that wait for the partner's answer (the answer timer runs)."""
AWAITING_DECISION = (
    TxState.DELIVERING, TxState.WITH_ACMC, TxState.PENDING_USER, TxState.PENDING_FA,
)
"""Partner states that wait for a decision (the decision timer runs)."""
_HOLDING = (TxState.DELIVERING, TxState.PENDING_USER, TxState.PENDING_FA)
"""Primary states that hold a response for the primary ACMC."""

_P, _R = Role.PRIMARY, Role.PARTNER
_S, _T = TxState, Trigger

_ROWS: tuple[tuple[Role, tuple[TxState, ...], Trigger, TxState, str], ...] = (
    # ---------------------------------------------------------------- primary ACMS
    (_P, (_S.NEW,), _T.REQUEST, _S.FORWARDING,
     "10.17.7.2 steps 1-3 (10.17.4.2.2 steps 1-3 alike): authorised (step 2), stored, "
     "forwarded to the partner ACMS"),
    (_P, (_S.FORWARDING,), _T.PEER_ACCEPTED, _S.FORWARDED,
     "SIP 2xx from the partner ACMS: transport acknowledgement only (decision)"),
    (_P, (_S.FORWARDING,), _T.SEND_FAILED, _S.FORWARDING,
     "peer unreachable: retry with back-off until the answer timer (decision)"),
    (_P, (_S.FORWARDING, _S.FORWARDED), _T.INDICATION, _S.INDICATED,
     "10.17.7.2 step 4: process indication from the partner ACMS"),
    (_P, OPEN_PRIMARY, _T.RESPONSE, _S.ANSWERED,
     "10.17.7.2 steps 8-9: response received and stored"),
    (_P, OPEN_PRIMARY, _T.EXPIRED, _S.ANSWERED,
     "answer timer: Result expired stands in for the response (decision)"),
    (_P, (_S.FORWARDING,), _T.PEER_REFUSED, _S.ANSWERED,
     "partner refused for good (SIP 4xx/6xx, RFC 3261 21.4/21.6): Result not-authorised / "
     "x-peer-refused stands in for the response (decision)"),
    (_P, (_S.FORWARDING,), _T.LOCAL_ERROR, _S.ANSWERED,
     "our own forward cannot be encoded (a local error, never sent, not retried): Result "
     "x-local-error stands in for the response (decision)"),
    (_P, (_S.ANSWERED, _S.PENDING_FA), _T.ROUTE_ACMC, _S.DELIVERING,
     "10.17.7.2 step 10: the requesting ACMC's user is logged on: the response goes to the "
     "user who sent the request, never to a name taken from the response (decision; "
     "`pending-fa`: rows stored before that rule)"),
    (_P, (_S.ANSWERED, _S.PENDING_FA), _T.ROUTE_PENDING, _S.PENDING_USER,
     "10.17.7.2 step 9: the requesting ACMC's user is not logged on -> 10.17.3.1 pending"),
    (_P, (_S.DELIVERING,), _T.DELIVERED, _S.DONE,
     "10.17.7.2 step 10: the primary ACMC acknowledged the response"),
    (_P, (_S.DELIVERING,), _T.DELIVERY_FAILED, _S.PENDING_USER,
     "10.17.3.1: direct delivery failed -> pending for the user"),
    (_P, (_S.PENDING_USER,), _T.DOWNLOADED, _S.DONE,
     "10.17.3.1: the download response carrying it was acknowledged"),
    (_P, _HOLDING, _T.EXPIRED, _S.DONE,
     "pending-response lifetime over: dropped (decision)"),
    # ---------------------------------------------------------------- partner ACMS
    (_R, (_S.NEW,), _T.REQUEST, _S.RECEIVED,
     "10.17.7.2 step 4: stored, process indication sent to the primary ACMS"),
    (_R, (_S.RECEIVED,), _T.REFUSED, _S.RESPONDING,
     "10.17.7.2 step 4 verify: not-authorised / unknown-user / not-migrated, then step 8"),
    (_R, (_S.RECEIVED,), _T.AUTO, _S.RESPONDING,
     "10.17.7.2 step 4: automatic handling by local policy (10.17.3.2), then step 8"),
    (_R, (_S.RECEIVED, _S.PENDING_FA), _T.ROUTE_ACMC, _S.DELIVERING,
     "10.17.7.2 steps 4-5: ACMC logged on (by MC service ID or the FA holder)"),
    (_R, (_S.RECEIVED, _S.PENDING_FA), _T.ROUTE_PENDING, _S.PENDING_USER,
     "10.17.7.2 step 4: user not logged on -> 10.17.3.1 pending"),
    (_R, (_S.RECEIVED,), _T.ROUTE_FA, _S.PENDING_FA,
     "10.17.7.2 step 4: functional alias not currently active -> stored"),
    (_R, (_S.DELIVERING,), _T.DELIVERED, _S.WITH_ACMC,
     "10.17.7.2 step 5: the partner ACMC acknowledged the request"),
    (_R, (_S.DELIVERING,), _T.DELIVERY_FAILED, _S.PENDING_USER,
     "10.17.3.1: direct delivery failed -> pending for the user"),
    (_R, (_S.PENDING_USER, _S.WITH_ACMC), _T.REASSIGN, _S.DELIVERING,
     "10.17.7.2 step 4: the FA holder it went to is offline and another holder that may "
     "decide logged on: delivered to them, the right to decide moves with it (decision)"),
    (_R, AWAITING_DECISION, _T.DECISION, _S.RESPONDING,
     "10.17.7.2 steps 6-8: the partner ACMC's response, sent to the primary ACMS"),
    (_R, AWAITING_DECISION, _T.EXPIRED, _S.RESPONDING,
     "decision timer: Result expired sent to the primary ACMS (decision)"),
    (_R, (_S.RESPONDING,), _T.SEND_FAILED, _S.RESPONDING,
     "primary ACMS unreachable: retry with back-off (decision)"),
    (_R, (_S.RESPONDING,), _T.PEER_ACCEPTED, _S.DONE,
     "10.17.7.2 step 8: the primary ACMS acknowledged the response"),
    (_R, (_S.RESPONDING,), _T.PEER_REFUSED, _S.DONE,
     "the primary ACMS refused the response for good (SIP 4xx/6xx): not retried (decision)"),
    (_R, (_S.RESPONDING,), _T.LOCAL_ERROR, _S.DONE,
     "our own response cannot be encoded (a local error, never sent): not retried; the "
     "primary's answer timer gives its ACMC Result expired (decision)"),
    (_R, (_S.RESPONDING,), _T.GAVE_UP, _S.DONE,
     "retry limit reached: the primary ACMS expires the transaction itself (decision)"),
)

TRANSITIONS: dict[tuple[Role, TxState, Trigger], tuple[TxState, str]] = {
    (role, src, trigger): (dst, clause)
    for role, sources, trigger, dst, clause in _ROWS
    for src in sources
}
"""(role, state, trigger) -> (next state, clause).  Anything else is a bug."""


class IllegalTransition(RuntimeError):
    """The core tried a move the table does not allow (a programming error, never input)."""


def transition(role: Role, state: TxState, trigger: Trigger) -> tuple[TxState, str]:
    """The state after ``trigger`` and the clause that says so; raises
    :class:`IllegalTransition` if the table forbids it."""
    try:
        return TRANSITIONS[(role, state, trigger)]
    except KeyError:
        raise IllegalTransition(f"{role}: {trigger} not allowed in {state}") from None


def allows(role: Role, state: TxState, trigger: Trigger) -> bool:
    """Whether the table lets ``trigger`` move a transaction of ``role`` in ``state``: the one
    state guard of the core (h11's rule: every state check is a question to this table)."""
    return (role, state, trigger) in TRANSITIONS


def transitions_markdown() -> str:
    """The transition table as Markdown, one table per role (used by docs/procedures.md)."""
    lines: list[str] = []
    for role in Role:
        lines += [f"### {role.capitalize()} role", "",
                  "| From | Trigger | To | Clause / reason |", "|---|---|---|---|"]
        for r, sources, trigger, dst, clause in _ROWS:
            if r is role:
                src = ", ".join(f"`{s}`" for s in sources)
                lines.append(f"| {src} | `{trigger}` | `{dst}` | {clause} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- records


@lru_cache(maxsize=1024)
def party(mc_service_id: str, functional_alias: str | None = None) -> Party:
    """The :class:`Party` of an identity this ACMS answers as (a frozen value: one per
    identity serves every flow, its checks run once)."""
    return Party(mc_service_id, functional_alias)


@lru_cache(maxsize=256)
def result_of(code: str, text: str | None = None) -> Result:
    """The :class:`Result` of a fixed outcome (a policy rule's, a timer's): a frozen value,
    one per code and text, its checks run once.  Texts naming a request are built per
    request with ``Result`` itself."""
    return Result(code, text)


@lru_cache(maxsize=4096)
def _addressee(mc_service_id: str | None, functional_alias: str | None) -> Addressee:
    return Addressee(mc_service_id, functional_alias)


def response_to(request: AcmRequest, handler: Party, result: Result) -> AcmResponse:
    """The response flow answering ``request`` (10.17.2.16 and the 10.17.5 responses): the
    target is the requesting primary user (and its FA); per-user lists are the partner ACMS's.

    Built by :func:`~mcacm_sip.acm.model.trusted`: every field is a checked value (the
    request's fields passed the same checks when it was decoded or built, the handler, the
    target and the result are checked values) and the response's own rules follow from the
    request's (a requester's MC service ID is mandatory, so the target's is present; the
    users and groups passed the same list check), so the checks would pass again
    (tests/core/test_trusted_flows.py: equal to the checking constructor)."""
    target = _addressee(request.requester.mc_service_id, request.requester.functional_alias)
    tid = request.transaction_id
    if isinstance(request, ProfileUpdateRequest):
        return trusted(ProfileUpdateResponse, tid, handler, target, request.migrated_user_id,
                       result)
    if isinstance(request, AddUserConfigurationRequest):
        return trusted(AddUserConfigurationResponse, tid, handler, target, result)
    if isinstance(request, GroupMembershipUpdateRequest):  # 10.17.4: echoes what it answers
        return trusted(GroupMembershipUpdateResponse, tid, handler, target, request.group_id,
                       request.operation, request.users, result)
    if isinstance(request, InterconnectionGroupProvisionRequest):  # 10.17.4.2.2
        return trusted(InterconnectionGroupProvisionResponse, tid, handler, target,
                       request.groups, result)
    return trusted(RemoveUserConfigurationResponse, tid, handler, target, result)


def answers(response: AcmFlow, request: AcmRequest) -> bool:
    """Whether ``response`` is the kind of response flow that answers ``request``."""
    return isinstance(response, ANSWER_FOR[type(request)])


def tx_key(role: Role, origin: str, transaction_id: str) -> str:
    """A transaction is its origin plus its id (docs/decisions.md "Identity and authority"):
    primary role, the requesting ACMC's user; partner role, the origin ACMS's PSI; the origin
    in its canonical spelling.  Identities and ids contain no spaces."""
    return f"{role} {id_key(origin)} {transaction_id}"


@dataclass(frozen=True, slots=True)
class Transaction:
    """One ACM transaction as seen by this ACMS."""

    KIND: ClassVar[str] = "transaction"

    role: Role
    transaction_id: str
    peer: str
    """PSI of the other ACMS (primary role: the partner; partner role: the origin)."""
    request: AcmRequest
    state: TxState
    created: float
    deadline: float
    """When the timer of the current state fires: answer/decision expiry while open, retry limit
    while responding, end of pending-response life while holding, pruning time once done."""
    indication: ProcessIndication | None = None
    response: AcmResponse | None = None
    assignee: str | None = None
    """MC service ID or FA the request (partner) / response (primary) was routed to.  Partner
    role: only this party may decide the request (docs/decisions.md)."""
    leg_id: str = ""
    """The id on the transaction's other leg: primary role, the id the request was forwarded
    under (the partner ACMS answers with it); partner role, the id the request was delivered to
    our ACMC under (its decision carries it).  The origin's own id unless another transaction
    of the role uses that on the leg; "" (rows stored before leg ids): the origin's id."""

    @property
    def origin(self) -> str:
        """Who chose ``transaction_id``: the requesting user (primary), the peer (partner)."""
        return self.request.requester.mc_service_id if self.role is _P else self.peer

    @property
    def leg(self) -> str:
        return self.leg_id or self.transaction_id

    def allows(self, trigger: Trigger) -> bool:
        """Whether the transition table lets ``trigger`` move this transaction now."""
        return (self.role, self.state, trigger) in TRANSITIONS  # (allows(), without its call)

    def after(self, trigger: Trigger) -> TxState:
        """The state ``trigger`` moves this transaction to (the table's row; raises
        :class:`IllegalTransition` if there is none)."""
        return transition(self.role, self.state, trigger)[0]

    key: str = field(init=False, repr=False, compare=False)
    """``tx_key`` of the transaction, computed once per record (a step asks for it often)."""
    procedure: str = field(init=False, repr=False, compare=False)
    """Its ``X-CID`` value (:func:`~mcacm_sip.core.identity.procedure_id`): the requester and
    the origin's id, the same at the primary and the partner (docs/decisions.md "Scale-out:
    the procedure header"); computed once per transaction, each send of it carries it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", tx_key(self.role, self.origin, self.transaction_id))
        object.__setattr__(self, "procedure", procedure_id(
            self.request.requester.mc_service_id, self.transaction_id))

    def evolve(self, **changes: Any) -> Transaction:
        """``dataclasses.replace(self, **changes)`` for the procedure's steps, at a fraction
        of its cost: the fields are copied as they are (each was checked when first set) and
        the key and procedure are recomputed only if a field they depend on changes."""
        if not changes.keys() <= _TX_FIELDS:
            unknown = changes.keys() - _TX_FIELDS
            raise TypeError(f"Transaction has no field {', '.join(sorted(unknown))}")
        new = _new(Transaction)
        _set(new, "role", self.role)
        _set(new, "transaction_id", self.transaction_id)
        _set(new, "peer", self.peer)
        _set(new, "request", self.request)
        _set(new, "state", self.state)
        _set(new, "created", self.created)
        _set(new, "deadline", self.deadline)
        _set(new, "indication", self.indication)
        _set(new, "response", self.response)
        _set(new, "assignee", self.assignee)
        _set(new, "leg_id", self.leg_id)
        for name, value in changes.items():
            _set(new, name, value)
        if _TX_KEY_FIELDS.isdisjoint(changes):
            _set(new, "key", self.key)
            _set(new, "procedure", self.procedure)
        else:
            new.__post_init__()
        return new

    def moved(self, state: TxState, deadline: float | None = None,
              indication: ProcessIndication | None = None,
              response: AcmResponse | None = None, assignee: str | None = None) -> Transaction:
        """This transaction after one step of its procedure: in ``state``, with each of the
        fields a step sets that is given (None: kept -- no step clears one).  What a step
        never changes (origin, id, request, creation, leg id) is carried over as the same
        objects, and so are the key and the procedure computed from it (no field they depend
        on can be given); the same record as :meth:`evolve` and ``dataclasses.replace`` give
        (tests/core/test_transaction_evolve.py)."""
        new = _new(_TxDraft)
        new.role = self.role
        new.transaction_id = self.transaction_id
        new.peer = self.peer
        new.request = self.request
        new.state = state
        new.created = self.created
        new.deadline = self.deadline if deadline is None else deadline
        new.indication = self.indication if indication is None else indication
        new.response = self.response if response is None else response
        new.assignee = self.assignee if assignee is None else assignee
        new.leg_id = self.leg_id
        new.key = self.key
        new.procedure = self.procedure
        new.__class__ = Transaction  # frozen from here (mcacm_sip/frozen.py)
        moved: Transaction = new
        return moved


_TxDraft: Any = draft_of(Transaction)


def new_transaction(role: Role, transaction_id: str, peer: str, request: AcmRequest,
                    state: TxState, created: float, deadline: float,
                    indication: ProcessIndication | None = None, leg_id: str = "",
                    key: str | None = None) -> Transaction:
    """``Transaction(...)`` of a new transaction (no response, no assignee yet), built as
    :meth:`Transaction.moved` builds a step's record: the same record, key and procedure
    (tests/core/test_frozen_builders.py).  ``key``: its :func:`tx_key`, when the caller has
    it already (computed here otherwise)."""
    new = _new(_TxDraft)
    new.role = role
    new.transaction_id = transaction_id
    new.peer = peer
    new.request = request
    new.state = state
    new.created = created
    new.deadline = deadline
    new.indication = indication
    new.response = None
    new.assignee = None
    new.leg_id = leg_id
    new.key = key if key is not None else tx_key(
        role, request.requester.mc_service_id if role is _P else peer, transaction_id)
    new.procedure = procedure_id(request.requester.mc_service_id, transaction_id)
    new.__class__ = Transaction
    made: Transaction = new
    return made


_new = object.__new__
_set = object.__setattr__
_TX_FIELDS = frozenset(f.name for f in fields(Transaction) if f.init)
_TX_KEY_FIELDS = frozenset({"role", "transaction_id", "peer", "request"})
"""What ``Transaction.key`` and ``.procedure`` are computed from (the origin is the request's
requester or the peer)."""


@dataclass(frozen=True, slots=True)
class PendingItem:
    """A request or response waiting for a user or an FA (10.17.3.1).  One per transaction."""

    KIND: ClassVar[str] = "pending"

    tx_key: str
    owner: str
    """MC service ID of the user, or the functional alias when nobody holds it."""
    is_fa: bool
    created: float
    flow: AcmRequest | AcmResponse

    @property
    def key(self) -> str:
        return self.tx_key


class Purpose(StrEnum):
    """Why a flow is sent; decides what its delivery outcome means."""

    FORWARD = "forward"        # primary -> partner ACMS: the request (step 3)
    INDICATE = "indicate"      # partner -> primary ACMS: process indication (step 4)
    ANSWER = "answer"          # partner -> primary ACMS: the response (step 8)
    DELIVER = "deliver"        # ACMS -> ACMC: request (step 5) or response (step 10)
    RELAY = "relay"            # ACMS -> ACMC or peer: courtesy copy, re-send (not durable)
    NOTIFY = "notify"          # pending ACM data notification (10.17.3.1, not durable)
    DOWNLOAD = "download"      # pending ACM data download response (10.17.3.1, not durable)


DURABLE_PURPOSES = frozenset({Purpose.FORWARD, Purpose.INDICATE, Purpose.ANSWER, Purpose.DELIVER})
"""Sends that are stored and re-sent after a restart until their outcome is known."""


class Hop(StrEnum):
    """Where a flow goes."""

    ACMC = "acmc"    # a local ACMC, addressed by MC service ID
    PEER = "peer"    # a peer ACMS, addressed by PSI
    ACMS = "acms"    # (ACMC side) its own ACMS


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A flow handed to the runtime whose delivery outcome is not yet known (the outbox)."""

    KIND: ClassVar[str] = "outgoing"

    send_id: str
    purpose: Purpose
    hop: Hop
    to: str
    flow: AcmFlow
    tx_key: str | None = None
    attempts: int = 1
    next_at: float | None = None
    """None: in flight; else the time of the next attempt after a failure."""
    give_up_at: float | None = None
    carries: tuple[str, ...] = ()
    """DOWNLOAD: keys of the pending items this download response carries."""

    @property
    def key(self) -> str:
        return self.send_id


@dataclass(frozen=True, slots=True)
class Mapping:
    """Primary MC service ID <-> partner-assigned MC service ID for one partner system (10.17.5)."""

    KIND: ClassVar[str] = "mapping"

    side: Role
    """PRIMARY: we asked for the migration; PARTNER: we assigned the ID."""
    peer: str
    """PSI of the other system's ACMS."""
    primary_id: str
    partner_id: str
    profile: UserProfile | None = None
    """The profile valid while migrated (10.17.7.1), updated by a successful 10.17.7."""
    removed: bool = False
    """Withdrawn by a remove user configuration (kept so later updates get not-migrated)."""
    key: str = field(init=False, repr=False, compare=False)
    """``mapping_key`` of the mapping, computed once per record."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", mapping_key(self.side, self.peer, self.primary_id))

    def evolve(self, **changes: Any) -> Mapping:
        """``dataclasses.replace(self, **changes)`` at a fraction of its cost (as
        :meth:`Transaction.evolve`): the key is recomputed only if a field of it changes."""
        if not changes.keys() <= _MAPPING_FIELDS:
            unknown = changes.keys() - _MAPPING_FIELDS
            raise TypeError(f"Mapping has no field {', '.join(sorted(unknown))}")
        new = _new(Mapping)
        _set(new, "side", self.side)
        _set(new, "peer", self.peer)
        _set(new, "primary_id", self.primary_id)
        _set(new, "partner_id", self.partner_id)
        _set(new, "profile", self.profile)
        _set(new, "removed", self.removed)
        for name, value in changes.items():
            _set(new, name, value)
        if _MAPPING_KEY_FIELDS.isdisjoint(changes):
            _set(new, "key", self.key)
        else:
            new.__post_init__()
        return new


def mapping_key(side: Role, peer: str, primary_id: str) -> str:
    """One mapping per (side, peer system, primary user), identities canonical."""
    return f"{side} {id_key(peer)} {id_key(primary_id)}"


_MAPPING_FIELDS = frozenset(f.name for f in fields(Mapping) if f.init)
_MAPPING_KEY_FIELDS = frozenset({"side", "peer", "primary_id"})


Record = Transaction | PendingItem | Outgoing | Mapping | PartnerGroup

make_outgoing: Callable[[str, Purpose, Hop, str, AcmFlow, str | None, int, float | None,
                         float | None, tuple[str, ...]], Outgoing] = builder(Outgoing)
"""``Outgoing(...)``, every field given, without a call per field (mcacm_sip/frozen.py)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything an ACMS needs to continue after a restart (``Store.load()``)."""

    transactions: tuple[Transaction, ...] = ()
    pending: tuple[PendingItem, ...] = ()
    outgoing: tuple[Outgoing, ...] = ()
    mappings: tuple[Mapping, ...] = ()
    groups: tuple[PartnerGroup, ...] = ()
    """Partner role, 10.17.4: what this system applied per primary system and group."""
