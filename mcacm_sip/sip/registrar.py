"""REGISTER: a registrar (RFC 3261 10.3) and a registering client (RFC 3261 10.2).

:class:`Registrar` keeps bindings address-of-record -> contacts with expiry in a
:class:`BindingStore`, answers REGISTER, and tells an observer when an AOR's bindings change, so
"logged on" has a meaning (an ACMC logs on to its ACMS by REGISTER; on logon the ACMS sends the
pending ACM data notification, TS 23.280 10.17.3.1). :class:`Registration` is the client side:
register, refresh at half the granted time, retry 423 with Min-Expires, unregister. Both are
sans-I/O (they take ``now``); :class:`RegistrarService` and :class:`RegistrationClient` wire
them on a :class:`SipEndpoint`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from .dialog import (
    MAX_EXPIRES,
    BadRequest,
    Header,
    Reply,
    RequestSpec,
    parse_expires,
    parse_retry_after,
    uri_from,
)
from .headers import Contact, InvalidHeader, Warning
from .message import DEFAULT_LIMITS, Limits, Request, Response
from .uri import Uri, addr_spec, address_of_record, try_identity

if TYPE_CHECKING:
    pass


def _contact_expires(value: str) -> int | None:
    """The ``expires`` parameter of one Contact value (RFC 3261 20.10: outside ``<>``, or after
    an addr-spec, the parameters are the header's), None when absent; BadRequest(400) when the
    value or its ``expires`` cannot be read."""
    try:
        contact = Contact.parse(value)
    except InvalidHeader:
        raise BadRequest(400, "Bad Contact") from None
    try:
        return contact.expires
    except InvalidHeader:
        raise BadRequest(400, "Bad Expires") from None


# --------------------------------------------------------------------------------------------
# Registrar (sans-I/O)


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact bound to an AOR (RFC 3261 10.3 step 7)."""

    contact: str  # the Contact URI as registered
    expires_at: float
    call_id: str
    cseq: int
    path: tuple[str, ...] = ()
    """RFC 3327: the Path values of the REGISTER, in order: the proxies between the registrar
    and the contact.  A request to the contact carries them as its preloaded Route set, first
    value first (RFC 3327 5.5, the home proxy's role, which is the registrar's own here)."""

    def remaining(self, now: float) -> int:
        """Whole seconds left, as the 200's ``expires`` parameter states it."""
        return max(0, int(self.expires_at - now))


@dataclass(frozen=True, slots=True)
class RegistrationChange:
    """An AOR's bindings before and after a REGISTER or an expiry."""

    aor: Uri
    before: tuple[Binding, ...]
    after: tuple[Binding, ...]
    expired: bool = False  # the change came from expiry, not from a REGISTER

    @property
    def logged_on(self) -> bool:
        """The AOR went from no binding to at least one."""
        return not self.before and bool(self.after)

    @property
    def logged_off(self) -> bool:
        """The AOR's last binding went away (removed or expired)."""
        return bool(self.before) and not self.after


class BindingStore(Protocol):
    """Where bindings live; the ACMS can persist them by implementing this.  AORs are
    :class:`Uri` values (RFC 3261 10.3 step 5), so every spelling of one AOR is one key."""

    def get(self, aor: Uri) -> tuple[Binding, ...]:
        """The AOR's bindings (expired ones included until :meth:`put` drops them)."""
        ...

    def put(self, aor: Uri, bindings: tuple[Binding, ...]) -> None:
        """Replace the AOR's bindings atomically; an empty tuple forgets the AOR."""
        ...

    def aors(self) -> list[Uri]:
        """Every AOR with at least one binding."""
        ...


class MemoryBindingStore:
    """A :class:`BindingStore` in a dict."""

    def __init__(self) -> None:
        self._data: dict[Uri, tuple[Binding, ...]] = {}

    def get(self, aor: Uri) -> tuple[Binding, ...]:
        return self._data.get(aor, ())

    def put(self, aor: Uri, bindings: tuple[Binding, ...]) -> None:
        if bindings:
            self._data[aor] = bindings
        else:
            self._data.pop(aor, None)

    def aors(self) -> list[Uri]:
        return list(self._data)


def contact_key(text: str) -> Uri:
    """The Contact URI a binding is found by: 10.3 step 7 compares contacts by 19.1.4.  Raises
    BadRequest(400) for a Contact that is no SIP or SIPS URI."""
    u = try_identity(text)
    if u is None or u.scheme not in ("sip", "sips") or not u.host:
        raise BadRequest(400, "Bad URI")
    return u


Authorise = Callable[[Uri, Request], bool | str]
"""(AOR, REGISTER request) -> may this request change this AOR's bindings: True, or False /
a refusal text (the 403's Warning)."""
RegistrationObserver = Callable[[RegistrationChange], None]


def _reply(status: int, reason: str | None = None, headers: Iterable[Header] = ()) -> Reply:
    return Reply(status, reason, tuple(headers))


class Registrar:
    """RFC 3261 10.3 registrar over a :class:`BindingStore`.

    ``authorise(aor, request)`` decides who may register (403 otherwise); ``on_change`` hears
    every change of an AOR's bindings, including expiry found by :meth:`handle_timer`.  ``limits``
    caps the bindings of one AOR and in total (``max_contacts_per_aor``, ``max_bindings``;
    docs/decisions.md "Reliability: registrar limits"); ``host`` names us in their Warnings.
    """

    def __init__(
        self,
        store: BindingStore | None = None,
        *,
        authorise: Authorise | None = None,
        on_change: RegistrationObserver | None = None,
        min_expires: int = 60,
        max_expires: int = 86400,
        default_expires: int = 3600,
        limits: Limits = DEFAULT_LIMITS,
        host: str = "registrar",
    ) -> None:
        if not 0 <= min_expires <= default_expires <= max_expires <= MAX_EXPIRES:
            raise ValueError("need 0 <= min_expires <= default_expires <= max_expires <= 2**32-1")
        self.store: BindingStore = store if store is not None else MemoryBindingStore()
        self._authorise = authorise
        self._on_change = on_change
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.limits = limits
        self.host = host
        self.bindings = sum(len(self.store.get(aor)) for aor in self.store.aors())
        """Bindings stored (expired ones until :meth:`handle_timer` drops them): what the total cap
        counts."""

    # -- queries

    def contacts(self, aor: str | Uri, now: float) -> tuple[Binding, ...]:
        """The AOR's live bindings (``aor`` in any RFC 3261 19.1.4 spelling, parameters
        ignored as 10.3 step 5 says)."""
        key = address_of_record(aor)
        if key is None:
            return ()
        return tuple(b for b in self.store.get(key) if b.expires_at > now)

    def is_registered(self, aor: str | Uri, now: float) -> bool:
        """"Logged on": the AOR has at least one live binding."""
        return bool(self.contacts(aor, now))

    def get_timer(self) -> float | None:
        """When the next binding expires (for the adapter's timer)."""
        times = [b.expires_at for aor in self.store.aors() for b in self.store.get(aor)]
        return min(times, default=None)

    # -- events

    def handle_timer(self, now: float) -> list[RegistrationChange]:
        """Drop expired bindings and report each AOR that changed (a logoff when none is left)."""
        changes = []
        for aor in self.store.aors():
            before = self.store.get(aor)
            after = tuple(b for b in before if b.expires_at > now)
            if after != before:
                changes.append(self._commit(aor, before, after, expired=True))
        return changes

    def handle(self, request: Request, now: float) -> Reply:
        """Process a REGISTER (RFC 3261 10.3) and return the answer to send."""
        try:
            return self._handle(request, now)
        except BadRequest as exc:
            return _reply(exc.status, exc.reason)

    def _handle(self, request: Request, now: float) -> Reply:
        # 10.3 step 5: the AOR is the To URI without parameters, compared by 19.1.4
        aor = address_of_record(uri_from(request, "to"))
        if aor is None:
            raise BadRequest(400, "Bad URI")
        # 10.3 step 4: the application decides who may register this AOR.
        if self._authorise is not None:
            verdict = self._authorise(aor, request)
            if verdict is not True:
                return _reply(403, None, [self._warning(verdict)] if verdict else [])
        header_expires = parse_expires(request.header("expires"))
        contacts = request.headers("contact")
        cap = self.limits.max_contacts_per_aor
        if len(contacts) > cap:  # refused before any of them is looked at
            return self._too_many(cap)
        # RFC 3327 5.3: the Path values are kept with each contact this REGISTER binds
        path = tuple(request.headers("path"))
        before = self.store.get(aor)
        # 10.3 step 7: contacts compare by 19.1.4 (a stored one that no longer parses is
        # dropped here: nothing could match it)
        live = {key: b for b in before
                if b.expires_at > now and (key := try_identity(b.contact)) is not None}

        if any(c.strip() == "*" for c in contacts):
            # 10.3 step 6: "*" only alone and with Expires: 0; it removes every binding.
            if len(contacts) != 1 or header_expires != 0:
                raise BadRequest(400, "Invalid Wildcard")
            for b in live.values():
                self._check_order(b, request)
            return self._done(aor, before, (), now, request)

        updated = dict(live)
        for value in contacts:
            expires = _contact_expires(value)
            if expires is None:
                expires = header_expires if header_expires is not None else self.default_expires
            # 10.3 step 7 / 10.2.8: a non-zero interval below the minimum -> 423 + Min-Expires.
            if 0 < expires < self.min_expires:
                return _reply(423, None, [("Min-Expires", str(self.min_expires))])
            expires = min(expires, self.max_expires)  # the registrar may shorten it
            key = contact_key(addr_spec(value))
            old = updated.get(key)
            if old is not None:
                self._check_order(old, request)
            if expires == 0:
                updated.pop(key, None)
            else:
                updated[key] = Binding(addr_spec(value), now + expires, request.call_id,
                                       request.cseq, path)
        after = tuple(updated.values())
        if len(after) > max(cap, len(live)):  # a refresh at the cap is still taken
            return self._too_many(cap)
        growth = len(after) - len(before)
        if growth > 0 and self.bindings + growth > self.limits.max_bindings:
            # RFC 3261 21.5.4: temporarily out of room; bindings expire, so retry after the next
            retry = max(1, int((self.get_timer() or now + 60) - now) + 1)
            return _reply(503, None, [("Retry-After", str(retry)), self._warning(
                f"registrar full: {self.limits.max_bindings} bindings")])
        # 10.3 step 8: the answer lists every current binding with its remaining time.
        return self._done(aor, before, after, now, request)

    def _too_many(self, cap: int) -> Reply:
        # decision (docs/decisions.md): RFC 3261 has no code for it; 403 (21.4.4: the same
        # request will not succeed later), never a silent drop of older bindings
        text = f"too many contacts: at most {cap} per address-of-record"
        return _reply(403, None, [self._warning(text)])

    def _warning(self, text: str) -> Header:
        return ("Warning", str(Warning.ours(self.host, text)))  # RFC 3261 20.43

    @staticmethod
    def _check_order(binding: Binding, request: Request) -> None:
        # 10.3 step 7: same Call-ID needs a higher CSeq, else the whole update fails.
        if binding.call_id == request.call_id and request.cseq <= binding.cseq:
            raise BadRequest(500, "Out Of Order REGISTER")

    def _done(
        self, aor: Uri, before: tuple[Binding, ...], after: tuple[Binding, ...], now: float,
        request: Request,
    ) -> Reply:
        live_before = tuple(b for b in before if b.expires_at > now)
        if after != before:
            self._put(aor, before, after)
            if after != live_before:
                self._notify(RegistrationChange(aor, live_before, after))
        headers: list[Header] = [("Contact", f"<{b.contact}>;expires={b.remaining(now)}")
                                 for b in after]
        # RFC 3327 5.3: the stored Path goes back only to a UA that said it supports path
        if any(tag.lower() == "path" for tag in request.headers("supported")):
            headers += [("Path", value) for value in request.headers("path")]
        return _reply(200, None, headers)

    def _commit(
        self, aor: Uri, before: tuple[Binding, ...], after: tuple[Binding, ...], *, expired: bool
    ) -> RegistrationChange:
        self._put(aor, before, after)
        change = RegistrationChange(aor, before, after, expired)
        self._notify(change)
        return change

    def _put(self, aor: Uri, before: tuple[Binding, ...], after: tuple[Binding, ...]) -> None:
        self.store.put(aor, after)
        self.bindings += len(after) - len(before)

    def _notify(self, change: RegistrationChange) -> None:
        if self._on_change is not None:
            self._on_change(change)


# --------------------------------------------------------------------------------------------
# Registering client (sans-I/O)


class RegistrationState(StrEnum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    UNREGISTERING = "unregistering"
    FAILED = "failed"


class Registration:
    """One AOR registering one contact (RFC 3261 10.2), refreshed at half the granted time.

    Only one REGISTER is outstanding at a time (10.2); all share one Call-ID with increasing
    CSeq (10.2.4). A failed attempt is retried after ``retry_after`` seconds (or the response's
    Retry-After) while registration is wanted.
    """

    def __init__(
        self,
        *,
        registrar: str,
        aor: str,
        contact: str,
        expires: int = 3600,
        retry_after: float = 60.0,
        call_id: str | None = None,
    ) -> None:
        self.registrar = registrar
        self.aor = aor
        self.contact = addr_spec(contact) if "<" in contact else contact  # a URI from here on
        self.requested = expires
        self.retry_after = retry_after
        self.call_id = call_id or f"{secrets.token_hex(8)}@mcacm"
        self.from_tag = secrets.token_hex(6)
        self.cseq = 0
        self.state = RegistrationState.IDLE
        self.others: tuple[str, ...] = ()
        """Other contacts the registrar listed for our AOR in its last 2xx (RFC 3261 10.3
        step 8 returns every binding): another device of the same user is logged on."""
        self.granted: int | None = None
        self.expires_at: float | None = None
        self.last_status: int | None = None
        self._refresh_at: float | None = None
        self._sent_expires = expires
        self._wanted = False
        self._pending = False

    def register(self, now: float) -> RequestSpec | None:
        """Start (or restart) registering; None while a REGISTER is still outstanding."""
        self._wanted = True
        if self._pending:
            return None
        self.state = RegistrationState.REGISTERING
        return self._send(self.requested)

    def unregister(self, now: float) -> RequestSpec | None:
        """Remove our binding (Expires: 0, RFC 3261 10.2.2); None if nothing to remove."""
        self._wanted = False
        self._refresh_at = None
        if self.state in (RegistrationState.IDLE, RegistrationState.FAILED):
            return None
        self.state = RegistrationState.UNREGISTERING
        return self._send(0)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` has something to do."""
        return None if self._pending else self._refresh_at

    def handle_timer(self, now: float) -> RequestSpec | None:
        """The refresh (or retry) REGISTER when it is due."""
        if self._pending or self._refresh_at is None or now < self._refresh_at or not self._wanted:
            return None
        self._refresh_at = None
        return self._send(self.requested)

    def on_response(self, response: Response | None, now: float) -> RequestSpec | None:
        """Feed the final response (None: timeout or transport error); returns a retry if any."""
        self._pending = False
        self.last_status = response.status if response is not None else None
        if response is not None and 200 <= response.status < 300:
            if self._sent_expires == 0:
                self._settle(RegistrationState.IDLE, None)
                return None
            granted = self._granted(response)
            ours = try_identity(self.contact)
            self.others = tuple(
                addr_spec(v) for v in response.headers("contact")
                if try_identity(addr_spec(v)) not in (ours, None))
            if granted == 0:  # the registrar did not keep our contact
                self._fail(response, now)
                return None
            self.granted = granted
            self.expires_at = now + granted
            self.state = RegistrationState.REGISTERED
            self._refresh_at = now + granted / 2 if self._wanted else None
            return None
        if response is not None and response.status == 423:
            # RFC 3261 10.2.8: retry with at least Min-Expires.
            try:
                minimum = parse_expires(response.header("min-expires"))
            except BadRequest:
                minimum = None
            if minimum is not None and minimum > self._sent_expires and self._wanted:
                self.requested = minimum
                return self._send(minimum)
        if self._sent_expires == 0:
            self._settle(RegistrationState.IDLE, None)  # our binding will expire anyway
            return None
        self._fail(response, now)
        return None

    def _granted(self, response: Response) -> int:
        """The interval granted to our contact: its ``expires`` parameter in the 200, else the
        Expires header, else what we asked (RFC 3261 10.2.4)."""
        ours = try_identity(self.contact)
        for value in response.headers("contact") if ours is not None else ():
            try:
                if try_identity(addr_spec(value)) != ours:  # 10.2.4: by 19.1.4
                    continue
                found = _contact_expires(value)
            except BadRequest:
                continue
            if found is not None:
                return found
        try:
            header = parse_expires(response.header("expires"))
        except BadRequest:
            header = None
        return header if header is not None else self._sent_expires

    def _fail(self, response: Response | None, now: float) -> None:
        self.state = RegistrationState.FAILED
        self.granted = None
        self.expires_at = None
        hint = parse_retry_after(response.header("retry-after")) if response is not None \
            else None
        retry = self.retry_after if hint is None else float(hint)
        self._refresh_at = now + retry if self._wanted else None
        return None

    def _settle(self, state: RegistrationState, refresh_at: float | None) -> None:
        self.state = state
        self.granted = None
        self.expires_at = None
        self._refresh_at = refresh_at

    def _send(self, expires: int) -> RequestSpec:
        self._pending = True
        self._sent_expires = expires
        self.cseq += 1  # RFC 3261 10.2.4: same Call-ID, CSeq increasing
        return RequestSpec(
            method="REGISTER",
            uri=self.registrar,
            from_uri=self.aor,
            to_uri=self.aor,
            from_tag=self.from_tag,
            call_id=self.call_id,
            cseq=self.cseq,
            # RFC 3327 4: we can be reached through the proxies a registrar learns by Path
            headers=(("Expires", str(expires)), ("Supported", "path")),
            contact=f"<{self.contact}>",
        )


__all__ = [
    "Authorise",
    "Binding",
    "BindingStore",
    "MemoryBindingStore",
    "Registrar",
    "Registration",
    "RegistrationChange",
    "RegistrationObserver",
    "RegistrationState",
    "contact_key",
]
