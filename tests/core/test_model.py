"""The proof of issue 12: a model-based (stateful hypothesis) test of the procedure's identity
and authority rules over the sans-I/O cores (docs/decisions.md "Procedure integrity", D1-D8).

Three MC systems (tests/core/harness.py ``three_systems``: two primaries and one partner, each
a peer of the other two) and their ACMCs, wired through the real codec.  Users draw transaction
ids from a pool of three, so the same id from two ACMCs, two systems, or a primary and a
partner-side ACMC is the common case.  The rules interleave requests (both directions), right
and wrong deciders, logons and logoffs, busy ACMCs refusing their next MESSAGEs for now (any,
or only pages or notifications), FA holder changes (holders with and without the decide
right, and one who is no ACM user), exact repeats and same-id-different-body messages, replayed
(reordered) and forged answers (another requester's target, another migrated user, the wrong
flow, the wrong peer), time, and ACMS restarts from the store.

After every step: a refused message changed nothing; every decision an ACMS accepted came from a
user it had asked; only users allowed to decide were asked; no user was shown a Result that is
not for their own request; no forged or wrong-decider text is in any state; each ACMS's store,
reloaded, gives the live core's state.  At the end (everyone logged off logs on -- a user
logged on already is not logged on again --, time run out): each request an ACMS accepted has
exactly one Result, at its requester.

Budget: a fixed seed and ``MCACM_MODEL_EXAMPLES`` examples (default 100) of up to
``MCACM_MODEL_STEPS`` steps (default 40): about 12 s in ``make test``.  A longer hunt::

    MCACM_MODEL_EXAMPLES=2000 MCACM_MODEL_STEPS=60 .venv/bin/python -m pytest -q \
        tests/core/test_model.py

``MCACM_MODEL_SEED`` (an integer) replaces the fixed seed with another one.  Every failure it
found is kept as a plain test in tests/core/test_model_regressions.py.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    GroupMembershipUpdateRequest,
    GroupMembershipUpdateResponse,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    InterconnectionGroupProvisionResponse,
    Party,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    Result,
    ResultCode,
)
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.config import Timers
from mcacm_sip.core.events import (
    AcceptMessage,
    Decide,
    Put,
    RefuseMessage,
    Remove,
    ReportKind,
    SendFlow,
    SubscribeFa,
)
from mcacm_sip.core.state import AWAITING_DECISION, Hop, Role, Transaction, response_to
from mcacm_sip.sip.uri import same_identity
from mcacm_sip.store import Store
from mcacm_sip.store.sqlite import SqliteStore

from .harness import (
    ALICE,
    ALICE2,
    BOB,
    BOB2,
    DAVE,
    DUTY,
    ERIN,
    FRANK,
    GHOST,
    MIKE,
    MIKE2,
    PARTNER,
    PRIMARY,
    SECOND,
    STRANGER,
    Answer,
    Net,
    three_systems,
)

pytestmark = pytest.mark.timeout(900)  # a failure's shrinking takes longer than a pass

TIMERS = Timers(decision_timeout=600.0, answer_grace=60.0, retry_initial=1.0, retry_max=8.0,
                pending_response_ttl=10.0**8, retention=300.0)
"""Short decision/answer timers and retention so that expiry and forgetting happen within a
run; a pending response lives longer than any run (so every Result can still be fetched)."""

TIDS = ("t1", "t2", "t3")
SYSTEMS = (PRIMARY, SECOND, PARTNER)
PRIMARY_USERS = (ALICE, BOB, ALICE2, BOB2)
PARTNER_USERS = (DAVE, ERIN, FRANK)
USERS = (*PRIMARY_USERS, DAVE, ERIN, FRANK, GHOST)
PROFILE_TARGETS = st.sampled_from((
    Addressee(DAVE), Addressee(ERIN), Addressee(functional_alias=DUTY), Addressee(DAVE, DUTY),
    Addressee(DAVE), Addressee(ERIN), Addressee(functional_alias=DUTY),
    Addressee(FRANK), Addressee(GHOST)))
"""Targets at the partner, mostly users who may decide (FRANK may not; GHOST is no ACM user)."""
OWN_MIGRANT = st.sampled_from((True, True, True, False))
"""Mostly the requester's own migrated user; else the other primary's (unknown-user)."""
HOLDERS = (DAVE, ERIN, FRANK, GHOST)
FORGED = "FORGED"
WRONG = "WRONG-DECIDER"
_NONCE = re.compile(r"req-\d+")


def _profile(nonce: str) -> str:
    return ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
            f"<Name>{nonce}</Name></mcptt-user-profile>")


def nonce_of(request: AcmRequest) -> str:
    """The model's name of a request, carried in its body (profile name or added user)."""
    if isinstance(request, ProfileUpdateRequest):
        text = request.profile.xml
    elif isinstance(request, InterconnectionGroupProvisionRequest):
        text = request.groups[0]
    else:
        text = request.users[0]
    found = _NONCE.search(text)
    assert found is not None, text
    return found.group(0)


def altered(request: AcmRequest) -> AcmRequest:
    """The same request (same id, same parties) with a different body."""
    if isinstance(request, ProfileUpdateRequest):
        return replace(request, profile=profile_from_xml(_profile(nonce_of(request) + "0")))
    if isinstance(request, InterconnectionGroupProvisionRequest):
        return replace(request, groups=(request.groups[0].replace("@", "0@", 1),))
    assert isinstance(request, AddUserConfigurationRequest | GroupMembershipUpdateRequest)
    return replace(request, users=(request.users[0].replace("@", "0@", 1),))


def same_body(a: AcmRequest, b: AcmRequest) -> bool:
    return replace(a, transaction_id="x") == replace(b, transaction_id="x")


@dataclass(frozen=True)
class Accepted:
    """A request the requester's ACMS accepted (200): it must end with one Result."""

    requester: str
    request: AcmRequest


class IntegrityModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stores: dict[str, Store] = {}
        self.net: Net = three_systems(TIMERS, self._store)
        self.accepted: dict[tuple[str, str], Accepted] = {}
        self.used: dict[str, set[str]] = {u: set() for u in USERS}
        self.partner_id = {PRIMARY: self._partner_id(PRIMARY, MIKE),
                           SECOND: self._partner_id(SECOND, MIKE2)}
        self.nonces = 0
        for user in USERS:
            self.net.logon(user)
        self.net.set_holders(PARTNER, DUTY, (FRANK, ERIN))
        self.checked_wire = 0
        self.checked_refusals = 0
        self.checked_asked = 0
        for (user, tid, flow) in self._sent_requests():  # the set-up's add-user requests
            self.accepted[(user, tid)] = Accepted(user, flow)

    def _store(self) -> Store:
        return SqliteStore(":memory:")

    def _partner_id(self, psi: str, user: str) -> str:
        return next(m.partner_id for m in self.net.acms[psi].mappings()
                    if m.primary_id == user)

    def _sent_requests(self) -> list[tuple[str, str, AcmRequest]]:
        return [(w.src, w.flow.transaction_id, w.flow) for w in self.net.wire
                if w.hop is Hop.ACMS and isinstance(w.flow, AcmRequest)
                and isinstance(w.verdict, AcceptMessage)]

    def _home(self, user: str) -> str:
        return self.net.acmc[user].config.acms_psi if user in self.net.acmc else PARTNER

    def _nonce(self) -> str:
        self.nonces += 1
        return f"req-{self.nonces}"

    # ------------------------------------------------------------------ requests

    def _send(self, user: str, request: AcmRequest) -> None:
        self.used[user].add(request.transaction_id)
        actions = self.net.acmc[user].send_request(request, self.net.clock.now)
        send = next(a for a in actions if isinstance(a, SendFlow))
        self.net.acmc_do(user, actions)
        if isinstance(self.net.verdict(send.send_id), AcceptMessage):
            self.accepted[(user, request.transaction_id)] = Accepted(user, request)

    @initialize(requests=st.lists(st.tuples(st.sampled_from(PRIMARY_USERS), st.sampled_from(TIDS),
                                            PROFILE_TARGETS, OWN_MIGRANT),
                                  min_size=1, max_size=4))
    def opening_requests(self, requests: list[tuple[str, str, Addressee, bool]]) -> None:
        """A few requests before anything else: the states worth exploring start there."""
        for user, tid, to, own_migrant in requests:
            self.profile_update(user, tid, to, own_migrant)

    @rule(user=st.sampled_from(PRIMARY_USERS), tid=st.sampled_from(TIDS), to=PROFILE_TARGETS,
          own_migrant=OWN_MIGRANT)
    def profile_update(self, user: str, tid: str, to: Addressee, own_migrant: bool) -> None:
        """10.17.7.2 step 1 from a primary user (sometimes naming the other system's migrant:
        unknown-user at the partner)."""
        if tid in self.used[user]:
            return
        home = self._home(user)
        other = SECOND if home == PRIMARY else PRIMARY
        migrant = self.partner_id[home if own_migrant else other]
        request = ProfileUpdateRequest(tid, self.net.acmc[user].me, to, migrant,
                                       profile_from_xml(_profile(self._nonce())))
        self._send(user, request)

    @rule(user=st.sampled_from(PARTNER_USERS), tid=st.sampled_from(TIDS),
          to=st.sampled_from((ALICE, BOB, ALICE2)))
    def add_user(self, user: str, tid: str, to: str) -> None:
        """10.17.5.2 the other way round: a partner-system user asks a primary system (which
        decides by hand), so our partner ACMS is also a primary with the same ids."""
        if tid in self.used[user]:
            return
        request = AddUserConfigurationRequest(
            tid, self.net.acmc[user].me, (f"sip:{self._nonce()}@partner.example",),
            Addressee(to))
        self._send(user, request)

    @rule(user=st.sampled_from(PRIMARY_USERS), tid=st.sampled_from(TIDS), to=PROFILE_TARGETS,
          operation=st.sampled_from(list(GroupOperation)), provision=st.booleans())
    def group_request(self, user: str, tid: str, to: Addressee, operation: GroupOperation,
                      provision: bool) -> None:
        """10.17.4: a group membership update of one of the requester's system's groups (the
        nonce is the affected user), or an interconnection group identity provision (the nonce
        is in the group's name)."""
        if tid in self.used[user]:
            return
        host = "primary.example" if self._home(user) == PRIMARY else "second.example"
        me = self.net.acmc[user].me
        request: AcmRequest = (
            InterconnectionGroupProvisionRequest(
                tid, me, to, (f"sip:grp-{self._nonce()}@{host}",)) if provision
            else GroupMembershipUpdateRequest(
                tid, me, to, f"sip:grp-1@{host}", (f"sip:{self._nonce()}@partner.example",),
                operation))
        self._send(user, request)

    # ------------------------------------------------------------------ decisions

    def _awaiting(self, user: str, tid: str) -> list[Transaction]:
        """Transactions at ``user``'s ACMS that wait for ``user``'s decision under the ACMC-leg
        id ``tid`` (D2)."""
        return [tx for tx in self.net.acms[self._home(user)].transactions()
                if tx.role is Role.PARTNER and tx.state in AWAITING_DECISION
                and tx.assignee is not None and same_identity(tx.assignee, user)
                and tx.leg == tid]

    @precondition(lambda self: any(self.net.to_decide.values()))
    @rule(data=st.data(), approve=st.booleans())
    def decide(self, data: st.DataObject, approve: bool) -> None:
        """23.280 10.17.7.2 steps 6-7: a user decides a request their ACMC was given."""
        user = data.draw(st.sampled_from(sorted(u for u, q in self.net.to_decide.items() if q)))
        queue = self.net.to_decide[user]
        request = queue.pop(data.draw(st.integers(0, len(queue) - 1)))
        # (the ACMC may still hold an older request under the same id, which it decides now)
        mine = [tx for tx in self._awaiting(user, request.transaction_id)
                if same_body(tx.request, request)]
        actions = self.net.acmc[user].decide(
            request.transaction_id, approve, f"decided {nonce_of(request)} by {user}",
            self.net.clock.now)
        send = next(a for a in actions if isinstance(a, SendFlow))
        self.net.acmc_do(user, actions)
        verdict = self.net.verdict(send.send_id)
        if len(mine) == 1 and self._home(user) not in self.net.down:
            # D4: the party the request was delivered to decides
            assert isinstance(verdict, AcceptMessage), (user, request.transaction_id, verdict)

    @precondition(lambda self: self.net.asked)
    @rule(data=st.data(), forge_handler=st.booleans())
    def wrong_decider(self, data: st.DataObject, forge_handler: bool) -> None:
        """D4: a decision from a user the request was never delivered to (with or without the
        general right to decide; or a stranger), naming itself or the asked user as handler."""
        asked_user, request = data.draw(st.sampled_from(self.net.asked))
        home = self._home(asked_user)
        tid = request.transaction_id
        # never asked under this id, and not the one it waits for (queued, not yet downloaded)
        asked = {u for u, r in self.net.asked if r.transaction_id == tid and self._home(u) == home}
        asked |= {tx.assignee for tx in self.net.acms[home].transactions()
                  if tx.role is Role.PARTNER and tx.assignee is not None and tx.leg == tid}
        candidates = [u for u in (*USERS, STRANGER) if self._home(u) == home
                      and not any(same_identity(u, a) for a in asked)]
        if not candidates:
            return
        wrong = data.draw(st.sampled_from(candidates))
        handler = Party(asked_user if forge_handler else wrong)
        response = response_to(request, handler, Result(ResultCode.SUCCESS, f"{WRONG} {wrong}"))
        verdict = self.net.inject(wrong, Hop.ACMS, home, response)
        # D4: 403 whether or not the id exists (no hint), as for a stranger
        assert isinstance(verdict, RefuseMessage) and verdict.status == 403, verdict

    # ------------------------------------------------------------------ peers

    def _forwarded(self) -> list[int]:
        """Wire indexes of requests a primary ACMS forwarded and the partner accepted."""
        return [i for i, w in enumerate(self.net.wire)
                if w.hop is Hop.PEER and isinstance(w.flow, AcmRequest)
                and isinstance(w.verdict, AcceptMessage)]

    @precondition(lambda self: self._forwarded())
    @rule(data=st.data(), kind=st.sampled_from(("target", "migrated", "peer", "flow",
                                                "indication", "group")))
    def forged_answer(self, data: st.DataObject, kind: str) -> None:
        """D3: an answer to a forwarded request that does not answer it: another requester as
        target, another migrated user, another flow, or the right answer from the wrong peer."""
        w = self.net.wire[data.draw(st.sampled_from(self._forwarded()))]
        assert isinstance(w.flow, AcmRequest)
        request, primary, partner = w.flow, w.src, w.dst
        third = next(s for s in SYSTEMS if s not in (primary, partner))
        # D2/D3: the primary looks the answer up by the id it forwarded under (the peer leg)
        holders = [tx for tx in self.net.acms[primary].transactions()
                   if tx.role is Role.PRIMARY and tx.leg == request.transaction_id]
        if holders and not any(same_body(tx.request, request) for tx in holders):
            return  # the id now names a later transaction: a "forgery" could be its answer
        result = Result(ResultCode.SUCCESS, f"{FORGED} {kind}")
        answer = response_to(request, Party(partner), result)
        sender, expected = partner, 400
        if kind == "target":
            other = data.draw(st.sampled_from(
                [u for u in USERS if not same_identity(u, request.requester.mc_service_id)]))
            answer = replace(answer, target=Addressee(other))
        elif kind == "migrated":
            if not isinstance(answer, ProfileUpdateResponse):
                return
            other = data.draw(st.sampled_from(
                [m for m in (*self.partner_id.values(), MIKE, MIKE2)
                 if not same_identity(m, answer.migrated_user_id)]))
            answer = replace(answer, migrated_user_id=other)
        elif kind == "group":  # 10.17.4: the echo of the request's group(s) (decision)
            if isinstance(answer, GroupMembershipUpdateResponse):
                answer = replace(answer, group_id=answer.group_id.replace("@", "x@", 1))
            elif isinstance(answer, InterconnectionGroupProvisionResponse):
                answer = replace(answer, groups=(*answer.groups, "sip:grp-x@primary.example"))
            else:
                return
        elif kind == "peer":
            sender, expected = third, 403
        elif kind == "flow":
            answer = (AddUserConfigurationResponse(answer.transaction_id, answer.handler,
                                                   answer.target, result)
                      if isinstance(answer, ProfileUpdateResponse)
                      else ProfileUpdateResponse(answer.transaction_id, answer.handler,
                                                 answer.target, MIKE, result))
        forged: AcmFlow = answer
        if kind == "indication":
            forged = ProcessIndication(request.transaction_id, third, request.FLOW)
            sender, expected = third, 403
        verdict = self.net.inject(sender, Hop.PEER, primary, forged)
        assert isinstance(verdict, RefuseMessage), (kind, verdict)
        assert verdict.status == (expected if holders else 404), (kind, verdict)

    def _accepted_wire(self) -> list[int]:
        return [i for i, w in enumerate(self.net.wire) if isinstance(w.verdict, AcceptMessage)]

    @precondition(lambda self: self._accepted_wire())
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A message that was accepted before arrives again, late (duplicate, reordered)."""
        w = self.net.wire[data.draw(st.sampled_from(self._accepted_wire()))]
        if w.src not in self.net.acms and w.src not in self.net.acmc:
            return
        verdict = self.net.inject(w.src, w.hop, w.dst, w.flow)
        if w.hop is Hop.ACMS and isinstance(w.flow, AcmRequest):
            assert isinstance(verdict, AcceptMessage), verdict  # D5: an exact repeat is idempotent

    @precondition(lambda self: self._requests_received())
    @rule(data=st.data())
    def same_id_other_body(self, data: st.DataObject) -> None:
        """D5: an id still in use by the same origin, with another body: 400
        transaction-id-reused, nothing changed (at the primary ACMS, the partner ACMS and the
        ACMC)."""
        w = self.net.wire[data.draw(st.sampled_from(self._requests_received()))]
        assert isinstance(w.flow, AcmRequest)
        request = w.flow
        if w.hop is Hop.ACMC:
            known = request.transaction_id in {r.transaction_id
                                               for r in self.net.acmc[w.dst].awaiting_decision}
        else:
            # D1: at the primary the origin is the sending user, at the partner the peer
            role = Role.PRIMARY if w.hop is Hop.ACMS else Role.PARTNER
            known = any(tx.role is role and tx.transaction_id == request.transaction_id
                        and same_identity(tx.origin, w.src) and same_body(tx.request, request)
                        for tx in self.net.acms[w.dst].transactions())
        other = altered(request)
        if not known or (w.hop is Hop.ACMC and w.dst not in self.net.online) or any(
                a.answers(other) for a in self.net.scripted.get(w.dst, ())):
            return  # (a busy ACMC answers 480 before it reads the body)
        verdict = self.net.inject(w.src, w.hop, w.dst, other)
        assert isinstance(verdict, RefuseMessage) and verdict.status == 400, (w.hop, verdict)
        assert verdict.warning.startswith("transaction-id-reused"), verdict

    def _requests_received(self) -> list[int]:
        return [i for i, w in enumerate(self.net.wire)
                if isinstance(w.flow, AcmRequest) and isinstance(w.verdict, AcceptMessage)]

    # ------------------------------------------------------------------ the world

    @rule(user=st.sampled_from(USERS))
    def logon(self, user: str) -> None:
        self.net.logon(user)

    @rule(user=st.sampled_from(USERS))
    def logoff(self, user: str) -> None:
        self.net.logoff(user)

    @rule(holders=st.lists(st.sampled_from(HOLDERS), unique=True, max_size=3))
    def holders_change(self, holders: list[str]) -> None:
        """The FA controlling server reports DUTY's new holders (FaHoldersChanged)."""
        self.net.set_holders(PARTNER, DUTY, tuple(holders))

    @rule(user=st.sampled_from(USERS), n=st.integers(1, 3),
          answer=st.sampled_from((480, 503)),
          flows=st.sampled_from(((), ("pending-data-download-response",),
                                 ("pending-data-notification",))))
    def busy(self, user: str, n: int, answer: int, flows: tuple[str, ...]) -> None:
        """A user's ACMC refuses its next ``n`` MESSAGEs for now (busy, or its host
        overloaded, with a Retry-After): whatever they carry, or only pages or only
        notifications (as an ACMC busy with what it was given already)."""
        scripted = Answer(answer, retry_after=5.0 if answer == 503 else None, flows=flows)
        self.net.scripted.setdefault(user, []).extend([scripted] * n)

    @rule(seconds=st.sampled_from((1.0, 30.0, 300.0, 700.0)))
    def time_passes(self, seconds: float) -> None:
        self.net.advance(seconds)

    @rule(psi=st.sampled_from(SYSTEMS))
    def restart(self, psi: str) -> None:
        """An ACMS crashes and starts from its store (AcmsCore.restore + start)."""
        self.net.restart(psi)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def refusals_change_nothing(self) -> None:
        """D3/D5/D8: a refused message leaves every state as it was and sends nothing."""
        for w in self.net.wire[self.checked_refusals:]:
            if isinstance(w.verdict, RefuseMessage):
                done = [a for a in w.actions
                        if isinstance(a, Put | Remove | SendFlow | SubscribeFa | Decide)]
                assert not done, (w.src, w.dst, w.flow, w.verdict, done)
        self.checked_refusals = len(self.net.wire)

    @invariant()
    def decisions_only_from_the_asked(self) -> None:
        """D4: an ACMS accepts a decision only from a user it asked (delivered it to)."""
        for w in self.net.wire[self.checked_wire:]:
            if w.hop is Hop.ACMS and isinstance(w.flow, AcmResponse) \
                    and isinstance(w.verdict, AcceptMessage):
                assert any(same_identity(u, w.src) and r.transaction_id == w.flow.transaction_id
                           for u, r in self.net.asked), (w.src, w.flow)
                assert WRONG not in (w.flow.result.text or ""), w.flow
        self.checked_wire = len(self.net.wire)

    @invariant()
    def only_deciders_are_asked(self) -> None:
        """D6 / rule 5: a request goes to decide only to a user allowed to decide it."""
        for user, request in self.net.asked[self.checked_asked:]:
            config = self.net.acms[self._home(user)].config
            assert any(same_identity(u.id, user) and request.FLOW in u.may_decide
                       for u in config.users), (user, request)
        self.checked_asked = len(self.net.asked)

    @invariant()
    def results_reach_only_their_requester(self) -> None:
        """Rules 1-3: a user is shown only Results of their own accepted requests, each once,
        never forged or from a wrong decider, and a decision's Result is for the very request
        that was decided."""
        for user in USERS:
            reports = [r for r in self.net.reports[user] if r.kind is ReportKind.RESPONSE]
            counts = Counter(r.transaction_id for r in reports)
            assert all(n == 1 for n in counts.values()), (user, counts)
            for report in reports:
                key = (user, report.transaction_id)
                assert key in self.accepted, (user, report.flow)
                flow = report.flow
                assert isinstance(flow, AcmResponse)
                text = flow.result.text or ""
                assert FORGED not in text and WRONG not in text, (user, flow)
                request = self.accepted[key].request
                assert isinstance(flow, ProfileUpdateResponse) == isinstance(
                    request, ProfileUpdateRequest), (user, request, flow)
                if isinstance(flow, ProfileUpdateResponse):
                    assert isinstance(request, ProfileUpdateRequest)
                    assert same_identity(flow.migrated_user_id, request.migrated_user_id)
                if isinstance(flow, GroupMembershipUpdateResponse):  # 10.17.4 echo
                    assert isinstance(request, GroupMembershipUpdateRequest), (user, flow)
                    assert (flow.group_id, flow.operation, flow.users) == (
                        request.group_id, request.operation, request.users), (user, flow)
                if isinstance(flow, InterconnectionGroupProvisionResponse):
                    assert isinstance(request, InterconnectionGroupProvisionRequest)
                    assert flow.groups == request.groups, (user, flow)
                decided = _NONCE.search(text)
                if text.startswith("decided") and decided is not None:
                    assert decided.group(0) == nonce_of(request), (user, request, flow)

    @invariant()
    def no_forgery_in_any_state(self) -> None:
        for core in self.net.acms.values():
            for tx in core.transactions():
                text = tx.response.result.text if tx.response is not None else None
                assert FORGED not in (text or "") and WRONG not in (text or ""), tx

    @invariant()
    def store_reloads_to_the_live_state(self) -> None:
        """What a restart would continue from is what the live core has."""
        for psi, core in self.net.acms.items():
            again = AcmsCore.restore(core.config, self.net.stores[psi].load())
            reloaded, live = set(again.transactions()), set(core.transactions())
            assert reloaded == live, (psi, reloaded - live, live - reloaded)
            assert set(again.mappings()) == set(core.mappings()), psi
            assert set(again.groups()) == set(core.groups()), psi
            owners = {*USERS, DUTY, *(tx.assignee for tx in core.transactions()
                                      if tx.assignee is not None)}
            for owner in owners:
                assert again.pending_for(owner) == core.pending_for(owner), (psi, owner)

    def teardown(self) -> None:
        """Everyone logged off logs on and every timer runs out: each accepted request has
        its Result.  A user logged on already is not logged on again: what waits for them
        must reach them without a new logon (a page they refused while busy, say)."""
        net = self.net
        for user in USERS:
            if user not in net.online:
                net.logon(user)
        for _ in range(4):
            net.advance(TIMERS.answer_timeout + TIMERS.retention)
        for (user, tid), accepted in self.accepted.items():
            results = [r for r in net.reports[user]
                       if r.kind is ReportKind.RESPONSE and r.transaction_id == tid]
            assert len(results) == 1, (user, tid, accepted.request, net.reports[user])


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


IntegrityModel.TestCase.settings = settings(
    max_examples=_setting("MCACM_MODEL_EXAMPLES", 100),
    stateful_step_count=_setting("MCACM_MODEL_STEPS", 40),
    derandomize="MCACM_MODEL_SEED" not in os.environ,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestIntegrityModel = IntegrityModel.TestCase
if "MCACM_MODEL_SEED" in os.environ:
    from hypothesis import seed

    TestIntegrityModel = seed(int(os.environ["MCACM_MODEL_SEED"]))(TestIntegrityModel)
