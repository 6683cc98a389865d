"""Edges of the PostgreSQL store that need no server or check how it is used: the test
fixture's skip/fail rule, an unreachable database at start (exit 69), and one round trip per
group commit (docs/decisions.md "Scale-out")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pg
import pytest
from core.test_store import ITEM, MAP, OUT, TX
from pg import require_postgres
from tools import REQUIRE_ENV

from mcacm_sip.cli.main import EX_UNAVAILABLE, main
from mcacm_sip.core.events import Put, Remove
from mcacm_sip.core.state import Outgoing
from mcacm_sip.store.postgres import PostgresStore


def test_without_postgresql_the_tests_skip_or_in_ci_fail(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "find_bin", lambda: None)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        require_postgres()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="MCACM_REQUIRE_INTEROP=1 requires it"):
        require_postgres()


def test_initdb_is_found_where_debian_puts_it() -> None:
    found = pg.find_bin()
    if found is None:
        pytest.skip("PostgreSQL not installed")
    assert (found / "initdb").exists() and (found / "pg_ctl").exists()


def test_an_unreachable_database_at_start_exits_69(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "acms.toml"
    config.write_text(
        'psi = "sip:acms@partner.example"\n[sip]\ntrust = "lab"\n'
        f'[store]\nurl = "postgresql://acms:s3cret@/acms?host={tmp_path}&password=s3cret"\n'
        'worker_id = "acms-1"\n')
    assert main(["acms", "--config", str(config)]) == EX_UNAVAILABLE
    err = capsys.readouterr().err
    assert "cannot connect" in err and "[store] url" in err and str(tmp_path) in err
    assert "s3cret" not in err  # the URL is shown without its password


def test_one_group_commit_is_one_statement(pg_url: str, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    calls: list[str] = []
    for name in ("execute", "fetch", "fetchval", "fetchrow", "executemany"):
        original = getattr(asyncpg.Connection, name)

        def counted(self: Any, *args: Any, _original: Any = original, _name: str = name,
                    **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(asyncpg.Connection, name, counted)

    async def run() -> None:
        store = PostgresStore(pg_url, "w1")
        await store.open()
        calls.clear()
        await store.apply([Put(TX), Put(ITEM), Put(OUT), Put(MAP), Remove(Outgoing.KIND, "x")])
        assert calls == ["fetchval"]  # four tables written, one deleted from, leases renewed
        assert store.commits == 1
        await store.close()
    asyncio.run(run())
