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

from test_runtime_postgres import burst
from test_store_batching import TIDS, WAIT, partner, udp_socket

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationResponse,
    Party,
    Result,
    ResultCode,
)
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.lab import DAVE, PARTNER
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
