"""SIP layer: non-INVITE transactions over UDP/TCP/TLS (see docs/sip-api.md)."""

from .endpoint import (
    FinalResponse,
    Handler,
    IncomingRequest,
    Listen,
    Locator,
    MessageTrace,
    OutgoingRequest,
    Reply,
    SipEndpoint,
    TracedMessage,
    is_ip,
)
from .errors import SipError, SipParseError, SipTimeout, SipTransportError
from .message import (
    Arrival,
    Limits,
    Request,
    Response,
    build_response,
    error_response,
    media_type,
    new_tag,
    parse,
)
from .transaction import Peer, Timers, TransactionLayer, Transport

__all__ = [
    "Arrival",
    "FinalResponse",
    "Handler",
    "IncomingRequest",
    "Limits",
    "Listen",
    "Locator",
    "MessageTrace",
    "OutgoingRequest",
    "Peer",
    "Reply",
    "Request",
    "Response",
    "SipEndpoint",
    "SipError",
    "SipParseError",
    "SipTimeout",
    "SipTransportError",
    "Timers",
    "TracedMessage",
    "TransactionLayer",
    "Transport",
    "build_response",
    "error_response",
    "is_ip",
    "media_type",
    "new_tag",
    "parse",
]
