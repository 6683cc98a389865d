"""SIP layer: non-INVITE transactions over UDP/TCP/TLS (see docs/sip-api.md, docs/sip-layer.md).

This package is the protocol, sans-I/O (no asyncio, socket or ssl: tests/test_layers.py):
messages, headers, URIs, stream framing, the transaction state machines and the registrar,
subscription and publication cores. :mod:`.aio` runs them on asyncio sockets.
"""

from .dialog import Reply
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
    "Limits",
    "Peer",
    "Reply",
    "Request",
    "Response",
    "SipError",
    "SipParseError",
    "SipTimeout",
    "SipTransportError",
    "Timers",
    "TransactionLayer",
    "Transport",
    "build_response",
    "error_response",
    "media_type",
    "new_tag",
    "parse",
]
