"""The conformance catalogue: each scenario's id, title, the clause it checks, the roles it
applies to and what it needs from the profile.  Data and pure functions only; the runner
(:mod:`.runner`) plays them, docs/conformance.md shows them (:func:`markdown_table`).

What a scenario needs is a tuple of tokens, per role:

- a :class:`~.profile.Fixtures` field name (``decider``, ``fa_held`` ...): it must be set;
- ``migrated``: a partner-assigned ID to update (``migrated_user``, or learnt from
  ``add-user``, which needs ``users``);
- ``manual:FLOW``: the peer's policy hands FLOW to a user (``[partner.policy]``);
- ``udp``: the run uses UDP (retransmissions are a UDP matter, RFC 3261 17.1.2.1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mcacm_sip.conformance.profile import Fixtures, Role
from mcacm_sip.sip import Transport

PU = "profile-update-request"
ADD = "add-user-configuration-request"
REMOVE = "remove-user-configuration-request"
PROVISION = "interconnection-group-provision-request"


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    title: str
    clause: str
    needs: Mapping[Role, tuple[str, ...]]
    """Role -> what the scenario needs from that role's fixtures; the keys are the roles it
    applies to."""
    expect: str
    """What a passing peer does (for the documentation)."""

    @property
    def roles(self) -> tuple[Role, ...]:
        return tuple(self.needs)


def _s(id: str, title: str, clause: str, expect: str, *, partner: tuple[str, ...] | None = None,
       primary: tuple[str, ...] | None = None) -> Scenario:
    needs: dict[Role, tuple[str, ...]] = {}
    if partner is not None:
        needs["partner"] = partner
    if primary is not None:
        needs["primary"] = primary
    return Scenario(id, title, clause, needs, expect)


CATALOGUE: tuple[Scenario, ...] = (
    _s("add-user", "add user configuration, answered per user", "23.280 10.17.5.2",
       "partner: 2xx, process indication, then the response with a partner ID and profile per "
       "accepted user (or the Result its policy gives); primary: forwards the request to the "
       "partner PSI and delivers the partner's response to the requesting ACMC",
       partner=("requester", "users"), primary=("requester", "users")),
    _s("profile-update-auto", "profile update handled automatically by local policy",
       "23.280 10.17.3.2",
       "2xx, process indication, response success without any delivery to a partner user",
       partner=("requester", "migrated", "routine_profile")),
    _s("profile-update-approve", "profile update approved by a partner user",
       "23.280 10.17.7.2",
       "partner: the request reaches the deciding user's ACMC unchanged; its approval comes "
       "back as the response (handler: that user); primary: the partner's success reaches the "
       "requesting ACMC",
       partner=("requester", "migrated", "decider", "manual:" + PU),
       primary=("requester", "target")),
    _s("profile-update-reject", "profile update rejected by a partner user",
       "23.280 10.17.7.2",
       "as approve, with Result rejected-by-user end to end",
       partner=("requester", "migrated", "decider", "manual:" + PU),
       primary=("requester", "target")),
    _s("fa-one-holder", "request to a functional alias reaches its holder",
       "23.280 10.17.7.2 step 4; 24.379 9A",
       "partner: the request addressed to the FA reaches the FA's only holder; primary: the "
       "request keeps the FA as target on its way to the partner, the answer reaches the ACMC",
       partner=("requester", "migrated", "decider", "fa_held", "manual:" + PU),
       primary=("requester", "target_fa")),
    _s("fa-no-holder", "request to a functional alias nobody holds is kept",
       "23.280 10.17.7.2 step 4",
       "2xx and the process indication; no response while nobody holds the FA",
       partner=("requester", "migrated", "fa_unheld", "manual:" + PU)),
    _s("pending-request", "pending ACM data for a logged-off user, downloaded on logon",
       "23.280 10.17.3.1",
       "partner: a request for a logged-off decider is queued; on REGISTER the ACMS sends a "
       "pending-data notification and the download carries the request; primary: the same "
       "for a response while the requester is logged off",
       partner=("requester", "migrated", "decider", "manual:" + PU),
       primary=("requester", "target")),
    _s("unknown-user", "profile update for a user the partner never assigned",
       "23.280 10.17.7.2 step 4",
       "partner: Result unknown-user; primary: the partner's unknown-user reaches the ACMC",
       partner=("requester", "unknown_user"), primary=("requester", "target")),
    _s("not-authorised-requester", "request from a requester the system does not authorise",
       "23.280 10.17.7.2 steps 2, 4",
       "403 or Result not-authorised; primary: nothing is forwarded to the partner",
       partner=("unauthorised_requester", "users"),
       primary=("unauthorised_requester", "users")),
    _s("not-authorised-peer", "request from an ACMS that is not a configured peer",
       "23.280 10.17.7.2 step 4",
       "403 (or a not-authorised Result); nothing else",
       partner=("requester", "users")),
    _s("partner-refuses", "partner refuses the forwarded request with 403",
       "RFC 3261 21.4.4; 23.280 10.17.7.2 step 9",
       "the requesting ACMC gets a negative Result", primary=("requester", "target")),
    _s("partner-silent", "partner never answers the forwarded request",
       "23.280 10.17.7.2 step 9",
       "the requesting ACMC gets a negative Result (expired) after the peer's answer timeout",
       primary=("requester", "target", "answer_timeout")),
    _s("invalid-document", "a document that fails the schema", "RFC 3261 21.4.1",
       "400 (a Warning names the element); nothing is processed",
       partner=("requester", "users"), primary=("requester", "users")),
    _s("unknown-content-type", "a body of an unknown Content-Type",
       "RFC 3261 21.4.13; RFC 3428 7",
       "415 with an Accept header; nothing is processed",
       partner=("requester", "users"), primary=("requester", "users")),
    _s("duplicate", "the same transaction id twice (a new SIP transaction)",
       "23.280 10.17.2 transaction id",
       "both answered 2xx, the request is processed once (one delivery to the decider, one "
       "forward to the partner)",
       partner=("requester", "migrated", "decider", "manual:" + PU),
       primary=("requester", "target")),
    _s("retransmission", "the same SIP request bytes again", "RFC 3261 17.2.2",
       "the same final status again, one process indication / one forward",
       partner=("requester", "unknown_user", "udp"), primary=("requester", "target", "udp")),
    _s("wrong-answer", "an answer that does not answer the request is refused",
       "23.280 10.17.2.16, 10.17.7.2 steps 8-9",
       "primary: a response from the partner naming another requester as target, and one "
       "naming another migrated user, are each refused with 4xx (and change nothing); the "
       "right response then completes the transaction: the ACMC gets its Result",
       primary=("requester", "target")),
    _s("same-id-other-body", "the same transaction id with another body",
       "23.280 10.17.2 transaction id",
       "partner: a request under an id in use with a different body is refused with 400, an "
       "exact repeat is answered 2xx; the first request alone is delivered to the decider, "
       "once, and its decision completes it",
       partner=("requester", "migrated", "decider", "manual:" + PU)),
    _s("decision-not-asked", "a decision from a user the request was not delivered to",
       "23.280 10.17.7.2 steps 5-7",
       "partner: a decision by another user who may decide such requests, but was not "
       "asked (naming itself or the asked user as handler), is refused with 403 and changes "
       "nothing; the asked decider's decision completes the transaction",
       partner=("requester", "migrated", "decider", "other_decider", "manual:" + PU)),
    _s("remove-user", "remove user configuration, answered per user", "23.280 10.17.5",
       "partner: 2xx, process indication, response with a Result per user; primary: forwards "
       "and delivers the response",
       partner=("requester", "users"), primary=("requester", "users")),
    _s("group-update-auto", "group membership update handled automatically by local policy",
       "23.280 10.17.4, 10.17.3.2",
       "partner: 2xx, process indication, response success from the ACMS itself (no partner "
       "user sees the request), echoing the request's group, operation and users",
       partner=("requester", "auto_group", "group_users")),
    _s("group-update-decided", "group membership update decided by a partner user",
       "23.280 10.17.4",
       "partner: the request reaches the deciding user's ACMC unchanged; its approval comes "
       "back as the response (handler: that user) echoing group, operation and users; "
       "primary: forwarded unchanged, the partner's success reaches the requesting ACMC",
       partner=("requester", "group", "group_users", "decider"),
       primary=("requester", "group", "group_users", "target")),
    _s("group-not-authorised", "group membership update for a group not allowed",
       "23.280 10.17.4.2.2 step 2",
       "partner: a group whose home is not the requesting system is refused (403 or Result "
       "not-authorised) and reaches no user; primary: a requester not allowed the group gets "
       "403 and nothing is forwarded",
       partner=("requester", "foreign_group", "group_users"),
       primary=("requester", "foreign_group", "group_users", "target")),
    _s("group-wrong-answer", "a group response echoing another group or operation is refused",
       "23.280 10.17.4; 10.17.2.16",
       "partner: our decider's response naming another group, and one naming the other "
       "operation, are each refused with 4xx; primary: the same for the partner's responses; "
       "the right response then completes the transaction",
       partner=("requester", "group", "group_users", "decider"),
       primary=("requester", "group", "group_users", "target")),
    _s("group-provision", "interconnection group identity provision via a functional alias",
       "23.280 10.17.4.2.2; 24.379 9A",
       "partner: the provision addressed to an FA reaches its only holder, whose approval "
       "comes back (handler: the holder and the FA) echoing the groups; primary: forwarded "
       "with the FA as target, the partner's success reaches the ACMC",
       partner=("requester", "group", "decider", "fa_held", "manual:" + PROVISION),
       primary=("requester", "group", "target_fa")),
)

BY_ID: dict[str, Scenario] = {s.id: s for s in CATALOGUE}


def not_applicable(scenario: Scenario, role: Role, fixtures: Fixtures | None,
                   transport: Transport) -> str | None:
    """Why ``scenario`` does not apply to this peer (None: it applies)."""
    if role not in scenario.needs:
        return f"only for role {', '.join(scenario.roles)}"
    if fixtures is None:
        return f"the profile has no [{role}] table"
    for token in scenario.needs[role]:
        if token == "udp":
            if transport != "udp":
                return f"retransmissions are a UDP matter (transport {transport})"
        elif token == "migrated":
            if not (fixtures.migrated_user or fixtures.users):
                return f"[{role}] names neither migrated_user nor users"
        elif token.startswith("manual:"):
            flow = token.split(":", 1)[1]
            if fixtures.policy.get(flow, "manual") != "manual":
                return f"[{role}.policy] {flow} is {fixtures.policy[flow]}, not manual"
        elif not getattr(fixtures, token):
            return f"[{role}] {token} is not set"
    return None


def scenarios_for(role: Role, only: tuple[str, ...] = ()) -> tuple[Scenario, ...]:
    """The scenarios of ``role`` (those named in ``only``, if any), in catalogue order.
    Raises KeyError naming an unknown id."""
    for wanted in only:
        if wanted not in BY_ID:
            raise KeyError(wanted)
    return tuple(s for s in CATALOGUE if role in s.needs and (not only or s.id in only))


def cites(scenario: Scenario, clause: str) -> bool:
    """Whether ``scenario`` checks ``clause`` or a sub-clause of it: ``10.17.7`` selects the
    scenarios citing 10.17.7.2; ``21.4`` those citing RFC 3261 21.4.4 (numbers compared as
    dotted paths, so 10.17.5 does not select 10.17.52)."""
    wanted = clause.strip().split(".")
    cited = re.findall(r"\d+(?:\.\d+)+", scenario.clause)
    return any(c.split(".")[:len(wanted)] == wanted for c in cited)


def select(role: Role, names: Sequence[str] = (), clauses: Sequence[str] = ()
           ) -> tuple[Scenario, ...]:
    """The scenarios of ``role`` named in ``names`` or citing one of ``clauses`` (all of the
    role's if both are empty), in catalogue order.  Raises KeyError naming an unknown id."""
    chosen = scenarios_for(role, tuple(names)) if names else ()
    if clauses:
        chosen += tuple(s for s in scenarios_for(role) if any(cites(s, c) for c in clauses))
    elif not names:
        return scenarios_for(role)
    ids = {s.id for s in chosen}
    return tuple(s for s in CATALOGUE if s.id in ids)


def markdown_table() -> str:
    """The catalogue as the Markdown table of docs/conformance.md."""
    rows = ["| id | title | clause | a passing peer | needs, per role |",
            "|---|---|---|---|---|"]
    for s in CATALOGUE:
        needs = "; ".join(f"{role}: " + ", ".join(f"`{t}`" for t in tokens)
                          for role, tokens in s.needs.items())
        rows.append(f"| `{s.id}` | {s.title} | {s.clause} | {s.expect} | {needs} |")
    return "\n".join(rows) + "\n"


__all__ = ["BY_ID", "CATALOGUE", "Scenario", "cites", "markdown_table", "not_applicable",
           "scenarios_for", "select"]
