"""Pending data (23.280 10.17.3.1) across a failover, as an operator would meet it: the
primary's ACMS as three workers on PostgreSQL behind Kamailio's dispatcher
(examples/scale-out), ALICE's ACMC offline when the partner's Result arrives, so it is queued
as pending at the worker holding the procedure; that worker is SIGKILLed, a survivor takes
the transaction over when the lease expires, the killed worker is started again (it rejoins
the dispatcher and holds nothing any more), then ALICE logs on: the notification, the
download and the Result must reach her (docs/decisions.md "Scale-out: ...": a download goes to
the worker holding the items).  The same with the cluster in the partner role: the request
waits for its deciding ACMC, which downloads and decides after the failover."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest
from scaleout_kit import Dispatcher, Worker, dispatcher, free_ports, workers
from test_scaleout import LEASE, Load, cluster, store_lines

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import Addressee, AddUserConfigurationRequest, Party, new_transaction_id
from mcacm_sip.core.config import (
    REQUEST_FLOWS,
    AcmcConfig,
    AcmsConfig,
    AuthorisedUser,
    PeerSystem,
)
from mcacm_sip.core.identity import procedure_id
from mcacm_sip.runtime import AcmcNode, AcmcNodeConfig, AcmsNode, AcmsNodeConfig, SipSettings
from mcacm_sip.runtime.acmc import AutoDecider
from mcacm_sip.runtime.lab import ALICE, DAVE, LOOPBACK, PARTNER, PRIMARY, PROFILE_XML
from mcacm_sip.runtime.messaging import PROCEDURE_HEADER
from mcacm_sip.sip import Peer
from mcacm_sip.sip.aio import Listen, SipEndpoint

WAIT = 30.0  # upper bound of each step; a lease of 2 s expires within about 3 s

EVE = "sip:eve@primary.example"
"""Not an authorised ACM user: her MESSAGE is refused (403) by whichever worker gets it."""


async def holder(url: str, owner: str) -> str | None:
    """The worker holding the transaction of ``owner``'s pending item (None: no item)."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT t.worker FROM pending p JOIN transactions t ON t.key = p.key "
            "WHERE p.owner = $1", owner)
    finally:
        await conn.close()


async def until(what: str, check: object) -> None:
    """Until ``await check()`` is true (bounded by WAIT)."""
    async with asyncio.timeout(WAIT):
        while not await check():  # type: ignore[operator]
            await asyncio.sleep(0.1)
    del what


async def routed_to(core: Dispatcher, ws: list[Worker], procedure: str, n: int) -> None:
    """Until the dispatcher sends a MESSAGE with X-CID ``procedure`` to worker ``n`` (its
    probes find a restarted worker within a second or two).  Each probe is EVE's request,
    which the worker that gets it refuses (403) and logs with its Call-ID: nothing changes."""
    endpoint = SipEndpoint([Listen("udp", "127.0.0.1", 0)],
                           locate=lambda _uri: Peer("udp", "127.0.0.1", core.port))
    await endpoint.start()
    try:
        async with asyncio.timeout(WAIT):
            while True:
                tid = uuid.uuid4().hex
                body = codec.encode(AddUserConfigurationRequest(
                    tid, Party(EVE), ("sip:x@primary.example",), Addressee(DAVE)))
                msg = endpoint.new_request(
                    "MESSAGE", PRIMARY, from_uri=EVE, to_uri=PRIMARY, body=body,
                    content_type=codec.ACM_CONTENT_TYPE, headers=((PROCEDURE_HEADER, procedure),))
                final = await endpoint.send(msg, timeout=WAIT)
                assert final.status == 403, final.status
                if msg.call_id in ws[n - 1].log.read_text(errors="replace"):
                    return
                await asyncio.sleep(0.2)
    finally:
        await endpoint.close()


@pytest.mark.timeout(180)
def test_a_result_pending_at_a_killed_worker_reaches_the_acmc(pg_url: str, tmp_path: Path
                                                               ) -> None:
    with cluster(tmp_path, pg_url) as c:
        async def main() -> str | None:
            # ALICE starts away (no REGISTER): had she logged on and off at once, a worker
            # learning the log-on late (one notification later, docs/scale-out.md) would
            # deliver the Result to her still-listening ACMC instead of queueing it
            async with Load(c, logon=False) as load:
                tid = new_transaction_id()
                handle = load.alice.submit(AddUserConfigurationRequest(
                    tid, Party(ALICE), (f"sip:u-{tid[:12]}@primary.example",),
                    Addressee(DAVE)))
                # the partner approves at once; ALICE is away: the Result waits at a worker
                first = None
                async with asyncio.timeout(WAIT):
                    while (first := await holder(c.url, ALICE)) is None:
                        await asyncio.sleep(0.1)
                victim = next(w for w in c.workers if f"acms-{w.n}" == first)
                victim.kill()

                async def taken_over() -> bool:
                    return await holder(c.url, ALICE) not in (first, None)
                await until("a survivor took the transaction over", taken_over)
                # the operator restarts the crashed worker: it rejoins, holding nothing
                await asyncio.to_thread(victim.start)
                await routed_to(c.core, c.workers, procedure_id(ALICE, tid), victim.n)

                await load.alice.logon()  # -> notification -> download -> the Result
                out = await handle.wait(WAIT)
                assert out.failure is None, out.failure
                return out.result

        assert asyncio.run(main()) == "success"


CAROL = "sip:carol@primary.example"
"""Decides add-user requests of the partner system in the cluster (the partner role here)."""

CAROL_DECIDES = f"""
[[users]]
id = "{CAROL}"
decide = ["add-user-configuration-request"]

[migration]
profile = '{PROFILE_XML}'
"""


@pytest.mark.timeout(180)
def test_a_request_pending_at_a_killed_worker_is_downloaded_and_decided(
        pg_url: str, tmp_path: Path) -> None:
    """The cluster as the partner: DAVE's system (in-process, primary role) asks CAROL, who
    is away; the request waits at one worker, which is SIGKILLed, taken over and restarted;
    CAROL logs on, downloads the request, approves it, and DAVE gets the Result."""
    ports = free_ports(3)
    peer_port, port = free_ports(2)
    with workers(tmp_path, ports, port, [store_lines(pg_url, n) for n in (1, 2, 3)],
                 extra=CAROL_DECIDES) as ws, \
            dispatcher(tmp_path, ports, peer_hop=f"sip:127.0.0.1:{peer_port}",
                       port=port) as core:
        async def main() -> str | None:
            foreign = AcmsNode(AcmsNodeConfig(
                AcmsConfig(PARTNER, peers=(PeerSystem(PRIMARY, ("primary.example",)),),
                           users=(AuthorisedUser(DAVE, REQUEST_FLOWS),)),
                SipSettings(listens=(Listen("udp", "127.0.0.1", peer_port),),
                            hops={PRIMARY: core.uri()}, trusted_hosts=LOOPBACK)))
            dave = AcmcNode(AcmcNodeConfig(AcmcConfig(DAVE, PARTNER), SipSettings(
                listens=(Listen("udp", "127.0.0.1", 0),),
                hops={"*": f"sip:127.0.0.1:{peer_port}"}, trusted_hosts=LOOPBACK)))
            carol = AcmcNode(AcmcNodeConfig(AcmcConfig(CAROL, PRIMARY), SipSettings(
                listens=(Listen("udp", "127.0.0.1", 0),), hops={"*": core.uri()},
                trusted_hosts=LOOPBACK)), decider=AutoDecider(True))
            await foreign.start()
            await dave.start()
            await carol.start(logon=False)  # away from the start (see the test above)
            try:
                tid = new_transaction_id()
                handle = dave.submit(AddUserConfigurationRequest(
                    tid, Party(DAVE), ("sip:zed@partner.example",), Addressee(CAROL)))
                first = None
                async with asyncio.timeout(WAIT):
                    while (first := await holder(pg_url, CAROL)) is None:
                        await asyncio.sleep(0.1)
                victim = next(w for w in ws if f"acms-{w.n}" == first)
                victim.kill()

                async def taken_over() -> bool:
                    return await holder(pg_url, CAROL) not in (first, None)
                await until("a survivor took the transaction over", taken_over)
                await asyncio.to_thread(victim.start)
                await routed_to(core, ws, procedure_id(DAVE, tid), victim.n)

                await carol.logon()  # -> notification -> download -> decision -> Result
                out = await handle.wait(WAIT + 2 * LEASE)
                assert out.failure is None, out.failure
                return out.result
            finally:
                await carol.stop()
                await dave.stop()
                await foreign.stop()

        assert asyncio.run(main()) == "success"
