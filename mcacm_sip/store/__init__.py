"""Durable state of an ACMS: the :class:`Store` interface, an in-memory store (tests) and the
SQLite store (the embedded default)."""

from mcacm_sip.store.base import MemoryStore, Store, apply_to
from mcacm_sip.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "Store", "apply_to"]
