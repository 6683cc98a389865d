"""mcacm_sip.pcap: frames with correct lengths and checksums (checked by our own arithmetic and,
when installed, by tshark with checksum validation on), and a reader that finds SIP messages
in UDP datagrams and reassembled TCP streams of captures in several link and file formats."""

from __future__ import annotations

import io
import struct
import subprocess
from pathlib import Path

import pytest
from tools import require_tool

from mcacm_sip.pcap import (
    LINKTYPE_LINUX_SLL,
    OncePerMessage,
    PcapError,
    PcapWriter,
    SipPacket,
    TraceTap,
    _checksum,
    read_sip,
)
from mcacm_sip.runtime import TraceRecord

A4, B4 = ("127.0.0.1", 5070), ("127.0.0.1", 5060)
A6, B6 = ("::1", 40001), ("::1", 5060)


def sip(method: str = "MESSAGE", body: bytes = b"") -> bytes:
    head = (f"{method} sip:acms@partner.example SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nCall-ID: c1@x\r\n"
            f"CSeq: 1 {method}\r\nContent-Type: application/vnd.mcacm-sip.acm+xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


OK = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
      b"Call-ID: c1@x\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n")
BODY = b"<?xml version='1.0'?><profile-update-request>" + b"x" * 3000 + \
    b"</profile-update-request>"


def pcap(write: list[tuple[float, str, tuple[str, int], tuple[str, int], bytes]],
         mss: int = 1460, close: bool = True) -> bytes:
    out = io.BytesIO()
    w = PcapWriter(out, mss=mss)
    for row in write:
        w.write(*row)
    if close:
        w.close_all(100.0)
    return out.getvalue()


def frames(data: bytes) -> list[bytes]:
    at, out = 24, []
    while at < len(data):
        caplen, origlen = struct.unpack("<II", data[at + 8:at + 16])
        assert caplen == origlen
        out.append(data[at + 16:at + 16 + caplen])
        at += 16 + caplen
    return out


# --------------------------------------------------------------------------- writer


def test_udp_ipv4_frame_lengths_and_checksums() -> None:
    data = pcap([(1.5, "udp", A4, B4, sip())])
    assert struct.unpack("<IHHiIII", data[:24]) == (0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    sec, usec = struct.unpack("<II", data[24:32])
    assert (sec, usec) == (1, 500000)
    [frame] = frames(data)
    assert frame[12:14] == b"\x08\x00"
    ip = frame[14:34]
    assert struct.unpack("!H", ip[2:4])[0] == len(frame) - 14  # IPv4 total length
    assert _checksum(ip) == 0  # header checksum verifies
    udp = frame[34:]
    assert struct.unpack("!HHH", udp[:6]) == (5070, 5060, len(udp))
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    assert _checksum(pseudo + udp) == 0  # RFC 768 checksum over the pseudo-header verifies
    assert udp[8:] == sip()


def test_udp_ipv6_checksum_over_the_pseudo_header() -> None:
    [frame] = frames(pcap([(1.0, "udp", A6, B6, sip())]))
    assert frame[12:14] == b"\x86\xdd"
    ip = frame[14:54]
    assert ip[6] == 17 and struct.unpack("!H", ip[4:6])[0] == len(frame) - 54
    udp = frame[54:]
    pseudo = ip[8:40] + struct.pack("!IxxxB", len(udp), 17)
    assert _checksum(pseudo + udp) == 0


def tcp_segments(data: bytes) -> list[tuple[tuple[int, int], int, int, int, bytes]]:
    """(ports, seq, ack, flags, payload) of each IPv4 TCP frame, checksums verified."""
    out = []
    for frame in frames(data):
        ip = frame[14:34]
        assert _checksum(ip) == 0
        seg = frame[34:]
        assert _checksum(ip[12:20] + struct.pack("!BBH", 0, 6, len(seg)) + seg) == 0
        sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", seg[:14])
        out.append(((sport, dport), seq, ack, flags, seg[(off >> 4) * 4:]))
    return out


def test_tcp_handshake_consistent_numbers_mss_segments_and_fin() -> None:
    message = sip(body=BODY)
    segs = tcp_segments(pcap([(1.0, "tcp", A4, B4, message), (1.1, "tcp", B4, A4, OK)],
                             mss=1000))
    flags = [f for _, _, _, f, _ in segs]
    SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
    assert flags[:3] == [SYN, SYN | ACK, ACK]
    data = [s for s in segs if s[4]]
    assert all(len(s[4]) <= 1000 for s in data)
    assert b"".join(s[4] for s in data if s[0] == (5070, 5060)) == message
    assert [s[4] for s in data if s[0] == (5060, 5070)] == [OK]
    assert flags[-3:] == [FIN | ACK, FIN | ACK, ACK]
    assert all(f & PSH for _, _, _, f, p in segs if p)
    # sequence space: each side's next seq is the other's ack (RFC 9293 3.4)
    nxt: dict[tuple[int, int], int] = {}
    for ports, seq, ack, f, payload in segs:
        if ports in nxt:
            assert seq == nxt[ports]
        back = (ports[1], ports[0])
        if f & ACK:
            assert ack == nxt[back]
        nxt[ports] = (seq + len(payload) + bool(f & (SYN | FIN))) & 0xFFFFFFFF


def test_timestamps_never_go_backwards() -> None:
    data = pcap([(5.0, "udp", A4, B4, sip()), (4.0, "udp", B4, A4, OK)])
    times = [struct.unpack("<II", data[at:at + 8]) for at in (24, 24 + 16 + len(frames(data)[0]))]
    assert times[0] == times[1] == (5, 0)


def test_mixed_families_are_refused() -> None:
    with pytest.raises(ValueError, match="mixed"):
        pcap([(1.0, "udp", A4, B6, sip())])


# --------------------------------------------------------------------------- reader


def test_read_back_udp_and_tcp_ipv4_ipv6(tmp_path: Path) -> None:
    big = sip(body=BODY)
    rows = [(1.0, "udp", A4, B4, sip()), (2.0, "tcp", A6, B6, big), (3.0, "tcp", B6, A6, OK)]
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap(rows, mss=536))
    got = list(read_sip(path))
    assert [(p.transport, p.src, p.dst, p.data) for p in got] == [
        ("udp", A4, B4, sip()), ("tcp", A6, B6, big), ("tcp", B6, A6, OK)]
    assert got[0].time == 1.0


def test_several_messages_in_one_segment_and_keepalives() -> None:
    both = sip() + b"\r\n\r\n" + sip("OPTIONS")
    got = list(read_sip(io.BytesIO(pcap([(1.0, "tcp", A4, B4, both)]))))
    assert [p.data for p in got] == [sip(), sip("OPTIONS")]


def _reorder(data: bytes, order: list[int]) -> bytes:
    records, at = [], 24
    while at < len(data):
        caplen = struct.unpack("<I", data[at + 8:at + 12])[0]
        records.append(data[at:at + 16 + caplen])
        at += 16 + caplen
    return data[:24] + b"".join(records[i] for i in order)


def test_out_of_order_and_retransmitted_segments_reassemble_once() -> None:
    data = pcap([(1.0, "tcp", A4, B4, sip(body=BODY))], mss=1000, close=False)
    n = len(frames(data))  # SYN, SYN-ACK, ACK, 4 data segments
    order = [0, 1, 2, 4, 3, 3, 5, 6, 5]  # swap two, repeat two
    assert n == 7
    got = list(read_sip(io.BytesIO(_reorder(data, order))))
    assert [p.data for p in got] == [sip(body=BODY)]


def to_sll(data: bytes) -> bytes:
    """The same capture with Linux cooked (SLL) headers instead of Ethernet."""
    out = bytearray(data[:20] + struct.pack("<I", LINKTYPE_LINUX_SLL))
    for frame in frames(data):
        sll = struct.pack("!HHH8sH", 0, 772, 6, b"", struct.unpack("!H", frame[12:14])[0])
        body = sll + frame[14:]
        out += struct.pack("<IIII", 1, 0, len(body), len(body)) + body
    return bytes(out)


def to_pcapng(data: bytes) -> bytes:
    """The same capture as pcapng (SHB, IDB with if_tsresol 9 = ns, EPBs)."""
    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 9)
                 + struct.pack("<HH", 0, 0))
    for frame in frames(data):
        ticks = 7_250_000_000  # 7.25 s in ns
        out += block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame),
                                    len(frame)) + frame)
    return out


def test_linux_cooked_and_pcapng_captures() -> None:
    data = pcap([(1.0, "udp", A4, B4, sip()), (2.0, "tcp", A6, B6, sip(body=BODY))], mss=700)
    for variant in (to_sll(data), to_pcapng(data)):
        got = list(read_sip(io.BytesIO(variant)))
        assert [(p.transport, p.data) for p in got] == [("udp", sip()), ("tcp", sip(body=BODY))]
    assert next(read_sip(io.BytesIO(to_pcapng(data)))).time == pytest.approx(7.25)


@pytest.mark.parametrize("junk", [b"", b"abc", b"\x00" * 24, b"not a capture at all....."])
def test_not_a_capture_is_a_defined_error(junk: bytes) -> None:
    with pytest.raises(PcapError):
        list(read_sip(io.BytesIO(junk)))


def test_truncated_capture_and_non_sip_traffic_are_skipped() -> None:
    data = pcap([(1.0, "udp", A4, B4, b"\x16\x03\x01 not sip"), (2.0, "udp", A4, B4, sip())])
    assert [p.data for p in read_sip(io.BytesIO(data[:-10]))] == []
    assert [p.data for p in read_sip(io.BytesIO(data))] == [sip()]


# --------------------------------------------------------------------------- trace tap


def rec(direction: str, data: bytes, src: tuple[str, int] = A4,
        dst: tuple[str, int] = B4) -> TraceRecord:
    return TraceRecord(1.0, direction, "udp", src, dst, data)  # type: ignore[arg-type]


def test_each_message_once_although_both_ends_trace_it() -> None:
    new = OncePerMessage()
    seen = [new(r) for r in (
        rec("out", sip()), rec("in", sip()),       # one hop, both ends
        rec("out", sip()), rec("in", sip()),       # a retransmission: a new pair
        rec("in", OK, B4, A4), rec("out", OK, B4, A4),  # receiver traced first
        rec("in", b"from outside"))]               # only one end traced
    assert seen == [True, False, True, False, True, False, True]


def test_trace_tap_writes_a_valid_file_at_every_message() -> None:
    out = io.BytesIO()
    tap = TraceTap(PcapWriter(out))
    tap(rec("out", sip()))
    tap(rec("in", sip()))
    assert tap.written == 1
    assert [p.data for p in read_sip(io.BytesIO(out.getvalue()))] == [sip()]


# --------------------------------------------------------------------------- tshark


def tshark() -> str:
    return require_tool("tshark")


CHECKSUMS = ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
             "-o", "tcp.check_checksum:TRUE"]


def test_tshark_validates_every_checksum_and_finds_no_problem(tmp_path: Path) -> None:
    exe = tshark()
    rows = [(1.0, "udp", A4, B4, sip()), (1.1, "udp", B4, A4, OK),
            (2.0, "tcp", A4, ("127.0.0.1", 5080), sip(body=BODY)),
            (2.1, "tcp", ("127.0.0.1", 5080), A4, OK),
            (3.0, "udp", A6, B6, sip()), (3.1, "tcp", A6, ("::1", 5080), sip(body=BODY))]
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap(rows, mss=1000))
    run = [exe, "-n", "-r", str(path), *CHECKSUMS]
    bad = subprocess.run([*run, "-Y", "_ws.malformed || _ws.expert.severity >= warning"],
                         capture_output=True, text=True, check=True).stdout
    assert bad == ""
    def count(display_filter: str) -> int:
        return len(subprocess.run([*run, "-Y", display_filter], capture_output=True,
                                  text=True, check=True).stdout.splitlines())

    every = len(frames(path.read_bytes()))
    # status 1 = Good: every UDP/TCP checksum, every IPv4 header checksum (IPv6 has none)
    assert count("udp.checksum.status == 1 || tcp.checksum.status == 1") == every
    assert count("ip.checksum.status == 1") == count("ip")
    fields = subprocess.run([*run, "-Y", "sip", "-T", "fields", "-e", "sip.Method",
                             "-e", "sip.Status-Code"],
                            capture_output=True, text=True, check=True).stdout
    assert fields.split() == ["MESSAGE", "200", "MESSAGE", "200", "MESSAGE", "MESSAGE"]


def test_packets_are_values() -> None:
    assert SipPacket(1.0, "udp", A4, B4, b"x") == SipPacket(1.0, "udp", A4, B4, b"x")
