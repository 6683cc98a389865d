"""Two ACMS workers of one PSI on one PostgreSQL database, as a dispatcher sends them what it
must after a failover (docs/decisions.md "Scale-out: the procedure header, the dispatcher and
failover"): an answer about a transaction the receiving worker does not hold gets 503 with
Retry-After (the dispatcher tries the next worker; the sender repeats later), never the final
403/404 a single ACMS gives.  (A repeated *request* at the wrong worker: the store's fencing,
tests/test_runtime_postgres.py.)

Requests come as UDP datagrams from bare sockets (the foreign primary ACMS, the partner's
ACMC), as in tests/test_runtime_postgres.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from test_runtime_postgres import burst
from test_store_batching import TIDS, WAIT, partner, udp_socket

from mcacm_sip.acm import codec
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    Party,
    PendingDataDownloadRequest,
    Result,
    ResultCode,
    UserAssignment,
)
from mcacm_sip.core.identity import procedure_id
from mcacm_sip.core.state import Role
from mcacm_sip.runtime import AcmsNodeConfig, SipSettings
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.lab import (
    ALICE,
    DAVE,
    LOOPBACK,
    MIKE,
    PARTNER,
    PRIMARY,
    primary_config,
    profile_xml,
)
from mcacm_sip.runtime.messaging import PROCEDURE_HEADER
from mcacm_sip.sip.aio import Listen
from mcacm_sip.store.postgres import PostgresStore


def decision(tid: str, port: int, call_id: str) -> bytes:
    """DAVE's decision on ``tid``, as the partner's ACMC sends it (From DAVE, loopback is a
    trusted host here)."""
    body = codec.encode(AddUserConfigurationResponse(
        tid, Party(DAVE), Addressee("sip:alice@primary.example"), Result(ResultCode.SUCCESS)))
    return (f"MESSAGE {PARTNER} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call_id}\r\n"
            f"From: <{DAVE}>;tag=d1\r\nTo: <{PARTNER}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
            f"Content-Type: {codec.ACM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def send_raw(node: AcmsNode, sock: socket.socket, data: bytes, call_id: str
                   ) -> tuple[int, bytes]:
    port = node.addresses["udp"][1]
    sock.sendto(data, ("127.0.0.1", port))
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(WAIT):
        while True:
            got = await loop.sock_recv(sock, 65536)
            if got.startswith(b"SIP/2.0 ") and f"Call-ID: {call_id}\r\n".encode() in got:
                return int(got[8:11]), got


def test_an_answer_about_a_transaction_held_elsewhere_is_503(pg_url: str) -> None:
    """DAVE's decision reaching a worker that does not hold the transaction: 503 +
    Retry-After (a single ACMS answers 403, "not asked": it knows it holds everything)."""
    async def main() -> None:
        with udp_socket() as primary, udp_socket() as acmc:
            async with partner(PostgresStore(pg_url, "w1", 30), [], primary) as w1, \
                    partner(PostgresStore(pg_url, "w2", 30), [], primary) as w2:
                await burst(w1, primary, TIDS[:1])
                me = acmc.getsockname()[1]
                status, data = await send_raw(w2, acmc, decision(TIDS[0], me, "d-1"), "d-1")
                assert status == 503, data
                assert b"held by another worker" in data and b"Retry-After: " in data
                assert not w2.failed.done()  # type: ignore[union-attr]
    asyncio.run(main())


@asynccontextmanager
async def primary_worker(url: str, worker: str, partner_sock: socket.socket
                         ) -> AsyncIterator[AcmsNode]:
    """A primary ACMS worker on ``url``; what it forwards goes to ``partner_sock`` (which
    never answers: the forward stays in flight)."""
    hop = f"sip:127.0.0.1:{partner_sock.getsockname()[1]}"
    sip = SipSettings(listens=(Listen("udp", "127.0.0.1", 0),), hops={PARTNER: hop},
                      trusted_hosts=LOOPBACK)
    node = AcmsNode(AcmsNodeConfig(primary_config(None), sip),
                    store=PostgresStore(url, worker, 30))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def raw(to: str, sender: str, body: bytes, port: int, call_id: str) -> bytes:
    return (f"MESSAGE {to} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call_id}\r\n"
            f"From: <{sender}>;tag=r1\r\nTo: <{to}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
            f"Content-Type: {codec.ACM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def test_an_answer_to_a_transaction_taken_over_meanwhile_is_503_not_a_lost_200(
        pg_url: str) -> None:
    """A worker still has a transaction in memory that another worker took over (its lease ran
    out while it stalled).  The partner's response reaching it must not get a 200: the commit
    leaves the other worker's row alone, so nothing of the response would be stored and the
    partner would never send it again (the procedure would end "expired").  It gets 503 +
    Retry-After; the holder takes it."""
    tid = "taken-over-1"

    async def main() -> None:
        with udp_socket() as partner_sock, udp_socket() as acmc:
            async with primary_worker(pg_url, "w1", partner_sock) as w1, \
                    primary_worker(pg_url, "w2", partner_sock) as w2:
                me = acmc.getsockname()[1]
                request = AddUserConfigurationRequest(tid, Party(ALICE), (MIKE,),
                                                      Addressee(DAVE))
                status, _ = await send_raw(w1, acmc, raw(PRIMARY, ALICE, codec.encode(request),
                                                         me, "req-1"), "req-1")
                assert status == 200
                # w1 stalls past its lease: w2 takes the transaction over
                conn = await asyncpg.connect(pg_url)
                await conn.execute("UPDATE transactions SET lease_until = 0 WHERE worker = 'w1'")
                await conn.execute("UPDATE workers SET lease_until = 0 WHERE worker_id = 'w1'")
                await conn.close()
                assert await w2.claim_expired() == 1
                assert w1.core.transaction(Role.PRIMARY, tid, ALICE) is not None  # still here
                response = AddUserConfigurationResponse(
                    tid, Party(PARTNER), Addressee(ALICE), Result(ResultCode.SUCCESS),
                    (UserAssignment(MIKE, Result(ResultCode.SUCCESS),
                                    "sip:mike-1@partner.example",
                                    profile_from_xml(profile_xml("Mike"))),))
                body = codec.encode(response)
                status, data = await send_raw(w1, acmc, raw(PRIMARY, PARTNER, body, me,
                                                            "resp-1"), "resp-1")
                assert status == 503, data
                assert b"held by another worker" in data and b"Retry-After: " in data
                assert await stored_workers(pg_url) == {tid: "w2"}
                # the partner's repetition, which the dispatcher sends on to w2, is taken
                status, data = await send_raw(w2, acmc, raw(PRIMARY, PARTNER, body, me,
                                                            "resp-2"), "resp-2")
                assert status == 200, data
                assert not w1.failed.done() and not w2.failed.done()  # type: ignore[union-attr]
    asyncio.run(main())


async def stored_workers(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT transaction_id, worker FROM transactions")
    finally:
        await conn.close()
    return {r["transaction_id"]: r["worker"] for r in rows}


def test_a_pending_data_download_is_answered_where_its_items_are(pg_url: str) -> None:
    """10.17.3.1 on two workers: ALICE's Results wait as pending items, tid-1's at w1 and
    (later) tid-2's at w2.  Her download reaching a worker gets 503 "held by another worker"
    (the dispatcher tries the next one) when its X-CID names items another worker holds, or
    when that worker holds none for her but another does; else it is answered there."""
    async def main() -> None:
        with udp_socket() as partner_sock, udp_socket() as acmc:
            async with primary_worker(pg_url, "w1", partner_sock) as w1, \
                    primary_worker(pg_url, "w2", partner_sock) as w2:
                me = acmc.getsockname()[1]

                async def result_pending_at(worker: AcmsNode, tid: str) -> None:
                    request = AddUserConfigurationRequest(tid, Party(ALICE), (MIKE,),
                                                          Addressee(DAVE))
                    status, _ = await send_raw(worker, acmc, raw(
                        PRIMARY, ALICE, codec.encode(request), me, f"req-{tid}"), f"req-{tid}")
                    assert status == 200
                    response = AddUserConfigurationResponse(
                        tid, Party(PARTNER), Addressee(ALICE), Result(ResultCode.SUCCESS),
                        (UserAssignment(MIKE, Result(ResultCode.SUCCESS),
                                        f"sip:mike-{tid}@partner.example",
                                        profile_from_xml(profile_xml("Mike"))),))
                    status, _ = await send_raw(worker, acmc, raw(
                        PRIMARY, PARTNER, codec.encode(response), me, f"resp-{tid}"),
                        f"resp-{tid}")
                    assert status == 200
                    assert len(worker.core.pending_for(ALICE)) == 1  # ALICE is not logged on

                n = 0

                async def download(worker: AcmsNode, about: str | None) -> tuple[int, bytes]:
                    nonlocal n
                    n += 1
                    body = codec.encode(PendingDataDownloadRequest(f"dl-{n}", ALICE))
                    data = raw(PRIMARY, ALICE, body, me, f"dl-{n}")
                    if about is not None:
                        data = data.replace(b"Max-Forwards: 70\r\n", (
                            f"Max-Forwards: 70\r\n{PROCEDURE_HEADER}: "
                            f"{procedure_id(ALICE, about)}\r\n").encode())
                    return await send_raw(worker, acmc, data, f"dl-{n}")

                await result_pending_at(w1, "tid-1")
                status, data = await download(w2, None)  # w2 holds nothing for her
                assert status == 503 and b"held by another worker" in data, data
                status, data = await download(w2, "tid-1")
                assert status == 503, data
                status, _ = await download(w1, "tid-1")
                assert status == 200
                await result_pending_at(w2, "tid-2")
                status, data = await download(w2, "tid-1")  # w1's items: not w2's to give
                assert status == 503, data
                for about in ("tid-2", None, "no-such-procedure"):  # w2's own
                    status, _ = await download(w2, about)
                    assert status == 200, about
                assert not w1.failed.done() and not w2.failed.done()  # type: ignore[union-attr]
    asyncio.run(main())


def test_an_answer_about_a_transaction_that_exists_nowhere_is_final(pg_url: str) -> None:
    """No worker holds it (no row in PostgreSQL: never opened, or pruned): the worker answers
    as a single ACMS does -- 404 for a partner's response, 403 for an ACMC's decision -- not
    a 503 that would make the sender repeat it until its own timers end."""
    async def main() -> None:
        with udp_socket() as partner_sock, udp_socket() as acmc, udp_socket() as primary:
            me = acmc.getsockname()[1]
            async with primary_worker(pg_url, "w1", partner_sock) as w1:
                response = AddUserConfigurationResponse(
                    "nowhere-1", Party(PARTNER), Addressee(ALICE), Result(ResultCode.SUCCESS))
                status, data = await send_raw(w1, acmc, raw(
                    PRIMARY, PARTNER, codec.encode(response), me, "resp-n"), "resp-n")
                assert status == 404, data
                assert b"held by another worker" not in data
            async with partner(PostgresStore(pg_url, "w2", 30), [], primary) as w2:
                status, data = await send_raw(w2, acmc, decision("nowhere-2", me, "d-n"),
                                              "d-n")
                assert status == 403, data
                assert b"held by another worker" not in data
    asyncio.run(main())
