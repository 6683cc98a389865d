"""ACM flows in SIP MESSAGE, both directions (architecture.md 4 wire conventions)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.model import AcmFlow
from mcacm_sip.core.events import DeliveryOutcome, Failure, MessageVerdict, RefuseMessage
from mcacm_sip.core.identity import flow_procedure
from mcacm_sip.frozen import builder
from mcacm_sip.runtime.base import SipSettings, warning
from mcacm_sip.runtime.wire import PROCEDURE_HEADER as PROCEDURE_HEADER
from mcacm_sip.runtime.wire import procedure_of as procedure_of  # re-exported
from mcacm_sip.sip import Reply, SipTimeout, SipTransportError
from mcacm_sip.sip.aio import FinalResponse, OutgoingRequest, SipEndpoint
from mcacm_sip.sip.dialog import parse_retry_after
from mcacm_sip.sip.headers import InvalidHeader, Warning

log = logging.getLogger("mcacm.runtime")

def message_reply(host: str, status: int, text: str) -> Reply:
    """A refusal with ``Warning: 399 <host> "<text>"``; a 415 also lists what we accept
    (RFC 3261 21.4.13)."""
    headers = [warning(host, text)]
    if status == 415:
        headers.append(("Accept", codec.ACM_CONTENT_TYPE))
    return Reply(status, headers=tuple(headers))


def verdict_reply(host: str, verdict: MessageVerdict | None) -> Reply:
    """The answer to a MESSAGE the core judged: 200 for Accept (after the store committed),
    the refusal with its Warning, 500 if the core gave no verdict."""
    if isinstance(verdict, RefuseMessage):
        reply = message_reply(host, verdict.status, verdict.warning)
        if verdict.retry_after is not None:
            reply = replace(reply, headers=(*reply.headers,
                                            ("Retry-After", str(verdict.retry_after))))
        return reply
    return ACCEPTED if verdict is not None else _NO_VERDICT


ACCEPTED, _NO_VERDICT = Reply(200), Reply(500)  # frozen: one of each, not one per request


def warning_text(value: str | None) -> str | None:
    """The warn-text of a Warning value (RFC 3261 20.43), for logs and reports: a value that
    is no Warning, or has an empty text, is shown as it came."""
    if not value:
        return value
    try:
        return Warning.parse(value).text or value
    except InvalidHeader:
        return value


def acm_headers(identity: str, icsi: str, procedure: str | None
                ) -> tuple[tuple[str, str], ...]:
    """The headers of every ACM MESSAGE we send: P-Asserted-Identity (RFC 3325; believed only
    from a trusted hop), P-Asserted-Service (the ICSI) and the procedure header."""
    headers = _asserted(identity, icsi)
    return headers if procedure is None else (*headers, (PROCEDURE_HEADER, procedure))


@lru_cache(maxsize=64)
def _asserted(identity: str, icsi: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """:func:`acm_headers`' first two: the same for every MESSAGE of a node (two per ACMS
    request), made once."""
    return (("P-Asserted-Identity", f"<{identity}>"), ("P-Asserted-Service", icsi))


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of one MESSAGE: ok = a 2xx arrived.  A failure has its kind
    (:class:`Failure`), a ``reason`` for logs and, when a final answer came (``REFUSED``), its
    ``status``, Warning text and Retry-After."""

    ok: bool
    reason: str | None = None
    status: int | None = None
    warning: str | None = None
    retry_after: float | None = None
    failure: Failure | None = None

    def outcome(self, now: float, send_id: str) -> DeliveryOutcome:
        """The core event reporting this send."""
        if self is _DELIVERED:  # every 2xx (two per ACMS request): its fields are known
            return _delivered(now, send_id, True, None, None, None, None, None)
        if self.ok and self.failure is None and self.status is None:
            # a delivery (two per ACMS request): consistent as DeliveryOutcome.__post_init__
            # requires (ok, no failure, no status), so built without it or a call per field
            return _delivered(now, send_id, True, self.reason, None, self.warning,
                              self.retry_after, None)
        return DeliveryOutcome(now, send_id, self.ok, self.reason, self.status, self.warning,
                               self.retry_after, self.failure)


_delivered: Callable[..., DeliveryOutcome] = builder(DeliveryOutcome, skip_post_init=True)


async def send_message(endpoint: SipEndpoint, settings: SipSettings, *, uri: str, to: str,
                       identity: str, flow: AcmFlow, route: Sequence[str] = (),
                       procedure: str | None = None, call_id: str | None = None) -> Sent:
    """Send ``flow`` in a MESSAGE to ``uri`` (through ``route``, a preloaded Route set), with
    ``X-CID: <procedure>`` (:data:`PROCEDURE_HEADER`; None: derived from the flow, see
    :func:`~mcacm_sip.core.identity.flow_procedure`) and, for the request that opens a
    procedure, ``call_id`` (sngrep and Homer link the procedure's other MESSAGEs to it).

    ok means a 2xx arrived: the receiver has stored what it accepted (transport acknowledgement
    only; the process indication and the response are separate flows).  This is the one place
    where a send's exceptions become outcomes: a flow we cannot encode is ``LOCAL_ERROR`` (our
    bug, logged once here, never sent), no answer ``TIMEOUT``, a transport failure
    ``TRANSPORT``, any other final answer ``REFUSED`` with its status.
    """
    request = _message(endpoint, settings, uri, to, identity, flow, route, procedure, call_id)
    if isinstance(request, Sent):
        return request
    try:
        final = await endpoint.send(request, timeout=settings.send_timeout)
    except (SipTimeout, SipTransportError) as exc:
        return _sent(flow, to, uri, request.call_id, None, exc)
    return _sent(flow, to, uri, request.call_id, final, None)


_DELIVERED = Sent(True)  # frozen: one for every 2xx, not one per send


def start_message(endpoint: SipEndpoint, settings: SipSettings, *, uri: str, to: str,
                  identity: str, flow: AcmFlow, done: Callable[[Sent], object],
                  route: Sequence[str] = (), procedure: str | None = None,
                  call_id: str | None = None) -> None:
    """:func:`send_message` without a task per send (``SipEndpoint.send_soon``): ``done``
    gets the outcome, always from a later loop callback, never from inside this call."""
    request = _message(endpoint, settings, uri, to, identity, flow, route, procedure, call_id)
    if isinstance(request, Sent):
        endpoint.loop.call_soon(done, request)
        return

    def settled(fut: asyncio.Future[FinalResponse]) -> None:
        if fut.cancelled():
            return  # the endpoint stopped (its node too)
        exc = fut.exception()
        if exc is not None and not isinstance(exc, SipTimeout | SipTransportError):
            raise exc  # a bug: the loop's exception handler reports it
        done(_sent(flow, to, uri, request.call_id, None if exc is not None else fut.result(),
                   exc))

    endpoint.send_soon(request, settings.send_timeout, settled)


def _message(endpoint: SipEndpoint, settings: SipSettings, uri: str, to: str, identity: str,
             flow: AcmFlow, route: Sequence[str], procedure: str | None,
             call_id: str | None) -> OutgoingRequest | Sent:
    """The MESSAGE carrying ``flow``, or the local error if we cannot encode it."""
    try:
        body = codec.encode(flow)
    except AcmError as exc:
        # whatever encode raises for a flow we built is ours (EncodeError, or InvalidContent
        # for an embedded profile): a local error, as h11's LocalProtocolError
        log.error("local error: cannot encode our own %s %s: %s", flow.FLOW,
                  flow.transaction_id, exc, extra={"event": "acm.local_error",
                                                   "flow": flow.FLOW,
                                                   "transaction_id": flow.transaction_id})
        return Sent(False, f"local error: cannot encode {flow.FLOW}: {exc.warning_text}",
                    failure=Failure.LOCAL_ERROR)
    return endpoint.new_request(
        "MESSAGE", uri, from_uri=identity, to_uri=to, body=body, route=route,
        content_type=codec.ACM_CONTENT_TYPE, call_id=call_id,
        headers=acm_headers(identity, settings.icsi, procedure or flow_procedure(flow)))


def _sent(flow: AcmFlow, to: str, uri: str, call_id: str, final: FinalResponse | None,
          exc: BaseException | None) -> Sent:
    """The outcome of one MESSAGE out, logged once (``acm.sent``; nothing is built for the
    line when INFO is off)."""
    status: int | None
    outcome: object
    if isinstance(exc, SipTimeout):
        sent = Sent(False, "no answer", failure=Failure.TIMEOUT)
        status, outcome = None, "no answer"
    elif exc is not None or final is None:
        sent = Sent(False, f"transport error: {exc}", failure=Failure.TRANSPORT)
        status, outcome = None, exc
    else:
        status = outcome = final.status
        if 200 <= status < 300:
            sent = _DELIVERED
        else:
            message = final.message
            warning = warning_text(message.header("warning"))
            sent = Sent(False, f"{status} {warning or message.reason}", status, warning,
                        parse_retry_after(message.header("retry-after")), Failure.REFUSED)
    if log.isEnabledFor(logging.INFO):
        tid = flow.transaction_id
        log.info("%s %s to %s: %s", flow.FLOW, tid, to, outcome, extra={
            "event": "acm.sent", "call_id": call_id, "flow": flow.FLOW,
            "transaction_id": tid, "peer": uri, "status": status,
            "failure": sent.failure})
    return sent
