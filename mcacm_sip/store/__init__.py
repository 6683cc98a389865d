"""Durable state of an ACMS: the :class:`Store` interface, an in-memory store (tests), the
SQLite store (the embedded default) and the :class:`SharedStore` interface of the PostgreSQL
store (store/postgres.py, imported on its own: it needs the ``[postgres]`` extra)."""

from mcacm_sip.store.base import MemoryStore, SharedStore, Store, apply_to
from mcacm_sip.store.rows import StoreError, StoreUnavailable
from mcacm_sip.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "SharedStore", "SqliteStore", "Store", "StoreError",
           "StoreUnavailable", "apply_to"]
