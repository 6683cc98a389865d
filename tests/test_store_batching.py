"""Group commit in the ACMS node (docs/decisions.md "Benchmarks"): requests handled in one
event-loop iteration are stored in ONE store transaction, in arrival order, and none is answered
before that commit ("stored before acknowledged", 23.280 10.17.7.2 step 4); a failed commit
stores none of them, answers every one 500 and stops the node.

The requests come in a burst of UDP datagrams from a bare socket (the foreign primary ACMS):
the endpoint drains them in one wake-up, so they share one loop iteration.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import Addressee, AddUserConfigurationRequest, Party
from mcacm_sip.core.events import Put, StoreChange
from mcacm_sip.core.state import Role, Transaction
from mcacm_sip.runtime import TraceRecord
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.config import AcmsNodeConfig
from mcacm_sip.runtime.lab import DAVE, LOOPBACK, MIKE, PRIMARY, partner_config
from mcacm_sip.sip.aio import Listen
from mcacm_sip.store import SharedStore, SqliteStore, Store

WAIT = 10.0  # upper bound only
TIDS = [f"t-{n}" for n in range(1, 6)]

Event = tuple[str, tuple[str, ...]]  # ("commit", transaction ids) | ("answer", (status,))
#                                     | ("send", ()): a MESSAGE out


class RecordingStore(SqliteStore):
    """The real SQLite store, noting each commit's partner transactions in a shared log."""

    def __init__(self, path: str, log: list[Event]) -> None:
        super().__init__(path)
        self.log = log

    def apply(self, changes: Sequence[StoreChange]) -> None:
        tids = tuple(dict.fromkeys(  # first appearance of each, in order
            c.record.transaction_id for c in changes
            if isinstance(c, Put) and isinstance(c.record, Transaction)))
        super().apply(changes)
        self.log.append(("commit", tids))


def message(tid: str, port: int, n: int) -> bytes:
    body = codec.encode(AddUserConfigurationRequest(
        tid, Party("sip:alice@primary.example"), (MIKE,), Addressee(DAVE)))
    return (f"MESSAGE sip:acms@partner.example SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-batch-{n}\r\n"
            f"From: <{PRIMARY}>;tag=b{n}\r\nTo: <sip:acms@partner.example>\r\n"
            f"Call-ID: batch-{n}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
            f"Content-Type: {codec.ACM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


@asynccontextmanager
async def partner(store: Store | SharedStore, log: list[Event], primary: socket.socket
                  ) -> AsyncIterator[AcmsNode]:
    """Our partner ACMS (automatic approval of add-user requests) on loopback UDP; what it
    sends to the primary goes to the ``primary`` socket."""

    def trace(record: TraceRecord) -> None:
        if record.direction == "out" and record.data.startswith(b"SIP/2.0 "):
            log.append(("answer", (record.data[8:11].decode(),)))
        elif record.direction == "out" and record.data.startswith(b"MESSAGE "):
            log.append(("send", ()))

    hop = f"sip:127.0.0.1:{primary.getsockname()[1]}"
    sip = SipSettings(listens=(Listen("udp", "127.0.0.1", 0),), hops={PRIMARY: hop},
                      trusted_hosts=LOOPBACK)
    node = AcmsNode(AcmsNodeConfig(partner_config(None), sip), store=store, trace=trace)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def burst(node: AcmsNode, primary: socket.socket) -> list[int]:
    """Send every request of TIDS at once; the SIP status of each answer, in arrival order."""
    port = node.addresses["udp"][1]
    me = primary.getsockname()[1]
    for n, tid in enumerate(TIDS):
        primary.sendto(message(tid, me, n), ("127.0.0.1", port))
    loop = asyncio.get_running_loop()
    statuses: list[int] = []
    async with asyncio.timeout(WAIT):
        while len(statuses) < len(TIDS):
            data = await loop.sock_recv(primary, 65536)
            if data.startswith(b"SIP/2.0 ") and b"CSeq: 1 MESSAGE" in data:
                statuses.append(int(data[8:11]))
    return statuses


def udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def test_a_burst_is_stored_in_one_commit_in_order_before_any_answer(tmp_path: Path) -> None:
    log: list[Event] = []

    async def main() -> tuple[list[int], list[Transaction | None]]:
        with udp_socket() as primary:
            store = RecordingStore(str(tmp_path / "partner.sqlite"), log)
            async with partner(store, log, primary) as node:
                statuses = await burst(node, primary)
                return statuses, [node.core.transaction(Role.PARTNER, t, PRIMARY)
                                  for t in TIDS]

    statuses, stored = asyncio.run(main())
    assert statuses == [200] * len(TIDS)
    commits = [tids for kind, tids in log if kind == "commit" and tids]
    assert commits[0] == tuple(TIDS)  # one transaction for the burst, in arrival order
    first_answer = next(i for i, (kind, _) in enumerate(log) if kind == "answer")
    first_commit = next(i for i, (kind, tids) in enumerate(log) if kind == "commit" and tids)
    assert first_commit < first_answer  # stored before acknowledged
    # and each 200 leaves before the sends its commit released (10.17.7.2 step 4: the
    # primary learns its request is stored before it hears of its outcome)
    answers = [i for i, (kind, status) in enumerate(log) if kind == "answer"]
    sends = [i for i, (kind, _) in enumerate(log) if kind == "send"]
    assert len(answers) == len(TIDS) and sends and answers[-1] < sends[0]
    assert all(tx is not None for tx in stored)
    reopened = SqliteStore(str(tmp_path / "partner.sqlite"))
    assert {t.transaction_id for t in reopened.load().transactions} == set(TIDS)
    reopened.close()


def test_a_failed_commit_stores_none_of_the_batch_answers_500_and_stops(
        tmp_path: Path) -> None:
    path = tmp_path / "partner.sqlite"
    log: list[Event] = []
    store = RecordingStore(str(path), log)
    # the third request of the burst cannot be written: the whole batch must roll back
    db = sqlite3.connect(path)
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON transactions "
               f"WHEN NEW.transaction_id = '{TIDS[2]}' "
               "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    db.commit()
    db.close()

    async def main() -> tuple[list[int], str]:
        with udp_socket() as primary:
            async with partner(store, log, primary) as node:
                statuses = await burst(node, primary)
                assert node.failed is not None and node.failed.done()
                return statuses, node.failed.result()

    statuses, reason = asyncio.run(main())
    assert statuses == [500] * len(TIDS)
    assert "disk says no" in reason
    assert not [e for e in log if e[0] == "commit" and e[1]]  # no commit succeeded
    reopened = SqliteStore(str(path))
    assert reopened.load().transactions == ()
    reopened.close()
