"""SIP messages to and from pcap files.

:class:`PcapWriter` turns SIP messages (time, transport, real source and destination address,
raw bytes) into a classic libpcap file of Ethernet frames that Wireshark dissects as if it had
captured them: IPv4 or IPv6, UDP datagrams, or TCP connections with a synthesized three-way
handshake, consistent sequence and acknowledgement numbers, segments of at most one MSS and a
FIN exchange when the connection is closed.  Every length and checksum is correct.

:func:`read_sip` reads any SIP capture (ours or another stack's, classic pcap or pcapng;
Ethernet, Linux cooked SLL/SLL2, raw IP, BSD loopback) and yields the SIP messages of its UDP
datagrams and of its reassembled TCP streams (Content-Length framing, RFC 3261 18.3).

:class:`TraceTap` feeds a writer from the runtime's message trace, writing each message once
although both ends of a loopback hop trace it.
"""

from __future__ import annotations

import ipaddress
import re
import struct
import zlib
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from mcacm_sip.sip.headers import InvalidHeader, read_number
from mcacm_sip.sip.message import read_raw

Address = tuple[str, int]
"""(IP literal without brackets, port)."""
WireTransport = Literal["udp", "tcp"]

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW = 0, 1, 101
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
_PCAP_MAGIC_US, _PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_ETH_IPV4, _ETH_IPV6, _ETH_VLAN = 0x0800, 0x86DD, 0x8100
_PROTO_TCP, _PROTO_UDP = 6, 17
_FIN, _SYN, _PSH, _ACK = 0x01, 0x02, 0x08, 0x10
_SNAPLEN = 262144


class PcapError(ValueError):
    """The file is not a capture we can read (bad magic, truncated header)."""


@dataclass(frozen=True, slots=True)
class SipPacket:
    """One SIP message found in a capture."""

    time: float
    """Capture time (seconds since the epoch) of the frame that completed the message."""
    transport: WireTransport
    src: Address
    dst: Address
    data: bytes


# --------------------------------------------------------------------------- checksums


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum (one's complement of the one's complement sum)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:  # RFC 768 / RFC 793 3.1
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)  # RFC 8200 8.1


def _mac(ip: bytes) -> bytes:
    """A locally administered unicast MAC derived from the IP (stable, distinct per host)."""
    return b"\x02" + struct.pack("!I", zlib.crc32(ip))[:4] + b"\x00"


# --------------------------------------------------------------------------- writer


@dataclass(slots=True)
class _Connection:
    """One synthesized TCP connection, as seen from its client (the side that sent first)."""

    client: Address
    server: Address
    seq: dict[Address, int] = field(default_factory=dict)
    """Next sequence number each end sends."""


class PcapWriter:
    """Writes SIP messages as Ethernet frames to a classic pcap stream (LINKTYPE_ETHERNET).

    Timestamps never go backwards (a message older than the last frame is written at the last
    frame's time).  A TCP connection is identified by its two addresses; the end that sends
    first is its client (the SIP connection opener, RFC 3261 18.1.1).  TLS messages are
    written as the plaintext SIP they carried, over TCP (docs/decisions.md).
    """

    def __init__(self, stream: BinaryIO, *, mss: int = 1460, snaplen: int = _SNAPLEN) -> None:
        self.stream = stream
        self.mss = mss
        self._last = 0.0
        self._ip_id = 0
        self._conns: dict[frozenset[Address], _Connection] = {}
        # pcap file header: magic, version 2.4, thiszone, sigfigs, snaplen, network
        stream.write(struct.pack("<IHHiIII", _PCAP_MAGIC_US, 2, 4, 0, 0, snaplen,
                                 LINKTYPE_ETHERNET))

    # ------------------------------------------------------------------ public

    def write(self, time: float, transport: str, src: Address, dst: Address,
              data: bytes) -> None:
        """One SIP message: a UDP datagram, or TCP segments on its connection (opened with a
        handshake the first time the pair of addresses is seen)."""
        if transport == "udp":
            self._frame(time, src, dst, _PROTO_UDP, self._udp(src, dst, data))
            return
        conn = self._connection(time, src, dst)
        for at in range(0, max(len(data), 1), self.mss):
            self._segment(time, conn, src, _PSH | _ACK, data[at:at + self.mss])

    def close(self, time: float, src: Address, dst: Address) -> None:
        """The TCP connection between ``src`` and ``dst`` closed, ``src`` first: FIN, FIN,
        ACK (RFC 9293 3.6).  Unknown connections are ignored."""
        conn = self._conns.pop(frozenset((src, dst)), None)
        if conn is None:
            return
        self._segment(time, conn, src, _FIN | _ACK, b"")
        self._segment(time, conn, dst, _FIN | _ACK, b"")
        self._segment(time, conn, src, _ACK, b"")

    def close_all(self, time: float) -> None:
        """Close every open TCP connection (the capture ends after the nodes stopped)."""
        for conn in list(self._conns.values()):
            self.close(time, conn.client, conn.server)

    def flush(self) -> None:
        self.stream.flush()

    # ------------------------------------------------------------------ TCP

    def _connection(self, time: float, src: Address, dst: Address) -> _Connection:
        key = frozenset((src, dst))
        conn = self._conns.get(key)
        if conn is None:
            conn = _Connection(src, dst)
            # deterministic initial sequence numbers (a reproducible file)
            conn.seq = {src: zlib.crc32(repr((src, dst)).encode()),
                        dst: zlib.crc32(repr((dst, src)).encode())}
            self._conns[key] = conn
            mss = struct.pack("!BBH", 2, 4, self.mss)  # RFC 9293 3.7.1: MSS option
            self._segment(time, conn, src, _SYN, b"", mss)
            self._segment(time, conn, dst, _SYN | _ACK, b"", mss)
            self._segment(time, conn, src, _ACK, b"")
        return conn

    def _segment(self, time: float, conn: _Connection, src: Address, flags: int,
                 payload: bytes, options: bytes = b"") -> None:
        dst = conn.server if src == conn.client else conn.client
        seq = conn.seq[src]
        ack = conn.seq[dst] if flags & _ACK else 0
        # SYN and FIN take one sequence number each (RFC 9293 3.4)
        conn.seq[src] = (seq + len(payload) + bool(flags & (_SYN | _FIN))) & 0xFFFFFFFF
        offset = (20 + len(options)) // 4
        header = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, offset << 4, flags,
                             65535, 0, 0) + options
        segment = header + payload
        self._frame(time, src, dst, _PROTO_TCP, self._with_checksum(src, dst, _PROTO_TCP,
                                                                     segment, 16))

    # ------------------------------------------------------------------ UDP / IP / Ethernet

    def _udp(self, src: Address, dst: Address, data: bytes) -> bytes:
        datagram = struct.pack("!HHHH", src[1], dst[1], 8 + len(data), 0) + data
        return self._with_checksum(src, dst, _PROTO_UDP, datagram, 6)

    @staticmethod
    def _with_checksum(src: Address, dst: Address, proto: int, packet: bytes,
                       at: int) -> bytes:
        s, d = _ip_bytes(src[0]), _ip_bytes(dst[0])
        value = _checksum(_pseudo_header(s, d, proto, len(packet)) + packet)
        if proto == _PROTO_UDP and value == 0:
            value = 0xFFFF  # RFC 768: a computed zero is sent as all ones
        return packet[:at] + struct.pack("!H", value) + packet[at + 2:]

    def _frame(self, time: float, src: Address, dst: Address, proto: int,
               payload: bytes) -> None:
        s, d = _ip_bytes(src[0]), _ip_bytes(dst[0])
        if len(s) != len(d):
            raise ValueError(f"mixed address families: {src[0]} -> {dst[0]}")
        if len(s) == 4:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            # RFC 791: version/IHL, TOS, total length, id, DF, TTL 64, protocol, checksum
            header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), self._ip_id,
                                 0x4000, 64, proto, 0, s, d)
            header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
            ethertype = _ETH_IPV4
        else:  # RFC 8200 3: no header checksum
            header = struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, 64, s, d)
            ethertype = _ETH_IPV6
        frame = _mac(d) + _mac(s) + struct.pack("!H", ethertype) + header + payload
        time = max(time, self._last)
        self._last = time
        # record header: microsecond timestamp (rounded), captured and original length
        micros = round(time * 1_000_000)
        self.stream.write(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000,
                                      len(frame), len(frame)) + frame)


def _ip_bytes(host: str) -> bytes:
    return ipaddress.ip_address(host.strip("[]")).packed


# --------------------------------------------------------------------------- trace tap


class Traced(Protocol):
    """What :class:`TraceTap` needs of a trace record (the runtime's ``TraceRecord``)."""

    @property
    def time(self) -> float: ...
    @property
    def direction(self) -> Literal["in", "out"]: ...
    @property
    def transport(self) -> str: ...
    @property
    def src(self) -> Address: ...
    @property
    def dst(self) -> Address: ...
    @property
    def data(self) -> bytes: ...


class OncePerMessage:
    """Tells whether a trace record is a message not seen yet.

    When both ends of a hop are traced (nodes in one process, loopback), a message shows up
    as an ``out`` record of its sender and an ``in`` record of its receiver with the same
    addresses and bytes: the second of the pair is not new.  A retransmission is a new pair,
    as a capture would show it.
    """

    def __init__(self) -> None:
        self._unpaired: dict[tuple[str, Address, Address, bytes], deque[str]] = (
            defaultdict(deque))

    def __call__(self, record: Traced) -> bool:
        key = (record.transport, record.src, record.dst, record.data)
        waiting = self._unpaired[key]
        if waiting and waiting[0] != record.direction:
            waiting.popleft()  # the other end of a message already seen
            if not waiting:
                del self._unpaired[key]
            return False
        waiting.append(record.direction)
        return True


class TraceTap:
    """A runtime trace hook writing every SIP message to a :class:`PcapWriter` once."""

    def __init__(self, writer: PcapWriter) -> None:
        self.writer = writer
        self.written = 0
        self._new = OncePerMessage()

    def __call__(self, record: Traced) -> None:
        if not self._new(record):
            return
        self.writer.write(record.time, record.transport, record.src, record.dst, record.data)
        self.written += 1
        self.writer.flush()  # a capture stopped by a signal is still a valid file


# --------------------------------------------------------------------------- reader


def read_sip(source: str | Path | BinaryIO) -> Iterator[SipPacket]:
    """The SIP messages of a capture, in capture order (TCP ones when complete).

    Raises :class:`PcapError` if the file is not a pcap/pcapng capture; frames we cannot
    decode (other protocols, fragments after the first, truncated) are skipped.
    """
    if isinstance(source, str | Path):
        with open(source, "rb") as f:
            yield from read_sip(f)
        return
    streams = _TcpStreams()
    for time, linktype, frame in _frames(source):
        decoded = _decode(linktype, frame)
        if decoded is None:
            continue
        proto, src, dst, payload, tcp = decoded
        if proto == _PROTO_UDP:
            if _looks_like_sip(payload):
                yield SipPacket(time, "udp", src, dst, payload)
        elif tcp is not None:
            for data in streams.feed(src, dst, tcp[0], tcp[1], payload):
                yield SipPacket(time, "tcp", src, dst, data)


def _frames(f: BinaryIO) -> Iterator[tuple[float, int, bytes]]:
    head = f.read(4)
    if len(head) < 4:
        raise PcapError("empty or truncated file")
    if struct.unpack("<I", head)[0] == _PCAPNG_SHB:
        yield from _pcapng_frames(f, head)
        return
    for endian in "<>":
        magic = struct.unpack(endian + "I", head)[0]
        if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            break
    else:
        raise PcapError("not a pcap or pcapng file (bad magic number)")
    rest = f.read(20)
    if len(rest) < 20:
        raise PcapError("truncated pcap file header")
    linktype = struct.unpack(endian + "I", rest[16:20])[0] & 0xFFFF
    scale = 1e-9 if magic == _PCAP_MAGIC_NS else 1e-6
    while len(record := f.read(16)) == 16:
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", record)
        frame = f.read(caplen)
        if len(frame) < caplen:
            return  # truncated last record (capture killed mid-write)
        yield sec + frac * scale, linktype, frame


def _pcapng_frames(f: BinaryIO, head: bytes) -> Iterator[tuple[float, int, bytes]]:
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per tick)
    block_type = _PCAPNG_SHB
    while True:
        length_bytes = f.read(4)
        if len(length_bytes) < 4:
            return
        if block_type == _PCAPNG_SHB:
            bom = f.read(4)
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack(endian + "I", length_bytes)[0]
            f.read(length - 12)
            interfaces = []
        else:
            length = struct.unpack(endian + "I", length_bytes)[0]
            if length < 12:
                raise PcapError("corrupt pcapng block length")
            body = f.read(length - 12)
            f.read(4)
            if block_type == 1 and len(body) >= 8:  # interface description
                interfaces.append((struct.unpack(endian + "H", body[:2])[0],
                                   _if_tsresol(body[8:], endian)))
            elif block_type == 6 and len(body) >= 20:  # enhanced packet
                iface, high, low, caplen = struct.unpack(endian + "IIII", body[:16])
                if iface < len(interfaces):
                    linktype, tick = interfaces[iface]
                    yield ((high << 32) | low) * tick, linktype, body[20:20 + caplen]
            elif block_type == 3 and interfaces and len(body) >= 4:  # simple packet
                yield 0.0, interfaces[0][0], body[4:]
        nxt = f.read(4)
        if len(nxt) < 4:
            return
        block_type = struct.unpack(endian + "I", nxt)[0]


def _if_tsresol(options: bytes, endian: str) -> float:
    """The interface's timestamp unit (option if_tsresol, default microseconds)."""
    at = 0
    while at + 4 <= len(options):
        code, length = struct.unpack(endian + "HH", options[at:at + 4])
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[at + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        at += 4 + (length + 3) // 4 * 4
    return 1e-6


_Decoded = tuple[int, Address, Address, bytes, tuple[int, int] | None]


def _decode(linktype: int, frame: bytes) -> _Decoded | None:
    """Link and network layers -> (protocol, src, dst, transport payload, (seq, flags))."""
    ethertype: int | None
    if linktype == LINKTYPE_ETHERNET:
        ethertype, at = struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else 0, 14
        while ethertype == _ETH_VLAN and len(frame) >= at + 4:  # 802.1Q tags
            ethertype, at = struct.unpack("!H", frame[at + 2:at + 4])[0], at + 4
    elif linktype == LINKTYPE_LINUX_SLL:
        ethertype, at = struct.unpack("!H", frame[14:16])[0] if len(frame) >= 16 else 0, 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        ethertype, at = struct.unpack("!H", frame[0:2])[0] if len(frame) >= 20 else 0, 20
    elif linktype == LINKTYPE_NULL:
        ethertype, at = None, 4
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        ethertype, at = None, 0
    else:
        return None
    packet = frame[at:]
    if not packet:
        return None
    version = packet[0] >> 4
    if ethertype not in (None, _ETH_IPV4, _ETH_IPV6):
        return None
    if version == 4:
        return _ipv4(packet)
    if version == 6:
        return _ipv6(packet)
    return None


def _ipv4(p: bytes) -> _Decoded | None:
    if len(p) < 20:
        return None
    ihl = (p[0] & 0x0F) * 4
    total = struct.unpack("!H", p[2:4])[0]
    if struct.unpack("!H", p[6:8])[0] & 0x1FFF:
        return None  # not the first fragment
    src, dst = str(ipaddress.IPv4Address(p[12:16])), str(ipaddress.IPv4Address(p[16:20]))
    return _transport(p[9], src, dst, p[ihl:total or len(p)])


_IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options


def _ipv6(p: bytes) -> _Decoded | None:
    if len(p) < 40:
        return None
    length, proto = struct.unpack("!HB", p[4:7])
    src, dst = str(ipaddress.IPv6Address(p[8:24])), str(ipaddress.IPv6Address(p[24:40]))
    rest = p[40:40 + length]
    while proto in _IPV6_EXTENSIONS and len(rest) >= 8:
        proto, rest = rest[0], rest[(rest[1] + 1) * 8:]
    return _transport(proto, src, dst, rest)


def _transport(proto: int, src: str, dst: str, seg: bytes) -> _Decoded | None:
    if proto == _PROTO_UDP and len(seg) >= 8:
        sport, dport, length = struct.unpack("!HHH", seg[:6])
        return proto, (src, sport), (dst, dport), seg[8:max(length, 8)], None
    if proto == _PROTO_TCP and len(seg) >= 20:
        sport, dport, seq = struct.unpack("!HHI", seg[:8])
        offset, flags = (seg[12] >> 4) * 4, seg[13]
        return proto, (src, sport), (dst, dport), seg[offset:], (seq, flags)
    return None


_START = re.compile(rb"(?:SIP/2\.0 \d{3}[^\r\n]*|[A-Za-z!%'*+\-.~`_]+ \S+ SIP/2\.0)\r?\n")
_MAX_LENGTH = 1 << 32


def _content_length(head: bytes) -> int:
    """Content-Length of a captured message (RFC 3261 18.3).  Lenient on purpose, any stack's
    capture is read: absent or unreadable is no body; a huge value is capped, so that message
    waits for bytes that never come instead of failing the whole read."""
    value = read_raw(head).header("content-length")
    try:
        return 0 if value is None else read_number("Content-Length", value, _MAX_LENGTH, cap=True)
    except InvalidHeader:
        return 0


def _looks_like_sip(data: bytes) -> bool:
    return _START.match(data) is not None


@dataclass(slots=True)
class _Stream:
    next_seq: int | None = None
    buffer: bytearray = field(default_factory=bytearray)
    early: dict[int, bytes] = field(default_factory=dict)
    """Segments that arrived before a gap was filled (seq -> payload)."""


class _TcpStreams:
    """Per-direction TCP reassembly and SIP framing (RFC 3261 18.3: Content-Length)."""

    def __init__(self) -> None:
        self._streams: dict[tuple[Address, Address], _Stream] = {}

    def feed(self, src: Address, dst: Address, seq: int, flags: int,
             payload: bytes) -> list[bytes]:
        stream = self._streams.setdefault((src, dst), _Stream())
        if flags & _SYN:
            stream.next_seq, stream.buffer, stream.early = (seq + 1) & 0xFFFFFFFF, \
                bytearray(), {}
            return []
        if stream.next_seq is None:  # capture started mid-connection
            stream.next_seq = seq
        if payload:
            stream.early.setdefault(seq, payload)
        # append in-order data; drop retransmitted bytes (RFC 9293 3.10.7.4)
        while True:
            for start, data in list(stream.early.items()):
                skip = (stream.next_seq - start) & 0xFFFFFFFF
                if skip >= len(data) and skip < 0x80000000:
                    del stream.early[start]  # entirely old
                elif skip < len(data):
                    del stream.early[start]
                    stream.buffer += data[skip:]
                    stream.next_seq = (start + len(data)) & 0xFFFFFFFF
                    break
            else:
                break
        messages = list(_split(stream.buffer))
        if flags & _FIN:
            self._streams.pop((src, dst), None)
        return messages


def _split(buffer: bytearray) -> Iterator[bytes]:
    """Take the complete SIP messages off the front of ``buffer``."""
    while True:
        while buffer[:2] == b"\r\n":  # RFC 5626 3.5.1 keep-alives
            del buffer[:2]
        start = _START.search(buffer)
        if start is None:
            if len(buffer) > 65536:  # not SIP (e.g. TLS): do not grow without bound
                del buffer[:-1024]
            return
        if start.start():  # not at a message start: resynchronise on a start line
            del buffer[:start.start()]
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        total = end + 4 + _content_length(bytes(buffer[:end]))
        if len(buffer) < total:
            return
        yield bytes(buffer[:total])
        del buffer[:total]


def write_pcap(path: str | Path, messages: Iterable[tuple[float, str, Address, Address, bytes]],
               *, close_at_end: bool = True) -> int:
    """Write ``messages`` (time, transport, src, dst, data) to ``path``; returns their count.
    With ``close_at_end`` every TCP connection is closed after the last message."""
    count, last = 0, 0.0
    with open(path, "wb") as f:
        writer = PcapWriter(f)
        for time, transport, src, dst, data in messages:
            writer.write(time, transport, src, dst, data)
            count, last = count + 1, max(last, time)
        if close_at_end:
            writer.close_all(last)
    return count


__all__ = ["Address", "OncePerMessage", "PcapError", "PcapWriter", "SipPacket", "TraceTap",
           "read_sip", "write_pcap"]
