"""``mcacm demo``: two MC systems on loopback and the profile update (TS 23.280 10.17.7) through
every branch, each with the ladder of its SIP exchanges (docs/demo.md).

The nodes are the real runtime (:mod:`mcacm_sip.runtime`), in-process, on free ports, with
SQLite stores in a temporary directory.  Nothing waits on a timer: every step waits for the
event that ends it (a decision request reaching a user, a process indication, the final
response, the SIP answer to a NOTIFY), so a run takes well under a second.

    result = asyncio.run(run_demo(transport="udp"))
    result.ok, [b.actual for b in result.branches]
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcacm_sip.acm import codec
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.fa import resolution_from_notify
from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    GroupMembershipUpdateRequest,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    Party,
    ProfileUpdateRequest,
    new_transaction_id,
)
from mcacm_sip.core.config import REQUEST_FLOWS, AcmcConfig, AuthorisedUser
from mcacm_sip.core.fa_server import FaConfig, FaServerConfig
from mcacm_sip.ladder import LadderEvent, describe, render
from mcacm_sip.runtime import (
    AcmcNode,
    AcmcNodeConfig,
    AcmsNode,
    AcmsNodeConfig,
    FaServerNode,
    FaServerNodeConfig,
    ProgrammableDecider,
    RequestHandle,
    RequestOutcome,
    SipSettings,
    TraceRecord,
)
from mcacm_sip.runtime.lab import (
    ALICE,
    CLOSED_GROUP,
    DAVE,
    DUTY,
    FA_SERVER,
    LOOPBACK,
    MIKE,
    OPEN_GROUP,
    PARTNER,
    PRIMARY,
    ROUTINE,
    partner_config,
    primary_config,
    profile_xml,
)
from mcacm_sip.sip import SipParseError, Transport, parse
from mcacm_sip.sip.aio import Listen
from mcacm_sip.sip.message import read_raw
from mcacm_sip.sip.uri import Uri, identity, same_identity
from mcacm_sip.text import printable

# The cast beyond runtime.lab's (ALICE, DAVE, DUTY, MIKE, the two ACMS and the FA server).
BOB = "sip:bob@primary.example"
"""Primary user allowed to request add-user configuration only: branch 7 (not authorised)."""
CAROL = "sip:carol@partner.example"
"""Partner user who holds DUTY (activated by PUBLISH before branch 3)."""
NIGHT = "sip:night@partner.example"
"""Functional alias nobody holds until DAVE activates it in branch 4."""
NINA = "sip:nina@primary.example"
"""Second migrating user, removed again in branch 8b."""
GHOST = "sip:ghost-99@partner.example"
"""A migrated user id the partner never assigned: branch 8a."""

STEP_TIMEOUT = 10.0
"""Upper bound of any one wait; on loopback each takes milliseconds.  A branch that hits it
fails (its table row says why) and the demo goes on with the next."""
QUIET = 0.02
"""A branch ends once no SIP message moved for this long (the last 200 OKs are in its ladder)."""

# Ladder columns, left to right; only those a branch uses are drawn.
PARTICIPANTS: dict[str, str] = {
    BOB: "primary-acmc-2",
    ALICE: "primary-acmc",
    PRIMARY: "primary-acms",
    PARTNER: "partner-acms",
    FA_SERVER: "fa-server",
    DAVE: "partner-acmc",
    CAROL: "partner-acmc-2",
}
ROLES: dict[str, str] = {
    ALICE: "primary ACMC, user alice (may request every ACM flow)",
    BOB: "second primary ACMC, user bob (may request add-user configuration only)",
    PRIMARY: "primary ACMS",
    PARTNER: "partner ACMS (policy: approve add/remove, approve profiles with <Routine>, "
             "approve adds to grp-open-* groups)",
    FA_SERVER: "FA controlling server of the partner system (duty: carol, night: dave)",
    DAVE: "partner ACMC, user dave (decides; may hold night)",
    CAROL: "second partner ACMC, user carol (decides; may hold duty)",
}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Branch:
    """One scenario: what it shows and the Result the primary ACMC must end with."""

    key: str
    title: str
    clause: str
    expected: str
    run: Callable[[Demo], Awaitable[str]]
    """Drives the scenario; returns the Result the primary ACMC got (see :func:`result_of`)."""


@dataclass(slots=True)
class BranchResult:
    key: str
    title: str
    clause: str
    expected: str
    actual: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    """What the branch observed on the way (stored items, who decided ...)."""
    events: list[LadderEvent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.actual == self.expected

    def ladder(self) -> str:
        return render(self.events, columns(self.events), title=None)

    def to_json(self) -> dict[str, Any]:
        start = self.events[0].time if self.events else 0.0
        return {
            "key": self.key, "title": self.title, "clause": self.clause,
            "expected": self.expected, "actual": self.actual, "ok": self.ok,
            "seconds": round(self.seconds, 4), "notes": self.notes,
            "messages": [{"t": round(e.time - start, 4), "from": e.src, "to": e.dst,
                          "label": describe(e.data)} for e in self.events],
        }


@dataclass(slots=True)
class DemoResult:
    transport: Transport
    branches: list[BranchResult]
    seconds: float
    store_dir: str | None
    """Where the SQLite stores are (``--keep``), None when they were removed."""
    setup_messages: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.branches) and all(b.ok for b in self.branches)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "transport": self.transport, "seconds": round(self.seconds, 4),
                "store_dir": self.store_dir, "setup_messages": self.setup_messages,
                "participants": {PARTICIPANTS[k]: {"uri": k, "role": ROLES[k]}
                                 for k in PARTICIPANTS},
                "branches": [b.to_json() for b in self.branches]}


def result_of(outcome: RequestOutcome) -> str:
    """The Result the primary ACMC learnt: the response's Result code, or for a request the
    primary ACMS refused, ``<warning code> (SIP <status>)``, e.g. ``not-authorised (SIP 403)``."""
    if outcome.response is not None:
        return outcome.response.result.code
    failure = outcome.failure or "no answer"
    status, _, text = failure.partition(" ")
    if status.isdigit():
        return f"{text.split(':', 1)[0].strip() or 'refused'} (SIP {status})"
    return f"no result: {failure}"


# --------------------------------------------------------------------------- message trace


Tap = Callable[[str, TraceRecord], None]
"""Sees every record as it is traced, with the key of the running branch (``setup``, a branch
key, ``teardown``): ``mcacm capture`` and ``make examples`` write pcaps from it."""


class Trace:
    """Collects every node's :class:`TraceRecord` and turns them into ladder events.

    Each message is traced twice, leaving its sender and reaching its receiver; a message is
    drawn once, from the sending node to the node that received the same bytes (so TCP's
    ephemeral ports never appear), and filed under the branch running when it left.
    """

    def __init__(self, tap: Tap | None = None) -> None:
        self.branch = "setup"
        self.records: list[tuple[str, TraceRecord]] = []
        self._changed = asyncio.Event()
        self._tap = tap

    def __call__(self, record: TraceRecord) -> None:
        self.records.append((self.branch, record))
        if self._tap is not None:
            self._tap(self.branch, record)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[TraceRecord], bool],
                       timeout: float = STEP_TIMEOUT) -> TraceRecord:
        """The first record (of the current branch) matching ``predicate``, waiting for it."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                mine = [r for b, r in self.records[seen:] if b == self.branch]
                seen = len(self.records)
                for record in mine:
                    if predicate(record):
                        return record
                self._changed.clear()
                await self._changed.wait()

    async def quiet(self, period: float = QUIET, limit: float = 2.0) -> None:
        """Return once no message moved for ``period`` seconds (at most ``limit``)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), period)
            except TimeoutError:
                return

    async def answered(self, node: str, request: Callable[[TraceRecord], bool],
                       timeout: float = STEP_TIMEOUT) -> None:
        """Wait until ``node`` sent a 2xx to a received request matching ``request``.  Our
        nodes act on a request (core fed, store written) before they answer it, so this is
        the moment its effect is in place."""
        def match(answer: TraceRecord) -> bool:
            if answer.node != node or answer.direction != "out" or not first_line(
                    answer).startswith("SIP/2.0 2"):
                return False
            key = (header(answer, "call-id"), header(answer, "cseq"))
            return any(r.node == node and r.direction == "in" and not first_line(r).startswith(
                "SIP/") and (header(r, "call-id"), header(r, "cseq")) == key and request(r)
                for _, r in self.records)

        await self.wait_for(match, timeout)

    async def acknowledged(self, node: str, request: Callable[[TraceRecord], bool],
                           timeout: float = STEP_TIMEOUT) -> None:
        """Wait until ``node`` received a 2xx to a request it sent matching ``request``: the
        receiver has stored what it accepted (stored before acknowledged)."""
        def match(answer: TraceRecord) -> bool:
            if answer.node != node or answer.direction != "in" or not first_line(
                    answer).startswith("SIP/2.0 2"):
                return False
            key = (header(answer, "call-id"), header(answer, "cseq"))
            return any(r.node == node and r.direction == "out" and not first_line(r).startswith(
                "SIP/") and (header(r, "call-id"), header(r, "cseq")) == key and request(r)
                for _, r in self.records)

        await self.wait_for(match, timeout)

    def events(self) -> dict[str, list[LadderEvent]]:
        """Branch key -> its messages, sender -> receiver, in order."""
        arrivals: dict[bytes, deque[TraceRecord]] = defaultdict(deque)
        for _, r in self.records:
            if r.direction == "in":
                arrivals[r.data].append(r)
        out: dict[str, list[LadderEvent]] = defaultdict(list)
        for branch, r in self.records:
            if r.direction != "out":
                continue
            queue = arrivals.get(r.data)
            dst = name_of(queue.popleft().node) if queue else f"{r.dst[0]}:{r.dst[1]} (lost)"
            out[branch].append(LadderEvent(r.time, name_of(r.node), dst, r.data))
        return out


def name_of(node: str) -> str:
    return PARTICIPANTS.get(node, node)


def columns(events: Iterable[LadderEvent]) -> dict[str, str]:
    """The participants ``events`` involve, in the fixed left-to-right order."""
    used = {e.src for e in events} | {e.dst for e in events}
    order = [n for n in PARTICIPANTS.values() if n in used] + sorted(
        used - set(PARTICIPANTS.values()))
    return {n: n for n in order}


def first_line(record: TraceRecord) -> str:
    return read_raw(record.data).start


def notify_about(fa: str, *holders: str) -> Callable[[TraceRecord], bool]:
    """Matches a resolution NOTIFY for ``fa`` whose pidf lists every one of ``holders``
    (parsed, and compared by RFC 3261 19.1.4: the FA server may respell them)."""
    def match(r: TraceRecord) -> bool:
        if not first_line(r).startswith("NOTIFY "):
            return False
        try:
            msg = parse(r.data)
            listed = resolution_from_notify(fa, msg.header("content-type"), msg.body).holders
        except (SipParseError, AcmError):
            return False
        return all(any(same_identity(h, want) for h in listed) for want in holders)
    return match


def message_with(flow: str) -> Callable[[TraceRecord], bool]:
    """Matches a MESSAGE carrying the ACM flow ``flow`` (the root element of its body)."""
    return lambda r: first_line(r).startswith("MESSAGE ") and f"<{flow}".encode() in r.data


def header(record: TraceRecord, name: str) -> str:
    """First value of a header of a traced message, "" when absent (compact names and any
    casing are read as the parser reads them)."""
    return read_raw(record.data).header(name) or ""


# --------------------------------------------------------------------------- the systems


def _sip(transport: Transport, port: int = 0) -> SipSettings:
    # default RFC 3261 timers (T1 0.5 s: no retransmission on loopback); nothing is ever
    # unreachable in the demo, so a short give-up only bounds a broken run
    return SipSettings(listens=(Listen(transport, "127.0.0.1", port),), transport=transport,
                       send_timeout=5.0, trusted_hosts=LOOPBACK)  # every node on loopback


@dataclass(frozen=True, slots=True)
class RemotePrimary:
    """A primary ACMS the demo does not run itself: the scale-out cluster behind Kamailio's
    dispatcher (tests/test_scaleout.py).  Its users must be the demo's (alice, bob)."""

    hop: str
    """SIP URI of its address (the dispatcher)."""
    pending: Callable[[str], Awaitable[int]]
    """Owner -> how many pending items it holds for them (its store)."""
    holds: Callable[[str], Awaitable[bool]]
    """Transaction id -> whether it stored a transaction under it."""
    logged_off: Callable[[str], Awaitable[None]]
    """User -> returns once every worker has taken the user's log-off: registrations reach
    the other workers a notification later (docs/scale-out.md), and a Result one of them
    routes before that goes to the contact just removed."""
    partner_port: int
    """Where the demo's partner ACMS listens (the primary was configured with it)."""


def _warm_up() -> None:
    """Compile the schema and the codec once, so the first MESSAGE is not slower than T1."""
    sample = ProfileUpdateRequest(new_transaction_id(), Party(ALICE), Addressee(DAVE), MIKE,
                                  profile_from_xml(profile_xml("warm-up")))
    codec.decode(codec.encode(sample), content_type=codec.ACM_CONTENT_TYPE)


class Demo:
    """The seven nodes and the state the branches share."""

    def __init__(self, base: Path, transport: Transport, tap: Tap | None = None,
                 remote: RemotePrimary | None = None) -> None:
        self.transport = transport
        self.trace = Trace(tap)
        self.remote = remote
        sip = _sip(transport)
        trace = self.trace
        primary = primary_config(str(base / "primary.sqlite"))
        partner = partner_config(str(base / "partner.sqlite"))
        # 10.17.7.2 step 2: bob may use ACM, but only to add user configuration
        primary = dataclasses.replace(primary, users=(
            *primary.users, AuthorisedUser(BOB, (AddUserConfigurationRequest.FLOW,))))
        # carol decides too; the partner ACMS follows both aliases from the start
        # (continuous resolution subscriptions, 24.379 9A.2.2.2.8)
        partner = dataclasses.replace(
            partner, users=(*partner.users, AuthorisedUser(CAROL, (), REQUEST_FLOWS)),
            functional_aliases=(DUTY, NIGHT))
        self.fa = FaServerNode(FaServerNodeConfig(FA_SERVER, FaServerConfig(
            (FaConfig(DUTY, frozenset({CAROL})), FaConfig(NIGHT, frozenset({DAVE}))),
            frozenset({PARTNER})), sip), trace=trace)
        self.primary = None if remote is not None else AcmsNode(
            AcmsNodeConfig(primary, sip), trace=trace)
        self.partner = AcmsNode(AcmsNodeConfig(partner, _sip(
            transport, remote.partner_port if remote is not None else 0)), trace=trace)
        self.dave_decides = ProgrammableDecider()
        self.carol_decides = ProgrammableDecider()
        self.alice = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, PRIMARY), sip), trace=trace)
        self.bob = AcmcNode(AcmcNodeConfig(AcmcConfig(BOB, PRIMARY), sip), trace=trace)
        self.dave = AcmcNode(AcmcNodeConfig(AcmcConfig(DAVE, PARTNER), sip),
                             self.dave_decides, trace=trace)
        self.carol = AcmcNode(AcmcNodeConfig(AcmcConfig(CAROL, PARTNER), sip),
                              self.carol_decides, trace=trace)
        self.migrated: dict[Uri, str] = {}
        """Primary ID -> partner ID (10.17.5.2), as the partner's response spelled them."""
        """Primary ID -> the ID the partner assigned (10.17.5.2)."""
        self.notes: list[str] = []

    @property
    def servers(self) -> tuple[FaServerNode | AcmsNode, ...]:
        return tuple(n for n in (self.fa, self.primary, self.partner) if n is not None)

    @property
    def clients(self) -> tuple[AcmcNode, ...]:
        return (self.alice, self.bob, self.dave, self.carol)

    async def start(self) -> None:
        for server in self.servers:
            await server.start()
        t = self.transport
        fa, partner = self.fa.hop(t), self.partner.hop(t)
        primary = self.remote.hop if self.remote is not None else self.primary_node.hop(t)
        # static next hops instead of DNS; ACMCs reach their ACMS, the partner its FA server
        if self.primary is not None:
            self.primary.set_hops({PARTNER: partner})
        self.partner.set_hops({PRIMARY: primary, "partner.example": fa})
        for client in (self.alice, self.bob):
            client.set_hops({"*": primary})
        for client in (self.dave, self.carol):
            client.set_hops({DUTY: fa, NIGHT: fa, "*": partner})
        for client in self.clients:
            await client.start()  # REGISTER: logged on (10.17.3.1)
        # the partner ACMS's resolution subscriptions are up once both first NOTIFYs are in
        for fa_uri in (DUTY, NIGHT):
            await self.trace.answered(PARTNER, notify_about(fa_uri))

    async def close(self) -> None:
        for client in self.clients:
            await client.stop()
        for server in reversed(self.servers):
            await server.stop()

    @property
    def primary_node(self) -> AcmsNode:
        """The primary ACMS when the demo runs it."""
        assert self.primary is not None, "the primary ACMS runs elsewhere"
        return self.primary

    # ------------------------------------------------------------------ helpers for branches

    def note(self, text: str) -> None:
        self.notes.append(text)

    def update(self, target: Addressee, migrated: str, *elements: str,
               info: str | None = None) -> ProfileUpdateRequest:
        """A profile update (10.17.2.15) from alice for ``migrated``."""
        return ProfileUpdateRequest(
            new_transaction_id(), self.alice.core.me, target, migrated,
            profile_from_xml(profile_xml("Mike (updated)", *elements)), info)

    async def asked(self, decider: ProgrammableDecider, who: str, handle: RequestHandle
                    ) -> None:
        """Wait until the request of ``handle`` reaches ``who`` to decide (step 5)."""
        request = await decider.next_request(STEP_TIMEOUT)
        if request.transaction_id != handle.transaction_id:
            raise RuntimeError(f"{name_of(who)} was asked about {request.transaction_id}, "
                               f"expected {handle.transaction_id}")

    def answer(self, decider: ProgrammableDecider, who: str, handle: RequestHandle,
               approve: bool, reason: str) -> None:
        """``who`` approves or rejects (steps 6-7)."""
        self.note(f"{name_of(who)} was asked and answered "
                  f"{'approve' if approve else 'reject'} ({reason})")
        decider.answer(handle.transaction_id, approve, reason)

    async def decide(self, decider: ProgrammableDecider, who: str, handle: RequestHandle,
                     approve: bool, reason: str) -> None:
        await self.asked(decider, who, handle)
        self.answer(decider, who, handle, approve, reason)

    async def outcome(self, handle: RequestHandle) -> str:
        out = await handle.wait(STEP_TIMEOUT)
        if out.response is not None:
            handler = out.response.handler
            self.note("handler: " + handler.mc_service_id
                      + (f" as {handler.functional_alias}" if handler.functional_alias else ""))
        return result_of(out)

    async def indicated(self, handle: RequestHandle) -> None:
        """10.17.7.2 step 4 reached the primary ACMC: the partner has stored the request."""
        await asyncio.wait_for(asyncio.shield(handle.indicated), STEP_TIMEOUT)

    async def pending(self, system: str, owner: str) -> int:
        """Pending items the ACMS of ``system`` (PRIMARY or PARTNER) holds for ``owner``."""
        if system == PRIMARY and self.remote is not None:
            count = await self.remote.pending(owner)
        else:
            node = self.partner if system == PARTNER else self.primary_node
            count = len(node.core.pending_for(owner))
        self.note(f"{name_of(system)} holds {count} pending item(s) for {owner}")
        return count

    async def primary_logoff(self) -> None:
        """alice logs off; returns once the primary ACMS has taken it (each of its workers)."""
        await self.alice.logoff()
        if self.remote is not None:
            await asyncio.wait_for(self.remote.logged_off(ALICE), STEP_TIMEOUT)

    async def stored(self, transaction_id: str) -> bool:
        """Whether either ACMS stored a transaction under ``transaction_id``."""
        if any(t.transaction_id == transaction_id for t in self.partner.core.transactions()):
            return True
        if self.remote is not None:
            return await self.remote.holds(transaction_id)
        return any(t.transaction_id == transaction_id
                   for t in self.primary_node.core.transactions())


# --------------------------------------------------------------------------- the branches


async def migrate(demo: Demo) -> str:
    """10.17.5.2: alice adds mike and nina; the partner assigns IDs and profiles (policy)."""
    out = await demo.alice.add_users((MIKE, NINA), Addressee(DAVE), timeout=STEP_TIMEOUT)
    if isinstance(out.response, AddUserConfigurationResponse):
        for user in out.response.users:
            if user.partner_id is not None and user.result.code == "success":
                demo.migrated[identity(user.primary_id)] = user.partner_id
                demo.note(f"{user.primary_id} -> {user.partner_id}")
            else:
                demo.note(f"{user.primary_id}: {user.result.code}")
    result = result_of(out)
    if result == "success" and set(demo.migrated) != {identity(MIKE), identity(NINA)}:
        return "success, but not every user was assigned"
    return result


def mike(demo: Demo) -> str:
    if identity(MIKE) not in demo.migrated:
        raise RuntimeError("mike was not migrated (add user configuration failed)")
    return demo.migrated[identity(MIKE)]


async def automatic(demo: Demo) -> str:
    """The profile contains <Routine>: the partner's policy approves it (10.17.3.2)."""
    handle = demo.alice.submit(demo.update(Addressee(DAVE), mike(demo), ROUTINE))
    result = await demo.outcome(handle)
    if not demo.dave_decides.requests.empty():
        return "dave was asked although the policy decides"
    demo.note("nobody at the partner was asked")
    return result


async def direct(demo: Demo, approve: bool) -> str:
    handle = demo.alice.submit(demo.update(Addressee(DAVE), mike(demo), info="new talk groups"))
    await demo.decide(demo.dave_decides, DAVE, handle, approve,
                      "looks right" if approve else "not this week")
    return await demo.outcome(handle)


async def direct_approve(demo: Demo) -> str:
    return await direct(demo, True)


async def direct_reject(demo: Demo) -> str:
    return await direct(demo, False)


async def fa_one_holder(demo: Demo) -> str:
    # carol takes the duty alias (24.379 9A.2.2.2.6); the FA server tells the partner ACMS
    status = await demo.carol.set_functional_alias(DUTY, True)
    demo.note(f"carol's PUBLISH activating duty: {status}")
    await demo.trace.answered(PARTNER, notify_about(DUTY, CAROL))
    handle = demo.alice.submit(demo.update(Addressee(functional_alias=DUTY), mike(demo)))
    await demo.decide(demo.carol_decides, CAROL, handle, True, "on duty, approved")
    return await demo.outcome(handle)


async def fa_no_holder(demo: Demo) -> str:
    handle = demo.alice.submit(demo.update(Addressee(functional_alias=NIGHT), mike(demo)))
    await demo.indicated(handle)
    if await demo.pending(PARTNER, NIGHT) != 1:
        return "not stored for the inactive alias"
    # dave takes the night alias: NOTIFY to the partner ACMS -> delivered on activation
    status = await demo.dave.set_functional_alias(NIGHT, True)
    demo.note(f"dave's PUBLISH activating night: {status}")
    await demo.decide(demo.dave_decides, DAVE, handle, True, "took the night shift")
    return await demo.outcome(handle)


async def partner_offline(demo: Demo) -> str:
    await demo.dave.logoff()
    handle = demo.alice.submit(demo.update(Addressee(DAVE), mike(demo)))
    await demo.indicated(handle)
    queued = await demo.pending(PARTNER, DAVE) == 1
    await demo.dave.logon()  # -> pending data notification -> download (10.17.3.1)
    # (logged on again whatever happened: the branches after this one ask dave too)
    await demo.decide(demo.dave_decides, DAVE, handle, True, "back online, approved")
    result = await demo.outcome(handle)
    return result if queued else "not queued for the logged-off user"


async def primary_offline(demo: Demo) -> str:
    handle = demo.alice.submit(demo.update(Addressee(DAVE), mike(demo)))
    await demo.asked(demo.dave_decides, DAVE, handle)
    await demo.primary_logoff()
    demo.note("alice logged off before dave answered")
    demo.answer(demo.dave_decides, DAVE, handle, True, "approved while alice is away")
    # the primary ACMS acknowledged the partner's response: stored for alice (step 9)
    await demo.trace.acknowledged(PARTNER, message_with("profile-update-response"))
    kept = await demo.pending(PRIMARY, ALICE) == 1
    await demo.alice.logon()  # -> pending data notification -> download -> the Result
    # (logged on again whatever happened: the branches after this one are alice's too)
    result = await demo.outcome(handle)
    return result if kept else "the response was not kept for alice"


async def not_authorised(demo: Demo) -> str:
    request = ProfileUpdateRequest(new_transaction_id(), demo.bob.core.me, Addressee(DAVE),
                                   mike(demo), profile_from_xml(profile_xml("by bob")))
    out = await demo.bob.request(request, STEP_TIMEOUT)
    if out.failure:
        demo.note(f"bob's ACMC got: {out.failure}")
    # nothing stored, nothing forwarded
    if await demo.stored(request.transaction_id):
        return "stored or forwarded although not authorised"
    return result_of(out)


async def unknown_user(demo: Demo) -> str:
    handle = demo.alice.submit(demo.update(Addressee(DAVE), GHOST))
    return await demo.outcome(handle)


async def removed_user(demo: Demo) -> str:
    if identity(NINA) not in demo.migrated:
        raise RuntimeError("nina was not migrated (add user configuration failed)")
    removed = await demo.alice.remove_users((NINA,), Addressee(DAVE), timeout=STEP_TIMEOUT)
    demo.note(f"remove user configuration (10.17.5.3): {result_of(removed)}")
    handle = demo.alice.submit(demo.update(Addressee(DAVE), demo.migrated[identity(NINA)]))
    return await demo.outcome(handle)


# --------------------------------------------------------------------------- 10.17.4

ERIN_P = "sip:erin@partner.example"
FRANK_P = "sip:frank@partner.example"


def _applied(demo: Demo, group: str) -> None:
    """What the partner ACMS now keeps for ``group`` (docs/decisions.md "Group-related ACM")."""
    for g in demo.partner.core.groups():
        if same_identity(g.group_id, group):
            demo.note(f"partner keeps {group}: provisioned={'yes' if g.provisioned else 'no'}, "
                      f"members={', '.join(g.members) or '(none)'}")


async def group_automatic(demo: Demo) -> str:
    """10.17.4: adding partner users to an open interop group; the partner's policy rule (by
    group and operation, 10.17.3) approves it without asking anyone."""
    out = await demo.alice.group_membership_update(
        target=Addressee(DAVE), group_id=OPEN_GROUP, users=(ERIN_P, FRANK_P),
        operation=GroupOperation.ADD, timeout=STEP_TIMEOUT)
    if not demo.dave_decides.requests.empty():
        return "dave was asked although the policy decides"
    demo.note("nobody at the partner was asked")
    _applied(demo, OPEN_GROUP)
    return result_of(out)


async def group_by_acmc(demo: Demo) -> str:
    """10.17.4: a group the policy leaves to a person: dave decides (steps 5-7)."""
    handle = demo.alice.submit(GroupMembershipUpdateRequest(
        new_transaction_id(), demo.alice.core.me, Addressee(DAVE), CLOSED_GROUP, (ERIN_P,),
        GroupOperation.ADD))
    await demo.decide(demo.dave_decides, DAVE, handle, True, "erin joins command")
    result = await demo.outcome(handle)
    _applied(demo, CLOSED_GROUP)
    return result


async def group_provision_fa(demo: Demo) -> str:
    """10.17.4.2.2: alice gives the partner her interconnection group identities, addressed to
    the duty alias; carol holds it (branch 3 activated it; activated here if run alone)."""
    if not any(notify_about(DUTY, CAROL)(r) for _, r in demo.trace.records):
        status = await demo.carol.set_functional_alias(DUTY, True)
        demo.note(f"carol's PUBLISH activating duty: {status}")
        await demo.trace.answered(PARTNER, notify_about(DUTY, CAROL))
    handle = demo.alice.submit(InterconnectionGroupProvisionRequest(
        new_transaction_id(), demo.alice.core.me, Addressee(functional_alias=DUTY),
        (OPEN_GROUP, CLOSED_GROUP)))
    await demo.decide(demo.carol_decides, CAROL, handle, True, "groups known here now")
    result = await demo.outcome(handle)
    _applied(demo, CLOSED_GROUP)
    return result


BRANCHES: tuple[Branch, ...] = (
    Branch("0", "Add user configuration: the partner assigns IDs and profiles",
           "10.17.5.2 (policy 10.17.3.2)", "success", migrate),
    Branch("1", "Automatic handling by the partner's local policy",
           "10.17.7.2 step 4, 10.17.3.2", "success", automatic),
    Branch("2a", "Direct to the partner ACMC by MC service ID, the user approves",
           "10.17.7.2 steps 4-10", "success", direct_approve),
    Branch("2b", "Direct to the partner ACMC by MC service ID, the user rejects",
           "10.17.7.2 steps 6-10", "rejected-by-user", direct_reject),
    Branch("3", "Via a functional alias with one holder (activated by PUBLISH)",
           "10.17.7.2 step 4; TS 24.379 9A.2.2.3", "success", fa_one_holder),
    Branch("4", "Via a functional alias nobody holds: stored, delivered on activation",
           "10.17.7.2 step 4; TS 24.379 9A.2.2.3", "success", fa_no_holder),
    Branch("5", "Partner ACMC offline: pending until it logs on",
           "10.17.7.2 step 4, 10.17.3.1", "success", partner_offline),
    Branch("6", "Primary ACMC offline for the answer: pending at the primary ACMS",
           "10.17.7.2 steps 9-10, 10.17.3.1", "success", primary_offline),
    Branch("7", "Authorisation failure at the primary ACMS",
           "10.17.7.2 step 2", "not-authorised (SIP 403)", not_authorised),
    Branch("8a", "Unknown migrated user", "10.17.7.2 step 4 (verify)", "unknown-user",
           unknown_user),
    Branch("8b", "Removed user (10.17.5.3 remove, then an update)",
           "10.17.5.3, 10.17.7.2 step 4 (verify)", "not-migrated", removed_user),
    Branch("9a", "Group membership update approved by the partner's policy",
           "10.17.4, 10.17.3.2", "success", group_automatic),
    Branch("9b", "Group membership update decided by the partner ACMC",
           "10.17.4 (steps as 10.17.7.2 4-10)", "success", group_by_acmc),
    Branch("9c", "Interconnection group identity provision via a functional alias",
           "10.17.4.2.2; TS 24.379 9A.2.2.3", "success", group_provision_fa),
)


# --------------------------------------------------------------------------- running


Progress = Callable[[str], None]


def _silent(_: str) -> None:
    return None


async def run_demo(transport: Transport = "udp", keep: str | Path | None = None,
                   progress: Progress = _silent,
                   branches: tuple[Branch, ...] = BRANCHES, tap: Tap | None = None,
                   remote: RemotePrimary | None = None) -> DemoResult:
    """Start the nodes, run every branch, stop the nodes.  The SQLite stores live in a
    temporary directory removed at the end, or in ``keep`` (created if missing).  ``tap``
    sees every traced message with its branch key.  ``remote``: the primary ACMS runs
    elsewhere (the scale-out cluster); the demo runs the other six nodes."""
    started = time.monotonic()
    _warm_up()
    with tempfile.TemporaryDirectory(prefix="mcacm-demo-") as tmp:
        base = Path(keep) if keep is not None else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        demo = Demo(base, transport, tap, remote)
        results: list[BranchResult] = []
        where = f"stores kept in {base}" if keep is not None else "temporary stores"
        progress(f"starting {len(demo.servers)} servers and 4 clients on 127.0.0.1 over "
                 f"{transport} ({where})")
        try:
            await demo.start()
            await demo.trace.quiet()
            progress(f"all logged on; partner ACMS subscribed to {DUTY} and {NIGHT}")
            for branch in branches:
                results.append(await _run_branch(demo, branch, progress))
        finally:
            demo.trace.branch = "teardown"  # the logoffs belong to no branch
            await demo.close()
        per_branch = demo.trace.events()
        for r in results:
            r.events = per_branch.get(r.key, [])
        return DemoResult(transport, results, time.monotonic() - started,
                          str(base) if keep is not None else None,
                          len(per_branch.get("setup", [])))


async def _run_branch(demo: Demo, branch: Branch, progress: Progress) -> BranchResult:
    demo.trace.branch = branch.key
    demo.notes = []
    t0 = time.monotonic()
    try:
        actual = await asyncio.wait_for(branch.run(demo), 3 * STEP_TIMEOUT)
    except TimeoutError:  # a step that never happened: say after what
        actual = "timed out" + (f" after: {demo.notes[-1]}" if demo.notes else "")
    except Exception as exc:  # one broken branch must not hide the others' results
        actual = f"error: {exc}"
    await demo.trace.quiet()  # the last 200 OKs belong to this branch's ladder
    seconds = time.monotonic() - t0
    verdict = "ok" if actual == branch.expected else "FAIL"
    progress(f"{branch.key:>2} {branch.title}: {actual} ({verdict}, {seconds * 1000:.0f} ms)")
    return BranchResult(branch.key, branch.title, branch.clause, branch.expected, actual,
                        seconds, demo.notes)


# --------------------------------------------------------------------------- text output


def legend() -> str:
    width = max(len(n) for n in PARTICIPANTS.values())
    uris = max(len(u) for u in PARTICIPANTS)
    return "\n".join(f"  {name:<{width}}  {uri:<{uris}}  {ROLES[uri]}"
                     for uri, name in PARTICIPANTS.items())


def table(result: DemoResult) -> str:
    rows = [("branch", "expected Result", "actual Result", "")]
    rows += [(f"{b.key} {b.title}", printable(b.expected), printable(b.actual),
              "ok" if b.ok else "FAIL")
             for b in result.branches]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[3]
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ----")
    passed = sum(b.ok for b in result.branches)
    lines.append("")
    lines.append(f"{passed}/{len(result.branches)} branches ended with the expected Result; "
                 f"total {result.seconds:.2f} s over {result.transport}")
    return "\n".join(line.rstrip() for line in lines)


def report(result: DemoResult) -> str:
    """Everything ``mcacm demo`` prints: the cast, each branch's ladder, the table."""
    parts = ["Participants:", legend(), ""]
    for b in result.branches:
        parts.append(f"=== {b.key}. {b.title}  [{b.clause}]")
        parts.extend(f"    {printable(n)}" for n in b.notes)
        parts.append(printable(f"    expected {b.expected}, got {b.actual}: "
                               f"{'ok' if b.ok else 'FAIL'}"))
        parts.append("")
        parts.append(b.ladder() if b.events else "    (no SIP messages)\n")
    parts.append(table(result))
    return "\n".join(parts) + "\n"

