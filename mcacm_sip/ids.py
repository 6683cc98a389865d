"""Identifiers made per message: cheap, and unique across restarts and processes.

- :func:`token_hex`: unpredictable text (SIP branches, Call-IDs, tags: RFC 3261 8.1.1.4,
  8.1.1.7, 19.3 want them unique and hard to guess), drawn from the OS's cryptographic random
  source in blocks of 4 KiB rather than one system call per token.
- :func:`unique_hex`: a local key (a send's id, a leg's id) that only has to be unique, not
  secret: 16 random hex digits drawn when the process starts (again in a forked child) and a
  16-digit counter, 32 hex digits like ``uuid4().hex``.
"""

from __future__ import annotations

import os
import threading
from itertools import count

__all__ = ["token_hex", "unique_hex"]

_BLOCK = 4096


class _Pool(threading.local):
    def __init__(self) -> None:
        self.block = (b"", 0)  # the random bytes and the offset of the first not handed out


_POOL = _Pool()


def token_hex(nbytes: int) -> str:
    """``nbytes`` random bytes as hex, as :func:`secrets.token_hex` (same source, buffered)."""
    pool = _POOL
    data, at = pool.block  # one read and one write of the thread's pool: each costs a lookup
    end = at + nbytes
    if end > len(data):
        data, at, end = os.urandom(max(_BLOCK, nbytes)), 0, nbytes
    pool.block = (data, end)
    return data[at:end].hex()


_prefix = ""
_counter = count()
_HEX3 = tuple(f"{n:03x}" for n in range(4096))
"""The last three hex digits of an id, by the counter's low 12 bits (no format per id)."""
_head: tuple[int, str] = (-1, "")
"""The counter's bits above the low 12 and the text of the id before its last three digits
(the prefix and the counter's first 13 hex digits): made once per 4096 ids."""


def _start() -> None:
    """A new random prefix and counter: at import, and in a child after fork (the parent's
    ids go on there, and both must stay distinct; the pool is drawn anew too)."""
    global _prefix, _counter, _head
    _prefix, _counter, _head = os.urandom(8).hex(), count(), (-1, "")
    _POOL.block = (b"", 0)


_start()
os.register_at_fork(after_in_child=_start)


def unique_hex() -> str:
    """32 hex digits unique to this process run: its random prefix and a counter
    (``f"{prefix}{n:016x}"``, tests/test_ids.py)."""
    global _head
    n = next(_counter)  # (atomic: each caller, of any thread, has its own n)
    high, head = _head
    if n >> 12 != high:  # (another thread may have moved it on: made again from n)
        high = n >> 12
        head = f"{_prefix}{high:013x}"
        _head = (high, head)
    return head + _HEX3[n & 0xFFF]
