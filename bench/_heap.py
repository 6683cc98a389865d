"""The partner ACMS's live heap in one process: what a request leaves tracked by the garbage
collector, and how long a full collection then takes (docs/decisions.md "Round 6 (issue 18),
the live heap").

Not a bench (run.py skips names starting with "_"): load-independent counts beside the CPU and
wall time of the collections. The partner ACMS of ``acms_hotpath.py`` gets ``--requests``
requests (each: MESSAGE in, 200 out, two MESSAGEs out, their 200s in), two ways:

- ``unpaced`` (a library user's process, CPython's thresholds): tracked objects per request
  (``gc.get_objects()`` after a collection, between half-way and the end), by holder (reachable
  from the SIP transaction layer, from the ACMS core, the rest), the full collections CPython
  ran during the rounds (count, CPU per request) and one full collection after the last request
  (what a paced pass traversing the whole heap costs);
- ``paced`` (as ``mcacm acms`` runs, ``runtime.base.paced_full_collections``): the paced pass
  every ``--pace`` requests (``--pace 2000`` at 1 000 requests/s is a pass every 2 s; 30000
  was main's 30 s pass), each pass timed; at the end the frozen heap is audited (unfrozen and
  collected): what a request left frozen in a cycle would show there.

    .venv/bin/python bench/_heap.py [--requests 40000] [--pace 2000] [--modes unpaced,paced]

``--source DIR`` measures another checkout (``git archive REV | tar -x -C DIR``) with this
environment; a checkout without ``runtime.base.paced_collection`` gets its pass as main had it
(``gc.collect()``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import io
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class _Pauses:
    """Every collection of the oldest generation: its CPU and wall time (gc.callbacks)."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []
        self._start = (0.0, 0.0)
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = (time.process_time(), time.perf_counter())
        else:
            self.cpu.append(time.process_time() - self._start[0])
            self.wall.append(time.perf_counter() - self._start[1])

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


def _reachable(root: object, seen: set[int], tracked: set[int]) -> int:
    """Tracked objects reachable from ``root`` not counted for an earlier root (classes,
    modules and functions are not followed: they are the program, not its state)."""
    stack, found = [root], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type) or type(obj).__name__ in (
                "module", "function", "builtin_function_or_method"):
            continue
        seen.add(id(obj))
        found += id(obj) in tracked
        stack.extend(gc.get_referents(obj))
    return found


async def _run(store: str, requests: int, on_batch: Callable[[int], None],
               at_end: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """``requests`` through a fresh partner ACMS; ``on_batch(answered)`` after each batch,
    ``at_end()`` after the last one, the node still running."""
    import acms_hotpath as hp

    from mcacm_sip.runtime.acms import AcmsNode
    from mcacm_sip.runtime.base import SipSettings
    from mcacm_sip.runtime.config import AcmsNodeConfig
    from mcacm_sip.runtime.lab import PRIMARY, partner_config
    from mcacm_sip.sip import Peer
    from mcacm_sip.sip.aio import Listen

    sip = SipSettings(listens=(Listen("udp", "127.0.0.1", 0),),
                      hops={PRIMARY: f"sip:{hp.PRIMARY_HOP[0]}:{hp.PRIMARY_HOP[1]}"},
                      trusted_hosts=frozenset({"127.0.0.1"}))
    node = AcmsNode(AcmsNodeConfig(partner_config(store), sip))
    await node.start()
    endpoint = node.endpoint
    family, (_, protocol) = next(iter(endpoint._udp.items()))
    fake = hp._FakeDatagramTransport()
    endpoint._udp[family] = (fake, protocol)  # type: ignore[assignment]
    source, hop = Peer("udp", "127.0.0.1", 5061), Peer("udp", *hp.PRIMARY_HOP)
    answers = messages = 0
    batch = 16
    census: dict[str, Any] = {}
    try:
        cpu = time.process_time()
        for at in range(0, requests, batch):
            for n in range(at, min(at + batch, requests)):
                endpoint.on_message(hp.request(n, f"heap-{n}"), source, True, protocol.local)
            answers, messages = await hp.pump(node, fake, hop, protocol.local, answers,
                                              messages, min(at + batch, requests))
            on_batch(answers)
            if answers == requests // 2 // batch * batch and "half" not in census:
                gc.collect()
                census["half"] = (answers, len(gc.get_objects()))
        census["cpu"] = time.process_time() - cpu
        at_end()
        census["collections"] = _timed_collections()
        objects = gc.get_objects()
        census["end"] = (answers, len(objects))
        census["types"] = collections.Counter(type(o).__qualname__ for o in objects)
        tracked = {id(o) for o in objects}
        del objects
        seen: set[int] = set()
        census["holders"] = {name: _reachable(root, seen, tracked) for name, root in (
            ("SIP transaction layer", endpoint.txn), ("ACMS core", node.core),
            ("rest of the node", node))}
        census["sip"] = (endpoint.txn.server_count, endpoint.txn.client_count)
    finally:
        await node.stop()
    if answers != requests or messages != 2 * requests:
        raise SystemExit(f"expected {requests} 200s and {2 * requests} MESSAGEs out, "
                         f"got {answers} and {messages}")
    return census


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "none"
    return (f"{len(values)}, median {statistics.median(values) * 1e3:.1f} ms, "
            f"max {max(values) * 1e3:.1f} ms")


def _timed_collections() -> list[tuple[float, float]]:
    """CPU and wall seconds of three full collections in a row: the first is what a pass
    after the traffic pays (caches cold), the others what the heap costs with caches warm."""
    runs = []
    for _ in range(3):
        cpu, wall = time.process_time(), time.perf_counter()
        gc.collect()
        runs.append((time.process_time() - cpu, time.perf_counter() - wall))
    return runs


def unpaced(store: str, requests: int) -> None:
    pauses = _Pauses()
    census = asyncio.run(_run(store, requests, lambda answered: None))
    automatic = list(zip(pauses.cpu, pauses.wall, strict=True))
    pauses.close()
    (half, n_half), (end, n_end) = census["half"], census["end"]
    per = (n_end - n_half) / (end - half)
    print(f"unpaced, {requests} requests: {census['cpu'] / requests * 1e6:.0f} µs CPU/request")
    print(f"  tracked objects after {half} requests: {n_half}, after {end}: {n_end}; "
          f"{per:.2f} per request")
    for name, count in census["holders"].items():
        print(f"  reachable from the {name}: {count / end:.2f} per request")
    server, client = census["sip"]
    print(f"  SIP transactions held at the end (Timers J and K run on the loop clock): "
          f"{server} server, {client} client")
    print("  most frequent types:", ", ".join(
        f"{name} {count}" for name, count in census["types"].most_common(8)))
    cpu = sum(c for c, _ in automatic)
    print(f"  CPython's own full collections during the rounds: {len(automatic)}, "
          f"{cpu / requests * 1e6:.1f} µs CPU per request, "
          f"longest {max((w for _, w in automatic), default=0) * 1e3:.1f} ms wall")
    runs = census["collections"]
    print(f"  full collections after {end} requests (ms CPU / wall, three in a row): "
          + ", ".join(f"{cpu * 1e3:.1f} / {wall * 1e3:.1f}" for cpu, wall in runs))


def paced(store: str, requests: int, pace: int) -> None:
    from mcacm_sip.runtime import base

    # a checkout before paced_collection: its pass was a plain full collection
    mine = getattr(base, "paced_collection", None)
    collect: Callable[[], object] = gc.collect if mine is None else mine
    passes: list[tuple[float, float]] = []
    due = [pace]

    def on_batch(answered: int) -> None:
        if answered >= due[0]:
            due[0] += pace
            cpu, wall = time.process_time(), time.perf_counter()
            collect()
            passes.append((time.process_time() - cpu, time.perf_counter() - wall))

    found: list[int] = []
    frozen: list[int] = []

    def audit() -> None:
        """What the node's frozen heap holds that only a traversal of it would free."""
        def stop(phase: str, info: dict[str, int]) -> None:
            if phase == "stop":
                found.append(info["collected"])
        frozen.append(gc.get_freeze_count())
        gc.unfreeze()
        gc.callbacks.append(stop)
        gc.collect()
        gc.callbacks.remove(stop)

    with base.paced_full_collections():
        census = asyncio.run(_run(store, requests, on_batch, audit))
    print(f"paced, {requests} requests, a pass every {pace} "
          f"({'gc.collect' if mine is None else 'paced_collection'}): "
          f"{census['cpu'] / requests * 1e6:.0f} µs CPU/request")
    print(f"  passes: CPU {_ms([c for c, _ in passes])}; wall {_ms([w for _, w in passes])}")
    print(f"  after the last request: {frozen[0]} objects frozen; an audit of them (unfrozen, "
          f"collected, the node still running) collected {found[-1]}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--requests", type=int, default=40000,
                   help="requests per mode (default 40000: 40 s at 1 000/s)")
    p.add_argument("--pace", type=int, default=2000,
                   help="paced mode: requests between two passes (default 2000)")
    p.add_argument("--modes", default="unpaced,paced", help="unpaced, paced or both")
    p.add_argument("--source", type=Path, default=HERE.parent,
                   help="the checkout to measure (default this one)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child process of one mode
    args = p.parse_args(argv)
    if args.one is None:  # each mode in a fresh process: one's heap is not the other's
        for mode in args.modes.split(","):
            subprocess.run([sys.executable, str(HERE / "_heap.py"), "--one", mode.strip(),
                            "--requests", str(args.requests), "--pace", str(args.pace)],
                           cwd=args.source, env={**os.environ, "PYTHONPATH": str(args.source)},
                           check=True)
        return
    sys.path.insert(0, str(HERE))
    from acms_hotpath import _seeded

    from mcacm_sip.cli.logs import setup_logging

    setup_logging(logging.INFO, "console")  # as `mcacm` runs, into memory
    logging.getLogger().handlers[0].setStream(io.StringIO())  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="bench-heap-") as tmp:
        store = _seeded(Path(tmp) / "partner.sqlite")
        if args.one == "unpaced":
            unpaced(store, args.requests)
        else:
            paced(store, args.requests, args.pace)


if __name__ == "__main__":
    main()
