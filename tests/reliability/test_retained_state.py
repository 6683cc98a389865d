"""Retained state over real sockets (issue 13 item 4): a legitimate peer ACMS sending profile
updates with large profiles makes the partner keep at most its quotas; past them each new
request is answered 503 with Retry-After (or 413 for a profile over the maximum) and nothing is
stored.

``python tests/reliability/test_retained_state.py [N]`` measures the memory of N open partner
transactions awaiting a decision (README.md, RELIABILITY.md "Red team").
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from mcacm_sip.acm import codec
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationRequest,
    Party,
    ProfileUpdateRequest,
    new_transaction_id,
)
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.events import Put
from mcacm_sip.core.state import Mapping, Role
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.config import AcmsLimits, AcmsNodeConfig
from mcacm_sip.runtime.lab import ALICE, DAVE, MIKE, PARTNER, PRIMARY, partner_config
from mcacm_sip.sip import Peer, Reply, Timers
from mcacm_sip.sip.aio import FinalResponse, Listen, SipEndpoint
from mcacm_sip.store import MemoryStore, SharedStore

WAIT = 20.0
MIKE_THERE = "sip:mike-1@partner.example"


@asynccontextmanager
async def partner_and_peer(store: str | None, limits: AcmsLimits, decider: bool = False
                           ) -> AsyncIterator[tuple[AcmsNode, SipEndpoint]]:
    """The partner ACMS (TCP) and a stand-in for the primary ACMS that takes every MESSAGE.
    ``decider``: manual decisions by DAVE (never logged on), so transactions stay open."""
    config = partner_config(store)
    if decider:
        config = replace(config, policy=(), decider=DAVE)
    sip = SipSettings(listens=(Listen("tcp", "127.0.0.1", 0),), transport="tcp",
                      send_timeout=4.0, timers=Timers(t1=0.1, t2=0.4, t4=0.5),
                      trusted_hosts=frozenset({"127.0.0.1"}))  # the peer's address
    # MIKE migrated to the partner as sip:mike-1@partner.example (10.17.5.2 done earlier)
    memory = MemoryStore()
    memory.apply([Put(Mapping(Role.PARTNER, PRIMARY, MIKE, MIKE_THERE))])
    node = AcmsNode(AcmsNodeConfig(config, sip, limits=limits),
                    store=memory if store is None else None)
    await node.start()
    port = node.endpoint.local_address("tcp")[1]
    peer = SipEndpoint([Listen("tcp", "127.0.0.1", 0)],
                       locate=lambda uri: Peer("tcp", "127.0.0.1", port))
    peer.serve("MESSAGE", lambda incoming: Reply(200), accept=(codec.ACM_CONTENT_TYPE,))
    await peer.start()
    node.set_hops({PRIMARY: f"sip:127.0.0.1:{peer.local_address('tcp')[1]};transport=tcp"})
    try:
        yield node, peer
    finally:
        await peer.close()
        await node.stop()


async def send(peer: SipEndpoint, flow: object) -> FinalResponse:
    """``flow`` from the primary ACMS to the partner, as the primary's runtime sends it."""
    req = peer.new_request("MESSAGE", PARTNER, from_uri=PRIMARY, to_uri=PARTNER,
                           body=codec.encode(flow),  # type: ignore[arg-type]
                           content_type=codec.ACM_CONTENT_TYPE,
                           headers=(("P-Asserted-Identity", f"<{PRIMARY}>"),))
    return await peer.send(req, timeout=WAIT)


def big_update(size: int) -> ProfileUpdateRequest:
    xml = ('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
           f"<Name>{'x' * size}</Name></mcptt-user-profile>")
    return ProfileUpdateRequest(new_transaction_id(), Party(ALICE), Addressee(DAVE),
                                MIKE_THERE, profile_from_xml(xml))


def test_profile_updates_from_a_legitimate_peer_stop_at_its_quota(tmp_path: Path) -> None:
    """The issue's case, scaled down: 60 updates with 20 KB profiles; the partner keeps at
    most ``max_bytes_per_peer`` for the peer, the rest get 503 + Retry-After, nothing stored
    for them; a profile over ``max_profile_bytes`` gets 413."""
    limits = AcmsLimits(max_bytes_per_peer=200_000, max_profile_bytes=100_000, retry_after=9)

    async def main() -> None:
        async with partner_and_peer(str(tmp_path / "partner.sqlite"), limits) as (node, peer):
            answers = [await send(peer, big_update(20_000)) for _ in range(60)]
            statuses = [a.status for a in answers]
            accepted = statuses.count(200)
            assert 0 < accepted < 10 and statuses == [200] * accepted + [503] * (60 - accepted)
            busy = answers[-1].message
            assert busy.header("retry-after") == "9"
            assert "quota-exceeded" in (busy.header("warning") or "")
            assert len(node.core.transactions()) == accepted
            assert node.core.quota.bytes_of(PRIMARY) <= limits.max_bytes_per_peer
            assert not isinstance(node.store, SharedStore)
            rows = node.store.load().transactions  # the store kept only those
            assert len(rows) == accepted
            huge = await send(peer, big_update(150_000))
            assert huge.status == 413
            assert "profile-too-large" in (huge.message.header("warning") or "")

    asyncio.run(main())


def test_open_transactions_per_peer_stop_at_their_quota() -> None:
    """Requests held for a decision: the peer may keep ``max_open_per_peer`` open."""
    limits = AcmsLimits(max_open_per_peer=5)

    async def main() -> None:
        async with partner_and_peer(None, limits, decider=True) as (node, peer):
            statuses = [(await send(peer, AddUserConfigurationRequest(
                new_transaction_id(), Party(ALICE), (MIKE,)))).status for _ in range(8)]
            assert statuses == [200] * 5 + [503] * 3
            assert node.core.quota.open_of(PRIMARY) == 5

    asyncio.run(main())


def test_limits_are_read_from_the_acms_toml() -> None:
    from mcacm_sip.runtime.config import parse_acms_node

    data = {"psi": PARTNER, "limits": {"max_profile_bytes": 1000, "max_open_per_peer": 2,
                                       "max_bytes_per_peer": 3000, "max_store_bytes": 4000}}
    limits = parse_acms_node(data).limits
    assert limits.quotas().max_profile_bytes == 1000
    assert (limits.max_open_per_peer, limits.max_bytes_per_peer, limits.max_store_bytes) == (
        2, 3000, 4000)
    import pytest

    from mcacm_sip.core.config import ConfigError
    with pytest.raises(ConfigError, match=r"limits\.max_store_bytes"):
        parse_acms_node({"psi": PARTNER, "limits": {"max_store_bytes": 0}})


# --------------------------------------------------------------------------- measurement


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def measure(n: int, profile: int) -> None:
    """RSS growth of a partner ACMS (memory store) per open transaction awaiting a decision."""
    limits = AcmsLimits(max_open_per_peer=n + 100, max_in_flight=10 * n,
                        max_bytes_per_peer=1 << 40, max_store_bytes=1 << 40)
    async with partner_and_peer(None, limits, decider=True) as (node, peer):
        for _ in range(20):  # warm up the code paths
            await send(peer, AddUserConfigurationRequest(new_transaction_id(), Party(ALICE),
                                                         (MIKE,)))
        gc.collect()
        before = rss_kib()
        for _ in range(n):
            flow: object = AddUserConfigurationRequest(new_transaction_id(), Party(ALICE),
                                                       (MIKE,))
            if profile:
                flow = big_update(profile)
            answer = await send(peer, flow)
            assert answer.status == 200, (answer.status, answer.message.header("warning"))
        gc.collect()
        after = rss_kib()
        core: AcmsCore = node.core
        kind = f"{profile} B profile updates" if profile else "add-user"
        print(f"{n} open partner transactions ({kind}, "
              f"awaiting DAVE's decision): RSS +{(after - before) / 1024:.1f} MiB, "
              f"{(after - before) * 1024 / n / 1024:.1f} KiB per transaction; "
              f"counted {core.quota.total / n:.0f} B each")


if __name__ == "__main__":
    asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
                        int(sys.argv[2]) if len(sys.argv) > 2 else 0))
