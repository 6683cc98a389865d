"""The fuzzing contract, shared by the hypothesis tests (tests/fuzz) and the atheris harnesses
(fuzz/): any input gives a defined error or a valid value -- never another exception.

Each ``check_*`` takes one input, runs it through one target and asserts the contract; it
returns what the target gave (a value or the defined error) so tests can look further.  Any other
exception escapes: for hypothesis a failing example, for atheris a crash.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from mcacm_sip.acm import codec, fa, xmlsafe
from mcacm_sip.acm.errors import AcmError, EncodeError, warning_value
from mcacm_sip.acm.model import AcmFlow
from mcacm_sip.runtime.acms import AcmsNode
from mcacm_sip.runtime.base import SipSettings, TraceRecord
from mcacm_sip.runtime.config import AcmsNodeConfig, FaServerNodeConfig
from mcacm_sip.runtime.fa_server import FaServerNode
from mcacm_sip.runtime.lab import FA_SERVER, LOOPBACK, PARTNER, fa_config, primary_config
from mcacm_sip.sip import Arrival, Peer, Request, Response, SipParseError, Timers, message
from mcacm_sip.sip.aio import Listen
from mcacm_sip.sip.framer import FrameError, StreamFramer
from mcacm_sip.sip.message import (
    DEFAULT_LIMITS,
    build_response,
    error_response,
    own_response,
    parse,
)

INJECTED = "x-injected"
"""Header name the mutations smuggle behind a CR/LF; no answer may ever carry it."""

SIP_ERRORS = frozenset({400, 413, 505})
"""What the SIP parser may ask us to answer (RFC 3261 21.4.1, 21.4.11, 21.5.7)."""
ACM_ERRORS = frozenset({400, 413, 415})
"""What a refused ACM body is answered with (docs/message-layer.md)."""
_CONTROL = frozenset(chr(c) for c in range(32)) | {"\x7f"}


# --------------------------------------------------------------------------- XML


def check_acm_body(data: bytes) -> AcmFlow | AcmError:
    """codec.decode: an ACM flow that encodes back to itself, or an AcmError fit for a header."""
    check_c14n(data)
    check_compiled_reads(data)
    try:
        flow = codec.decode(data, content_type=codec.ACM_CONTENT_TYPE)
    except EncodeError:
        raise  # never raised while decoding: that would be a bug
    except AcmError as err:
        assert err.sip_status in ACM_ERRORS, err
        check_warning(warning_value("acms.example", err.warning_text))
        check_general_decode(data, err)
        return err
    check_general_decode(data, flow)
    # What we accept we can also send: decoding is not looser than encoding.
    assert codec.decode(codec.encode(flow)) == flow
    return flow


def check_general_decode(data: bytes, got: AcmFlow | AcmError) -> None:
    """What decode gave is what the general reader gives (decode without the readers of
    valid documents, codec._FAST_READERS): the same flow, or the same error, path and hint."""
    try:
        want: AcmFlow | AcmError = codec._read(data, codec.from_element, xmlsafe.parse(data))
    except AcmError as err:
        want = err
    if isinstance(got, AcmError):
        assert isinstance(want, AcmError), (got, want)
        assert (type(got), got.message, got.path, got.hint) \
            == (type(want), want.message, want.path, want.hint)
    else:
        assert got == want


def check_c14n(data: bytes) -> None:
    """mcacm_sip/acm/_c14n.c (when built and chosen) on ``data`` the parser accepts: libxml2's
    canonical text of its one user profile element, or None (left to libxml2)."""
    if codec._c_canonical is None:
        return
    try:
        root = xmlsafe.parse(data)
    except AcmError:
        return
    got = codec._c_canonical(data, codec.USER_PROFILE_NS.encode(),
                             codec.USER_PROFILE_ROOT.encode())
    if got is None:
        return
    found = list(root.iter(codec._PROFILE_ROOT_TAG))
    assert len(found) == 1, data
    try:
        want = codec._canonical(found[0])
    except etree.C14NError:
        raise AssertionError(f"libxml2 refuses what the compiled code wrote: {data!r}") from None
    assert got == want, data


def check_compiled_reads(data: bytes) -> None:
    """mcacm_sip/acm/_c14n.c's other readings (when built and chosen): the prolog and the caps'
    marks as xmlsafe's Python code reads them; a schema-valid profile update request's parts
    as codec._tree_parts reads them, or None (left to it)."""
    if xmlsafe._marks is not None:
        assert xmlsafe._marks(data) == (xmlsafe._plain_prolog(data), data.count(b"</"),
                                        data.count(b"=")), data
    if codec._c_request_parts is not None:
        check_request_parts(data, codec._c_request_parts)


def check_request_parts(data: bytes, reader: Callable[[bytes, bytes, bytes, bytes], object]
                        ) -> None:
    """``reader`` (``_c14n.request_parts``) on a schema-valid profile update request: what
    codec._tree_parts reads, or None (left to it); taken only when the profile's first element
    is the user profile's root."""
    try:
        root = xmlsafe.parse(data)
    except AcmError:
        return
    if root.tag != codec._tag("profile-update-request") or not codec.schema().validate(root):
        return
    got = reader(data, codec._ACM_NS_BYTES, codec._PROFILE_NS_BYTES, codec._PROFILE_ROOT_BYTES)
    if got is not None:
        assert got == codec._tree_parts(root), data
        assert root[4][0].tag == codec._PROFILE_ROOT_TAG, data


def check_fa_body(content_type: str, data: bytes) -> fa.FaBodies | AcmError:
    """fa.decode_bodies (PUBLISH / SUBSCRIBE / NOTIFY bodies of the FA server)."""
    try:
        return fa.decode_bodies(content_type, data)
    except AcmError as err:
        assert not isinstance(err, EncodeError), err
        assert err.sip_status in ACM_ERRORS, err
        check_warning(warning_value("fa.example", err.warning_text))
        return err


def check_warning(value: str) -> None:
    """A Warning value we would write: one line, no control character (no header injection)."""
    assert not _CONTROL.intersection(value), repr(value)


# --------------------------------------------------------------------------- SIP parser


def check_sip(
    data: bytes, datagram: bool = True, answers: bool = True
) -> Request | Response | SipParseError:
    """message.parse, and (``answers``) what we would answer: a parsed request gets a
    well-formed response, a refused one its defined error answer (or silence).  The compiled
    header splitting, when built, splits the head as the Python one does."""
    check_c_splitting(data)
    check_own_response(data)
    try:
        msg = parse(data, datagram=datagram)
    except SipParseError as err:
        assert err.status is None or err.status in SIP_ERRORS, err
        if err.status is None:
            assert error_response(data, err) is None
        elif answers:
            answer = error_response(data, err, "mcacm-sip")
            if answer is not None:
                check_answer(answer, err.status)
        return err
    assert msg.call_id and msg.branch is not None and 0 <= msg.cseq < 2**31
    if isinstance(msg, Request) and answers:
        check_answer(build_response(msg, 200, server="mcacm-sip"), 200)
        msg.stamp_source(Arrival("udp", "127.0.0.1", 5060))  # RFC 3261 18.2.1 rewrites the top Via
        check_answer(build_response(msg, 400, headers=(("Warning", '399 h "x"'),)), 400)
    return msg


def check_c_splitting(data: bytes) -> None:
    """mcacm_sip/sip/_cparse.c (when built and chosen) on the head of ``data``: the store, the
    repeated names and the names as received of the pure-Python splitting."""
    if message._c_parse_headers is None:
        return
    end, _ = message.head_end(data)
    head = data[:end] if end >= 0 else data
    first_nl = head.find(b"\n")
    py_repeated: set[str] = set()
    py_original: dict[str, str] = {}
    c_repeated: set[str] = set()
    c_original: dict[str, str] = {}
    want = message._py_parse_headers(head, first_nl, py_repeated, py_original)
    got = message._c_parse_headers(head, first_nl, c_repeated, c_original)
    assert (got, c_repeated, c_original) == (want, py_repeated, py_original), data


def check_own_response(data: bytes) -> None:
    """``own_response`` for a layer that takes any branch and method as its own, sent with the
    sent-by ``data``'s top Via names: ``parse``'s response, or None; the compiled reading (when
    built and chosen) is the Python one."""
    caps = (65536, 256, 1 << 20)
    want = message._py_own_parts(data, *caps)
    if message._c_parse_headers is not None:
        assert message._load_own_parts(compiled=True)(data, *caps) == want, data
    resp = None if want is None else own_response(data, lambda branch, method: want[5])
    if resp is None:
        return
    full = parse(data)
    assert isinstance(full, Response), data

    def seen(msg: Response) -> tuple[object, ...]:
        return (msg.status, msg.reason, msg.store, msg.body, msg.branch, msg.cseq,
                msg.cseq_method, msg.call_id, msg.via, msg.sent_by(), msg.to_tag)

    assert seen(resp) == seen(full), data


def check_answer(data: bytes, status: int | None = None) -> Response | None:
    """An answer we send: one line per header, nothing smuggled in, Content-Length framing
    exactly one message, the status meant.  An answer to a request that parsed is a complete
    response (returned); an error answer to one that did not may lack what the request lacked
    (RFC 3261 8.2.6: we copy what there is), so it is checked line by line only."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert (sep and body == b"") or status == 200, data
    lines = head.split(b"\r\n")
    assert lines[0].startswith(b"SIP/2.0 %d " % status if status else b"SIP/2.0 "), lines[0]
    names = []
    for line in lines[1:]:
        assert b"\n" not in line and b"\r" not in line and b"\x00" not in line, line
        name, colon, _ = line.partition(b":")
        assert colon and name.strip(), line
        names.append(name.strip().lower().decode())
    assert INJECTED not in names, data
    assert names[-1] == "content-length" and lines[-1] == b"Content-Length: %d" % len(body)
    try:
        resp = parse(data, datagram=True)
    except SipParseError:
        assert status in SIP_ERRORS, data  # only error answers may be incomplete
        return None
    assert isinstance(resp, Response), resp
    return resp


def check_stream(
    data: bytes, cuts: list[int], answers: bool = True
) -> list[bytes | FrameError | object]:
    """StreamFramer fed ``data`` in pieces: whole messages, pongs or one final FrameError,
    the same whatever the segmentation, and a buffer that never outgrows the caps."""
    framer = StreamFramer()
    frames: list[bytes | FrameError | object] = []
    bound = DEFAULT_LIMITS.max_header_bytes + DEFAULT_LIMITS.max_body_bytes + 4
    start = 0
    for end in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        piece, start = data[start:max(start, end)], max(start, end)
        frames.extend(framer.feed(piece))
        if frames and isinstance(frames[-1], FrameError):
            break
        assert framer.buffered <= bound + len(piece)
    whole = StreamFramer().feed(data)
    if not (frames and isinstance(frames[-1], FrameError)):
        assert frames == whole, "framing depends on segmentation"
    for frame in frames:
        if isinstance(frame, FrameError):
            assert frame.status is None or frame.status in SIP_ERRORS, frame
        elif isinstance(frame, bytes):
            check_sip(frame, datagram=False, answers=answers)
    return frames


# --------------------------------------------------------------------------- receive path


@dataclass
class Answer:
    """What the node sent back for one input: its responses (raw bytes)."""

    responses: list[bytes]
    messages: int = 1
    """How many messages the input held (a stream's bytes may frame into several)."""


Node = Literal["acms", "fa"]
NODES: tuple[Node, ...] = ("acms", "fa")


class ReceivePath:
    """A running node fed raw bytes through its endpoint's Sink interface, as the UDP protocol
    and the stream framer feed it; its answers are taken from the node's trace.  ``node``:
    the primary ACMS (memory store; what it forwards goes to a local socket that never
    answers) or the partner's FA controlling server (holders in memory: PUBLISH, SUBSCRIBE).

    ``start``, ``feed``/``check`` and ``stop`` run inside one event loop.
    """

    SOURCE = Peer("udp", "127.0.0.1", 9)  # answers go to the discard port: never read

    def __init__(self, node: Node = "acms") -> None:
        self.records: list[TraceRecord] = []
        sip = SipSettings(listens=(Listen("udp", "127.0.0.1", 0),), transport="udp",
                          send_timeout=1.0, timers=Timers(t1=0.05, t2=0.2, t4=0.2),
                          trusted_hosts=LOOPBACK)
        self.node: AcmsNode | FaServerNode = (
            AcmsNode(AcmsNodeConfig(primary_config(None), sip), trace=self.records.append)
            if node == "acms" else
            FaServerNode(FaServerNodeConfig(FA_SERVER, fa_config(), sip),
                         trace=self.records.append))
        self.uri = "sip:acms@primary.example" if node == "acms" else FA_SERVER
        self._blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def start(self) -> None:
        self._blackhole.bind(("127.0.0.1", 0))
        port = self._blackhole.getsockname()[1]
        await self.node.start()
        self.node.set_hops({PARTNER: f"sip:127.0.0.1:{port}"})

    async def stop(self) -> None:
        await self.node.stop()
        self._blackhole.close()

    async def acheck(self, data: bytes, datagram: bool = True) -> Answer:
        """:meth:`check`, then one loop turn so that the sends it started make progress."""
        answer = self.check(data, datagram)
        await asyncio.sleep(0)
        return answer

    def feed(self, data: bytes, datagram: bool = True) -> Answer:
        """One datagram, or a stream's bytes (framed first), into the endpoint."""
        self.records.clear()
        endpoint = self.node.endpoint
        messages = 1
        if datagram:
            endpoint.on_message(data, self.SOURCE, True)
        else:
            frames = StreamFramer().feed(data)
            messages = len(frames)
            for frame in frames:
                if isinstance(frame, bytes):
                    endpoint.on_message(frame, self.SOURCE, False)
                elif isinstance(frame, FrameError):
                    endpoint.on_frame_error(frame, self.SOURCE)
        out = [r.data for r in self.records if r.direction == "out"
               and r.dst == (self.SOURCE.host, self.SOURCE.port)]
        return Answer(out, messages)

    def check(self, data: bytes, datagram: bool = True) -> Answer:
        """The contract of the receive path (RFC 3261 8.2, 18.3): a response is never
        answered; a request that cannot be parsed gets its defined error or nothing; a
        request that parses gets at most one well-formed answer."""
        answer = self.feed(data, datagram)
        assert len(answer.responses) <= answer.messages, answer  # at most one each
        if not datagram:
            return answer  # several frames: each was checked by check_stream
        try:
            msg = parse(data, datagram=True)
        except SipParseError as err:
            if err.status is None:
                assert answer.responses == []
            for resp in answer.responses:
                check_answer(resp, err.status)
            return answer
        if isinstance(msg, Response):
            assert answer.responses == [], "a response is never answered (RFC 3261 8.1.3)"
            return answer
        for resp in answer.responses:
            got = check_answer(resp)
            # the answer of this request's transaction: a retransmission (same branch, RFC
            # 3261 17.2.3) gets the response already sent, whatever else it changed
            assert got is not None and got.branch == msg.branch, (got, msg)
            assert got.cseq_method == msg.method, (got, msg)
        return answer
