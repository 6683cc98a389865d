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
