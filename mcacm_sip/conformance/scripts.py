"""The scenario scripts of the catalogue, one per (scenario, role): each drives the
:class:`~.runner.Runner` and turns what the peer did into :class:`~.report.Checks`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lxml import etree

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.model import (
    AcmFlow,
    AcmRequest,
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    GroupMembershipUpdateRequest,
    GroupMembershipUpdateResponse,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    Party,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    RemoveUserConfigurationRequest,
    RemoveUserConfigurationResponse,
    Result,
    ResultCode,
    Urgency,
    UserAssignment,
    UserProfile,
    UserRemoval,
    new_transaction_id,
)
from mcacm_sip.conformance.report import Checks
from mcacm_sip.conformance.runner import Arrival, Runner, Sent, SetupFailed, script
from mcacm_sip.core import groups
from mcacm_sip.core.state import response_to
from mcacm_sip.runtime.sender import Exchange, SendableRequest
from mcacm_sip.sip.uri import (
    Uri,
    addr_spec,
    address_of_record,
    identity,
    same_identity,
    try_identity,
    uri_host,
)

# --------------------------------------------------------------------------- shared checks


def _id(text: str) -> Uri | None:
    """An MC service ID from a peer's document; None if it is no URI (it matches nothing)."""
    return try_identity(text)


def _ids(texts: tuple[str, ...]) -> set[Uri | None]:
    return {_id(t) for t in texts}


def _unjudgeable(c: Checks, what: str, sent: Sent) -> bool:
    """Record ``what`` as not observable if ``sent`` cannot be judged: no final answer, or a
    403 over TLS that may refuse our set-up rather than the request (:attr:`Sent.untrusted`;
    decision: Inconclusive, not Fail, docs/decisions.md "Conformance runner")."""
    if sent.status is None:
        c.unobservable(what, sent.describe())
    elif sent.untrusted is not None:
        c.unobservable(what, f"{sent.describe()}; {sent.untrusted}")
    else:
        return False
    return True


def _expect_2xx(c: Checks, sent: Sent, what: str = "MESSAGE answered 2xx") -> bool:
    if _unjudgeable(c, what, sent):
        return False
    ok = c.expect(what, sent.ok, sent.describe())
    if ok:  # RFC 3428 7: a 2xx to MESSAGE carries no body
        c.expect("2xx without a body (RFC 3428 7)", not sent.body, f"{len(sent.body)} bytes")
    return ok


async def _accepted(r: Runner, c: Checks, ex: Exchange, sent: Sent) -> bool:
    """Role partner: a request the peer takes is answered 2xx, then the process indication
    follows (10.17.7.2 step 4)."""
    if not _expect_2xx(c, sent):
        return False
    await r.until(lambda: ex.indication is not None or bool(ex.invalid), r.wait)
    # decision: the peer said it stored the request (2xx), so a missing indication after the
    # wait is a Fail, not Inconclusive
    return c.expect("process indication (10.17.7.2 step 4)", ex.indication is not None,
                    f"none within {r.wait:g} s of the 2xx")


async def _await_response(r: Runner, c: Checks, ex: Exchange) -> None:
    """Wait for the response to ``ex`` (or an answer that fails); check what came."""
    await r.until(lambda: ex.response is not None or bool(ex.invalid), r.wait)
    c.expect("answers validate and match the request", not ex.invalid,
             "; ".join(p.reason for a in ex.invalid for p in a.problems))


async def _answered(r: Runner, c: Checks, ex: Exchange, result: str | None) -> None:
    """Role partner: the final response (10.17.7.2 step 8) with Result ``result``."""
    await _await_response(r, c, ex)
    if ex.response is None:
        c.unobservable("final response (10.17.7.2 step 8)", f"none within {r.wait:g} s")
        return
    if ex.indication is not None:
        c.expect("process indication before the response",
                 ex.timings["indication"] <= ex.timings["response"])
    if result is not None:
        c.expect(f"Result {result}", ex.result == result, f"got {ex.result}")


async def _follow_partner(r: Runner, c: Checks, ex: Exchange, sent: Sent, result: str | None
                          ) -> None:
    """Role partner: 2xx, indication, response with ``result``."""
    if await _accepted(r, c, ex, sent) or sent.ok:
        await _answered(r, c, ex, result)


def _negative_only(c: Checks, sent: Sent, ex: Exchange, code: str) -> None:
    """A refusal: SIP 403, or 2xx with a Result ``code``."""
    if _unjudgeable(c, "refused", sent):
        return
    if sent.ok:
        if ex.response is None:
            c.unobservable(f"Result {code}", "2xx but no response within the wait")
        else:
            c.expect(f"Result {code}", ex.result == code, f"got {ex.result}")
    else:
        c.expect("refused with 403", sent.status == 403, sent.describe())


def _requester(r: Runner) -> Party:
    assert r.fx is not None
    return Party(r.fx.requester)


async def _migrated(r: Runner) -> str:
    """A partner-assigned ID the peer knows: the fixture, what add-user taught us, else one
    added now (set-up, not judged)."""
    assert r.fx is not None
    if r.role == "partner" and r.fx.migrated_user:
        return r.fx.migrated_user
    for user in r.fx.users:
        if (partner_id := r.assigned.get(identity(user))) is not None:
            return partner_id
    if r.role == "primary":
        # the primary routes by the target's domain; the ID only needs to look like one
        return f"sip:conformance-migrated@{uri_host(r.fx.target or r.psi)}"
    req = AddUserConfigurationRequest(new_transaction_id(), _requester(r), r.fx.users)
    ex, sent = await r.request(req, identity=r.psi)
    if sent.ok:  # a refused add never gets a response: do not wait for one
        if r.fx.policy.get(req.FLOW, "manual") == "manual":
            await _decided_by_user(r, Checks(), ex, sent, ResultCode.SUCCESS)
        await r.until(lambda: ex.response is not None, r.wait)
    _learn(r, ex.response)
    for user in r.fx.users:
        if (partner_id := r.assigned.get(identity(user))) is not None:
            return partner_id
    why = ex.result or ("no answer" if sent.ok else sent.describe())
    raise SetupFailed("no migrated user: [partner] migrated_user is not set and adding "
                      f"{', '.join(r.fx.users)} gave no partner ID ({why}"
                      + (f"; {sent.untrusted})" if sent.untrusted else ")"))


def _learn(r: Runner, response: AcmFlow | None) -> None:
    """Remember the partner IDs an add-user response (the peer's or ours) assigned."""
    if isinstance(response, AddUserConfigurationResponse):
        r.assigned.update({primary: a.partner_id for a in response.users
                           if a.result.positive and a.partner_id
                           and (primary := _id(a.primary_id)) is not None})


def _partner_target(r: Runner) -> Addressee:
    """Role partner: a partner-system addressee for requests no user needs to see."""
    assert r.fx is not None
    if r.fx.decider:
        return Addressee(r.fx.decider)
    return Addressee(functional_alias=r.fx.fa_held or r.fx.fa_unheld or None,
                     mc_service_id=None if r.fx.fa_held or r.fx.fa_unheld
                     else str(address_of_record(addr_spec(r.peer_uri))))


async def _update(r: Runner, target: Addressee, profile: UserProfile | None = None
                  ) -> ProfileUpdateRequest:
    assert r.fx is not None
    return ProfileUpdateRequest(new_transaction_id(), _requester(r), target,
                                await _migrated(r), profile or r.fx.profile, "conformance")


def _delivery(r: Runner, tid: str) -> AcmRequest | None:
    found = r.requests(tid)
    flow = found[0].flow if found else None
    return flow if isinstance(flow, AcmRequest) else None


async def _decide(r: Runner, c: Checks, request: AcmRequest, result: str,
                  fa: str | None = None) -> None:
    """Role partner: our decider's answer to a delivered request (10.17.7.2 steps 6-7)."""
    assert r.fx is not None
    answer = response_to(request, Party(r.fx.decider, fa), Result(result, "conformance"))
    sent = await r.send_flow(answer, identity=r.fx.decider)
    _expect_2xx(c, sent, "the decider's response answered 2xx")


# --------------------------------------------------------------------------- role partner


@script("add-user", "partner")
async def _p_add(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = AddUserConfigurationRequest(new_transaction_id(), _requester(r), r.fx.users)
    ex, policy = await _user_configuration(r, c, req)
    if isinstance(ex.response, AddUserConfigurationResponse) and policy != "reject":
        # the peer may spell our users its own way: compared by RFC 3261 19.1.4
        got = {_id(u.primary_id): u for u in ex.response.users}
        c.expect("one assignment per requested user", set(got) == _ids(r.fx.users),
                 f"got {sorted(u.primary_id for u in ex.response.users)}")
        for user, a in got.items():
            if c.expect(f"{a.primary_id}: success with a partner ID and profile (10.17.7.1)",
                        a.result.positive and a.partner_id is not None and a.profile
                        is not None, f"{a.result.code}, partner ID {a.partner_id}") \
                    and user is not None:
                r.assigned[user] = a.partner_id or ""


async def _user_configuration(
        r: Runner, c: Checks,
        req: AddUserConfigurationRequest | RemoveUserConfigurationRequest,
) -> tuple[Exchange, str]:
    """10.17.5: send an add/remove request as our PSI; the peer's policy for it says whether
    our decider approves it or the peer answers alone.  Returns the exchange and that policy."""
    assert r.fx is not None
    policy = r.fx.policy.get(req.FLOW, "manual")
    ex, sent = await r.request(req, identity=r.psi)
    if policy == "manual":
        await _decided_by_user(r, c, ex, sent, ResultCode.SUCCESS)
    await _follow_partner(r, c, ex, sent, ResultCode.SUCCESS if policy != "reject"
                          else ResultCode.REJECTED_BY_POLICY)
    return ex, policy


async def _delivered(r: Runner, c: Checks, tid: str) -> AcmRequest | None:
    """The request ``tid`` once the peer delivered it to our decider; None (unobservable)
    when nothing reached it within the wait."""
    await r.until(lambda: _delivery(r, tid) is not None, r.wait)
    delivered = _delivery(r, tid)
    if delivered is None:
        c.unobservable("delivered to the decider", f"nothing reached {r.acmc_user}")
    return delivered


async def _decided_by_user(r: Runner, c: Checks, ex: Exchange, sent: Sent, result: str,
                           fa: str | None = None) -> AcmRequest | None:
    """Wait for the peer to deliver the request to our decider, then answer ``result``."""
    if not sent.ok:
        return None
    tid = ex.request.transaction_id
    await r.until(lambda: _delivery(r, tid) is not None, r.wait)
    delivered = _delivery(r, tid)
    if delivered is None:
        c.unobservable("request delivered to the decider (10.17.7.2 step 5)",
                       f"nothing reached {r.acmc_user} within {r.wait:g} s" if r.acmc_user
                       else f"[{r.role}] decider is not set, and the peer's policy hands "
                            f"{ex.request.FLOW} to a user")
        return None
    c.expect("the delivered request is the one sent (10.17.7.2 step 5)",
             delivered == ex.request, "contents differ")
    await _decide(r, c, delivered, result, fa)
    return delivered


@script("profile-update-auto", "partner")
async def _p_auto(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = await _update(r, _partner_target(r), r.fx.routine_profile)
    ex, sent = await r.request(req, identity=r.psi)
    await _follow_partner(r, c, ex, sent, ResultCode.SUCCESS)
    c.expect("handled without a partner user (10.17.3.2)",
             not r.requests(req.transaction_id), "the request reached the decider")


async def _p_decided(r: Runner, c: Checks, result: str) -> None:
    assert r.fx is not None
    req = await _update(r, Addressee(r.fx.decider))
    ex, sent = await r.request(req, identity=r.psi)
    await _decided_by_user(r, c, ex, sent, result)
    await _follow_partner(r, c, ex, sent, result)
    if ex.response is not None and hasattr(ex.response, "handler"):
        c.expect("handler is the deciding user (table 10.17.2.16-1)",
                 same_identity(ex.response.handler.mc_service_id, r.fx.decider),
                 f"got {ex.response.handler.mc_service_id}")


@script("profile-update-approve", "partner")
async def _p_approve(r: Runner, c: Checks) -> None:
    await _p_decided(r, c, ResultCode.SUCCESS)


@script("profile-update-reject", "partner")
async def _p_reject(r: Runner, c: Checks) -> None:
    await _p_decided(r, c, ResultCode.REJECTED_BY_USER)


@script("fa-one-holder", "partner")
async def _p_fa_held(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = await _update(r, Addressee(None, r.fx.fa_held))
    ex, sent = await r.request(req, identity=r.psi)
    await _decided_by_user(r, c, ex, sent, ResultCode.SUCCESS, r.fx.fa_held)
    await _follow_partner(r, c, ex, sent, ResultCode.SUCCESS)


@script("fa-no-holder", "partner")
async def _p_fa_unheld(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = await _update(r, Addressee(None, r.fx.fa_unheld))
    ex, sent = await r.request(req, identity=r.psi)
    await _accepted(r, c, ex, sent)
    await r.idle(r.quiet)
    c.expect("no response while nobody holds the FA (10.17.7.2 step 4)", ex.response is None,
             f"got {ex.result}")
    c.expect("delivered to nobody", not r.requests(req.transaction_id))


@script("pending-request", "partner")
async def _p_pending(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    await r.logoff()
    req = await _update(r, Addressee(r.fx.decider))
    ex, sent = await r.request(req, identity=r.psi)
    if not await _accepted(r, c, ex, sent):
        return
    await _pending_download(r, c, req.transaction_id)
    delivered = _delivery(r, req.transaction_id)
    if isinstance(delivered, AcmRequest):
        await _decide(r, c, delivered, ResultCode.SUCCESS)
        await _answered(r, c, ex, ResultCode.SUCCESS)


async def _pending_download(r: Runner, c: Checks, tid: str) -> None:
    """10.17.3.1: logon -> pending-data notification -> download carrying item ``tid``.
    A downloaded request is recorded as delivered."""
    await r.idle(r.quiet)
    await r.logon()
    await r.until(lambda: bool(r.notifications()), r.wait)
    if not c.expect("pending-data notification on logon (10.17.3.1)", bool(r.notifications()),
                    f"none within {r.wait:g} s of the REGISTER"):
        return
    download = PendingDataDownloadRequest(new_transaction_id(), r.acmc_user)
    dex, sent = await r.request(download, identity=r.acmc_user)
    if not _expect_2xx(c, sent, "download request answered 2xx"):
        return
    await r.until(lambda: dex.response is not None or bool(dex.invalid), r.wait)
    resp = dex.response
    if not isinstance(resp, PendingDataDownloadResponse):
        c.unobservable("download response (10.17.3.1)", f"none within {r.wait:g} s")
        return
    items = [i for i in resp.items if i.transaction_id == tid]
    if c.expect("the download carries the pending item", bool(items),
                f"{len(resp.items)} item(s), none with {tid}"):
        r.arrivals.append(Arrival(time.time(), "download", r.acmc_user, items[0], 200))


@script("remove-user", "partner")
async def _p_remove(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = RemoveUserConfigurationRequest(new_transaction_id(), _requester(r), r.fx.users)
    ex, _ = await _user_configuration(r, c, req)
    if isinstance(ex.response, RemoveUserConfigurationResponse):
        got = {_id(u.primary_id) for u in ex.response.users}
        c.expect("one outcome per requested user", got == _ids(r.fx.users),
                 f"got {sorted(u.primary_id for u in ex.response.users)}")
        for u in ex.response.users:
            primary = _id(u.primary_id)
            if u.result.positive and primary is not None:  # later updates need a new add
                r.assigned.pop(primary, None)


@script("unknown-user", "partner")
async def _p_unknown(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = ProfileUpdateRequest(new_transaction_id(), _requester(r), _partner_target(r),
                               r.fx.unknown_user, r.fx.profile)
    ex, sent = await r.request(req, identity=r.psi)
    await _follow_partner(r, c, ex, sent, ResultCode.UNKNOWN_USER)


@script("not-authorised-requester", "partner")
async def _p_requester(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = AddUserConfigurationRequest(new_transaction_id(),
                                      Party(r.fx.unauthorised_requester), r.fx.users)
    ex, sent = await r.request(req, identity=r.psi)
    if sent.ok:
        await r.until(lambda: ex.response is not None, r.wait)
    _negative_only(c, sent, ex, ResultCode.NOT_AUTHORISED)


@script("not-authorised-peer", "partner")
async def _p_peer(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = AddUserConfigurationRequest(new_transaction_id(), _requester(r), r.fx.users)
    ex, sent = await r.request(req, identity=r.fx.unknown_psi)
    # no _unjudgeable here: a 403 is the expected answer, whichever check of the peer gave it
    if sent.status is None:
        c.unobservable("refused with 403", sent.describe())
        return
    c.expect("refused with 403 (nothing stored for an unknown system)", sent.status == 403,
             sent.describe())
    await r.idle(r.quiet)
    c.expect("no indication or response to our PSI", ex.indication is None
             and ex.response is None)


# --------------------------------------------------------------------------- both roles


def _sender(r: Runner) -> str:
    """Who sends the negative-test requests: our PSI (partner) or our ACMC (primary)."""
    assert r.fx is not None
    return r.psi if r.role == "partner" else r.fx.requester


def _add_request(r: Runner) -> AddUserConfigurationRequest:
    assert r.fx is not None
    target = Addressee(r.fx.target) if r.role == "primary" and r.fx.target else None
    return AddUserConfigurationRequest(new_transaction_id(), _requester(r), r.fx.users, target)


async def _nothing_processed(r: Runner, c: Checks, ex: Exchange) -> None:
    tid = ex.request.transaction_id
    await r.idle(r.quiet)
    if r.role == "primary":
        c.expect("nothing forwarded to the partner", not r.requests(tid))
    else:
        c.expect("no process indication or response",
                 ex.indication is None and ex.response is None)


@script("invalid-document", "partner", "primary")
async def _invalid(r: Runner, c: Checks) -> None:
    req = _add_request(r)
    # drop the mandatory <users> list: a schema failure at a known element
    root = etree.fromstring(codec.encode(req))
    for el in root.findall(f"{{{codec.ACM_NS}}}user"):
        root.remove(el)
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    try:
        codec.decode(body)
        raise SetupFailed("could not build an invalid document")
    except AcmError:
        pass
    ex, sent = await r.request(req, identity=_sender(r), body=body)
    if _unjudgeable(c, "refused with 400", sent):
        return
    c.expect("refused with 400 (RFC 3261 21.4.1)", sent.status == 400, sent.describe())
    c.expect("a Warning names the problem (RFC 3261 20.43)", bool(sent.warning))
    await _nothing_processed(r, c, ex)


@script("unknown-content-type", "partner", "primary")
async def _unknown_type(r: Runner, c: Checks) -> None:
    req = _add_request(r)
    ex = r.follow(req)
    sent = await r.send(r.profile.wire.dialect.outgoing(codec.encode(req)),
                        identity=_sender(r), content_type="application/x-conformance+xml",
                        native=False)
    if _unjudgeable(c, "refused with 415", sent):
        return
    c.expect("refused with 415 (RFC 3261 21.4.13)", sent.status == 415, sent.describe())
    accept = sent.accept or ""
    c.expect("Accept lists the peer's ACM type", r.profile.wire.dialect.content_type.lower()
             in accept.lower(), f"Accept: {accept or '(none)'}")
    await _nothing_processed(r, c, ex)


@script("duplicate", "partner")
async def _p_duplicate(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = await _update(r, Addressee(r.fx.decider))
    ex, first = await r.request(req, identity=r.psi)
    if not _expect_2xx(c, first, "first copy answered 2xx"):
        return
    await r.until(lambda: _delivery(r, req.transaction_id) is not None, r.wait)
    _, second = await r.request(req, identity=r.psi)  # a new SIP transaction, same id
    _expect_2xx(c, second, "second copy answered 2xx (decision: duplicates are acknowledged)")
    await r.idle(r.quiet)
    count = len(r.requests(req.transaction_id))
    if count == 0:
        c.unobservable("delivered once", f"nothing reached {r.acmc_user}")
        return
    c.expect("delivered to the decider once", count == 1, f"{count} deliveries")
    delivered = _delivery(r, req.transaction_id)
    assert delivered is not None
    await _decide(r, c, delivered, ResultCode.SUCCESS)
    await _follow_partner(r, c, ex, first, ResultCode.SUCCESS)


@script("retransmission", "partner", "primary")
async def _retransmission(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    if r.role == "partner":
        req: SendableRequest = ProfileUpdateRequest(
            new_transaction_id(), _requester(r), _partner_target(r), r.fx.unknown_user,
            r.fx.profile)
    else:
        req = await _update(r, Addressee(r.fx.target))
    ex, sent = await r.request(req, identity=_sender(r))
    if not _expect_2xx(c, sent, "first copy answered 2xx"):
        return
    data = r.sent_bytes(sent.call_id)
    if data is None:
        raise SetupFailed("the first copy is not in the trace")
    if r.role == "partner":
        await r.until(lambda: ex.indication is not None, r.wait)
    else:
        await r.until(lambda: bool(r.requests(req.transaction_id)), r.wait)
    after = time.time()
    await r.retransmit(data)
    again = r.answers_to(sent.call_id, after)
    if not again:
        c.unobservable("the copy answered again (RFC 3261 17.2.2)",
                       f"no answer to the copy within {r.quiet:g} s")
    else:
        c.expect("the copy gets the same final status (RFC 3261 17.2.2)",
                 again[-1] == sent.status, f"{again[-1]} after {sent.status}")
    if r.role == "partner":
        indications = sum(1 for a in ex.arrivals if isinstance(a.flow, ProcessIndication))
        c.expect("processed once: one process indication", indications == 1,
                 f"{indications} indications")
    else:
        forwards = len(r.requests(req.transaction_id))
        c.expect("processed once: one forward to the partner", forwards == 1,
                 f"{forwards} forwards")


@script("same-id-other-body", "partner")
async def _p_other_body(r: Runner, c: Checks) -> None:
    """Issue 12 rule 4: an id in use, another body -> 400; the same body -> idempotent."""
    assert r.fx is not None
    req = await _update(r, Addressee(r.fx.decider))
    ex, first = await r.request(req, identity=r.psi)
    if not await _accepted(r, c, ex, first):
        return
    await r.until(lambda: _delivery(r, req.transaction_id) is not None, r.wait)
    other = await r.send_flow(replace(req, additional_info="conformance: another body"),
                              identity=r.psi)
    if not _unjudgeable(c, "another body under the same id refused with 400", other):
        c.expect("another body under the same id refused with 400", other.status == 400,
                 other.describe())
    _expect_2xx(c, await r.send_flow(req, identity=r.psi), "an exact repeat answered 2xx")
    await r.idle(r.quiet)
    deliveries = r.requests(req.transaction_id)
    if not deliveries:
        c.unobservable("delivered to the decider", f"nothing reached {r.acmc_user}")
        return
    c.expect("the first request alone delivered, once",
             [a.flow for a in deliveries] == [req], f"{len(deliveries)} deliveries")
    delivered = _delivery(r, req.transaction_id)
    assert delivered is not None
    await _decide(r, c, delivered, ResultCode.SUCCESS)
    await _answered(r, c, ex, ResultCode.SUCCESS)


@script("decision-not-asked", "partner")
async def _p_not_asked(r: Runner, c: Checks) -> None:
    """Issue 12 rule 3: only the user the request was delivered to decides it."""
    assert r.fx is not None
    other = r.fx.other_decider
    req = await _update(r, Addressee(r.fx.decider))
    ex, sent = await r.request(req, identity=r.psi)
    if not await _accepted(r, c, ex, sent):
        return
    delivered = await _delivered(r, c, req.transaction_id)
    if delivered is None:
        return
    refusal = Result(ResultCode.REJECTED_BY_USER, "conformance: not asked")
    for handler in (other, r.fx.decider):  # in its own name, and in the asked user's
        what = f"a decision by {other} (handler {handler}) refused with 403"
        wrong = await r.send_flow(response_to(delivered, Party(handler), refusal),
                                  identity=other)
        if not _unjudgeable(c, what, wrong):
            c.expect(what, wrong.status == 403, wrong.describe())
    await r.idle(r.quiet)
    c.expect("no response before the asked decider decides", ex.response is None,
             f"got Result {ex.result}")
    await _decide(r, c, delivered, ResultCode.SUCCESS)
    await _answered(r, c, ex, ResultCode.SUCCESS)


# --------------------------------------------------------------------------- role primary


async def _forwarded(r: Runner, c: Checks, tid: str) -> AcmRequest | None:
    """Role primary: the request the peer forwarded to our partner PSI (10.17.7.2 step 3)."""
    await r.until(lambda: bool(r.requests(tid)), r.wait)
    found = r.requests(tid)
    if not found:
        c.unobservable("forwarded to the partner ACMS (10.17.7.2 step 3)",
                       f"nothing reached {r.psi} within {r.wait:g} s (does the peer route "
                       f"it to {r.hop()}?)")
        return None
    c.expect("forwarded to the partner ACMS (10.17.7.2 step 3)", True)
    flow = found[0].flow
    return flow if isinstance(flow, AcmRequest) else None


def _answer(r: Runner, req: AcmRequest, result: str) -> AcmFlow:
    """Our (partner) response to a forwarded request; add-user assigns an ID per user."""
    handler = Party(r.fx.target if r.fx and r.fx.target else r.psi)
    resp = response_to(req, handler, Result(result, "conformance"))
    ok = Result(ResultCode.SUCCESS)
    if isinstance(req, AddUserConfigurationRequest) and isinstance(
            resp, AddUserConfigurationResponse) and resp.result.positive:
        profile = r.fx.profile if r.fx else None
        resp = replace(resp, users=tuple(
            UserAssignment(u, ok, _partner_id(u, r.psi), profile) for u in req.users))
    elif isinstance(req, RemoveUserConfigurationRequest) and isinstance(
            resp, RemoveUserConfigurationResponse) and resp.result.positive:
        resp = replace(resp, users=tuple(UserRemoval(u, ok, r.assigned.get(identity(u)))
                                         for u in req.users))
    return resp


def _partner_id(user: str, psi: str) -> str:
    """The ID we assign as partner: ``sip:cf-<user part>@<our domain>``."""
    local = user.split(":", 1)[1].split("@")[0]
    return f"sip:cf-{local}@{uri_host(psi)}"


async def _partner_answers(r: Runner, c: Checks, req: AcmRequest, result: str) -> None:
    """Role primary, as the partner ACMS: indication (step 4), then the response (step 8)."""
    expires = datetime.now(UTC) + timedelta(seconds=3600)
    ind = ProcessIndication(req.transaction_id, r.psi, req.FLOW, expires)
    _expect_2xx(c, await r.send_flow(ind, identity=r.psi), "our process indication answered 2xx")
    resp = _answer(r, req, result)
    _expect_2xx(c, await r.send_flow(resp, identity=r.psi), "our response answered 2xx")
    _learn(r, resp)


async def _sent_and_forwarded(r: Runner, c: Checks, req: SendableRequest
                              ) -> tuple[Exchange, AcmRequest | None]:
    """Role primary, 10.17.7.2 steps 1-3: ``req`` from the requester's ACMC, answered 2xx, and
    the request the peer forwarded to our partner PSI (None if either is not seen)."""
    assert r.fx is not None
    ex, sent = await r.request(req, identity=r.fx.requester)
    if not _expect_2xx(c, sent):
        return ex, None
    return ex, await _forwarded(r, c, req.transaction_id)


async def _end_to_end(r: Runner, c: Checks, req: SendableRequest, result: str) -> Exchange:
    """Role primary: ACMC request -> forwarded -> we answer ``result`` -> the ACMC gets it."""
    ex, forwarded = await _sent_and_forwarded(r, c, req)
    if forwarded is None:
        return ex
    c.expect("the forwarded request is the one sent", forwarded == req, "contents differ")
    await _partner_answers(r, c, forwarded, result)
    await _acmc_gets(r, c, ex, result)
    return ex


async def _acmc_gets(r: Runner, c: Checks, ex: Exchange, result: str) -> None:
    """Role primary, 10.17.7.2 step 10: the requester's ACMC gets the response with ``result``."""
    await _await_response(r, c, ex)
    if ex.response is None:
        c.unobservable("response delivered to the ACMC (10.17.7.2 step 10)",
                       f"none within {r.wait:g} s")
    else:
        c.expect(f"the ACMC gets Result {result} (10.17.7.2 step 10)", ex.result == result,
                 f"got {ex.result}")


@script("add-user", "primary")
async def _r_add(r: Runner, c: Checks) -> None:
    ex = await _end_to_end(r, c, _add_request(r), ResultCode.SUCCESS)
    if isinstance(ex.response, AddUserConfigurationResponse):
        got = {_id(u.primary_id): u.partner_id for u in ex.response.users}
        c.expect("per-user assignments reach the ACMC unchanged",
                 bool(got) and all(same_identity(got.get(k) or "", v)
                                   for k, v in r.assigned.items()),
                 f"got {[(u.primary_id, u.partner_id) for u in ex.response.users]}")


@script("remove-user", "primary")
async def _r_remove(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    target = Addressee(r.fx.target) if r.fx.target else None
    req = RemoveUserConfigurationRequest(new_transaction_id(), _requester(r), r.fx.users, target)
    await _end_to_end(r, c, req, ResultCode.SUCCESS)


@script("profile-update-approve", "primary")
async def _r_approve(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    await _end_to_end(r, c, await _update(r, Addressee(r.fx.target)), ResultCode.SUCCESS)


@script("profile-update-reject", "primary")
async def _r_reject(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    await _end_to_end(r, c, await _update(r, Addressee(r.fx.target)), ResultCode.REJECTED_BY_USER)


@script("unknown-user", "primary")
async def _r_unknown(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    await _end_to_end(r, c, await _update(r, Addressee(r.fx.target)), ResultCode.UNKNOWN_USER)


@script("fa-one-holder", "primary")
async def _r_fa(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = await _update(r, Addressee(None, r.fx.target_fa))
    await _end_to_end(r, c, req, ResultCode.SUCCESS)


@script("pending-request", "primary")
async def _r_pending(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = await _update(r, Addressee(r.fx.target))
    _, forwarded = await _sent_and_forwarded(r, c, req)
    if forwarded is None:
        return
    await r.logoff()  # the requester logs off before the answer comes
    await _partner_answers(r, c, forwarded, ResultCode.SUCCESS)
    await _pending_download(r, c, req.transaction_id)


@script("partner-refuses", "primary")
async def _r_refuses(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    r.partner_status = 403
    ex, forwarded = await _sent_and_forwarded(r, c, await _update(r, Addressee(r.fx.target)))
    if forwarded is None:
        return
    await r.until(lambda: ex.response is not None, r.wait)
    if ex.response is None:
        c.unobservable("negative Result to the ACMC", f"none within {r.wait:g} s")
    else:
        c.expect("negative Result to the ACMC", ex.result != ResultCode.SUCCESS,
                 f"got {ex.result}")


@script("partner-silent", "primary")
async def _r_silent(r: Runner, c: Checks) -> None:
    assert r.fx is not None and r.fx.answer_timeout is not None
    ex, forwarded = await _sent_and_forwarded(r, c, await _update(r, Addressee(r.fx.target)))
    if forwarded is None:
        return
    await r.until(lambda: ex.response is not None, r.fx.answer_timeout + r.wait)
    if ex.response is None:
        c.unobservable("Result expired to the ACMC",
                       f"none within answer_timeout + {r.wait:g} s")
    else:
        c.expect("Result expired to the ACMC", ex.result == ResultCode.EXPIRED,
                 f"got {ex.result}")


@script("not-authorised-requester", "primary")
async def _r_requester(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = AddUserConfigurationRequest(new_transaction_id(), Party(r.fx.unauthorised_requester),
                                      r.fx.users,
                                      Addressee(r.fx.target) if r.fx.target else None)
    _, sent = await r.request(req, identity=r.fx.unauthorised_requester)
    if sent.status is None:
        c.unobservable("refused", sent.describe())
        return
    await r.idle(r.quiet)
    c.expect("not forwarded to the partner (10.17.7.2 step 2)", not r.requests(
        req.transaction_id))
    if sent.ok:
        c.unobservable("refused with 403", "accepted with 2xx; a not-authorised Result may "
                       "wait for the (unregistered) user")
    elif sent.untrusted is not None:  # the 403 may refuse our connection, not the requester
        c.unobservable("refused with 403", f"{sent.describe()}; {sent.untrusted}")
    else:
        c.expect("refused with 403", sent.status == 403, sent.describe())


@script("duplicate", "primary")
async def _r_duplicate(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = await _update(r, Addressee(r.fx.target))
    ex, first = await r.request(req, identity=r.fx.requester)
    if not _expect_2xx(c, first, "first copy answered 2xx"):
        return
    forwarded = await _forwarded(r, c, req.transaction_id)
    _, second = await r.request(req, identity=r.fx.requester)
    _expect_2xx(c, second, "second copy answered 2xx (decision: duplicates are acknowledged)")
    await r.idle(r.quiet)
    count = len(r.requests(req.transaction_id))
    c.expect("forwarded to the partner once", count == 1, f"{count} forwards")
    if forwarded is not None:
        await _partner_answers(r, c, forwarded, ResultCode.SUCCESS)
        await r.until(lambda: ex.response is not None, r.wait)
        c.expect("the ACMC gets the response", ex.result == ResultCode.SUCCESS,
                 f"got {ex.result}")


@script("wrong-answer", "primary")
async def _r_wrong_answer(r: Runner, c: Checks) -> None:
    """Issue 12 rule 2: a response must answer the request that was sent."""
    assert r.fx is not None
    ex, forwarded = await _sent_and_forwarded(r, c, await _update(r, Addressee(r.fx.target)))
    if not isinstance(forwarded, ProfileUpdateRequest):
        return
    expires = datetime.now(UTC) + timedelta(seconds=3600)
    ind = ProcessIndication(forwarded.transaction_id, r.psi, forwarded.FLOW, expires)
    _expect_2xx(c, await r.send_flow(ind, identity=r.psi), "our process indication answered 2xx")
    right = _answer(r, forwarded, ResultCode.SUCCESS)
    assert isinstance(right, ProfileUpdateResponse)
    refusal = Result(ResultCode.REJECTED_BY_USER, "conformance: does not answer the request")
    someone = f"sip:conformance-other@{uri_host(r.fx.requester)}"
    for what, wrong in (
            ("another requester as target", replace(right, target=Addressee(someone),
                                                    result=refusal)),
            ("another migrated user", replace(
                right, migrated_user_id=f"sip:conformance-other@{uri_host(r.psi)}",
                result=refusal))):
        answer = await r.send_flow(wrong, identity=r.psi)
        if not _unjudgeable(c, f"a response naming {what} refused with 4xx", answer):
            c.expect(f"a response naming {what} refused with 4xx",
                     answer.status is not None and 400 <= answer.status < 500,
                     answer.describe())
    _expect_2xx(c, await r.send_flow(right, identity=r.psi), "the right response answered 2xx")
    await _acmc_gets(r, c, ex, ResultCode.SUCCESS)


# --------------------------------------------------------------------------- group-related ACM


def _group_update(r: Runner, group: str, target: Addressee,
                  operation: GroupOperation = GroupOperation.ADD) -> GroupMembershipUpdateRequest:
    """10.17.4: ask the partner system to add (or delete) ``group_users`` in ``group``."""
    assert r.fx is not None
    return GroupMembershipUpdateRequest(new_transaction_id(), _requester(r), target, group,
                                        r.fx.group_users, operation, Urgency.NORMAL)


def _provision(r: Runner, target: Addressee) -> InterconnectionGroupProvisionRequest:
    """10.17.4.2.2 step 1: the identities of the groups the fixtures name."""
    assert r.fx is not None
    groups = tuple(dict.fromkeys(g for g in (r.fx.group, r.fx.auto_group) if g))
    return InterconnectionGroupProvisionRequest(new_transaction_id(), _requester(r), target,
                                                groups)


def _echoes(c: Checks, request: AcmRequest, response: AcmFlow | None) -> None:
    """A group-related response echoes what it answers (docs/decisions.md "Group-related
    ACM": group, operation and users, or the groups; compared as URIs, in any order)."""
    if isinstance(response, AcmResponse):
        why = groups.mismatch(request, response)
        c.expect("the response echoes the request's group(s), operation and users (10.17.4)",
                 why is None, why or "")


def _handled_by(c: Checks, response: AcmFlow | None, user: str, fa: str | None = None) -> None:
    handler = getattr(response, "handler", None)
    if not isinstance(handler, Party):
        return
    c.expect("handler is the deciding user (10.17.4, as table 10.17.2.16-1)",
             same_identity(handler.mc_service_id, user), f"got {handler.mc_service_id}")
    if fa is not None:
        c.expect("handler FA is the FA addressed (24.379 9A)",
                 handler.functional_alias is not None
                 and same_identity(handler.functional_alias, fa),
                 f"got {handler.functional_alias}")


def _wrong_echoes(response: AcmResponse, r: Runner) -> tuple[tuple[str, AcmFlow], ...]:
    """Responses that answer another group, and the other operation (result success: a peer
    that took them would apply what was never asked)."""
    if isinstance(response, GroupMembershipUpdateResponse):
        other = (GroupOperation.DELETE if response.operation == GroupOperation.ADD
                 else GroupOperation.ADD)
        return (("another group", replace(
                    response, group_id=f"sip:conformance-other-group@{uri_host(r.psi)}")),
                ("the other operation", replace(response, operation=other)))
    return ()


async def _refused_then_right(r: Runner, c: Checks, ex: Exchange, right: AcmResponse,
                              identity: str) -> None:
    """Each wrong echo of ``right`` is refused with 4xx and answers nothing; then ``right``
    is taken."""
    for what, wrong in _wrong_echoes(right, r):
        check = f"a response naming {what} refused with 4xx (10.17.4, D3)"
        answer = await r.send_flow(wrong, identity=identity)
        if not _unjudgeable(c, check, answer):
            c.expect(check, answer.status is not None and 400 <= answer.status < 500,
                     answer.describe())
    await r.idle(r.quiet)
    c.expect("no response reached the requester from the refused answers",
             ex.response is None, f"got Result {ex.result}")
    _expect_2xx(c, await r.send_flow(right, identity=identity),
                "the right response answered 2xx")


@script("group-update-auto", "partner")
async def _p_group_auto(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = _group_update(r, r.fx.auto_group, _partner_target(r))
    ex, sent = await r.request(req, identity=r.psi)
    await _follow_partner(r, c, ex, sent, ResultCode.SUCCESS)
    c.expect("handled without a partner user (10.17.3.2)",
             not r.requests(req.transaction_id), "the request reached the decider")
    _echoes(c, req, ex.response)


@script("group-update-decided", "partner")
async def _p_group_decided(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = _group_update(r, r.fx.group, Addressee(r.fx.decider))
    ex, sent = await r.request(req, identity=r.psi)
    await _decided_by_user(r, c, ex, sent, ResultCode.SUCCESS)
    await _follow_partner(r, c, ex, sent, ResultCode.SUCCESS)
    _handled_by(c, ex.response, r.fx.decider)
    _echoes(c, req, ex.response)


@script("group-not-authorised", "partner")
async def _p_group_foreign(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = _group_update(r, r.fx.foreign_group, _partner_target(r))
    ex, sent = await r.request(req, identity=r.psi)
    if sent.ok:
        await r.until(lambda: ex.response is not None, r.wait)
    _negative_only(c, sent, ex, ResultCode.NOT_AUTHORISED)
    await r.idle(r.quiet)
    c.expect("delivered to no partner user (verify fails, 10.17.4: group not allowed for the "
             "peer)", not r.requests(req.transaction_id))


@script("group-wrong-answer", "partner")
async def _p_group_wrong(r: Runner, c: Checks) -> None:
    """Our decider's answer must echo the delivered request (D3 at the partner)."""
    assert r.fx is not None
    req = _group_update(r, r.fx.group, Addressee(r.fx.decider))
    ex, sent = await r.request(req, identity=r.psi)
    if not await _accepted(r, c, ex, sent):
        return
    delivered = await _delivered(r, c, req.transaction_id)
    if delivered is None:
        return
    right = response_to(delivered, Party(r.fx.decider), Result(ResultCode.SUCCESS))
    await _refused_then_right(r, c, ex, right, r.fx.decider)
    await _answered(r, c, ex, ResultCode.SUCCESS)
    _echoes(c, req, ex.response)


@script("group-provision", "partner")
async def _p_group_provision(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = _provision(r, Addressee(None, r.fx.fa_held))
    ex, sent = await r.request(req, identity=r.psi)
    await _decided_by_user(r, c, ex, sent, ResultCode.SUCCESS, r.fx.fa_held)
    await _follow_partner(r, c, ex, sent, ResultCode.SUCCESS)
    _handled_by(c, ex.response, r.fx.decider, r.fx.fa_held)
    _echoes(c, req, ex.response)


@script("group-update-decided", "primary")
async def _r_group_decided(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = _group_update(r, r.fx.group, Addressee(r.fx.target))
    ex = await _end_to_end(r, c, req, ResultCode.SUCCESS)
    _echoes(c, req, ex.response)


@script("group-not-authorised", "primary")
async def _r_group_foreign(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = _group_update(r, r.fx.foreign_group, Addressee(r.fx.target))
    _, sent = await r.request(req, identity=r.fx.requester)
    if _unjudgeable(c, "refused with 403 (10.17.4.2.2 step 2)", sent):
        return
    c.expect("refused with 403 (10.17.4.2.2 step 2)", sent.status == 403, sent.describe())
    await r.idle(r.quiet)
    c.expect("not forwarded to the partner (10.17.4.2.2 step 2: stop on failure)",
             not r.requests(req.transaction_id))


@script("group-wrong-answer", "primary")
async def _r_group_wrong(r: Runner, c: Checks) -> None:
    """D3 at the primary: the partner's response must echo the request forwarded."""
    assert r.fx is not None
    req = _group_update(r, r.fx.group, Addressee(r.fx.target))
    ex, forwarded = await _sent_and_forwarded(r, c, req)
    if not isinstance(forwarded, GroupMembershipUpdateRequest):
        return
    expires = datetime.now(UTC) + timedelta(seconds=3600)
    ind = ProcessIndication(forwarded.transaction_id, r.psi, forwarded.FLOW, expires)
    _expect_2xx(c, await r.send_flow(ind, identity=r.psi), "our process indication answered 2xx")
    right = _answer(r, forwarded, ResultCode.SUCCESS)
    assert isinstance(right, AcmResponse)
    await _refused_then_right(r, c, ex, right, r.psi)
    await _acmc_gets(r, c, ex, ResultCode.SUCCESS)
    _echoes(c, req, ex.response)


@script("group-provision", "primary")
async def _r_group_provision(r: Runner, c: Checks) -> None:
    assert r.fx is not None
    req = _provision(r, Addressee(None, r.fx.target_fa))
    ex = await _end_to_end(r, c, req, ResultCode.SUCCESS)
    _echoes(c, req, ex.response)
