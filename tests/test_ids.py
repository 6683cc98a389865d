"""Per-message identifiers: unique within a run, across runs and across forked workers;
tokens are random hex of the asked length."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from mcacm_sip import ids


def test_unique_hex_has_the_uuid_hex_shape_and_never_repeats() -> None:
    made = [ids.unique_hex() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", m) for m in made)


def test_a_restart_does_not_repeat_ids() -> None:
    code = "from mcacm_sip import ids; print(ids.unique_hex(), ids.token_hex(8))"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(3)}
    assert len(runs) == 3


def test_a_forked_worker_does_not_repeat_the_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent
        os.write(write, f"{ids.unique_hex()} {ids.token_hex(8)}".encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    mine = [ids.unique_hex() for _ in range(100)], [ids.token_hex(8) for _ in range(100)]
    assert child[0] not in mine[0] and child[1] not in mine[1]
    assert child[0][:16] != mine[0][0][:16]  # a prefix of its own


def test_tokens_are_hex_of_the_length_asked_and_cross_pool_blocks() -> None:
    made = [ids.token_hex(n) for n in (1, 6, 8, 10) * 2000]  # > 4 KiB: several blocks
    assert all(re.fullmatch(r"[0-9a-f]+", t) for t in made)
    assert [len(t) for t in made[:4]] == [2, 12, 16, 20]
    long = [t for t in made if len(t) == 20]
    assert len(set(long)) == len(long)
    assert len(ids.token_hex(5000)) == 10000


@settings(max_examples=30, deadline=None)
@given(start=st.integers(0, 2**64 - 5000), taken=st.integers(1, 4500))
def test_unique_hex_is_the_prefix_and_the_counter_in_hex(start: int, taken: int) -> None:
    """The id made from a cached head and a table of last digits is ``f"{prefix}{n:016x}"``
    for any counter value, across the 4096-id steps of the head."""
    saved = ids._counter, ids._head
    try:
        ids._counter, ids._head = itertools.count(start), (-1, "")
        made = [ids.unique_hex() for _ in range(taken)]
    finally:
        ids._counter, ids._head = saved
    assert made == [f"{ids._prefix}{n:016x}" for n in range(start, start + taken)]
