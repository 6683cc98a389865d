"""A peer's permanent SIP refusal ends the transaction at once; transient failures are retried
(docs/decisions.md "Procedures": failed peer sends; the table of retry decisions:
test_local_errors.py)."""

from __future__ import annotations

from mcacm_sip.acm import codec
from mcacm_sip.acm.model import Addressee, Party, ProfileUpdateResponse, ResultCode
from mcacm_sip.core.acms import PEER_REFUSED
from mcacm_sip.core.state import Role, TxState

from .harness import (
    ALICE,
    DAVE,
    PARTNER,
    PRIMARY,
    Answer,
    Net,
    migrate,
    partner_config,
    two_systems,
    update,
)

MIKE_THERE = "sip:mike-1@partner.example"
"""A migrated user id; requests about it are refused before the partner looks it up."""


def ready() -> tuple[Net, str]:
    """Both systems, ALICE and DAVE logged on, MIKE migrated; returns (net, partner id)."""
    net = two_systems()
    net.logon(ALICE)
    net.logon(DAVE)
    return net, migrate(net)


def forwards(net: Net, tid: str) -> list[float]:
    return [r.at for r in net.ladder
            if r.dst == PARTNER and r.transaction_id == tid and r.flow == "profile-update-request"]


def final(net: Net, user: str) -> ProfileUpdateResponse:
    resp = net.reports[user][-1].flow
    assert isinstance(resp, ProfileUpdateResponse)
    return resp


def test_partner_answering_403_gives_not_authorised_at_once_and_no_retries() -> None:
    # the partner does not have our primary system among its peers: 403, nothing stored
    net = two_systems(partner=partner_config(peers=()))
    net.logon(ALICE)
    tid = update(net, Addressee(DAVE), MIKE_THERE)
    assert net.results(ALICE) == [ResultCode.NOT_AUTHORISED]
    resp = final(net, ALICE)
    assert resp.handler == Party(PRIMARY) and resp.transaction_id == tid
    assert resp.result.text is not None and "403" in resp.result.text
    assert "not a configured peer system" in resp.result.text  # the peer's Warning text
    net.advance(3600)
    assert len(forwards(net, tid)) == 1
    assert net.results(ALICE) == [ResultCode.NOT_AUTHORISED]  # no expired later on
    tx = net.acms[PRIMARY].transaction(Role.PRIMARY, tid)
    assert tx is not None and tx.state is TxState.DONE


def test_partner_answering_415_gives_x_peer_refused_naming_the_status() -> None:
    net = two_systems()
    net.logon(ALICE)
    net.scripted[PARTNER] = [Answer(415, "unsupported-media: application/vnd.3gpp.acm+xml")]
    tid = update(net, Addressee(DAVE), MIKE_THERE)
    resp = final(net, ALICE)
    assert resp.result.code == PEER_REFUSED
    assert resp.result.text == (f"{PARTNER} refused the request: SIP 415 "
                                "unsupported-media: application/vnd.3gpp.acm+xml")
    # the extension value crossed the wire through the schema (the harness codec) and back
    assert codec.decode(codec.encode(resp)) == resp
    net.advance(3600)
    assert len(forwards(net, tid)) == 1


def test_refusal_for_an_offline_primary_acmc_waits_in_its_pending_queue() -> None:
    net = two_systems()
    net.scripted[PARTNER] = [Answer(488)]
    tid = update(net, Addressee(DAVE), MIKE_THERE)
    assert [i.flow.transaction_id for i in net.acms[PRIMARY].pending_for(ALICE)] == [tid]
    net.logon(ALICE)  # 10.17.3.1: notification, download carries the response
    assert net.results(ALICE) == [PEER_REFUSED]
    assert final(net, ALICE).result.text == f"{PARTNER} refused the request: SIP 488"
    assert net.acms[PRIMARY].pending_for(ALICE) == ()


def test_503_is_retried_after_retry_after_then_succeeds() -> None:
    net, mike = ready()
    net.scripted[PARTNER] = [Answer(503, "overloaded", retry_after=30), Answer(503)]
    t0 = net.clock.now
    tid = update(net, Addressee(DAVE), mike)
    net.advance(120)
    # Retry-After honoured (30 s instead of 1 s), then the back-off (2 s after the 2nd try)
    assert [t - t0 for t in forwards(net, tid)] == [0, 30, 32]
    assert net.results(ALICE) == [ResultCode.SUCCESS]  # the migration only
    net.decide(DAVE, False, "not today")
    assert net.results(ALICE) == [ResultCode.SUCCESS, ResultCode.REJECTED_BY_USER]


def test_primary_refusing_the_response_for_good_ends_the_partner_side() -> None:
    net, mike = ready()
    tid = update(net, Addressee(DAVE), mike)
    net.scripted[PRIMARY] = [Answer(404, f"unknown-transaction: {tid}")]
    net.decide(DAVE, True)
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.DONE
    net.advance(3600)
    answers = [r for r in net.ladder if r.src == PARTNER and r.dst == PRIMARY
               and r.flow == "profile-update-response"]
    assert len(answers) == 1


def test_local_acmc_refusing_for_good_falls_back_to_the_pending_queue() -> None:
    net, mike = ready()
    net.scripted[DAVE] = [Answer(415, "unsupported-media")]
    tid = update(net, Addressee(DAVE), mike)
    tx = net.acms[PARTNER].transaction(Role.PARTNER, tid, PRIMARY)
    assert tx is not None and tx.state is TxState.PENDING_USER  # 10.17.3.1
    assert [i.flow.transaction_id for i in net.acms[PARTNER].pending_for(DAVE)] == [tid]
