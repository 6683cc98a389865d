"""The ACM server (ACMS) procedure core: sans-I/O, one instance per MC system.

It plays the primary role for requests of its own ACMCs and the partner role for requests from
peer ACMSs (TS 23.280 10.17.7.2 steps 1-10, 10.17.5 add/remove user configuration, 10.17.3.1
pending requests, 10.17.3.2 automatic handling).  ``handle(event)`` returns actions
(:mod:`mcacm_sip.core.events` documents their order); ``get_timer()`` is the next deadline.
All state is in memory and every change is also emitted as a store action, so a restarted ACMS
is ``AcmsCore(config, store.load())`` followed by ``start(now)``.
"""

from __future__ import annotations

import heapq
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mcacm_sip.acm.model import (
    ANSWER_FOR,
    AcmFlow,
    AcmRequest,
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    Party,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    PendingDataNotification,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    RemoveUserConfigurationRequest,
    RemoveUserConfigurationResponse,
    Result,
    ResultCode,
    UserAssignment,
    UserRemoval,
    new_transaction_id,
)
from mcacm_sip.core.config import AcmsConfig, AuthorisedUser, PeerSystem
from mcacm_sip.core.events import (
    AcmsEvent,
    Action,
    Actions,
    DeliveryOutcome,
    FaHoldersChanged,
    Failure,
    FlowFromAcmc,
    FlowFromPeer,
    Put,
    Remove,
    Send,
    SubscribeFa,
    TimerTick,
    UserLoggedOff,
    UserLoggedOn,
)
from mcacm_sip.core.identity import IdKey, id_key, matches_pattern, same, uid
from mcacm_sip.core.policy import PolicyAction, assess
from mcacm_sip.core.quota import QuotaBook, Quotas, flow_bytes, page
from mcacm_sip.core.state import (
    AWAITING_DECISION,
    DURABLE_PURPOSES,
    OPEN_PRIMARY,
    Hop,
    Mapping,
    Outgoing,
    PendingItem,
    Purpose,
    Record,
    Role,
    Snapshot,
    Transaction,
    Trigger,
    TxState,
    answers,
    mapping_key,
    response_to,
    transition,
    tx_key,
)

log = logging.getLogger("mcacm.acms")

_RETRY_WHILE = {
    Purpose.FORWARD: (TxState.FORWARDING,),
    Purpose.INDICATE: AWAITING_DECISION,
    Purpose.ANSWER: (TxState.RESPONDING,),
}

PEER_REFUSED = "x-peer-refused"
"""Result extension value: the partner ACMS refused the forwarded request for good."""

LOCAL_ERROR = "x-local-error"
"""Result extension value: this ACMS could not send the forwarded request (its own bug)."""

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

_REQUEST_OF = {answer.FLOW: request.FLOW for request, answer in ANSWER_FOR.items()}
"""Response flow -> the request flow it answers."""

_REFUSAL_RESULT: dict[int, str] = {403: ResultCode.NOT_AUTHORISED}
"""Result code for a permanent refusal of a forwarded request; any other: PEER_REFUSED."""


_TRANSIENT_FAILURE: dict[Failure, bool] = {
    Failure.TIMEOUT: True,      # no answer in time: the network may recover
    Failure.TRANSPORT: True,    # no connection: the peer may come back
    Failure.NO_BINDING: True,   # 10.17.3.1: the user may log on again (queued meanwhile)
    Failure.LOCAL_ERROR: False,  # our own bug: the same flow fails the same way (decision)
}


def transient(failure: Failure, status: int | None = None) -> bool:
    """Whether a send that failed with ``failure`` (``REFUSED``: with SIP ``status``) is worth
    repeating; docs/decisions.md "Local and remote errors"."""
    if failure is Failure.REFUSED:
        assert status is not None
        return _TRANSIENT.get(status, _TRANSIENT.get(f"{status // 100}xx", True))
    return _TRANSIENT_FAILURE[failure]


def _ts(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


class AcmsCore:
    """One ACMS.  Construct from its configuration and, after a restart, the stored snapshot."""

    def __init__(self, config: AcmsConfig, snapshot: Snapshot | None = None,
                 quotas: Quotas | None = None) -> None:
        self.config = config
        self.quota = QuotaBook(quotas or Quotas())
        """What is retained for whom, against the ``[limits]`` quotas (core/quota.py)."""
        # identities are compared as URIs (RFC 3261 19.1.4): every dict/set below keyed by one
        # is keyed by its IdKey (identity.id_key), never by the text as written
        self._peers: dict[IdKey, PeerSystem] = {id_key(p.psi): p for p in config.peers}
        self._users: dict[IdKey, AuthorisedUser] = {id_key(u.id): u for u in config.users}
        self._tx: dict[str, Transaction] = {}
        # (role, leg id) -> tx key: primary, the id the partner answers under; partner, the id
        # our ACMC decides under (docs/decisions.md "Identity and authority", leg ids)
        self._legs: dict[tuple[Role, str], str] = {}
        self._via_fa: dict[IdKey, dict[str, None]] = {}       # FA -> partner tx keys routed by it
        self._pending: dict[str, PendingItem] = {}
        self._queues: dict[IdKey, dict[str, None]] = {}       # owner -> ordered item keys
        self._out: dict[str, Outgoing] = {}
        self._out_of_tx: dict[str, dict[str, None]] = {}      # tx key -> its send ids
        self._notifying: dict[IdKey, str] = {}  # user -> send id of its pending-data notification
        self._offered: dict[IdKey, set[str]] = {}  # user -> items sent in this round of pages
        # (when, kind, key) of every transaction deadline and retry time, lazily deleted:
        # an entry is live while its record still has that time (get_timer is O(log n))
        self._timers: list[tuple[float, str, str]] = []
        self._maps: dict[str, Mapping] = {}
        self._by_partner_id: dict[tuple[Role, IdKey], str] = {}  # (side, partner id) -> map key
        self._assigned = 0  # mappings this system assigned ({n} of the id template)
        self._online: dict[IdKey, str] = {}                   # logged-on user -> as spelled
        self._holders: dict[IdKey, tuple[str, ...]] = {}
        self._fas_of: dict[IdKey, set[IdKey]] = {}            # holder -> FAs it holds
        self._subscribed: set[IdKey] = set()
        self._round_robin: dict[IdKey, int] = {}
        if snapshot is not None:
            records: tuple[Record, ...] = (*snapshot.transactions, *snapshot.pending,
                                           *snapshot.outgoing, *snapshot.mappings)
            for record in records:
                self._remember(record)

    @classmethod
    def restore(cls, config: AcmsConfig, snapshot: Snapshot, quotas: Quotas | None = None
                ) -> AcmsCore:
        """The core of a restarted ACMS; call :meth:`start` next."""
        return cls(config, snapshot, quotas)

    # ------------------------------------------------------------------ public interface

    def start(self, now: float) -> list[Action]:
        """Subscribe to the FAs we need and re-send everything whose outcome was not known
        when the ACMS stopped (continuing every open transaction)."""
        out = Actions()
        fas = [*self.config.functional_aliases,
               *(i.owner for i in self._pending.values() if i.is_fa)]
        for fa in fas:
            self._subscribe(fa, out)
        for og in list(self._out.values()):
            if og.next_at is None:
                out.add(Send(og.send_id, og.hop, og.to, og.flow))
        for tx in [t for t in self._tx.values()
                   if t.role is Role.PRIMARY and t.state is TxState.PENDING_FA]:
            # stored before responses were routed to their requester (decision): do so now
            self._drop_item(tx.key, out)
            self._deliver_or_queue(now, tx, tx.origin, out)
        return out.result()

    def handle(self, event: AcmsEvent) -> list[Action]:
        out = Actions()
        match event:
            case FlowFromAcmc():
                self._from_acmc(event.now, event.sender, event.flow, out)
            case FlowFromPeer():
                self._from_peer(event.now, event.origin, event.flow, out)
            case UserLoggedOn():
                self._logon(event.now, event.user, out)
            case UserLoggedOff():
                self._online.pop(id_key(event.user), None)
            case FaHoldersChanged():
                self._fa_changed(event.now, event.fa, event.holders, out)
            case DeliveryOutcome():
                self._outcome(event, out)
            case TimerTick():
                self._tick(event.now, out)
        return out.result()

    def get_timer(self) -> float | None:
        """The earliest deadline (transaction timers, retries), or None."""
        timers = self._timers
        while timers and not self._live(*timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    # read-only views (tools, tests, the demo)
    def transaction(self, role: Role, transaction_id: str, origin: str | None = None
                    ) -> Transaction | None:
        """The transaction ``origin`` (primary: the requesting user; partner: the origin
        ACMS's PSI) opened under ``transaction_id``; without ``origin``, the only transaction
        of ``role`` with that id (O(n): tools and tests), None if there are several."""
        if origin is not None:
            return self._tx.get(tx_key(role, origin, transaction_id))
        found = [t for t in self._tx.values()
                 if t.role is role and t.transaction_id == transaction_id]
        return found[0] if len(found) == 1 else None

    def transactions(self) -> tuple[Transaction, ...]:
        return tuple(self._tx.values())

    def pending_for(self, owner: str) -> tuple[PendingItem, ...]:
        """The queue of a user or FA, oldest first: O(k) in its length."""
        return tuple(self._pending[k] for k in self._queues.get(id_key(owner), {}))

    def mappings(self) -> tuple[Mapping, ...]:
        return tuple(self._maps.values())

    @property
    def logged_on(self) -> frozenset[str]:
        return frozenset(self._online.values())

    @property
    def sends_in_flight(self) -> int:
        """Sends whose outcome is not known yet (in progress or waiting for a retry): the
        runtime's overload measure."""
        return len(self._out)

    # ------------------------------------------------------------------ records

    def _live(self, when: float, kind: str, key: str) -> bool:
        if kind == Transaction.KIND:
            tx = self._tx.get(key)
            return tx is not None and tx.deadline == when
        og = self._out.get(key)
        return og is not None and og.next_at == when

    def _timer_at(self, when: float, kind: str, key: str) -> None:
        timers = self._timers
        heapq.heappush(timers, (when, kind, key))
        if len(timers) > 64 + 4 * (len(self._tx) + len(self._out)):  # drop the dead entries
            self._timers = [t for t in timers if self._live(*t)]
            heapq.heapify(self._timers)

    def _remember(self, record: Record) -> None:
        match record:
            case Transaction():
                old = self._tx.get(record.key)
                self._tx[record.key] = record
                self.quota.track(record)
                if old is None or old.deadline != record.deadline:
                    self._timer_at(record.deadline, record.KIND, record.key)
                if old is None:
                    # a new transaction's leg id is free; two restored schema-1 rows (two peers,
                    # one id) can share one: the open one keeps it, as the old lookup did
                    other = self._tx.get(self._legs.get((record.role, record.leg), ""))
                    if other is None or other.state is TxState.DONE:
                        self._legs[(record.role, record.leg)] = record.key
                    if record.role is Role.PARTNER and record.state in AWAITING_DECISION:
                        fa = self._fa_route(record.request)
                        if fa is not None:
                            self._via_fa.setdefault(id_key(fa), {})[record.key] = None
            case PendingItem():
                self._pending[record.key] = record
                self._queues.setdefault(id_key(record.owner), {})[record.key] = None
            case Outgoing():
                old_og = self._out.get(record.key)
                self._out[record.key] = record
                if record.tx_key is not None:
                    self._out_of_tx.setdefault(record.tx_key, {})[record.key] = None
                if record.purpose is Purpose.NOTIFY:
                    self._notifying[id_key(record.to)] = record.key
                if record.next_at is not None and (old_og is None
                                                   or old_og.next_at != record.next_at):
                    self._timer_at(record.next_at, record.KIND, record.key)
            case Mapping():
                if record.key not in self._maps and record.side is Role.PARTNER:
                    self._assigned += 1
                self._maps[record.key] = record
                self._by_partner_id[(record.side, id_key(record.partner_id))] = record.key

    def _put(self, record: Record, out: Actions) -> None:
        self._remember(record)
        if not isinstance(record, Outgoing) or record.purpose in DURABLE_PURPOSES:
            out.change(Put(record))

    def _drop_tx(self, tx: Transaction, out: Actions) -> None:
        del self._tx[tx.key]
        self.quota.forget(tx.key)
        if self._legs.get((tx.role, tx.leg)) == tx.key:
            del self._legs[(tx.role, tx.leg)]
        out.change(Remove(Transaction.KIND, tx.key))

    def _drop_item(self, key: str, out: Actions) -> PendingItem | None:
        item = self._pending.pop(key, None)
        if item is not None:
            owner = id_key(item.owner)
            queue = self._queues[owner]
            del queue[key]
            if not queue:
                del self._queues[owner]
            out.change(Remove(PendingItem.KIND, key))
        return item

    def _drop_out(self, og: Outgoing, out: Actions) -> None:
        if og.tx_key is not None and (of_tx := self._out_of_tx.get(og.tx_key)) is not None:
            of_tx.pop(og.send_id, None)
            if not of_tx:
                del self._out_of_tx[og.tx_key]
        if og.purpose is Purpose.NOTIFY and self._notifying.get(id_key(og.to)) == og.send_id:
            del self._notifying[id_key(og.to)]
        if self._out.pop(og.send_id, None) is not None and og.purpose in DURABLE_PURPOSES:
            out.change(Remove(Outgoing.KIND, og.send_id))

    def _drop_sends(self, tx: Transaction, purpose: Purpose, out: Actions) -> None:
        for send_id in list(self._out_of_tx.get(tx.key, ())):
            if (og := self._out[send_id]).purpose is purpose:
                self._drop_out(og, out)

    def _move(self, tx: Transaction, trigger: Trigger, out: Actions, **changes: Any
              ) -> Transaction:
        """Apply one row of the transition table (state.TRANSITIONS) and store the result."""
        state, clause = transition(tx.role, tx.state, trigger)
        moved = replace(tx, state=state, **changes)
        if log.isEnabledFor(logging.INFO):  # one structured event per procedure step, no contents
            log.info("%s %s from %s: %s -> %s (%s)", moved.role, moved.transaction_id,
                     moved.origin, tx.state, moved.state, trigger, extra={
                         "event": "procedure.step", "transaction_id": moved.transaction_id,
                         "role": str(moved.role), "peer": moved.peer, "origin": moved.origin,
                         "leg_id": moved.leg,
                         "from_state": str(tx.state), "to_state": str(moved.state),
                         "trigger": str(trigger), "clause": clause})
        self._put(moved, out)
        return moved

    def _send(self, out: Actions, purpose: Purpose, hop: Hop, to: str, flow: AcmFlow,
              tx: Transaction | None = None, give_up_at: float | None = None,
              carries: tuple[str, ...] = ()) -> None:
        og = Outgoing(uuid.uuid4().hex, purpose, hop, to, flow,
                      tx.key if tx is not None else None, give_up_at=give_up_at, carries=carries)
        self._put(og, out)
        out.add(Send(og.send_id, hop, to, flow))

    # ------------------------------------------------------------------ incoming flows

    def _from_acmc(self, now: float, sender: str, flow: AcmFlow, out: Actions) -> None:
        if id_key(sender) not in self._users:
            # decision: a stranger learns nothing (not even whether a transaction exists)
            out.refuse(403, f"not-authorised: {sender} is not an authorised ACM user")
        elif isinstance(flow, AcmRequest):
            self._primary_request(now, sender, flow, out)
        elif isinstance(flow, AcmResponse):
            self._partner_decision(now, sender, flow, out)
        elif isinstance(flow, PendingDataDownloadRequest):
            self._download(now, sender, flow, out)
        else:
            out.refuse(400, f"unexpected-flow: an ACMC does not send {flow.FLOW}")

    def _from_peer(self, now: float, origin: str, flow: AcmFlow, out: Actions) -> None:
        peer = self._peers.get(id_key(origin))
        if peer is None:
            # decision: an unknown system gets 403 and nothing is stored
            out.refuse(403, f"not-authorised: {origin} is not a configured peer system")
        elif isinstance(flow, AcmRequest):
            self._partner_request(now, peer, flow, out)
        elif isinstance(flow, AcmResponse | ProcessIndication):
            self._primary_answer(now, peer, flow, out)
        else:
            out.refuse(400, f"unexpected-flow: an ACMS does not send {flow.FLOW} to a peer")

    def _refuse(self, out: Actions, status: int, text: str, tid: str, origin: str) -> None:
        """A refused flow: the SIP answer with its Warning, and one log line (decision):
        WARNING for a flow that contradicts what we hold (400: a peer's bug or a forgery),
        INFO for the authorisation and lookup answers (403, 404) any deployment sees."""
        log.log(logging.WARNING if status == 400 else logging.INFO,
                "refused %s from %s: %d %s", tid, origin, status, text,
                    extra={"event": "acm.refused", "transaction_id": tid, "origin": origin,
                           "status": status, "reason": text.split(":", 1)[0]})
        out.refuse(status, text)

    def _repeat(self, tx: Transaction, flow: AcmRequest, origin: str, out: Actions) -> bool:
        """A request under an id its origin already uses: True (answered here) unless it is the
        same request again.  decision: an exact repeat is idempotent, a different body under
        the id is refused and changes nothing (docs/decisions.md "Identity and authority")."""
        if tx.request == flow:
            log.info("duplicate %s from %s", flow.transaction_id, origin)
            out.accept()
            return True
        self._refuse(out, 400, f"transaction-id-reused: {flow.transaction_id} is in use for "
                               f"another {tx.request.FLOW} from {origin}",
                     flow.transaction_id, origin)
        return True

    def _new_leg(self, role: Role, transaction_id: str) -> str:
        """The id a new transaction uses on its other leg: the origin's own id unless another
        transaction of ``role`` uses it there, else a fresh one; "" means the origin's."""
        return "" if (role, transaction_id) not in self._legs else uuid.uuid4().hex

    # ------------------------------------------------------------------ primary role

    def _primary_request(self, now: float, sender: str, req: AcmRequest, out: Actions) -> None:
        if self._over_quota(tx_key(Role.PRIMARY, sender, req.transaction_id), req, None, out):
            return
        # decision: a transaction is its origin plus its id -- the same id from two of our
        # ACMCs is two transactions
        if (tx := self._tx.get(tx_key(Role.PRIMARY, sender, req.transaction_id))) is not None:
            if self._repeat(tx, req, sender, out) and tx.request == req:
                # decision: what we already have for it is re-sent (idempotent retry)
                for flow in (tx.indication, tx.response if tx.state is not TxState.DELIVERING
                             else None):
                    if flow is not None:
                        self._send(out, Purpose.RELAY, Hop.ACMC, sender, flow, tx)
            return
        # 23.280 10.17.7.2 step 2: authorisation check at the primary ACMS
        why = self._not_allowed_to_request(sender, req)
        if why:
            # step 3 not followed; nothing stored
            self._refuse(out, 403, f"not-authorised: {why}", req.transaction_id, sender)
            return
        peer, why = self._select_partner(req)
        if peer is None:
            self._refuse(out, 404, f"no-partner-system: {why}", req.transaction_id, sender)
            return
        user = self._users[id_key(sender)]
        if user.peers and not any(same(peer, p) for p in user.peers):
            self._refuse(out, 403, f"not-authorised: {sender} may not address {peer}",
                         req.transaction_id, sender)
            return
        leg = self._new_leg(Role.PRIMARY, req.transaction_id)
        tx = Transaction(Role.PRIMARY, req.transaction_id, peer, req, TxState.NEW, now,
                         now + self.config.timers.answer_timeout, leg_id=leg)
        tx = self._move(tx, Trigger.REQUEST, out)
        out.accept()
        # 23.280 10.17.7.2 step 3: forward to the partner ACMS (under the peer-leg id)
        forward = replace(req, transaction_id=leg) if leg else req
        self._send(out, Purpose.FORWARD, Hop.PEER, peer, forward, tx, give_up_at=tx.deadline)

    def _not_allowed_to_request(self, sender: str, req: AcmRequest) -> str | None:
        user = self._users[id_key(sender)]  # strangers were refused by _from_acmc
        if req.FLOW not in user.may_request:
            return f"{sender} may not send {req.FLOW}"
        if not same(req.requester.mc_service_id, sender):
            return f"requester {req.requester.mc_service_id} is not the sender {sender}"
        return None

    def _select_partner(self, req: AcmRequest) -> tuple[str | None, str]:
        """decision: by the migration mapping of the migrated user, else by the target's
        domain, else (no target) the only configured peer."""
        if isinstance(req, ProfileUpdateRequest):
            key = self._by_partner_id.get((Role.PRIMARY, id_key(req.migrated_user_id)))
            if key is not None:
                return self._maps[key].peer, ""
        ids = [] if req.target is None else [req.target.mc_service_id,
                                             req.target.functional_alias]
        for text in ids:
            if text is None:
                continue
            host = uid(text).host  # lower case: hosts compare case-insensitively (19.1.4)
            for peer in self.config.peers:
                if host and any(host == d.lower() for d in peer.domains):
                    return peer.psi, ""
        if req.target is None and len(self.config.peers) == 1:
            return self.config.peers[0].psi, ""
        return None, ("no migration mapping for the migrated user and no peer domain "
                      "matches the target")

    def _primary_answer(self, now: float, peer: PeerSystem,
                        flow: AcmResponse | ProcessIndication, out: Actions) -> None:
        # the partner answers under the id we forwarded the request with (the peer-leg id)
        key = self._legs.get((Role.PRIMARY, flow.transaction_id))
        tx = self._tx.get(key) if key is not None else None
        if tx is None:
            self._refuse(out, 404, f"unknown-transaction: {flow.transaction_id}",
                         flow.transaction_id, peer.psi)
            return
        if not same(tx.peer, peer.psi):
            self._refuse(out, 403, f"not-authorised: {flow.transaction_id} was not sent to "
                                   f"{peer.psi}", flow.transaction_id, peer.psi)
            return
        why = self._mismatch(tx.request, flow)
        if why is not None:
            # decision: it does not answer the request that was sent; the transaction is
            # left exactly as it was (the right answer is still taken)
            self._refuse(out, 400, f"wrong-response: {why}", flow.transaction_id, peer.psi)
            return
        # towards our ACMC the flow carries its own id again
        flow = replace(flow, transaction_id=tx.transaction_id)
        if isinstance(flow, ProcessIndication):
            out.accept()
            if tx.state in (TxState.FORWARDING, TxState.FORWARDED):
                # 23.280 10.17.7.2 step 4: the partner has stored it; stop re-sending
                self._drop_sends(tx, Purpose.FORWARD, out)
                deadline = tx.deadline
                if flow.expires is not None:
                    deadline = max(deadline, flow.expires.timestamp()
                                   + self.config.timers.answer_grace)
                tx = self._move(tx, Trigger.INDICATION, out, indication=flow, deadline=deadline)
                # decision: relayed to the requesting ACMC if logged on, never queued
                if id_key(tx.origin) in self._online:
                    self._send(out, Purpose.RELAY, Hop.ACMC, self._addr(tx.origin), flow, tx)
            return
        out.accept()
        if tx.state not in OPEN_PRIMARY:
            log.info("late or duplicate response %s ignored (%s)", tx.transaction_id, tx.state)
            return
        self._drop_sends(tx, Purpose.FORWARD, out)
        self._learn_mappings(tx, flow, out)
        # 23.280 10.17.7.2 step 9: store the response, then deliver or queue it -- to the
        # ACMC user who sent the request (decision: never to a name taken from the response)
        tx = self._move(tx, Trigger.RESPONSE, out, response=flow,
                        deadline=now + self.config.timers.pending_response_ttl)
        self._deliver_or_queue(now, tx, tx.origin, out)

    def _mismatch(self, req: AcmRequest, flow: AcmResponse | ProcessIndication) -> str | None:
        """Why ``flow`` does not answer ``req`` (None: it does).  decision: its flow answers
        the request's flow; its migrated user (10.17.2.16) is the request's; its target is the
        requester (MC service ID and FA as in the request); a per-user answer (10.17.5) names
        only users of the request.  Identities compare as URIs."""
        if isinstance(flow, ProcessIndication):
            if flow.request != req.FLOW:
                return f"the indication is for {flow.request}, the request was {req.FLOW}"
            return None
        if not answers(flow, req):
            return f"{flow.FLOW} does not answer {req.FLOW}"
        if isinstance(req, ProfileUpdateRequest) and isinstance(flow, ProfileUpdateResponse) \
                and not same(flow.migrated_user_id, req.migrated_user_id):
            return (f"migrated user {flow.migrated_user_id} is not the request's "
                    f"{req.migrated_user_id}")
        target, requester = flow.target, req.requester
        if target.mc_service_id is not None and not same(target.mc_service_id,
                                                         requester.mc_service_id):
            return f"target {target.mc_service_id} is not the requester"
        if target.functional_alias is not None and not same(target.functional_alias,
                                                            requester.functional_alias):
            return f"target {target.functional_alias} is not the requester's functional alias"
        if isinstance(flow, AddUserConfigurationResponse | RemoveUserConfigurationResponse) \
                and isinstance(req, AddUserConfigurationRequest
                               | RemoveUserConfigurationRequest):
            asked = {id_key(u) for u in req.users}
            for item in flow.users:
                if id_key(item.primary_id) not in asked:
                    return f"user {item.primary_id} was not in the request"
        return None

    def _learn_mappings(self, tx: Transaction, resp: AcmResponse, out: Actions) -> None:
        """10.17.5 / 10.17.7.1: keep primary ID <-> partner ID (and profile) per partner."""
        req = tx.request
        if isinstance(resp, AddUserConfigurationResponse):
            for a in resp.users:
                if a.result.positive and a.partner_id is not None:
                    self._put(Mapping(Role.PRIMARY, tx.peer, a.primary_id, a.partner_id,
                                      a.profile), out)
        elif isinstance(resp, RemoveUserConfigurationResponse):
            for r in resp.users:
                m = self._maps.get(mapping_key(Role.PRIMARY, tx.peer, r.primary_id))
                if r.result.positive and m is not None:
                    self._put(replace(m, removed=True), out)
        elif isinstance(req, ProfileUpdateRequest) and resp.result.positive:
            key = self._by_partner_id.get((Role.PRIMARY, id_key(req.migrated_user_id)))
            if key is not None:
                self._put(replace(self._maps[key], profile=req.profile), out)

    # ------------------------------------------------------------------ partner role

    def _over_quota(self, key: str, req: AcmRequest, peer: str | None, out: Actions) -> bool:
        """A request that would open transaction ``key`` past a bound of ``[limits]`` is
        refused (413, or 503 + Retry-After) and nothing is stored (core/quota.py); a repeat
        of a transaction already kept is never refused here."""
        if key in self._tx or (refusal := self.quota.refusal(req, peer)) is None:
            return False
        log.warning("%s %s refused: %s", req.FLOW, req.transaction_id, refusal.warning,
                    extra={"event": "quota.refused", "peer": peer, "status": refusal.status})
        out.refuse(refusal.status, refusal.warning, refusal.retry_after)
        return True

    def _partner_request(self, now: float, peer: PeerSystem, req: AcmRequest, out: Actions
                         ) -> None:
        if self._over_quota(tx_key(Role.PARTNER, peer.psi, req.transaction_id), req, peer.psi,
                            out):
            return
        # decision: a transaction is its origin plus its id -- the same id from two primary
        # systems is two transactions
        if (tx := self._tx.get(tx_key(Role.PARTNER, peer.psi, req.transaction_id))) is not None:
            if self._repeat(tx, req, peer.psi, out) and tx.request == req:
                # decision: re-send what it already has
                if tx.indication is not None:
                    self._send(out, Purpose.RELAY, Hop.PEER, peer.psi, tx.indication, tx)
                if tx.response is not None and tx.state is TxState.DONE:
                    self._send(out, Purpose.RELAY, Hop.PEER, peer.psi, tx.response, tx)
            return
        deadline = now + self.config.timers.decision_timeout
        indication = ProcessIndication(req.transaction_id, self.config.psi, req.FLOW,
                                       _ts(deadline))
        # 23.280 10.17.7.2 step 4: store first, then 200, then the process indication
        tx = Transaction(Role.PARTNER, req.transaction_id, peer.psi, req, TxState.NEW, now,
                         deadline, indication=indication,
                         leg_id=self._new_leg(Role.PARTNER, req.transaction_id))
        tx = self._move(tx, Trigger.REQUEST, out)
        out.accept()
        self._send(out, Purpose.INDICATE, Hop.PEER, peer.psi, indication, tx,
                   give_up_at=deadline)
        # step 4: verify (authorisation at both ends, the migrated user) ...
        refusal = self._verify(peer, req)
        if refusal is not None:
            self._respond(now, tx, self._auto_response(tx, refusal), Trigger.REFUSED, out)
            return
        # ... and assess by local policy (10.17.3): automatic handling (10.17.3.2) -> step 8
        decision = assess(self.config.policy, req)
        if decision.action is not PolicyAction.MANUAL:
            result = Result(ResultCode.SUCCESS, decision.reason) \
                if decision.action is PolicyAction.APPROVE \
                else Result(ResultCode.REJECTED_BY_POLICY, decision.reason)
            self._respond(now, tx, self._auto_response(tx, result), Trigger.AUTO, out)
            return
        # ... or verification by an ACMC
        target = self._decider_of(req)
        if target is None:
            result = Result(ResultCode.REJECTED_BY_POLICY,
                            "no target in the request and no decider configured")
            self._respond(now, tx, self._auto_response(tx, result), Trigger.AUTO, out)
            return
        if target.mc_service_id is not None and not self._may_decide(target.mc_service_id,
                                                                      req.FLOW):
            result = Result(ResultCode.NOT_AUTHORISED,
                            f"{target.mc_service_id} may not decide {req.FLOW}")
            self._respond(now, tx, self._auto_response(tx, result), Trigger.REFUSED, out)
            return
        self._route(now, tx, target, out)

    def _decider_of(self, req: AcmRequest) -> Addressee | None:
        """Who verifies ``req`` (step 4): its target, else the configured decider."""
        if req.target is not None or self.config.decider is None:
            return req.target
        decider = self.config.decider
        return Addressee(mc_service_id=decider) if id_key(decider) in self._users \
            else Addressee(functional_alias=decider)

    def _fa_route(self, req: AcmRequest) -> str | None:
        """The functional alias ``req`` is routed by at the partner, if any."""
        target = self._decider_of(req)
        return target.functional_alias if target is not None \
            and target.mc_service_id is None else None

    def _verify(self, peer: PeerSystem, req: AcmRequest) -> Result | None:
        if req.FLOW not in peer.flows:
            return Result(ResultCode.NOT_AUTHORISED, f"{peer.psi} may not send {req.FLOW}")
        requester = req.requester.mc_service_id
        if not any(matches_pattern(requester, pattern) for pattern in peer.requesters):
            return Result(ResultCode.NOT_AUTHORISED,
                          f"{requester} may not send requests to this system")
        if isinstance(req, ProfileUpdateRequest):
            m = self._partner_mapping(peer.psi, req.migrated_user_id)
            if m is None:
                return Result(ResultCode.UNKNOWN_USER,
                              f"{req.migrated_user_id} was not assigned to {peer.psi}")
            if m.removed:
                return Result(ResultCode.NOT_MIGRATED,
                              f"{req.migrated_user_id} is no longer migrated")
        return None

    def _partner_mapping(self, peer: str, partner_id: str) -> Mapping | None:
        key = self._by_partner_id.get((Role.PARTNER, id_key(partner_id)))
        m = self._maps.get(key) if key is not None else None
        return m if m is not None and same(m.peer, peer) else None

    def _may_decide(self, user: str, request_flow: str) -> bool:
        """Whether ``user`` is configured to decide requests of ``request_flow``."""
        u = self._users.get(id_key(user))
        return u is not None and request_flow in u.may_decide

    def _auto_response(self, tx: Transaction, result: Result) -> AcmResponse:
        """An answer by this ACMS itself (10.17.3.2; verify failures; timers)."""
        return response_to(tx.request, Party(self.config.handler_id), result)

    def _partner_decision(self, now: float, sender: str, resp: AcmResponse, out: Actions
                          ) -> None:
        # 23.280 10.17.7.2 step 7: only a user authorised to decide such requests answers
        # one (checked first: the others learn nothing about our transactions)
        tid = resp.transaction_id
        decided = _REQUEST_OF[resp.FLOW]
        if not self._may_decide(sender, decided):
            self._refuse(out, 403, f"not-authorised: {sender} may not decide {decided}",
                         tid, sender)
            return
        # decision: only the party the request was delivered to (its assignee) decides it;
        # anyone else gets the same 403 whether the id exists or not
        key = self._legs.get((Role.PARTNER, tid))
        tx = self._tx.get(key) if key is not None else None
        if tx is None or not same(tx.assignee, sender):
            self._refuse(out, 403, f"not-authorised: {sender} was not asked to decide {tid}",
                         tid, sender)
            return
        if not same(resp.handler.mc_service_id, sender):
            self._refuse(out, 403, f"not-authorised: handler {resp.handler.mc_service_id} is "
                                   f"not the sender {sender}", tid, sender)
            return
        why = self._mismatch(tx.request, resp)
        if why is not None:
            self._refuse(out, 400, f"wrong-response: {why}", tid, sender)
            return
        if tx.state not in AWAITING_DECISION:
            done = tx.response
            if done is not None and done.result == resp.result and same(
                    done.handler.mc_service_id, resp.handler.mc_service_id) and same(
                    done.handler.functional_alias, resp.handler.functional_alias):
                out.accept()  # the same decision again: idempotent
            else:
                code = done.result.code if done is not None else tx.state
                self._refuse(out, 403, f"already-answered: {tid} ended with {code}", tid,
                             sender)
            return
        # 23.280 10.17.7.2 steps 7-8 (towards the primary under the origin's own id)
        self._respond(now, tx, replace(resp, transaction_id=tx.transaction_id),
                      Trigger.DECISION, out)
        out.accept()

    def _respond(self, now: float, tx: Transaction, resp: AcmResponse, trigger: Trigger,
                 out: Actions) -> None:
        """Finish the partner side: apply the outcome, then send the response (step 8)."""
        resp = self._apply_outcome(tx, resp, out)
        self._drop_item(tx.key, out)
        self._drop_sends(tx, Purpose.DELIVER, out)
        give_up = now + self.config.timers.answer_grace
        tx = self._move(tx, trigger, out, response=resp, deadline=give_up)
        self._send(out, Purpose.ANSWER, Hop.PEER, tx.peer, resp, tx, give_up_at=give_up)

    def _apply_outcome(self, tx: Transaction, resp: AcmResponse, out: Actions) -> AcmResponse:
        """Partner side of 10.17.5 (assign / withdraw per user) and 10.17.7 (keep the agreed
        profile).  The ACMS, not the ACMC, assigns IDs and profiles."""
        req = tx.request
        ok = resp.result
        if isinstance(req, AddUserConfigurationRequest) and isinstance(
                resp, AddUserConfigurationResponse):
            return replace(resp, users=tuple(self._assign(tx.peer, u, ok, out)
                                             for u in req.users))
        if isinstance(req, RemoveUserConfigurationRequest) and isinstance(
                resp, RemoveUserConfigurationResponse):
            return replace(resp, users=tuple(self._withdraw(tx.peer, u, ok, out)
                                             for u in req.users))
        if isinstance(req, ProfileUpdateRequest) and ok.positive:
            m = self._partner_mapping(tx.peer, req.migrated_user_id)
            if m is not None:
                self._put(replace(m, profile=req.profile), out)
        return resp

    def _assign(self, peer: str, primary_id: str, result: Result, out: Actions
                ) -> UserAssignment:
        if not result.positive:
            return UserAssignment(primary_id, result)
        profile = self.config.migration.profile
        if profile is None:
            return UserAssignment(primary_id, Result(ResultCode.INVALID_PROFILE,
                                                     "no migration profile configured"))
        m = self._maps.get(mapping_key(Role.PARTNER, peer, primary_id))
        if m is None:
            # decision: {n} counts every ID this system ever assigned (mappings are kept), so
            # two primaries' users never get the same ID (the template must use {n})
            m = Mapping(Role.PARTNER, peer, primary_id,
                        self.config.migration.assign(primary_id, self._assigned + 1), profile)
        else:  # decision: re-adding reuses the earlier ID and keeps its profile
            m = replace(m, removed=False)
        self._put(m, out)
        return UserAssignment(primary_id, Result(ResultCode.SUCCESS), m.partner_id, m.profile)

    def _withdraw(self, peer: str, primary_id: str, result: Result, out: Actions
                  ) -> UserRemoval:
        if not result.positive:
            return UserRemoval(primary_id, result)
        m = self._maps.get(mapping_key(Role.PARTNER, peer, primary_id))
        if m is None:
            return UserRemoval(primary_id, Result(ResultCode.UNKNOWN_USER))
        if m.removed:
            return UserRemoval(primary_id, Result(ResultCode.NOT_MIGRATED), m.partner_id)
        self._put(replace(m, removed=True), out)
        return UserRemoval(primary_id, Result(ResultCode.SUCCESS), m.partner_id)

    # ------------------------------------------------------------------ routing to ACMCs

    def _payload(self, tx: Transaction) -> AcmRequest | AcmResponse:
        """Partner: the request goes to an ACMC (under the ACMC-leg id); primary: the
        response does (under the requester's own id)."""
        if tx.role is Role.PARTNER:
            return replace(tx.request, transaction_id=tx.leg_id) if tx.leg_id else tx.request
        assert tx.response is not None
        return tx.response

    def _route(self, now: float, tx: Transaction, target: Addressee, out: Actions) -> None:
        """Partner, 10.17.7.2 steps 4-5: by MC service ID if present, else by the functional
        alias's current holders that may decide the request."""
        user = target.mc_service_id
        if user is None:
            fa = target.functional_alias
            assert fa is not None  # Addressee guarantees one of the two
            self._subscribe(fa, out)
            self._via_fa.setdefault(id_key(fa), {})[tx.key] = None
            user = self._pick_holder(id_key(fa), tx.request.FLOW)
            if user is None:
                # step 4: FA not currently active (no eligible holder logged on) -> stored
                # until one is
                self._queue(now, tx, fa, True, Trigger.ROUTE_FA, out)
                return
        self._deliver_or_queue(now, tx, user, out)

    def _addr(self, user: str) -> str:
        """A local user as configured (the spelling the registrar knows), whatever spelling
        named them (decision: flows to an ACMC are addressed by the configured ID)."""
        known = self._users.get(id_key(user))
        return known.id if known is not None else user

    def _deliver_or_queue(self, now: float, tx: Transaction, user: str, out: Actions) -> None:
        user = self._addr(user)
        if id_key(user) in self._online:
            tx = self._move(tx, Trigger.ROUTE_ACMC, out, assignee=user)
            self._send(out, Purpose.DELIVER, Hop.ACMC, user, self._payload(tx), tx)
        else:
            # 10.17.3.1: the user is not logged on -> pending; notified on logon
            self._queue(now, tx, user, False, Trigger.ROUTE_PENDING, out)

    def _queue(self, now: float, tx: Transaction, owner: str, is_fa: bool, trigger: Trigger,
               out: Actions) -> None:
        tx = self._move(tx, trigger, out, assignee=owner)
        self._drop_item(tx.key, out)
        self._put(PendingItem(tx.key, owner, is_fa, now, self._payload(tx)), out)

    def _pick_holder(self, fa: IdKey, request_flow: str) -> str | None:
        """23.280 10.17.7.2 step 4: a holder of ``fa`` that is logged on and may decide
        ``request_flow`` (holders without the right are skipped, decision); several: local
        policy ``first`` or ``round-robin`` (decision).  None: nobody eligible is logged on."""
        candidates = [h for h in self._holders.get(fa, ())
                      if id_key(h) in self._online and self._may_decide(h, request_flow)]
        if not candidates:
            return None
        if self.config.fa_selection == "round-robin":
            turn = self._round_robin.get(fa, 0)
            self._round_robin[fa] = turn + 1
            return self._addr(candidates[turn % len(candidates)])
        return self._addr(candidates[0])

    def _subscribe(self, fa: str, out: Actions) -> None:
        # 23.280 10.17.7.2 pre-conditions / 10.13.10: continuous subscription to our FA server
        if (key := id_key(fa)) not in self._subscribed:
            self._subscribed.add(key)
            out.add(SubscribeFa(fa))

    def _fa_changed(self, now: float, fa: str, holders: tuple[str, ...], out: Actions) -> None:
        key = id_key(fa)
        for old in self._holders.get(key, ()):
            self._fas_of.get(id_key(old), set()).discard(key)
        self._holders[key] = holders
        for holder in holders:
            self._fas_of.setdefault(id_key(holder), set()).add(key)
        # 23.280 10.17.7.2 step 4: the FA became active -> deliver what was stored for it
        self._redeliver(now, key, out)

    def _redeliver(self, now: float, fa: IdKey, out: Actions) -> None:
        """Requests routed by ``fa`` that wait for a holder: stored under the FA, or with a
        holder who is not logged on (any more) -- each goes to an eligible holder who is;
        re-delivery moves the right to decide (decision)."""
        keys = self._via_fa.get(fa)
        if not keys:
            return
        for key in list(keys):
            tx = self._tx.get(key)
            if tx is None or tx.state not in AWAITING_DECISION:
                del keys[key]  # decided, expired or pruned
                continue
            if tx.state is TxState.DELIVERING or (tx.state is not TxState.PENDING_FA
                                                   and id_key(tx.assignee or "") in self._online):
                continue  # on its way to, or with, a holder who is logged on
            user = self._pick_holder(fa, tx.request.FLOW)
            if user is None:
                continue
            self._drop_item(tx.key, out)
            trigger = Trigger.ROUTE_ACMC if tx.state is TxState.PENDING_FA else Trigger.REASSIGN
            tx = self._move(tx, trigger, out, assignee=user)
            self._send(out, Purpose.DELIVER, Hop.ACMC, user, self._payload(tx), tx)
        if not keys:
            del self._via_fa[fa]

    # ------------------------------------------------------------------ 10.17.3.1 pending

    def _logon(self, now: float, user: str, out: Actions) -> None:
        key = id_key(user)
        self._online[key] = user
        self._offered.pop(key, None)  # a logon downloads everything again
        if (send_id := self._notifying.get(key)) is not None:
            self._drop_out(self._out[send_id], out)  # a logon notifies afresh
        self._notify(self._addr(user), out)  # 10.17.3.1: pending data notification on logon
        for fa in list(self._fas_of.get(key, ())):
            # decision: an eligible holder logged on -> what waits for the FA goes to them
            self._redeliver(now, fa, out)

    def _notify(self, user: str, out: Actions) -> None:
        """10.17.3.1: pending ACM data notification, unless one is on its way to ``user``."""
        key = id_key(user)
        if key in self._queues and key not in self._notifying:
            note = PendingDataNotification(new_transaction_id(), user)
            self._send(out, Purpose.NOTIFY, Hop.ACMC, user, note)

    def _download(self, now: float, sender: str, req: PendingDataDownloadRequest, out: Actions
                  ) -> None:
        if not same(req.user, sender):
            self._refuse(out, 403, f"not-authorised: {sender} may not download {req.user}'s "
                                   "data", req.transaction_id, sender)
            return
        out.accept()
        # 10.17.3.1: the download response carries ALL pending items -- in pages (decision,
        # docs/decisions.md "Pending data download pages"): each download takes the next
        # items not yet sent in this round, ``more`` says that others remain, and the ACMC
        # downloads again; the last page ends the round.  Response items leave the queue when
        # their page is acknowledged, request items when decided or expired.
        offered = self._offered.setdefault(id_key(sender), set())
        fresh = [i for i in self.pending_for(sender) if i.key not in offered]
        q = self.quota.quotas
        items = fresh[:page((flow_bytes(i.flow) for i in fresh), q.download_items,
                            q.download_bytes)]
        more = len(items) < len(fresh)
        if more:
            offered.update(i.key for i in items)
        else:
            del self._offered[id_key(sender)]
        carries = tuple(i.key for i in items if isinstance(i.flow, AcmResponse))
        resp = PendingDataDownloadResponse(req.transaction_id, req.user,
                                           tuple(i.flow for i in items), more)
        self._send(out, Purpose.DOWNLOAD, Hop.ACMC, sender, resp, carries=carries)

    # ------------------------------------------------------------------ outcomes and timers

    def _outcome(self, ev: DeliveryOutcome, out: Actions) -> None:
        og = self._out.get(ev.send_id)
        if og is None:
            return  # already settled (late duplicate outcome)
        self._drop_out(og, out)
        tx = self._tx.get(og.tx_key) if og.tx_key is not None else None
        retry = False
        if ev.failure is not None:
            retry = transient(ev.failure, ev.status)
            log.log(logging.ERROR if ev.failure is Failure.LOCAL_ERROR else logging.INFO,
                    "send %s (%s to %s) failed (%s%s): %s", og.send_id, og.purpose, og.to,
                    ev.failure, ", retried" if retry else "", ev.reason)
        match og.purpose:
            case Purpose.FORWARD | Purpose.INDICATE | Purpose.ANSWER if not ev.ok:
                if tx is None or tx.state not in _RETRY_WHILE[og.purpose]:
                    return
                if ev.failure is Failure.LOCAL_ERROR:
                    self._local_error(ev, og.purpose, tx, out)
                elif retry:
                    # decision: peer sends are retried with back-off while they still matter
                    if og.purpose is not Purpose.INDICATE:
                        self._move(tx, Trigger.SEND_FAILED, out)
                    self._retry(ev.now, og, ev.retry_after, out)
                else:
                    self._peer_refused(ev, og.purpose, tx, out)
            case Purpose.FORWARD | Purpose.ANSWER:
                if tx is not None and tx.state in (TxState.FORWARDING, TxState.RESPONDING):
                    done = tx.state is TxState.RESPONDING
                    self._move(tx, Trigger.PEER_ACCEPTED, out,
                               **self._done(ev.now) if done else {})
            case Purpose.DELIVER:
                if tx is None or tx.state is not TxState.DELIVERING:
                    return
                if ev.ok:
                    extra = self._done(ev.now) if tx.role is Role.PRIMARY else {}
                    self._move(tx, Trigger.DELIVERED, out, **extra)
                elif self._acmc_holds_the_leg(ev, tx):
                    # decision (docs/decisions.md "Identity and authority"): the ACMC still
                    # holds another request under this leg id, one this ACMS has forgotten
                    # (retention over): the leg gets a fresh id and the request goes again
                    tx = self._fresh_leg(tx, out)
                    assert tx.assignee is not None
                    self._send(out, Purpose.DELIVER, Hop.ACMC, tx.assignee, self._payload(tx), tx)
                else:
                    assert tx.assignee is not None
                    self._queue(ev.now, tx, tx.assignee, False, Trigger.DELIVERY_FAILED, out)
                    if id_key(tx.assignee) in self._online and retry:
                        # decision: still logged on (it may have answered too late): notify
                        # it now, not at its next logon (10.17.3.1)
                        self._notify(tx.assignee, out)
            case Purpose.DOWNLOAD if not ev.ok:
                self._offered.pop(id_key(og.to), None)  # a page was lost: start again
            case Purpose.DOWNLOAD:
                for key in og.carries:
                    if self._drop_item(key, out) is not None and key in self._tx:
                        self._move(self._tx[key], Trigger.DOWNLOADED, out,
                                   **self._done(ev.now))
            case Purpose.NOTIFY if retry:
                # decision: repeated with back-off while the user is logged on with items
                # (``_tick`` drops it otherwise)
                self._retry(ev.now, og, ev.retry_after, out)
            case _:
                pass

    @staticmethod
    def _acmc_holds_the_leg(ev: DeliveryOutcome, tx: Transaction) -> bool:
        """An ACMC refused a delivery as ``transaction-id-reused`` (D5 at the ACMC) while the
        leg still uses the origin's id: once only, a fresh leg id cannot be held."""
        return (tx.role is Role.PARTNER and ev.status == 400 and tx.leg == tx.transaction_id
                and (ev.warning or "").startswith("transaction-id-reused"))

    def _fresh_leg(self, tx: Transaction, out: Actions) -> Transaction:
        if self._legs.get((tx.role, tx.leg)) == tx.key:
            del self._legs[(tx.role, tx.leg)]
        tx = replace(tx, leg_id=uuid.uuid4().hex)
        self._legs[(tx.role, tx.leg)] = tx.key
        self._put(tx, out)
        return tx

    def _done(self, now: float) -> dict[str, Any]:
        return {"deadline": now + self.config.timers.retention}

    def _peer_refused(self, ev: DeliveryOutcome, purpose: Purpose, tx: Transaction,
                      out: Actions) -> None:
        """A peer refused a send for good (RFC 3261 21.4, 21.6): it is not repeated."""
        assert ev.status is not None
        log.warning("%s %s refused by %s: %s", purpose, tx.transaction_id, tx.peer, ev.reason)
        if purpose is Purpose.FORWARD:
            # decision: the primary ACMC learns it now, not at the answer timer (steps 9-10)
            warning = "".join(c for c in ev.warning or "" if c.isprintable())
            text = f"{tx.peer} refused the request: SIP {ev.status}" + (
                f" {warning}" if warning else "")
            code = _REFUSAL_RESULT.get(ev.status, PEER_REFUSED)
            self._stand_in(ev.now, tx, Result(code, text), Trigger.PEER_REFUSED, out)
        elif purpose is Purpose.ANSWER:
            # decision: the primary's answer timer gives its ACMC Result expired
            self._move(tx, Trigger.PEER_REFUSED, out, **self._done(ev.now))
        # INDICATE: informative only; the response (step 8) follows on its own

    def _local_error(self, ev: DeliveryOutcome, purpose: Purpose, tx: Transaction,
                     out: Actions) -> None:
        """Our own flow could not be sent (a bug on our side, h11's LocalProtocolError): never
        retried, the transaction ends with a defined outcome (docs/decisions.md "Local and
        remote errors")."""
        if purpose is Purpose.FORWARD:
            # decision: the primary ACMC learns at once that this ACMS failed, not the partner
            text = f"local error: this ACMS could not send the request to {tx.peer}"
            self._stand_in(ev.now, tx, Result(LOCAL_ERROR, text), Trigger.LOCAL_ERROR, out)
        elif purpose is Purpose.ANSWER:
            # decision: the primary's answer timer gives its ACMC Result expired
            self._move(tx, Trigger.LOCAL_ERROR, out, **self._done(ev.now))
        # INDICATE: informative only; the response (step 8) follows on its own

    def _retry(self, now: float, og: Outgoing, retry_after: float | None, out: Actions
               ) -> None:
        # RFC 3261 21.5.4 / 20.33: not before the peer's Retry-After, never faster than back-off
        at = now + max(self.config.timers.backoff(og.attempts), retry_after or 0.0)
        if og.give_up_at is not None and at >= og.give_up_at:
            return  # the transaction's own timer ends it
        self._put(replace(og, next_at=at), out)

    def _tick(self, now: float, out: Actions) -> None:
        due: dict[str, dict[str, None]] = {Transaction.KIND: {}, Outgoing.KIND: {}}
        timers = self._timers
        while timers and timers[0][0] <= now:  # the live timers that ran out, earliest first
            when, kind, key = heapq.heappop(timers)
            if self._live(when, kind, key):
                due[kind][key] = None
        for key in due[Transaction.KIND]:
            if (tx := self._tx.get(key)) is not None and tx.deadline <= now:
                self._expire(now, tx, out)
        for key in due[Outgoing.KIND]:
            og = self._out.get(key)
            if og is None or og.next_at is None or og.next_at > now:
                continue
            if og.purpose is Purpose.NOTIFY and (id_key(og.to) not in self._online
                                                 or id_key(og.to) not in self._queues):
                self._drop_out(og, out)  # nothing left to tell, or a logon will
                continue
            og = replace(og, attempts=og.attempts + 1, next_at=None)
            self._put(og, out)
            out.add(Send(og.send_id, og.hop, og.to, og.flow))

    def _stand_in(self, now: float, tx: Transaction, result: Result, trigger: Trigger,
                  out: Actions) -> None:
        """Primary: this ACMS answers in the partner's place; the response then goes to the
        primary ACMC as in 10.17.7.2 steps 9-10 (pending if it is not logged on)."""
        self._drop_sends(tx, Purpose.FORWARD, out)
        resp = self._auto_response(tx, result)
        tx = self._move(tx, trigger, out, response=resp,
                        deadline=now + self.config.timers.pending_response_ttl)
        self._route(now, tx, resp.target, out)

    def _expire(self, now: float, tx: Transaction, out: Actions) -> None:
        if tx.state is TxState.DONE:
            self._drop_tx(tx, out)  # retention over
        elif tx.state in OPEN_PRIMARY:
            # decision: no answer in time -> Result expired towards the primary ACMC
            result = Result(ResultCode.EXPIRED, "no answer from the partner system in time")
            self._stand_in(now, tx, result, Trigger.EXPIRED, out)
        elif tx.role is Role.PRIMARY:
            # decision: the response waited for the primary ACMC too long
            self._drop_item(tx.key, out)
            self._drop_sends(tx, Purpose.DELIVER, out)
            self._move(tx, Trigger.EXPIRED, out, **self._done(now))
        elif tx.state in AWAITING_DECISION:
            # decision: no decision before the decision timer -> Result expired
            self._drop_sends(tx, Purpose.INDICATE, out)
            result = Result(ResultCode.EXPIRED, "no decision before the deadline")
            self._respond(now, tx, self._auto_response(tx, result), Trigger.EXPIRED, out)
        else:  # RESPONDING: the primary could not be reached in time
            self._drop_sends(tx, Purpose.ANSWER, out)
            self._move(tx, Trigger.GAVE_UP, out, **self._done(now))
