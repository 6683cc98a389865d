"""A fake network and clock that wire ACMS and ACMC cores together (no sockets).

Every :class:`~mcacm_sip.core.events.SendFlow` is queued, then delivered to the right core as an
event; the receiver's verdict becomes the sender's :class:`DeliveryOutcome` (Accept -> ok,
Refuse -> failed with ``"<status> <warning>"``).  Flows cross the "wire" through the real codec
(``encode`` then ``decode``), so every flow a core emits is also schema-valid.  Store changes go
to a per-ACMS store before the verdict, as the runtime does.  Time only moves with
:meth:`Net.advance`, which ticks each core at its ``get_timer()`` deadlines.

The demo and conformance work use the same shapes: build cores, ``add_acms``/``add_acmc``,
``logon``, drive with ``acmc_request``/``decide``, read ``reports``/``ladder``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mcacm_sip.acm import codec
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    RemoveUserConfigurationRequest,
)
from mcacm_sip.core.acmc import AcmcCore
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.config import (
    REQUEST_FLOWS,
    AcmcConfig,
    AcmsConfig,
    AuthorisedUser,
    Migration,
    PeerSystem,
    Timers,
)
from mcacm_sip.core.events import (
    AcceptMessage,
    AdoptRecords,
    CoreAction,
    Decide,
    DeliveryOutcome,
    FaHoldersChanged,
    Failure,
    FlowFromAcmc,
    FlowFromAcms,
    FlowFromPeer,
    MessageVerdict,
    RefuseMessage,
    ReportKind,
    ReportToUser,
    SendFlow,
    SubscribeFa,
    TimerTick,
    UserLoggedOff,
    UserLoggedOn,
    store_changes,
    verdict_of,
)
from mcacm_sip.core.identity import id_key
from mcacm_sip.core.policy import PolicyAction, PolicyRule
from mcacm_sip.core.state import Hop
from mcacm_sip.store import MemoryStore, Store

Decider = Callable[[AcmRequest], tuple[bool, str | None]]
"""Returns (approve, reason) for a request; None as a decider means: hold for a manual call."""

UNREACHABLE = "no answer"
"""The runtime's ``Failure.TIMEOUT``."""
OFFLINE = "not registered"
"""The runtime's ``Failure.NO_BINDING``: the ACMC user has no registered contact."""


@dataclass(frozen=True)
class Answer:
    """A scripted SIP failure answer (instead of handing the flow to the receiver's core)."""

    status: int
    warning: str | None = None
    retry_after: float | None = None
    flows: tuple[str, ...] = ()
    """The flows (``FLOW`` names) it answers; empty: the next MESSAGE, whatever it carries."""

    def answers(self, flow: AcmFlow) -> bool:
        return not self.flows or flow.FLOW in self.flows


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now


@dataclass
class Rung:
    """One line of the ladder: who sent what to whom and how it was answered."""

    at: float
    src: str
    dst: str
    flow: str
    transaction_id: str
    answer: str


@dataclass(frozen=True)
class Wire:
    """One flow that crossed the fake network, with everything its receiver's core did."""

    at: float
    src: str
    dst: str
    hop: Hop
    flow: AcmFlow
    send_id: str
    verdict: AcceptMessage | RefuseMessage | None
    """None: no answer or not handed to a core (down, offline)."""
    actions: tuple[CoreAction, ...]
    """The receiver core's actions for this flow (empty when it never reached the core)."""


@dataclass
class Net:
    clock: FakeClock = field(default_factory=FakeClock)
    acms: dict[str, AcmsCore] = field(default_factory=dict)
    acmc: dict[str, AcmcCore] = field(default_factory=dict)
    stores: dict[str, Store] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    """PSIs or MC service IDs that do not answer (crashed, unreachable)."""
    scripted: dict[str, list[Answer]] = field(default_factory=dict)
    """Per receiver: the failure answers its next MESSAGEs get, in order (then the core)."""
    online: set[str] = field(default_factory=set)
    deciders: dict[str, Decider | None] = field(default_factory=dict)
    to_decide: dict[str, list[AcmRequest]] = field(default_factory=dict)
    reports: dict[str, list[ReportToUser]] = field(default_factory=dict)
    fa_holders: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    subscriptions: dict[str, set[str]] = field(default_factory=dict)
    ladder: list[Rung] = field(default_factory=list)
    delivered: list[tuple[str, AcmFlow]] = field(default_factory=list)
    """(receiver, flow) of every flow a core accepted."""
    wire: list[Wire] = field(default_factory=list)
    """Every flow sent (including :meth:`inject`), in delivery order."""
    asked: list[tuple[str, AcmRequest]] = field(default_factory=list)
    """(user, request) of every :class:`Decide` an ACMC core raised, in order."""
    _queue: deque[tuple[str, SendFlow]] = field(default_factory=deque)

    # ------------------------------------------------------------------ set-up

    def add_acms(self, core: AcmsCore, store: Store | None = None) -> AcmsCore:
        psi = core.config.psi
        self.acms[psi] = core
        if store is not None:
            self.stores[psi] = store
        self.subscriptions.setdefault(psi, set())
        self._apply(psi, core.start(self.clock.now))
        self.run()
        return core

    def add_acmc(self, core: AcmcCore, decider: Decider | None = None) -> AcmcCore:
        me = core.config.mc_service_id
        self.acmc[me] = core
        self.deciders[me] = decider
        self.reports.setdefault(me, [])
        self.to_decide.setdefault(me, [])
        return core

    def restart(self, psi: str, config: AcmsConfig | None = None) -> AcmsCore:
        """Crash ``psi`` (its queued sends are lost) and start it again from its store."""
        old = self.acms[psi]
        self._queue = deque((src, s) for src, s in self._queue if src != psi)
        self.down.discard(psi)
        core = AcmsCore.restore(config or old.config, self.stores[psi].load())
        self.subscriptions[psi] = set()
        for user in self.online:
            if self._home(user) == psi:
                self._apply(psi, core.handle(UserLoggedOn(self.clock.now, user)))
        self.acms[psi] = core
        self._apply(psi, core.start(self.clock.now))
        self.run()
        return core

    def take_over(self, psi: str) -> AcmsCore:
        """Crash ``psi`` and let another worker of the same PSI (a fresh core, already
        started) adopt everything it stored, as a PostgreSQL claim does
        (``AdoptRecords``; docs/decisions.md "Scale-out: leases")."""
        old = self.acms[psi]
        self._queue = deque((src, s) for src, s in self._queue if src != psi)
        self.down.discard(psi)
        core = AcmsCore(old.config)
        self.subscriptions[psi] = set()
        for user in self.online:
            if self._home(user) == psi:
                self._apply(psi, core.handle(UserLoggedOn(self.clock.now, user)))
        self.acms[psi] = core
        self._apply(psi, core.start(self.clock.now))
        self._apply(psi, core.handle(AdoptRecords(self.clock.now, self.stores[psi].load())))
        self.run()
        return core

    # ------------------------------------------------------------------ driving

    def logon(self, user: str) -> None:
        self.online.add(user)
        self._feed_acms(self._home(user), UserLoggedOn(self.clock.now, user))

    def logoff(self, user: str) -> None:
        self.online.discard(user)
        self._feed_acms(self._home(user), UserLoggedOff(self.clock.now, user))

    def set_holders(self, psi: str, fa: str, holders: tuple[str, ...]) -> None:
        """The FA controlling server of ``psi``'s system changed ``fa``'s holders."""
        self.fa_holders[(psi, id_key(fa))] = holders
        if id_key(fa) in self.subscriptions[psi]:
            self._feed_acms(psi, FaHoldersChanged(self.clock.now, fa, holders))

    def acmc_do(self, user: str, actions: Sequence[CoreAction]) -> None:
        """Process actions an ACMC core returned to a direct call (request, decide)."""
        self._apply(user, actions)
        self.run()

    def decide(self, user: str, approve: bool, reason: str | None = None) -> None:
        """The person at ``user``'s ACMC answers the oldest request waiting for them."""
        req = self.to_decide[user].pop(0)
        self.acmc_do(user, self.acmc[user].decide(req.transaction_id, approve, reason,
                                                  self.clock.now))

    def inject(self, src: str, hop: Hop, to: str, flow: AcmFlow) -> MessageVerdict | None:
        """Deliver a hand-made flow from ``src`` now, as if ``src`` had sent it (a forged,
        repeated or altered message); its outcome goes nowhere.  Returns the verdict."""
        send = SendFlow(f"injected-{len(self.wire)}", hop, to, flow)
        verdict = self._deliver(src, send, tell_sender=False)
        self.run()
        return verdict

    def verdict(self, send_id: str) -> MessageVerdict | None:
        """The verdict the receiver gave the send ``send_id`` (the last one, if re-sent)."""
        return next(w.verdict for w in reversed(self.wire) if w.send_id == send_id)

    def advance(self, seconds: float) -> None:
        """Move the clock, ticking every core at each of its deadlines on the way."""
        end = self.clock.now + seconds
        for _ in range(100_000):
            due = [(t, name) for name, t in self._timers() if t is not None and t <= end]
            if not due:
                break
            at, name = min(due)
            self.clock.now = max(self.clock.now, at)
            if name in self.acms:
                self._apply(name, self.acms[name].handle(TimerTick(self.clock.now)))
            else:
                self._apply(name, self.acmc[name].handle(TimerTick(self.clock.now)))
            self.run()
        else:  # pragma: no cover - a core that never settles is a bug
            raise RuntimeError("timers did not settle")
        self.clock.now = end

    def run(self) -> None:
        while self._queue:
            src, send = self._queue.popleft()
            self._deliver(src, send)

    # ------------------------------------------------------------------ queries

    def results(self, user: str) -> list[str]:
        """Result codes of the final responses ``user``'s ACMC reported, in order."""
        return [r.flow.result.code for r in self.reports[user]
                if r.kind is ReportKind.RESPONSE and isinstance(r.flow, AcmResponse)]

    def report_kinds(self, user: str) -> list[ReportKind]:
        return [r.kind for r in self.reports[user]]

    def received(self, user: str, flow_name: str) -> list[AcmFlow]:
        return [f for who, f in self.delivered if who == user and flow_name == f.FLOW]

    # ------------------------------------------------------------------ internals

    def _timers(self) -> list[tuple[str, float | None]]:
        return [*((n, c.get_timer()) for n, c in self.acms.items()),
                *((n, c.get_timer()) for n, c in self.acmc.items())]

    def _home(self, user: str) -> str:
        return self.acmc[user].config.acms_psi

    def _feed_acms(self, psi: str, event: UserLoggedOn | UserLoggedOff | FaHoldersChanged
                   ) -> None:
        self._apply(psi, self.acms[psi].handle(event))
        self.run()

    def _apply(self, owner: str, actions: Sequence[CoreAction]) -> MessageVerdict | None:
        """What a runtime does: store first (one transaction), verdict, then the rest."""
        changes = store_changes(actions)
        if changes and owner in self.stores:
            self.stores[owner].apply(changes)
        for action in actions:
            match action:
                case SendFlow():
                    self._queue.append((owner, action))
                case SubscribeFa():
                    # the FA server knows an FA in any equivalent spelling (RFC 3261 19.1.4)
                    self.subscriptions[owner].add(id_key(action.fa))
                    holders = self.fa_holders.get((owner, id_key(action.fa)))
                    if holders is not None:  # the subscription's first NOTIFY
                        self._apply(owner, self.acms[owner].handle(
                            FaHoldersChanged(self.clock.now, action.fa, holders)))
                case Decide():
                    self._decide(owner, action.request)
                case ReportToUser():
                    self.reports[owner].append(action)
        return verdict_of(actions)

    def _decide(self, user: str, request: AcmRequest) -> None:
        self.asked.append((user, request))
        decider = self.deciders.get(user)
        if decider is None:
            self.to_decide[user].append(request)
            return
        approve, reason = decider(request)
        self._apply(user, self.acmc[user].decide(request.transaction_id, approve, reason,
                                                 self.clock.now))

    def _scripted(self, to: str, flow: AcmFlow) -> Answer | None:
        """The first scripted answer for ``to`` that answers ``flow``, taken off its list."""
        answers = self.scripted.get(to, [])
        n = next((i for i, a in enumerate(answers) if a.answers(flow)), None)
        return None if n is None else answers.pop(n)

    def _deliver(self, src: str, send: SendFlow, tell_sender: bool = True
                 ) -> AcceptMessage | RefuseMessage | None:
        flow = codec.decode(codec.encode(send.flow))  # across the wire, schema-checked
        now = self.clock.now
        verdict: MessageVerdict | None = None
        actions: Sequence[CoreAction] = []
        retry_after: float | None = None
        if send.to in self.down or src in self.down:
            answer = UNREACHABLE
        elif (scripted := self._scripted(send.to, flow)) is not None:
            verdict = RefuseMessage(scripted.status, scripted.warning or "")
            retry_after = scripted.retry_after
        elif send.hop is Hop.PEER:
            actions = self.acms[send.to].handle(FlowFromPeer(now, src, flow))
        elif send.hop is Hop.ACMS:
            actions = self.acms[send.to].handle(FlowFromAcmc(now, src, flow))
        elif send.to in self.online and send.to in self.acmc:
            actions = self.acmc[send.to].handle(FlowFromAcms(now, flow))
        else:
            answer = OFFLINE
        if actions:
            verdict = self._apply(send.to, actions)
        if isinstance(verdict, AcceptMessage):
            answer = "200"
            self.delivered.append((send.to, flow))
        elif isinstance(verdict, RefuseMessage):
            answer = f"{verdict.status} {verdict.warning}"
        self.ladder.append(Rung(now, src, send.to, flow.FLOW, flow.transaction_id, answer))
        self.wire.append(Wire(now, src, send.to, send.hop, flow, send.send_id, verdict,
                              tuple(actions)))
        if src in self.down or not tell_sender:
            return verdict  # the sender crashed meanwhile: nobody hears the outcome
        # typed as the runtime reports them (runtime/messaging.py, runtime/acms.py)
        failure = {"200": None, UNREACHABLE: Failure.TIMEOUT,
                   OFFLINE: Failure.NO_BINDING}.get(answer, Failure.REFUSED)
        status = int(answer[:3]) if failure is Failure.REFUSED else None
        warning = verdict.warning or None if isinstance(verdict, RefuseMessage) else None
        outcome = DeliveryOutcome(now, send.send_id, failure is None,
                                  None if failure is None else answer, status, warning,
                                  retry_after, failure)
        core = self.acms.get(src)
        self._apply(src, core.handle(outcome) if core is not None
                    else self.acmc[src].handle(outcome))
        return verdict


# --------------------------------------------------------------------------- two MC systems

PRIMARY = "sip:acms@primary.example"
PARTNER = "sip:acms@partner.example"
ALICE = "sip:alice@primary.example"
"""Primary-system user allowed to send every request."""
MALLORY = "sip:mallory@primary.example"
"""Primary-system user configured without permission to request anything."""
DAVE = "sip:dave@partner.example"
ERIN = "sip:erin@partner.example"
"""Partner-system users allowed to decide every request."""
DUTY = "sip:duty@partner.example"
"""A functional alias in the partner system."""
DESK = "sip:desk@primary.example"
"""A functional alias in the primary system."""
MIKE = "sip:mike@primary.example"
"""A primary-system user who migrates to the partner system."""
PROFILE_XML = ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
               "<Name>Mike (migrated)</Name></mcptt-user-profile>")
UPDATED_XML = ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
               "<Name>Mike (updated)</Name><PrivateCall/></mcptt-user-profile>")

ALL_REQUESTS = REQUEST_FLOWS


def primary_config(**changes: object) -> AcmsConfig:
    config = AcmsConfig(
        psi=PRIMARY,
        peers=(PeerSystem(PARTNER, ("partner.example",)),),
        users=(AuthorisedUser(ALICE, ALL_REQUESTS, ALL_REQUESTS),
               AuthorisedUser(MALLORY)),
    )
    return replace(config, **changes)  # type: ignore[arg-type]


def partner_config(**changes: object) -> AcmsConfig:
    config = AcmsConfig(
        psi=PARTNER,
        peers=(PeerSystem(PRIMARY, ("primary.example",)),),
        users=(AuthorisedUser(DAVE, (), ALL_REQUESTS), AuthorisedUser(ERIN, (), ALL_REQUESTS)),
        # setting up migrations is routine: approved automatically
        policy=(PolicyRule(PolicyAction.APPROVE, AddUserConfigurationRequest.FLOW),
                PolicyRule(PolicyAction.APPROVE, RemoveUserConfigurationRequest.FLOW)),
        migration=Migration("sip:{user}-{n}@partner.example", profile_from_xml(PROFILE_XML)),
    )
    return replace(config, **changes)  # type: ignore[arg-type]


def two_systems(primary: AcmsConfig | None = None, partner: AcmsConfig | None = None,
                primary_store: Store | None = None, partner_store: Store | None = None,
                deciders: dict[str, Decider | None] | None = None) -> Net:
    """A primary and a partner ACMS with the ACMCs of ALICE, MALLORY, DAVE and ERIN (none
    logged on).  ``deciders`` default to None: decisions wait for ``Net.decide``."""
    net = Net()
    net.add_acms(AcmsCore(primary or primary_config()), primary_store or MemoryStore())
    net.add_acms(AcmsCore(partner or partner_config()), partner_store or MemoryStore())
    for user, home in ((ALICE, PRIMARY), (MALLORY, PRIMARY), (DAVE, PARTNER), (ERIN, PARTNER)):
        net.add_acmc(AcmcCore(AcmcConfig(user, home)), (deciders or {}).get(user))
    return net


def migrate(net: Net, user: str = MIKE) -> str:
    """10.17.5.2: ALICE adds ``user`` for migration; returns the partner-assigned ID."""
    _tid, actions = net.acmc[ALICE].add_users(net.clock.now, (user,), Addressee(DAVE))
    net.acmc_do(ALICE, actions)
    m = next(m for m in net.acms[PRIMARY].mappings() if m.primary_id == user)
    return m.partner_id


def update(net: Net, target: Addressee, migrated_user_id: str, requester: str = ALICE,
           profile_xml: str = UPDATED_XML) -> str:
    """10.17.7.2 step 1 from ``requester``'s ACMC; returns the transaction id."""
    tid, actions = net.acmc[requester].profile_update(
        net.clock.now, target=target, migrated_user_id=migrated_user_id,
        profile=profile_from_xml(profile_xml))
    net.acmc_do(requester, actions)
    return tid


# --------------------------------------------------------------------------- three MC systems
# Two primary systems and one partner; every ACMS peers with the other two, so a primary can
# also be asked to decide (a partner user's request to a primary system) and a "response from
# the wrong peer" comes from a system the receiver does know.

SECOND = "sip:acms@second.example"
BOB = "sip:bob@primary.example"
"""Primary-system user allowed to send every request but to decide none."""
ALICE2 = "sip:alice@second.example"
BOB2 = "sip:bob@second.example"
DESK2 = "sip:desk@second.example"
"""The functional alias BOB2 acts under."""
MIKE2 = "sip:mike@second.example"
FRANK = "sip:frank@partner.example"
"""Partner-system ACM user who may request but decide nothing (an FA holder without the right)."""
GHOST = "sip:ghost@partner.example"
"""Partner-system user with an ACMC who is no configured ACM user (an FA holder all the same)."""
STRANGER = "sip:zed@partner.example"
"""Not an ACM user and without an ACMC: only ever a forged sender."""

def _system(psi: str, domain: str, users: tuple[AuthorisedUser, ...],
            policy: tuple[PolicyRule, ...], timers: Timers,
            functional_aliases: tuple[str, ...] = ()) -> AcmsConfig:
    others = tuple(PeerSystem(p, (d,)) for p, d in (
        (PRIMARY, "primary.example"), (SECOND, "second.example"), (PARTNER, "partner.example"))
        if p != psi)
    return AcmsConfig(psi=psi, peers=others, users=users, policy=policy, timers=timers,
                      functional_aliases=functional_aliases,
                      migration=Migration(f"sip:{{user}}-{{n}}@{domain}",
                                          profile_from_xml(PROFILE_XML)))


def three_systems(timers: Timers, store: Callable[[], Store] = MemoryStore,
                  request_timeout: float = 10**9) -> Net:
    """PRIMARY (ALICE decides every request, BOB none) and SECOND (ALICE2, BOB2 alike; BOB2
    acts under the FA DESK2), each with its own migrated user (MIKE, MIKE2 at PARTNER, set up
    here; ALICE and ALICE2 are logged on); PARTNER (DAVE and ERIN decide every request, FRANK
    none, GHOST is no ACM user; the FA DUTY; add/remove approved by policy, profile updates
    decided by people).  The primaries decide everything by hand.  Nobody else is logged on."""
    def user(uri: str, decides: bool = True) -> AuthorisedUser:
        return AuthorisedUser(uri, ALL_REQUESTS, ALL_REQUESTS if decides else ())
    auto = (PolicyRule(PolicyAction.APPROVE, AddUserConfigurationRequest.FLOW),
            PolicyRule(PolicyAction.APPROVE, RemoveUserConfigurationRequest.FLOW))
    net = Net()
    homes = {PRIMARY: (ALICE, BOB), SECOND: (ALICE2, BOB2), PARTNER: (DAVE, ERIN, FRANK, GHOST)}
    net.add_acms(AcmsCore(_system(PRIMARY, "primary.example",
                                  (user(ALICE), user(BOB, False)), (), timers)), store())
    net.add_acms(AcmsCore(_system(SECOND, "second.example",
                                  (user(ALICE2), user(BOB2, False)), (), timers)), store())
    net.add_acms(AcmsCore(_system(PARTNER, "partner.example",
                                  (user(DAVE), user(ERIN), user(FRANK, False)), auto, timers,
                                  (DUTY,))), store())
    for home, users in homes.items():
        for u in users:
            fa = DESK2 if u == BOB2 else None  # BOB2 asks under an FA (the response names it)
            net.add_acmc(AcmcCore(AcmcConfig(u, home, fa, request_timeout)))
    for requester, migrant in ((ALICE, MIKE), (ALICE2, MIKE2)):
        net.logon(requester)
        _tid, actions = net.acmc[requester].add_users(net.clock.now, (migrant,), Addressee(DAVE))
        net.acmc_do(requester, actions)
    return net

