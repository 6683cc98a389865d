"""The store interface and the in-memory implementation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from mcacm_sip.core.events import Put, Remove, StoreChange
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.state import (
    Mapping,
    Outgoing,
    PendingItem,
    Record,
    Role,
    Snapshot,
    Transaction,
)

KINDS: tuple[type[Record], ...] = (Transaction, PendingItem, Outgoing, Mapping, PartnerGroup)


class Store(Protocol):
    """Where an ACMS keeps what it accepted.  ``apply`` is atomic: all changes or none."""

    def apply(self, changes: Sequence[StoreChange]) -> None:
        """Apply the Put/Remove actions of one core event in one transaction."""
        ...

    def load(self) -> Snapshot:
        """Everything stored, for ``AcmsCore.restore``."""
        ...

    def pending_for(self, owner: str) -> list[PendingItem]:
        """One user's (or FA's) pending items, oldest first, in O(k)."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class SharedStore(Protocol):
    """A store several ACMS workers of one PSI share (PostgreSQL, store/postgres.py): the
    :class:`Store` operations as coroutines, plus leases (docs/decisions.md "Scale-out:
    leases").  ``StoreUnavailable`` (store/rows.py) from any of them means: nothing done, the
    database is away, try again after :attr:`retry_delay`; any other ``StoreError`` is fatal."""

    url: str
    worker_id: str
    lease_seconds: float

    @property
    def retry_delay(self) -> float:
        """Seconds until the next reconnection attempt (0 when connected)."""
        ...

    async def open(self) -> None:
        """Connect; create or migrate the schema."""
        ...

    async def load(self) -> Snapshot:
        """What this worker holds (leases renewed) and every mapping."""
        ...

    async def apply(self, changes: Sequence[StoreChange]) -> frozenset[str]:
        """The group commit: atomic, one round trip; renews this worker's leases.  Returns
        the keys of transactions it left alone because another worker holds them."""
        ...

    async def renew(self) -> int:
        """Renew this worker's leases (idle workers); how many."""
        ...

    async def claim(self, limit: int = 1000) -> Snapshot:
        """Take over other workers' expired transactions (``SKIP LOCKED``) with their parts."""
        ...

    async def shared_since(self) -> Snapshot:
        """Mappings and groups other workers wrote since the last call."""
        ...

    async def pending_elsewhere(self, owners: Sequence[str]) -> list[Transaction]:
        """The transactions of the pending items of ``owners`` other workers hold."""
        ...

    async def holds_leg(self, role: Role, leg_id: str) -> bool:
        """Whether some worker holds a transaction of ``role`` using ``leg_id`` on its other
        leg (what an answer names)."""
        ...

    async def close(self) -> None:
        ...


class MemoryStore:
    """A :class:`Store` in dictionaries (tests, and the demo when no path is given)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Record]] = {k.KIND: {} for k in KINDS}
        self.commits = 0

    def apply(self, changes: Sequence[StoreChange]) -> None:
        apply_to(self.records, changes)  # in memory nothing can fail half-way
        self.commits += 1

    def load(self) -> Snapshot:
        r = self.records
        return Snapshot(
            transactions=tuple(x for x in r[Transaction.KIND].values()
                               if isinstance(x, Transaction)),
            pending=tuple(x for x in r[PendingItem.KIND].values() if isinstance(x, PendingItem)),
            outgoing=tuple(x for x in r[Outgoing.KIND].values() if isinstance(x, Outgoing)),
            mappings=tuple(x for x in r[Mapping.KIND].values() if isinstance(x, Mapping)),
            groups=tuple(x for x in r[PartnerGroup.KIND].values()
                         if isinstance(x, PartnerGroup)),
        )

    def pending_for(self, owner: str) -> list[PendingItem]:
        items = [x for x in self.records[PendingItem.KIND].values()
                 if isinstance(x, PendingItem) and x.owner == owner]
        return sorted(items, key=lambda i: i.created)

    def close(self) -> None:
        pass


def apply_to(tables: dict[str, dict[str, Record]], changes: Sequence[StoreChange]) -> None:
    """Apply changes to kind -> key -> record dictionaries."""
    for change in changes:
        if isinstance(change, Put):
            tables[change.record.KIND][change.record.key] = change.record
        elif isinstance(change, Remove):
            tables[change.kind].pop(change.key, None)
