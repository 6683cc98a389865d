"""The whole 23.280 10.17.7 procedure, and group-related ACM (10.17.4), with Kamailio as the
SIP core of both systems (examples/interop/kamailio/kamailio.cfg, strict about in-dialog
routing) on UDP, TCP and TLS.

Every node has the core as its only hop (``*``); the core routes by PSI/domain through its
routing table, and adds a Path to each ACMC's REGISTER (RFC 3327), so the ACMSs reach their
ACMCs through it too.  Asserted: the Result the primary ACMC receives, and that every request
our servers and ACMCs received crossed the core (its Via on top; the FA SUBSCRIBE dialog
record-routed through it) and that it refused nothing as an in-dialog request without a Route.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pki_kit import make_pki
from tools import require_kamailio_tls, require_tool

from mcacm_sip.acm.model import (
    Addressee,
    GroupMembershipUpdateRequest,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    Urgency,
    new_transaction_id,
)
from mcacm_sip.runtime import TraceRecord
from mcacm_sip.runtime.base import TlsSettings
from mcacm_sip.runtime.lab import (
    ALICE,
    CLOSED_GROUP,
    DAVE,
    DUTY,
    FA_SERVER,
    PARTNER,
    PRIMARY,
    Lab,
)
from mcacm_sip.sip import Transport

from .ours import update
from .peers import CORE_DIR, LOOPBACK, SipCore, free_port, sip_core

WAIT = 15.0  # upper bound; the exchanges take milliseconds on loopback
TRANSPORTS: list[Transport] = ["udp", "tcp", "tls"]


def tls_material(tmp: Path) -> tuple[TlsSettings, Path]:
    """One certificate for the core and every node (SANs: both domains and 127.0.0.1, as
    examples/interop/kamailio/make-certs.sh makes) and the core's tls.cfg pointing at it."""
    pki = make_pki(tmp, "interop", {"sip": (LOOPBACK, "primary.example", "partner.example")})
    shipped = (CORE_DIR / "tls.cfg").read_text()
    cfg = tmp / "tls.cfg"
    cfg.write_text(shipped.replace("certs/sip.pem", str(pki["sip"]))
                   .replace("certs/ca.pem", str(pki["ca"])))
    return TlsSettings(pki["sip"], ca=pki["ca"]), cfg


@dataclass
class Run:
    lab: Lab
    core: SipCore
    seen: list[TraceRecord]


@contextlib.asynccontextmanager
async def through_core(tmp: Path, transport: Transport) -> AsyncIterator[Run]:
    """Kamailio routing to the three servers on pre-chosen ports, then the lab behind it."""
    ports = {node: free_port() for node in ("primary", "partner", "fa")}
    suffix = "" if transport == "udp" else f";transport={transport}"
    routes = {"PRIMARY_ACMS": f"sip:{LOOPBACK}:{ports['primary']}{suffix}",
              "PARTNER_ACMS": f"sip:{LOOPBACK}:{ports['partner']}{suffix}",
              "PARTNER_FA": f"sip:{LOOPBACK}:{ports['fa']}{suffix}"}
    tls, tls_cfg = tls_material(tmp) if transport == "tls" else (None, None)
    seen: list[TraceRecord] = []
    with sip_core(tmp, routes, tls_config=tls_cfg) as core:
        async with Lab.start(tmp, transport=transport, trace=seen.append,
                             proxy=core.uri(transport), ports=ports, tls=tls) as lab:
            yield Run(lab, core, seen)


def run(tmp: Path, transport: Transport, body: Callable[[Run], Awaitable[None]]) -> Run:
    require_tool("kamailio")
    if transport == "tls":
        require_kamailio_tls(CORE_DIR / "kamailio.cfg")
    result: list[Run] = []

    async def main() -> None:
        async with through_core(tmp, transport) as r:
            await asyncio.wait_for(body(r), 40)
            result.append(r)

    asyncio.run(main())
    return result[0]


# --------------------------------------------------------------------------- trace reading


def head(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Start line and headers (lower-case names) of a SIP message."""
    lines = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return lines[0], headers


def received_requests(seen: list[TraceRecord], node: str) -> list[tuple[str, list[str], str]]:
    """(method, Via values, start line) of every request ``node`` received."""
    out = []
    for rec in seen:
        if rec.node != node or rec.direction != "in" or rec.data.startswith(b"SIP/2.0"):
            continue
        start, headers = head(rec.data)
        vias = [v for n, value in headers if n == "via" for v in value.split(",")]
        out.append((start.split(" ", 1)[0], vias, start))
    return out


def core_via(core: SipCore, transport: Transport) -> str:
    port = core.tls_port if transport == "tls" else core.port
    return f"SIP/2.0/{transport.upper()} {LOOPBACK}:{port}"


def assert_through_core(r: Run, transport: Transport, nodes: tuple[str, ...]) -> None:
    """Every request the servers received was relayed by the core: its Via is on top and the
    sender's below it (RFC 3261 16.6 step 8); the core refused no in-dialog request."""
    via = core_via(r.core, transport)
    for node in nodes:
        requests = received_requests(r.seen, node)
        assert requests, f"{node} received nothing"
        for _, vias, start in requests:
            assert len(vias) >= 2 and vias[0].startswith(via), (node, start, vias)
    assert "without Route" not in r.core.log_text()


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_direct_approve_through_the_core(transport: Transport, tmp_path: Path) -> None:
    """10.17.7.2 steps 1-10, direct branch: request -> indication -> DAVE approves ->
    response, every ACMS-bound and ACMS-to-ACMS message relayed by Kamailio."""
    async def body(r: Run) -> None:
        lab = r.lab
        request = update(lab, await lab.migrate_mike(), Addressee(DAVE))
        handle = lab.alice.submit(request)
        asked = await lab.dave_decider.next_request(WAIT)  # step 5 reached DAVE
        assert asked.transaction_id == request.transaction_id
        lab.dave_decider.answer(asked.transaction_id, True, "fine")
        out = await handle.wait(WAIT)
        assert out.failure is None, out.failure
        assert out.indication is not None  # step 4 reached alice
        assert out.result == "success"
        assert out.response is not None and out.response.handler.mc_service_id == DAVE

    r = run(tmp_path, transport, body)
    # the ACMCs too: ALICE's indication and response, DAVE's request (steps 4, 5, 10) came by
    # the Path of their REGISTER
    assert_through_core(r, transport, (PRIMARY, PARTNER, ALICE, DAVE))
    # REGISTER reached each ACMS (the registrar) through the core: ACMC logon, 10.17.3.1
    assert any(m == "REGISTER" for m, _, _ in received_requests(r.seen, PARTNER))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_functional_alias_through_the_core(transport: Transport, tmp_path: Path) -> None:
    """FA branch: DAVE activates DUTY (PUBLISH via the core to the FA server), the partner
    ACMS resolves it by SUBSCRIBE/NOTIFY (record-routed; the NOTIFYs follow the route set
    back through the strict core) and hands the request to DAVE, who approves."""
    async def body(r: Run) -> None:
        lab = r.lab
        request = update(lab, await lab.migrate_mike(), Addressee(functional_alias=DUTY))
        assert await lab.dave.set_functional_alias(DUTY, True) == 200
        handle = lab.alice.submit(request)
        asked = await lab.dave_decider.next_request(WAIT)
        lab.dave_decider.answer(asked.transaction_id, True)
        out = await handle.wait(WAIT)
        assert out.failure is None, out.failure
        assert out.result == "success"
        assert out.response is not None and out.response.handler.functional_alias == DUTY

    r = run(tmp_path, transport, body)
    assert_through_core(r, transport, (PRIMARY, PARTNER, FA_SERVER, ALICE, DAVE))
    # the SUBSCRIBE dialog was record-routed by the core, and its NOTIFYs crossed it
    assert any(m == "SUBSCRIBE" for m, _, _ in received_requests(r.seen, FA_SERVER))
    assert any(m == "NOTIFY" for m, _, _ in received_requests(r.seen, PARTNER))
    answers = [head(rec.data)[1] for rec in r.seen
               if rec.node == FA_SERVER and rec.direction == "out"
               and rec.data.startswith(b"SIP/2.0 200") and b"SUBSCRIBE" in rec.data]
    port = r.core.tls_port if transport == "tls" else r.core.port
    assert answers and all(any(n == "record-route" and f"{LOOPBACK}:{port};" in v
                               for n, v in h) for h in answers)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_group_related_acm_through_the_core(transport: Transport, tmp_path: Path) -> None:
    """10.17.4 through Kamailio: a group membership update DAVE decides and an
    interconnection group identity provision addressed to the FA DUTY, every request relayed
    by the core (over TLS: the TLS hop of every node to the core and of the core onwards);
    the partner keeps what it applied."""
    async def body(r: Run) -> None:
        lab = r.lab
        handle = lab.alice.submit(GroupMembershipUpdateRequest(
            new_transaction_id(), lab.alice.core.me, Addressee(DAVE), CLOSED_GROUP,
            ("sip:erin@partner.example",), GroupOperation.ADD, Urgency.HIGH))
        asked = await lab.dave_decider.next_request(WAIT)
        assert isinstance(asked, GroupMembershipUpdateRequest) and asked.urgency == "high"
        lab.dave_decider.answer(asked.transaction_id, True)
        out = await handle.wait(WAIT)
        assert out.failure is None and out.result == "success", out
        assert await lab.dave.set_functional_alias(DUTY, True) == 200
        handle = lab.alice.submit(InterconnectionGroupProvisionRequest(
            new_transaction_id(), lab.alice.core.me, Addressee(functional_alias=DUTY),
            (CLOSED_GROUP,)))
        asked = await lab.dave_decider.next_request(WAIT)
        lab.dave_decider.answer(asked.transaction_id, True)
        out = await handle.wait(WAIT)
        assert out.failure is None and out.result == "success", out
        [group] = lab.partner.core.groups()
        assert group.provisioned and group.members == ("sip:erin@partner.example",)

    r = run(tmp_path, transport, body)
    assert_through_core(r, transport, (PRIMARY, PARTNER, FA_SERVER, ALICE, DAVE))
