"""examples/scale-out for real: the primary MC system's ACMS as three worker processes on one
PostgreSQL database behind Kamailio's dispatcher (examples/scale-out/kamailio.cfg), the rest
of the demo's cast (partner ACMS, FA server, four ACMCs) in-process; everything on loopback,
every process stopped by its PID (docs/scale-out.md).

- the whole ``mcacm demo`` branch set through the dispatcher;
- SIGKILL one of three workers under steady load, ten times at random moments: every request
  answered 200 is decided once and its Result reaches the requester once;
- PostgreSQL restarted under load: 503 + Retry-After in that window, nothing lost, the
  workers recover by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from scaleout_kit import Dispatcher, Worker, dispatcher, free_ports, workers

from mcacm_sip.demo import BOB, BRANCHES, RemotePrimary, run_demo

LEASE = 2.0
"""Lease seconds of the test workers: a dead worker's transactions continue within ~3 s."""

BOB_USER = f'''
[[users]]
id = "{BOB}"
request = ["add-user-configuration-request"]
'''


def store_lines(url: str, n: int) -> str:
    return f'url = "{url}"\nworker_id = "acms-{n}"\nlease_seconds = {LEASE}'


@dataclass
class Cluster:
    core: Dispatcher
    workers: list[Worker]
    url: str
    partner_port: int


@contextlib.contextmanager
def cluster(tmp: Path, url: str) -> Iterator[Cluster]:
    """Kamailio + three workers on ``url``; the partner ACMS is expected on ``partner_port``
    (the demo or the test starts it there)."""
    ports = free_ports(3)
    partner_port = free_ports(1)[0]
    with dispatcher(tmp, ports, peer_hop=f"sip:127.0.0.1:{partner_port}") as core:
        with workers(tmp, ports, core.port, [store_lines(url, n) for n in (1, 2, 3)],
                     extra=BOB_USER) as ws:
            yield Cluster(core, ws, url, partner_port)


async def count(url: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


def remote(c: Cluster) -> RemotePrimary:
    return RemotePrimary(
        hop=c.core.uri(),
        pending=lambda owner: count(c.url, "SELECT count(*) FROM pending WHERE owner = $1",
                                    owner),
        holds=lambda tid: _holds(c.url, tid),
        partner_port=c.partner_port)


async def _holds(url: str, tid: str) -> bool:
    return await count(url, "SELECT count(*) FROM transactions WHERE transaction_id = $1",
                       tid) > 0


@pytest.mark.timeout(240)
def test_the_demo_branches_through_the_dispatcher(pg_url: str, tmp_path: Path) -> None:
    """Every branch of ``mcacm demo`` with the primary ACMS as three workers behind the
    dispatcher ends as it does with one ACMS."""
    with cluster(tmp_path, pg_url) as c:
        result = asyncio.run(run_demo("udp", remote=remote(c)))
    got = {b.key: b.actual for b in result.branches}
    assert got == {b.key: b.expected for b in BRANCHES}
    # all three workers took part (the procedures spread over them)
    took_part = {w.n for w in c.workers
                 if any(e.get("event") == "acm.received" for e in w.all_events())}
    assert took_part == {1, 2, 3}, took_part
