"""Group-related ACM at the partner (23.280 10.17.4): what it applied per group, kept in the
store (schema 3), upgraded from schema 2, and read by ``mcacm groups`` without writing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcacm_sip.acm.model import (
    Addressee,
    GroupMembershipUpdateRequest,
    GroupOperation,
    Party,
)
from mcacm_sip.core.events import Put
from mcacm_sip.core.groups import PartnerGroup, apply_membership, apply_provision, group_key
from mcacm_sip.core.identity import id_key
from mcacm_sip.store import MemoryStore, SqliteStore, Store
from mcacm_sip.store.sqlite import SCHEMA_VERSION, StoreError, read_groups

PRIMARY = "sip:acms@primary.example"
GROUP = "sip:grp-interop-1@primary.example"


def _update(op: GroupOperation, *users: str, group: str = GROUP) -> GroupMembershipUpdateRequest:
    return GroupMembershipUpdateRequest("t-1", Party("sip:carol@primary.example"),
                                        Addressee("sip:dave@partner.example"), group, users, op)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    return SqliteStore(str(tmp_path / "s.sqlite"))


def test_a_partner_group_round_trips(store: Store) -> None:
    group = PartnerGroup(PRIMARY, GROUP, True, ("sip:erin@partner.example",), 12.5)
    store.apply([Put(group)])
    assert store.load().groups == (group,)


def test_add_is_idempotent_and_compares_users_as_uris() -> None:
    # a repeat in another spelling (host case, an escaped unreserved character) adds nobody
    g = apply_membership(None, PRIMARY, _update(GroupOperation.ADD, "sip:erin@partner.example"),
                         1.0)
    g = apply_membership(g, PRIMARY, _update(GroupOperation.ADD, "sip:%65rin@PARTNER.example",
                                             "sip:frank@partner.example"), 2.0)
    assert g.members == ("sip:erin@partner.example", "sip:frank@partner.example")
    assert g.updated == 2.0 and not g.provisioned


def test_delete_removes_only_listed_members_and_tolerates_non_members() -> None:
    g = apply_membership(None, PRIMARY, _update(GroupOperation.ADD, "sip:erin@partner.example",
                                                "sip:frank@partner.example"), 1.0)
    g = apply_membership(g, PRIMARY, _update(GroupOperation.DELETE, "sip:ERIN@partner.example",
                                             "sip:zed@partner.example"), 2.0)
    # the user part is case-sensitive (RFC 3261 19.1.4): ERIN is not erin
    assert g.members == ("sip:erin@partner.example", "sip:frank@partner.example")
    g = apply_membership(g, PRIMARY, _update(GroupOperation.DELETE, "sip:erin@Partner.Example"),
                         3.0)
    assert g.members == ("sip:frank@partner.example",)


def test_provision_keeps_members_and_one_record_per_peer_and_group() -> None:
    g = apply_membership(None, PRIMARY, _update(GroupOperation.ADD, "sip:erin@partner.example"),
                         1.0)
    p = apply_provision(g, PRIMARY, "sip:GRP-interop-1@primary.example", 2.0)
    assert p.provisioned and p.members == g.members and p.key == g.key
    other = apply_provision(None, "sip:acms@other.example", GROUP, 2.0)
    assert other.key != g.key == group_key("sip:acms@PRIMARY.example", GROUP)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(GroupOperation)),
                          st.lists(st.sampled_from("abcde"), min_size=1, max_size=3,
                                   unique=True)), max_size=12))
def test_membership_is_the_set_the_operations_describe(
        ops: list[tuple[GroupOperation, list[str]]]) -> None:
    """Property: after any sequence of accepted updates the members are exactly the users
    added and not deleted since, each once."""
    expected: set[str] = set()
    group: PartnerGroup | None = None
    for n, (op, names) in enumerate(ops):
        users = tuple(f"sip:{x}@partner.example" for x in names)
        group = apply_membership(group, PRIMARY, _update(op, *users), float(n))
        expected = expected | set(users) if op is GroupOperation.ADD else expected - set(users)
    members = group.members if group is not None else ()
    assert sorted(members) == sorted(expected)
    assert len({id_key(m) for m in members}) == len(members)


def test_a_schema_2_store_gains_the_groups_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    SqliteStore(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE groups")
    db.execute("UPDATE meta SET value='2' WHERE name='schema'")
    db.commit()
    db.close()
    assert read_groups(str(path)) == []  # a schema-2 file holds no groups (read-only look)
    store = SqliteStore(str(path))
    group = PartnerGroup(PRIMARY, GROUP, True)
    store.apply([Put(group)])
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE name='schema'").fetchone() == (
        str(SCHEMA_VERSION),)
    db.close()
    assert read_groups(str(path)) == [group]


def test_read_groups_never_creates_or_writes_a_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sqlite"
    with pytest.raises(StoreError):
        read_groups(str(missing))
    assert not missing.exists()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError):
        read_groups(str(garbage))
