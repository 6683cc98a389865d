"""Our side of the interop tests: SipEndpoint-based UAS/UAC helpers (mcacm_sip.sip), and the
first steps of a procedure on our lab nodes (mcacm_sip.runtime.lab)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import Addressee, ProfileUpdateRequest, new_transaction_id
from mcacm_sip.runtime.lab import Lab, profile_xml
from mcacm_sip.sip import Reply
from mcacm_sip.sip.aio import IncomingRequest, Listen, SipEndpoint

from .peers import LOOPBACK

XML_TYPE = "application/vnd.3gpp.mcptt-info+xml"
XML_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0"><mcptt-Params><mcptt-request-uri'
    b' type="Normal"><mcpttURI>sip:fa-1@mcptt.example.com</mcpttURI></mcptt-request-uri>'
    b"</mcptt-Params></mcpttinfo>"
)


@dataclass(frozen=True)
class Seen:
    """One request as our handler saw it."""

    call_id: str
    cseq: int
    body: bytes
    vias: int  # number of Via values: 2 = it crossed one proxy
    transport: str


@dataclass
class MessageSink:
    """A MESSAGE handler (RFC 3428) that records every request it sees and answers 200."""

    seen: list[Seen] = field(default_factory=list)

    def __call__(self, request: IncomingRequest) -> Reply:
        m = request.message
        self.seen.append(Seen(m.call_id, m.cseq, m.body, len(m.headers("Via")),
                              request.source.transport))
        return request.reply(200)

    def call_ids(self) -> list[str]:
        return [s.call_id for s in self.seen]


@contextlib.asynccontextmanager
async def endpoint(*, outbound_proxy: str | None = None) -> AsyncIterator[SipEndpoint]:
    """A started SipEndpoint on 127.0.0.1 (UDP and TCP, ephemeral ports), closed on exit."""
    ep = SipEndpoint([Listen("udp", LOOPBACK, 0), Listen("tcp", LOOPBACK, 0)],
                     outbound_proxy=outbound_proxy)
    await ep.start()
    try:
        yield ep
    finally:
        await ep.close()


# --- the procedure on our lab nodes --------------------------------------------------------------


def update(lab: Lab, migrated: str, target: Addressee) -> ProfileUpdateRequest:
    """ALICE's profile update request (10.17.7.2 step 1) for ``migrated`` to ``target``."""
    return ProfileUpdateRequest(new_transaction_id(), lab.alice.core.me, target, migrated,
                                profile_from_xml(profile_xml("Mike (updated)")), "please")
