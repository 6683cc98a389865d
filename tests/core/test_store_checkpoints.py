"""The SQLite store checkpoints its WAL from a thread of its own, not inside a commit
(docs/decisions.md "Round 12 (issue 18), the tail: WAL checkpoints off the event loop")."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mcacm_sip.core.events import Put
from mcacm_sip.store import SqliteStore
from mcacm_sip.store import sqlite as sqlite_store

from .test_store import ITEM

PAGE = 4096


def _items(store: SqliteStore, first: int, n: int) -> None:
    """``n`` commits of 8 pending items each (about one WAL page an item)."""
    for i in range(first, first + n):
        store.apply([Put(replace(ITEM, tx_key=f"k-{i}-{j}", owner=f"sip:o{j}@q.example"))
                     for j in range(8)])


def _db_file(path: Path) -> tuple[int, int]:
    """The database file itself (not its WAL): only a checkpoint writes it."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _wal_pages(path: Path) -> int:
    return os.stat(f"{path}-wal").st_size // PAGE


def _checkpointers() -> int:
    return sum(t.name == "sqlite-checkpoint" for t in threading.enumerate())


def test_no_commit_checkpoints_below_the_commit_limit(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Past SQLite's default of 1 000 WAL pages, a commit still only appends to the WAL:
    the database file is written by no commit (before round 12 one in about 1 000 pages
    copied 4 MB and synced it on the event loop)."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL", 3600.0)  # the thread idles
    path = tmp_path / "s.sqlite"
    store = SqliteStore(str(path))
    try:
        before = _db_file(path)
        _items(store, 0, 150)
        assert _wal_pages(path) > 1100
        assert _db_file(path) == before
    finally:
        store.close()


def test_the_checkpointer_moves_the_wal_into_the_database(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread checkpoints what the commits wrote; once every page is in the database file
    the WAL starts over from its beginning (its file stops growing)."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL", 0.01)
    path = tmp_path / "s.sqlite"
    store = SqliteStore(str(path))
    try:
        size0 = _db_file(path)[0]
        _items(store, 0, 50)
        deadline = time.monotonic() + 10
        while _db_file(path)[0] <= size0 + 50 * PAGE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _db_file(path)[0] > size0 + 50 * PAGE
        wal = _wal_pages(path)
        for k in range(10):  # as much again, with pauses the thread checkpoints in
            time.sleep(0.05)
            _items(store, 100 + 10 * k, 5)
        assert _wal_pages(path) <= wal + 10
    finally:
        store.close()
    reopened = SqliteStore(str(path))
    assert len(reopened.load().pending) == 8 * 100
    reopened.close()


def test_a_commit_checkpoints_if_the_thread_falls_behind(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The WAL stays bounded whatever the thread does: past ``COMMIT_CHECKPOINT_PAGES`` the
    commit checkpoints as SQLite always did."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL", 3600.0)
    monkeypatch.setattr(sqlite_store, "COMMIT_CHECKPOINT_PAGES", 300)
    path = tmp_path / "s.sqlite"
    store = SqliteStore(str(path))
    try:
        before = _db_file(path)
        _items(store, 0, 80)
        assert _db_file(path) != before
        _items(store, 80, 80)
        assert _wal_pages(path) < 2 * 300
    finally:
        store.close()


def test_close_stops_the_thread(tmp_path: Path) -> None:
    n = _checkpointers()
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    assert _checkpointers() == n + 1
    store.close()
    assert _checkpointers() == n


def test_a_store_dropped_unclosed_ends_its_thread(tmp_path: Path) -> None:
    import gc

    n = _checkpointers()
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    assert _checkpointers() == n + 1
    del store
    gc.collect()
    deadline = time.monotonic() + 5
    while _checkpointers() > n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _checkpointers() == n
