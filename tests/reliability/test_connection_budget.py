"""Connection exhaustion over real sockets (issue 13 item 3; docs/decisions.md "Connection
budgets"): idle TCP connections and TLS connects that never handshake, from 127.0.0.2..9, fill
every inbound cap; a configured peer (127.0.0.1, privileged) still gets through, the idle ones
are closed by ``handshake_timeout``, and buffered bytes stay within ``max_buffer_bytes``.

``python tests/reliability/test_connection_budget.py [N]`` measures the RSS of a node under N
(default 5 000) hostile connections (RELIABILITY.md "Red team").
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pki_kit import make_pki

from mcacm_sip.runtime.lab import Lab
from mcacm_sip.sip import Limits, SipTransportError
from mcacm_sip.sip.aio import Listen, SipEndpoint

WAIT = 20.0  # upper bound only
HOSTILE = [f"127.0.0.{i}" for i in range(2, 10)]
HOLD = Limits(max_connections=16, max_connections_per_source=4, max_handshakes=4,
              handshake_timeout=60.0, idle_timeout=60.0)
"""Small caps the attackers fill; timeouts long enough that they hold every slot for the
whole test (the peer must get in by eviction, not by waiting)."""


async def hostile(host: str, port: int) -> socket.socket:
    """A connection from ``host`` that never sends a byte (for a TLS port: no handshake)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((host, 0))
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def closed_by_peer(sock: socket.socket) -> bool:
    """Waits until the node closes ``sock`` (EOF or RST); False if it is still open after WAIT."""
    try:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1), WAIT)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return data == b""


async def still_open(sock: socket.socket) -> bool:
    """Whether the node still holds ``sock``: nothing to read, no EOF (one loop turn to see)."""
    await asyncio.sleep(0)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


@asynccontextmanager
async def server(tmp: Path, limits: Limits) -> AsyncIterator[tuple[SipEndpoint, ssl.SSLContext]]:
    """An endpoint on TCP and TLS that trusts 127.0.0.1 (a configured peer's address), and
    the client TLS context a peer uses to reach it."""
    pki = make_pki(tmp, "budget")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server"])
    endpoint = SipEndpoint([Listen("tcp", "127.0.0.1", 0), Listen("tls", "127.0.0.1", 0)],
                           tls_server=context, limits=limits, privileged=("127.0.0.1",))
    await endpoint.start()
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"]))
    try:
        yield endpoint, client
    finally:
        await endpoint.close()


async def options(client_tls: ssl.SSLContext, uri: str) -> int:
    """One OPTIONS from 127.0.0.1 on a fresh endpoint (a fresh connection): its status."""
    peer = SipEndpoint([Listen("udp", "127.0.0.1", 0)], tls_client=client_tls)
    await peer.start()
    try:
        req = peer.new_request("OPTIONS", uri, from_uri="sip:acms@primary.example",
                               to_uri="sip:acms@partner.example")
        return (await peer.send(req, timeout=WAIT)).status
    finally:
        await peer.close()


def test_a_configured_peer_gets_in_while_hostile_connections_fill_every_cap(tmp_path: Path
                                                                             ) -> None:
    async def main() -> None:
        async with server(tmp_path, HOLD) as (endpoint, client_tls):
            tcp = endpoint.local_address("tcp")[1]
            tls = endpoint.local_address("tls")[1]
            # idle TCP (4 kept per source), then TLS connects that never handshake, then more
            flood = [await hostile(h, tcp) for h in HOSTILE[:3] for _ in range(5)]
            flood += [await hostile(h, tls) for h in HOSTILE[4:]]
            flood += [await hostile(h, p) for h in HOSTILE for p in (tcp, tls)]
            kept = [s for s in flood if await still_open(s)]
            assert len(kept) == HOLD.max_connections  # every inbound slot is taken
            # the peer over TCP (the connection cap is full), then over TLS (its connection
            # took the slot the TCP one left, but the handshake cap is full): both answered
            assert await options(client_tls, f"sip:127.0.0.1:{tcp};transport=tcp") == 200
            assert await options(client_tls, f"sips:127.0.0.1:{tls}") == 200
            # each made room by closing one hostile connection, never more
            survivors = [s for s in kept if await still_open(s)]
            assert len(survivors) == HOLD.max_connections - 2
            for s in flood:
                s.close()

    asyncio.run(main())


def test_connections_that_never_speak_are_closed_after_the_handshake_timeout(tmp_path: Path
                                                                           ) -> None:
    """Idle TCP, and a TCP connect to the TLS port that never starts its handshake: both
    closed after ``handshake_timeout`` (before: kept ``idle_timeout``, the TLS one uncounted)."""
    limits = Limits(handshake_timeout=0.3, idle_timeout=600.0)

    async def main() -> None:
        async with server(tmp_path, limits) as (endpoint, _):
            idle_tcp = await hostile(HOSTILE[0], endpoint.local_address("tcp")[1])
            idle_tls = await hostile(HOSTILE[1], endpoint.local_address("tls")[1])
            assert await closed_by_peer(idle_tcp)
            assert await closed_by_peer(idle_tls)
            idle_tcp.close()
            idle_tls.close()

    asyncio.run(main())


def test_handshakes_in_progress_are_counted(tmp_path: Path) -> None:
    """TLS connects beyond ``max_handshakes`` from unprivileged sources are closed at once,
    though the connection cap is far off."""
    limits = Limits(max_handshakes=3, max_connections_per_source=100, handshake_timeout=60.0)

    async def main() -> None:
        async with server(tmp_path, limits) as (endpoint, _):
            port = endpoint.local_address("tls")[1]
            flood = [await hostile(HOSTILE[i % 8], port) for i in range(6)]
            assert [await still_open(s) for s in flood] == [True] * 3 + [False] * 3
            for s in flood:
                s.close()

    asyncio.run(main())


def test_buffered_bytes_have_a_global_budget(tmp_path: Path) -> None:
    """Incomplete messages from unprivileged sources beyond ``max_buffer_bytes`` in total:
    the connection that goes over is closed; what others buffered stays."""
    limits = Limits(max_buffer_bytes=10_000, handshake_timeout=60.0, message_timeout=60.0)
    head = b"MESSAGE sip:x@127.0.0.1 SIP/2.0\r\nX-Pad: " + b"a" * 6000  # header never ends

    async def main() -> None:
        async with server(tmp_path, limits) as (endpoint, client_tls):
            port = endpoint.local_address("tcp")[1]
            loop = asyncio.get_running_loop()
            first, second = await hostile(HOSTILE[0], port), await hostile(HOSTILE[1], port)
            await loop.sock_sendall(first, head)
            assert await still_open(first)
            await loop.sock_sendall(second, head)
            assert await closed_by_peer(second)
            assert await still_open(first)
            # a configured peer is not held to it
            assert await options(client_tls, f"sip:127.0.0.1:{port};transport=tcp") == 200
            first.close()
            second.close()

    asyncio.run(main())


def test_a_peer_that_never_reads_its_answers_is_not_read_either(tmp_path: Path) -> None:
    """20 000 pipelined OPTIONS from a client that never reads: once the answers we hold for it
    pass asyncio's 64 KiB high-water mark we stop reading its requests, so they stay bounded
    (before: all 20 000 were read and answered, 1.4 MB held in our buffer at the end)."""
    request = (b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2:9;branch="
               b"z9hG4bK%d\r\nFrom: <sip:p@x>;tag=p\r\nTo: <sip:x@x>\r\nCall-ID: c%d\r\n"
               b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    total = 20_000

    async def main() -> None:
        async with server(tmp_path, Limits(idle_timeout=60.0)) as (endpoint, _):
            answered = 0

            def count(message: object) -> None:
                nonlocal answered
                answered += 1

            endpoint.trace = count
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            sock.bind((HOSTILE[0], 0))
            await loop.sock_connect(sock, ("127.0.0.1", endpoint.local_address("tcp")[1]))
            sending = asyncio.ensure_future(loop.sock_sendall(
                sock, b"".join(request % (i, i) for i in range(total))))
            async with asyncio.timeout(WAIT):  # until it stops reading us, or answered all
                while not answered:  # the connection is accepted and serving
                    await asyncio.sleep(0.01)
                conn = next(iter(endpoint._conns.values()))
                assert conn.transport is not None
                while conn.transport.is_reading() and answered < 2 * total:  # in and out
                    await asyncio.sleep(0.01)
            held = conn.transport.get_write_buffer_size()  # what we buffer for it
            # bound: the 64 KiB high-water mark + the answers to one read (<= 256 KiB of requests)
            assert held < 512 * 1024 and answered < 2 * total, (held, answered)
            sending.cancel()
            sock.close()

    asyncio.run(main())


def test_outbound_connections_have_their_own_budget(tmp_path: Path) -> None:
    """Our own connections are not counted against the inbound cap, and have a cap of their
    own (``max_outbound_connections``): past it a send fails at once, locally."""
    limits = Limits(max_connections=1, max_outbound_connections=1)

    async def main() -> None:
        async with server(tmp_path, Limits()) as (far, _):
            port = far.local_address("tcp")[1]
            near = SipEndpoint([Listen("tcp", "127.0.0.1", 0)], limits=limits)
            await near.start()
            try:
                blocker = await hostile(HOSTILE[0], near.local_address("tcp")[1])
                assert await still_open(blocker)  # the one inbound slot is taken
                req = near.new_request("OPTIONS", f"sip:127.0.0.1:{port};transport=tcp",
                                       from_uri="sip:a@x", to_uri="sip:b@x")
                assert (await near.send(req, timeout=WAIT)).status == 200
                other = SipEndpoint([Listen("tcp", "127.0.0.1", 0)])
                await other.start()
                try:
                    req = near.new_request(
                        "OPTIONS", f"sip:127.0.0.1:{other.local_address('tcp')[1]};"
                        "transport=tcp", from_uri="sip:a@x", to_uri="sip:b@x")
                    with contextlib.suppress(SipTransportError):
                        await near.send(req, timeout=WAIT)
                        raise AssertionError("a second outbound connection was opened")
                finally:
                    await other.close()
                blocker.close()
            finally:
                await near.close()

    asyncio.run(main())


def test_a_peers_result_is_not_held_up_by_a_connection_flood_on_the_partner() -> None:
    """The issue's case: idle connections fill the partner ACMS's caps; the primary's
    forwarded request still gets in (its hop address is privileged) and ALICE's add user
    configuration request completes with its Result during the attack."""

    async def main() -> None:
        async with Lab.start(transport="tcp", limits=HOLD) as lab:
            port = lab.partner.endpoint.local_address("tcp")[1]
            flood = [await hostile(h, port) for h in HOSTILE for _ in range(5)]
            kept = [s for s in flood if await still_open(s)]
            assert len(kept) < len(flood)  # the cap is reached (DAVE's ACMC holds a slot)
            assert await lab.migrate_mike(timeout=WAIT)
            for s in flood:
                s.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- measurement


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def measure(n: int, tmp: Path) -> None:
    """RSS of an endpoint (in this process; the attackers' sockets cost the process only a
    kernel file each) while ``n`` hostile connections, half to TLS, come from 127.0.0.2..9."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * n + 1024), hard))
    limits = Limits(max_connections_per_source=n, handshake_timeout=60.0)
    async with server(tmp, limits) as (endpoint, client_tls):
        tcp, tls = endpoint.local_address("tcp")[1], endpoint.local_address("tls")[1]
        before = rss_kib()
        flood = [await hostile(HOSTILE[i % 8], tls if i % 2 else tcp) for i in range(n)]
        await asyncio.sleep(1)  # the accepts of the last connects
        during = rss_kib()
        open_now = sum([await still_open(s) for s in flood])
        status = await options(client_tls, f"sips:127.0.0.1:{tls}")
        print(f"{n} hostile connections (half to the TLS port): {open_now} held by the node "
              f"(cap {limits.max_connections}, handshakes {limits.max_handshakes}); RSS "
              f"{before // 1024} -> {during // 1024} MiB (+{(during - before) / 1024:.1f}); "
              f"a configured peer's OPTIONS over TLS: {status}")
        for s in flood:
            s.close()


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5000, Path(d)))
