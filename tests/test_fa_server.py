"""FA controlling server core (TS 24.379 9A.2.2.3): in memory, fake clock."""

from __future__ import annotations

import pytest

from mcacm_sip.acm import fa, multipart
from mcacm_sip.acm.fa import EXPIRES_UNTIL_WITHDRAWN as FOREVER
from mcacm_sip.acm.fa import FaHolders, FaStatus
from mcacm_sip.core.fa_server import (
    Answer,
    FaConfig,
    FaServer,
    FaServerAction,
    FaServerConfig,
    Holder,
    HoldersChanged,
    Ignored,
    NotifySubscriber,
    Publish,
    Revoked,
    Subscribe,
    TerminationReason,
)

D = "mcx.partner-b.example"
FA = f"sip:fa-duty-officer@{D}"
FA2 = f"sip:fa-unit-7@{D}"
ALICE, BOB, CAROL, EVE = (f"sip:{n}@{D}" for n in ("alice", "bob", "carol", "eve"))
ACMS = f"sip:acms@{D}"
T0 = 1_750_000_000.0


def server(*, max_: int | None = 1, takeover: bool = False) -> FaServer:
    return FaServer(
        FaServerConfig(
            (
                FaConfig(FA, frozenset({ALICE, BOB, CAROL}), max_, takeover),
                FaConfig(FA2, frozenset({ALICE})),
            ),
            trusted=frozenset({ACMS}),
        )
    )


def publish(
    srv: FaServer,
    user: str,
    expires: int | None = FOREVER,
    *,
    alias: str = FA,
    take_over: bool = False,
    who: str | None = None,
    p_id: str | None = None,
    now: float = T0,
) -> list[FaServerAction]:
    ctype, body = fa.publish_body(alias, user, take_over=take_over, p_id_fa=p_id)
    return srv.publish(Publish(expires, ctype, body, who or user), now)


def resolve(
    srv: FaServer, sid: str = "s1", expires: int = FOREVER, who: str = ACMS
) -> list[FaServerAction]:
    ctype, body = fa.resolution_subscribe_body(FA)
    return srv.subscribe(Subscribe(sid, expires, ctype, body, who), T0)


def answer(actions: list[FaServerAction]) -> Answer:
    first = actions[0]
    assert isinstance(first, Answer)
    return first


def notifies(actions: list[FaServerAction]) -> dict[str, NotifySubscriber]:
    return {a.subscription: a for a in actions if isinstance(a, NotifySubscriber)}


def holders_in(note: NotifySubscriber) -> tuple[str, ...]:
    return fa.decode_presence(note.body).holders


# --------------------------------------------------------------------------- PUBLISH


def test_activation_then_deactivation() -> None:
    srv = server()
    acts = publish(srv, ALICE)
    assert answer(acts).status == 200 and ("Expires", str(FOREVER)) in answer(acts).headers
    assert HoldersChanged(FaHolders(FA, (ALICE,))) in acts
    assert srv.holders(FA) == (ALICE,) and srv.aliases_of(ALICE) == (FA,)
    acts = publish(srv, ALICE, 0)
    assert answer(acts).status == 200
    assert HoldersChanged(FaHolders(FA, ())) in acts and srv.holders(FA) == ()


@pytest.mark.parametrize("expires", [None, 1, 3600, FOREVER - 1])
def test_other_expires_values_get_423_with_min_expires(expires: int | None) -> None:
    acts = publish(server(), ALICE, expires)
    assert acts == [answer(acts)] and answer(acts).status == 423
    assert ("Min-Expires", "4294967295") in answer(acts).headers


def test_423_comes_before_403_for_an_unknown_fa() -> None:
    # 9A.2.2.3.3: step 3 (Expires) precedes step 4 (FA exists)
    assert answer(publish(server(), ALICE, 60, alias=f"sip:nope@{D}")).status == 423


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"alias": f"sip:nope@{D}"}, "does not exist"),  # step 4
        ({"user": EVE}, "not in the user list"),  # step 4a
        ({"who": EVE}, "may not publish"),  # someone speaking for alice
    ],
)
def test_403_rules(kwargs: dict[str, str], why: str) -> None:
    srv = server()
    user = kwargs.pop("user", ALICE)
    acts = publish(srv, user, **kwargs)  # type: ignore[arg-type]
    assert answer(acts).status == 403 and why in (answer(acts).warning or "")
    assert srv.holders(FA) == ()


def test_trusted_server_publishes_for_a_user() -> None:
    # 9A.2.2.2.6 step 6: the serving server's PSI is in P-Asserted-Identity
    srv = server()
    assert answer(publish(srv, BOB, who=ACMS)).status == 200 and srv.holders(FA) == (BOB,)


def test_max_simultaneous_activations() -> None:
    srv = server(max_=2)
    assert answer(publish(srv, ALICE)).status == 200
    assert answer(publish(srv, BOB)).status == 200
    acts = publish(srv, CAROL)
    assert answer(acts).status == 403 and "max-simultaneous" in (answer(acts).warning or "")
    assert srv.holders(FA) == (ALICE, BOB)
    # a holder refreshing its activation is not a new one, and keeps its place
    assert answer(publish(srv, ALICE, now=T0 + 5)).status == 200
    assert srv.holders(FA) == (ALICE, BOB)


def test_take_over_not_allowed_is_403() -> None:
    srv = server(takeover=False)
    publish(srv, ALICE)
    acts = publish(srv, BOB, take_over=True)
    assert answer(acts).status == 403 and "take-over" in (answer(acts).warning or "")
    assert srv.holders(FA) == (ALICE,)


def test_take_over_replaces_and_revokes_the_holder() -> None:
    srv = server(takeover=True)
    publish(srv, ALICE)
    resolve(srv)
    acts = publish(srv, BOB, take_over=True)
    assert answer(acts).status == 200
    assert Revoked(FA, ALICE, BOB) in acts
    assert HoldersChanged(FaHolders(FA, (BOB,))) in acts
    assert holders_in(notifies(acts)["s1"]) == (BOB,)
    assert srv.aliases_of(ALICE) == ()


def test_full_fa_offers_take_over_when_allowed() -> None:
    srv = server(takeover=True)
    publish(srv, ALICE)
    ctype, body = fa.status_subscribe_body(FA, BOB)
    srv.subscribe(Subscribe("bob-watch", FOREVER, ctype, body, BOB), T0)
    acts = publish(srv, BOB, p_id="p-9")
    assert answer(acts).status == 403 and "take-over-possible" in (answer(acts).warning or "")
    doc = fa.decode_presence(notifies(acts)["bob-watch"].body)
    assert [(e.user, e.status) for e in doc.entries] == [(BOB, FaStatus.TAKE_OVER_POSSIBLE)]
    assert doc.p_id_fa == "p-9"


def test_body_about_another_entity_is_answered_but_ignored() -> None:
    # 9A.2.2.3.3 step 8: 200, then nothing
    srv = server()
    info = fa.encode_mcptt_info(fa.McpttInfo(FA, ALICE))
    pidf = fa.encode_presence(fa.FaPresence.per_fa(FA2, [fa.FunctionalAliasEntry(user=ALICE)]))
    ctype, body = multipart.encode(
        [multipart.Part(fa.CT_MCPTT_INFO, info), multipart.Part(fa.CT_PIDF, pidf)]
    )
    acts = srv.publish(Publish(FOREVER, ctype, body, ALICE), T0)
    assert answer(acts).status == 200 and isinstance(acts[1], Ignored)
    assert srv.holders(FA) == ()


@pytest.mark.parametrize(
    ("ctype", "body", "status"),
    [
        ("application/sdp", b"v=0", 415),
        (fa.CT_PIDF, b"<not-closed", 400),
        (fa.CT_PIDF, fa.encode_presence(fa.FaPresence.per_fa(FA)), 400),  # no mcptt-info
        (fa.CT_MCPTT_INFO, fa.encode_mcptt_info(fa.McpttInfo(FA, ALICE)), 400),  # no pidf
        (fa.CT_MCPTT_INFO, fa.encode_mcptt_info(fa.McpttInfo(FA)), 400),  # no calling user
    ],
)
def test_bad_publish_bodies(ctype: str, body: bytes, status: int) -> None:
    acts = server().publish(Publish(FOREVER, ctype, body, ALICE), T0)
    assert acts == [answer(acts)] and answer(acts).status == status and answer(acts).warning


# --------------------------------------------------------------------------- SUBSCRIBE


def test_resolution_subscription_notifies_on_every_change() -> None:
    srv = server(max_=None)
    acts = resolve(srv)
    assert answer(acts).status == 200
    first = notifies(acts)["s1"]
    assert first.terminated is None and holders_in(first) == ()
    assert holders_in(notifies(publish(srv, ALICE))["s1"]) == (ALICE,)
    assert holders_in(notifies(publish(srv, BOB))["s1"]) == (ALICE, BOB)
    # a refresh that changes nothing does not notify resolution watchers (23.280 10.13.10)
    assert "s1" not in notifies(publish(srv, BOB, now=T0 + 1))
    assert holders_in(notifies(publish(srv, ALICE, 0))["s1"]) == (BOB,)
    doc = fa.decode_presence(notifies(publish(srv, CAROL))["s1"].body)
    assert doc.entity == doc.tuple_id == FA  # per-FA shape (9A.3.1.2)
    assert all(e.status is FaStatus.ACTIVATED and e.expires is not None for e in doc.entries)


def test_one_time_fetch_terminates_and_stores_nothing() -> None:
    srv = server()
    publish(srv, ALICE)
    acts = resolve(srv, "once", expires=0)
    assert answer(acts).status == 200
    note = notifies(acts)["once"]
    assert note.terminated is TerminationReason.TIMEOUT and holders_in(note) == (ALICE,)
    assert srv.subscriptions() == ()
    assert "once" not in notifies(publish(srv, ALICE, 0))


def test_in_dialog_refresh_and_unsubscribe() -> None:
    srv = server()
    resolve(srv)
    publish(srv, ALICE)
    acts = srv.refresh("s1", FOREVER, T0)
    assert answer(acts).status == 200 and holders_in(notifies(acts)["s1"]) == (ALICE,)
    assert answer(srv.refresh("s1", 30, T0)).status == 423
    acts = srv.refresh("s1", 0, T0)
    assert notifies(acts)["s1"].terminated is TerminationReason.TIMEOUT
    assert srv.subscriptions() == ()
    assert answer(srv.refresh("s1", 0, T0)).status == 481


def test_subscribe_refusals() -> None:
    srv = server()
    assert answer(resolve(srv, who=EVE)).status == 403  # not a trusted or configured subscriber
    ctype, body = fa.resolution_subscribe_body(FA)
    assert answer(srv.subscribe(Subscribe("x", None, ctype, body, ACMS), T0)).status == 423
    assert answer(srv.subscribe(Subscribe("x", 600, ctype, body, ACMS), T0)).status == 423
    assert (
        answer(
            srv.subscribe(Subscribe("x", FOREVER, ctype, body, ACMS, ("text/plain",)), T0)
        ).status
        == 406
    )
    ctype, body = fa.resolution_subscribe_body(f"sip:nope@{D}")
    assert answer(srv.subscribe(Subscribe("x", FOREVER, ctype, body, ACMS), T0)).status == 403
    assert srv.subscriptions() == ()


def test_configured_subscriber_may_resolve() -> None:
    srv = FaServer(
        FaServerConfig((FaConfig(FA, frozenset({ALICE}), subscribers=frozenset({EVE})),))
    )
    assert answer(resolve(srv, who=EVE)).status == 200


def test_status_subscription_sees_only_its_user_and_the_p_id_fa() -> None:
    srv = server(max_=None)
    ctype, body = fa.status_subscribe_body(FA, BOB)
    acts = srv.subscribe(Subscribe("bob", FOREVER, ctype, body, BOB), T0)
    assert answer(acts).status == 200 and holders_in(notifies(acts)["bob"]) == ()
    # every accepted PUBLISH is reported, filtered to the handled user (9A.2.2.3.5)
    doc = fa.decode_presence(notifies(publish(srv, ALICE, p_id="a-1"))["bob"].body)
    assert doc.holders == () and doc.p_id_fa == "a-1"
    doc = fa.decode_presence(notifies(publish(srv, BOB, p_id="b-1"))["bob"].body)
    assert doc.holders == (BOB,) and doc.p_id_fa == "b-1"


def test_status_subscription_authorisation() -> None:
    srv = server()
    ctype, body = fa.status_subscribe_body(FA, EVE)  # eve is not a user of the FA
    assert answer(srv.subscribe(Subscribe("e", FOREVER, ctype, body, EVE), T0)).status == 403
    ctype, body = fa.status_subscribe_body(FA, BOB)  # carol asking about bob
    assert answer(srv.subscribe(Subscribe("c", FOREVER, ctype, body, CAROL), T0)).status == 403
    assert answer(srv.subscribe(Subscribe("a", FOREVER, ctype, body, ACMS), T0)).status == 200


def test_filter_must_select_the_fa_or_the_calling_user() -> None:
    info = fa.encode_mcptt_info(fa.McpttInfo(FA, BOB))
    flt = fa.encode_filter(fa.SimpleFilter(CAROL))
    ctype, body = multipart.encode(
        [multipart.Part(fa.CT_MCPTT_INFO, info), multipart.Part(fa.CT_SIMPLE_FILTER, flt)]
    )
    acts = server().subscribe(Subscribe("x", FOREVER, ctype, body, BOB), T0)
    assert answer(acts).status == 400


def test_per_user_determination() -> None:
    srv = server(max_=None)
    ctype, body = fa.user_status_subscribe_body(ALICE, ACMS)
    acts = srv.subscribe(Subscribe("u", FOREVER, ctype, body, ACMS), T0)
    assert answer(acts).status == 200
    assert fa.decode_presence(notifies(acts)["u"].body).entries == ()
    publish(srv, ALICE)
    acts = publish(srv, ALICE, alias=FA2)
    doc = fa.decode_presence(notifies(acts)["u"].body)
    assert (doc.entity, doc.tuple_id) == (ALICE, ALICE)  # per-user shape
    assert [e.functional_alias for e in doc.entries] == [FA, FA2]
    assert "u" not in notifies(publish(srv, BOB))  # bob's activity is not alice's
    ctype, body = fa.user_status_subscribe_body(ALICE, EVE)
    assert answer(srv.subscribe(Subscribe("e", FOREVER, ctype, body, EVE), T0)).status == 403


# --------------------------------------------------------------------------- expiry, state


def test_deactivation_by_administrator_and_expiry() -> None:
    srv = server(max_=None)
    resolve(srv)
    publish(srv, ALICE)
    publish(srv, BOB, now=T0 + 10)
    acts = srv.deactivate(FA, ALICE, T0 + 20)  # 9A.2.2.3.6 item 1
    assert holders_in(notifies(acts)["s1"]) == (BOB,)
    assert srv.deactivate(FA, ALICE, T0 + 21) == []
    assert srv.get_timer() == T0 + 10 + FOREVER
    assert srv.handle_timer(T0 + 1000) == []  # "until withdrawn": nothing lapses in practice
    acts = srv.handle_timer(T0 + 10 + FOREVER)  # 9A.2.2.3.6 item 2
    assert HoldersChanged(FaHolders(FA, ())) in acts and srv.get_timer() is None


def test_state_survives_a_restart() -> None:
    srv = server(max_=None)
    publish(srv, ALICE)
    publish(srv, BOB)
    again = FaServer(srv.config, srv.state())
    assert again.holders(FA) == (ALICE, BOB)
    assert again.state()[FA][0] == Holder(ALICE, T0, T0 + FOREVER)


def test_acms_client_side_round_trip() -> None:
    # the ACMS builds the resolution SUBSCRIBE and reads the NOTIFY into what its core consumes
    srv = server(max_=None)
    ctype, body = fa.resolution_subscribe_body(FA)
    acts = srv.subscribe(Subscribe("acms", FOREVER, ctype, body, ACMS), T0)
    publish(srv, CAROL)
    note = notifies(publish(srv, ALICE))["acms"]
    assert fa.resolution_from_notify(FA, note.content_type, note.body) == FaHolders(
        FA, (CAROL, ALICE)
    )
    assert answer(acts).status == 200


# --------------------------------------------------------------------------- equivalent spellings


def test_equivalent_spellings_of_the_fa_and_the_user_are_one_holder() -> None:
    """RFC 3261 19.1.4 (issue 12 rule 7): host case, escapes and a parameter only one side
    has do not make another FA or another holder."""
    srv = server(max_=2)
    alice = f"sip:%61lice@{D.upper()};lr"
    acts = publish(srv, alice, alias=f"sip:fa-duty-officer@{D.upper()}")
    assert answer(acts).status == 200
    assert HoldersChanged(FaHolders(FA, (ALICE,))) in acts  # as configured
    assert answer(publish(srv, ALICE)).status == 200  # a refresh, not a second holder
    assert srv.holders(FA) == (ALICE,) and srv.aliases_of(alice) == (FA,)
    assert answer(publish(srv, BOB)).status == 200  # max 2: BOB still fits
    acts = publish(srv, ALICE, 0, alias=f"SIP:fa-duty-officer@{D};x=1")
    assert answer(acts).status == 200 and srv.holders(FA) == (BOB,)


def test_a_user_part_in_another_case_is_another_user() -> None:
    acts = publish(server(), f"sip:ALICE@{D}")
    assert answer(acts).status == 403 and "not in the user list" in (answer(acts).warning or "")


def test_a_trusted_psi_in_another_spelling_resolves() -> None:
    srv = server()
    publish(srv, ALICE)
    acts = resolve(srv, who=f"sip:acms@{D.upper()}")
    assert answer(acts).status == 200 and holders_in(notifies(acts)["s1"]) == (ALICE,)
