"""``mcacm`` command line: usage errors, configuration errors naming the key, help examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcacm_sip.cli.main import EX_CONFIG, EX_USAGE, build_parser, main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", ["acms", "acmc", "fa-server"])
def test_every_subcommand_has_an_example(command: str) -> None:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert f"mcacm {command} --config" in out.getvalue()


def test_missing_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["acms"])
    assert exc.value.code == EX_USAGE


@pytest.mark.parametrize(("command", "text", "key"), [
    ("acms", 'psi = "sip:acms@x.example"\n[[peers]]\npsi = 7\n', "peers[0].psi"),
    ("acms", 'psi = "sip:acms@x.example"\n[sip]\ntransport = "sctp"\n', "sip.transport"),
    ("acms", 'psi = "sip:acms@x.example"\n[sip.hops]\n"*" = "sip:host.example"\n', "sip.hops.*"),
    ("acmc", 'mc_service_id = "sip:a@x.example"\n', "acms_psi"),
    ("acmc", 'mc_service_id = "sip:a@x.example"\nacms_psi = "sip:s@x.example"\n'
             '[[listen]]\nport = 70000\n', "listen[0].port"),
    ("fa-server", 'psi = "sip:fa@x.example"\n[[aliases]]\nuri = "sip:d@x.example"\n'
                  "max_simultaneous_activations = 0\n",
     "aliases[0].max_simultaneous_activations"),
    ("fa-server", 'psi = "sip:fa@x.example"\n[log]\nformat = "xml"\n', "log.format"),
    # issue 12 rule 6: an id template that can give two primaries' users the same ID
    ("acms", 'psi = "sip:acms@x.example"\n[migration]\nid_template = "sip:{user}@x.example"\n',
     "migration.id_template"),
    # issue 12 rule 7: patterns are URI patterns (user and host matched separately)
    ("acms", 'psi = "sip:acms@x.example"\n[[peers]]\npsi = "sip:acms@y.example"\n'
             'requesters = ["sip:op*"]\n', "peers[0].requesters[0]"),
    ("acms", 'psi = "sip:acms@x.example"\n[[policy]]\naction = "approve"\n'
             'requester = "sip:admin*"\n', "policy[0].requester"),
])
def test_bad_configuration_exits_78_naming_the_key(
        command: str, text: str, key: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main([command, "--config", str(path)]) == EX_CONFIG
    assert key in capsys.readouterr().err


def test_unreadable_and_invalid_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acms", "--config", str(tmp_path / "missing.toml")]) == EX_CONFIG
    (tmp_path / "x.toml").write_text("psi = \n")
    assert main(["fa-server", "--config", str(tmp_path / "x.toml")]) == EX_CONFIG
    assert "not valid TOML" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted(
    p for p in (ROOT / "examples" / "config").glob("*/*.toml")
    if p.parent.name != "hardened"))  # needs its certificates: tests/test_trust_modes.py
def test_example_configurations_load(path: Path) -> None:
    from mcacm_sip.runtime.config import load_acmc_node, load_acms_node, load_fa_server_node

    if path.stem == "acms":
        config = load_acms_node(path).sip
    elif path.stem == "acmc":
        config = load_acmc_node(path).sip
    else:
        fa = load_fa_server_node(path)
        assert fa.fa.aliases
        config = fa.sip
    # issue 13: shipped examples authenticate by trusted loopback, never lab trust
    assert config.listens and config.trust == "strict" and config.trusted_hosts



@pytest.mark.parametrize("side", ["plain", "hardened"])
def test_example_configurations_show_group_related_acm(side: str, tmp_path: Path) -> None:
    """10.17.4 in the shipped examples: alice may send both group flows for her system's
    grp-* groups only, the partner's peer is home of grp-* only, dave decides both flows, and
    the partner's policy approves adds to open groups alone (10.17.3.2); the commented group
    keys load as written once uncommented."""
    from test_trust_modes import hardened_copy

    from mcacm_sip.acm.model import (
        Addressee,
        GroupMembershipUpdateRequest,
        GroupOperation,
        Party,
        Urgency,
    )
    from mcacm_sip.core.policy import PolicyAction, assess
    from mcacm_sip.runtime.config import load_acms_node

    if side == "hardened":  # with its certificates, as its own test loads it
        paths = {r: hardened_copy(tmp_path) / f"{r}-acms.toml" for r in ("primary",)}
        paths["partner"] = paths["primary"].with_name("partner-acms.toml")
    else:
        paths = {r: ROOT / "examples" / "config" / r / "acms.toml"
                 for r in ("primary", "partner")}
    flows = ("group-membership-update-request", "interconnection-group-provision-request")
    primary = load_acms_node(paths["primary"]).acms
    alice = next(u for u in primary.users if u.id == "sip:alice@primary.example")
    assert set(flows) <= set(alice.may_request)
    assert alice.may_group("sip:grp-command@primary.example")
    assert not alice.may_group("sip:grp-x@rogue.example")
    partner = load_acms_node(paths["partner"]).acms
    assert partner.peers[0].groups == ("sip:grp-*@primary.example",)
    dave = next(u for u in partner.users if u.id == "sip:dave@partner.example")
    assert set(flows) <= set(dave.may_decide) and dave.groups == ("*",)

    def update(group: str, operation: GroupOperation, urgency: Urgency | None = None
               ) -> GroupMembershipUpdateRequest:
        return GroupMembershipUpdateRequest(
            "t-1", Party("sip:alice@primary.example"), Addressee("sip:dave@partner.example"),
            group, ("sip:erin@partner.example",), operation, urgency)

    open_group, command = "sip:grp-open-1@primary.example", "sip:grp-command@primary.example"
    assert assess(partner.policy, update(open_group, GroupOperation.ADD)).action \
        is PolicyAction.APPROVE
    for manual in (update(open_group, GroupOperation.DELETE),
                   update(command, GroupOperation.ADD)):
        assert assess(partner.policy, manual).action is PolicyAction.MANUAL

    # the commented keys, uncommented as they stand, load and mean what their comments say
    text = paths["partner"].read_text()
    assert "# groups = [" in text and '# urgency = "high"' in text
    changed = tmp_path / "uncommented.toml"
    changed.write_text(text.replace("# groups = [", "groups = [").replace(
        '# urgency = "high"', 'urgency = "high"'))
    if side == "hardened":  # relative certificate paths
        changed = changed.rename(paths["partner"].with_name("uncommented.toml"))
    uncommented = load_acms_node(changed).acms
    dave = next(u for u in uncommented.users if u.id == "sip:dave@partner.example")
    assert dave.groups == ("sip:grp-*@primary.example",)
    assert not dave.may_group("sip:grp-x@rogue.example")
    # urgency high only now, and a request without urgency counts as normal
    assert assess(uncommented.policy, update(open_group, GroupOperation.ADD)).action \
        is PolicyAction.MANUAL
    assert assess(uncommented.policy, update(open_group, GroupOperation.ADD, Urgency.HIGH)
                  ).action is PolicyAction.APPROVE
