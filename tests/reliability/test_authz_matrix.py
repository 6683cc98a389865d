"""Authorisation matrix: every role x every ACM flow x every kind of sender -> the SIP answer of
the ACMS and what it sends next (the Result of any response it makes).

Runs the sans-I/O core (mcacm_sip/core/acms/) behind the runtime's own classification of a
sender (mcacm_sip/runtime/trust.py ``Trust.event``: a configured peer PSI is a peer ACMS, anyone
else an ACMC user).  Trust of the origin itself (certificates, trusted hosts) is tested in
test_trust_*.py; here every sender is believed to be who it says.

The expected table is :data:`MATRIX`, written by hand; RELIABILITY.md "Authorisation and trust"
carries the same text (a test keeps them equal).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mcacm_sip.acm import fa as fa_bodies
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.fa import EXPIRES_UNTIL_WITHDRAWN
from mcacm_sip.acm.model import (
    FLOW_TYPES,
    AcmFlow,
    AcmResponse,
    Addressee,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    GroupMembershipUpdateRequest,
    GroupMembershipUpdateResponse,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    InterconnectionGroupProvisionResponse,
    Party,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    PendingDataNotification,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    RemoveUserConfigurationRequest,
    RemoveUserConfigurationResponse,
    Result,
    ResultCode,
    UserRemoval,
)
from mcacm_sip.core.acms import AcmsCore
from mcacm_sip.core.config import (
    REQUEST_FLOWS,
    AcmsConfig,
    AuthorisedUser,
    Migration,
    PeerSystem,
)
from mcacm_sip.core.events import (
    RefuseMessage,
    SendFlow,
    UserLoggedOn,
    verdict_of,
)
from mcacm_sip.core.fa_server import Answer as FaAnswer
from mcacm_sip.core.fa_server import FaConfig, FaServer, FaServerConfig, Publish, Subscribe
from mcacm_sip.runtime.trust import Trust

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_750_000_000.0
PROFILE = profile_from_xml('<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0">'
                           "<Name>matrix</Name></mcptt-user-profile>")

MATRIX = """\
| role | flow received | authorised user | user not authorised | unknown user | configured peer ACMS | peer not allowed the flow | unknown system |
|---|---|---|---|---|---|---|---|
| primary | profile-update-request | 200 peer:request | 403 | 403 | 200 peer:indication peer:response(unknown-user) | 200 peer:indication peer:response(not-authorised) | 403 |
| primary | profile-update-response | 403 | 403 | 403 | 200 acmc:response(success) | 403 | 403 |
| primary | process-indication | 400 | 400 | 403 | 200 acmc:indication | 403 | 403 |
| primary | pending-data-notification | 400 | 400 | 403 | 400 | 400 | 403 |
| primary | pending-data-download-request | 200 acmc:download | 200 acmc:download | 403 | 400 | 400 | 403 |
| primary | pending-data-download-response | 400 | 400 | 403 | 400 | 400 | 403 |
| primary | add-user-configuration-request | 200 peer:request | 403 | 403 | 200 peer:indication acmc:request | 200 peer:indication peer:response(not-authorised) | 403 |
| primary | add-user-configuration-response | 403 | 403 | 403 | 200 acmc:response(success) | 403 | 403 |
| primary | remove-user-configuration-request | 200 peer:request | 403 | 403 | 200 peer:indication acmc:request | 200 peer:indication peer:response(not-authorised) | 403 |
| primary | remove-user-configuration-response | 403 | 403 | 403 | 200 acmc:response(success) | 403 | 403 |
| primary | group-membership-update-request | 200 peer:request | 403 | 403 | 200 peer:indication acmc:request | 200 peer:indication peer:response(not-authorised) | 403 |
| primary | group-membership-update-response | 403 | 403 | 403 | 200 acmc:response(success) | 403 | 403 |
| primary | interconnection-group-provision-request | 200 peer:request | 403 | 403 | 200 peer:indication acmc:request | 200 peer:indication peer:response(not-authorised) | 403 |
| primary | interconnection-group-provision-response | 403 | 403 | 403 | 200 acmc:response(success) | 403 | 403 |
| partner | profile-update-request | 200 peer:request | 403 | 403 | 200 peer:indication acmc:request | 200 peer:indication peer:response(not-authorised) | 403 |
| partner | profile-update-response | 200 peer:response(success) | 403 | 403 | 404 | 404 | 403 |
| partner | process-indication | 400 | 400 | 403 | 404 | 404 | 403 |
| partner | pending-data-notification | 400 | 400 | 403 | 400 | 400 | 403 |
| partner | pending-data-download-request | 200 acmc:download | 200 acmc:download | 403 | 400 | 400 | 403 |
| partner | pending-data-download-response | 400 | 400 | 403 | 400 | 400 | 403 |
| partner | add-user-configuration-request | 200 peer:request | 403 | 403 | 200 peer:indication acmc:request | 200 peer:indication peer:response(not-authorised) | 403 |
| partner | add-user-configuration-response | 200 peer:response(success) | 403 | 403 | 404 | 404 | 403 |
| partner | remove-user-configuration-request | 200 peer:request | 403 | 403 | 200 peer:indication acmc:request | 200 peer:indication peer:response(not-authorised) | 403 |
| partner | remove-user-configuration-response | 200 peer:response(success) | 403 | 403 | 404 | 404 | 403 |
| partner | group-membership-update-request | 200 peer:request | 403 | 403 | 200 peer:indication acmc:request | 200 peer:indication peer:response(not-authorised) | 403 |
| partner | group-membership-update-response | 200 peer:response(success) | 403 | 403 | 404 | 404 | 403 |
| partner | interconnection-group-provision-request | 200 peer:request | 403 | 403 | 200 peer:indication acmc:request | 200 peer:indication peer:response(not-authorised) | 403 |
| partner | interconnection-group-provision-response | 200 peer:response(success) | 403 | 403 | 404 | 404 | 403 |
"""  # noqa: E501
"""Each cell: the SIP status the ACMS answers, then what it sends because of the flow:
``peer:`` to the other ACMS, ``acmc:`` to a local ACMC; ``response(<Result>)`` a response
with that Result code."""

KINDS = ("authorised user", "user not authorised", "unknown user", "configured peer ACMS",
         "peer not allowed the flow", "unknown system")
ROLES = ("primary", "partner")


class System:
    """One MC system's names: its ACMS, its users, and the other system's."""

    def __init__(self, domain: str, other: str) -> None:
        self.psi = f"sip:acms@{domain}"
        self.auth = f"sip:auth@{domain}"
        """May send and decide every request flow."""
        self.limited = f"sip:limited@{domain}"
        """A configured ACM user with no rights."""
        self.unknown = f"sip:nobody@{domain}"
        self.peer = f"sip:acms@{other}"
        self.peer_user = f"sip:auth@{other}"
        self.restricted = "sip:acms@restricted.example"
        """A configured peer that may send no request flow (``flows = []``)."""
        self.stranger = "sip:acms@unknown.example"
        self.config = AcmsConfig(
            psi=self.psi,
            peers=(PeerSystem(self.peer, (other,)),
                   PeerSystem(self.restricted, ("restricted.example",), flows=())),
            users=(AuthorisedUser(self.auth, REQUEST_FLOWS, REQUEST_FLOWS),
                   AuthorisedUser(self.limited)),
            migration=Migration(f"sip:{{user}}-{{n}}@{domain}", PROFILE))

    def sender(self, kind: str) -> str:
        return {"authorised user": self.auth, "user not authorised": self.limited,
                "unknown user": self.unknown, "configured peer ACMS": self.peer,
                "peer not allowed the flow": self.restricted,
                "unknown system": self.stranger}[kind]


PRIMARY = System("primary.example", "partner.example")
PARTNER = System("partner.example", "primary.example")
MIGRANT = "sip:mike@primary.example"
MIGRATED = "sip:mike-1@partner.example"
"""The partner ID the partner's migration template gives the first user it adds."""
GROUP = "sip:grp-1@primary.example"
MEMBER = "sip:erin@partner.example"
"""10.17.4: an MC service group and the user a group membership update is about."""


def trust(system: System) -> Trust:
    """The runtime's classification of senders at ``system``'s ACMS."""
    return Trust(system.config.peers, (u.id for u in system.config.users), frozenset())


def open_transactions(role: str) -> tuple[AcmsCore, dict[str, str]]:
    """A core of ``role`` with one open transaction per request flow (request flow ->
    transaction id) and its authorised user logged on.

    primary: AUTH sent each request; it is forwarded to the partner (no answer yet).
    partner: the primary sent each request (a profile update for a user it migrated here
    earlier, added and approved first); each waits for AUTH's decision.
    """
    system = PRIMARY if role == "primary" else PARTNER
    core = AcmsCore(system.config)
    core.handle(UserLoggedOn(NOW, system.auth))
    if role == "primary":
        sender, requester, target = system.auth, system.auth, Addressee(system.peer_user)
    else:
        sender, requester, target = system.peer, system.peer_user, Addressee(system.auth)
        add = AddUserConfigurationRequest("t-setup", Party(requester), (MIGRANT,), target)
        core.handle(trust(system).event(NOW, sender, add))
        core.handle(trust(system).event(NOW, system.auth, AddUserConfigurationResponse(
            "t-setup", Party(system.auth), Addressee(requester), Result(ResultCode.SUCCESS))))
        assert [m.partner_id for m in core.mappings()] == [MIGRATED]
    requests = (
        ProfileUpdateRequest("t-update", Party(requester), target, MIGRATED, PROFILE),
        AddUserConfigurationRequest("t-add", Party(requester), ("sip:zoe@primary.example",),
                                    target),
        RemoveUserConfigurationRequest("t-remove", Party(requester), (MIGRANT,), target),
        GroupMembershipUpdateRequest("t-group", Party(requester), target, GROUP, (MEMBER,),
                                     GroupOperation.ADD),
        InterconnectionGroupProvisionRequest("t-provide", Party(requester), target, (GROUP,)))
    for request in requests:
        verdict = verdict_of(core.handle(trust(system).event(NOW, sender, request)))
        assert verdict is not None and not isinstance(verdict, RefuseMessage), (request, verdict)
    return core, {r.FLOW: r.transaction_id for r in requests}


def flow_from(role: str, kind: str, name: str, ids: dict[str, str]) -> AcmFlow:
    """The flow ``name`` as a sender of ``kind`` would send it to ``role``'s ACMS: requests new,
    answers about the open transaction of their request."""
    system = PRIMARY if role == "primary" else PARTNER
    sender = system.sender(kind)
    from_peer = kind in ("configured peer ACMS", "peer not allowed the flow")
    # a party of the sending side: the peer's user for a peer, else the sender itself
    party = Party(system.peer_user if from_peer else sender)
    # who a request is for: our own decider if it comes from the peer, else the other side
    target = Addressee(system.auth if from_peer else system.peer_user)
    answer_to = Addressee(system.auth if role == "primary" else system.peer_user)
    ok = Result(ResultCode.SUCCESS)
    flows: dict[str, Callable[[], AcmFlow]] = {
        "profile-update-request": lambda: ProfileUpdateRequest(
            "t-new-update", party, target, MIGRATED, PROFILE),
        "add-user-configuration-request": lambda: AddUserConfigurationRequest(
            "t-new-add", party, ("sip:yan@primary.example",), target),
        "remove-user-configuration-request": lambda: RemoveUserConfigurationRequest(
            "t-new-remove", party, (MIGRANT,), target),
        "profile-update-response": lambda: ProfileUpdateResponse(
            ids["profile-update-request"], party, answer_to, MIGRATED, ok),
        "add-user-configuration-response": lambda: AddUserConfigurationResponse(
            ids["add-user-configuration-request"], party, answer_to, ok),
        "remove-user-configuration-response": lambda: RemoveUserConfigurationResponse(
            ids["remove-user-configuration-request"], party, answer_to, ok,
            (UserRemoval(MIGRANT, ok),)),
        "group-membership-update-request": lambda: GroupMembershipUpdateRequest(
            "t-new-group", party, target, GROUP, (MEMBER,), GroupOperation.DELETE),
        "interconnection-group-provision-request": lambda: InterconnectionGroupProvisionRequest(
            "t-new-provide", party, target, (GROUP,)),
        "group-membership-update-response": lambda: GroupMembershipUpdateResponse(
            ids["group-membership-update-request"], party, answer_to, GROUP,
            GroupOperation.ADD, (MEMBER,), ok),
        "interconnection-group-provision-response": lambda: (
            InterconnectionGroupProvisionResponse(
                ids["interconnection-group-provision-request"], party, answer_to, (GROUP,),
                ok)),
        "process-indication": lambda: ProcessIndication(
            ids["add-user-configuration-request"], system.peer,
            "add-user-configuration-request"),
        "pending-data-notification": lambda: PendingDataNotification("t-note", sender),
        "pending-data-download-request": lambda: PendingDataDownloadRequest("t-dl", sender),
        "pending-data-download-response": lambda: PendingDataDownloadResponse("t-dl", sender),
    }
    return flows[name]()


def _sent(send: SendFlow) -> str:
    flow = send.flow
    what = f"response({flow.result.code})" if isinstance(flow, AcmResponse) else {
        "process-indication": "indication", "pending-data-notification": "notification",
        "pending-data-download-response": "download"}.get(flow.FLOW, "request")
    return f"{send.hop}:{what}"


def outcome(role: str, name: str, kind: str) -> str:
    """``<SIP status>`` then what the ACMS sends because of it (``peer:`` / ``acmc:``)."""
    core, ids = open_transactions(role)
    system = PRIMARY if role == "primary" else PARTNER
    actions = core.handle(trust(system).event(NOW, system.sender(kind),
                                              flow_from(role, kind, name, ids)))
    verdict = verdict_of(actions)
    status = verdict.status if isinstance(verdict, RefuseMessage) else 200
    sends = [_sent(a) for a in actions if isinstance(a, SendFlow)]
    return " ".join([str(status), *sends])


def expected() -> dict[tuple[str, str, str], str]:
    rows = [line.strip("|").split("|") for line in MATRIX.splitlines()[2:]]
    return {(cells[0].strip(), cells[1].strip(), kind): cell.strip()
            for cells in rows for kind, cell in zip(KINDS, cells[2:], strict=True)}


def test_the_matrix_covers_every_role_flow_and_sender() -> None:
    assert MATRIX.splitlines()[0] == "| role | flow received | " + " | ".join(KINDS) + " |"
    assert set(expected()) == {(role, cls.FLOW, kind) for role in ROLES
                               for cls in FLOW_TYPES for kind in KINDS}


@pytest.mark.parametrize(("role", "flow", "kind"), sorted(expected()))
def test_authorisation(role: str, flow: str, kind: str) -> None:
    assert outcome(role, flow, kind) == expected()[(role, flow, kind)]


def test_reliability_md_shows_the_matrix() -> None:
    assert MATRIX in (ROOT / "RELIABILITY.md").read_text(encoding="utf-8")



# ------------------------------------------------------------------ FA controlling server

FA_MATRIX = """\
| request to the FA controlling server | the user itself | another user of the FA | configured subscriber | trusted server (ACMS) | stranger | untrusted hop (no identity) |
|---|---|---|---|---|---|---|
| PUBLISH activation of U | 200 | 403 | 403 | 200 | 403 | 403 |
| SUBSCRIBE resolution of the FA | 403 | 403 | 200 | 200 | 403 | 403 |
| SUBSCRIBE status of U for the FA | 200 | 403 | 403 | 200 | 403 | 403 |
| SUBSCRIBE FAs held by U | 200 | 403 | 403 | 200 | 403 | 403 |
"""  # noqa: E501
"""The FA controlling server's PUBLISH/SUBSCRIBE rules (mcacm_sip/core/fa_server.py,
docs/decisions.md "Functional alias"): the answer to each request for/about the FA's user U
by each asserted identity ("untrusted hop": outside ``sip.trusted_hosts``, so no identity)."""

FA_DOMAIN = "partner.example"
FA = f"sip:duty@{FA_DOMAIN}"
U, V = f"sip:u@{FA_DOMAIN}", f"sip:v@{FA_DOMAIN}"
SUBSCRIBER, ACMS = f"sip:watch@{FA_DOMAIN}", f"sip:acms@{FA_DOMAIN}"
FA_SENDERS: dict[str, str | None] = {
    "the user itself": U, "another user of the FA": V, "configured subscriber": SUBSCRIBER,
    "trusted server (ACMS)": ACMS, "stranger": "sip:x@unknown.example",
    "untrusted hop (no identity)": None}
FA_REQUESTS: dict[str, Callable[[], tuple[str, bytes]]] = {
    "PUBLISH activation of U": lambda: fa_bodies.publish_body(FA, U),
    "SUBSCRIBE resolution of the FA": lambda: fa_bodies.resolution_subscribe_body(FA),
    "SUBSCRIBE status of U for the FA": lambda: fa_bodies.status_subscribe_body(FA, U),
    "SUBSCRIBE FAs held by U": lambda: fa_bodies.user_status_subscribe_body(U),
}


def fa_outcome(request: str, sender: str) -> str:
    server = FaServer(FaServerConfig((FaConfig(FA, frozenset({U, V}),
                                               subscribers=frozenset({SUBSCRIBER})),),
                                     trusted=frozenset({ACMS})))
    ctype, body = FA_REQUESTS[request]()
    who = FA_SENDERS[sender]
    if request.startswith("PUBLISH"):
        actions = server.publish(Publish(EXPIRES_UNTIL_WITHDRAWN, ctype, body, who), NOW)
    else:
        actions = server.subscribe(Subscribe("s1", EXPIRES_UNTIL_WITHDRAWN, ctype, body, who),
                                   NOW)
    answer = actions[0]
    assert isinstance(answer, FaAnswer)
    return str(answer.status)


def fa_expected() -> dict[tuple[str, str], str]:
    rows = [line.strip("|").split("|") for line in FA_MATRIX.splitlines()[2:]]
    return {(cells[0].strip(), sender): cell.strip()
            for cells in rows for sender, cell in zip(FA_SENDERS, cells[1:], strict=True)}


def test_the_fa_matrix_covers_every_request_and_sender() -> None:
    assert set(fa_expected()) == {(r, s) for r in FA_REQUESTS for s in FA_SENDERS}


@pytest.mark.parametrize(("request_", "sender"), sorted(fa_expected()))
def test_fa_authorisation(request_: str, sender: str) -> None:
    assert fa_outcome(request_, sender) == fa_expected()[(request_, sender)]


def test_reliability_md_shows_the_fa_matrix() -> None:
    assert FA_MATRIX in (ROOT / "RELIABILITY.md").read_text(encoding="utf-8")

