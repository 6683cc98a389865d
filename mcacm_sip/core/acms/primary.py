"""The primary role (TS 23.280 10.17.7.2 steps 1-3 and 9-10 at the primary ACMS): a request
from our ACMC is authorised and forwarded to the partner ACMS; its indication and answer
come back, migration mappings are learnt (10.17.5), and the response goes to the ACMC.
"""

from __future__ import annotations

from dataclasses import replace

from mcacm_sip.acm.model import (
    AcmRequest,
    AcmResponse,
    AddUserConfigurationResponse,
    ProcessIndication,
    ProfileUpdateRequest,
    RemoveUserConfigurationResponse,
    Result,
)
from mcacm_sip.core import groups
from mcacm_sip.core.acms.records import log
from mcacm_sip.core.acms.routing import AcmsRouting
from mcacm_sip.core.config import PeerSystem
from mcacm_sip.core.events import AcmsActions
from mcacm_sip.core.identity import id_key, same, uid
from mcacm_sip.core.state import (
    Hop,
    Mapping,
    Purpose,
    Role,
    Transaction,
    Trigger,
    TxState,
    mapping_key,
    tx_key,
)


class AcmsPrimary(AcmsRouting):
    """Request from an ACMC, answer from the partner, mappings; standing in for the partner."""

    def _primary_request(self, now: float, sender: str, req: AcmRequest, out: AcmsActions) -> None:
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
        tx = self._open(Role.PRIMARY, req.transaction_id, peer, req, now,
                        now + self.config.timers.answer_timeout, leg_id=leg)
        self._put(tx, out)
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
        # 23.280 10.17.4.2.2 step 2 (and 10.17.4): authorised for the group(s) as well
        return groups.not_allowed_to_request(user, req)

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
                        flow: AcmResponse | ProcessIndication, out: AcmsActions) -> None:
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
            if tx.allows(Trigger.INDICATION):
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
        if not tx.allows(Trigger.RESPONSE):
            log.info("late or duplicate response %s ignored (%s)", tx.transaction_id, tx.state)
            return
        self._drop_sends(tx, Purpose.FORWARD, out)
        self._learn_mappings(tx, flow, out)
        # 23.280 10.17.7.2 step 9: store the response, then deliver or queue it -- to the
        # ACMC user who sent the request (decision: never to a name taken from the response)
        tx = self._move(tx, Trigger.RESPONSE, out, response=flow,
                        deadline=now + self.config.timers.pending_response_ttl)
        self._deliver_or_queue(now, tx, tx.origin, out)

    def _learn_mappings(self, tx: Transaction, resp: AcmResponse, out: AcmsActions) -> None:
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
                    self._put(m.evolve(removed=True), out)
        elif isinstance(req, ProfileUpdateRequest) and resp.result.positive:
            key = self._by_partner_id.get((Role.PRIMARY, id_key(req.migrated_user_id)))
            if key is not None:
                self._put(self._maps[key].evolve(profile=req.profile), out)

    def _stand_in(self, now: float, tx: Transaction, result: Result, trigger: Trigger,
                  out: AcmsActions) -> None:
        """Primary: this ACMS answers in the partner's place; the response then goes to the
        primary ACMC as in 10.17.7.2 steps 9-10 (pending if it is not logged on)."""
        self._drop_sends(tx, Purpose.FORWARD, out)
        resp = self._auto_response(tx, result)
        tx = self._move(tx, trigger, out, response=resp,
                        deadline=now + self.config.timers.pending_response_ttl)
        self._route(now, tx, resp.target, out)
