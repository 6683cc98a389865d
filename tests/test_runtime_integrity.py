"""Issue 12 rules 1 and 3 over real SIP on loopback: two primary systems (two ACMS nodes, each
with its ACMC) use the same transaction id towards one partner ACMS; each Result reaches its
own requester, and a decision from a partner user the request was not delivered to is refused."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationResponse,
    Party,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    Result,
    ResultCode,
)
from mcacm_sip.core.config import REQUEST_FLOWS, AcmcConfig, AuthorisedUser, PeerSystem
from mcacm_sip.core.state import Role
from mcacm_sip.runtime.acmc import AcmcNode, ProgrammableDecider
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.config import AcmcNodeConfig, AcmsNodeConfig, FaServerNodeConfig
from mcacm_sip.runtime.fa_server import FaServerNode
from mcacm_sip.runtime.lab import (
    ALICE,
    DAVE,
    FA_SERVER,
    MIKE,
    PARTNER,
    PRIMARY,
    _sip,
    fa_config,
    partner_config,
    primary_config,
    profile_xml,
)
from mcacm_sip.runtime.messaging import send_message

WAIT = 15.0
SECOND = "sip:acms@second.example"
BOB = "sip:bob@second.example"
MAX = "sip:max@second.example"
ERIN = "sip:erin@partner.example"
SAME = "t-same-id"


def test_two_primaries_same_id_each_result_to_its_requester_and_a_stranger_decider_refused(
        tmp_path: Path) -> None:
    async def main() -> None:
        sip = _sip("udp")
        fa = FaServerNode(FaServerNodeConfig(FA_SERVER, fa_config(), _sip("udp")))
        primary = AcmsNode(AcmsNodeConfig(primary_config(str(tmp_path / "p.sqlite")), sip))
        second = AcmsNode(AcmsNodeConfig(replace(
            primary_config(str(tmp_path / "s.sqlite")), psi=SECOND,
            users=(AuthorisedUser(BOB, REQUEST_FLOWS),)), sip))
        base = partner_config(str(tmp_path / "partner.sqlite"))
        partner = AcmsNode(AcmsNodeConfig(replace(
            base, peers=(*base.peers, PeerSystem(SECOND, ("second.example",))),
            users=(*base.users, AuthorisedUser(ERIN, (), REQUEST_FLOWS))), sip))
        decider = ProgrammableDecider()
        alice = AcmcNode(AcmcNodeConfig(AcmcConfig(ALICE, PRIMARY), sip))
        bob = AcmcNode(AcmcNodeConfig(AcmcConfig(BOB, SECOND), sip))
        dave = AcmcNode(AcmcNodeConfig(AcmcConfig(DAVE, PARTNER), sip), decider)
        erin = AcmcNode(AcmcNodeConfig(AcmcConfig(ERIN, PARTNER), sip))
        servers, clients = (fa, primary, second, partner), (alice, bob, dave, erin)
        try:
            for node in servers:
                await node.start()
            primary.set_hops({PARTNER: partner.hop("udp")})
            second.set_hops({PARTNER: partner.hop("udp")})
            partner.set_hops({PRIMARY: primary.hop("udp"), SECOND: second.hop("udp"),
                              "partner.example": fa.hop("udp")})
            alice.set_hops({"*": primary.hop("udp")})
            bob.set_hops({"*": second.hop("udp")})
            for acmc in (dave, erin):
                acmc.set_hops({"*": partner.hop("udp")})
            for acmc in clients:
                await acmc.start()
            ids: dict[str, str] = {}
            for client, user in ((alice, MIKE), (bob, MAX)):  # 10.17.5.2, automatic
                out = await client.add_users((user,), Addressee(DAVE), timeout=WAIT)
                assert isinstance(out.response, AddUserConfigurationResponse), out
                partner_id = out.response.users[0].partner_id
                assert partner_id is not None
                ids[client.me] = partner_id
            handles = {}
            for client in (alice, bob):  # the same id from both primary systems
                handles[client.me] = client.submit(ProfileUpdateRequest(
                    SAME, Party(client.me), Addressee(DAVE), ids[client.me],
                    profile_from_xml(profile_xml("updated"))))
            got = {}
            for _ in range(2):
                req = await decider.next_request(WAIT)
                got[req.requester.mc_service_id] = req
            assert SAME in {got[ALICE].transaction_id, got[BOB].transaction_id}
            assert got[ALICE].transaction_id != got[BOB].transaction_id
            assert {t.peer for t in partner.core.transactions()
                    if t.role is Role.PARTNER and t.transaction_id == SAME} == {PRIMARY, SECOND}
            # ERIN may decide such requests, but ALICE's was not delivered to her
            leg = got[ALICE]
            assert isinstance(leg, ProfileUpdateRequest)
            forged = ProfileUpdateResponse(leg.transaction_id, Party(ERIN), Addressee(ALICE),
                                           leg.migrated_user_id, Result(ResultCode.SUCCESS))
            sent = await send_message(erin.endpoint, erin.config.sip, uri=PARTNER, to=PARTNER,
                                      identity=ERIN, flow=forged)
            assert sent.status == 403 and (sent.warning or "").startswith("not-authorised")
            decider.answer(got[BOB].transaction_id, False, "not now")
            decider.answer(got[ALICE].transaction_id, True, "fine")
            a, b = await asyncio.gather(handles[ALICE].wait(WAIT), handles[BOB].wait(WAIT))
            assert (a.transaction_id, a.result) == (SAME, "success")
            assert (b.transaction_id, b.result) == (SAME, "rejected-by-user")
            assert isinstance(a.response, ProfileUpdateResponse)
            assert isinstance(b.response, ProfileUpdateResponse)
            assert a.response.migrated_user_id == ids[ALICE]
            assert b.response.migrated_user_id == ids[BOB]
        finally:
            for client in clients:
                await client.stop()
            for server in servers:
                await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))
