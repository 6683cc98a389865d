"""The runtime on the SIP layer's public hooks (docs/sip-api-requests.md 2-4): node traces whose
addresses line up across nodes, static hops through ``locate``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcacm_sip.acm.model import Addressee
from mcacm_sip.runtime import TraceRecord
from mcacm_sip.runtime.lab import DAVE, MIKE, Lab

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
