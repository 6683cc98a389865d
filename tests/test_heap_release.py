"""A running ACMS gives glibc's free heap pages back periodically (runtime.base
.release_free_heap): under churn the live C heap is flat but RSS would grow with the traffic
seen (bench/memory.py, docs/decisions.md "Benchmarks")."""

from __future__ import annotations

import asyncio
import platform
import time
from pathlib import Path

import pytest

from mcacm_sip.runtime import acms as acms_module
from mcacm_sip.runtime import base
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.config import parse_acms_node


def test_a_running_acms_trims_the_heap_periodically_and_stops_with_the_node(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    monkeypatch.setattr(base, "MALLOC_TRIM", trim)
    monkeypatch.setattr(acms_module, "HEAP_RELEASE_INTERVAL", 0.05)

    async def run() -> None:
        node = AcmsNode(parse_acms_node({"psi": "sip:acms@primary.example"}))
        await node.start()
        try:
            # until two trims ran (0.1 s on an idle machine); a sleep of 0.5 s saw only one
            # when the loop was held up that long after the node started (a busy machine)
            give_up = time.monotonic() + 30
            while len(calls) < 2 and time.monotonic() < give_up:
                await asyncio.sleep(0.01)
        finally:
            await node.stop()
        trimmed = len(calls)
        assert trimmed >= 2 and set(calls) == {0}  # malloc_trim(0): all of the free pages
        await asyncio.sleep(0.2)
        assert len(calls) == trimmed  # stopped with the node

    asyncio.run(run())


def test_without_glibc_there_is_nothing_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "MALLOC_TRIM", None)
    asyncio.run(asyncio.wait_for(base.release_free_heap(0.01), 1))  # returns at once


def test_glibc_malloc_trim_is_found() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    assert base.MALLOC_TRIM is not None and base.MALLOC_TRIM(0) in (0, 1)


def test_a_paced_process_collects_its_oldest_generation_only_from_the_heap_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`mcacm acms` paces its full collections (a 100 ms pause about every 2 000 requests
    under load): none from CPython's thresholds, one per release_free_heap pass, and the
    process's settings come back when the node ends."""
    import gc
    import weakref

    class Cyclic:
        me: object

    before = gc.get_threshold()
    monkeypatch.setattr(base, "MALLOC_TRIM", None)  # the collection alone keeps the pass alive
    with base.paced_full_collections():
        assert base.full_collections_paced()
        assert gc.get_threshold()[:2] == (base.YOUNG_COLLECTION_THRESHOLD, before[1])
        junk = Cyclic()
        junk.me = junk
        gone = weakref.ref(junk)
        gc.collect(1)  # now in the oldest generation, where only a full collection looks
        del junk
        for _ in range(50):  # young collections galore: they never reach it
            gc.collect(1)
        assert gone() is not None

        async def one_pass() -> None:
            task = asyncio.ensure_future(base.release_free_heap(0.01))
            while gone() is not None:
                await asyncio.sleep(0.01)
            task.cancel()

        asyncio.run(asyncio.wait_for(one_pass(), 5))
    assert gc.get_threshold() == before and not base.full_collections_paced()


def test_what_lived_through_a_paced_collection_is_not_traversed_again_until_an_audit() -> None:
    """A paced collection freezes what survived it, so the next one traverses only what
    arrived since (its pause follows the request rate, not the retained heap); a cycle among
    frozen objects that became garbage is found by the next audit."""
    import gc
    import weakref

    class Cyclic:
        me: object

    with base.paced_full_collections():
        kept = Cyclic()
        kept.me = kept
        gone = weakref.ref(kept)
        frozen = gc.get_freeze_count()
        base.paced_collection()
        assert gc.get_freeze_count() > frozen
        assert not any(o is kept for o in gc.get_objects())  # in no generation: not traversed
        del kept
        base.paced_collection()
        assert gone() is not None  # frozen: only an audit looks at it
        base.paced_collection(audit=True)
        assert gone() is None


def test_the_heap_pass_collects_at_its_own_pace_audits_on_schedule_and_trims_less_often(
        monkeypatch: pytest.MonkeyPatch) -> None:
    audits: list[bool] = []
    trims: list[int] = []
    monkeypatch.setattr(base, "paced_collection", lambda audit=False: audits.append(audit))

    def trim(pad: int) -> int:
        trims.append(pad)
        return 1
    monkeypatch.setattr(base, "MALLOC_TRIM", trim)

    async def run() -> None:
        task = asyncio.ensure_future(base.release_free_heap(0.04, collect_interval=0.01,
                                                            audit_interval=0.03))
        while len(audits) < 6:
            await asyncio.sleep(0.005)
        task.cancel()

    with base.paced_full_collections():
        asyncio.run(asyncio.wait_for(run(), 30))
    assert audits[:6] == [False, False, True, False, False, True]  # every third tick
    assert len(trims) == len(audits) // 4  # every fourth tick: 0.04 s


def test_paced_collections_leave_no_cycle_of_a_request_frozen(tmp_path: Path) -> None:
    """What a request leaves alive at a paced collection is frozen and then freed by its
    reference count alone: a request through all five nodes (UDP), a paced collection after
    each, then an audit of the frozen heap with the nodes running: it finds no cycle the
    requests left behind, however many there were."""
    import gc

    from mcacm_sip.acm.codec import profile_from_xml
    from mcacm_sip.acm.model import Addressee, ProfileUpdateRequest, new_transaction_id
    from mcacm_sip.runtime.lab import DAVE, ROUTINE, Lab, profile_xml

    found: list[int] = []

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            found.append(info["collected"])

    async def main() -> None:
        async with Lab.start(tmp_path, transport="udp") as lab:
            migrated = await lab.migrate_mike(15)

            async def one() -> None:
                out = await lab.alice.request(ProfileUpdateRequest(
                    new_transaction_id(), lab.alice.core.me, Addressee(DAVE), migrated,
                    profile_from_xml(profile_xml("Mike", ROUTINE)), "please"), 15)
                assert out.failure is None and out.result == "success"
            await one()  # first use: lazy imports and caches
            base.paced_collection(audit=True)
            for _ in range(12):
                await one()
                base.paced_collection()
            gc.unfreeze()
            gc.callbacks.append(collected)
            try:
                gc.collect()
            finally:
                gc.callbacks.remove(collected)

    with base.paced_full_collections():
        asyncio.run(asyncio.wait_for(main(), 120))
    assert found == [0]
