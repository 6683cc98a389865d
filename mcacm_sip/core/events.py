"""Events into and actions out of the sans-I/O ACMS and ACMC cores.

Every event carries ``now`` (seconds, the runtime's wall clock: ``time.time()``); the cores never
read a clock.  ``handle(event)`` returns actions in the order the runtime must apply them:

1. :class:`Put` / :class:`Remove` -- in ONE store transaction ("stored before acknowledged");
2. the verdict (:class:`AcceptMessage` / :class:`RefuseMessage`) for the SIP request that carried
   the event, present only for flow events;
3. everything else (:class:`SendFlow`, :class:`SubscribeFa`, :class:`Decide`,
   :class:`ReportToUser`).

Afterwards the runtime re-arms its single timer at ``core.get_timer()``.

Every event is a :class:`CoreEvent` and every action a :class:`CoreAction` (h11's one ``Event``
base); what each core takes and returns is a closed union: :data:`AcmsEvent` and
:data:`AcmsAction` for the ACMS, :data:`AcmcEvent` and :data:`AcmcAction` for the ACMC.  The
names say what they do at this layer (``SendFlow``, not ``Send``: the SIP layer has its own
sends, answers and notifications).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Generic, TypeVar

from mcacm_sip.acm.model import AcmFlow, AcmRequest
from mcacm_sip.core.state import Hop, Record, Snapshot
from mcacm_sip.frozen import builder

# --------------------------------------------------------------------------- events


class CoreEvent:
    """Base of every event into a core: a frozen value carrying the runtime's ``now``."""

    __slots__ = ()
    now: float


@dataclass(frozen=True, slots=True)
class FlowFromAcmc(CoreEvent):
    """(ACMS) A flow in a MESSAGE from a local ACMC."""

    now: float
    sender: str
    """The sender's MC service ID as authenticated by the SIP layer (P-Asserted-Identity), in
    any spelling equivalent to the configured one (RFC 3261 19.1.4).  It is the origin of the
    transactions its requests open (docs/decisions.md "Identity and authority")."""
    flow: AcmFlow


@dataclass(frozen=True, slots=True)
class FlowFromPeer(CoreEvent):
    """(ACMS) A flow in a MESSAGE from another ACMS."""

    now: float
    origin: str
    """The origin ACMS's PSI as authenticated by the SIP layer (any equivalent spelling)."""
    flow: AcmFlow


@dataclass(frozen=True, slots=True)
class UserLoggedOn(CoreEvent):
    """(ACMS) The registrar has a binding for ``user`` (REGISTER)."""

    now: float
    user: str


@dataclass(frozen=True, slots=True)
class UserLoggedOff(CoreEvent):
    """(ACMS) The user's last binding expired or was removed."""

    now: float
    user: str


@dataclass(frozen=True, slots=True)
class FaHoldersChanged(CoreEvent):
    """(ACMS) A NOTIFY from our FA controlling server: the users who have ``fa`` active."""

    now: float
    fa: str
    holders: tuple[str, ...]


class Failure(StrEnum):
    """Why a :class:`SendFlow` did not get a 2xx: a fact, not an invented SIP status.

    Remote (the network or the peer): ``REFUSED`` (a final non-2xx SIP answer, ``status`` holds
    it), ``TIMEOUT`` (no final answer in time, RFC 3261 Timer F), ``TRANSPORT`` (no connection,
    resolution or socket failure), ``NO_BINDING`` (the ACMC user has no registered contact,
    10.17.3.1).  Local: ``LOCAL_ERROR`` (a bug on our side, e.g. our own flow failed our own
    schema; nothing was sent).  The retry policy reads it (:func:`transient`: the ACMS's sends
    and the ACMC's downloads alike); a local error is never retried as if the network had
    failed (docs/decisions.md "Local and remote errors")."""

    REFUSED = "refused"
    TIMEOUT = "timeout"
    TRANSPORT = "transport"
    NO_BINDING = "no-binding"
    LOCAL_ERROR = "local-error"


# A member as a global: Python 3.11 finds `Failure.REFUSED` through EnumType's __getattr__
# hook, far slower than a global's load (3.12 dropped the hook).
_REFUSED: Final = Failure.REFUSED


# Is a peer's refusal worth repeating the send for?  Looked up by the exact SIP status, else by
# its class.  decision, after RFC 3261 21.4-21.6 (docs/decisions.md "Procedures").
_TRANSIENT: dict[int | str, bool] = {
    408: True,     # 21.4.9: no answer in time; the client "MAY repeat the request"
    480: True,     # 21.4.18: temporarily unavailable (Retry-After may say when)
    "4xx": False,  # 21.4: "definite failure ... SHOULD NOT retry the same request without
                   # modification": 400, 403, 404, 413, 415, 488 ...
    501: False,    # 21.5.2: the peer does not implement MESSAGE
    505: False,    # 21.5.6: SIP version not supported
    513: False,    # 21.5.7: message too large: the same body stays too large
    "5xx": True,   # 21.5: the server erred (500, 502, 503 + Retry-After, 504): try again
    "6xx": False,  # 21.6: "definitive information": no other attempt succeeds
    "3xx": False,  # peer sends follow no redirects: a configuration error, not a glitch
}

_TRANSIENT_FAILURE: dict[Failure, bool] = {
    Failure.TIMEOUT: True,      # no answer in time: the network may recover
    Failure.TRANSPORT: True,    # no connection: the peer may come back
    Failure.NO_BINDING: True,   # 10.17.3.1: the user may log on again (queued meanwhile)
    Failure.LOCAL_ERROR: False,  # our own bug: the same flow fails the same way (decision)
}


def transient(failure: Failure, status: int | None = None) -> bool:
    """Whether a send that failed with ``failure`` (``REFUSED``: with SIP ``status``) is worth
    repeating; docs/decisions.md "Local and remote errors"."""
    if failure is _REFUSED:
        assert status is not None
        return _TRANSIENT.get(status, _TRANSIENT.get(f"{status // 100}xx", True))
    return _TRANSIENT_FAILURE[failure]

@dataclass(frozen=True, slots=True)
class DeliveryOutcome(CoreEvent):
    """(both) The outcome of a :class:`SendFlow`: ok = a 2xx arrived; else ``failure`` says why."""

    now: float
    send_id: str
    ok: bool
    reason: str | None = None
    """For logs: ``"<status> <Warning text or reason phrase>"``, the transport error, or what
    went wrong locally."""
    status: int | None = None
    """The final SIP status of a ``REFUSED`` failure; None for any other outcome."""
    warning: str | None = None
    """The quoted text of the answer's ``Warning: 399`` header, if it had one."""
    retry_after: float | None = None
    """The answer's Retry-After in seconds (RFC 3261 20.33), if it had one."""
    failure: Failure | None = None
    """None exactly when ``ok``; ``REFUSED`` exactly when ``status`` is set."""

    def __post_init__(self) -> None:
        if self.ok != (self.failure is None) or (
                (self.failure is _REFUSED) != (self.status is not None)):
            raise ValueError(f"inconsistent delivery outcome: ok={self.ok} "
                             f"failure={self.failure} status={self.status}")


@dataclass(frozen=True, slots=True)
class TimerTick(CoreEvent):
    """(both) The deadline from ``get_timer()`` was reached (late ticks are fine)."""

    now: float


@dataclass(frozen=True, slots=True)
class FlowFromAcms(CoreEvent):
    """(ACMC) A flow in a MESSAGE from the ACMC's own ACMS."""

    now: float
    flow: AcmFlow
    procedure: str = ""
    """The ``X-CID`` the MESSAGE came with (the runtime's; empty: none).  The core only
    compares it and gives it back on the pending-data downloads the flow leads to, retries
    included, so that they reach the worker of several that holds the items
    (docs/scale-out.md)."""


@dataclass(frozen=True, slots=True)
class AdoptRecords(CoreEvent):
    """(ACMS) Records this core did not hold: transactions another worker's lease lost, with
    their pending items and sends, claimed from the shared store (docs/decisions.md
    "Scale-out: leases"), and mappings and partner groups other workers wrote.  They are
    stored already: the core takes them in as at a restart and continues them (re-sends what
    had no known outcome; retries and deadlines from their stored times).  Transactions,
    pending items and sends it holds already are kept (its copy is the newer); adopted
    mappings and groups replace its own."""

    now: float
    records: Snapshot


@dataclass(frozen=True, slots=True)
class ReleaseRecords(CoreEvent):
    """(ACMS) Transactions another worker holds in the shared store (it took them over, or
    a request this core took for new was already opened there): the core forgets them with
    their pending items and sends, and stores nothing (the rows are the other worker's;
    docs/decisions.md "Scale-out: leases", rule 5)."""

    now: float
    tx_keys: frozenset[str]


AcmsEvent = (
    FlowFromAcmc | FlowFromPeer | UserLoggedOn | UserLoggedOff | FaHoldersChanged
    | DeliveryOutcome | TimerTick | AdoptRecords | ReleaseRecords
)
AcmcEvent = FlowFromAcms | DeliveryOutcome | TimerTick

# --------------------------------------------------------------------------- actions


class CoreAction:
    """Base of every action out of a core: a frozen value the runtime applies."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Put(CoreAction):
    """Store (insert or replace) a record."""

    record: Record


@dataclass(frozen=True, slots=True)
class Remove(CoreAction):
    """Delete the record of ``kind`` (``Record.KIND``) with ``key``."""

    kind: str
    key: str


@dataclass(frozen=True, slots=True)
class AcceptMessage(CoreAction):
    """Answer the incoming MESSAGE with 200 (after the store changes are committed)."""


@dataclass(frozen=True, slots=True)
class RefuseMessage(CoreAction):
    """Answer the incoming MESSAGE with ``status`` and ``Warning: 399 <host> "<warning>"``.
    ``warning`` starts with a machine-readable code, e.g. ``not-authorised: ...``."""

    status: int
    warning: str
    retry_after: int | None = None
    """Seconds of a ``Retry-After`` header (RFC 3261 20.33), for a 503."""


@dataclass(frozen=True, slots=True)
class SendFlow(CoreAction):
    """Send ``flow`` in a MESSAGE; report the outcome back as ``DeliveryOutcome(send_id)``.

    ``hop``: ACMC -> ``to`` is an MC service ID (use the registrar's contact); PEER -> ``to`` is a
    peer ACMS PSI; ACMS -> ``to`` is the ACMC's own ACMS PSI.
    """

    send_id: str
    hop: Hop
    to: str
    flow: AcmFlow
    procedure: str = ""
    """The ACM procedure the flow belongs to (:func:`~mcacm_sip.core.identity.procedure_id`),
    sent as the ``X-CID`` routing header; empty: the runtime derives it from the flow."""


@dataclass(frozen=True, slots=True)
class SubscribeFa(CoreAction):
    """(ACMS) Keep a continuous subscription (Expires 4294967295) to ``fa`` at our FA
    controlling server and feed every NOTIFY back as :class:`FaHoldersChanged`."""

    fa: str


@dataclass(frozen=True, slots=True)
class Decide(CoreAction):
    """(ACMC) Ask the decider (a person, or --auto) about ``request``; answer with
    ``AcmcCore.decide(transaction_id, approve, reason, now)``."""

    request: AcmRequest


class ReportKind(StrEnum):
    """What an ACMC tells its user about one of its own requests (or decisions)."""

    INDICATION = "indication"   # the partner ACMS accepted the request (process indication)
    RESPONSE = "response"       # final answer; ``flow`` is the response
    FAILED = "failed"           # our MESSAGE was refused or undeliverable; ``text`` says why
    TIMEOUT = "timeout"         # no final answer before the ACMC's own timer


@dataclass(frozen=True, slots=True)
class ReportToUser(CoreAction):
    """(ACMC) Something to show the user about ``transaction_id``."""

    transaction_id: str
    kind: ReportKind
    flow: AcmFlow | None = None
    text: str | None = None


MessageVerdict = AcceptMessage | RefuseMessage
"""The answer to the SIP MESSAGE that carried a flow event."""
StoreChange = Put | Remove
AcmsAction = Put | Remove | AcceptMessage | RefuseMessage | SendFlow | SubscribeFa
"""What :meth:`AcmsCore.handle <mcacm_sip.core.acms.AcmsCore.handle>` returns."""
AcmcAction = AcceptMessage | RefuseMessage | SendFlow | Decide | ReportToUser
"""What :class:`~mcacm_sip.core.acmc.AcmcCore` returns."""

_A = TypeVar("_A", AcmsAction, AcmcAction)
_ACCEPT = AcceptMessage()  # a value without fields: one serves every verdict


class _Collector(Generic[_A]):
    """The verdict and the other actions of one ``handle`` call."""

    __slots__ = ("_rest", "_verdict")

    def __init__(self) -> None:
        self._verdict: MessageVerdict | None = None
        self._rest: list[_A] = []

    def accept(self) -> None:
        self._verdict = _ACCEPT

    def refuse(self, status: int, warning: str, retry_after: int | None = None) -> None:
        self._verdict = RefuseMessage(status, warning, retry_after)

    def add(self, action: _A) -> None:
        self._rest.append(action)


class AcmsActions(_Collector[AcmsAction]):
    """Collects the ACMS's actions of one ``handle`` call, returned in the documented order."""

    __slots__ = ("_changes",)

    def __init__(self) -> None:
        self._verdict = None
        self._rest = []
        self._changes: list[StoreChange] = []

    def change(self, change: StoreChange) -> None:
        self._changes.append(change)

    def result(self) -> list[AcmsAction]:
        verdict = [self._verdict] if self._verdict is not None else []
        return [*self._changes, *verdict, *self._rest]


class AcmcActions(_Collector[AcmcAction]):
    """Collects the ACMC's actions of one ``handle`` call (it stores nothing)."""

    __slots__ = ()

    def result(self) -> list[AcmcAction]:
        verdict = [self._verdict] if self._verdict is not None else []
        return [*verdict, *self._rest]


def store_changes(actions: Sequence[CoreAction]) -> list[StoreChange]:
    """The store changes among ``actions`` (apply them in one transaction)."""
    return [a for a in actions if isinstance(a, Put | Remove)]


def verdict_of(actions: Sequence[CoreAction]) -> MessageVerdict | None:
    """The verdict for the incoming request, if the event had one."""
    return next((a for a in actions if isinstance(a, AcceptMessage | RefuseMessage)), None)


# the actions the ACMS core makes per request, without a call per field (mcacm_sip/frozen.py)
make_put: Callable[[Record], Put] = builder(Put)
make_remove: Callable[[str, str], Remove] = builder(Remove)
make_send: Callable[[str, Hop, str, AcmFlow, str], SendFlow] = builder(SendFlow)
