"""Configuration loading (errors name the key) and local policy rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcacm_sip.acm.codec import profile_from_xml
from mcacm_sip.acm.model import (
    AcmRequest,
    Addressee,
    AddUserConfigurationRequest,
    GroupMembershipUpdateRequest,
    GroupOperation,
    InterconnectionGroupProvisionRequest,
    Party,
    ProfileUpdateRequest,
    Urgency,
)
from mcacm_sip.core import config as config_module
from mcacm_sip.core.config import ConfigError, Timers, parse_acms_config
from mcacm_sip.core.policy import Policy, PolicyAction, PolicyRule, assess
from mcacm_sip.runtime.config import load_acmc_node, load_acms_node

from .harness import PROFILE_XML, UPDATED_XML

FULL = """
psi = "sip:acms@partner.example"
automatic_handler = "sip:robot@partner.example"
fa_selection = "round-robin"
functional_aliases = ["sip:duty@partner.example"]

[sip]                       # the runtime's table, beside the core's keys
trust = "lab"

[timers]
decision_timeout = 600
retry_max = 30

[migration]
id_template = "sip:{user}-{n}@partner.example"
profile_file = "profile.xml"

[store]
path = "acms.sqlite"
synchronous = "full"

[[peers]]
psi = "sip:acms@primary.example"
domains = ["primary.example"]
requesters = ["sip:*@primary.example"]
flows = ["profile-update-request"]

[[users]]
id = "sip:dave@partner.example"
decide = ["profile-update-request"]

[[policy]]
flow = "profile-update-request"
action = "reject"
profile_contains = "PrivateCall"
reason = "needs a person"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "profile.xml").write_text(PROFILE_XML)
    path = tmp_path / "acms.toml"
    path.write_text(text)
    return path


def test_full_configuration_loads(tmp_path: Path) -> None:
    c = load_acms_node(write(tmp_path, FULL)).acms
    assert c.handler_id == "sip:robot@partner.example"
    assert c.fa_selection == "round-robin"
    assert c.timers == Timers(decision_timeout=600.0, retry_max=30.0)
    assert c.timers.answer_timeout == 4200.0
    assert c.migration.assign("sip:mike@primary.example", 3) == "sip:mike-3@partner.example"
    assert c.migration.profile == profile_from_xml(PROFILE_XML)
    assert c.store.path == str(tmp_path / "acms.sqlite") and c.store.synchronous == "FULL"
    assert c.peers[0].flows == ("profile-update-request",)
    assert c.users[0].may_decide == ("profile-update-request",) and c.users[0].may_request == ()
    assert c.policy[0].action is PolicyAction.REJECT


@pytest.mark.parametrize(("change", "key"), [
    (('psi = "sip:acms@partner.example"', 'psi = "not a uri"'), "psi"),
    (('fa_selection = "round-robin"', 'fa_selection = "random"'), "fa_selection"),
    (("decision_timeout = 600", "decision_timeout = -1"), "timers.decision_timeout"),
    (("retry_max = 30", 'retry_max = "soon"'), "timers.retry_max"),
    (("retry_max = 30", "retry_maxx = 30"), "timers.retry_maxx"),
    (('flows = ["profile-update-request"]', 'flows = ["group-update"]'), "peers[0].flows[0]"),
    (('id = "sip:dave@partner.example"', 'id = 7'), "users[0].id"),
    (('action = "reject"', 'action = "maybe"'), "policy[0].action"),
    (('profile_contains = "PrivateCall"', 'profile_regex = "(["'), "policy[0].profile_regex"),
    (('id_template = "sip:{user}-{n}@partner.example"', 'id_template = "sip:{nope}"'),
     "migration.id_template"),
    (('profile_file = "profile.xml"', 'profile_file = "missing.xml"'),
     "migration.profile_file"),
    (('synchronous = "full"', 'synchronous = "OFF"'), "store.synchronous"),
    (('automatic_handler', 'automatic_handlr'), "automatic_handlr"),
])
def test_errors_name_the_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    old, new = change
    assert old in FULL
    with pytest.raises(ConfigError) as err:
        load_acms_node(write(tmp_path, FULL.replace(old, new, 1)))
    assert err.value.key == key


def test_the_core_reads_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """core/config.py validates values; reading files is the runtime's (issue 14): a document
    that names a file is refused by the core alone, even where the file exists, and the
    store path stays as written."""
    (tmp_path / "profile.xml").write_text(PROFILE_XML)
    monkeypatch.chdir(tmp_path)
    data = {"psi": "sip:acms@partner.example", "store": {"path": "acms.sqlite"},
            "migration": {"id_template": "sip:{user}-{n}@partner.example",
                          "profile_file": "profile.xml"}}
    with pytest.raises(ConfigError) as err:
        parse_acms_config(data)
    assert err.value.key == "migration.profile_file"
    del data["migration"]
    assert parse_acms_config(data).store.path == "acms.sqlite"
    source = Path(config_module.__file__).read_text(encoding="utf-8")
    assert "tomllib" not in source and "open(" not in source and "read_text" not in source


PG_STORE = '[store]\nurl = "postgresql://acms@db.example/acms"\nworker_id = "acms-2"\n'


def test_a_postgresql_store_with_its_worker(tmp_path: Path) -> None:
    sqlite = '[store]\npath = "acms.sqlite"\nsynchronous = "full"\n'
    worker = FULL.replace("{n}@partner", "{n}.{worker}@partner")  # docs/scale-out.md
    c = load_acms_node(write(tmp_path, worker.replace(sqlite, PG_STORE))).acms.store
    assert (c.path, c.url, c.worker_id, c.lease_seconds) == (
        None, "postgresql://acms@db.example/acms", "acms-2", 10.0)
    text = worker.replace(sqlite, PG_STORE + "lease_seconds = 4\n")
    assert load_acms_node(write(tmp_path, text)).acms.store.lease_seconds == 4.0


@pytest.mark.parametrize(("store", "key"), [
    (PG_STORE + 'path = "acms.sqlite"\n', "store.url"),              # both engines
    (PG_STORE.replace('worker_id = "acms-2"\n', ""), "store.worker_id"),  # who am I?
    (PG_STORE.replace('"acms-2"', '" "'), "store.worker_id"),
    (PG_STORE.replace("postgresql://", "mysql://"), "store.url"),
    (PG_STORE + "lease_seconds = 0.5\n", "store.lease_seconds"),
    (PG_STORE + 'lease_seconds = "long"\n', "store.lease_seconds"),
    (PG_STORE + 'synchronous = "FULL"\n', "store.synchronous"),       # SQLite only
    ('[store]\npath = "a.sqlite"\nworker_id = "w"\n', "store.worker_id"),  # one worker
    ('[store]\npath = "a.sqlite"\nlease_seconds = 5\n', "store.lease_seconds"),
])
def test_store_engine_errors_name_the_key(tmp_path: Path, store: str, key: str) -> None:
    text = FULL.replace('[store]\npath = "acms.sqlite"\nsynchronous = "full"\n', store)
    with pytest.raises(ConfigError) as err:
        load_acms_node(write(tmp_path, text))
    assert err.value.key == key


def test_bad_profile_and_bad_toml_are_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    (tmp_path / "profile.xml").write_text("<not-a-profile/>")
    with pytest.raises(ConfigError) as err:
        load_acms_node(path)
    assert err.value.key == "migration.profile_file"
    path.write_text("psi = ")
    with pytest.raises(ConfigError):
        load_acms_node(path)


def test_acmc_configuration(tmp_path: Path) -> None:
    path = tmp_path / "acmc.toml"
    path.write_text('mc_service_id = "sip:dave@partner.example"\n'
                    'acms_psi = "sip:acms@partner.example"\nrequest_timeout = 60\n'
                    '[sip]\ntrust = "lab"\n')
    c = load_acmc_node(path).acmc
    assert (c.mc_service_id, c.request_timeout) == ("sip:dave@partner.example", 60.0)
    path.write_text('acms_psi = "sip:acms@partner.example"\n')
    with pytest.raises(ConfigError) as err:
        load_acmc_node(path)
    assert err.value.key == "mc_service_id"


# --------------------------------------------------------------------------- policy

UPDATE = ProfileUpdateRequest("t", Party("sip:alice@primary.example"),
                              Addressee(functional_alias="sip:duty@partner.example"),
                              "sip:mike-1@partner.example", profile_from_xml(UPDATED_XML))
ADD = AddUserConfigurationRequest("t", Party("sip:alice@primary.example"),
                                  ("sip:mike@primary.example", "sip:nina@primary.example"))


def test_first_matching_rule_decides_and_default_is_manual() -> None:
    rules = (PolicyRule(PolicyAction.REJECT, requester="sip:bob@*"),
             PolicyRule(PolicyAction.APPROVE, ProfileUpdateRequest.FLOW,
                        target="sip:duty@*", reason="duty desk"),
             PolicyRule(PolicyAction.REJECT))
    d = assess(rules, UPDATE)
    assert (d.action, d.rule, d.reason) == (PolicyAction.APPROVE, 1, "duty desk")
    assert assess(rules, ADD).rule == 2
    assert assess((), UPDATE).action is PolicyAction.MANUAL


@pytest.mark.parametrize(("rule", "update", "add"), [
    (PolicyRule(PolicyAction.APPROVE, profile_contains="PrivateCall"), True, False),
    (PolicyRule(PolicyAction.APPROVE, profile_contains="Private"), False, False),
    (PolicyRule(PolicyAction.APPROVE, profile_regex=r"Mike \(updated\)"), True, False),
    (PolicyRule(PolicyAction.APPROVE, migrated_user="sip:mike*@*"), True, False),
    (PolicyRule(PolicyAction.APPROVE, migrated_user="sip:*@primary.example"), False, True),
    (PolicyRule(PolicyAction.APPROVE, target="sip:dave@*"), False, False),
    (PolicyRule(PolicyAction.APPROVE, flow=AddUserConfigurationRequest.FLOW), False, True),
])
def test_rule_conditions(rule: PolicyRule, update: bool, add: bool) -> None:
    assert rule.matches(UPDATE) is update
    assert rule.matches(ADD) is add


# --------------------------------------------------------------------------- group-related ACM

GROUPS = FULL.replace('flows = ["profile-update-request"]', '''flows = ["profile-update-request"]
groups = ["sip:*@primary.example"]''').replace('decide = ["profile-update-request"]', '''\
decide = ["group-membership-update-request", "interconnection-group-provision-request"]
groups = ["sip:grp-interop-*@primary.example", "sip:grp-ops@primary.example"]''') + '''
[[policy]]
flow = "group-membership-update-request"
action = "approve"
group = "sip:grp-interop-*@primary.example"
operation = "add"
urgency = "high"
'''


def test_group_authorisation_and_policy_load(tmp_path: Path) -> None:
    c = load_acms_node(write(tmp_path, GROUPS)).acms
    assert c.peers[0].groups == ("sip:*@primary.example",)
    dave = c.users[0]
    assert dave.may_group("sip:grp-interop-7@PRIMARY.example")
    assert not dave.may_group("sip:grp-command@primary.example")
    rule = c.policy[1]
    assert (rule.group, rule.operation, rule.urgency) == (
        "sip:grp-interop-*@primary.example", "add", "high")
    # absent: every group (the flow rights still decide who may do what)
    assert load_acms_node(write(tmp_path, FULL)).acms.users[0].groups == ("*",)


@pytest.mark.parametrize(("change", "key"), [
    (('groups = ["sip:*@primary.example"]', 'groups = "sip:*@primary.example"'),
     "peers[0].groups"),
    (('groups = ["sip:*@primary.example"]', 'groups = ["sip:grp*"]'), "peers[0].groups[0]"),
    (('"sip:grp-ops@primary.example"]', '42]'), "users[0].groups[1]"),
    (('operation = "add"', 'operation = "replace"'), "policy[1].operation"),
    (('urgency = "high"', 'urgency = "urgent"'), "policy[1].urgency"),
    (('group = "sip:grp-interop-*@primary.example"', 'group = "grp interop"'),
     "policy[1].group"),
    (('"interconnection-group-provision-request"]', '"group-provision"]'), "users[0].decide[1]"),
])
def test_group_errors_name_the_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    old, new = change
    assert old in GROUPS
    with pytest.raises(ConfigError) as err:
        load_acms_node(write(tmp_path, GROUPS.replace(old, new, 1)))
    assert err.value.key == key


def _gmu(group: str, op: str, urgency: str | None) -> GroupMembershipUpdateRequest:
    return GroupMembershipUpdateRequest("t", Party("sip:a@primary.example"),
                                        Addressee("sip:d@partner.example"), group,
                                        ("sip:e@partner.example",), GroupOperation(op),
                                        Urgency(urgency) if urgency else None)


_IGP = InterconnectionGroupProvisionRequest(
    "t", Party("sip:a@primary.example"), Addressee("sip:d@partner.example"),
    ("sip:grp-1@primary.example", "sip:grp-2@primary.example"))
_UPDATE = ProfileUpdateRequest("t", Party("sip:a@primary.example"),
                               Addressee("sip:d@partner.example"), "sip:m@partner.example",
                               profile_from_xml(PROFILE_XML))


@pytest.mark.parametrize(("rule", "request_", "matches"), [
    (PolicyRule(PolicyAction.APPROVE, group="sip:grp-*@primary.example"),
     _gmu("sip:grp-1@primary.example", "add", None), True),
    (PolicyRule(PolicyAction.APPROVE, group="sip:grp-*@primary.example"), _IGP, True),
    (PolicyRule(PolicyAction.APPROVE, group="sip:grp-1@primary.example"), _IGP, False),
    (PolicyRule(PolicyAction.APPROVE, group="*"), _UPDATE, False),
    (PolicyRule(PolicyAction.APPROVE, operation="delete"),
     _gmu("sip:grp-1@primary.example", "add", None), False),
    (PolicyRule(PolicyAction.APPROVE, operation="add"), _IGP, False),
    (PolicyRule(PolicyAction.APPROVE, urgency="normal"),
     _gmu("sip:grp-1@primary.example", "add", None), True),
    (PolicyRule(PolicyAction.APPROVE, urgency="normal"),
     _gmu("sip:grp-1@primary.example", "add", "low"), False),
    (PolicyRule(PolicyAction.APPROVE, urgency="high", operation="delete"),
     _gmu("sip:grp-1@primary.example", "delete", "high"), True),
    (PolicyRule(PolicyAction.APPROVE, migrated_user="*"),
     _gmu("sip:grp-1@primary.example", "add", None), False),
    (PolicyRule(PolicyAction.APPROVE, profile_contains="Name"), _IGP, False),
], ids=range(11))
def test_group_rule_conditions(rule: PolicyRule, request_: AcmRequest, matches: bool) -> None:
    assert rule.matches(request_) is matches


_RULES = st.builds(
    PolicyRule, st.sampled_from(list(PolicyAction)),
    st.sampled_from(["*", ProfileUpdateRequest.FLOW, AddUserConfigurationRequest.FLOW,
                     "group-membership-update-request"]),
    requester=st.none() | st.sampled_from(["sip:a@*", "sip:alice@*", "*"]),
    target=st.none() | st.sampled_from(["sip:d@*", "sip:duty@*"]),
    profile_contains=st.none() | st.just("Name"),
    group=st.none() | st.just("sip:grp-*@primary.example"),
    reason=st.none() | st.just("why"))


@given(rules=st.lists(_RULES, max_size=5),
       requests=st.lists(st.sampled_from([UPDATE, ADD, _UPDATE, _IGP,
                                          _gmu("sip:grp-1@primary.example", "add", None)]),
                         min_size=1, max_size=6))
def test_the_cores_policy_decides_as_assess(rules: list[PolicyRule],
                                            requests: list[AcmRequest]) -> None:
    # Policy keeps each flow's rules and decisions between requests: the same answer as the
    # rule list read from the start, whatever came before
    policy = Policy(rules)
    for request in requests:
        assert policy.assess(request) == assess(rules, request)


_XMLISH = st.text(alphabet=st.sampled_from(list("<>/: \t.-_xéNameRoutine")), max_size=60)


@given(name=st.sampled_from(["Name", "Routine", "x", "a.b-c", "é"]),
       parts=st.lists(_XMLISH | st.sampled_from(["<Name/>", "<p:Name>", "<Name ", "<.:Name>",
                                                 "<Routine>", "<:Name>", "Name>", "<a<Name/"]),
                      max_size=8))
def test_an_element_is_found_as_the_patterns_search_from_the_start_finds_it(
        name: str, parts: list[str]) -> None:
    """``profile_contains`` is searched from the ``<`` nearest before the name's first
    occurrence: the answer of the pattern's search over the whole profile."""
    rule = PolicyRule(PolicyAction.APPROVE, profile_contains=name)
    xml = "".join(parts)
    assert rule._element is not None
    assert rule._has_element(xml) is (rule._element.search(xml) is not None)

