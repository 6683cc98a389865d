"""Behaviour the SIP hot-path optimisations must keep (docs/sip-layer.md, "Load").

- A burst of datagrams queued before the endpoint runs is drained in one wake-up
  (transport.UdpProtocol.DRAIN): every request is answered exactly once, none is lost or doubled.
"""

from __future__ import annotations

import asyncio
import socket

from mcacm_sip.sip import IncomingRequest, Listen, Reply, SipEndpoint, parse


def _message(n: int, port: int) -> bytes:
    body = b"<x/>"
    return (
        f"MESSAGE sip:acms@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-burst-{n};rport\r\n"
        f"From: <sip:sipp@127.0.0.1>;tag=f{n}\r\n"
        f"To: <sip:acms@127.0.0.1>\r\n"
        f"Call-ID: burst-{n}@127.0.0.1\r\n"
        f"CSeq: 1 MESSAGE\r\n"
        f"Content-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _queued_burst() -> None:
    seen: list[str] = []

    def handler(request: IncomingRequest) -> Reply:
        seen.append(request.message.call_id)
        return request.reply(200)

    endpoint = SipEndpoint([Listen("udp", "127.0.0.1", 0)])
    endpoint.serve("MESSAGE", handler)
    await endpoint.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # answers come in a burst
        client.bind(("127.0.0.1", 0))
        client.settimeout(5)
        port = client.getsockname()[1]
        host, server_port = endpoint.local_address("udp")
        count = 3 * 64 + 5  # several drain batches and a remainder
        # Sent before the loop gets a turn: all of them wait in the socket buffer together,
        # and a retransmission of the first one among them must still be absorbed.
        for n in range(count):
            client.sendto(_message(n, port), (host, server_port))
        client.sendto(_message(0, port), (host, server_port))
        answers: list[bytes] = []
        loop = asyncio.get_running_loop()
        while len(answers) < count + 1:
            answers.append(await loop.run_in_executor(None, client.recv, 65536))
    finally:
        client.close()
        await endpoint.close()
    assert sorted(seen) == sorted(f"burst-{n}@127.0.0.1" for n in range(count))
    responses = [parse(a) for a in answers]
    assert all(getattr(r, "status", None) == 200 for r in responses)
    # the retransmission got the cached response of its transaction, not a second delivery
    assert sorted(r.call_id for r in responses) == sorted(
        [f"burst-{n}@127.0.0.1" for n in range(count)] + ["burst-0@127.0.0.1"]
    )


def test_a_queued_burst_is_answered_once_each() -> None:
    asyncio.run(_queued_burst())
