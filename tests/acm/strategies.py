"""Hypothesis strategies for every ACM flow class (reused by round-trip tests and fuzzing).

Every value drawn is valid for the model, so ``decode(encode(x)) == x`` must hold for it.
"""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

from hypothesis import strategies as st
from lxml import etree

from mcacm_sip.acm import codec
from mcacm_sip.acm import model as m

__all__ = [
    "addressees",
    "flows",
    "free_text",
    "parties",
    "profiles",
    "results",
    "transaction_ids",
    "uris",
]

# Characters str.isprintable() accepts and that are not white space.
_VISIBLE = st.characters(
    blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"),
)
# XML 1.0 characters, including white space that xs:string keeps.
_XML_CHAR = st.characters(blacklist_categories=("Cs", "Cn"), min_codepoint=0x20) | st.sampled_from(
    "\t\n\r"
)

transaction_ids = st.uuids().map(str) | st.text(_VISIBLE, min_size=1, max_size=128)
free_text = st.text(_XML_CHAR, min_size=1, max_size=40)
_labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)

uris = st.one_of(
    st.builds("sip:{}@{}.example".format, _labels, _labels),
    st.builds("tel:+{}".format, st.integers(min_value=1, max_value=10**15)),
    st.builds("{}:{}".format, st.sampled_from(["sips", "urn", "x-acm.1"]),
              st.text(_VISIBLE, min_size=1, max_size=20)),
)

parties = st.builds(m.Party, uris, st.none() | uris)
addressees = st.one_of(
    st.builds(m.Addressee, uris, st.none() | uris),
    st.builds(m.Addressee, st.none(), uris),
)
result_codes = st.sampled_from(list(m.ResultCode)).map(str) | st.from_regex(
    r"x-[a-z0-9][a-z0-9-]{0,15}", fullmatch=True
)
results = st.builds(m.Result, result_codes, st.none() | free_text)
negative_results = st.builds(
    m.Result, result_codes.filter(lambda c: c != m.ResultCode.SUCCESS), st.none() | free_text
)

_PROFILE_CHILDREN = ("Name", "Status", "ProfileName", "Common", "OnNetwork", "OffNetwork")


@st.composite
def profiles(draw: st.DrawFn) -> m.UserProfile:
    """A small MCPTT user profile document with drawn text, attributes and layout."""
    ns = codec.USER_PROFILE_NS
    prefix = draw(st.sampled_from([None, "up"]))
    # lxml-stubs type nsmap keys as str; None is lxml's key for the default namespace
    root = etree.Element(f"{{{ns}}}{codec.USER_PROFILE_ROOT}",
                         nsmap={prefix: ns})  # type: ignore[dict-item]
    root.set("XUI-URI", draw(uris))
    if draw(st.booleans()):
        root.set("user-profile-index", str(draw(st.integers(0, 99))))
    for name in draw(st.lists(st.sampled_from(_PROFILE_CHILDREN), max_size=4)):
        child = etree.SubElement(root, f"{{{ns}}}{name}")
        child.text = draw(st.none() | free_text)
        if draw(st.booleans()):
            entry = etree.SubElement(child, f"{{{ns}}}uri-entry")
            entry.text = draw(uris)
            entry.tail = draw(st.none() | st.sampled_from(["\n  ", " "]))
    return codec.profile_from_xml(etree.tostring(root))


_tid = transaction_ids
_users = st.lists(uris, min_size=1, max_size=4, unique=True).map(tuple)

_assignments = st.one_of(
    st.builds(m.UserAssignment, uris, st.just(m.Result(m.ResultCode.SUCCESS)), uris, profiles()),
    st.builds(m.UserAssignment, uris, negative_results, st.none() | uris,
              st.none() | profiles()),
)
_removals = st.builds(m.UserRemoval, uris, results, st.none() | uris)

_offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-14)),
     timezone(timedelta(hours=14))]
)

_profile_update_requests = st.builds(
    m.ProfileUpdateRequest, _tid, parties, addressees, uris, profiles(), st.none() | free_text
)
_operations = st.sampled_from(list(m.GroupOperation))
_urgencies = st.none() | st.sampled_from(list(m.Urgency))
# response targets: the primary user's MC service ID is mandatory there (10.17.4)
_response_targets = st.builds(m.Addressee, uris, st.none() | uris)
_group_update_requests = st.builds(
    m.GroupMembershipUpdateRequest, _tid, parties, addressees, uris, _users, _operations,
    _urgencies)
_group_update_responses = st.builds(
    m.GroupMembershipUpdateResponse, _tid, parties, _response_targets, uris, _operations,
    _users, results)
_group_provision_requests = st.builds(
    m.InterconnectionGroupProvisionRequest, _tid, parties, addressees, _users)
_group_provision_responses = st.builds(
    m.InterconnectionGroupProvisionResponse, _tid, parties, _response_targets, _users, results)
requests: st.SearchStrategy[m.AcmRequest] = st.one_of(
    _profile_update_requests,
    st.builds(m.AddUserConfigurationRequest, _tid, parties, _users, st.none() | addressees),
    st.builds(m.RemoveUserConfigurationRequest, _tid, parties, _users, st.none() | addressees),
    _group_update_requests,
    _group_provision_requests,
)
responses: st.SearchStrategy[m.AcmResponse] = st.one_of(
    st.builds(m.ProfileUpdateResponse, _tid, parties, addressees, uris, results),
    st.builds(m.AddUserConfigurationResponse, _tid, parties, addressees, results,
              st.lists(_assignments, max_size=3, unique_by=lambda u: u.primary_id).map(tuple)),
    st.builds(m.RemoveUserConfigurationResponse, _tid, parties, addressees, results,
              st.lists(_removals, max_size=3, unique_by=lambda u: u.primary_id).map(tuple)),
    _group_update_responses,
    _group_provision_responses,
)

FLOW_STRATEGIES: dict[type[m.AcmFlow], st.SearchStrategy[m.AcmFlow]] = {
    m.ProfileUpdateRequest: _profile_update_requests,
    m.ProfileUpdateResponse: st.builds(m.ProfileUpdateResponse, _tid, parties, addressees, uris,
                                       results),
    m.ProcessIndication: st.builds(
        m.ProcessIndication, _tid, uris,
        st.sampled_from([c.FLOW for c in m.FLOW_TYPES]) | st.from_regex(
            r"[A-Za-z_][A-Za-z0-9._\-]{0,20}", fullmatch=True),
        st.none() | st.datetimes(timezones=_offsets),
    ),
    m.PendingDataNotification: st.builds(m.PendingDataNotification, _tid, uris),
    m.PendingDataDownloadRequest: st.builds(m.PendingDataDownloadRequest, _tid, uris),
    m.PendingDataDownloadResponse: st.builds(
        m.PendingDataDownloadResponse, _tid, uris,
        st.lists(requests | responses, max_size=3).map(tuple), st.booleans(),
    ),
    m.AddUserConfigurationRequest: st.builds(m.AddUserConfigurationRequest, _tid, parties, _users,
                                             st.none() | addressees),
    m.AddUserConfigurationResponse: st.builds(
        m.AddUserConfigurationResponse, _tid, parties, addressees, results,
        st.lists(_assignments, max_size=3, unique_by=lambda u: u.primary_id).map(tuple)),
    m.RemoveUserConfigurationRequest: st.builds(m.RemoveUserConfigurationRequest, _tid, parties,
                                                _users, st.none() | addressees),
    m.RemoveUserConfigurationResponse: st.builds(
        m.RemoveUserConfigurationResponse, _tid, parties, addressees, results,
        st.lists(_removals, max_size=3, unique_by=lambda u: u.primary_id).map(tuple)),
    m.GroupMembershipUpdateRequest: _group_update_requests,
    m.GroupMembershipUpdateResponse: _group_update_responses,
    m.InterconnectionGroupProvisionRequest: _group_provision_requests,
    m.InterconnectionGroupProvisionResponse: _group_provision_responses,
}
"""One strategy per flow class; every class of model.FLOW_TYPES has one."""

flows: st.SearchStrategy[m.AcmFlow] = st.one_of(*FLOW_STRATEGIES.values())
"""Any ACM flow."""
