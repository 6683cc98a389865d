"""The ACMS node's one pass over a core answer (``AcmsNode._apply``) and its release of the
requests waiting for a commit (``_settle``) give what the functions they replaced give: the
store changes of ``store_changes``, the verdict of ``verdict_of`` and its reply, the sends in
the order the core issued them, and per waiting request ``_stored_reply``'s answer
(docs/decisions.md "Round 10 (issue 18), the store and the runtime")."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mcacm_sip.acm.model import ProcessIndication
from mcacm_sip.core.events import (
    AcceptMessage,
    AcmsAction,
    Put,
    RefuseMessage,
    Remove,
    SendFlow,
    SubscribeFa,
    store_changes,
    verdict_of,
)
from mcacm_sip.core.state import Hop, Mapping, Outgoing, Purpose, Role
from mcacm_sip.runtime.acms import AcmsNode, Commit, Waiting
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.config import AcmsNodeConfig
from mcacm_sip.runtime.lab import PRIMARY, partner_config
from mcacm_sip.sip import Reply
from mcacm_sip.sip.aio import Listen

_FLOW = ProcessIndication("t-1", "sip:acms@partner.example", "profile-update-request")
_ACTIONS: list[AcmsAction] = [
    Put(Mapping(Role.PARTNER, PRIMARY, "sip:mike@primary.example",
                "sip:mike-1@partner.example", None, False)),
    Put(Outgoing("s-put", Purpose.INDICATE, Hop.PEER, PRIMARY, _FLOW)),
    Remove(Outgoing.KIND, "s-gone"),
    SendFlow("s-1", Hop.PEER, PRIMARY, _FLOW, "x-1"),
    SendFlow("s-2", Hop.ACMC, "sip:dave@partner.example", _FLOW),
    SendFlow("s-1", Hop.PEER, PRIMARY, _FLOW),  # a retry of s-1: its clock starts again
    SubscribeFa("sip:fa@partner.example"),
    AcceptMessage(),
    RefuseMessage(403, "not-authorised: no"),
    RefuseMessage(503, "quota: try later", 5),
]


def _node() -> AcmsNode:
    return AcmsNode(AcmsNodeConfig(partner_config(None), SipSettings(
        listens=(Listen("udp", "127.0.0.1", 0),), hops={PRIMARY: "sip:127.0.0.1:5999"},
        trusted_hosts=frozenset({"127.0.0.1"}))))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_ACTIONS), max_size=8), st.booleans(),
       st.lists(st.sampled_from(_ACTIONS), max_size=3))
def test_one_pass_gives_the_changes_the_verdict_and_the_sends(
        actions: list[AcmsAction], pending: bool, queued: list[AcmsAction]) -> None:
    node = _node()
    started: list[list[AcmsAction]] = []
    commits: list[int] = []

    def commit() -> bool:
        commits.append(1)
        return True

    setattr(node, "_start_sends", started.append)  # noqa: B010 (instance attributes)
    setattr(node, "_commit", commit)  # noqa: B010

    async def main() -> tuple[Any, ...]:
        if pending:  # a commit is pending already: everything waits for it
            node._stored = asyncio.get_running_loop().create_future()
            node._batch = store_changes(queued)
            node._after = [a for a in queued if isinstance(a, SendFlow | SubscribeFa)]
        before_batch, before_after = list(node._batch), list(node._after)
        verdict = node._apply(actions)
        await asyncio.sleep(0)
        return verdict, before_batch, before_after

    verdict, before_batch, before_after = asyncio.run(main())
    assert verdict is verdict_of(actions)
    changes = store_changes(actions)
    starts = [a for a in actions if isinstance(a, SendFlow | SubscribeFa)]
    if changes or pending:  # queued for the commit, in order
        assert node._batch == before_batch + changes
        assert node._after == before_after + starts
        assert started == [] and commits == ([] if pending else [1])
    else:  # nothing to store: the sends start now
        assert started == [starts] and node._batch == [] and node._after == []
    sends = [a.send_id for a in actions if isinstance(a, SendFlow)]
    # each send issued is timed once, oldest first, a retry's issue counting
    last = {s: i for i, s in enumerate(sends)}
    assert list(node._sending) == sorted(last, key=last.__getitem__)


_REPLIES = [Reply(200), Reply(403), Reply(503)]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Commit)), st.frozensets(st.sampled_from(["k1", "k2"])),
       st.lists(st.tuples(st.sampled_from(_REPLIES), st.sampled_from([None, "k1", "k2", "k3"]),
                          st.booleans(), st.booleans()), max_size=6))
def test_released_answers_are_stored_replys(
        outcome: Commit, held: frozenset[str],
        waiting: list[tuple[Reply, str | None, bool, bool]]) -> None:
    node = _node()

    async def main() -> list[Reply | None]:
        loop = asyncio.get_running_loop()
        stored = loop.create_future()
        answers = []
        for reply, key, opens, cancelled in waiting:
            answer: asyncio.Future[Reply] = loop.create_future()
            if cancelled:  # its endpoint stopped
                answer.cancel()
            answers.append(Waiting(answer, reply, key, opens))
        node._settle(stored, answers, outcome, held)
        assert stored.result() == (outcome, held)
        return [None if w.answer.cancelled() else w.answer.result() for w in answers]

    got = asyncio.run(main())
    assert got == [None if cancelled else node._stored_reply(outcome, held, reply, key)
                   for reply, key, _opens, cancelled in waiting]
