"""Bounds on the state an ACMS keeps for others (issue 13 item 4; docs/decisions.md "Retained
state quotas"): a maximum profile size, per-peer quotas of open transactions and retained bytes,
and a ceiling on the retained bytes of all transactions.  Past a bound a new request is refused
with a defined answer before anything is stored; nothing here ever drops what was accepted.

:class:`QuotaBook` keeps the accounting: the core tells it every transaction record it keeps
(``track``) and drops (``forget``), and asks it before it opens one (``refusal``).  Sizes are
estimates of what the store keeps (:func:`footprint`): the profile documents dominate them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Final

from mcacm_sip.acm.model import FLOW_TYPES, AcmFlow, AcmRequest, ProfileUpdateRequest
from mcacm_sip.core.state import Role, Transaction, TxState

# Members as globals: Python 3.11 finds `Enum.MEMBER` through EnumType's __getattr__
# hook, far slower than a global's load (3.12 dropped the hook).
_PARTNER: Final = Role.PARTNER
_DONE: Final = TxState.DONE

FLOW_OVERHEAD = 512
"""Bytes counted for a flow besides its profiles, identities and free text (its XML frame)."""
USER_OVERHEAD = 64
"""Bytes counted per listed user besides the identities' own length."""


@dataclass(frozen=True, slots=True)
class Quotas:
    """``[limits]`` of the ACMS TOML (runtime.config.AcmsLimits carries the values)."""

    max_profile_bytes: int = 131072
    """Largest MC service user profile (canonical XML) in a request; larger: 413."""
    max_open_per_peer: int = 2000
    """Partner transactions of one peer ACMS not yet done; more: 503 + Retry-After."""
    max_bytes_per_peer: int = 64 << 20
    """Bytes retained for one peer ACMS's transactions (open or kept for duplicates); more:
    503 + Retry-After."""
    max_store_bytes: int = 512 << 20
    """Bytes retained for all transactions (both roles); more: 503 + Retry-After."""
    retry_after: int = 5
    """Retry-After (seconds, RFC 3261 20.33) of those 503 answers."""
    download_items: int = 50
    """Most pending items in one download response (one page)."""
    download_bytes: int = 49152
    """Most bytes (:func:`flow_bytes`) of pending items in one download response; a single
    larger item still goes, alone.  The default keeps a page within one UDP datagram."""


@dataclass(frozen=True, slots=True)
class QuotaRefusal:
    """The SIP answer a request past a bound gets: ``status``, the Warning text, and for
    503 the Retry-After."""

    status: int
    warning: str
    retry_after: int | None = None


def _profile_bytes(flow: object) -> int:
    profile = getattr(flow, "profile", None)
    return len(profile.xml) if profile is not None else 0


_SIZED = frozenset({"profile", "additional_info", "users"})
_FRAME_ONLY = frozenset(cls for cls in FLOW_TYPES if not _SIZED & {f.name for f in fields(cls)})
"""Flow classes without a profile, free text or user list: their estimate is the frame alone
(a process indication, most responses)."""


def flow_bytes(flow: AcmFlow | None) -> int:
    """Estimated stored size of ``flow``: its frame, profiles, free text and user lists."""
    if flow is None:
        return 0
    return FLOW_OVERHEAD if type(flow) in _FRAME_ONLY else sized_bytes(flow)


def sized_bytes(flow: AcmFlow) -> int:
    """:func:`flow_bytes` read field by field (the estimate of any flow)."""
    size = FLOW_OVERHEAD + _profile_bytes(flow) + len(getattr(flow, "additional_info", None)
                                                      or "")
    for user in getattr(flow, "users", ()):
        if isinstance(user, str):
            size += USER_OVERHEAD + len(user)
        else:  # a per-user result (UserAssignment / UserRemoval), possibly with a profile
            size += USER_OVERHEAD + len(user.primary_id) + len(user.partner_id or "") \
                + _profile_bytes(user)
    return size


def page(sizes: Iterable[int], max_items: int, max_bytes: int) -> int:
    """How many of the leading items of ``sizes`` one page takes: at most ``max_items`` and
    ``max_bytes`` together, and at least one (an item larger than a page goes alone)."""
    taken = total = 0
    for size in sizes:
        if taken and (taken >= max_items or total + size > max_bytes):
            break
        taken, total = taken + 1, total + size
    return taken


LISTING = frozenset(cls for cls in FLOW_TYPES if "users" in {f.name for f in fields(cls)})
"""Flow classes with a user list (the others have no per-user growth)."""


def growth(req: AcmRequest, local: int = 0) -> int:
    """Bytes a request's transaction adds after it is admitted: the process indication and the
    response frames, a per-user entry in the response for each listed user, and ``local``:
    what our own configuration puts into the answer (the IDs the partner assigns and the
    ``[[migration]]`` profile of 10.17.5.2, see ``AcmsCore._local_answer_bytes``)."""
    if type(req) not in LISTING:
        return 2 * FLOW_OVERHEAD + local
    return 2 * FLOW_OVERHEAD + local + sum(USER_OVERHEAD + len(user)
                                           for user in getattr(req, "users", ())
                                           if isinstance(user, str))


def request_sizes(req: AcmRequest, local: int = 0) -> tuple[int, int, int]:
    """What admission reads of ``req``: its largest profile (its own or a listed user's),
    :func:`flow_bytes` and :func:`growth` -- a profile update's from its two sized fields,
    each read once; any other request's field by field (tests/core/test_quota.py: the same
    three numbers for every request)."""
    if type(req) is ProfileUpdateRequest:  # (its profile is mandatory; no user list)
        largest = len(req.profile.xml)
        return (largest, FLOW_OVERHEAD + largest + len(req.additional_info or ""),
                2 * FLOW_OVERHEAD + local)
    largest = _profile_bytes(req)
    for user in getattr(req, "users", ()):
        largest = max(largest, _profile_bytes(user))
    return largest, flow_bytes(req), growth(req, local)


def footprint(tx: Transaction) -> int:
    """Estimated stored size of a transaction record (request, indication, response)."""
    return flow_bytes(tx.request) + flow_bytes(tx.indication) + flow_bytes(tx.response)


_Seen = tuple[str | None, int, bool, int, AcmFlow | None, int, AcmFlow | None, int]


class QuotaBook:
    """The accounting behind :class:`Quotas`: O(1) per record kept, dropped or checked."""

    __slots__ = ("_asked", "_bytes_of", "_open_of", "_seen", "quotas", "total")

    def __init__(self, quotas: Quotas) -> None:
        self.quotas = quotas
        # key -> (peer, bytes, open, bytes of its request, its indication and their bytes,
        # its response and their bytes): a flow's size is taken once, when the record first
        # holds it (flows are frozen; a new state of a transaction keeps the same objects)
        self._seen: dict[str, _Seen] = {}
        self._open_of: dict[str, int] = {}    # peer PSI -> its open partner transactions
        self._bytes_of: dict[str, int] = {}   # peer PSI -> bytes of its partner transactions
        self._asked: tuple[AcmFlow | None, int] = (None, 0)  # the last request refusal sized
        self.total = 0
        """Bytes of every transaction kept."""

    def track(self, tx: Transaction) -> None:
        """``tx`` is kept (new, or a new state of one already kept)."""
        key, indication, response = tx.key, tx.indication, tx.response
        is_open = tx.state is not _DONE
        seen = self._seen.get(key)
        if seen is not None and seen[4] is indication and seen[6] is response:
            if seen[2] is is_open:
                return  # a new state that holds the same flows and stays (not) open: no change
            # the same flows, now done: the same bytes, one open transaction fewer (the
            # origin's counts of _untrack and the code below, without recounting the bytes)
            peer = seen[0]
            self._seen[key] = (peer, seen[1], is_open, seen[3], indication, seen[5], response,
                               seen[7])
            if peer is not None:
                self._open_of[peer] += 1 if is_open else -1
            return
        if seen is None:
            asked, size = self._asked
            request = size if asked is tx.request else flow_bytes(tx.request)
            ind = flow_bytes(indication) if indication is not None else 0
            resp = flow_bytes(response) if response is not None else 0
        else:
            del self._seen[key]
            self._untrack(seen)
            _, _, _, request, was_indication, ind, was_response, resp = seen
            if indication is not was_indication:
                ind = flow_bytes(indication) if indication is not None else 0
            if response is not was_response:
                resp = flow_bytes(response) if response is not None else 0
        peer = tx.peer if tx.role is _PARTNER else None
        size = request + ind + resp
        self._seen[key] = (peer, size, is_open, request, indication, ind, response, resp)
        self.total += size
        if peer is not None:
            self._bytes_of[peer] = self._bytes_of.get(peer, 0) + size
            if is_open:
                self._open_of[peer] = self._open_of.get(peer, 0) + 1

    def forget(self, key: str) -> None:
        """The transaction ``key`` is no longer kept."""
        seen = self._seen.pop(key, None)
        if seen is not None:
            self._untrack(seen)

    def _untrack(self, seen: _Seen) -> None:
        peer, size, is_open = seen[0], seen[1], seen[2]
        self.total -= size
        if peer is not None:
            self._bytes_of[peer] -= size
            if is_open:
                self._open_of[peer] -= 1

    def open_of(self, peer: str) -> int:
        return self._open_of.get(peer, 0)

    def bytes_of(self, peer: str) -> int:
        return self._bytes_of.get(peer, 0)

    def refusal(self, req: AcmRequest, peer: str | None, local: int = 0
                ) -> QuotaRefusal | None:
        """Whether a new transaction for ``req`` (from peer ACMS ``peer``; None: from one of
        our ACMCs) must be refused, and how; None: it may open.  ``local``: bytes our own
        configuration will add to its answer (:func:`growth`)."""
        q = self.quotas
        profile, asked, grows = request_sizes(req, local)
        if profile > q.max_profile_bytes:
            # decision: a permanent refusal (RFC 3261 21.4.11), nothing stored: the same
            # request stays too large, so the sender must not retry it unchanged
            return QuotaRefusal(413, f"profile-too-large: the profile is {profile} bytes, "
                                f"at most {q.max_profile_bytes} are taken")
        # admission counts what the transaction will hold once answered, so a peer at its
        # quota cannot pass it by the indication and response its requests later add
        self._asked = (req, asked)  # track() takes it when the transaction opens
        size = asked + grows
        if peer is not None:
            if (opened := self._open_of.get(peer, 0)) >= q.max_open_per_peer:
                return self._busy(f"{peer} has {opened} open transactions "
                                  f"(quota {q.max_open_per_peer})")
            if (kept := self._bytes_of.get(peer, 0)) + size > q.max_bytes_per_peer:
                return self._busy(f"{peer} has {kept} bytes retained "
                                  f"(quota {q.max_bytes_per_peer})")
        if self.total + size > q.max_store_bytes:
            return self._busy(f"{self.total} bytes retained (ceiling {q.max_store_bytes})")
        return None

    def _busy(self, why: str) -> QuotaRefusal:
        # RFC 3261 21.5.4 / 20.33: a temporary refusal the sender retries after Retry-After
        return QuotaRefusal(503, f"quota-exceeded: {why}", self.quotas.retry_after)
