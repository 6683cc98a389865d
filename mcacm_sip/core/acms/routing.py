"""Routing to ACMCs: who decides a request (its target or the configured decider), FA routing
and the holder pick (TS 23.280 10.17.7.2 steps 4-5), deliver-or-queue, and the pending-data
procedures (10.17.3.1: notification on logon, paged download).
"""

from __future__ import annotations

from dataclasses import replace

from mcacm_sip.acm.model import (
    AcmRequest,
    AcmResponse,
    Addressee,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    PendingDataNotification,
    new_transaction_id,
)
from mcacm_sip.core import groups
from mcacm_sip.core.acms.intake import AcmsIntake
from mcacm_sip.core.events import AcmsActions, SubscribeFa
from mcacm_sip.core.identity import IdKey, id_key, same
from mcacm_sip.core.quota import flow_bytes, page
from mcacm_sip.core.state import (
    Hop,
    Outgoing,
    PendingItem,
    Purpose,
    Role,
    Transaction,
    Trigger,
)
from mcacm_sip.ids import unique_hex


class AcmsRouting(AcmsIntake):
    """Deliver to a logged-on ACMC or queue as pending; FA holders; logon, notify, download."""

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

    def _may_decide(self, user: str, request_flow: str, request: AcmRequest | None = None
                    ) -> bool:
        """Whether ``user`` is configured to decide requests of ``request_flow`` (and, given
        the request, its groups: 10.17.4, decision)."""
        u = self._users.get(id_key(user))
        return u is not None and request_flow in u.may_decide and (
            request is None or groups.may_decide(u, request))

    def _addr(self, user: str) -> str:
        """A local user as configured (the spelling the registrar knows), whatever spelling
        named them (decision: flows to an ACMC are addressed by the configured ID)."""
        known = self._users.get(id_key(user))
        return known.id if known is not None else user

    def _payload(self, tx: Transaction) -> AcmRequest | AcmResponse:
        """Partner: the request goes to an ACMC (under the ACMC-leg id); primary: the
        response does (under the requester's own id)."""
        if tx.role is Role.PARTNER:
            return replace(tx.request, transaction_id=tx.leg_id) if tx.leg_id else tx.request
        assert tx.response is not None
        return tx.response

    def _route(self, now: float, tx: Transaction, target: Addressee, out: AcmsActions) -> None:
        """Partner, 10.17.7.2 steps 4-5: by MC service ID if present, else by the functional
        alias's current holders that may decide the request."""
        user = target.mc_service_id
        if user is None:
            fa = target.functional_alias
            assert fa is not None  # Addressee guarantees one of the two
            self._subscribe(fa, out)
            self._via_fa.setdefault(id_key(fa), {})[tx.key] = None
            user = self._pick_holder(id_key(fa), tx.request)
            if user is None:
                # step 4: FA not currently active (no eligible holder logged on) -> stored
                # until one is
                self._queue(now, tx, fa, True, Trigger.ROUTE_FA, out)
                return
        self._deliver_or_queue(now, tx, user, out)

    def _deliver_or_queue(self, now: float, tx: Transaction, user: str, out: AcmsActions) -> None:
        user = self._addr(user)
        if id_key(user) in self._online:
            tx = self._move(tx, Trigger.ROUTE_ACMC, out, assignee=user)
            self._send(out, Purpose.DELIVER, Hop.ACMC, user, self._payload(tx), tx)
        else:
            # 10.17.3.1: the user is not logged on -> pending; notified on logon
            self._queue(now, tx, user, False, Trigger.ROUTE_PENDING, out)

    def _queue(self, now: float, tx: Transaction, owner: str, is_fa: bool, trigger: Trigger,
               out: AcmsActions) -> None:
        tx = self._move(tx, trigger, out, assignee=owner)
        self._drop_item(tx.key, out)
        self._put(PendingItem(tx.key, owner, is_fa, now, self._payload(tx)), out)

    def _pick_holder(self, fa: IdKey, request: AcmRequest) -> str | None:
        """23.280 10.17.7.2 step 4: a holder of ``fa`` that is logged on and may decide
        ``request_flow`` (holders without the right are skipped, decision); several: local
        policy ``first`` or ``round-robin`` (decision).  None: nobody eligible is logged on."""
        candidates = [h for h in self._holders.get(fa, ())
                      if id_key(h) in self._online
                      and self._may_decide(h, request.FLOW, request)]
        if not candidates:
            return None
        if self.config.fa_selection == "round-robin":
            turn = self._round_robin.get(fa, 0)
            self._round_robin[fa] = turn + 1
            return self._addr(candidates[turn % len(candidates)])
        return self._addr(candidates[0])

    def _subscribe(self, fa: str, out: AcmsActions) -> None:
        # 23.280 10.17.7.2 pre-conditions / 10.13.10: continuous subscription to our FA server
        if (key := id_key(fa)) not in self._subscribed:
            self._subscribed.add(key)
            out.add(SubscribeFa(fa))

    def _fa_changed(self, now: float, fa: str, holders: tuple[str, ...], out: AcmsActions) -> None:
        key = id_key(fa)
        for old in self._holders.get(key, ()):
            self._fas_of.get(id_key(old), set()).discard(key)
        self._holders[key] = holders
        for holder in holders:
            self._fas_of.setdefault(id_key(holder), set()).add(key)
        # 23.280 10.17.7.2 step 4: the FA became active -> deliver what was stored for it
        self._redeliver(now, key, out)

    def _redeliver(self, now: float, fa: IdKey, out: AcmsActions) -> None:
        """Requests routed by ``fa`` that wait for a holder: stored under the FA, or with a
        holder who is not logged on (any more) -- each goes to an eligible holder who is;
        re-delivery moves the right to decide (decision)."""
        keys = self._via_fa.get(fa)
        if not keys:
            return
        for key in list(keys):
            tx = self._tx.get(key)
            if tx is None or not tx.allows(Trigger.DECISION):
                del keys[key]  # decided, expired or pruned
                continue
            # stored under the FA: routed now; with a holder: re-assigned if they went offline
            trigger = Trigger.ROUTE_ACMC if tx.allows(Trigger.ROUTE_ACMC) else Trigger.REASSIGN
            if not tx.allows(trigger) or (trigger is Trigger.REASSIGN
                                          and id_key(tx.assignee or "") in self._online):
                continue  # on its way to, or with, a holder who is logged on
            user = self._pick_holder(fa, tx.request)
            if user is None:
                continue
            self._drop_item(tx.key, out)
            tx = self._move(tx, trigger, out, assignee=user)
            self._send(out, Purpose.DELIVER, Hop.ACMC, user, self._payload(tx), tx)
        if not keys:
            del self._via_fa[fa]

    def _logon(self, now: float, user: str, out: AcmsActions) -> None:
        key = id_key(user)
        self._online[key] = user
        self._offered.pop(key, None)  # a logon downloads everything again
        if (send_id := self._notifying.get(key)) is not None:
            self._drop_out(self._out[send_id], out)  # a logon notifies afresh
        self._notify(self._addr(user), out)  # 10.17.3.1: pending data notification on logon
        for fa in list(self._fas_of.get(key, ())):
            # decision: an eligible holder logged on -> what waits for the FA goes to them
            self._redeliver(now, fa, out)

    def _notify(self, user: str, out: AcmsActions,
                after_lost_page: tuple[float, float | None] | None = None) -> None:
        """10.17.3.1: pending ACM data notification, unless one is on its way to ``user``.

        ``after_lost_page`` ((now, the answer's Retry-After)): the logged-on ACMC refused a
        page for now (480 busy, 503, a timeout) and will not ask for it again, so it is told
        again -- not now but after the back-off over the pages refused in a row, or the
        Retry-After if longer (decision, docs/decisions.md "Pending data download pages")."""
        key = id_key(user)
        if key not in self._queues or key in self._notifying:
            return
        note = PendingDataNotification(new_transaction_id(), user)
        if after_lost_page is None:
            self._send(out, Purpose.NOTIFY, Hop.ACMC, user, note)
        elif key in self._online:
            lost = self._lost_pages[key] = self._lost_pages.get(key, 0) + 1
            now, retry_after = after_lost_page
            self._retry(now, Outgoing(unique_hex(), Purpose.NOTIFY, Hop.ACMC, user, note,
                                      attempts=lost), retry_after, out)

    def _download(self, now: float, sender: str, req: PendingDataDownloadRequest, out: AcmsActions
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
