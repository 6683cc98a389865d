"""A local error at the one send entry point (issue 14 item 5; docs/decisions.md "Local and
remote errors"): a flow of ours that fails our own schema is logged once, never sent, and
reported as ``Failure.LOCAL_ERROR``, which no retry policy repeats (h11's LocalProtocolError)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mcacm_sip.acm.model import PendingDataNotification, new_transaction_id
from mcacm_sip.core.acms import transient
from mcacm_sip.core.events import Failure
from mcacm_sip.runtime.base import SipSettings
from mcacm_sip.runtime.lab import DAVE, PARTNER
from mcacm_sip.runtime.messaging import send_message
from mcacm_sip.sip import Reply
from mcacm_sip.sip.aio import IncomingRequest, Listen, SipEndpoint


def test_a_flow_we_cannot_encode_is_reported_once_and_never_sent(
        caplog: pytest.LogCaptureFixture) -> None:
    broken = PendingDataNotification(new_transaction_id(), DAVE)
    object.__setattr__(broken, "user", "two words")  # bypasses the model: a bug of ours
    good = PendingDataNotification(new_transaction_id(), DAVE)

    async def main() -> None:
        received: asyncio.Queue[bytes] = asyncio.Queue()

        def on_message(incoming: IncomingRequest) -> Reply:
            received.put_nowait(incoming.message.body)
            return Reply(200)

        receiver = SipEndpoint([Listen("udp", "127.0.0.1")])
        receiver.serve("MESSAGE", on_message)
        sender = SipEndpoint([Listen("udp", "127.0.0.1")])
        await receiver.start()
        await sender.start()
        try:
            host, port = receiver.local_address("udp")
            uri = f"sip:acmc@{host}:{port}"
            settings = SipSettings()
            with caplog.at_level(logging.INFO, logger="mcacm.runtime"):
                sent = await send_message(sender, settings, uri=uri, to=DAVE,
                                          identity=PARTNER, flow=broken)
            assert not sent.ok and sent.failure is Failure.LOCAL_ERROR and sent.status is None
            assert sent.reason is not None and sent.reason.startswith("local error")
            assert not transient(Failure.LOCAL_ERROR)  # what the ACMS core reads
            outcome = sent.outcome(0.0, "send-1")
            assert outcome.failure is Failure.LOCAL_ERROR and not outcome.ok
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and getattr(errors[0], "event", None) == "acm.local_error"
            # nothing left for the broken flow: the next MESSAGE is the first to arrive
            ok = await send_message(sender, settings, uri=uri, to=DAVE, identity=PARTNER,
                                    flow=good)
            assert ok.ok and ok.failure is None
            body = await asyncio.wait_for(received.get(), 10)
            assert good.transaction_id.encode() in body and received.empty()
        finally:
            await sender.close()
            await receiver.close()

    asyncio.run(main())
