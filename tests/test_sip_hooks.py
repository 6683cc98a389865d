"""SipEndpoint hooks for the runtime (docs/sip-api-requests.md 2 and 3): the message trace
with the real local address, and the ``locate`` next-hop hook."""

from __future__ import annotations

import asyncio
import time

import pytest

from mcacm_sip.sip import Peer, Reply, SipTransportError, Transport
from mcacm_sip.sip.aio import IncomingRequest, Listen, OutgoingRequest, SipEndpoint, TracedMessage


def ok(req: IncomingRequest) -> Reply:
    return req.reply(200)


async def pair(
    transport: Transport, client_trace: list[TracedMessage], server_trace: list[TracedMessage]
) -> tuple[SipEndpoint, SipEndpoint]:
    server = SipEndpoint([Listen(transport, "127.0.0.1")], trace=server_trace.append)
    server.serve("MESSAGE", ok)
    # the client listens too: its listening port must NOT be what an outbound TCP
    # connection reports
    client = SipEndpoint([Listen(transport, "127.0.0.1")], trace=client_trace.append)
    await server.start()
    await client.start()
    return server, client


def test_tcp_exchange_is_traced_with_the_connections_real_ephemeral_port() -> None:
    client_trace: list[TracedMessage] = []
    server_trace: list[TracedMessage] = []

    async def main() -> None:
        server, client = await pair("tcp", client_trace, server_trace)
        try:
            host, port = server.local_address("tcp")
            before = time.time()
            final = await client.send(client.new_request(
                "MESSAGE", f"sip:s@{host}:{port};transport=tcp", from_uri="sip:c@x",
                to_uri="sip:s@x", body=b"hello", content_type="text/plain"))
            after = time.time()
            assert final.status == 200
            # the server saw the connection's source port: the ephemeral one, not a listener's
            conn_port = server_trace[0].remote.port
            assert conn_port != client.local_address("tcp")[1]

            assert [(m.direction, m.data.split(b" ", 1)[0]) for m in client_trace] == [
                ("out", b"MESSAGE"), ("in", b"SIP/2.0")]
            assert [(m.direction, m.data.split(b" ", 1)[0]) for m in server_trace] == [
                ("in", b"MESSAGE"), ("out", b"SIP/2.0")]
            for m in client_trace:
                assert m.transport == "tcp"
                assert m.local == ("127.0.0.1", conn_port)  # our end of the connection
                assert (m.remote.host, m.remote.port) == (host, port)
                assert m.remote.conn is not None
                assert before <= m.time <= after  # wall clock
            for m in server_trace:
                assert m.local == (host, port)
                assert (m.remote.host, m.remote.port) == ("127.0.0.1", conn_port)
            # raw bytes, exactly as they crossed the wire
            assert client_trace[0].data == server_trace[0].data
            assert client_trace[1].data == server_trace[1].data
            assert client_trace[0].data.endswith(b"\r\n\r\nhello")
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_udp_exchange_is_traced_with_the_sockets_address() -> None:
    client_trace: list[TracedMessage] = []
    server_trace: list[TracedMessage] = []

    async def main() -> None:
        server, client = await pair("udp", client_trace, server_trace)
        try:
            host, port = server.local_address("udp")
            final = await client.send(client.new_request(
                "MESSAGE", f"sip:s@{host}:{port}", from_uri="sip:c@x", to_uri="sip:s@x"))
            assert final.status == 200
            me = client.local_address("udp")
            assert [(m.direction, m.local, (m.remote.host, m.remote.port))
                    for m in client_trace] == [("out", me, (host, port)), ("in", me, (host, port))]
            assert [(m.direction, m.local, (m.remote.host, m.remote.port))
                    for m in server_trace] == [("in", (host, port), me), ("out", (host, port), me)]
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_a_failing_trace_hook_does_not_break_signalling(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    def broken(m: TracedMessage) -> None:
        raise RuntimeError("observer bug")

    async def main() -> None:
        server = SipEndpoint([Listen("udp", "127.0.0.1")], trace=broken)
        server.serve("MESSAGE", ok)
        client = SipEndpoint([Listen("udp", "127.0.0.1")], trace=broken)
        await server.start()
        await client.start()
        try:
            host, port = server.local_address("udp")
            final = await client.send(client.new_request(
                "MESSAGE", f"sip:s@{host}:{port}", from_uri="sip:c@x", to_uri="sip:s@x"))
            assert final.status == 200
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())
    assert "trace hook failed" in caplog.text


def test_unparseable_input_is_traced_too() -> None:
    server_trace: list[TracedMessage] = []

    async def main() -> None:
        server = SipEndpoint([Listen("udp", "127.0.0.1")], trace=server_trace.append)
        await server.start()
        try:
            host, port = server.local_address("udp")
            loop = asyncio.get_running_loop()
            got: asyncio.Future[bytes] = loop.create_future()

            class Probe(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    if not got.done():
                        got.set_result(data)

            dgram, _ = await loop.create_datagram_endpoint(Probe, remote_addr=(host, port))
            garbage = (b"MESSAGE sip:s@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx"
                       b"\r\nCSeq: nonsense\r\n\r\n")
            dgram.sendto(garbage)
            answer = await asyncio.wait_for(got, 5)
            dgram.close()
            assert answer.startswith(b"SIP/2.0 400")
            assert [(m.direction, m.data) for m in server_trace] == [
                ("in", garbage), ("out", answer)]
        finally:
            await server.close()

    asyncio.run(main())


def test_no_trace_by_default() -> None:
    assert SipEndpoint([Listen("udp", "127.0.0.1")]).trace is None


class Hops:
    """A static hop table as a ``locate`` hook, remembering what it was asked."""

    def __init__(self, table: dict[str, Peer]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, uri: str) -> Peer | None:
        self.asked.append(uri)
        return self.table.get(uri)


def test_locate_routes_requests_by_name_without_dns() -> None:
    async def main() -> None:
        server = SipEndpoint([Listen("udp", "127.0.0.1"), Listen("tcp", "127.0.0.1")])
        seen: list[IncomingRequest] = []

        def record(req: IncomingRequest) -> Reply:
            seen.append(req)
            return req.reply(200)

        server.serve("MESSAGE", record)
        await server.start()
        host, port = server.local_address("tcp")
        hops = Hops({"sip:acms@partner.invalid": Peer("tcp", host, port),
                     "sip:proxy.invalid;lr": Peer("udp", *server.local_address("udp"))})
        client = SipEndpoint([Listen("udp", "127.0.0.1")], locate=hops)
        await client.start()
        try:
            def req(uri: str, route: tuple[str, ...] = ()) -> OutgoingRequest:
                return client.new_request("MESSAGE", uri, from_uri="sip:c@x", to_uri=uri,
                                          route=route)

            # by the Request-URI; the hop's transport (tcp) is used
            assert (await client.send(req("sip:acms@partner.invalid"))).status == 200
            # RFC 3261 8.1.2: the first loose Route is the next hop, so it is what is located
            final = await client.send(req("sip:acms@partner.invalid", ("<sip:proxy.invalid;lr>",)))
            assert final.status == 200
            # None: resolved as usual (an IP literal needs no table)
            assert (await client.send(req(f"sip:s@{host}:{port};transport=tcp"))).status == 200
            # `via` wins: the locator is not asked
            asked = len(hops.asked)
            await client.send(req("sip:acms@partner.invalid"), via=Peer("tcp", host, port))
            assert len(hops.asked) == asked
            assert hops.asked[:3] == ["sip:acms@partner.invalid", "sip:proxy.invalid;lr",
                                      f"sip:s@{host}:{port};transport=tcp"]
            assert [r.source.transport for r in seen] == ["tcp", "udp", "tcp", "tcp"]
            assert seen[1].message.uri == "sip:acms@partner.invalid"  # the Request-URI kept
            # RFC 3261 26.2.2: a SIPS URI never goes over a hop without TLS
            hops.table["sips:acms@partner.invalid"] = Peer("tcp", host, port)
            with pytest.raises(SipTransportError):
                await client.send(req("sips:acms@partner.invalid"))
            assert len(seen) == 4
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())
