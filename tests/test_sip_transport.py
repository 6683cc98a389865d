"""Loopback tests of the endpoint over UDP, TCP and TLS (ports chosen by binding port 0)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import socket
import ssl
import tomllib
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from pki_kit import make_pki

from mcacm_sip.sip import Limits, Reply, Response, SipTimeout, SipTransportError, Timers, parse
from mcacm_sip.sip.aio import IncomingRequest, Listen, SipEndpoint
from mcacm_sip.sip.framer import PONG, FrameError, StreamFramer

CORPUS = Path(__file__).parent / "sip" / "corpus"
VERDICTS: dict[str, str] = tomllib.loads((CORPUS / "verdicts.toml").read_text())["verdicts"]
# Framing on a stream differs from a datagram for these (the framer waits or re-synchronises).
DATAGRAM_ONLY = {
    "content_length_larger_than_body",
    "body_longer_than_cl",
    "content_length_not_a_number",
    "binary_garbage",
    "hello_world",
}


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP (the 1300-byte rule reuses the UDP port on TCP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port


class Recorder:
    """A MESSAGE handler that records deliveries."""

    def __init__(self) -> None:
        self.calls: list[IncomingRequest] = []

    def __call__(self, req: IncomingRequest) -> Reply:
        self.calls.append(req)
        return req.reply(200)


def asynctest(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[SipEndpoint, Recorder]]:
    port = free_port()
    ep = SipEndpoint(
        [Listen("udp", "127.0.0.1", port), Listen("tcp", "127.0.0.1", port)],
        limits=Limits(max_body_bytes=4096),
    )
    rec = Recorder()
    ep.serve("MESSAGE", rec, accept=["text/plain", "application/octet-stream"])
    ep.serve("FOO", rec)
    await ep.start()
    try:
        yield ep, rec
    finally:
        await ep.close()


@contextlib.asynccontextmanager
async def serving_client() -> AsyncIterator[tuple[SipEndpoint, Recorder, SipEndpoint]]:
    cli = SipEndpoint([Listen("udp", "127.0.0.1"), Listen("tcp", "127.0.0.1")])
    await cli.start()
    try:
        async with serving() as (ep, rec):
            yield ep, rec, cli
    finally:
        await cli.close()


class UdpProbe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)


PROBE = (
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe{n};rport\r\n"
    b"From: <sip:p@x>;tag=p\r\nTo: <sip:x@x>\r\nCall-ID: probe{n}\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


async def replies_until_probe(queue: asyncio.Queue[bytes]) -> list[int]:
    """Statuses answered before the probe's 200 (the probe bounds the wait, no sleeping).

    Read from the raw status line: an answer to a bad request echoes its bad fields.
    """
    out: list[int] = []
    while True:
        data = await asyncio.wait_for(queue.get(), 5)
        assert data.startswith(b"SIP/2.0 ")
        if b"\r\nCall-ID: probe" in data:
            return out
        out.append(int(data[8:11]))


def check_verdict(name: str, answers: list[int], rec: Recorder, call_id: str | None) -> None:
    verdict = VERDICTS[name]
    if verdict == "accept":
        if name.endswith("response"):
            assert answers == []  # a stray response is dropped
            return
        assert answers == [200]
        assert [c.message.call_id for c in rec.calls] == [call_id]
    elif verdict == "silence":
        assert answers == [] and rec.calls == []
    else:
        assert answers == [int(verdict)] and rec.calls == []


@asynctest
async def test_corpus_over_udp() -> None:
    async with serving() as (ep, rec):
        loop = asyncio.get_running_loop()
        transport, probe = await loop.create_datagram_endpoint(
            UdpProbe, local_addr=("127.0.0.1", 0)
        )
        try:
            for n, name in enumerate(sorted(VERDICTS)):
                rec.calls.clear()
                data = (CORPUS / f"{name}.sip").read_bytes()
                transport.sendto(data, ep.local_address("udp"))
                transport.sendto(PROBE.replace(b"{n}", str(n).encode()), ep.local_address("udp"))
                answers = await replies_until_probe(probe.queue)
                call_id = parse(data).call_id if VERDICTS[name] == "accept" else None
                check_verdict(name, answers, rec, call_id)
        finally:
            transport.close()


async def tcp_exchange(port: int, data: bytes) -> list[int]:
    """Send ``data`` on a new connection, half-close, read every answer until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    frames = StreamFramer().feed(raw)
    assert all(isinstance(f, bytes) and f.startswith(b"SIP/2.0 ") for f in frames)
    return [int(f[8:11]) for f in frames if isinstance(f, bytes)]


@asynctest
async def test_corpus_over_tcp() -> None:
    async with serving() as (ep, rec):
        port = ep.local_address("tcp")[1]
        for name in sorted(set(VERDICTS) - DATAGRAM_ONLY):
            rec.calls.clear()
            data = (CORPUS / f"{name}.sip").read_bytes()
            answers = await tcp_exchange(port, data)
            call_id = parse(data).call_id if VERDICTS[name] == "accept" else None
            check_verdict(name, answers, rec, call_id)


def message(call_id: str, body: bytes, branch: str = "z9hG4bKt") -> bytes:
    return (
        "MESSAGE sip:a@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:9;branch={branch}{call_id}\r\n"
        f"From: <sip:b@x>;tag=1\r\nTo: <sip:a@x>\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@asynctest
async def test_tcp_body_split_across_segments_is_delivered_whole() -> None:
    async with serving() as (ep, rec):
        body = bytes(range(256)) * 12
        data = message("split", body)
        reader, writer = await asyncio.open_connection(*ep.local_address("tcp"))
        cuts = [0, 10, len(data) - len(body) + 5, len(data) - 1, len(data)]
        for start, end in itertools.pairwise(cuts):
            writer.write(data[start:end])  # the last byte completes the message
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"SIP/2.0 200 ")
        assert [c.message.body for c in rec.calls] == [body]
        writer.close()


@asynctest
async def test_tcp_segments_with_partial_writes() -> None:
    async with serving() as (ep, rec):
        body = b"x" * 3000
        data = message("chunks", body)
        reader, writer = await asyncio.open_connection(*ep.local_address("tcp"))
        for i in range(0, len(data), 700):
            writer.write(data[i : i + 700])
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"SIP/2.0 200 ") and [c.message.body for c in rec.calls] == [body]
        writer.close()


@asynctest
async def test_two_messages_in_one_segment_and_a_crlf_ping() -> None:
    async with serving() as (ep, rec):
        answers = await tcp_exchange(
            ep.local_address("tcp")[1], message("one", b"1") + b"\r\n\r\n" + message("two", b"22")
        )
        assert answers == [200, 200]
        assert [(c.message.call_id, c.message.body) for c in rec.calls] == [
            ("one", b"1"),
            ("two", b"22"),
        ]


@asynctest
async def test_crlf_keepalive_gets_a_pong() -> None:
    async with serving() as (ep, _):
        reader, writer = await asyncio.open_connection(*ep.local_address("tcp"))
        writer.write(b"\r\n\r\n")  # RFC 5626 3.5.1
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        writer.close()


@asynctest
async def test_over_cap_body_gets_413_and_the_connection_closes() -> None:
    async with serving() as (ep, rec):
        answers = await tcp_exchange(ep.local_address("tcp")[1], message("big", b"z" * 5000)[:2000])
        assert answers == [413] and rec.calls == []


def test_framer_bounds_a_header_block_without_end() -> None:
    framer = StreamFramer(Limits(max_header_bytes=1000))
    assert framer.feed(b"x" * 999) == []
    out = framer.feed(b"y" * 10)
    # 413 from the lines that did arrive (none here: error_response finds no Via, silence)
    assert len(out) == 1 and isinstance(out[0], FrameError) and out[0].status == 413
    assert out[0].head == b""
    assert StreamFramer().feed(b"\r\n\r\n\r\n") == [PONG]


@asynctest
async def test_message_between_endpoints_udp_and_tcp() -> None:
    async with serving_client() as (ep, rec, client):
        host, port = ep.local_address("udp")
        for uri in (f"sip:acms@{host}:{port}", f"sip:acms@{host}:{port};transport=tcp"):
            req = client.new_request(
                "MESSAGE",
                uri,
                from_uri="sip:c@x",
                to_uri="sip:acms@x",
                body=b"hi",
                content_type="text/plain",
            )
            resp = await client.send(req)
            assert resp.status == 200 and resp.message.to_tag
        assert [c.source.transport for c in rec.calls] == ["udp", "tcp"]
        # RFC 3581: the server saw our real source port and stamped it in the Via it echoed.
        assert rec.calls[0].message.via.param("rport") == str(client.local_address("udp")[1])


@asynctest
async def test_request_over_1300_bytes_switches_to_tcp() -> None:
    async with serving_client() as (ep, rec, client):
        host, port = ep.local_address("udp")
        for size in (100, 2000):
            req = client.new_request(
                "MESSAGE",
                f"sip:acms@{host}:{port}",
                from_uri="sip:c@x",
                to_uri="sip:acms@x",
                body=b"b" * size,
                content_type="text/plain",
            )
            assert (await client.send(req)).status == 200
        forced = client.new_request(
            "MESSAGE",
            f"sip:acms@{host}:{port};transport=udp",
            from_uri="sip:c@x",
            to_uri="sip:acms@x",
            body=b"f" * 2000,
            content_type="text/plain",
        )
        assert (await client.send(forced)).status == 200
        assert [c.source.transport for c in rec.calls] == ["udp", "tcp", "udp"]


@asynctest
async def test_builtin_answers() -> None:
    async with serving_client() as (ep, rec, client):
        host, port = ep.local_address("udp")
        uri = f"sip:acms@{host}:{port}"

        async def status(method: str, **kw: object) -> Response:
            req = client.new_request(method, uri, from_uri="sip:c@x", to_uri="sip:acms@x", **kw)  # type: ignore[arg-type]
            return (await client.send(req)).message

        options = await status("OPTIONS")
        assert options.status == 200 and set(options.headers("allow")) == {
            "FOO",
            "MESSAGE",
            "OPTIONS",
        }
        assert "text/plain" in options.headers("accept")
        refused = await status("SUBSCRIBE")
        assert refused.status == 405 and "MESSAGE" in refused.headers("allow")
        wrong_type = await status("MESSAGE", body=b"<a/>", content_type="application/xml")
        assert wrong_type.status == 415 and set(wrong_type.headers("accept")) == {
            "application/octet-stream",
            "text/plain",
        }
        ext = await status("MESSAGE", headers=[("Require", "foo")])
        assert ext.status == 420 and ext.header("unsupported") == "foo"
        assert rec.calls == []


@asynctest
async def test_handler_failures_and_async_handlers() -> None:
    client = SipEndpoint([Listen("udp", "127.0.0.1")])
    await client.start()
    ep = SipEndpoint([Listen("udp", "127.0.0.1")])

    def broken(req: IncomingRequest) -> Reply:
        raise RuntimeError("boom")

    async def slow(req: IncomingRequest) -> Reply:
        await asyncio.sleep(0)
        return req.reply(202, headers=[("Retry-After", "3")], body=b"ok", content_type="text/plain")

    ep.serve("MESSAGE", broken)
    ep.serve("PUBLISH", slow)
    await ep.start()
    try:
        host, port = ep.local_address("udp")
        for method, expected in (("MESSAGE", 500), ("PUBLISH", 202)):
            req = client.new_request(
                method, f"sip:x@{host}:{port}", from_uri="sip:c@x", to_uri="sip:x@x"
            )
            resp = await client.send(req)
            assert resp.status == expected
        assert resp.message.body == b"ok" and resp.message.header("retry-after") == "3"
    finally:
        await ep.close()
        await client.close()


@asynctest
async def test_a_future_answer_is_sent_when_it_resolves_without_a_task() -> None:
    # a handler may answer with a Future it resolves later (the ACMS does, once the
    # request is stored): its result is the answer, its exception a 500
    client = SipEndpoint([Listen("udp", "127.0.0.1")])
    await client.start()
    ep = SipEndpoint([Listen("udp", "127.0.0.1")])
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[Reply]] = []
    both = asyncio.Event()

    def later(req: IncomingRequest) -> asyncio.Future[Reply]:
        answer: asyncio.Future[Reply] = loop.create_future()
        waiting.append(answer)
        if len(waiting) == 2:
            both.set()
        return answer

    ep.serve("MESSAGE", later)
    await ep.start()
    try:
        host, port = ep.local_address("udp")
        sends = [asyncio.ensure_future(client.send(client.new_request(
            "MESSAGE", f"sip:x@{host}:{port}", from_uri="sip:c@x", to_uri="sip:x@x")))
            for _ in range(2)]
        await asyncio.wait_for(both.wait(), 10)
        assert len(ep._tasks) == 0  # no task per request
        waiting[0].set_result(Reply(202))
        waiting[1].set_exception(RuntimeError("boom"))
        assert [(await s).status for s in sends] == [202, 500]
    finally:
        await ep.close()
        await client.close()


@asynctest
async def test_unanswered_request_times_out_and_nothing_leaks() -> None:
    cli = SipEndpoint([Listen("udp", "127.0.0.1")], timers=Timers(t1=0.01, t2=0.04))
    await cli.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        req = cli.new_request(
            "MESSAGE", f"sip:x@127.0.0.1:{port}", from_uri="sip:c@x", to_uri="sip:x@x"
        )
        with pytest.raises(SipTimeout):
            await cli.send(req)  # Timer F = 64 * 10 ms
        with pytest.raises(SipTimeout):
            await cli.send(req, timeout=0.05)
    assert cli.txn.client_count == 0
    before = asyncio.all_tasks()
    await cli.close()
    assert asyncio.all_tasks() == before


@asynctest
async def test_connect_failure_raises_transport_error() -> None:
    client = SipEndpoint([Listen("udp", "127.0.0.1")])
    await client.start()
    port = free_port()
    req = client.new_request(
        "MESSAGE", f"sip:x@127.0.0.1:{port};transport=tcp", from_uri="sip:c@x", to_uri="sip:x@x"
    )
    with pytest.raises(SipTransportError):
        await client.send(req)
    await client.close()


@asynctest
async def test_concurrent_sends_to_one_address_share_one_connection_in_order() -> None:
    """Sends made while the first connect is still in progress wait for that connection
    instead of opening their own, so they arrive in the order they were made (a forwarded
    process indication must not be overtaken by the final response sent after it)."""
    async with serving() as (ep, rec):
        cli = SipEndpoint([Listen("tcp", "127.0.0.1")])
        await cli.start()
        host, port = ep.local_address("tcp")
        reqs = [cli.new_request("MESSAGE", f"sip:x@{host}:{port};transport=tcp",
                                from_uri="sip:c@x", to_uri="sip:x@x", body=str(n).encode(),
                                content_type="text/plain") for n in range(8)]
        answers = await asyncio.gather(*(cli.send(r) for r in reqs))
        assert [a.status for a in answers] == [200] * 8
        assert [c.message.body for c in rec.calls] == [str(n).encode() for n in range(8)]
        assert len(cli._conns) == 1 and cli._connecting == {}
        await cli.close()


@asynctest
async def test_a_failed_connect_fails_every_send_waiting_for_it() -> None:
    cli = SipEndpoint([Listen("udp", "127.0.0.1")])
    await cli.start()
    port = free_port()
    reqs = [cli.new_request("MESSAGE", f"sip:x@127.0.0.1:{port};transport=tcp",
                            from_uri="sip:c@x", to_uri="sip:x@x") for _ in range(3)]
    outcomes = await asyncio.gather(*(cli.send(r) for r in reqs), return_exceptions=True)
    assert all(isinstance(o, SipTransportError) for o in outcomes), outcomes
    assert cli._connecting == {}
    await cli.close()


@asynctest
async def test_close_leaves_no_task_and_no_connection() -> None:
    async with serving() as (ep, _):
        cli = SipEndpoint([Listen("tcp", "127.0.0.1")])
        await cli.start()
        host, port = ep.local_address("tcp")
        req = cli.new_request(
            "MESSAGE", f"sip:x@{host}:{port};transport=tcp", from_uri="sip:c@x", to_uri="sip:x@x"
        )
        assert (await cli.send(req)).status == 200
        before = asyncio.all_tasks()
        await cli.close()
        assert asyncio.all_tasks() <= before and cli._conns == {}


# -- TLS -------------------------------------------------------------------------------------
@asynctest
async def test_tls_with_mutual_authentication(tmp_path: Path) -> None:
    good = make_pki(tmp_path, "good")
    rogue = make_pki(tmp_path, "rogue")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(good["ca"]))
    server_ctx.load_cert_chain(good["server"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # client certificates required
    srv = SipEndpoint([Listen("tls", "127.0.0.1")], tls_server=server_ctx)
    rec = Recorder()
    srv.serve("MESSAGE", rec)
    await srv.start()

    def client_ctx(pki: dict[str, Path]) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(good["ca"]))
        ctx.load_cert_chain(pki["client"])
        return ctx

    accepted = SipEndpoint([Listen("udp", "127.0.0.1")], tls_client=client_ctx(good))
    rejected = SipEndpoint(
        [Listen("udp", "127.0.0.1")], tls_client=client_ctx(rogue), timers=Timers(t1=0.05)
    )
    await accepted.start()
    await rejected.start()
    try:
        host, port = srv.local_address("tls")
        assert srv.contact("tls", "acms") == f"<sips:acms@{host}:{port}>"
        req = accepted.new_request(
            "MESSAGE",
            f"sips:acms@{host}:{port}",
            from_uri="sips:c@x",
            to_uri="sips:acms@x",
            body=b"secret",
            content_type="text/plain",
        )
        resp = await accepted.send(req)
        assert resp.status == 200 and resp.source.transport == "tls"
        assert [c.message.body for c in rec.calls] == [b"secret"]
        assert rec.calls[0].message.via.transport == "TLS"
        bad = rejected.new_request(
            "MESSAGE",
            f"sip:acms@{host}:{port};transport=tls",
            from_uri="sip:c@x",
            to_uri="sip:acms@x",
        )
        with pytest.raises((SipTransportError, SipTimeout)):
            await rejected.send(bad, timeout=2)
        assert len(rec.calls) == 1
    finally:
        for ep in (accepted, rejected, srv):
            await ep.close()


def _finished_and_first_record_together(host: str, port: int, ctx: ssl.SSLContext,
                                        data: bytes) -> bytes:
    """A TLS client that sends its last handshake flight (TLS 1.3: Certificate, Verify,
    Finished) and its first application record in one write, as a fast client's kernel may;
    returns what the server answered up to the end of its header block."""
    with socket.create_connection((host, port), timeout=5) as sock:
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(inc, out)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if pending := out.read():
                    sock.sendall(pending)
                chunk = sock.recv(65536)
                assert chunk, "the server closed during the handshake"
                inc.write(chunk)
        tls.write(data)
        sock.sendall(out.read())  # the Finished and the SIP request in one segment
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, "the server closed without answering"
            inc.write(chunk)
            with contextlib.suppress(ssl.SSLWantReadError):
                answer += tls.read(65536)
        return answer


@asynctest
async def test_a_request_in_the_same_read_as_the_finished_keeps_its_certificate(
        tmp_path: Path) -> None:
    """TLS 1.3: the client's first SIP record can arrive with its Finished. asyncio's SSL
    protocol then hands it over before the handshake future's callback runs; the request must
    be answered over TLS and carry the verified client certificate (before: the certificate
    read None, so a mutual-TLS peer got 403, and here no answer reached the client)."""
    good = make_pki(tmp_path, "good")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(good["ca"]))
    server_ctx.load_cert_chain(good["server"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    srv = SipEndpoint([Listen("tls", "127.0.0.1")], tls_server=server_ctx)
    rec = Recorder()
    srv.serve("MESSAGE", rec)
    await srv.start()
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(good["ca"]))
    client_ctx.check_hostname = False
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    client_ctx.load_cert_chain(good["client"])
    host, port = srv.local_address("tls")
    request = (f"MESSAGE sip:acms@{host}:{port};transport=tls SIP/2.0\r\n"
               "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-finished-1\r\n"
               "Max-Forwards: 70\r\nFrom: <sip:c@x>;tag=1\r\nTo: <sip:acms@x>\r\n"
               "Call-ID: finished-1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n"
               "Content-Length: 6\r\n\r\nsecret").encode()
    try:
        answer = await asyncio.to_thread(_finished_and_first_record_together, host, port,
                                         client_ctx, request)
        assert answer.startswith(b"SIP/2.0 200")
        arrival = rec.calls[0].message.arrival
        assert arrival is not None and arrival.transport == "tls"
        assert arrival.certificate, "the verified client certificate was lost"
    finally:
        await srv.close()


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="no ::1")
@asynctest
async def test_ipv6_udp_and_tcp() -> None:
    srv = SipEndpoint([Listen("udp", "::1"), Listen("tcp", "::1")])
    rec = Recorder()
    srv.serve("MESSAGE", rec)
    cli = SipEndpoint([Listen("udp", "::1"), Listen("tcp", "::1")])
    await srv.start()
    await cli.start()
    try:
        host, uport = srv.local_address("udp")
        _, tport = srv.local_address("tcp")
        for uri in (f"sip:a@[{host}]:{uport}", f"sip:a@[{host}]:{tport};transport=tcp"):
            req = cli.new_request("MESSAGE", uri, from_uri="sip:c@x", to_uri="sip:a@x")
            assert (await cli.send(req)).status == 200
        assert [c.source.host for c in rec.calls] == ["::1", "::1"]
        assert rec.calls[0].message.via.host == "[::1]"
    finally:
        await cli.close()
        await srv.close()


@asynctest
async def test_routes_loose_and_strict() -> None:
    """RFC 3261 8.1.2 / 12.2.1.1: the next hop is the first loose route or the strict router."""
    async with serving_client() as (ep, rec, client):
        host, port = ep.local_address("udp")
        hop = f"sip:{host}:{port}"
        loose = client.new_request(
            "MESSAGE",
            "sip:far@192.0.2.1:5999",
            from_uri="sip:c@x",
            to_uri="sip:far@x",
            route=[f"<{hop};lr>"],
        )
        assert (await client.send(loose)).status == 200
        strict = client.new_request(
            "MESSAGE",
            "sip:far@192.0.2.1:5999",
            from_uri="sip:c@x",
            to_uri="sip:far@x",
            route=[f"<{hop}>", "<sip:192.0.2.2;lr>"],
        )
        assert strict.uri == hop and strict.strict
        assert strict.route == ("<sip:192.0.2.2;lr>", "<sip:far@192.0.2.1:5999>")
        assert (await client.send(strict)).status == 200
        assert [c.message.uri for c in rec.calls] == ["sip:far@192.0.2.1:5999", hop]
        assert rec.calls[0].message.headers("route") == [f"<{hop};lr>"]


@asynctest
async def test_one_structured_log_record_per_transaction(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcacm.sip")
    async with serving_client() as (ep, _, client):
        host, port = ep.local_address("udp")
        req = client.new_request(
            "MESSAGE",
            f"sip:a@{host}:{port}",
            from_uri="sip:c@x",
            to_uri="sip:a@x",
            body=b"secret-body",
            content_type="text/plain",
        )
        await client.send(req)
    records = [r for r in caplog.records if r.name == "mcacm.sip"]
    assert sorted((r.role, r.method, r.status, r.call_id) for r in records) == [  # type: ignore[attr-defined]
        ("uac", "MESSAGE", 200, req.call_id),
        ("uas", "MESSAGE", 200, req.call_id),
    ]
    assert all(r.transport == "udp" and r.peer for r in records)  # type: ignore[attr-defined]
    assert "secret-body" not in caplog.text


@asynctest
async def test_success_records_at_a_lower_level_failures_stay_info(
        caplog: pytest.LogCaptureFixture) -> None:
    """An application that logs each exchange itself (the ACMS) moves the SIP layer's 2xx
    records to DEBUG; a refused or failed transaction still gets its INFO record."""
    caplog.set_level(logging.INFO, logger="mcacm.sip")
    async with serving_client() as (ep, _, client):
        ep.success_log_level = client.success_log_level = logging.DEBUG
        host, port = ep.local_address("udp")
        for method in ("MESSAGE", "BAR"):  # 200, then 405 (not served)
            await client.send(client.new_request(method, f"sip:a@{host}:{port}",
                                                 from_uri="sip:c@x", to_uri="sip:a@x"))
    records = [r for r in caplog.records if r.name == "mcacm.sip"]
    assert sorted((r.role, r.method, r.status) for r in records) == [  # type: ignore[attr-defined]
        ("uac", "BAR", 405), ("uas", "BAR", 405)]
    assert all(r.levelno == logging.INFO for r in records)



def test_datagrams_report_the_source_address_they_came_from() -> None:
    """Each datagram reaches the endpoint with its own source (host, port); a Peer is kept
    per source address, and a full table is emptied rather than grown."""
    from mcacm_sip.sip import Peer
    from mcacm_sip.sip.aio.transport import UdpProtocol

    got: list[Peer] = []

    class Sink:
        def on_message(self, data: bytes, source: Peer, datagram: bool,
                       local: tuple[str, int] = ("", 0)) -> None:
            got.append(source)

    proto = UdpProtocol(Sink())  # type: ignore[arg-type]
    proto.PEERS = 3
    sources: list[tuple[str | int, ...]] = [("192.0.2.1", 5060), ("192.0.2.1", 5061),
                                            ("::1", 5060, 0, 0), ("192.0.2.1", 5060),
                                            ("192.0.2.9", 5060), ("192.0.2.1", 5060)]
    for addr in sources:
        proto.datagram_received(b"x", addr)
    assert got == [Peer("udp", str(a[0]), int(a[1])) for a in sources]
    assert got[0] is got[3] and len(proto._peers) <= proto.PEERS
