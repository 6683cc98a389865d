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
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pg import PgCluster
from scaleout_kit import Dispatcher, Worker, dispatcher, free_ports, workers

from mcacm_sip.acm.model import Addressee, AddUserConfigurationRequest, Party, new_transaction_id
from mcacm_sip.core.config import AcmcConfig
from mcacm_sip.core.identity import procedure_id
from mcacm_sip.core.state import Role
from mcacm_sip.demo import BOB, BRANCHES, RemotePrimary, run_demo
from mcacm_sip.runtime import (
    AcmcNode,
    AcmcNodeConfig,
    AcmsNode,
    AcmsNodeConfig,
    RequestHandle,
    SipSettings,
    TraceRecord,
)
from mcacm_sip.runtime.lab import ALICE, DAVE, LOOPBACK, PRIMARY, partner_config
from mcacm_sip.sip import Reply
from mcacm_sip.sip.aio import IncomingRequest, Listen
from mcacm_sip.sip.uri import same_identity

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
    port = free_ports(1)[0]
    with workers(tmp, ports, port, [store_lines(url, n) for n in (1, 2, 3)],
                 extra=BOB_USER) as ws, \
            dispatcher(tmp, ports, peer_hop=f"sip:127.0.0.1:{partner_port}", port=port) as core:
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
        logged_off=lambda user: _logged_off(c.workers, user),
        partner_port=c.partner_port)


async def _logged_off(ws: list[Worker], user: str) -> None:
    """Until every worker's latest log-on or log-off line for ``user`` is a log-off (a
    log-off reaches the other workers a notification later; docs/scale-out.md)."""
    def latest(w: Worker) -> str | None:
        return next((e["event"] for e in reversed(w.all_events())
                     if e.get("event") in ("acmc.logon", "acmc.logoff")
                     and same_identity(str(e.get("user")), user)), None)

    while any(latest(w) != "acmc.logoff" for w in ws):
        await asyncio.sleep(0.005)


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


# --------------------------------------------------------------------------- under load


class BusyAcmc(AcmcNode):
    """An ACMC that refuses the first ``refuse`` Results delivered to it with 480, as one
    that is busy would: each then waits at the primary ACMS as a pending item, which the
    ACMC downloads after the pending-data notification (10.17.3.1)."""

    def __init__(self, config: AcmcNodeConfig, refuse: int, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.refuse = refuse

    def _on_message(self, incoming: IncomingRequest) -> Reply:
        if self.refuse and b"<add-user-configuration-response" in incoming.message.body:
            self.refuse -= 1
            return Reply(480)
        return super()._on_message(incoming)


class Load:
    """ALICE's ACMC and the partner ACMS (policy: add-user requests approved at once)
    in-process, around the cluster; ``send`` submits add-user requests at a steady rate.
    Which request MESSAGE of ALICE's got which SIP answer is read from the message traces (its
    Call-ID is the procedure's X-CID value); whether its Result reached her, from her ACMC's
    own outcome of the request, whatever carried the Result: a MESSAGE of its own, or a
    pending-data download after a failed delivery (10.17.3.1).  The download's own MESSAGE and
    its 200 are not a request of the load."""

    def __init__(self, c: Cluster, refuse_results: int = 0, logon: bool = True) -> None:
        self.c = c
        self.seen: list[TraceRecord] = []
        hop = c.core.uri()
        sip = SipSettings(listens=(Listen("udp", "127.0.0.1", c.partner_port),),
                          hops={PRIMARY: hop}, trusted_hosts=LOOPBACK)
        self.partner = AcmsNode(AcmsNodeConfig(partner_config(None), sip),
                                trace=self.seen.append)
        self.alice = BusyAcmc(AcmcNodeConfig(
            AcmcConfig(ALICE, PRIMARY, request_timeout=120.0),
            SipSettings(listens=(Listen("udp", "127.0.0.1", 0),), hops={"*": hop},
                        trusted_hosts=LOOPBACK)), refuse_results, trace=self.seen.append)
        self.logon = logon
        """ALICE logs on (REGISTER) as she starts; False: she starts away."""
        self.tids: list[str] = []
        self.handles: dict[str, RequestHandle] = {}
        """Procedure -> ALICE's handle of the request."""
        self.retry_after: dict[str, str] = {}
        """Procedure -> the Retry-After of ALICE's final answer ("" without), by finals()."""

    async def __aenter__(self) -> Load:
        await self.partner.start()
        # REGISTER through the dispatcher (shared registrations)
        await self.alice.start(logon=self.logon)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.alice.stop()
        await self.partner.stop()

    async def send(self, seconds: float, rate: float) -> None:
        """``rate`` requests per second for ``seconds``, each a new procedure."""
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while (due := start + n / rate) < start + seconds:
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            self.submit()
            n += 1

    def submit(self) -> None:
        """One add-user request of ALICE's, a new procedure."""
        tid = new_transaction_id()
        self.tids.append(tid)
        self.handles[procedure_id(ALICE, tid)] = self.alice.submit(AddUserConfigurationRequest(
            tid, Party(ALICE), (f"sip:u-{tid[:12]}@primary.example",), Addressee(DAVE)))

    def answers(self) -> dict[str, int]:
        """Procedure -> the final SIP status ALICE got for her request MESSAGE."""
        return {p: int(line[8:11]) for p, line in self.finals().items()}

    def finals(self) -> dict[str, str]:
        """Procedure -> the status line (and Warning) of ALICE's final answer (the load's
        requests only: not a pending-data download she made)."""
        out: dict[str, str] = {}
        for r in self.seen:
            if r.node == ALICE and r.direction == "in" and r.data.startswith(b"SIP/2.0 "):
                head = r.data.split(b"\r\n\r\n", 1)[0]
                if b" MESSAGE\r\n" in head and not r.data.startswith(b"SIP/2.0 1"):
                    line = head.split(b"\r\n", 1)[0].decode(errors="replace")
                    procedure = _header(head, b"call-id")
                    if procedure not in self.handles:
                        continue
                    out[procedure] = f"{line} {_header(head, b'warning')}".strip()
                    self.retry_after[procedure] = _header(head, b"retry-after")
        return out

    def evidence(self, missing: set[str], accepted: int, path: Path) -> str:
        """Writes what every node saw of the ``missing`` procedures to ``path`` and returns
        the failure message with its first lines (a CI log keeps only the message): every
        SIP message the two in-process nodes sent or got carrying their X-CID and every
        answer with the same Call-ID, the partner's transaction with its open sends, and each
        worker's and the dispatcher's log lines naming the procedure or its transaction id.
        A lost Result is rare and needs its run's record."""
        tids = {procedure_id(ALICE, t): t for t in self.tids}
        lines = []
        for p in sorted(missing):
            core = self.partner.core
            tx = core.transaction(Role.PARTNER, tids[p], PRIMARY)
            sends = core.sends_of(tx.key) if tx else ()
            lines.append(f"{p} ({tids[p]}): partner {tx.state if tx else 'no transaction'}; "
                         f"open sends {list(sends)}")
            # its MESSAGEs (they carry the X-CID) and their answers (same Call-ID)
            calls = {_header(r.data.partition(CRLF * 2)[0], b"call-id")
                     for r in self.seen if p.encode() in r.data}
            lines += [f"  {r.time:.3f} {r.node} {r.direction} {r.src}->{r.dst} "
                      f"{r.data.partition(CRLF)[0].decode(errors='replace')}"
                      for r in self.seen
                      if _header(r.data.partition(CRLF * 2)[0], b"call-id") in calls]
            names = (p, tids[p], *calls)
            for w in self.c.workers:
                for e in w.all_events():
                    text = " ".join(str(v) for v in e.values())
                    if any(n in text for n in names):
                        lines.append(f"  {e.get('ts', 0):.3f} worker-{w.n} {e.get('msg')}")
            lines += [f"  dispatcher: {line}" for line in
                      self.c.core.log.read_text(errors="replace").splitlines()
                      if any(n in line for n in names)]
        path.write_text("\n".join(lines) + "\n")
        digest = "\n".join(line[:200] for line in lines[:80])
        return (f"{len(missing)} of {accepted} accepted requests got no Result; what the nodes "
                f"saw ({path}):\n{digest}")

    def delivered(self) -> set[str]:
        """The procedures whose Result ALICE's ACMC has."""
        return {p for p, h in self.handles.items() if h.outcome.response is not None}

    def results(self) -> Counter[str]:
        """Procedure -> how many response MESSAGEs of its own reached ALICE (1 + the
        duplicates; a Result she downloaded is not counted here)."""
        got: Counter[str] = Counter()
        for r in self.seen:
            if (r.node == ALICE and r.direction == "in" and r.data.startswith(b"MESSAGE ")
                    and b"<add-user-configuration-response" in r.data):
                got[_header(r.data.split(b"\r\n\r\n", 1)[0], b"x-cid")] += 1
        return got


CRLF = b"\r\n"


def _header(head: bytes, name: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode()
    return ""


@pytest.mark.timeout(120)
def test_a_busy_acmc_that_refuses_the_page_too_gets_its_result(pg_url: str,
                                                               tmp_path: Path) -> None:
    """ALICE's ACMC refuses her Result (480: busy), and then the pending-data download page
    that carries it.  Her ACMC does not ask for a page again by itself: the worker holding
    the item notifies her again after a back-off, and the Result reaches her.  (Stop 24's CI
    run lost two Results this way in the PostgreSQL restart test: a slower machine spaced the
    first Results out, so one of the three refusals fell on a page.)"""
    with cluster(tmp_path, pg_url) as c:
        async def main() -> Load:
            async with Load(c, refuse_results=2) as load:
                load.submit()
                await settled(load, load.tids)
                return load

        load = asyncio.run(main())
        notified = [e for w in c.workers for e in w.all_events()
                    if e.get("flow") == "pending-data-notification"]
    assert len(load.tids) == 1 and load.alice.refuse == 0  # the Result and the page refused
    assert load.answers() == {procedure_id(ALICE, load.tids[0]): 200}
    assert load.delivered() == set(load.handles), "the Result never reached ALICE"
    assert len(notified) >= 2  # notified again after the refused page


@pytest.mark.timeout(300)
def test_sigkill_one_of_three_workers_under_load_ten_times(pg_url: str,
                                                          tmp_path: Path) -> None:
    """About 100 requests/s; in each of ten rounds one worker, chosen at random, is SIGKILLed
    at a random moment and started again.  Every request ALICE's MESSAGE got a 200 for was
    decided once by the partner and its Result reached ALICE (duplicates, which her ACMC
    drops, counted); every restarted worker took requests again."""
    rng = random.Random()
    with cluster(tmp_path, pg_url) as c:
        async def main() -> Load:
            async with Load(c) as load:
                for _ in range(10):
                    victim = rng.choice(c.workers)
                    sending = asyncio.ensure_future(load.send(1.0, 100.0))
                    await asyncio.sleep(rng.uniform(0.1, 0.9))
                    victim.kill()
                    await sending
                    await asyncio.to_thread(victim.start)  # same worker id: takes back
                # after the last restart everyone is back: the probes find the restarted
                # worker within a second or two, then the hash gives it requests again
                for _ in range(20):
                    await load.send(0.5, 50.0)
                    if all(took_requests(w) for w in c.workers):
                        break
                # every request has its final answer, and each answered 200 its Result at
                # ALICE, before she logs off (a Result after that waits for her next logon)
                await settled(load, load.tids)
                return load

        load = asyncio.run(main())
    procedures = {procedure_id(ALICE, t): t for t in load.tids}
    answers, results = load.answers(), load.results()
    ok = {p for p, s in answers.items() if s == 200}
    assert len(ok) > 0.8 * len(load.tids), (len(ok), len(load.tids), Counter(answers.values()))
    missing = ok - load.delivered()
    assert not missing, load.evidence(missing, len(ok), tmp_path / "missing-results.txt")
    # decided once: one partner transaction per procedure, with one decision
    for p in ok:
        tx = load.partner.core.transaction(Role.PARTNER, procedures[p], PRIMARY)
        assert tx is not None and tx.response is not None and tx.response.result.positive
    duplicates = sum(max(results[p] - 1, 0) for p in ok)
    others = Counter(v for v in load.finals().values() if not v.startswith("SIP/2.0 200"))
    print(f"{len(load.tids)} requests, {len(ok)} answered 200, others {dict(others)}; every "
          f"Result delivered, {duplicates} duplicate Result deliveries dropped by the ACMC")
    for w in c.workers:  # the restarted ones took requests again
        assert took_requests(w), w.n


def took_requests(w: Worker) -> bool:
    """Whether the worker's current run received a MESSAGE."""
    return any(e.get("event") == "acm.received" for e in w.events(w.logs[-1]))


async def settled(load: Load, tids: list[str]) -> None:
    """Until every request of ``tids`` has its final SIP answer and every one answered 200
    its Result (bounded: 60 s)."""
    procedures = [procedure_id(ALICE, t) for t in tids]
    for _ in range(600):
        answers = load.answers()
        ok = {p for p, s in answers.items() if s == 200}
        if all(p in answers for p in procedures) and ok <= load.delivered():
            return
        await asyncio.sleep(0.1)


@pytest.mark.timeout(240)
def test_postgresql_restarted_under_load(own_pg_cluster: PgCluster, tmp_path: Path) -> None:
    """About 100 requests/s while PostgreSQL is restarted: in that window requests get 503
    with Retry-After (nothing is acknowledged that is not stored), none answered 200 is lost,
    and the workers recover by themselves (no restart, no operator).  ALICE refuses the
    first three Results delivered to her: those reach her by pending-data download, which
    the count of Results must see as delivered (and the download's own MESSAGE as no request
    of the load)."""
    url = own_pg_cluster.create_database()
    with cluster(tmp_path, url) as c:
        async def main() -> tuple[Load, list[str]]:
            loop = asyncio.get_running_loop()
            async with Load(c, refuse_results=3) as load:
                await load.send(1.0, 100.0)
                sending = asyncio.ensure_future(load.send(3.0, 100.0))
                await asyncio.sleep(0.5)
                await asyncio.to_thread(own_pg_cluster.restart)
                await sending
                restarted = loop.time()
                # the workers reconnect by themselves (back-off up to 2 s): a second of
                # requests all answered 200 again, within 30 s
                after: list[str] = []
                while loop.time() < restarted + 30:
                    first = len(load.tids)
                    await load.send(1.0, 50.0)
                    after = load.tids[first:]
                    await settled(load, after)
                    if all(load.answers().get(procedure_id(ALICE, t)) == 200 for t in after):
                        break
                print(f"recovered {loop.time() - restarted:.1f} s after the restart")
                await settled(load, load.tids)
                return load, after

        load, after = asyncio.run(main())
        assert all(w.alive for w in c.workers)  # nobody stopped: they recovered themselves
    finals, answers = load.finals(), load.answers()
    refused = [v for v in finals.values() if not v.startswith("SIP/2.0 200")]
    assert refused, "the restart refused nothing: it did not happen under load"
    assert all(v.startswith("SIP/2.0 503") for v in refused), Counter(refused)
    assert all(load.retry_after.get(p) for p, s in answers.items() if s == 503)
    ok = {p for p, s in answers.items() if s == 200}
    missing = ok - load.delivered()
    assert not missing, load.evidence(missing, len(ok), tmp_path / "missing-results.txt")
    # recovered: a whole second of requests after the restart taken again
    assert Counter(finals.get(procedure_id(ALICE, t)) for t in after) == {
        "SIP/2.0 200 OK": len(after)}
    assert load.alice.refuse == 0  # the three Results were refused ...
    downloads = [e for w in c.workers for e in w.all_events()
                 if e.get("flow") == "pending-data-download-request"]
    assert downloads  # ... and downloaded
    # a request answered 503 is not done (docs/decisions.md "A database that fails is not a
    # crash"); counted, not asserted: a worker's commit that outlasts the dispatcher's timer
    # is the case that rule does not close
    tids = {procedure_id(ALICE, t): t for t in load.tids}
    carried_out = sum(load.partner.core.transaction(Role.PARTNER, tids[p], PRIMARY) is not None
                      for p, s in answers.items() if s != 200)
    print(f"{len(load.tids)} requests: {len(ok)} answered 200, {len(refused)} refused "
          f"({Counter(v.split(' ')[1] for v in refused)}, {carried_out} of them carried out), "
          f"every Result delivered ({len(downloads)} pending-data downloads)")
