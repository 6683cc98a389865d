"""The SIP layer on asyncio: the endpoint (sockets, connections, the transaction timer) and
the usages' services, around the sans-I/O protocol of :mod:`mcacm_sip.sip`."""

from .endpoint import (
    FinalResponse,
    Handler,
    IncomingRequest,
    Listen,
    Locator,
    MessageTrace,
    OutgoingRequest,
    SipEndpoint,
    TracedMessage,
    is_ip,
)

__all__ = [
    "FinalResponse",
    "Handler",
    "IncomingRequest",
    "Listen",
    "Locator",
    "MessageTrace",
    "OutgoingRequest",
    "SipEndpoint",
    "TracedMessage",
    "is_ip",
]
