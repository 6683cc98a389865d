"""PUBLISH (RFC 3903): the event state compositor (ESC) and a publisher (EPA).

:class:`Compositor` keeps publications per resource and event package with entity tags
(SIP-ETag in every 2xx, SIP-If-Match to refresh, modify or remove, 412 for an unknown tag), and
lets the application accept or refuse each attempt with its own status and headers. TS 24.379 9A
uses this for functional-alias status: the controlling server answers 423 +
``Min-Expires: 4294967295`` to any Expires other than 4294967295 or 0 and 403 by its own rules
(configure ``min_expires=0`` and say so in the policy), and NOTIFYs subscribers on each change
(``on_change``). :class:`Publisher` is one publication from the EPA side. Both are sans-I/O;
:class:`PublicationService` and :class:`PublicationClient` wire them on a :class:`SipEndpoint`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from .dialog import (
    MAX_EXPIRES,
    BadRequest,
    Body,
    Header,
    Refuse,
    Reply,
    RequestSpec,
    parse_expires,
    uri_from,
)
from .headers import Event, InvalidHeader
from .message import Request, Response

if TYPE_CHECKING:
    pass


class PublishKind(StrEnum):
    """What a PUBLISH does (RFC 3903 4 / 6)."""

    INITIAL = "initial"  # no SIP-If-Match, a body
    REFRESH = "refresh"  # SIP-If-Match, no body
    MODIFY = "modify"  # SIP-If-Match and a body
    REMOVE = "remove"  # Expires: 0 (with SIP-If-Match, or a body as TS 24.379 9A deactivation)
    EXPIRED = "expired"  # not a PUBLISH: the publication ran out (only in PublicationChange)


@dataclass(frozen=True, slots=True)
class Publication:
    """One piece of event state held for a resource."""

    resource: str
    event: str
    etag: str
    body: Body
    expires_at: float
    publisher: str  # From URI of the last PUBLISH

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now))


@dataclass(frozen=True, slots=True)
class PublishAttempt:
    """A PUBLISH that passed the RFC 3903 checks, for the application to accept or refuse."""

    kind: PublishKind
    resource: str
    event: str
    requested_expires: int | None  # None: no Expires header
    expires: int  # what would be granted
    body: Body | None
    previous: Publication | None  # the publication SIP-If-Match named
    request: Request


@dataclass(frozen=True, slots=True)
class PublicationChange:
    """A publication appeared, changed or went away."""

    kind: PublishKind
    resource: str
    event: str
    before: Publication | None
    after: Publication | None
    request: Request | None  # None for expiry


PublishPolicy = Callable[[PublishAttempt], Refuse | None]
"""None accepts; a :class:`Refuse` is sent as the answer."""


class Compositor:
    """RFC 3903 6 event state compositor for the given event packages.

    ``resource_of(request)`` names the resource a PUBLISH is about (default: its Request-URI).
    """

    def __init__(
        self,
        events: Iterable[str],
        *,
        policy: PublishPolicy | None = None,
        on_change: Callable[[PublicationChange], None] | None = None,
        min_expires: int = 60,
        max_expires: int = MAX_EXPIRES,
        default_expires: int = 3600,
        resource_of: Callable[[Request], str] | None = None,
    ) -> None:
        self.events = tuple(e.lower() for e in events)
        self._policy = policy
        self._on_change = on_change
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self._resource_of = resource_of or (lambda r: r.uri)
        self._pubs: dict[tuple[str, str], dict[str, Publication]] = {}  # (resource, event)

    def publications(self, resource: str, event: str, now: float) -> tuple[Publication, ...]:
        """The live publications of a resource (what a notifier composes its state from)."""
        held = self._pubs.get((resource, event.lower()), {})
        return tuple(p for p in held.values() if p.expires_at > now)

    def get_timer(self) -> float | None:
        return min((p.expires_at for held in self._pubs.values() for p in held.values()),
                   default=None)

    def handle_timer(self, now: float) -> list[PublicationChange]:
        """Drop publications that ran out (RFC 3903 6: the ESC removes expired state)."""
        changes = []
        for key, held in list(self._pubs.items()):
            for etag, pub in list(held.items()):
                if pub.expires_at <= now:
                    del held[etag]
                    changes.append(self._changed(PublicationChange(
                        PublishKind.EXPIRED, pub.resource, pub.event, pub, None, None)))
            if not held:
                del self._pubs[key]
        return changes

    def handle(self, request: Request, now: float) -> Reply:
        """Process a PUBLISH (RFC 3903 6) and return the answer to send."""
        try:
            return self._handle(request, now)
        except BadRequest as exc:
            return Reply(exc.status, exc.reason, exc.headers)

    def _handle(self, request: Request, now: float) -> Reply:
        # RFC 3903 6 step 2: the event package must be one we compose.
        try:
            event = Event.parse(request.header("event") or "").package
        except InvalidHeader:
            event = ""  # no package we compose: 489 below
        if event not in self.events:
            return Reply(489, None, (("Allow-Events", ", ".join(self.events)),))
        resource = self._resource_of(request)
        held = self._pubs.get((resource, event), {})
        # Step 3: SIP-If-Match must name a live publication of this resource, else 412.
        if_match = request.header("sip-if-match")
        previous = None
        if if_match is not None:
            previous = held.get(if_match.strip())
            if previous is None or previous.expires_at <= now:
                return Reply(412)
        # Step 4: Expires: absent -> default, 0 < e < minimum -> 423, above maximum -> lowered.
        requested = parse_expires(request.header("expires"))
        expires = self.default_expires if requested is None else requested
        if 0 < expires < self.min_expires:
            return Reply(423, None, (("Min-Expires", str(self.min_expires)),))
        expires = min(expires, self.max_expires)
        # The full Content-Type (parameters kept): a multipart body is undecodable without its
        # boundary (TS 24.379 9A PUBLISH bodies are multipart/mixed).
        ctype = (request.header("content-type") or "").strip()
        body = Body(ctype, request.body) if request.body else None
        # Step 5: an initial publication needs a body (RFC 3903 6 step 5).
        if previous is None and body is None:
            return Reply(400, "Missing Body")
        if expires == 0:
            kind = PublishKind.REMOVE
        elif previous is None:
            kind = PublishKind.INITIAL
        else:
            kind = PublishKind.MODIFY if body is not None else PublishKind.REFRESH
        attempt = PublishAttempt(kind, resource, event, requested, expires, body, previous, request)
        # The application's authorisation and own rules (e.g. TS 24.379 9A.2.2.3.3 403/423).
        refusal = self._policy(attempt) if self._policy is not None else None
        if refusal is not None:
            return Reply(refusal.status, refusal.reason, refusal.headers)
        # Step 6/7: a new entity tag for every accepted PUBLISH, and the granted Expires.
        etag = secrets.token_hex(8)
        after = None
        if kind is PublishKind.REMOVE:
            if previous is not None:
                del held[previous.etag]
        else:
            stored = body if body is not None else previous.body  # type: ignore[union-attr]
            after = Publication(resource, event, etag, stored, now + expires,
                                uri_from(request, "from"))
            if previous is not None:
                del held[previous.etag]
            held[etag] = after
        if held:
            self._pubs[(resource, event)] = held
        else:
            self._pubs.pop((resource, event), None)
        self._changed(PublicationChange(kind, resource, event, previous, after, request))
        return Reply(200, None, (("SIP-ETag", etag), ("Expires", str(expires))))

    def _changed(self, change: PublicationChange) -> PublicationChange:
        if self._on_change is not None:
            self._on_change(change)
        return change


# --------------------------------------------------------------------------------------------
# Publisher (sans-I/O)


class Publisher:
    """One publication from the event publication agent side (RFC 3903 4).

    Refreshes at half the granted time; after a 412 it publishes its last body afresh
    (RFC 3903 4.4 note), after a 423 it retries with Min-Expires.
    """

    def __init__(
        self, *, target: str, from_uri: str, event: str, headers: Iterable[Header] = ()
    ) -> None:
        self.target = target
        self.from_uri = from_uri
        self.event = event
        self.extra_headers = tuple(headers)
        self.etag: str | None = None
        self.body: Body | None = None
        self.requested = 0
        self.expires_at: float | None = None
        self.last_status: int | None = None
        self._refresh_at: float | None = None
        self._sent: RequestSpec | None = None

    def publish(self, body: Body, expires: int, now: float) -> RequestSpec:
        """Initial publication, or a modification when we hold an entity tag (RFC 3903 4.3/4.5)."""
        self.body = body
        self.requested = expires
        return self._request(expires, body, self.etag)

    def refresh(self, now: float) -> RequestSpec | None:
        """Refresh (SIP-If-Match, no body; RFC 3903 4.4); None without a publication."""
        if self.etag is None:
            return None
        return self._request(self.requested, None, self.etag)

    def remove(self, now: float) -> RequestSpec | None:
        """Remove (SIP-If-Match, Expires: 0; RFC 3903 4.6); None without a publication."""
        self._refresh_at = None
        self.requested = 0
        if self.etag is None:
            return None
        return self._request(0, None, self.etag)

    def get_timer(self) -> float | None:
        return self._refresh_at

    def handle_timer(self, now: float) -> RequestSpec | None:
        """The refresh when it is due."""
        if self._refresh_at is None or now < self._refresh_at:
            return None
        self._refresh_at = None
        return self.refresh(now)

    def on_response(self, response: Response | None, now: float) -> RequestSpec | None:
        """Feed the final response (None: no answer); returns a retry if one is due."""
        sent = self._sent
        self.last_status = response.status if response is not None else None
        if sent is None:
            return None
        sent_expires = int(sent.header("expires") or 0)
        if response is not None and 200 <= response.status < 300:
            if sent_expires == 0:
                self._clear()
                return None
            self.etag = response.header("sip-etag") or self.etag
            try:
                granted = parse_expires(response.header("expires"))
            except BadRequest:
                granted = None
            granted = sent_expires if granted is None else granted
            self.expires_at = now + granted
            self._refresh_at = now + granted / 2  # refresh well before it runs out
            return None
        if response is not None and response.status == 412 and sent_expires and self.body:
            # RFC 3903 4.4: the ESC lost our state: publish it again from scratch.
            self.etag = None
            return self._request(sent_expires, self.body, None)
        if response is not None and response.status == 423 and sent_expires:
            try:
                minimum = parse_expires(response.header("min-expires"))
            except BadRequest:
                minimum = None
            if minimum is not None and minimum > sent_expires:
                self.requested = minimum  # RFC 3903 4.1 / RFC 3261 10.2.8
                return self._request(minimum, self.body if sent.body else None, self.etag)
        if sent_expires == 0 or (response is not None and response.status == 412):
            self._clear()
        elif self.etag is not None and self.expires_at is not None:
            # A failed refresh: retry at the next half of what is left.
            self._refresh_at = now + max(1.0, (self.expires_at - now) / 2)
        return None

    def _clear(self) -> None:
        self.etag = None
        self.expires_at = None
        self._refresh_at = None

    def _request(self, expires: int, body: Body | None, etag: str | None) -> RequestSpec:
        headers: list[Header] = [("Event", self.event), ("Expires", str(expires))]
        if etag is not None:
            headers.append(("SIP-If-Match", etag))
        self._sent = RequestSpec(
            method="PUBLISH",
            uri=self.target,
            from_uri=self.from_uri,
            to_uri=self.target,  # RFC 3903 4.1: To = the resource, as the Request-URI
            headers=(*headers, *self.extra_headers),
            body=body.data if body else b"",
            content_type=body.content_type if body else None,
        )
        return self._sent


__all__ = [
    "Compositor",
    "Publication",
    "PublicationChange",
    "PublishAttempt",
    "PublishKind",
    "PublishPolicy",
    "Publisher",
]
