"""The sans-I/O parts of the conformance runner: the catalogue (and its documentation), the
interop profile loader, the wire dialect, verdicts and exit codes."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from mcacm_sip.acm import codec
from mcacm_sip.acm.errors import NotAcmDocument
from mcacm_sip.acm.model import AddUserConfigurationRequest, Party
from mcacm_sip.conformance.catalogue import (
    CATALOGUE,
    markdown_table,
    not_applicable,
    scenarios_for,
)
from mcacm_sip.conformance.profile import ConfigError, Dialect, load_profile, parse_profile
from mcacm_sip.conformance.report import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    Checks,
    Report,
    ScenarioResult,
    Verdict,
)
from mcacm_sip.conformance.runner import SCRIPTS, parse_peer

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "examples" / "interop" / "profiles"
DOC = ROOT / "docs" / "conformance.md"


def test_doc_has_the_generated_catalogue() -> None:
    block = DOC.read_text(encoding="utf-8").split("<!-- BEGIN GENERATED CATALOGUE -->")[1] \
        .split("<!-- END GENERATED CATALOGUE -->")[0]
    assert block.strip() == markdown_table().strip(), (
        "regenerate with mcacm_sip.conformance.catalogue.markdown_table()")


def test_every_scenario_has_a_script_per_role_and_cites_a_clause() -> None:
    assert len({s.id for s in CATALOGUE}) == len(CATALOGUE)
    for s in CATALOGUE:
        assert s.roles, s.id
        assert any(ref in s.clause for ref in ("23.280", "24.379", "RFC 3261", "RFC 3428")), s.id
        for role in s.roles:
            assert (s.id, role) in SCRIPTS, (s.id, role)
    assert {k for k in SCRIPTS} == {(s.id, r) for s in CATALOGUE for r in s.roles}


def test_shipped_profiles_load() -> None:
    ours, acme = load_profile(PROFILES / "mcacm-sip.toml"), load_profile(PROFILES / "acme-mcx.toml")
    assert ours.wire.dialect.native and set(ours.roles) == {"partner", "primary"}
    assert not acme.wire.dialect.native and acme.wire.identity_header == "P-Preferred-Identity"
    assert acme.wire.transport == "tcp" and acme.roles["partner"].policy[
        "profile-update-request"] == "manual"


def _with(path: str, value: Any) -> dict[str, Any]:
    data = tomllib.loads((PROFILES / "mcacm-sip.toml").read_text())
    *tables, key = path.split(".")
    table = data
    for t in tables:
        table = table.setdefault(t, {})
    table[key] = value
    return data


@pytest.mark.parametrize(("path", "value", "key"), [
    ("wire.content_type", "xml", "wire.content_type"),
    ("wire.namespace", "no namespace", "wire.namespace"),
    ("wire.transport", "sctp", "wire.transport"),
    ("wire.identity_header", "P Asserted", "wire.identity_header"),
    ("wire.colour", "red", "wire.colour"),
    ("timing.wait", -1, "timing.wait"),
    ("timing.quiet", "long", "timing.quiet"),
    ("partner.primary_psi", "", "partner.primary_psi"),
    ("partner.listen", "5060", "partner.listen"),
    ("partner.decider", "dave", "partner.decider"),
    ("partner.users", ["sip:a@b", 7], "partner.users"),
    ("partner.routine_profile", "<not-a-profile/>", "partner.routine_profile"),
    ("partner.policy.profile-update-request", "maybe", "partner.policy.profile-update-request"),
    ("partner.policy.hello", "approve", "partner.policy.hello"),
    ("primary.answer_timeout", 0, "primary.answer_timeout"),
    ("partner.group", "grp-1", "partner.group"),
    ("primary.foreign_group", "nobody's", "primary.foreign_group"),
    ("partner.group_users", ["sip:dave@partner.example", "dave"], "partner.group_users[1]"),
    ("primary.group_users", "sip:dave@partner.example", "primary.group_users"),
    ("tertiary", {}, "tertiary"),
])
def test_profile_errors_name_the_key(path: str, value: Any, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_profile(_with(path, value))
    assert err.value.key.startswith(key), err.value


def test_dialect_maps_a_foreign_namespace_and_type_both_ways() -> None:
    dialect = Dialect("application/vnd.acme.mcx-acm+xml", "urn:acme:mcx:acm:2")
    flow = AddUserConfigurationRequest("t-1", Party("sip:alice@primary.example"),
                                       ("sip:mike@primary.example",))
    theirs = dialect.outgoing(codec.encode(flow))
    assert b'xmlns="urn:acme:mcx:acm:2"' in theirs and codec.ACM_NS.encode() not in theirs
    with pytest.raises(NotAcmDocument):  # our codec alone refuses the peer's namespace
        codec.decode(theirs)
    body, ctype = dialect.incoming(theirs, "application/VND.acme.mcx-acm+xml;charset=utf-8")
    assert codec.decode(body, content_type=ctype) == flow
    assert ctype == codec.ACM_CONTENT_TYPE + ";charset=utf-8"
    # another media type stays what it is: the codec will answer 415 for it
    assert dialect.incoming(theirs, "text/plain")[1] == "text/plain"
    assert Dialect().outgoing(b"x") == b"x" and Dialect().incoming(b"<x/>", None) == (b"<x/>",
                                                                                        None)


def test_not_applicable_names_the_missing_fixture() -> None:
    profile = load_profile(PROFILES / "acme-mcx.toml")
    fx = profile.roles["partner"]
    by_id = {s.id: s for s in scenarios_for("partner")}
    assert not_applicable(by_id["fa-no-holder"], "partner", fx, "tcp") == \
        "[partner] fa_unheld is not set"
    assert "UDP" in (not_applicable(by_id["retransmission"], "partner", fx, "tcp") or "")
    assert not_applicable(by_id["profile-update-approve"], "partner", fx, "tcp") is None
    assert not_applicable(by_id["add-user"], "primary", None, "udp") == \
        "the profile has no [primary] table"
    ours = load_profile(PROFILES / "mcacm-sip.toml").roles["partner"]
    assert "approve, not manual" in (not_applicable(
        by_id["fa-no-holder"], "partner",
        type(ours)(**{**{f: getattr(ours, f) for f in ours.__slots__}, "fa_unheld": "sip:x@y",
                      "policy": {"profile-update-request": "approve"}}), "udp") or "")
    assert [s.id for s in scenarios_for("primary", ("duplicate", "fa-no-holder"))] == [
        "duplicate"]
    with pytest.raises(KeyError):
        scenarios_for("partner", ("no-such",))
    # 10.17.4: the acme profile names no group fixtures, so its group scenarios do not apply
    assert not_applicable(by_id["group-update-auto"], "partner", fx, "tcp") == \
        "[partner] auto_group is not set"
    assert not_applicable(by_id["group-provision"], "partner", fx, "tcp") == \
        "[partner] group is not set"
    shipped = load_profile(PROFILES / "mcacm-sip.toml").roles
    assert not_applicable(by_id["group-update-decided"], "partner", shipped["partner"],
                          "udp") is None
    assert shipped["primary"].group_users == ("sip:dave@partner.example",)


def test_verdicts_and_exit_codes() -> None:
    c = Checks()
    seen = [(c.verdict, c.reason)]  # nothing checked is nothing shown
    c.expect("a", True)
    seen.append((c.verdict, c.reason))
    c.unobservable("b", "no answer")
    seen.append((c.verdict, c.reason))
    c.expect("c", False, "got 500")
    seen.append((c.verdict, c.reason))
    assert seen == [(Verdict.INCONCLUSIVE, "no check was made"), (Verdict.PASS, ""),
                    (Verdict.INCONCLUSIVE, "b: no answer"), (Verdict.FAIL, "c: got 500")]

    def report(*verdicts: Verdict) -> Report:
        return Report("sip:p", "partner", "x", tuple(
            ScenarioResult(f"s{i}", "t", "c", v) for i, v in enumerate(verdicts)))

    assert report(Verdict.PASS, Verdict.NOT_APPLICABLE).exit_code == EXIT_PASS
    assert report(Verdict.PASS, Verdict.INCONCLUSIVE).exit_code == EXIT_INCONCLUSIVE
    assert report(Verdict.INCONCLUSIVE, Verdict.FAIL).exit_code == EXIT_FAIL
    table = report(Verdict.PASS, Verdict.NOT_APPLICABLE).table()
    assert "s1        n/a " in table and "1 pass, 0 fail, 0 inconclusive, 1 not applicable" \
        in table


@pytest.mark.parametrize(("uri", "hop", "transport"), [
    ("sip:acms@127.0.0.1:5070", ("udp", "127.0.0.1", 5070), None),
    ("sip:acms@[::1]:5070;transport=tcp", ("tcp", "::1", 5070), "tcp"),
    ("sip:acms@partner.example", None, None),
    ("sips:acms@partner.example", None, "tls"),
    ("sip:acms@127.0.0.1:5071;TRANSPORT=TLS;lr", ("tls", "127.0.0.1", 5071), "tls"),
])
def test_parse_peer(uri: str, hop: tuple[str, str, int] | None, transport: str | None) -> None:
    _, peer, named = parse_peer(uri)
    assert (None if peer is None else (peer.transport, peer.host, peer.port)) == hop
    assert named == transport
    for bad in ("acms@partner.example", "sip:acms@partner.example;transport=tcpx"):
        with pytest.raises(ValueError):
            parse_peer(bad)
