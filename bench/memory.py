"""Memory and scale: RSS while messages flow through the SIP layer and the partner ACMS (it must
stay flat: nothing kept per finished transaction), store bytes per pending item, and with a big
store (1 000 000 pending items) the time to notify one user and to download its k items.

1. Churn: a foreign primary ACMS (a bare UDP socket in this process: prepared datagrams, 200s
   built by copying headers, so it adds little) keeps 32 profile update requests in flight to our
   partner ACMS (automatic approval, SQLite store, retention 1 s so finished transactions leave);
   "messages" counts the SIP messages the ACMS received (requests and the 200s to its own
   MESSAGEs). RSS of this process is sampled every tenth of the run; the slope is fitted over
   the second half (the first fills what is bounded by design: Timer J, caches).
2. Scale: pending rows inserted directly into a SqliteStore (k = 1, 10, 100 for three users, the
   rest spread over other users); store bytes per item; the query of ``pending_for`` must use
   the index (EXPLAIN QUERY PLAN); then the time of ``store.pending_for`` (download read), of
   the core's logon -> pending data notification and of the download (core + encoding the
   response), at a small and at the big size: they must grow with k, not with the store.

    .venv/bin/python bench/memory.py [--quick] [--json FILE] [--messages 1000000] [--items N]
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from _common import Result, bench_parser, report, rss_bytes

from mcacm_sip.acm import codec
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    Addressee,
    Party,
    PendingDataDownloadRequest,
    ProfileUpdateRequest,
)
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.config import AcmsConfig, AuthorisedUser, PeerSystem, StoreConfig
from mcacm_sip.core.events import FlowFromAcmc, Put, SendFlow, UserLoggedOn
from mcacm_sip.core.state import Mapping, PendingItem, Role, Snapshot
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.base import MALLOC_TRIM, SipSettings
from mcacm_sip.runtime.config import AcmsNodeConfig
from mcacm_sip.runtime.lab import PARTNER, PRIMARY, ROUTINE, partner_config, profile_xml
from mcacm_sip.sip.aio import Listen
from mcacm_sip.store import SqliteStore

WINDOW = 32  # requests in flight: their sends stay under [limits] max_in_flight (300)
KS = (1, 10, 100)
MIGRATED = "sip:mike-1@partner.example"
PROFILE = profile_from_xml(profile_xml("Mike", ROUTINE))


# --- 1. churn ------------------------------------------------------------------------------------


def _request(tid: str) -> ProfileUpdateRequest:
    return ProfileUpdateRequest(tid, Party("sip:alice@primary.example"),
                                Addressee("sip:dave@partner.example"), MIGRATED, PROFILE,
                                "routine")


class ForeignPrimary:
    """A bare UDP socket playing the primary ACMS: requests from one prepared template, 200s to
    the partner's MESSAGEs by copying their headers (RFC 3261 8.2.6.2)."""

    _COPY = (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")

    def __init__(self, target: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.target = target
        self.port = self.sock.getsockname()[1]
        body = codec.encode(_request("TXID-PLACEHOLDER")).decode()
        self._head, self._tail = body.split("TXID-PLACEHOLDER")
        self.sent = 0
        self.received = 0  # SIP messages the ACMS received from us
        self.in_flight = 0

    def send_request(self) -> None:
        self.sent += 1
        n = self.sent
        body = f"{self._head}churn-{n}{self._tail}".encode()
        msg = (f"MESSAGE sip:acms@partner.example SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-churn-{n}\r\n"
               f"From: <{PRIMARY}>;tag=c{n}\r\nTo: <{PARTNER}>\r\nCall-ID: churn-{n}\r\n"
               f"CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
               f"Content-Type: {codec.ACM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
        self.sock.sendto(msg, self.target)
        self.received += 1
        self.in_flight += 1

    def _ok(self, request: bytes) -> bytes:
        head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
        keep = [h for h in head if h.split(b":", 1)[0].strip().lower() in self._COPY]
        keep = [h + b";tag=fp" if h.lower().startswith((b"to:", b"t:")) else h for h in keep]
        return b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n"

    def drain(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            if data.startswith(b"SIP/2.0 "):
                self.in_flight -= 1
            elif data.startswith(b"MESSAGE "):
                self.sock.sendto(self._ok(data), addr)
                self.received += 1


def rss_anon_mib() -> float:
    """The anonymous part of this process's RSS (malloc, Python objects, SQLite's page cache;
    the rest is mapped files: code, the store's WAL index)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo2() -> Any:
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):  # not glibc (>= 2.33)
        return None
    mallinfo2.restype = _MallInfo2
    return mallinfo2


_MALLINFO2 = _mallinfo2()


def malloc_mib() -> tuple[float, float] | None:
    """glibc's heap (mallinfo2): MiB in use by live C allocations (SQLite, libxml2, Python
    objects over 512 bytes) and MiB free inside the heap but not given back to the kernel.
    Read without side effects; None if not glibc."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def trimmed_rss_anon_mib() -> float | None:
    """Anonymous RSS after malloc_trim(0) gave the heap's free pages back (glibc only)."""
    if MALLOC_TRIM is None:
        return None
    MALLOC_TRIM(0)  # the ACMS's own periodic trim (runtime.base.release_free_heap)
    return rss_anon_mib()


# messages, RSS MiB, anonymous RSS MiB, glibc heap in use MiB, glibc heap free MiB
Sample = tuple[int, float, float, float | None, float | None]


async def churn(messages: int, work: Path) -> list[Sample]:
    """(messages received by the ACMS, RSS, anonymous RSS) every tenth of the run."""
    path = str(work / "churn.sqlite")
    seed = SqliteStore(path)
    seed.apply([Put(Mapping(Role.PARTNER, PRIMARY, "sip:mike@primary.example", MIGRATED,
                            PROFILE, False))])
    seed.close()
    config = partner_config(path)
    config = replace(config, timers=replace(config.timers, retention=1.0))
    peer = ForeignPrimary(("127.0.0.1", 0))
    sip = SipSettings(listens=(Listen("udp", "127.0.0.1", 0),),
                      hops={PRIMARY: f"sip:127.0.0.1:{peer.port}"},
                      trusted_hosts=frozenset({"127.0.0.1"}))  # the peer is on loopback
    node = AcmsNode(AcmsNodeConfig(config, sip))
    await node.start()
    peer.target = node.addresses["udp"]
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    step = max(1, messages // 10)
    samples: list[Sample] = []

    def readable() -> None:
        peer.drain()
        while peer.in_flight < WINDOW and peer.received < messages:
            peer.send_request()
        if peer.received >= (len(samples) + 1) * step:
            used, free = malloc_mib() or (None, None)
            samples.append((peer.received, rss_bytes([os.getpid()]) / 2**20, rss_anon_mib(),
                            used, free))
            heap = "" if used is None else f", C heap {used:.1f} in use + {free:.1f} free"
            print(f"  {peer.received:>9} messages: RSS {samples[-1][1]:.1f} MiB "
                  f"(anonymous {samples[-1][2]:.1f}{heap}), "
                  f"{len(node.core.transactions())} transactions kept", flush=True)
        if peer.received >= messages and peer.in_flight == 0 and not done.done():
            done.set_result(None)

    loop.add_reader(peer.sock, readable)
    try:
        readable()  # the first window
        await done
    finally:
        loop.remove_reader(peer.sock)
        peer.sock.close()
        await node.stop()
    return samples


def _round(mib: float | None) -> float | None:
    return None if mib is None else round(mib, 1)


def slope_kib_per_100k(samples: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares RSS growth over the second half of the samples: the first half fills what
    is bounded by design (the SIP layer keeps a finished UDP server transaction for Timer J =
    32 s, RFC 3261 17.2.2; the store's cache of encoded flows holds 4096)."""
    pts = samples[len(samples) // 2:]
    if len(pts) < 2:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
                 * 1024 * 100_000, 1) if sxx else None


# --- 2. scale ------------------------------------------------------------------------------------


def _owner(k: int) -> str:
    return f"sip:k{k}@partner.example"


def _layout(items: int) -> list[str]:
    """Owner of each item: k items for each measured user, ten per user for the rest."""
    owners = [_owner(k) for k in KS for _ in range(k)]
    rest = items - len(owners)
    return owners + [f"sip:u{n // 10}@partner.example" for n in range(rest)]


def build_store(path: str, items: int) -> tuple[SqliteStore, float]:
    """A store with ``items`` pending requests (direct inserts); (store, bytes per item)."""
    SqliteStore(path).close()  # schema
    xml = codec.encode(_request("t")).decode()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN")
    db.executemany("INSERT INTO pending VALUES (?, ?, 0, ?, ?)",
                   ((f"partner {PRIMARY} t-{n}", owner, float(n),
                     xml.replace("<transaction-id>t<", f"<transaction-id>t-{n}<"))
                    for n, owner in enumerate(_layout(items))))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size, pages, free = (db.execute(f"PRAGMA {p}").fetchone()[0]
                              for p in ("page_size", "page_count", "freelist_count"))
    db.close()
    return SqliteStore(path), (pages - free) * page_size / items


def query_plan(store_path: str) -> str:
    db = sqlite3.connect(store_path)
    rows = db.execute("EXPLAIN QUERY PLAN SELECT * FROM pending WHERE owner=? ORDER BY created",
                      (_owner(1),)).fetchall()
    db.close()
    return "; ".join(str(r[-1]) for r in rows)


def timed(fn: Callable[[], object], reps: int = 7) -> float:
    """Median wall time of ``fn`` in microseconds."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1e6 * statistics.median(times), 1)


def notify(core: AcmsCore, user: str) -> None:
    """10.17.3.1: logon -> pending data notification."""
    core.handle(UserLoggedOn(time.time(), user))


def download(core: AcmsCore, user: str) -> None:
    """10.17.3.1: all of the user's items in one response, encoded for its MESSAGE."""
    request = PendingDataDownloadRequest(f"d-{time.perf_counter_ns()}", user)
    for action in core.handle(FlowFromAcmc(time.time(), user, request)):
        if isinstance(action, SendFlow):
            codec.encode(action.flow)


def scale(items: int, work: Path) -> tuple[list[list[Any]], float, str]:
    """Rows (items, k, store read us, notify us, download us) at ``items``; bytes/item; plan."""
    path = str(work / f"pending-{items}.sqlite")
    t0 = time.perf_counter()
    store, per_item = build_store(path, items)
    build_s = time.perf_counter() - t0
    plan = query_plan(path)
    # the core holds the same queue in memory (restored from the store at start)
    flow = _request("t")
    owners = _layout(items)
    snapshot = Snapshot(pending=tuple(
        PendingItem(f"partner {PRIMARY} t-{n}", owner, False, float(n), flow)
        for n, owner in enumerate(owners)))
    users = tuple(AuthorisedUser(_owner(k)) for k in KS)
    core = AcmsCore(AcmsConfig(PARTNER, (PeerSystem(PRIMARY),), users,
                               store=StoreConfig(None)), snapshot)
    del snapshot
    rows: list[list[Any]] = []
    for k in KS:
        user = _owner(k)
        assert len(store.pending_for(user)) == k == len(core.pending_for(user))
        rows.append([items, k, timed(partial(store.pending_for, user)),
                     timed(partial(notify, core, user)), timed(partial(download, core, user))])
    store.close()
    print(f"  {items} pending items: built in {build_s:.1f} s, {per_item:.0f} bytes/item, "
          f"plan: {plan}", flush=True)
    for r in rows:
        print(f"    k={r[1]:>3}: store read {r[2]} us, notify {r[3]} us, download {r[4]} us",
              flush=True)
    return rows, per_item, plan


# --- the benchmark -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> Result:
    parser = bench_parser(__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--messages", type=int,
                        help="SIP messages into the ACMS (default 60 000, quick 20 000)")
    parser.add_argument("--items", type=int,
                        help="pending items of the big store (default 1 000 000, quick 20 000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    messages = args.messages or (20_000 if args.quick else 60_000)
    big = args.items or (20_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        print(f"churn: {messages} SIP messages into the partner ACMS", flush=True)
        t0 = time.perf_counter()
        samples = asyncio.run(churn(messages, work))
        churn_s = time.perf_counter() - t0
        after_trim = trimmed_rss_anon_mib()  # the node has stopped: what it held is free
        print("scale: pending items in the store", flush=True)
        (work / "small").mkdir()
        (work / "big").mkdir()  # --items 1000 must not reuse the small store
        small_rows, _, _ = scale(1_000, work / "small")
        big_rows, per_item, plan = scale(big, work / "big")
    slope = slope_kib_per_100k([(m, r) for m, r, *_ in samples])
    slope_anon = slope_kib_per_100k([(m, a) for m, _, a, *_ in samples])
    slope_heap = slope_kib_per_100k([(m, u) for m, _, _, u, _ in samples if u is not None])
    ratio = {r[1]: round(b[4] / r[4], 2) for r, b in zip(small_rows, big_rows, strict=True)}
    result: Result = {
        "name": "memory",
        "title": "RSS under message churn; pending-item queries on a big store",
        "tables": [
            {"title": f"RSS of the process (partner ACMS + bare sender) over {messages} "
                      f"messages ({churn_s:.0f} s)",
             "columns": ["messages", "RSS MiB", "anonymous MiB", "C heap in use MiB",
                         "C heap free MiB"],
             "rows": [[m, round(r, 1), round(a, 1), _round(u), _round(f)]
                      for m, r, a, u, f in samples]},
            {"title": "one user's k pending items: median us (store read = pending_for; "
                      "download = core + encoding the response)",
             "columns": ["items in store", "k", "store read us", "notify us", "download us"],
             "rows": small_rows + big_rows},
        ],
        "summary": {
            "RSS slope over the second half (KiB per 100k messages)": slope,
            "anonymous RSS slope over the second half (KiB per 100k messages)": slope_anon,
            "C heap in use slope over the second half (KiB per 100k messages)": slope_heap,
            "anonymous RSS after the run, once malloc_trim gave free pages back (MiB)":
                _round(after_trim),
            "RSS first/last sample (MiB)": (round(samples[0][1], 1), round(samples[-1][1], 1))
            if samples else None,
            "store bytes per pending item": round(per_item),
            "pending_for query plan": plan,
            "index used": "pending_by_owner" in plan,
            f"download time ratio {big} / 1000 items in store, per k": ratio,
        },
    }
    report(result, args.json)
    return result


if __name__ == "__main__":
    main()
