"""Kamailio's dispatcher (examples/scale-out/kamailio.cfg) in front of three ACMS worker
processes (examples/scale-out/worker-<n>.toml): what the dispatcher itself promises
(docs/scale-out.md "The dispatcher").

- every MESSAGE of one procedure (one X-CID, a different Call-ID each) reaches one worker;
  procedures spread over the workers; a MESSAGE without X-CID is hashed on its Call-ID;
- the workers answer Kamailio's OPTIONS probes (a worker that does not would be skipped);
- a SIGKILLed worker is skipped: every request still gets its 200 from another worker; started
  again, it rejoins (the probes find it) and gets procedures again;
- a sender Kamailio cannot authenticate is refused there (403) and reaches no worker.

The workers use one SQLite file each here: these are the dispatcher's properties, not the
store's (tests/test_scaleout.py runs them on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import pytest
from scaleout_kit import Dispatcher, Worker, dispatcher, free_ports, workers

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import Addressee, AddUserConfigurationRequest, Party
from mcacm_sip.core.identity import procedure_id
from mcacm_sip.runtime.lab import ALICE, DAVE, PRIMARY
from mcacm_sip.runtime.messaging import PROCEDURE_HEADER
from mcacm_sip.sip import Peer
from mcacm_sip.sip.aio import FinalResponse, Listen, SipEndpoint

WAIT = 10.0  # upper bound of one exchange; a failover adds the 1 s worker timeout


def request(tid: str) -> bytes:
    return codec.encode(AddUserConfigurationRequest(
        tid, Party(ALICE), (f"sip:user-{tid[:8]}@primary.example",), Addressee(DAVE)))


class Client:
    """ALICE's side as a bare endpoint: MESSAGEs to the PSI through Kamailio, each with a new
    Call-ID, with the X-CID a test chooses (None: without one)."""

    def __init__(self, core: Dispatcher) -> None:
        self.core = core
        # the Request-URI is the PSI, the hop Kamailio (as the ACMC's "*" hop)
        self.endpoint = SipEndpoint([Listen("udp", "127.0.0.1", 0)],
                                    locate=lambda _uri: Peer("udp", "127.0.0.1", core.port))

    async def send(self, tid: str, procedure: str | None) -> FinalResponse:
        headers = () if procedure is None else ((PROCEDURE_HEADER, procedure),)
        msg = self.endpoint.new_request(
            "MESSAGE", PRIMARY, from_uri=ALICE, to_uri=PRIMARY, body=request(tid),
            content_type=codec.ACM_CONTENT_TYPE, headers=headers)
        return await self.endpoint.send(msg, timeout=WAIT)


def handled_by(ws: list[Worker]) -> dict[str, set[int]]:
    """Transaction id -> the workers that received a MESSAGE about it."""
    out: dict[str, set[int]] = {}
    for w in ws:
        for e in w.all_events():
            if e.get("event") == "acm.received" and e.get("transaction_id"):
                out.setdefault(e["transaction_id"], set()).add(w.n)
    return out


def run_cluster(tmp_path: Path, body: object, access_net: str = "127.0.0.1/32") -> None:
    ports = free_ports(3)
    dead_partner = f"sip:127.0.0.1:{free_ports(1)[0]}"  # forwards fail: not what is tested
    port = free_ports(1)[0]
    with workers(tmp_path, ports, port,
                 [f'path = "{tmp_path}/w{n}.sqlite"' for n in (1, 2, 3)]) as ws, \
            dispatcher(tmp_path, ports, peer_hop=dead_partner, access_net=access_net,
                       port=port) as core:
        async def main() -> None:
            client = Client(core)
            await client.endpoint.start()
            try:
                await asyncio.wait_for(body(core, ws, client), 90)  # type: ignore[operator]
            finally:
                await client.endpoint.close()

        asyncio.run(main())


@pytest.mark.timeout(180)
def test_one_procedure_one_worker_and_failover(tmp_path: Path) -> None:
    async def body(core: Dispatcher, ws: list[Worker], client: Client) -> None:
        # one procedure = three MESSAGEs with one X-CID and three Call-IDs (the request and
        # two repetitions of it: what an ACMC that lost the 200 sends)
        tids = [uuid.uuid4().hex for _ in range(24)]
        for tid in tids:
            for _ in range(3):
                final = await client.send(tid, procedure_id(ALICE, tid))
                assert final.status == 200, final.message.header("warning")
        seen = handled_by(ws)
        assert all(len(seen[t]) == 1 for t in tids), {t: seen.get(t) for t in tids}
        spread = Counter(next(iter(seen[t])) for t in tids)
        assert set(spread) == {1, 2, 3}, spread  # 24 procedures: every worker got some

        # no X-CID (a foreign ACMC): hashed on the Call-ID, still answered
        final = await client.send(uuid.uuid4().hex, None)
        assert final.status == 200

        # SIGKILL the busiest worker: every new request is still answered 200, none by it
        victim = ws[spread.most_common(1)[0][0] - 1]
        victim.kill()
        after = [uuid.uuid4().hex for _ in range(24)]
        for tid in after:
            final = await client.send(tid, procedure_id(ALICE, tid))
            assert final.status == 200, final.message.header("warning")
        seen = handled_by(ws)
        assert all(victim.n not in seen[t] for t in after)
        assert "inactive, next worker" in core.log_text()  # it was skipped, not waited for

        # started again it rejoins: the probes find it, procedures reach it again
        victim.start()
        rejoined = False
        for _ in range(200):
            tid = uuid.uuid4().hex
            final = await client.send(tid, procedure_id(ALICE, tid))
            assert final.status == 200
            if victim.n in handled_by(ws).get(tid, set()):
                rejoined = True
                break
            await asyncio.sleep(0.05)
        assert rejoined, "the restarted worker got nothing"

    run_cluster(tmp_path, body)


def test_a_sender_the_dispatcher_cannot_authenticate_reaches_no_worker(tmp_path: Path) -> None:
    """The workers believe what comes from Kamailio, so Kamailio is where senders are
    authenticated: with loopback outside its access network (and no TLS), ALICE's MESSAGE is
    refused there, whatever P-Asserted-Identity or X-CID it carries."""
    async def body(core: Dispatcher, ws: list[Worker], client: Client) -> None:
        tid = uuid.uuid4().hex
        final = await client.send(tid, procedure_id(ALICE, tid))
        assert final.status == 403
        assert handled_by(ws) == {}
        assert "not authenticated -> 403" in core.log_text()

    run_cluster(tmp_path, body, access_net="192.0.2.0/24")
