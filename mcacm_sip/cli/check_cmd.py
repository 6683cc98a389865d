"""``mcacm check CONFIG...``: validate node configurations as the nodes would load them and
print each one's effective configuration (like ``kamailio -c``); ``--reference`` prints the
configuration reference of every key (docs/config.md).

Exit codes: 0 every file valid, 78 a file is not (the message names the file and the key),
2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mcacm_sip.cli.main import EX_CONFIG, EX_FAILED, EX_OK, EX_USAGE, CliError, command
from mcacm_sip.core.config import ConfigError
from mcacm_sip.runtime.reference import (
    ROLES,
    check_file,
    effective_json,
    reference,
    render_effective,
)


def cmd_check(args: argparse.Namespace) -> int:
    if args.reference:
        try:
            text = reference()
        except ValueError as exc:  # a key without type or meaning: a developer's to fix
            raise CliError(EX_FAILED, f"cannot write the reference: {exc}") from None
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return EX_OK
    if not args.files:
        raise CliError(EX_USAGE, "give one or more configuration files (or --reference)")
    quiet = getattr(args, "quiet", False)
    code, docs = EX_OK, []
    for name in args.files:
        try:
            checked = check_file(name, args.role)
        except ConfigError as exc:
            code = EX_CONFIG
            print(f"{name}: {exc}", file=sys.stderr)
            docs.append({"file": name, "valid": False, "key": exc.key,
                         "error": str(exc)})
            continue
        if args.json:
            docs.append(effective_json(checked))
        elif quiet:
            print(f"{name}: {checked.role}, valid")
        else:
            sys.stdout.write(render_effective(checked))
    if args.json:
        print(json.dumps(docs, indent=2, default=str))
    return code


@command("check", "validate node configurations and print their effective configuration",
         "examples:\n"
         "  mcacm check examples/config/primary/acms.toml examples/config/partner/*.toml\n"
         "  mcacm check -q lab/*.toml           # one line per valid file\n"
         "  mcacm check --reference > docs/config.md\n"
         "The role (ACMS, ACMC, FA server) is read from the file: an ACMC names its\n"
         "mc_service_id, an FA server its aliases or trusted resolvers; --role overrides.\n"
         "Nothing is opened or bound: safe while the node runs.\n"
         "exit codes: 0 every file valid, 78 some file invalid (FILE: KEY: reason), 2 usage.",
         run=cmd_check)
def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="CONFIG", help="a node's TOML configuration")
    p.add_argument("--role", choices=ROLES, help="the node the files configure "
                                                "(default: read from each file)")
    p.add_argument("--json", action="store_true",
                   help="a JSON list of {file, role, valid, effective | key, error}")
    p.add_argument("--reference", action="store_true",
                   help="print the reference of every key of every role (docs/config.md)")
    p.add_argument("--out", metavar="FILE", help="with --reference: write it to FILE")
