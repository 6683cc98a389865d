"""What a partner system applied of group-related ACM (TS 23.280 10.17.4), per partner group.

10.17.4 leaves "applying" outside 3GPP scope (as 10.17.7.2 step 6 does for profiles).  For a lab
the partner ACMS keeps, per primary system and MC service group, what it accepted
(docs/decisions.md "Group-related ACM"):

- ``provisioned``: the group's identity was provided by an accepted interconnection group
  identity provision (10.17.4.2.2);
- ``members``: the partner users an accepted group membership update added and no later one
  deleted.

These are pure functions over frozen records; the ACMS core stores the results like any record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

from mcacm_sip.acm.model import (
    AcmRequest,
    AcmResponse,
    GroupMembershipUpdateRequest,
    GroupMembershipUpdateResponse,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    InterconnectionGroupProvisionResponse,
    Result,
    ResultCode,
)
from mcacm_sip.core.config import AuthorisedUser, PeerSystem
from mcacm_sip.core.identity import id_key, matches_any


def group_key(peer: str, group_id: str) -> str:
    """One record per (primary system, group), identities canonical."""
    return f"{id_key(peer)} {id_key(group_id)}"


@dataclass(frozen=True, slots=True)
class PartnerGroup:
    """Partner role: what this system accepted for one group of one primary system."""

    KIND: ClassVar[str] = "group"

    peer: str
    """PSI of the primary system's ACMS (the group's home system)."""
    group_id: str
    """The MC service group ID, as the primary system spelt it first."""
    provisioned: bool = False
    """Provided by an accepted interconnection group identity provision (10.17.4.2.2)."""
    members: tuple[str, ...] = ()
    """Partner users in the group by accepted group membership updates, in the order added."""
    updated: float = 0.0
    """When an accepted request last changed it (the core's clock)."""

    @property
    def key(self) -> str:
        return group_key(self.peer, self.group_id)


def apply_membership(current: PartnerGroup | None, peer: str,
                     request: GroupMembershipUpdateRequest, now: float) -> PartnerGroup:
    """The record after an accepted group membership update: ``add`` appends the users not yet
    members, ``delete`` removes those that are; users compare as URIs (RFC 3261 19.1.4), so
    the operation is idempotent whatever spelling a repeat uses."""
    group = current or PartnerGroup(peer, request.group_id)
    listed = {id_key(u) for u in request.users}
    if request.operation == GroupOperation.ADD:
        have = {id_key(m) for m in group.members}
        new = []
        for user in request.users:
            if id_key(user) not in have:
                have.add(id_key(user))
                new.append(user)
        members = group.members + tuple(new)
    else:
        members = tuple(m for m in group.members if id_key(m) not in listed)
    return replace(group, members=members, updated=now)


def apply_provision(current: PartnerGroup | None, peer: str, group_id: str, now: float
                    ) -> PartnerGroup:
    """The record after an accepted interconnection group identity provision naming it."""
    group = current or PartnerGroup(peer, group_id)
    return replace(group, provisioned=True, updated=now)


# --------------------------------------------------------------------------- the core's rules
# Called by the ACMS core at the steps of the generic ACM pattern; each returns data only.


def groups_of(request: AcmRequest) -> tuple[str, ...]:
    """The MC service group IDs a group-related request is about; () for any other request."""
    if isinstance(request, GroupMembershipUpdateRequest):
        return (request.group_id,)
    if isinstance(request, InterconnectionGroupProvisionRequest):
        return request.groups
    return ()


def not_allowed_to_request(user: AuthorisedUser, request: AcmRequest) -> str | None:
    """10.17.4.2.2 step 2 (and the same check for a group membership update): the primary ACMS
    authorises the requesting user per group (``users[].groups``); None: allowed."""
    for group in groups_of(request):
        if not user.may_group(group):
            return f"{user.id} may not send {request.FLOW} for {group}"
    return None


def may_decide(user: AuthorisedUser, request: AcmRequest) -> bool:
    """Partner role: whether ``user`` (allowed the flow) may decide it for its groups."""
    return all(user.may_group(g) for g in groups_of(request))


def peer_refusal(peer: PeerSystem, request: AcmRequest) -> Result | None:
    """Partner verify (authorisation at both ends): the peer must be allowed the group(s) it
    asks about (``peers[].groups``; 10.17.4.2.2: the primary is the groups' home system)."""
    for group in groups_of(request):
        if not matches_any(group, peer.groups):
            return Result(ResultCode.NOT_AUTHORISED,
                          f"{peer.psi} may not send {request.FLOW} for {group}")
    return None


def _same_list(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return sorted(id_key(x) for x in a) == sorted(id_key(x) for x in b)


def mismatch(request: AcmRequest, response: AcmResponse) -> str | None:
    """Why a group-related response does not answer ``request`` (None: it does, or neither is
    group-related): it must echo the group, operation and users (or the groups) of the request,
    compared as URIs, so a replayed answer for another group cannot be taken (D3)."""
    if isinstance(request, GroupMembershipUpdateRequest) and isinstance(
            response, GroupMembershipUpdateResponse):
        if id_key(response.group_id) != id_key(request.group_id):
            return f"group {response.group_id} is not the request's {request.group_id}"
        if response.operation != request.operation:
            return f"operation {response.operation} is not the request's {request.operation}"
        if not _same_list(response.users, request.users):
            return "the users are not the request's"
    if isinstance(request, InterconnectionGroupProvisionRequest) and isinstance(
            response, InterconnectionGroupProvisionResponse) \
            and not _same_list(response.groups, request.groups):
        return "the groups are not the request's"
    return None


def applied(peer: str, request: AcmRequest, result: Result, now: float,
            current: Callable[[str], PartnerGroup | None]) -> list[PartnerGroup]:
    """Partner role, the outcome of a decided group-related request: the records to store
    (nothing unless ``result`` is success).  ``current(key)`` gives the stored record."""
    if not result.positive:
        return []
    if isinstance(request, GroupMembershipUpdateRequest):
        key = group_key(peer, request.group_id)
        return [apply_membership(current(key), peer, request, now)]
    if isinstance(request, InterconnectionGroupProvisionRequest):
        return [apply_provision(current(group_key(peer, g)), peer, g, now)
                for g in request.groups]
    return []
