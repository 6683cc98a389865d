"""Checks every incoming flow of either role passes: quotas, a repeated transaction id, the
refusal with its log line, whether an answer answers the request, and the answer this ACMS
gives itself.
"""

from __future__ import annotations

import logging

from mcacm_sip.acm.model import (
    AcmRequest,
    AcmResponse,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    RemoveUserConfigurationRequest,
    RemoveUserConfigurationResponse,
    Result,
)
from mcacm_sip.core import groups
from mcacm_sip.core.acms.outbox import AcmsOutbox
from mcacm_sip.core.acms.records import log
from mcacm_sip.core.events import AcmsActions
from mcacm_sip.core.identity import id_key, same
from mcacm_sip.core.quota import LISTING
from mcacm_sip.core.state import Transaction, answers, party, response_to


class AcmsIntake(AcmsOutbox):
    """What the primary and the partner role share when a flow arrives."""

    def _refuse(self, out: AcmsActions, status: int, text: str, tid: str, origin: str) -> None:
        """A refused flow: the SIP answer with its Warning, and one log line (decision):
        WARNING for a flow that contradicts what we hold (400: a peer's bug or a forgery),
        INFO for the authorisation and lookup answers (403, 404) any deployment sees."""
        log.log(logging.WARNING if status == 400 else logging.INFO,
                "refused %s from %s: %d %s", tid, origin, status, text,
                    extra={"event": "acm.refused", "transaction_id": tid, "origin": origin,
                           "status": status, "reason": text.split(":", 1)[0]})
        out.refuse(status, text)

    def _repeat(self, tx: Transaction, flow: AcmRequest, origin: str, out: AcmsActions) -> bool:
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

    def _over_quota(self, key: str, req: AcmRequest, peer: str | None, out: AcmsActions) -> bool:
        """A request that would open transaction ``key`` past a bound of ``[limits]`` is
        refused (413, or 503 + Retry-After) and nothing is stored (core/quota.py); a repeat
        of a transaction already kept is never refused here."""
        # (a request without a user list adds nothing of ours: no _local_answer_bytes call)
        local = self._local_answer_bytes(req) if peer is not None and type(req) in LISTING \
            else 0
        if key in self._tx or (refusal := self.quota.refusal(req, peer, local)) is None:
            return False
        log.warning("%s %s refused: %s", req.FLOW, req.transaction_id, refusal.warning,
                    extra={"event": "quota.refused", "peer": peer, "status": refusal.status})
        out.refuse(refusal.status, refusal.warning, refusal.retry_after)
        return True

    def _local_answer_bytes(self, req: AcmRequest) -> int:
        """Bytes the partner's own configuration puts into the answer to ``req`` (10.17.5.2):
        per listed user the ID it assigns (or keeps) and the ``[[migration]]`` profile, so
        quota admission counts them (an over-estimate for removals, which carry no profile)."""
        listed = getattr(req, "users", None)
        if not listed:  # (a profile update: no list to make)
            return 0
        users = [u for u in listed if isinstance(u, str)]
        if not users:
            return 0
        mig = self.config.migration
        profile = len(mig.profile.xml) if mig.profile is not None else 0
        n = self._assigned + len(users)
        return sum(len(mig.assign(u, n)) + profile for u in users)

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
        # 10.17.4: a group-related response echoes the request's group(s) (decision)
        return groups.mismatch(req, flow)

    def _auto_response(self, tx: Transaction, result: Result) -> AcmResponse:
        """An answer by this ACMS itself (10.17.3.2; verify failures; timers)."""
        return response_to(tx.request, party(self.config.handler_id), result)
