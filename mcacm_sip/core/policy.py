"""Local policy of a partner ACMS: automatic handling (23.280 10.17.3, 10.17.3.2).

An ordered list of rules; the first rule whose every condition holds decides.  No rule matches:
``manual`` (an ACMC decides).  Conditions (all optional, absent = any):

- ``flow``: the request's flow name (``profile-update-request`` ...), ``*`` for any;
- ``requester``, ``target``, ``migrated_user``: URI patterns (``sip:*@primary.example``, or ``*``
  for any) on the requester's MC service ID, on the target's MC service ID *or* functional
  alias, and on the migrated user id (for add/remove: every listed user must match); each part
  is compared as RFC 3261 19.1.4 compares it (host case-insensitive, escapes decoded:
  :func:`mcacm_sip.sip.uri.uri_glob_match`);
- ``profile_contains``: the local name of an element that must occur in the profile, any
  namespace prefix (e.g. ``PrivateCall``);
- ``profile_regex``: a Python regular expression searched in the profile's canonical XML.

- ``group``: a URI pattern on the MC service group ID of a group-related request (10.17.4);
  for an interconnection group identity provision every listed group must match;
- ``operation``: ``add`` or ``delete`` (group membership update);
- ``urgency``: ``low``, ``normal`` or ``high`` (group membership update; a request without
  urgency counts as ``normal``).

Profile conditions never match a request that carries no profile (add/remove, group requests);
group conditions never match a request that is not group-related, ``operation`` and ``urgency``
only a group membership update, ``migrated_user`` no group-related request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mcacm_sip.acm.model import (
    AcmRequest,
    GroupMembershipUpdateRequest,
    InterconnectionGroupProvisionRequest,
    ProfileUpdateRequest,
    Urgency,
)
from mcacm_sip.core.identity import matches_pattern


class PolicyAction(StrEnum):
    APPROVE = "approve"
    """Answer success automatically (10.17.3.2), then 10.17.7.2 step 8."""
    REJECT = "reject"
    """Answer rejected-by-policy automatically, then step 8."""
    MANUAL = "manual"
    """Verification by an ACMC (10.17.7.2 step 4, second branch)."""


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One local-policy rule (see the module docstring)."""

    action: PolicyAction
    flow: str = "*"
    requester: str | None = None
    target: str | None = None
    migrated_user: str | None = None
    profile_contains: str | None = None
    profile_regex: str | None = None
    group: str | None = None
    operation: str | None = None
    urgency: str | None = None
    reason: str | None = None
    """Text put in the Result of an automatic answer."""
    _element: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _grouped: bool = field(init=False, repr=False, compare=False)
    """Whether the rule has a condition on group-related requests (``_group_matches``)."""

    def __post_init__(self) -> None:
        element = None
        if self.profile_contains is not None:
            element = re.compile(rf"<(?:[\w.-]+:)?{re.escape(self.profile_contains)}[\s/>]")
        # re.error on a bad pattern: the config loader turns it into a ConfigError
        regex = re.compile(self.profile_regex) if self.profile_regex is not None else None
        object.__setattr__(self, "_element", element)
        object.__setattr__(self, "_regex", regex)
        object.__setattr__(self, "_grouped", self.group is not None
                           or self.operation is not None or self.urgency is not None)

    def matches(self, request: AcmRequest) -> bool:
        if self.flow not in ("*", request.FLOW):
            return False
        if self.requester is not None and not matches_pattern(
            request.requester.mc_service_id, self.requester
        ):
            return False
        if self.target is not None:
            ids = (request.target.mc_service_id, request.target.functional_alias) \
                if request.target is not None else ()
            if not any(i is not None and matches_pattern(i, self.target) for i in ids):
                return False
        if self.migrated_user is not None:
            if isinstance(request, GroupMembershipUpdateRequest
                          | InterconnectionGroupProvisionRequest):
                return False
            users = (request.migrated_user_id,) if isinstance(request, ProfileUpdateRequest) \
                else request.users
            if not all(matches_pattern(u, self.migrated_user) for u in users):
                return False
        if self._grouped and not self._group_matches(request):
            return False
        if self._element is not None or self._regex is not None:
            if not isinstance(request, ProfileUpdateRequest):
                return False
            xml = request.profile.xml
            if self._element is not None and not self._has_element(xml):
                return False
            if self._regex is not None and not self._regex.search(xml):
                return False
        return True

    def _has_element(self, xml: str) -> bool:
        """``self._element.search(xml)``, begun where a match can first begin: each match
        holds the name (``profile_contains``) and begins at the ``<`` nearest before it (the
        prefix between them holds none), so none begins before the ``<`` nearest before
        the name's first occurrence (tests/core/test_config_policy.py)."""
        assert self._element is not None and self.profile_contains is not None
        at = xml.find(self.profile_contains)
        return at >= 0 and self._element.search(xml, max(xml.rfind("<", 0, at), 0)) is not None

    def _group_matches(self, request: AcmRequest) -> bool:
        """The conditions on group-related requests (10.17.4): rules per group, operation and
        urgency (10.17.3 "rules ... for each kind of ACM transaction"); asked only of a rule
        that has one (``_grouped``)."""
        if isinstance(request, GroupMembershipUpdateRequest):
            groups: tuple[str, ...] = (request.group_id,)
        elif isinstance(request, InterconnectionGroupProvisionRequest):
            if self.operation is not None or self.urgency is not None:
                return False
            groups = request.groups
        else:
            return False
        if self.group is not None and not all(matches_pattern(g, self.group) for g in groups):
            return False
        if isinstance(request, GroupMembershipUpdateRequest):
            if self.operation is not None and request.operation != self.operation:
                return False
            # decision: a request without urgency is handled as normal urgency
            urgency = request.urgency or Urgency.NORMAL
            if self.urgency is not None and urgency != self.urgency:
                return False
        return True


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    action: PolicyAction
    rule: int | None
    """Index of the deciding rule; None = the default (manual)."""
    reason: str | None = None


def assess(rules: Sequence[PolicyRule], request: AcmRequest) -> PolicyDecision:
    """23.280 10.17.3: choose the handling method for ``request``; first match wins."""
    for index, rule in enumerate(rules):
        if rule.matches(request):
            return PolicyDecision(rule.action, index, rule.reason)
    return _MANUAL


_MANUAL = PolicyDecision(PolicyAction.MANUAL, None)


class Policy:
    """:func:`assess` over one rule list, with what does not depend on the request done once:
    each flow's rules (the others cannot match it), each rule's decision value."""

    __slots__ = ("_by_flow", "rules")

    def __init__(self, rules: Sequence[PolicyRule]) -> None:
        self.rules = tuple(rules)
        self._by_flow: dict[str, tuple[tuple[PolicyRule, PolicyDecision], ...]] = {}

    def assess(self, request: AcmRequest) -> PolicyDecision:
        """The same decision as ``assess(rules, request)`` (tests/core/test_config_policy.py)."""
        candidates = self._by_flow.get(request.FLOW)
        if candidates is None:
            candidates = self._by_flow[request.FLOW] = tuple(
                (rule, PolicyDecision(rule.action, index, rule.reason))
                for index, rule in enumerate(self.rules) if rule.flow in ("*", request.FLOW))
        for rule, decision in candidates:
            if rule.matches(request):
                return decision
        return _MANUAL
