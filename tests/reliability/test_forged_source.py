"""Issue 13 item 1: a request from an untrusted address that writes its own ``received=`` into
the top Via (no ``rport``, sent-by its real address) must not pass for the trusted host.

The attacker is a raw socket bound to 127.0.0.2; the only trusted host is 127.0.0.1.  Each
request carries ``Via: SIP/2.0/<T> 127.0.0.2:<port>;branch=...;received=127.0.0.1``: before the
fix the endpoint kept that ``received`` (the sent-by host equals the source) and the runtime took
it for the source address.  Over UDP, TCP and TLS the attacker tries to act as the peer ACMS,
to answer as the deciding user, to REGISTER as a user, to activate a functional alias at the FA
server and to send flows to an ACMC as its ACMS: each gets 403 with a Warning naming 127.0.0.2.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from pki_kit import make_pki

from mcacm_sip.acm import codec
from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.fa import EVENT_PRESENCE, EXPIRES_UNTIL_WITHDRAWN, publish_body
from mcacm_sip.acm.model import (
    Addressee,
    AddUserConfigurationRequest,
    Party,
    ProcessIndication,
    ProfileUpdateRequest,
    ProfileUpdateResponse,
    Result,
    ResultCode,
    new_transaction_id,
)
from mcacm_sip.core.config import AcmcConfig, AcmsConfig
from mcacm_sip.runtime import AcmsNode
from mcacm_sip.runtime.acmc import AcmcNode, ProgrammableDecider
from mcacm_sip.runtime.base import SipSettings, TlsSettings
from mcacm_sip.runtime.config import AcmcNodeConfig, AcmsNodeConfig, FaServerNodeConfig
from mcacm_sip.runtime.fa_server import FaServerNode
from mcacm_sip.runtime.lab import (
    ALICE,
    DAVE,
    DUTY,
    FA_SERVER,
    MIKE,
    PARTNER,
    PRIMARY,
    PROFILE_XML,
    fa_config,
    partner_config,
    primary_config,
)
from mcacm_sip.runtime.messaging import warning_text
from mcacm_sip.sip import Response, Timers, Transport, parse
from mcacm_sip.sip.aio import Listen
from mcacm_sip.sip.message import head_end

TIMERS = Timers(t1=0.1, t2=0.4, t4=0.5)
TRUSTED = frozenset({"127.0.0.1"})
ATTACKER = "127.0.0.2"
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")
REFUSED = f"not-authorised: {ATTACKER} is not a trusted host"


def settings(tls: TlsSettings) -> SipSettings:
    listens = tuple(Listen(t, "127.0.0.1", 0) for t in TRANSPORTS)
    return SipSettings(listens=listens, timers=TIMERS, send_timeout=2.0,
                       trusted_hosts=TRUSTED, tls=tls)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsSettings:
    pki = make_pki(tmp_path_factory.mktemp("pki"), "lab")
    return TlsSettings(pki["server"], ca=pki["ca"])


class Attacker:
    """Raw SIP from 127.0.0.2 with a forged ``received=127.0.0.1`` in its Via."""

    def __init__(self, transport: Transport, dest: tuple[str, int], host: str = ATTACKER
                 ) -> None:
        self.transport = transport
        self.dest = dest
        self.host = host

    def build(self, method: str, ruri: str, from_uri: str, to_uri: str, port: int, *,
              body: bytes = b"", content_type: str | None = None,
              headers: tuple[tuple[str, str], ...] = ()) -> bytes:
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/{self.transport.upper()} {self.host}:{port}"
                 f";branch=z9hG4bK{secrets.token_hex(8)};received=127.0.0.1",
                 "Max-Forwards: 70",
                 f"From: <{from_uri}>;tag={secrets.token_hex(4)}",
                 f"To: <{to_uri}>",
                 f"Call-ID: {secrets.token_hex(8)}@{self.host}",
                 f"CSeq: 1 {method}",
                 f"Contact: <sip:x@{self.host}:{port}>",
                 *(f"{name}: {value}" for name, value in headers)]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def send(self, method: str, ruri: str, from_uri: str, to_uri: str, *,
                   body: bytes = b"", content_type: str | None = None,
                   headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, str | None]:
        """The final status and Warning text of the answer."""
        if self.transport == "udp":
            data = await self._udp(lambda port: self.build(
                method, ruri, from_uri, to_uri, port, body=body, content_type=content_type,
                headers=headers))
        else:
            data = await self._stream(lambda port: self.build(
                method, ruri, from_uri, to_uri, port, body=body, content_type=content_type,
                headers=headers))
        resp = parse(data)
        assert isinstance(resp, Response)
        return resp.status, warning_text(resp.header("warning"))

    async def _udp(self, build: Callable[[int], bytes]) -> bytes:
        loop = asyncio.get_running_loop()
        finals: asyncio.Queue[bytes] = asyncio.Queue()

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                if not data.startswith(b"SIP/2.0 1"):  # a final answer
                    finals.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=(self.host, 0))
        try:
            port = transport.get_extra_info("sockname")[1]
            transport.sendto(build(port), self.dest)
            return await asyncio.wait_for(finals.get(), 10)
        finally:
            transport.close()

    async def _stream(self, build: Callable[[int], bytes]) -> bytes:
        ctx = None
        if self.transport == "tls":  # a TLS client that shows no certificate
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection(
            *self.dest, local_addr=(self.host, 0), ssl=ctx,
            server_hostname="127.0.0.1" if ctx else None)
        try:
            port = writer.get_extra_info("sockname")[1]
            writer.write(build(port))
            await writer.drain()
            buf = b""
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                assert chunk, f"connection closed; got {buf!r}"
                buf += chunk
                end, sep = head_end(buf)
                if end >= 0 and not buf.startswith(b"SIP/2.0 1"):
                    return buf[:end + sep]
                if end >= 0:  # a provisional answer: skip it
                    buf = buf[end + sep:]
        finally:
            writer.close()


def add_request() -> bytes:
    return codec.encode(AddUserConfigurationRequest(
        new_transaction_id(), Party(ALICE), (MIKE,), Addressee(DAVE)))


@asynccontextmanager
async def acms(tls: TlsSettings, config: AcmsConfig) -> AsyncIterator[AcmsNode]:
    node = AcmsNode(AcmsNodeConfig(config, settings(tls)))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_acting_as_the_peer_acms_is_refused(transport: Transport, tls: TlsSettings) -> None:
    """The partner PSI in From, an add request for the partner's users: the partner ACMS
    refuses it; nothing is opened."""

    async def main() -> None:
        async with acms(tls, partner_config(None)) as partner:
            attacker = Attacker(transport, partner.addresses[transport])
            got = await attacker.send("MESSAGE", PARTNER, PRIMARY, PARTNER,
                                      body=add_request(), content_type=codec.ACM_CONTENT_TYPE)
            assert got == (403, REFUSED)
            assert not partner.core.transactions()

    asyncio.run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_answering_as_the_deciding_user_is_refused(transport: Transport,
                                                    tls: TlsSettings) -> None:
    """DAVE's approval of an open profile update, forged: 403, the transaction stays open."""

    async def main() -> None:
        async with acms(tls, partner_config(None)) as partner:
            attacker = Attacker(transport, partner.addresses[transport])
            tid = new_transaction_id()
            approval = codec.encode(ProfileUpdateResponse(
                tid, Party(DAVE), Addressee(ALICE), MIKE, Result(ResultCode.SUCCESS)))
            got = await attacker.send("MESSAGE", PARTNER, DAVE, PARTNER, body=approval,
                                      content_type=codec.ACM_CONTENT_TYPE)
            assert got == (403, REFUSED)

    asyncio.run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_register_as_a_user_is_refused(transport: Transport, tls: TlsSettings) -> None:
    """REGISTER for ALICE from the attacker: 403, ALICE is not logged on (her requests would
    go to the attacker's contact)."""

    async def main() -> None:
        async with acms(tls, primary_config(None)) as primary:
            attacker = Attacker(transport, primary.addresses[transport])
            got = await attacker.send("REGISTER", "sip:primary.example", ALICE, ALICE,
                                      headers=(("Expires", "600"),))
            assert got == (403, REFUSED)
            assert ALICE not in primary.core.logged_on
            assert primary.registrar.contacts(ALICE, 0) == ()

    asyncio.run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_activating_a_functional_alias_is_refused(transport: Transport,
                                                   tls: TlsSettings) -> None:
    """PUBLISH activating DUTY for DAVE at the FA controlling server: 403, no holder."""

    async def main() -> None:
        node = FaServerNode(FaServerNodeConfig(FA_SERVER, fa_config(), settings(tls)))
        await node.start()
        try:
            attacker = Attacker(transport, node.addresses[transport])
            ctype, body = publish_body(DUTY, DAVE)
            status, text = await attacker.send(
                "PUBLISH", DUTY, DAVE, DUTY, body=body, content_type=ctype,
                headers=(("Event", EVENT_PRESENCE), ("Expires", str(EXPIRES_UNTIL_WITHDRAWN)),
                         ("P-Asserted-Identity", f"<{DAVE}>")))
            assert status == 403 and text
            assert node.server.holders(DUTY) == ()
        finally:
            await node.stop()

    asyncio.run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sending_to_an_acmc_as_its_acms_is_refused(transport: Transport,
                                                    tls: TlsSettings) -> None:
    """A request to decide, "from" DAVE's ACMS: the ACMC refuses it and asks nobody."""

    async def main() -> None:
        decider = ProgrammableDecider()
        node = AcmcNode(AcmcNodeConfig(AcmcConfig(DAVE, PARTNER), settings(tls)), decider)
        await node.start(logon=False)
        try:
            attacker = Attacker(transport, node.addresses[transport])
            flow = codec.encode(ProfileUpdateRequest(
                new_transaction_id(), Party(ALICE), Addressee(DAVE), MIKE,
                profile_from_xml(PROFILE_XML), "approve me"))
            status, text = await attacker.send("MESSAGE", DAVE, PARTNER, DAVE, body=flow,
                                               content_type=codec.ACM_CONTENT_TYPE)
            assert status == 403 and text and "is not my ACMS" in text
            indication = codec.encode(ProcessIndication(new_transaction_id(), PARTNER,
                                                        ProfileUpdateRequest.FLOW))
            assert (await attacker.send("MESSAGE", DAVE, PARTNER, DAVE, body=indication,
                                        content_type=codec.ACM_CONTENT_TYPE))[0] == 403
            assert decider.requests.empty()
        finally:
            await node.stop(logoff=False)

    asyncio.run(main())


def test_the_trusted_host_itself_is_still_believed(tls: TlsSettings) -> None:
    """The same request from 127.0.0.1 (the trusted host) is taken: the refusals above are
    about the source, not about the request."""

    async def main() -> None:
        async with acms(tls, primary_config(None)) as primary:
            trusted = Attacker("tcp", primary.addresses["tcp"], host="127.0.0.1")
            status, _ = await trusted.send("MESSAGE", PRIMARY, ALICE, PRIMARY,
                                           body=add_request(),
                                           content_type=codec.ACM_CONTENT_TYPE)
            assert status == 200
            assert len(primary.core.transactions()) == 1

    asyncio.run(main())
