"""One frozen value class per ACM information flow (TS 23.280 clause 10.17.2).

The spec's tables repeat "MC service ID" and "Functional alias" for different roles; here each
role has its own field (``requester``, ``target``, ``handler``, ``migrated_user_id`` ...), and each
field's docstring cites its table row.  Constructing a value that lacks a mandatory IE, or whose
addressee has neither identity (the tables' NOTE), raises :class:`MissingIE` naming the IE.

Identities (MC service IDs, functional aliases, PSIs) are URIs kept as ``str`` (23.280 8.1).
Decisions the spec leaves open (transaction id, Result values, process indication contents) are
recorded in ``docs/decisions.md``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Final, TypeVar

from mcacm_sip.frozen import builder

# XML 1.0 Char (production [2]): a value outside it cannot travel in an XML body.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# scheme ":" then non-white-space XML characters (one match instead of the URI shape and a
# search for non-XML characters; tests/test_acm_proof.py holds the two equal)
_URI = re.compile("[A-Za-z][A-Za-z0-9+.\\-]*:[^\\s\x00-\x1f\ud800-\udfff\ufffe\uffff]+")
_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._\-]*")


class ModelError(ValueError):
    """A value that the message layer refuses to construct."""

    def __init__(self, ie: str, message: str) -> None:
        super().__init__(message)
        self.ie = ie


class MissingIE(ModelError):
    """A mandatory information element is absent."""

    def __init__(self, ie: str, where: str) -> None:
        super().__init__(ie, f"missing mandatory IE {ie} ({where})")


class InvalidIE(ModelError):
    """An information element is present but not acceptable."""

    def __init__(self, ie: str, why: str) -> None:
        super().__init__(ie, f"invalid IE {ie}: {why}")


def new_transaction_id() -> str:
    """A globally unique transaction id (project decision: a random UUID, lowercase text)."""
    return str(uuid.uuid4())


# URIs that passed _check_uri: identities recur (requesters, functional aliases, the ACMS),
# and a dict lookup costs a tenth of the match.  Bounded in entries and in length, so a peer
# sending new URIs only refills it.
_URIS_OK: dict[str, None] = {}
_URIS_OK_MAX = 4096
_URI_OK_MAX_LENGTH = 256


def _check_uri(ie: str, value: str | None, where: str, *, mandatory: bool) -> None:
    if type(value) is str and value in _URIS_OK:  # (a str subclass is checked anew)
        return
    if value is None or value == "":
        if mandatory:
            raise MissingIE(ie, where)
        if value == "":
            raise InvalidIE(ie, "empty string (omit the IE instead)")
        return
    if not isinstance(value, str) or not _URI.fullmatch(value):
        raise InvalidIE(ie, f"{value!r} is not a URI ({where})")
    if type(value) is str and len(value) <= _URI_OK_MAX_LENGTH:
        if len(_URIS_OK) >= _URIS_OK_MAX:
            _URIS_OK.clear()
        _URIS_OK[value] = None


def uri_accepted(value: str) -> bool:
    """Whether ``value`` passes the check every URI field makes (remembered as that check
    remembers it): for the codec's reader of schema-valid documents, which builds flows
    without ``__post_init__`` (``codec._read_profile_update_request``)."""
    try:
        _check_uri("uri", value, "", mandatory=True)
    except ModelError:
        return False
    return True


def _check_text(ie: str, value: str | None) -> None:
    """Optional free text: omitted rather than empty, and only characters XML can carry."""
    if value is None:
        return
    if value == "":
        raise InvalidIE(ie, "empty string (omit the IE instead)")
    if not isinstance(value, str) or _NOT_XML_CHAR.search(value):
        raise InvalidIE(ie, f"{value!r} holds characters an XML document cannot carry")


def _check_transaction_id(value: str) -> None:
    if not value:
        raise MissingIE("transaction_id", "every ACM flow, docs/decisions.md")
    if not isinstance(value, str) or len(value) > 128 or not value.isprintable() or " " in value:
        raise InvalidIE("transaction_id", f"{value!r}: 1-128 printable characters, no spaces")


# --------------------------------------------------------------------------- building blocks


@dataclass(frozen=True, slots=True)
class Party:
    """A user who acts in a flow: an MC service ID (M) and optionally a functional alias (O)."""

    mc_service_id: str
    """The user's MC service ID (URI)."""
    functional_alias: str | None = None
    """The functional alias the user acts under (URI), if any."""

    def __post_init__(self) -> None:
        _check_uri("mc_service_id", self.mc_service_id, "party", mandatory=True)
        _check_uri("functional_alias", self.functional_alias, "party", mandatory=False)


@dataclass(frozen=True, slots=True)
class Addressee:
    """The user a flow is addressed to: MC service ID, functional alias, or both.

    Tables 10.17.2.15-1 / 10.17.2.16-1 NOTE: "Either the MC service ID or the functional alias
    must be present."
    """

    mc_service_id: str | None = None
    """The addressee's MC service ID (URI), O (see NOTE)."""
    functional_alias: str | None = None
    """The addressee's functional alias (URI), O (see NOTE)."""

    def __post_init__(self) -> None:
        if not self.mc_service_id and not self.functional_alias:
            raise MissingIE(
                "target (MC service ID or functional alias)",
                "the NOTE of tables 10.17.2.15-1 and 10.17.2.16-1: one of them must be present",
            )
        _check_uri("mc_service_id", self.mc_service_id, "addressee", mandatory=False)
        _check_uri("functional_alias", self.functional_alias, "addressee", mandatory=False)


class ResultCode(StrEnum):
    """The Result values this project defines (the spec defines none; docs/decisions.md).

    The schema's Result type is extensible: a peer may send ``x-`` prefixed values, which
    decode as plain strings and count as negative.
    """

    SUCCESS = "success"
    REJECTED_BY_USER = "rejected-by-user"
    REJECTED_BY_POLICY = "rejected-by-policy"
    NOT_AUTHORISED = "not-authorised"
    UNKNOWN_USER = "unknown-user"
    NOT_MIGRATED = "not-migrated"
    INVALID_PROFILE = "invalid-profile"
    EXPIRED = "expired"


# A member as a global: Python 3.11 finds `ResultCode.SUCCESS` through EnumType's
# __getattr__ hook, far slower than a global's load (3.12 dropped the hook).
_SUCCESS: Final = ResultCode.SUCCESS


_EXTENSION_RESULT = re.compile(r"x-[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of a request: a code and optional free text for the user."""

    code: str
    """A :class:`ResultCode` value, or an extension value ``x-...``."""
    text: str | None = None
    """Human-readable explanation (free text, optional)."""

    def __post_init__(self) -> None:
        if not self.code:
            raise MissingIE("result", "Result code")
        if self.code not in ResultCode.__members__.values() and not _EXTENSION_RESULT.fullmatch(
            self.code
        ):
            raise InvalidIE("result", f"{self.code!r} is neither a known code nor x-<extension>")
        _check_text("result text", self.text)

    @property
    def positive(self) -> bool:
        """Only ``success`` is positive."""
        return self.code == _SUCCESS


@dataclass(frozen=True, slots=True)
class UserProfile:
    """An MC service user profile: an embedded MCPTT user profile document (TS 24.484 8.3.2,
    namespace ``urn:3gpp:mcptt:user-profile:1.0``), not re-modelled.

    ``xml`` holds the document's root element as canonical XML (C14N 2.0 output, comments
    dropped), so two profiles with the same content compare equal whatever their original
    attribute order, quoting, white space inside tags, empty-element form, character references
    or redundant namespace declarations.  Namespace prefixes are kept as sent (C14N does not
    rewrite them).  Build one with :func:`mcacm_sip.acm.codec.profile_from_xml`.
    """

    xml: str
    """The canonical XML text of the profile's root element."""

    def __post_init__(self) -> None:
        if not self.xml or not self.xml.lstrip().startswith("<"):
            raise MissingIE("profile", "MC service user profile document")


# --------------------------------------------------------------------------- the flows


class InformationFlow:
    """Base of every ACM information flow class (TS 23.280 10.17.2): a frozen value naming its
    flow and clause, carrying a transaction id.  :data:`AcmFlow` is the closed union of them
    (what ``match`` and the codec enumerate)."""

    __slots__ = ()
    FLOW: ClassVar[str]
    CLAUSE: ClassVar[str]
    transaction_id: str


@dataclass(frozen=True, slots=True)
class ProfileUpdateRequest(InformationFlow):
    """MC service user profile update request, TS 23.280 10.17.2.15 (table 10.17.2.15-1).

    Primary ACMC -> primary ACMS -> partner ACMS -> partner ACMC.
    """

    FLOW: ClassVar[str] = "profile-update-request"
    CLAUSE: ClassVar[str] = "10.17.2.15"

    transaction_id: str
    """Project IE: the transaction id, echoed by every flow that answers this one."""
    requester: Party
    """Rows 1-2: MC service ID (M) and functional alias (O) of the primary-system user who
    triggers the request."""
    target: Addressee
    """Rows 3-4: MC service ID / functional alias (O, NOTE: one must be present) of the
    partner-system user towards whom the request is sent."""
    migrated_user_id: str
    """Row 5 (M): MC service ID of the user permitted to migrate, created by the partner system."""
    profile: UserProfile
    """Row 6 (M): the suggested updated MC service user profile on the partner system."""
    additional_info: str | None = None
    """Row 7 (O): additional information regarding the suggested profile."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "requester", "table 10.17.2.15-1 rows 1-2")
        _require(self, "target", "table 10.17.2.15-1 rows 3-4")
        _check_uri("migrated_user_id", self.migrated_user_id, "table 10.17.2.15-1 row 5",
                   mandatory=True)
        _require(self, "profile", "table 10.17.2.15-1 row 6")
        _check_text("additional_info", self.additional_info)


@dataclass(frozen=True, slots=True)
class ProfileUpdateResponse(InformationFlow):
    """MC service user profile update response, TS 23.280 10.17.2.16 (table 10.17.2.16-1).

    Partner ACMC -> partner ACMS -> primary ACMS -> primary ACMC.
    """

    FLOW: ClassVar[str] = "profile-update-response"
    CLAUSE: ClassVar[str] = "10.17.2.16"

    transaction_id: str
    """Project IE: the transaction id of the request this answers."""
    handler: Party
    """Rows 1-2: MC service ID (M) and functional alias (O) of the partner-system user (or
    ACMS, under automatic handling) who handled the request."""
    target: Addressee
    """Rows 3-4: MC service ID / functional alias (O, NOTE: one must be present) of the
    authorised primary-system user who is the target of the response."""
    migrated_user_id: str
    """Row 5 (M): MC service ID of the user permitted to migrate, created by the partner system."""
    result: Result
    """Row 6 (M): result of the profile update request."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "handler", "table 10.17.2.16-1 rows 1-2")
        _require(self, "target", "table 10.17.2.16-1 rows 3-4")
        _check_uri("migrated_user_id", self.migrated_user_id, "table 10.17.2.16-1 row 5",
                   mandatory=True)
        _require(self, "result", "table 10.17.2.16-1 row 6")


@dataclass(frozen=True, slots=True)
class ProcessIndication(InformationFlow):
    """Process indication (10.17.2; contents not public, project decision in docs/decisions.md).

    Sent by the partner ACMS to the primary system when it has accepted (stored) a request
    (10.17.7.2 step 4, 10.17.5.2).
    """

    FLOW: ClassVar[str] = "process-indication"
    CLAUSE: ClassVar[str] = "10.17.2"

    transaction_id: str
    """The transaction id of the request being acknowledged."""
    acms: str
    """(M) Identity (PSI) of the ACMS that accepted the request."""
    request: str
    """(M) Flow name of the accepted request, e.g. ``profile-update-request``."""
    expires: datetime | None = None
    """(O) Time by which the partner answers at the latest (else Result ``expired``)."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _check_uri("acms", self.acms, "process indication", mandatory=True)
        if not self.request:
            raise MissingIE("request", "process indication: the accepted flow's name")
        if not isinstance(self.request, str) or not _NCNAME.fullmatch(self.request):
            raise InvalidIE("request", f"{self.request!r} is not a flow name")
        if self.expires is not None:
            offset = self.expires.utcoffset()
            if offset is None:
                raise InvalidIE("expires", "must carry a time zone")
            # xs:dateTime offsets are whole minutes within +-14:00 (XML Schema Part 2 3.2.7).
            if offset % timedelta(minutes=1) or abs(offset) > timedelta(hours=14):
                raise InvalidIE("expires", "time zone offset must be whole minutes within 14:00")


@dataclass(frozen=True, slots=True)
class PendingDataNotification(InformationFlow):
    """Pending ACM data notification, 10.17.2 (ACMS -> ACMC), used by 10.17.3.1."""

    FLOW: ClassVar[str] = "pending-data-notification"
    CLAUSE: ClassVar[str] = "10.17.2"

    transaction_id: str
    """Project IE: the transaction id of this notification."""
    user: str
    """(M) MC service ID of the user to whom the notification is addressed."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _check_uri("user", self.user, "pending ACM data notification", mandatory=True)


@dataclass(frozen=True, slots=True)
class PendingDataDownloadRequest(InformationFlow):
    """Pending ACM data download request, 10.17.2 (ACMC -> ACMS)."""

    FLOW: ClassVar[str] = "pending-data-download-request"
    CLAUSE: ClassVar[str] = "10.17.2"

    transaction_id: str
    """Project IE: the transaction id, echoed by the download response."""
    user: str
    """(M) MC service ID of the user asking to download pending ACM data."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _check_uri("user", self.user, "pending ACM data download request", mandatory=True)


@dataclass(frozen=True, slots=True)
class UserAssignment:
    """Per-user outcome of an add user configuration request (10.17.5.2)."""

    primary_id: str
    """(M) The user's MC service ID in the primary system."""
    result: Result
    """(M) Whether the partner accepted this user for migration."""
    partner_id: str | None = None
    """(M if result is success) The MC service ID the partner system assigned."""
    profile: UserProfile | None = None
    """(M if result is success) The profile valid while the user is migrated (10.17.7.1)."""

    def __post_init__(self) -> None:
        _check_uri("primary_id", self.primary_id, "user assignment", mandatory=True)
        _require(self, "result", "user assignment")
        _check_uri("partner_id", self.partner_id, "user assignment",
                   mandatory=self.result.positive)
        if self.result.positive:
            _require(self, "profile", "user assignment with result success")


@dataclass(frozen=True, slots=True)
class UserRemoval:
    """Per-user outcome of a remove user configuration request (10.17.5)."""

    primary_id: str
    """(M) The user's MC service ID in the primary system."""
    result: Result
    """(M) Whether the partner withdrew the user's migration configuration."""
    partner_id: str | None = None
    """(O) The partner-assigned MC service ID that was withdrawn."""

    def __post_init__(self) -> None:
        _check_uri("primary_id", self.primary_id, "user removal", mandatory=True)
        _require(self, "result", "user removal")
        _check_uri("partner_id", self.partner_id, "user removal", mandatory=False)


def _check_unique_primary_ids(users: tuple[UserAssignment, ...] | tuple[UserRemoval, ...]) -> None:
    ids = [u.primary_id for u in users]
    if len(set(ids)) != len(ids):
        raise InvalidIE("users", "gives an outcome for the same user twice")


def _check_user_list(ie: str, users: tuple[str, ...], where: str) -> None:
    if not users:
        raise MissingIE(ie, where)
    for user in users:
        _check_uri(ie, user, where, mandatory=True)
    if len(set(users)) != len(users):
        raise InvalidIE(ie, "lists a user twice")


@dataclass(frozen=True, slots=True)
class AddUserConfigurationRequest(InformationFlow):
    """Add user configuration request, 10.17.5.2 (primary -> partner).

    Asks the partner to accept the listed primary-system users for migration.
    """

    FLOW: ClassVar[str] = "add-user-configuration-request"
    CLAUSE: ClassVar[str] = "10.17.5.2"

    transaction_id: str
    """Project IE: the transaction id, echoed by the response."""
    requester: Party
    """(M/O) MC service ID and functional alias of the requesting primary-system user."""
    users: tuple[str, ...]
    """(M) MC service IDs, in the primary system, of the users to authorise for migration."""
    target: Addressee | None = None
    """(O) Partner-system user or functional alias to decide; absent: the partner's policy."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "requester", "10.17.5.2 step 1")
        _check_user_list("users", self.users, "10.17.5.2: the users to add for migration")


@dataclass(frozen=True, slots=True)
class AddUserConfigurationResponse(InformationFlow):
    """Add user configuration response, 10.17.5.2 (partner -> primary).

    Carries per user the partner-assigned MC service ID and profile (10.17.7.1).
    """

    FLOW: ClassVar[str] = "add-user-configuration-response"
    CLAUSE: ClassVar[str] = "10.17.5.2"

    transaction_id: str
    """Project IE: the transaction id of the request this answers."""
    handler: Party
    """(M/O) The partner-system user (or ACMS) who handled the request."""
    target: Addressee
    """(M, NOTE) The primary-system user who is the target of the response."""
    result: Result
    """(M) The overall outcome."""
    users: tuple[UserAssignment, ...] = ()
    """Per-user outcome (one entry per requested user when the request was assessed)."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "handler", "add user configuration response")
        _require(self, "target", "add user configuration response")
        _require(self, "result", "add user configuration response")
        _check_unique_primary_ids(self.users)


@dataclass(frozen=True, slots=True)
class RemoveUserConfigurationRequest(InformationFlow):
    """Remove user configuration request, 10.17.5 (primary -> partner)."""

    FLOW: ClassVar[str] = "remove-user-configuration-request"
    CLAUSE: ClassVar[str] = "10.17.5"

    transaction_id: str
    """Project IE: the transaction id, echoed by the response."""
    requester: Party
    """(M/O) MC service ID and functional alias of the requesting primary-system user."""
    users: tuple[str, ...]
    """(M) MC service IDs, in the primary system, of the users to withdraw from migration."""
    target: Addressee | None = None
    """(O) Partner-system user or functional alias to decide; absent: the partner's policy."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "requester", "10.17.5 remove")
        _check_user_list("users", self.users, "10.17.5: the users to remove from migration")


@dataclass(frozen=True, slots=True)
class RemoveUserConfigurationResponse(InformationFlow):
    """Remove user configuration response, 10.17.5 (partner -> primary)."""

    FLOW: ClassVar[str] = "remove-user-configuration-response"
    CLAUSE: ClassVar[str] = "10.17.5"

    transaction_id: str
    """Project IE: the transaction id of the request this answers."""
    handler: Party
    """(M/O) The partner-system user (or ACMS) who handled the request."""
    target: Addressee
    """(M, NOTE) The primary-system user who is the target of the response."""
    result: Result
    """(M) The overall outcome."""
    users: tuple[UserRemoval, ...] = ()
    """Per-user outcome."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "handler", "remove user configuration response")
        _require(self, "target", "remove user configuration response")
        _require(self, "result", "remove user configuration response")
        _check_unique_primary_ids(self.users)


# --------------------------------------------------------------------------- group-related ACM
# TS 23.280 10.17.4.  Only the group membership update request table and the first rows of its
# response were recovered; the rest of both procedures' flows is decided in docs/decisions.md
# ("Group-related ACM"), by the generic ACM pattern that 10.17.5 and 10.17.7 share.


class GroupOperation(StrEnum):
    """Operation (M) of a group membership update request: add to, or delete from, the group."""

    ADD = "add"
    DELETE = "delete"


class Urgency(StrEnum):
    """Urgency (O) of a group membership update request: the values of the MCPTT
    ``urgency-ind`` (TS 24.379 Annex F.1), the only MC urgency scale."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


def _check_operation(operation: GroupOperation, where: str) -> None:
    if not operation:
        raise MissingIE("operation", where)
    if operation not in GroupOperation.__members__.values():
        raise InvalidIE("operation", f"{operation!r}: expected add or delete")


def _check_response_target(target: Addressee | None, where: str) -> None:
    # table 10.17.2.5 (group membership update response) row 3: the primary user's MC service
    # ID is M there, not O + NOTE as in 10.17.2.16; decided the same for 10.17.4.2.2
    if target is not None and target.mc_service_id is None:
        raise MissingIE("target mc_service_id", where)


@dataclass(frozen=True, slots=True)
class GroupMembershipUpdateRequest(InformationFlow):
    """Group membership update request, TS 23.280 10.17.2 (table recovered; clause number not),
    10.17.4.  Primary ACMC -> primary ACMS -> partner ACMS -> partner ACMC.

    The primary system, home of the MC service group, asks the partner to add its users to the
    group or delete them from it.
    """

    FLOW: ClassVar[str] = "group-membership-update-request"
    CLAUSE: ClassVar[str] = "10.17.4"

    transaction_id: str
    """Project IE: the transaction id, echoed by every flow that answers this one."""
    requester: Party
    """Rows 1-2: MC service ID (M) and functional alias (O) of the requesting primary user."""
    target: Addressee
    """Rows 3-4: MC service ID / functional alias (O, NOTE: one must be present) of the
    partner-system user to whom the update is sent."""
    group_id: str
    """Row 5 (M): the MC service group ID."""
    users: tuple[str, ...]
    """Row 6 (M): MC service ID list, the users affected by the operation."""
    operation: GroupOperation
    """Row 7 (M): add to, or delete from, the group."""
    urgency: Urgency | None = None
    """Row 8 (O): operational urgency of the request."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "requester", "group membership update request rows 1-2")
        _require(self, "target", "group membership update request rows 3-4")
        _check_uri("group_id", self.group_id, "group membership update request row 5",
                   mandatory=True)
        _check_user_list("users", self.users, "group membership update request row 6")
        _check_operation(self.operation, "group membership update request row 7")
        if self.urgency is not None and self.urgency not in Urgency.__members__.values():
            raise InvalidIE("urgency", f"{self.urgency!r}: expected low, normal or high")


@dataclass(frozen=True, slots=True)
class GroupMembershipUpdateResponse(InformationFlow):
    """Group membership update response, TS 23.280 10.17.2 (first rows recovered), 10.17.4.
    Partner ACMC -> partner ACMS -> primary ACMS -> primary ACMC.

    Rows after the third were not recovered: the group, operation and users are echoed and a
    Result added (docs/decisions.md "Group-related ACM").
    """

    FLOW: ClassVar[str] = "group-membership-update-response"
    CLAUSE: ClassVar[str] = "10.17.4"

    transaction_id: str
    """Project IE: the transaction id of the request this answers."""
    handler: Party
    """Rows 1-2: MC service ID (M) and functional alias (O) of the partner-system user (or the
    ACMS, under automatic handling) who handled the update."""
    target: Addressee
    """Row 3 (M): the authorised primary-system user to whom the response is addressed (its
    MC service ID is mandatory), and that user's functional alias (decision)."""
    group_id: str
    """(M, decision) The MC service group ID of the request."""
    operation: GroupOperation
    """(M, decision) The operation of the request."""
    users: tuple[str, ...]
    """(M, decision) The MC service ID list of the request."""
    result: Result
    """(M, decision) The outcome: ``success`` means the partner applied the operation."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "handler", "group membership update response rows 1-2")
        _require(self, "target", "group membership update response row 3")
        _check_response_target(self.target, "group membership update response row 3")
        _check_uri("group_id", self.group_id, "group membership update response",
                   mandatory=True)
        _check_operation(self.operation, "group membership update response")
        _check_user_list("users", self.users, "group membership update response")
        _require(self, "result", "group membership update response")


@dataclass(frozen=True, slots=True)
class InterconnectionGroupProvisionRequest(InformationFlow):
    """Interconnection group identity provision request, TS 23.280 10.17.4.2.2 step 1 (no
    table recovered).  Primary ACMC -> primary ACMS -> partner ACMS -> partner ACMC.

    The primary system, home of interconnection MC service groups, gives their identities to
    the partner system.
    """

    FLOW: ClassVar[str] = "interconnection-group-provision-request"
    CLAUSE: ClassVar[str] = "10.17.4.2.2"

    transaction_id: str
    """Project IE: the transaction id, echoed by every flow that answers this one."""
    requester: Party
    """(M/O, as every ACM request) MC service ID and functional alias of the requesting
    primary user."""
    target: Addressee
    """(M, step 1: "the ID of the selected authorized user in the partner MC system") MC
    service ID or functional alias (one must be present, as the other tables' NOTE)."""
    groups: tuple[str, ...]
    """(M, step 1) The list of interconnection MC service group IDs."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "requester", "interconnection group identity provision request")
        _require(self, "target", "10.17.4.2.2 step 1: the selected partner user")
        _check_user_list("groups", self.groups, "10.17.4.2.2 step 1: interconnection group IDs")


@dataclass(frozen=True, slots=True)
class InterconnectionGroupProvisionResponse(InformationFlow):
    """Interconnection group identity provision response (10.17.4.2.2; its existence and
    content are decisions: docs/decisions.md "Group-related ACM").
    Partner ACMC -> partner ACMS -> primary ACMS -> primary ACMC."""

    FLOW: ClassVar[str] = "interconnection-group-provision-response"
    CLAUSE: ClassVar[str] = "10.17.4.2.2"

    transaction_id: str
    """Project IE: the transaction id of the request this answers."""
    handler: Party
    """(M/O) The partner-system user (or ACMS) who handled the request."""
    target: Addressee
    """(M) The primary-system user the response is addressed to (MC service ID mandatory, as
    in the group membership update response)."""
    groups: tuple[str, ...]
    """(M, decision) The group IDs of the request."""
    result: Result
    """(M) The outcome: ``success`` means the partner now knows these groups."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _require(self, "handler", "interconnection group identity provision response")
        _require(self, "target", "interconnection group identity provision response")
        _check_response_target(self.target, "interconnection group identity provision response")
        _check_user_list("groups", self.groups, "interconnection group identity provision "
                                                "response")
        _require(self, "result", "interconnection group identity provision response")


AcmRequest = (
    ProfileUpdateRequest
    | AddUserConfigurationRequest
    | RemoveUserConfigurationRequest
    | GroupMembershipUpdateRequest
    | InterconnectionGroupProvisionRequest
)
AcmResponse = (
    ProfileUpdateResponse
    | AddUserConfigurationResponse
    | RemoveUserConfigurationResponse
    | GroupMembershipUpdateResponse
    | InterconnectionGroupProvisionResponse
)
"""Requests and responses: what a pending-data download can carry (10.17.3.1)."""


@dataclass(frozen=True, slots=True)
class PendingDataDownloadResponse(InformationFlow):
    """Pending ACM data download response, 10.17.2 (ACMS -> ACMC).

    ACM Data (M): all ACM requests and responses currently pending for the user, each a complete
    flow value (10.17.3.1).
    """

    FLOW: ClassVar[str] = "pending-data-download-response"
    CLAUSE: ClassVar[str] = "10.17.2"

    transaction_id: str
    """Project IE: the transaction id of the download request this answers."""
    user: str
    """(M) MC service ID of the user who asked for the download."""
    items: tuple[AcmRequest | AcmResponse, ...] = ()
    """(M) ACM Data: the requests and responses pending for the user (may be empty), at most
    one page of them (docs/decisions.md "Pending data download pages")."""
    more: bool = False
    """Project IE: more items are pending than this response carries; the ACMC downloads
    again (absent from the document when false)."""

    def __post_init__(self) -> None:
        _check_transaction_id(self.transaction_id)
        _check_uri("user", self.user, "pending ACM data download response", mandatory=True)


AcmFlow = (
    ProfileUpdateRequest
    | ProfileUpdateResponse
    | ProcessIndication
    | PendingDataNotification
    | PendingDataDownloadRequest
    | PendingDataDownloadResponse
    | AddUserConfigurationRequest
    | AddUserConfigurationResponse
    | RemoveUserConfigurationRequest
    | RemoveUserConfigurationResponse
    | GroupMembershipUpdateRequest
    | GroupMembershipUpdateResponse
    | InterconnectionGroupProvisionRequest
    | InterconnectionGroupProvisionResponse
)

FLOW_TYPES: tuple[type[AcmFlow], ...] = (
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    ProcessIndication,
    PendingDataNotification,
    PendingDataDownloadRequest,
    PendingDataDownloadResponse,
    AddUserConfigurationRequest,
    AddUserConfigurationResponse,
    RemoveUserConfigurationRequest,
    RemoveUserConfigurationResponse,
    GroupMembershipUpdateRequest,
    GroupMembershipUpdateResponse,
    InterconnectionGroupProvisionRequest,
    InterconnectionGroupProvisionResponse,
)
"""Every flow class; each one's ``FLOW`` is its XML root element's local name."""

ANSWER_FOR: dict[type[AcmFlow], type[AcmFlow]] = {
    ProfileUpdateRequest: ProfileUpdateResponse,                      # 10.17.2.15 -> .16
    AddUserConfigurationRequest: AddUserConfigurationResponse,        # 10.17.5
    RemoveUserConfigurationRequest: RemoveUserConfigurationResponse,  # 10.17.5
    PendingDataDownloadRequest: PendingDataDownloadResponse,          # 10.17.3.1
    GroupMembershipUpdateRequest: GroupMembershipUpdateResponse,      # 10.17.4
    InterconnectionGroupProvisionRequest: InterconnectionGroupProvisionResponse,  # 10.17.4.2.2
}
"""Each request flow and the flow that finally answers it, echoing its transaction id."""


def _require(value: object, ie: str, where: str) -> None:
    if getattr(value, ie) is None:
        raise MissingIE(ie, where)


# --------------------------------------------------------------------------- trusted building

_T = TypeVar("_T")
_BUILDERS: dict[type, Any] = {}
_NAMES: dict[type, frozenset[str]] = {}


def _builder(cls: type) -> Any:
    """``cls``'s constructor without ``__post_init__``, made once per class as dataclasses
    makes ``__init__``: the same parameters and defaults, each field set as it is given
    (:func:`mcacm_sip.frozen.builder`)."""
    _NAMES[cls] = frozenset(f.name for f in fields(cls))
    build = _BUILDERS[cls] = builder(cls, skip_post_init=True)
    return build


def trusted(cls: type[_T], *values: Any) -> _T:
    """``cls(*values)`` without the checks of ``__post_init__``: for the ACMS core only, and
    only with values that passed those checks already (fields of a flow that was decoded or
    built by the checking constructor, identities of a checked configuration) or that are
    valid by construction (a UUID's hex, an aware UTC time).  Whenever ``cls(*values)``
    succeeds the two are equal (tests/core/test_trusted_flows.py); what it is given is not
    looked at, so anything else goes through the class itself.  Strict on send stands apart:
    the codec's proof of what it writes does not rest on the model (a value it cannot prove
    is schema-checked and refused)."""
    build = _BUILDERS.get(cls) or _builder(cls)
    obj: _T = build(*values)
    return obj


def trusted_replace(value: _T, **changes: Any) -> _T:
    """``dataclasses.replace(value, **changes)`` as :func:`trusted` builds it: the other
    fields are copied from ``value`` (checked when it was made), the changed ones must be
    valid already (same rule as :func:`trusted`)."""
    cls = type(value)
    build = _BUILDERS.get(cls) or _builder(cls)
    names = _NAMES[cls]
    if not changes.keys() <= names:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(changes.keys() - names))}")
    obj: _T = build(**{n: changes[n] if n in changes else getattr(value, n) for n in names})
    return obj
