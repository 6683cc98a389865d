"""One realistic value per ACM flow, and the writer of ``examples/flows/``.

The documents in ``examples/flows/`` are ``encode(value, pretty=True)`` of these values; a test
holds the files equal to this output so they never drift.  Two systems: the primary
``mcptt.primary.example`` and the partner ``mcptt.partner.example``; Alice migrates and gets
the partner-assigned ``sip:p-alice@mcptt.partner.example``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mcacm_sip.acm import codec
from mcacm_sip.acm import model as m

__all__ = ["EXAMPLE_PROFILE_XML", "example_flows", "write_examples"]

PRIMARY_ACMS = "sip:acms@mcptt.primary.example"
PARTNER_ACMS = "sip:acms@mcptt.partner.example"
ADMIN = "sip:admin-carol@mcptt.primary.example"
ADMIN_FA = "sip:fa-config-officer@mcptt.primary.example"
PARTNER_DISPATCHER = "sip:dave@mcptt.partner.example"
PARTNER_FA = "sip:fa-dispatcher@mcptt.partner.example"
INTEROP_GROUP = "sip:grp-interop-1@mcptt.primary.example"

EXAMPLE_PROFILE_XML = """\
<mcptt-user-profile xmlns="urn:3gpp:mcptt:user-profile:1.0" \
xmlns:cp="urn:ietf:params:xml:ns:common-policy" \
XUI-URI="sip:p-alice@mcptt.partner.example" user-profile-index="2">
  <Name xml:lang="en">Alice Martin (migrated)</Name>
  <Status>true</Status>
  <ProfileName>partner-migration-responder</ProfileName>
  <Common index="1">
    <UserAlias><alias-entry index="1">Alice M.</alias-entry></UserAlias>
    <MCPTTUserID><uri-entry>sip:p-alice@mcptt.partner.example</uri-entry></MCPTTUserID>
    <PrivateCall>
      <PrivateCallList>
        <PrivateCallURI><uri-entry>sip:p-bob@mcptt.partner.example</uri-entry>\
<display-name>Bob (partner)</display-name></PrivateCallURI>
        <PrivateCallURI><uri-entry>sip:dave@mcptt.partner.example</uri-entry>\
<display-name>Dispatch 1</display-name></PrivateCallURI>
      </PrivateCallList>
    </PrivateCall>
    <MCPTT-group-call>
      <MaxSimultaneousCallsN6>2</MaxSimultaneousCallsN6>
      <EmergencyCall><MCPTTGroupInitiation><entry entry-info="DedicatedGroup">\
<uri-entry>sip:grp-emergency@mcptt.partner.example</uri-entry></entry>\
</MCPTTGroupInitiation></EmergencyCall>
      <Priority>5</Priority>
    </MCPTT-group-call>
    <MissionCriticalOrganization>Partner Fire and Rescue</MissionCriticalOrganization>
  </Common>
  <OnNetwork index="1">
    <MCPTTGroupInfo>
      <entry><uri-entry>sip:grp-ops-north@mcptt.partner.example</uri-entry>\
<display-name>Ops North</display-name></entry>
      <entry><uri-entry>sip:grp-interop-1@mcptt.partner.example</uri-entry>\
<display-name>Interop 1</display-name></entry>
    </MCPTTGroupInfo>
    <ImplicitAffiliations>
      <entry><uri-entry>sip:grp-interop-1@mcptt.partner.example</uri-entry></entry>
    </ImplicitAffiliations>
    <MaxAffiliationsN2>8</MaxAffiliationsN2>
    <anyExt>
      <FunctionalAliasList>
        <entry><uri-entry>sip:fa-dispatcher@mcptt.partner.example</uri-entry></entry>
      </FunctionalAliasList>
    </anyExt>
  </OnNetwork>
  <cp:ruleset>
    <cp:rule id="mcptt-user-authorisation">
      <cp:conditions/>
      <cp:actions>
        <allow-private-call>true</allow-private-call>
        <allow-emergency-group-call>true</allow-emergency-group-call>
        <allow-emergency-private-call>false</allow-emergency-private-call>
        <allow-imminent-peril-call>true</allow-imminent-peril-call>
        <allow-activate-emergency-alert>true</allow-activate-emergency-alert>
      </cp:actions>
    </cp:rule>
  </cp:ruleset>
</mcptt-user-profile>
"""
"""A TS 24.484 8.3.2-shaped MCPTT user profile (about 2.4 KB) for Alice on the partner system."""


def example_flows() -> dict[str, m.AcmFlow]:
    """One value per flow, keyed by its FLOW name (the example file's stem)."""
    profile = codec.profile_from_xml(EXAMPLE_PROFILE_XML)
    success = m.Result(m.ResultCode.SUCCESS)
    add_tid = "0b6e2f4c-7d51-4c3e-9a0e-5f2d8c1b7a90"
    update_tid = "6f1c1c9e-3a5e-4d0b-9a43-2b7d8a1e0c55"
    remove_tid = "c2a7d9e1-48b3-4f6a-8e15-93d0b4a6f207"
    group_tid = "5a0e7c3b-91d4-4f2e-b6a8-0c7d3e9f1b24"
    provision_tid = "e4b81f06-2c9a-4d73-a5e0-7f3b6d2c8a19"
    requester = m.Party(ADMIN, ADMIN_FA)
    handler = m.Party(PARTNER_DISPATCHER, PARTNER_FA)
    add_response = m.AddUserConfigurationResponse(
        transaction_id=add_tid,
        handler=handler,
        target=m.Addressee(mc_service_id=ADMIN),
        result=success,
        users=(
            m.UserAssignment(
                primary_id="sip:alice@mcptt.primary.example",
                result=success,
                partner_id="sip:p-alice@mcptt.partner.example",
                profile=profile,
            ),
            m.UserAssignment(
                primary_id="sip:bob@mcptt.primary.example",
                result=m.Result(
                    m.ResultCode.REJECTED_BY_POLICY, "partner accepts at most one migrant per unit"
                ),
            ),
        ),
    )
    update_request = m.ProfileUpdateRequest(
        transaction_id=update_tid,
        requester=requester,
        target=m.Addressee(functional_alias=PARTNER_FA),
        migrated_user_id="sip:p-alice@mcptt.partner.example",
        profile=profile,
        additional_info="Raise group call priority to 5 for the joint exercise.",
    )
    flows: list[m.AcmFlow] = [
        m.AddUserConfigurationRequest(
            transaction_id=add_tid,
            requester=requester,
            users=("sip:alice@mcptt.primary.example", "sip:bob@mcptt.primary.example"),
            target=m.Addressee(functional_alias=PARTNER_FA),
        ),
        add_response,
        update_request,
        m.ProcessIndication(
            transaction_id=update_tid,
            acms=PARTNER_ACMS,
            request=m.ProfileUpdateRequest.FLOW,
            expires=datetime(2030, 5, 17, 18, 0, tzinfo=UTC),
        ),
        m.PendingDataNotification(transaction_id="3d4f9b60-1c2a-4e8b-b7f5-0a9c6e2d1f34",
                                  user=PARTNER_DISPATCHER),
        m.PendingDataDownloadRequest(transaction_id="8e5a0c7b-6d2f-4a91-8c3e-b4f17d9a2e06",
                                     user=PARTNER_DISPATCHER),
        m.PendingDataDownloadResponse(
            transaction_id="8e5a0c7b-6d2f-4a91-8c3e-b4f17d9a2e06",
            user=PARTNER_DISPATCHER,
            items=(update_request,),
        ),
        m.ProfileUpdateResponse(
            transaction_id=update_tid,
            handler=handler,
            target=m.Addressee(mc_service_id=ADMIN, functional_alias=ADMIN_FA),
            migrated_user_id="sip:p-alice@mcptt.partner.example",
            result=success,
        ),
        m.RemoveUserConfigurationRequest(
            transaction_id=remove_tid,
            requester=requester,
            users=("sip:alice@mcptt.primary.example",),
        ),
        m.RemoveUserConfigurationResponse(
            transaction_id=remove_tid,
            handler=m.Party(PARTNER_ACMS),
            target=m.Addressee(mc_service_id=ADMIN),
            result=success,
            users=(m.UserRemoval("sip:alice@mcptt.primary.example", success,
                                 "sip:p-alice@mcptt.partner.example"),),
        ),
        m.GroupMembershipUpdateRequest(
            transaction_id=group_tid,
            requester=requester,
            target=m.Addressee(functional_alias=PARTNER_FA),
            group_id=INTEROP_GROUP,
            users=("sip:erin@mcptt.partner.example", "sip:frank@mcptt.partner.example"),
            operation=m.GroupOperation.ADD,
            urgency=m.Urgency.HIGH,
        ),
        m.GroupMembershipUpdateResponse(
            transaction_id=group_tid,
            handler=handler,
            target=m.Addressee(mc_service_id=ADMIN, functional_alias=ADMIN_FA),
            group_id=INTEROP_GROUP,
            operation=m.GroupOperation.ADD,
            users=("sip:erin@mcptt.partner.example", "sip:frank@mcptt.partner.example"),
            result=success,
        ),
        m.InterconnectionGroupProvisionRequest(
            transaction_id=provision_tid,
            requester=requester,
            target=m.Addressee(functional_alias=PARTNER_FA),
            groups=(INTEROP_GROUP, "sip:grp-interop-2@mcptt.primary.example"),
        ),
        m.InterconnectionGroupProvisionResponse(
            transaction_id=provision_tid,
            handler=m.Party(PARTNER_ACMS),
            target=m.Addressee(mc_service_id=ADMIN),
            groups=(INTEROP_GROUP, "sip:grp-interop-2@mcptt.primary.example"),
            result=m.Result(m.ResultCode.SUCCESS, "known to the partner system"),
        ),
    ]
    return {flow.FLOW: flow for flow in flows}


def example_documents() -> dict[str, bytes]:
    """File name -> document bytes, as ``examples/flows/`` holds them."""
    flows = example_flows()
    return {f"{name}.xml": codec.encode(flow, pretty=True) for name, flow in flows.items()}


def write_examples(directory: Path) -> list[Path]:
    """Write every example document into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in example_documents().items():
        path = directory / name
        path.write_bytes(data)
        written.append(path)
    return written
