"""A running ACMS gives glibc's free heap pages back periodically (runtime.base
.release_free_heap): under churn the live C heap is flat but RSS would grow with the traffic
seen (bench/memory.py, docs/decisions.md "Benchmarks")."""

from __future__ import annotations

import asyncio
import platform
import time

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
        assert base.full_collections_paced() and gc.get_threshold()[:2] == before[:2]
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
