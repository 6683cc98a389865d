"""The runtime on the SIP layer's public hooks (docs/sip-api-requests.md 2-4): node traces whose
addresses line up across nodes, static hops through ``locate``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcacm_sip.acm.fa import EVENT_PRESENCE, EXPIRES_UNTIL_WITHDRAWN, publish_body
from mcacm_sip.acm.model import Addressee
from mcacm_sip.runtime import TraceRecord
from mcacm_sip.runtime.lab import DAVE, DUTY, MIKE, Lab

WAIT = 15.0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_every_traced_arrival_has_its_departure_with_the_same_addresses(
        transport: str, tmp_path: Path) -> None:
    seen: list[TraceRecord] = []
    listeners: set[tuple[str, int]] = set()

    async def main() -> None:
        async with Lab.start(tmp_path, transport=transport, trace=seen.append) as lab:  # type: ignore[arg-type]
            listeners.update(n.addresses[transport] for n in (
                lab.fa, lab.primary, lab.partner, lab.alice, lab.dave))
            out = await lab.alice.add_users((MIKE,), Addressee(DAVE), timeout=WAIT)
            assert out.result == "success"

    asyncio.run(main())
    sent = {(r.data, r.src, r.dst) for r in seen if r.direction == "out"}
    arrived = [r for r in seen if r.direction == "in"]
    assert arrived and all(r.transport == transport for r in seen)
    # the sender's source address is the one the receiver saw: over TCP, the connection's
    # ephemeral port, not the sender's listener
    assert all((r.data, r.src, r.dst) in sent for r in arrived)
    requests = [r for r in seen if r.direction == "out" and not r.data.startswith(b"SIP/")]
    assert requests and all(r.dst in listeners for r in requests)
    if transport == "tcp":  # each request leaves on an outbound connection's own port
        assert not any(r.src in listeners for r in requests)
    else:
        assert all(r.src in listeners for r in requests)


def test_fa_publication_refreshed_and_removed_without_a_body(tmp_path: Path) -> None:
    """RFC 3903 refresh / removal carry no body: the FA core judges the stored multipart one,
    which the compositor kept with its boundary (request 4)."""
    async def main() -> None:
        async with Lab.start(tmp_path, transport="udp") as lab:
            dave = lab.dave.endpoint
            content_type, body = publish_body(DUTY, DAVE)
            assert content_type.startswith("multipart/mixed") and "boundary" in content_type

            async def publish(expires: int, etag: str | None = None, with_body: bool = True
                              ) -> tuple[int, str | None]:
                headers = [("Event", EVENT_PRESENCE), ("Expires", str(expires)),
                           ("P-Asserted-Identity", f"<{DAVE}>")]
                if etag is not None:
                    headers.append(("SIP-If-Match", etag))
                final = await dave.send(dave.new_request(
                    "PUBLISH", DUTY, from_uri=DAVE, to_uri=DUTY, headers=headers,
                    body=body if with_body else b"",
                    content_type=content_type if with_body else None), timeout=WAIT)
                return final.status, final.message.header("sip-etag")

            status, etag = await publish(EXPIRES_UNTIL_WITHDRAWN)
            assert status == 200 and lab.fa.server.holders(DUTY) == (DAVE,)
            status, etag = await publish(EXPIRES_UNTIL_WITHDRAWN, etag, with_body=False)
            assert status == 200 and lab.fa.server.holders(DUTY) == (DAVE,)
            status, _ = await publish(0, etag, with_body=False)
            assert status == 200 and lab.fa.server.holders(DUTY) == ()

    asyncio.run(main())
