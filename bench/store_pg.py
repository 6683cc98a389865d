"""Group commit on SQLite vs PostgreSQL for the partner ACMS's hot-path row mix.

The row mix is the real one: the lab's partner core (automatic approval) handles N add-user
requests from the primary ACMS, and every send it makes gets a successful outcome; each
request's store changes (transaction row written at each state change, the process indication
and response sends put then removed) are recorded.  Those changes are then committed in
batches of ``B`` requests, as the node's group commit does under load (B = 1: a quiet node),
to SQLite (``synchronous=NORMAL``, WAL) and to PostgreSQL (a throwaway cluster from
tests/pg.py, Unix socket, ``fsync=off`` as in the tests: what is measured is the client and
server CPU and the round trips, not the disk).  Figures: requests/s and rows/s through
``apply``, and CPU µs per request -- this process (client; for SQLite everything) plus the
PostgreSQL backend serving the connection (server, /proc/PID/stat).

    .venv/bin/python bench/store_pg.py [--quick] [--json FILE] [--requests N]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Result, bench_parser, cpu_seconds, report

from mcacm_sip.acm.model import Addressee, AddUserConfigurationRequest, Party
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.events import (
    DeliveryOutcome,
    FlowFromPeer,
    SendFlow,
    StoreChange,
    store_changes,
)
from mcacm_sip.runtime.lab import DAVE, MIKE, PRIMARY, partner_config
from mcacm_sip.store import SqliteStore

BATCHES = (1, 32)


def row_mix(requests: int) -> list[list[StoreChange]]:
    """Each request's store changes, from the real partner core (see the module docstring)."""
    core = AcmsCore(partner_config(None))
    now = time.time()
    out: list[list[StoreChange]] = []
    for n in range(requests):
        flow = AddUserConfigurationRequest(f"bench-{n}", Party("sip:alice@primary.example"),
                                           (MIKE,), Addressee(DAVE))
        actions = core.handle(FlowFromPeer(now, PRIMARY, flow))
        changes = store_changes(actions)
        sends = [a for a in actions if isinstance(a, SendFlow)]
        while sends:
            send = sends.pop(0)
            more = core.handle(DeliveryOutcome(now, send.send_id, True))
            changes += store_changes(more)
            sends += [a for a in more if isinstance(a, SendFlow)]
        out.append(changes)
    return out


def batches(mix: list[list[StoreChange]], size: int) -> list[list[StoreChange]]:
    return [[c for req in mix[i:i + size] for c in req] for i in range(0, len(mix), size)]


def measure_sqlite(mix: list[list[StoreChange]], size: int) -> list[object]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "bench.sqlite"))
        work = batches(mix, size)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for batch in work:
            store.apply(batch)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        store.close()
    return row("SQLite NORMAL", size, mix, wall, cpu, 0.0)


def measure_postgres(url: str, mix: list[list[StoreChange]], size: int) -> list[object]:
    from mcacm_sip.store.postgres import PostgresStore

    async def main() -> list[object]:
        store = PostgresStore(url, f"bench-{size}")
        await store.open()
        assert store._conn is not None
        backend = int(await store._conn.fetchval("SELECT pg_backend_pid()"))
        work = batches(mix, size)
        server0 = cpu_seconds([backend])
        cpu0, t0 = time.process_time(), time.perf_counter()
        for batch in work:
            await store.apply(batch)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        server = cpu_seconds([backend]) - server0
        await store.close()
        return row("PostgreSQL (asyncpg)", size, mix, wall, cpu, server)
    return asyncio.run(main())


def row(engine: str, size: int, mix: list[list[StoreChange]], wall: float, client: float,
        server: float) -> list[object]:
    requests, rows = len(mix), sum(len(r) for r in mix)
    return [engine, size, round(requests / wall), round(rows / wall),
            round(1e6 * client / requests), round(1e6 * server / requests),
            round(1e6 * (client + server) / requests)]


def main(argv: Sequence[str] | None = None) -> Result:
    p = bench_parser(__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--requests", type=int, default=0, help="requests per run (default 3000)")
    args = p.parse_args(argv)
    requests = args.requests or (300 if args.quick else 3000)
    mix = row_mix(requests)
    rows: list[list[object]] = []
    for size in BATCHES:
        rows.append(measure_sqlite(mix, size))
    from pg import PgCluster, find_bin

    bindir = find_bin()
    if bindir is None:
        print("PostgreSQL not installed (Debian: apt-get install postgresql)", file=sys.stderr)
        raise SystemExit(2)
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        for size in BATCHES:  # a database each: the same keys again would be another's rows
            rows.append(measure_postgres(cluster.create_database(), mix, size))
    finally:
        cluster.cleanup()
    per_request = sum(len(r) for r in mix) / len(mix)
    best = {(r[0], r[1]): r for r in rows}
    sqlite32, pg32 = best[("SQLite NORMAL", 32)], best[("PostgreSQL (asyncpg)", 32)]
    result: Result = {
        "name": "store_pg",
        "title": f"group commit of the hot path's rows ({per_request:.1f} changes/request)",
        "tables": [{
            "title": "apply() of batches of B requests' changes",
            "columns": ["engine", "B", "requests/s", "rows/s", "client µs/req",
                        "server µs/req", "CPU µs/req"],
            "rows": rows,
        }],
        "summary": {
            "PostgreSQL/SQLite CPU per request (B=32)":
                round(float(str(pg32[6])) / max(1.0, float(str(sqlite32[6]))), 2),
            "PostgreSQL requests/s (B=32)": pg32[2],
            "SQLite requests/s (B=32)": sqlite32[2],
        },
    }
    report(result, args.json)
    return result


if __name__ == "__main__":
    main()
