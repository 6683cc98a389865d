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

from dataclasses import dataclass, replace
from typing import ClassVar

from mcacm_sip.acm.model import GroupMembershipUpdateRequest, GroupOperation
from mcacm_sip.core.identity import id_key


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
