"""What the crash, peer-failure and overload tests share: the two ACMS processes' TOML (free
loopback ports, short timers, their own SQLite files), a primary ACMC that counts every flow it
gets on the wire (the load driver), and what the ACMSs' stores hold afterwards.

The ACMSs run as ``mcacm acms`` processes (started and stopped by PID with the helpers of
tests/test_runtime_processes.py); the ACMC runs in the test's event loop on a plain SIP endpoint,
so nothing between the wire and the counts could hide a duplicate.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from test_runtime_processes import Proc, free_port

from mcacm_sip.acm import codec
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    Party,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    PendingDataNotification,
    ProcessIndication,
    ProfileUpdateRequest,
    new_transaction_id,
)
from mcacm_sip.core.acms import transient
from mcacm_sip.core.state import Role, Snapshot, Transaction, TxState
from mcacm_sip.runtime.base import SipSettings, make_endpoint
from mcacm_sip.runtime.lab import ALICE, DAVE, MIKE, PARTNER, PRIMARY, profile_xml
from mcacm_sip.runtime.messaging import Sent, send_message
from mcacm_sip.sip import Reply, Timers
from mcacm_sip.sip.aio import IncomingRequest
from mcacm_sip.sip.aio.usages import RegistrationClient
from mcacm_sip.store import SqliteStore

PROFILE = profile_from_xml(profile_xml("Mike (night shift)"))
FAST_TIMERS = {"retry_initial": 0.25, "retry_max": 2.0}
"""Peer retries 0.25 s -> 2 s instead of 1 s -> 60 s: a restarted peer is found again soon
(faster retries only feed retransmission storms on a busy machine)."""


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return "'" + value + "'"  # a literal string: XML attributes keep their quotes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _table(name: str, values: Mapping[str, object]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())


@dataclass
class Systems:
    """The two ACMSs' configuration files and ports (nothing runs until :meth:`start`)."""

    tmp: Path
    primary_port: int = field(default_factory=free_port)
    partner_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)

    def write(self, *, timers: dict[str, float] | None = None, send_timeout: float = 2.0,
              primary: dict[str, dict[str, object]] | None = None,
              partner: dict[str, dict[str, object]] | None = None,
              partner_policy: str = "approve") -> None:
        """``primary.toml`` and ``partner.toml``; ``primary``/``partner``: more tables (e.g.
        ``{"limits": {"max_in_flight": 5}}``).  The partner decides every request by its
        policy (10.17.3.2) unless ``partner_policy`` is ``manual``."""
        sip: dict[str, object] = {"t1": 0.1, "send_timeout": send_timeout,
                                  "trusted_hosts": ["127.0.0.1"]}
        common: dict[str, Mapping[str, object]] = {"timers": {**FAST_TIMERS, **(timers or {})}}
        self._write("primary", self.primary_port, PARTNER, self.partner_port, {
            **common, **(primary or {})}, f"""
[[peers]]
psi = "{PARTNER}"
domains = ["partner.example"]

[[users]]
id = "{ALICE}"
request = ["profile-update-request", "add-user-configuration-request",
           "remove-user-configuration-request"]
""", sip)
        self._write("partner", self.partner_port, PRIMARY, self.primary_port, {
            **common, **(partner or {}),
            "migration": {"id_template": "sip:{user}-{n}@partner.example",
                          "profile": PROFILE.xml}}, f"""
[[peers]]
psi = "{PRIMARY}"
domains = ["primary.example"]
requesters = ["sip:*@primary.example"]

[[users]]
id = "{DAVE}"
decide = ["profile-update-request", "add-user-configuration-request",
          "remove-user-configuration-request"]

[[policy]]
flow = "add-user-configuration-request"
action = "approve"

[[policy]]
flow = "profile-update-request"
action = "{partner_policy}"
""", sip)

    def _write(self, name: str, port: int, peer: str, peer_port: int,
               tables: Mapping[str, Mapping[str, object]], tail: str,
               sip: Mapping[str, object]) -> None:
        psi = PRIMARY if name == "primary" else PARTNER
        text = (f'psi = "{psi}"\n\n[[listen]]\ntransport = "udp"\nhost = "127.0.0.1"\n'
                f"port = {port}\n\n" + _table("sip", sip)
                + f'\n[sip.hops]\n"{peer}" = "sip:127.0.0.1:{peer_port}"\n\n'
                + _table("store", {"path": f"{name}.sqlite"}) + "\n"
                + "\n".join(_table(k, v) for k, v in tables.items()) + tail)
        (self.tmp / f"{name}.toml").write_text(text)

    def start(self, name: str) -> Proc:
        """Start ``mcacm acms`` for ``primary`` or ``partner``; returns once it listens."""
        proc = Proc(name, ["acms", "--config", str(self.tmp / f"{name}.toml")], self.tmp)
        self.procs.append(proc)
        proc.wait_for_event("node.start")
        return proc

    def events(self, name: str, event: str) -> list[dict[str, object]]:
        """Log events of every run of ``name`` (all its restarts), oldest first."""
        return [e for p in self.procs if p.name == name for e in p.log_events()
                if e.get("event") == event]

    def stop_all(self) -> None:
        for proc in reversed(self.procs):  # by PID, each one
            proc.stop()

    def stored(self, name: str) -> Snapshot:
        """What ``name``'s SQLite file holds (read with the ACMS stopped)."""
        store = SqliteStore(str(self.tmp / f"{name}.sqlite"))
        try:
            return store.load()
        finally:
            store.close()


def finished(snapshot: Snapshot, role: Role) -> dict[str, Transaction]:
    """Transaction id -> the finished transaction of ``role`` (state done, with a response)."""
    return {t.transaction_id: t for t in snapshot.transactions
            if t.role is role and t.state is TxState.DONE and t.response is not None}


class Acmc:
    """A primary ACMC on the wire: logs on by REGISTER (10.17.3.1), sends requests -- each
    repeated with the same transaction id until the ACMS answers 200 (a duplicate is answered
    200 and not processed again) -- answers 200 to every MESSAGE, downloads its pending data
    when notified, and keeps every flow it got (the items of a download too)."""

    def __init__(self, acms_port: int, me: str = ALICE, send_timeout: float = 4.0) -> None:
        self.me = me
        self.settings = SipSettings(hops={"*": f"sip:127.0.0.1:{acms_port}"},
                                    timers=Timers(t1=0.25), send_timeout=send_timeout)
        self.endpoint = make_endpoint(self.settings, me, None)
        self.received: list[AcmFlow] = []
        self.answers: Counter[int | None] = Counter()
        """SIP final status (None: no answer) of every request MESSAGE sent."""
        self.accepted: set[str] = set()
        self.last = Sent(False)
        """What became of the last MESSAGE sent."""
        self.downloaded = 0
        """Flows that came in pending data download responses (10.17.3.1)."""
        self._tasks: set[asyncio.Task[int | None]] = set()
        self._registration: RegistrationClient | None = None

    async def start(self, logon: bool = True) -> None:
        await self.endpoint.start()
        self.endpoint.serve("MESSAGE", self._on_message, accept=(codec.ACM_CONTENT_TYPE,))
        if logon:
            self._registration = RegistrationClient(
                self.endpoint, registrar="sip:primary.example", aor=self.me, expires=3600)
            await self._registration.register()

    async def logoff(self) -> None:
        if self._registration is not None:
            await self._registration.unregister()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._registration is not None:
            await self._registration.close()
        await self.endpoint.close()

    def _on_message(self, incoming: IncomingRequest) -> Reply:
        try:
            flow = codec.decode(incoming.message.body)
        except AcmError as exc:
            return Reply(exc.sip_status)
        if isinstance(flow, PendingDataNotification):
            # 10.17.3.1: pending data for us -> download it (what the real ACMC does)
            task = asyncio.get_running_loop().create_task(
                self.send(PendingDataDownloadRequest(new_transaction_id(), self.me),
                          within=10))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(flow, PendingDataDownloadResponse):
            self.downloaded += len(flow.items)
            self.received.extend(flow.items)
        self.received.append(flow)
        return Reply(200)

    # ------------------------------------------------------------------ sending

    async def send(self, flow: AcmFlow, *, within: float = 120.0, pause: float = 0.5
                   ) -> int | None:
        """Send ``flow`` until a final answer that is not transient (or ``within`` s
        passed); its status.  A request answered 200 goes into :attr:`accepted`."""
        give_up = time.monotonic() + within
        while True:
            sent = await send_message(self.endpoint, self.settings, uri=PRIMARY, to=PRIMARY,
                                      identity=self.me, flow=flow)
            self.last = sent
            self.answers[200 if sent.ok else sent.status] += 1
            if sent.ok:
                if isinstance(flow, AcmRequest):
                    self.accepted.add(flow.transaction_id)
                return 200
            assert sent.failure is not None
            if not transient(sent.failure, sent.status) or time.monotonic() >= give_up:
                return sent.status
            await asyncio.sleep(pause)

    async def migrate(self, user: str = MIKE) -> str:
        """10.17.5: ``user`` migrates (the partner approves by policy); the partner's ID."""
        request = AddUserConfigurationRequest(new_transaction_id(), Party(self.me), (user,))
        assert await self.send(request) == 200
        response = await self.response(request.transaction_id)
        assert isinstance(response, AddUserConfigurationResponse)
        partner_id = response.users[0].partner_id
        assert partner_id is not None, response
        return partner_id

    def profile_update(self, migrated: str) -> ProfileUpdateRequest:
        """10.17.7.2 step 1: a profile update request for ``migrated``."""
        return ProfileUpdateRequest(new_transaction_id(), Party(self.me), Addressee(DAVE),
                                    migrated, PROFILE, "night shift")

    # ------------------------------------------------------------------ what arrived

    def responses(self, tid: str) -> list[AcmResponse]:
        return [f for f in self.received if isinstance(f, AcmResponse)
                and f.transaction_id == tid]

    def indications(self, tid: str) -> list[ProcessIndication]:
        return [f for f in self.received if isinstance(f, ProcessIndication)
                and f.transaction_id == tid]

    async def response(self, tid: str, within: float = 60.0) -> AcmResponse:
        """The first response for ``tid`` (waits for it)."""
        give_up = time.monotonic() + within
        while not (got := self.responses(tid)):
            assert time.monotonic() < give_up, f"no response for {tid} in {within} s"
            await asyncio.sleep(0.05)
        return got[0]

    async def all_answered(self, within: float = 60.0) -> list[str]:
        """Waits until every accepted request has a response or ``within`` s passed; the
        transaction ids still without one."""
        give_up = time.monotonic() + within
        while (missing := [t for t in self.accepted if not self.responses(t)]) \
                and time.monotonic() < give_up:
            await asyncio.sleep(0.1)
        return missing
