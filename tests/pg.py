"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` in a temporary folder,
listening on a Unix socket in that folder only (no port to collide on), stopped by PID.

Found in /usr/lib/postgresql/*/bin (Debian's ``postgresql`` package puts it there, not on PATH)
or on PATH.  Missing: the test skips with the package to install, or fails when
MCACM_REQUIRE_INTEROP=1 (tests/tools.py).  ``initdb`` refuses to run as root: as root, the
cluster runs as the ``postgres`` system user (``runuser -u postgres --``) in a folder it owns.

Used by the store contract tests and by the scale-out tests (docs/scale-out.md):
``PgCluster.start()`` / ``url(database)`` / ``create_database()`` / ``stop()`` / ``restart()``,
and the fixtures ``pg_cluster`` (one per session) and ``pg_url`` (a fresh database per test).
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tools import missing

_T = TypeVar("_T")


def find_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres (the newest installed version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def require_postgres() -> Path:
    """The PostgreSQL bin folder; skips (or fails with MCACM_REQUIRE_INTEROP=1) without it."""
    reason = ""
    bindir = find_bin()
    if bindir is None:
        reason = "PostgreSQL not installed (Debian: apt-get install postgresql)"
    elif os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            reason = "running as root and no 'postgres' user to run initdb as"
    if reason:
        missing(reason)
    assert bindir is not None
    return bindir


class PgCluster:
    """One PostgreSQL server in a temporary folder (``start``, ``stop`` by PID, ``restart``)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="mcacm-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        self.pid: int | None = None

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")

    def start(self) -> None:
        # fsync off: a test cluster need not survive a power loss, and the machine is shared
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-k {self.dir} -c listen_addresses='' -c fsync=off -c max_connections=60",
                  "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Fast shutdown of the postmaster by its PID (SIGINT), waited for."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.dir}&user=postgres"

    async def create_database_async(self) -> str:
        import asyncpg  # the dev extra has it; imported here so collection never needs it

        name = "t_" + uuid.uuid4().hex[:12]
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        return self.url(name)

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        return asyncio.run(self.create_database_async())

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One cluster for the session (skips or fails without PostgreSQL, see the module)."""
    cluster = PgCluster(require_postgres())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh database in the session's cluster."""
    return pg_cluster.create_database()


@pytest.fixture
def own_pg_cluster() -> Iterator[PgCluster]:
    """A cluster of the test's own (it may stop and restart it)."""
    cluster = PgCluster(require_postgres())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


class Blocking:
    """Runs an async store's coroutines to completion on a loop of its own, so the store
    contract tests call every store alike (``store.apply(...)``)."""

    def __init__(self, store: Any) -> None:
        self._runner = asyncio.Runner()
        self._store = store

    def run(self, coro: Awaitable[_T]) -> _T:
        async def wrap() -> _T:
            return await coro
        return self._runner.run(wrap())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if isinstance(result, Coroutine):
                return self.run(result)
            return result
        return call

    def close(self) -> None:
        self.run(self._store.close())
        self._runner.close()
