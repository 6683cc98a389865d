"""``mcacm groups``: what a partner ACMS applied of group-related ACM (TS 23.280 10.17.4).

Per primary system and MC service group: whether an interconnection group identity provision
(10.17.4.2.2) made the group known, and the partner users accepted group membership updates put
in it (docs/decisions.md "Group-related ACM").  Reads the ACMS's SQLite store read-only, so it
may run while the ACMS does.

Exit codes: 0 shown (also when nothing is kept yet); 2 usage; 66 the store cannot be read;
78 configuration error (or an ACMS without a store file).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mcacm_sip.cli.main import EX_CONFIG, EX_OK, CliError, _load, command
from mcacm_sip.core.groups import PartnerGroup
from mcacm_sip.core.identity import matches_pattern
from mcacm_sip.runtime.config import load_acms_node
from mcacm_sip.store.sqlite import StoreError, read_groups
from mcacm_sip.text import printable

EX_NOINPUT = 66  # sysexits.h


def group_json(group: PartnerGroup) -> dict[str, Any]:
    return {"peer": group.peer, "group": group.group_id, "provisioned": group.provisioned,
            "members": list(group.members), "updated": group.updated}


def cmd_groups(args: argparse.Namespace) -> int:
    config = _load(load_acms_node, args.config)
    path = config.acms.store.path
    if path is None:
        raise CliError(EX_CONFIG, f"{args.config}: [store] path is not set: this ACMS keeps "
                                  "everything in memory, so nothing can be read from outside")
    try:
        groups = read_groups(path)
    except StoreError as exc:
        raise CliError(EX_NOINPUT, f"cannot read the store: {exc} (has the ACMS run with "
                                   "this configuration? it creates the file)") from None
    groups = [g for g in groups
              if (args.peer is None or matches_pattern(g.peer, args.peer))
              and (args.group is None or matches_pattern(g.group_id, args.group))]
    if args.json:
        sys.stdout.write(json.dumps([group_json(g) for g in groups]) + "\n")
        return EX_OK
    if not groups:
        sys.stdout.write("no group-related ACM applied yet\n")
    for g in groups:  # identities are the peer's text: shown escaped
        sys.stdout.write(printable(f"{g.group_id}  (home {g.peer})") + "\n")
        sys.stdout.write("  provisioned: " + ("yes" if g.provisioned else "no") + "\n")
        sys.stdout.write(printable("  members:     " + (", ".join(g.members) or "(none)"))
                         + "\n")
    return EX_OK


@command("groups", "show what this partner ACMS applied of group-related ACM (10.17.4)",
         "examples:\n"
         "  mcacm groups --config examples/config/partner/acms.toml\n"
         "  mcacm groups --config examples/config/partner/acms.toml --json \\\n"
         "      --group 'sip:grp-interop-*@primary.example'\n"
         "Per primary system and group: provisioned (10.17.4.2.2) and the members accepted by\n"
         "group membership updates.  Reads the store read-only; exit 66 if it cannot.",
         cmd_groups)
def _groups_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, metavar="FILE",
                   help="the partner ACMS's TOML configuration (its [store] path is read)")
    p.add_argument("--peer", metavar="PATTERN",
                   help="only groups of this primary system (PSI pattern, e.g. "
                        "sip:*@primary.example)")
    p.add_argument("--group", metavar="PATTERN",
                   help="only these groups (URI pattern, e.g. sip:grp-*@primary.example)")
    p.add_argument("--json", action="store_true",
                   help='a JSON list of {"peer", "group", "provisioned", "members", "updated"}')
