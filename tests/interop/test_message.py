"""MESSAGE (RFC 3428) between our SipEndpoint and SIPp, direct and through Kamailio.

Issue #3, "How it is checked": SIPp as UAC and as UAS; Kamailio as a stateful record-routing
proxy in between, lenient and strict about in-dialog routing; a retransmitted request reaches
the application once (RFC 3261 17.2.2).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import pytest

from mcacm_sip.sip.aio import SipEndpoint

from .ours import XML_BODY, XML_TYPE, MessageSink, endpoint
from .peers import LOOPBACK, SippServer, SippTransport, kamailio, run_sipp, sipp_uas

pytestmark = pytest.mark.interop

N = 20
MODES = pytest.mark.parametrize("defines", [(), ("STRICT_INDIALOG",)], ids=["lenient", "strict"])
TRANSPORTS = pytest.mark.parametrize("transport", ["udp", "tcp"])


def _assert_each_once(sink: MessageSink, calls: int) -> None:
    counts = Counter(sink.call_ids())
    assert len(counts) == calls, f"handler saw {len(counts)} distinct calls, want {calls}"
    assert set(counts.values()) == {1}, f"delivered more than once: {counts.most_common(3)}"


async def _sipp_to_us(workdir: Path, transport: SippTransport, proxy: int | None) -> MessageSink:
    sink = MessageSink()
    async with endpoint() as ep:
        ep.serve("MESSAGE", sink)
        run = await asyncio.to_thread(run_sipp, "uac_message.xml", ep.local_address(transport),
                                      workdir, calls=N, rate=200, transport=transport,
                                      proxy=proxy)
    assert run.rc == 0, run.explain()
    assert (run.stats.successful, run.stats.failed) == (N, 0), run.explain()
    _assert_each_once(sink, N)
    assert all(b"<mcpttURI>sip:fa-1@mcptt.example.com</mcpttURI>" in s.body for s in sink.seen)
    assert {s.transport for s in sink.seen} == {transport}
    return sink


async def _us_to_sipp(ep: SipEndpoint, uas: SippServer, transport: SippTransport) -> None:
    param = ";transport=tcp" if transport == "tcp" else ""
    uri = f"sip:acmc@{LOOPBACK}:{uas.port}{param}"

    async def one(i: int) -> tuple[int, str | None]:
        req = ep.new_request("MESSAGE", uri, from_uri=f"sip:acms@{LOOPBACK}", to_uri=uri,
                             body=XML_BODY, content_type=XML_TYPE)
        final = await ep.send(req, timeout=10)
        return final.status, final.message.to_tag

    answers = await asyncio.gather(*(one(i) for i in range(N)))
    assert [status for status, _ in answers] == [200] * N
    # sipp's UAS writes "<pid>SIPpTag01<call number>": one sipp call per MESSAGE, all answered
    tags = {tag for _, tag in answers}
    assert len(tags) == N and all(t and "SIPpTag01" in t for t in tags), tags


# 1. SIPp UAC -> our UAS ---------------------------------------------------------------------


@TRANSPORTS
def test_sipp_uac_to_our_uas(sipp: Path, transport: SippTransport) -> None:
    sink = asyncio.run(_sipp_to_us(sipp, transport, proxy=None))
    assert {s.vias for s in sink.seen} == {1}


# 2. our UAC -> SIPp UAS ---------------------------------------------------------------------


@TRANSPORTS
def test_our_uac_to_sipp_uas(sipp: Path, transport: SippTransport) -> None:
    async def main() -> None:
        async with endpoint() as ep:
            await _us_to_sipp(ep, uas, transport)

    with sipp_uas(sipp, transport=transport) as uas:
        asyncio.run(main())


# 4. through Kamailio (stateful, record-routing), lenient and strict -------------------------


@MODES
@TRANSPORTS
def test_sipp_through_kamailio_to_our_uas(sipp_kamailio: Path, defines: tuple[str, ...],
                                          transport: SippTransport) -> None:
    with kamailio(sipp_kamailio, defines=defines) as proxy:
        sink = asyncio.run(_sipp_to_us(sipp_kamailio, transport, proxy=proxy.port))
    # the proxy added its Via (without a port, as Kamailio writes it) and we answered along it
    assert {s.vias for s in sink.seen} == {2}


@MODES
def test_our_uac_through_kamailio_to_sipp_uas(sipp_kamailio: Path,
                                               defines: tuple[str, ...]) -> None:
    async def main() -> None:
        async with endpoint(outbound_proxy=proxy.uri) as ep:
            await _us_to_sipp(ep, uas, "udp")

    with sipp_uas(sipp_kamailio) as uas, kamailio(sipp_kamailio, defines=defines) as proxy:
        asyncio.run(main())


# 5. a retransmitted request is absorbed by the server transaction ----------------------------


_BLOCK = re.compile(r"message (?:received|sent).*?:\n\n(.*?)(?=\n-{20,}|\Z)", re.S)


def test_retransmitted_message_reaches_handler_once(sipp: Path) -> None:
    calls = 10

    async def main() -> tuple[MessageSink, Path | None, int]:
        sink = MessageSink()
        async with endpoint() as ep:
            ep.serve("MESSAGE", sink)
            run = await asyncio.to_thread(run_sipp, "uac_message_twice.xml",
                                          ep.local_address("udp"), sipp, calls=calls, rate=100,
                                          trace_msg=True)
        assert run.rc == 0, run.explain()
        assert run.stats.successful == calls, run.explain()
        return sink, run.messages, run.rc

    sink, messages, _ = asyncio.run(main())
    # RFC 3261 17.2.2: the copy (same branch) got the cached response; the handler ran once
    _assert_each_once(sink, calls)
    assert messages is not None
    oks: dict[str, list[str]] = {}
    for block in _BLOCK.findall(messages.read_text()):
        if block.startswith("SIP/2.0 200") and re.search(r"^CSeq:\s*1 MESSAGE", block, re.M):
            call_id = re.search(r"^Call-ID:\s*(\S+)", block, re.M | re.I)
            to = re.search(r"^To:.*;tag=([^;\s>]+)", block, re.M | re.I)
            assert call_id and to, block
            oks.setdefault(call_id.group(1), []).append(to.group(1))
    assert len(oks) == calls
    # each call got two 200s, the same response: the same To tag both times
    assert all(len(tags) == 2 and tags[0] == tags[1] for tags in oks.values()), oks
