"""Mirror every SIP message of a node to a Homer collector as HEPv3 (``[capture] hep =
"udp:HOST:PORT"``; docs/cli.md "Homer / HEP").

:func:`hep3` is the sans-I/O encoder (HEP3 as Homer, heplify and Kamailio's siptrace write it:
the ``HEP3`` magic, the total length, then vendor-0 chunks: IP family and protocol, addresses
and ports, time, protocol type 1 = SIP, capture agent id, optional auth key, the correlation id
and the raw message).  :class:`HepMirror` sends one datagram per message from a non-blocking
UDP socket: a collector that is down or slow costs nothing but the lost copies (a send error
is logged once, then counted).

The correlation id (chunk 0x11) is the ACM procedure's ``X-CID`` (docs/decisions.md
"Scale-out: the procedure header"), which every ACM MESSAGE carries: Homer groups by it, so one
procedure -- request, notification, response, Result, across several Call-IDs -- is one
conversation.  An answer carries no X-CID: it takes the one of the request its Call-ID names.
A message of no procedure (REGISTER, OPTIONS, SUBSCRIBE/NOTIFY) correlates by its Call-ID
(decision: docs/decisions.md "Homer / HEP").
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcacm_sip.core.config import ConfigError, check_keys, get_table, get_typed
from mcacm_sip.runtime.wire import WireSummary, summarise
from mcacm_sip.sip.aio import is_ip

if TYPE_CHECKING:  # base imports this module
    from mcacm_sip.runtime.base import TraceRecord

log = logging.getLogger("mcacm.hep")

PROTO_SIP = 1
_IPPROTO = {"udp": 17, "tcp": 6, "tls": 6}  # HEP has no TLS: the decrypted message, as TCP


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """``[capture]``: the HEP collector (UDP), our capture agent id and its password."""

    hep: tuple[str, int] | None = None
    capture_id: int = 2001
    password: str | None = None


def parse_capture(data: Mapping[str, Any]) -> CaptureSettings:
    """``[capture] hep = "udp:HOST:PORT"``, ``capture_id = 2001``, ``password = "..."``."""
    table = get_table(data, "capture")
    check_keys(table, {"hep", "capture_id", "password"}, "capture.")
    text = get_typed(table, "hep", "capture.", str, "")
    capture_id = get_typed(table, "capture_id", "capture.", int, 2001)
    if not 0 <= capture_id < 2 ** 32:
        raise ConfigError("capture.capture_id", "expected 0 .. 4294967295")
    password = get_typed(table, "password", "capture.", str, "") or None
    if not text:
        return CaptureSettings(None, capture_id, password)
    scheme, _, rest = text.partition(":")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if scheme.lower() != "udp" or not sep or not is_ip(host) or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise ConfigError("capture.hep", f"{text!r}: expected udp:IP:PORT, e.g. "
                                         '"udp:127.0.0.1:9060" (HEP over UDP only)')
    return CaptureSettings((host, int(port)), capture_id, password)


@functools.lru_cache(maxsize=256)
def _packed(host: str, v6: bool) -> bytes:
    """An address as the chunk carries it (an IPv4 end of an IPv6 packet: IPv4-mapped)."""
    ip = ipaddress.ip_address(host)
    if v6 and ip.version == 4:
        ip = ipaddress.IPv6Address(f"::ffff:{ip}")
    return ip.packed


def _chunk(kind: int, payload: bytes) -> bytes:
    return struct.pack("!HHH", 0, kind, 6 + len(payload)) + payload


def hep3(record: TraceRecord, capture_id: int = 2001, password: str | None = None,
         correlation_id: str | None = None) -> bytes:
    """One HEPv3 packet carrying ``record``'s message."""
    v6 = ":" in record.src[0] or ":" in record.dst[0]  # one family per packet
    src_b, dst_b = _packed(record.src[0], v6), _packed(record.dst[0], v6)
    seconds = int(record.time)
    chunks = [
        _chunk(0x01, bytes([10 if v6 else 2])),
        _chunk(0x02, bytes([_IPPROTO.get(record.transport, 17)])),
        _chunk(0x05 if v6 else 0x03, src_b), _chunk(0x06 if v6 else 0x04, dst_b),
        _chunk(0x07, struct.pack("!H", record.src[1])),
        _chunk(0x08, struct.pack("!H", record.dst[1])),
        _chunk(0x09, struct.pack("!I", seconds)),
        _chunk(0x0A, struct.pack("!I", int((record.time - seconds) * 1_000_000))),
        _chunk(0x0B, bytes([PROTO_SIP])),
        _chunk(0x0C, struct.pack("!I", capture_id)),
    ]
    if password:
        chunks.append(_chunk(0x0E, password.encode("utf-8")))
    if correlation_id:
        chunks.append(_chunk(0x11, correlation_id.encode("utf-8")))
    chunks.append(_chunk(0x0F, record.data))
    body = b"".join(chunks)
    return b"HEP3" + struct.pack("!H", 6 + len(body)) + body


class HepMirror:
    """A trace hook sending each message to the collector of ``settings``."""

    def __init__(self, settings: CaptureSettings) -> None:
        assert settings.hep is not None
        self.settings = settings
        host, port = settings.hep
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                   socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._to = (host, port)
        self.sent = 0
        self.lost = 0
        self._procedures: dict[str, str] = {}
        """Call-ID -> X-CID of requests seen, for their answers (the newest 4096 only)."""

    def correlation(self, summary: WireSummary) -> str | None:
        """The X-CID of the message or of the request it answers, else its Call-ID."""
        call_id = summary.call_id
        if summary.procedure is not None:
            if call_id is not None and call_id not in self._procedures:
                self._procedures[call_id] = summary.procedure
                if len(self._procedures) > 4096:
                    del self._procedures[next(iter(self._procedures))]
            return summary.procedure
        if summary.status is not None and call_id is not None:
            return self._procedures.get(call_id, call_id)
        return call_id

    def __call__(self, record: TraceRecord) -> None:
        packet = hep3(record, self.settings.capture_id, self.settings.password,
                      self.correlation(summarise(record.data)))
        try:
            self._sock.sendto(packet, self._to)
            self.sent += 1
        except OSError as exc:  # collector down (ICMP), buffer full, too large: a lost copy
            if not self.lost:
                log.warning("HEP collector udp:%s:%d: %s (further losses are not logged)",
                            *self._to, exc, extra={"event": "hep.lost"})
            self.lost += 1

    def close(self) -> None:
        self._sock.close()


__all__ = ["CaptureSettings", "HepMirror", "hep3", "parse_capture"]
