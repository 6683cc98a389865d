"""Large pending downloads (issue 13 item 5; docs/decisions.md "Pending data download pages"):
a user whose pending items add up to far more than a datagram gets every one of them, in
pages, over the example configuration's UDP; and a request too large for UDP goes over TCP
(RFC 3261 18.1.1) even from an endpoint without a TCP listener.

``MCACM_PENDING_ITEMS=1000 pytest tests/reliability/test_pending_download.py`` is the issue's
full case (1 000 items of 20 KB); the default run takes 120 (2.4 MB, 60 pages).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import Addressee, ProfileUpdateRequest, new_transaction_id
from mcacm_sip.runtime.acmc import Decision, ProgrammableDecider
from mcacm_sip.runtime.lab import DAVE, Lab
from mcacm_sip.sip import Reply, SipTransportError
from mcacm_sip.sip.aio import IncomingRequest, Listen, SipEndpoint

ITEMS = int(os.environ.get("MCACM_PENDING_ITEMS", "120"))
ITEM_BYTES = 20_000
WAVE = 40  # requests in flight at once (below the primary's max_in_flight)


def profile(n: int) -> object:
    return profile_from_xml('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
                            f"<Name>update {n} {'x' * ITEM_BYTES}</Name></mcptt-user-profile>")


def test_every_pending_item_reaches_the_user_over_udp_in_pages() -> None:
    """DAVE is offline while ALICE sends ITEMS profile updates of 20 KB for him to decide;
    at logon his ACMC downloads them page after page, decides each, and every answer reaches
    ALICE (before: one download response of ITEMS x 20 KB, lost on every logon)."""

    async def main() -> None:
        decider = ProgrammableDecider(lambda req: Decision(True, "ok"))
        async with Lab.start(transport="udp", dave=decider, dave_online=False) as lab:
            mike = await lab.migrate_mike()
            handles = []
            started = time.monotonic()
            for first in range(0, ITEMS, WAVE):
                wave = [lab.alice.submit(ProfileUpdateRequest(
                    new_transaction_id(), lab.alice.core.me, Addressee(DAVE), mike,
                    profile(n))) for n in range(first, min(first + WAVE, ITEMS))]  # type: ignore[arg-type]
                for h in wave:  # the partner stored it (10.17.7.2 step 4)
                    await asyncio.wait_for(asyncio.shield(h.indicated), 60)
                handles += wave
            pending = lab.partner.core.pending_for(DAVE)
            assert len(pending) == ITEMS
            queued = time.monotonic()
            await lab.dave.logon()
            outcomes = [await h.wait(120) for h in handles]
            done = time.monotonic()
            assert [o.result for o in outcomes] == ["success"] * ITEMS, \
                [o.failure for o in outcomes if o.result != "success"][:3]
            decided = [req.transaction_id for req, _ in decider.decided]
            assert sorted(decided) == sorted(h.transaction_id for h in handles)  # once each
            assert not lab.partner.core.pending_for(DAVE)
            print(f"\n{ITEMS} items of {ITEM_BYTES} B: queued in {queued - started:.1f} s, "
                  f"downloaded, decided and answered in {done - queued:.1f} s")

    asyncio.run(main())


def test_a_request_too_large_for_udp_goes_over_tcp_without_a_tcp_listener_of_ours() -> None:
    """RFC 3261 18.1.1: the sender needs no TCP listener (the answer comes back on the
    connection); before, only an endpoint listening on TCP itself switched."""

    async def main() -> None:
        with socket.socket() as probe:  # UDP and TCP on one port, as 18.1.1 expects
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        far = SipEndpoint([Listen("udp", "127.0.0.1", free), Listen("tcp", "127.0.0.1", free)])
        seen: list[str] = []

        def on_message(incoming: IncomingRequest) -> Reply:
            seen.append(incoming.source.transport)
            return incoming.reply(200)

        far.serve("MESSAGE", on_message)
        near = SipEndpoint([Listen("udp", "127.0.0.1", 0)])
        await far.start()
        await near.start()
        try:
            host, port = far.local_address("udp")
            for size in (100, 100_000):
                req = near.new_request("MESSAGE", f"sip:x@{host}:{port}", from_uri="sip:a@x",
                                       to_uri="sip:x@x", body=b"b" * size,
                                       content_type="text/plain")
                assert (await near.send(req, timeout=10)).status == 200
            assert seen == ["udp", "tcp"]
        finally:
            await near.close()
            await far.close()

    asyncio.run(main())


def test_a_request_too_large_for_a_datagram_fails_at_once_without_tcp() -> None:
    """No TCP at the far end: a request that fits a datagram falls back to UDP; one that
    cannot is a transport error at once, not a silent loss and a timeout (408)."""

    async def main() -> None:
        far = SipEndpoint([Listen("udp", "127.0.0.1", 0)])
        far.serve("MESSAGE", lambda incoming: incoming.reply(200))
        near = SipEndpoint([Listen("udp", "127.0.0.1", 0)])
        await far.start()
        await near.start()
        try:
            host, port = far.local_address("udp")

            def request(size: int) -> object:
                return near.new_request("MESSAGE", f"sip:x@{host}:{port}", from_uri="sip:a@x",
                                        to_uri="sip:x@x", body=b"b" * size,
                                        content_type="text/plain")

            assert (await near.send(request(30_000), timeout=10)).status == 200  # type: ignore[arg-type]
            with pytest.raises(SipTransportError, match="do not fit in UDP"):
                await near.send(request(70_000), timeout=30)  # type: ignore[arg-type]
        finally:
            await near.close()
            await far.close()

    asyncio.run(main())
