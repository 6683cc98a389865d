"""The partner role (TS 23.280 10.17.7.2 steps 4-8 at the partner ACMS): a request from a peer
ACMS is stored and indicated, verified, decided (by policy, 10.17.3.2, or by an ACMC) and
answered; the outcome is applied (10.17.5 assign/withdraw, 10.17.7 profile).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

from mcacm_sip.acm.model import (
    ANSWER_FOR,
    AcmRequest,
    AcmResponse,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    ProcessIndication,
    ProfileUpdateRequest,
    RemoveUserConfigurationRequest,
    RemoveUserConfigurationResponse,
    Result,
    ResultCode,
    UserAssignment,
    UserRemoval,
    trusted,
    trusted_replace,
)
from mcacm_sip.core import groups
from mcacm_sip.core.acms.routing import AcmsRouting
from mcacm_sip.core.config import PeerSystem
from mcacm_sip.core.events import AcmsActions
from mcacm_sip.core.identity import id_key, matches_any, same
from mcacm_sip.core.policy import PolicyAction
from mcacm_sip.core.state import (
    Hop,
    Mapping,
    Purpose,
    Role,
    Transaction,
    Trigger,
    TxState,
    mapping_key,
    result_of,
    tx_key,
)

# Members as globals: Python 3.11 finds `Enum.MEMBER` through EnumType's __getattr__
# hook, far slower than a global's load (3.12 dropped the hook).
_PARTNER: Final = Role.PARTNER
_INDICATE: Final = Purpose.INDICATE
_PEER: Final = Hop.PEER
_MANUAL: Final = PolicyAction.MANUAL
_APPROVE: Final = PolicyAction.APPROVE
_SUCCESS: Final = ResultCode.SUCCESS
_AUTO: Final = Trigger.AUTO
_DELIVER: Final = Purpose.DELIVER
_ANSWER: Final = Purpose.ANSWER

_REQUEST_OF = {answer.FLOW: request.FLOW for request, answer in ANSWER_FOR.items()}
"""Response flow -> the request flow it answers."""


def _ts(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


class AcmsPartner(AcmsRouting):
    """Request from a peer, verify, decision, respond, apply."""

    def _partner_request(self, now: float, peer: PeerSystem, req: AcmRequest, out: AcmsActions
                         ) -> None:
        key = tx_key(_PARTNER, peer.psi, req.transaction_id)
        if self._over_quota(key, req, peer.psi, out):
            return
        # decision: a transaction is its origin plus its id -- the same id from two primary
        # systems is two transactions
        if (tx := self._tx.get(key)) is not None:
            if self._repeat(tx, req, peer.psi, out) and tx.request == req:
                # decision: re-send what it already has
                if tx.indication is not None:
                    self._send(out, Purpose.RELAY, _PEER, peer.psi, tx.indication, tx)
                if tx.response is not None and tx.state is TxState.DONE:
                    self._send(out, Purpose.RELAY, _PEER, peer.psi, tx.response, tx)
            return
        deadline = now + self.config.timers.decision_timeout
        # the request's id (checked), our PSI (checked once, AcmsRecords), a flow name, an
        # aware UTC time: nothing its checks could refuse
        expires = _ts(deadline)
        indication = trusted(ProcessIndication, req.transaction_id, self.config.psi, req.FLOW,
                             expires) if self._psi_checked else ProcessIndication(
            req.transaction_id, self.config.psi, req.FLOW, expires)
        # 23.280 10.17.7.2 step 4: store first, then 200, then the process indication;
        # stored by the _put below, or (answered in this same call) by _respond's step, in
        # one store transaction either way, before the 200 (AcmsActions orders changes first)
        tx = self._open(_PARTNER, req.transaction_id, peer.psi, req, now, deadline,
                        indication, self._new_leg(_PARTNER, req.transaction_id), key)
        out.accept()
        self._send(out, _INDICATE, _PEER, peer.psi, indication, tx,
                   give_up_at=deadline)
        # step 4: verify (authorisation at both ends, the migrated user) ...
        refusal, mapping = self._verify(peer, req)
        if refusal is not None:
            self._respond(now, tx, self._auto_response(tx, refusal), Trigger.REFUSED, out)
            return
        # ... and assess by local policy (10.17.3): automatic handling (10.17.3.2) -> step 8
        decision = self._policy.assess(req)
        if decision.action is not _MANUAL:
            result = result_of(_SUCCESS, decision.reason) \
                if decision.action is _APPROVE \
                else result_of(ResultCode.REJECTED_BY_POLICY, decision.reason)
            self._respond(now, tx, self._auto_response(tx, result), _AUTO, out,
                          mapping)
            return
        # ... or verification by an ACMC
        target = self._decider_of(req)
        if target is None:
            result = result_of(ResultCode.REJECTED_BY_POLICY,
                               "no target in the request and no decider configured")
            self._respond(now, tx, self._auto_response(tx, result), _AUTO, out)
            return
        if target.mc_service_id is not None and not self._may_decide(target.mc_service_id,
                                                                      req.FLOW, req):
            result = Result(ResultCode.NOT_AUTHORISED,
                            f"{target.mc_service_id} may not decide {req.FLOW}")
            self._respond(now, tx, self._auto_response(tx, result), Trigger.REFUSED, out)
            return
        self._put(tx, out)  # received: it waits for an ACMC
        self._route(now, tx, target, out)

    def _verify(self, peer: PeerSystem, req: AcmRequest) -> tuple[Result | None, Mapping | None]:
        """Why ``req`` is refused at verify (None: it passes), and for a profile update the
        mapping of its migrated user (the one its outcome updates, 10.17.7)."""
        if req.FLOW not in peer.flows:
            return Result(ResultCode.NOT_AUTHORISED, f"{peer.psi} may not send {req.FLOW}"), None
        requester = req.requester.mc_service_id
        if not matches_any(requester, peer.requesters):
            return Result(ResultCode.NOT_AUTHORISED,
                          f"{requester} may not send requests to this system"), None
        if isinstance(req, ProfileUpdateRequest):  # (no group-related ACM: no group check)
            m = self._partner_mapping(peer.psi, req.migrated_user_id)
            if m is None:
                return Result(ResultCode.UNKNOWN_USER,
                              f"{req.migrated_user_id} was not assigned to {peer.psi}"), None
            if m.removed:
                return Result(ResultCode.NOT_MIGRATED,
                              f"{req.migrated_user_id} is no longer migrated"), None
            return None, m
        # 10.17.4: the peer is the home system of the group(s) it asks about (decision)
        if (refusal := groups.peer_refusal(peer, req)) is not None:
            return refusal, None
        return None, None

    def _partner_mapping(self, peer: str, partner_id: str) -> Mapping | None:
        key = self._by_partner_id.get((_PARTNER, id_key(partner_id)))
        m = self._maps.get(key) if key is not None else None
        return m if m is not None and same(m.peer, peer) else None

    def _partner_decision(self, now: float, sender: str, resp: AcmResponse, out: AcmsActions
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
        key = self._legs.get((_PARTNER, tid))
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
        if not tx.allows(Trigger.DECISION):
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
        # the origin's id (checked when its request came) on the ACMC's checked response
        self._respond(now, tx, trusted_replace(resp, transaction_id=tx.transaction_id),
                      Trigger.DECISION, out)
        out.accept()

    def _respond(self, now: float, tx: Transaction, resp: AcmResponse, trigger: Trigger,
                 out: AcmsActions, mapping: Mapping | None = None) -> None:
        """Finish the partner side: apply the outcome, then send the response (step 8).
        ``mapping``: the profile update's mapping, when verify found it in this same call."""
        resp = self._apply_outcome(now, tx, resp, out, mapping)
        if tx.key in self._pending:
            self._drop_item(tx.key, out)
        self._drop_sends(tx, _DELIVER, out)
        give_up = now + self.config.timers.answer_grace
        tx = self._move(tx, trigger, out, response=resp, deadline=give_up)
        self._send(out, _ANSWER, _PEER, tx.peer, resp, tx, give_up_at=give_up)

    def _apply_outcome(self, now: float, tx: Transaction, resp: AcmResponse, out: AcmsActions,
                       mapping: Mapping | None = None) -> AcmResponse:
        """Partner side of 10.17.5 (assign / withdraw per user) and 10.17.7 (keep the agreed
        profile).  The ACMS, not the ACMC, assigns IDs and profiles."""
        req = tx.request
        ok = resp.result
        if isinstance(req, ProfileUpdateRequest):  # (no group-related ACM, 10.17.4)
            if ok.positive:
                m = mapping if mapping is not None else self._partner_mapping(
                    tx.peer, req.migrated_user_id)
                if m is not None and m.profile != req.profile:  # the same: nothing to store
                    self._put(m.evolve(profile=req.profile), out)
            return resp
        if isinstance(req, AddUserConfigurationRequest) and isinstance(
                resp, AddUserConfigurationResponse):
            return replace(resp, users=tuple(self._assign(tx.peer, u, ok, out)
                                             for u in req.users))
        if isinstance(req, RemoveUserConfigurationRequest) and isinstance(
                resp, RemoveUserConfigurationResponse):
            return replace(resp, users=tuple(self._withdraw(tx.peer, u, ok, out)
                                             for u in req.users))
        # 10.17.4: a success applies the membership or the provision (lab definition)
        for group in groups.applied(tx.peer, req, ok, now, self._groups.get):
            self._put(group, out)
        return resp

    def _assign(self, peer: str, primary_id: str, result: Result, out: AcmsActions
                ) -> UserAssignment:
        if not result.positive:
            return UserAssignment(primary_id, result)
        profile = self.config.migration.profile
        if profile is None:
            return UserAssignment(primary_id, Result(ResultCode.INVALID_PROFILE,
                                                     "no migration profile configured"))
        m = self._maps.get(mapping_key(_PARTNER, peer, primary_id))
        if m is None:
            # decision: {n} counts every ID this system ever assigned (mappings are kept), so
            # two primaries' users never get the same ID (the template must use {n})
            m = Mapping(_PARTNER, peer, primary_id,
                        self.config.migration.assign(primary_id, self._assigned + 1), profile)
        else:  # decision: re-adding reuses the earlier ID and keeps its profile
            m = m.evolve(removed=False)
        self._put(m, out)
        return UserAssignment(primary_id, Result(_SUCCESS), m.partner_id, m.profile)

    def _withdraw(self, peer: str, primary_id: str, result: Result, out: AcmsActions
                  ) -> UserRemoval:
        if not result.positive:
            return UserRemoval(primary_id, result)
        m = self._maps.get(mapping_key(_PARTNER, peer, primary_id))
        if m is None:
            return UserRemoval(primary_id, Result(ResultCode.UNKNOWN_USER))
        if m.removed:
            return UserRemoval(primary_id, Result(ResultCode.NOT_MIGRATED), m.partner_id)
        self._put(m.evolve(removed=True), out)
        return UserRemoval(primary_id, Result(_SUCCESS), m.partner_id)
