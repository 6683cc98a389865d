"""What an endpoint serves, and the answers RFC 3261 8.2 gives before any handler runs.

Sans-I/O: the asyncio endpoint and the in-memory test pair ask :meth:`Served.answer` first and
call their handler only when it says nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from .dialog import Reply
from .headers import media_type
from .message import Request
from .uri import uri_scheme

SERVED_SCHEMES = frozenset({"sip", "sips", "tel"})
"""Request-URI schemes we serve (RFC 3261 8.2.2.1)."""


class Served:
    """The methods served, each with the body media types it accepts (None: any)."""

    __slots__ = ("_accept", "_passed", "allow")

    def __init__(self) -> None:
        self._accept: dict[str, frozenset[str] | None] = {}
        # (method, Request-URI, first Content-Type value) of requests that went to their
        # handler whatever their body: the same three pass again without the checks (a node
        # gets a few; capped, emptied when what is served changes)
        self._passed: set[tuple[str, str, str | None]] = set()
        self.allow = "OPTIONS"
        """The Allow header value: OPTIONS and every served method (RFC 3261 20.5)."""

    def add(self, method: str, accept: Iterable[str] | None = None) -> None:
        """Serve ``method``; ``accept`` lists the body media types it takes."""
        self._accept[method] = frozenset(m.lower() for m in accept) if accept is not None else None
        self._passed.clear()
        self.allow = ", ".join(sorted({"OPTIONS", *self._accept}))

    def __contains__(self, method: object) -> bool:
        return method in self._accept

    def accept_header(self) -> str:
        return ", ".join(sorted({t for a in self._accept.values() if a for t in a}))

    def answer(self, req: Request) -> Reply | None:
        """The answer owed before a handler (405, 416, 420, 415, or OPTIONS' 200), or None
        when the request goes to the handler of its method."""
        store = req.store
        types = store.get("content-type")
        key = (req.method, req.uri, types[0] if types else None)
        if "require" not in store and key in self._passed:  # (a stored header has a value)
            return None
        served = req.method in self._accept
        if not served and req.method != "OPTIONS":
            return Reply(405, headers=(("Allow", self.allow),))  # RFC 3261 8.2.1
        # RFC 3261 8.2.2.1 (RFC 4475 3.3.2, 3.3.3): a scheme we do not serve gets 416.
        if uri_scheme(req.uri) not in SERVED_SCHEMES:
            return Reply(416)
        required = store.get("require")
        if required:  # RFC 3261 8.2.2.3 (RFC 4475 3.3.5, OPTIONS too): we support no extension
            return Reply(420, headers=(("Unsupported", ", ".join(required)),))
        if not served:  # RFC 3261 11.2
            accept = self.accept_header()
            hdrs = (("Allow", self.allow),) + ((("Accept", accept),) if accept else ())
            return Reply(200, headers=hdrs)
        accepted = self._accept[req.method]
        # (req.content_type, without its two calls: "content-type" has no compact form)
        if accepted is not None and media_type(key[2]) not in accepted:
            if req.body:  # RFC 3261 8.2.3, 21.4.13
                return Reply(415, headers=(("Accept", ", ".join(sorted(accepted))),))
        elif len(self._passed) < 256:  # (no Require: it would have been answered above)
            self._passed.add(key)
        return None


__all__ = ["SERVED_SCHEMES", "Served"]
