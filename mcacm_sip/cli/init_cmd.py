"""``mcacm init DIR --domain D``: scaffold one MC system's ACM nodes -- an ACMS, the ACMC of
one user, an FA controlling server -- with a lab CA and the ACMS's TLS certificate, ready for
``mcacm check`` and to be started (docs/cli.md).

Exit codes: 0 written, 2 usage (bad domain, a file exists without --force).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mcacm_sip.cli.main import EX_OK, EX_USAGE, CliError, command
from mcacm_sip.core.config import REQUEST_FLOWS
from mcacm_sip.pki import make_pki

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
                     r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
CERT_DAYS = 365
"""Lab certificates: a year; in service the interconnect CA issues them."""


def _flows() -> str:
    return "[" + ", ".join(f'"{f}"' for f in REQUEST_FLOWS) + "]"


def files(domain: str, host: str, port: int, user: str) -> dict[str, str]:
    """The three configurations (relative name -> TOML text)."""
    acms, acmc, fa = port, port + 2, port + 3
    me = f"sip:{user}@{domain}"
    head = f"# written by mcacm init --domain {domain}; every key: docs/config.md\n"
    return {
        "acms.toml": f"""{head}# mcacm acms --config acms.toml
psi = "sip:acms@{domain}"

[[listen]]                                   # UDP and TCP (RFC 3261 18)
host = "{host}"
port = {acms}

[[listen]]                                   # TLS, for peer systems (certs/acms.pem)
transport = "tls"
host = "{host}"
port = {acms + 1}

[sip]
trusted_hosts = ["{host}"]                   # where our ACMC and FA server send from

[sip.hops]                                   # static next hops, no DNS
"{domain}" = "sip:{host}:{fa}"               # our FA controlling server (FA URIs)
# "sip:acms@partner.example" = "sips:192.0.2.7:5061"   # a peer system's ACMS, over TLS

[sip.tls]
certificate = "certs/acms.pem"               # names {domain} (RFC 5922), signed by certs/ca.pem
ca = "certs/ca.pem"                          # add the peer systems' CAs here

[store]
path = "acms.sqlite"                         # beside this file

# [[peers]]                                  # a peer MC system (its ACMS)
# psi = "sip:acms@partner.example"
# domains = ["partner.example"]

[[users]]
id = "{me}"
request = {_flows()}
decide = {_flows()}
""",
        "acmc.toml": f"""{head}# mcacm acmc --config acmc.toml       (the ACMC of {me})
mc_service_id = "{me}"
acms_psi = "sip:acms@{domain}"

[[listen]]
host = "{host}"
port = {acmc}

[sip]
trusted_hosts = ["{host}"]                   # where our ACMS sends from

[sip.hops]
"sip:duty@{domain}" = "sip:{host}:{fa}"      # PUBLISH to activate the FA
"*" = "sip:{host}:{acms}"                    # everything else: our ACMS
""",
        "fa-server.toml": f"""{head}# mcacm fa-server --config fa-server.toml
psi = "sip:fa@{domain}"
trusted = ["sip:acms@{domain}"]              # may resolve every FA

[[listen]]
host = "{host}"
port = {fa}

[sip]
trusted_hosts = ["{host}"]                   # where the ACMS and the ACMCs send from

[[aliases]]
uri = "sip:duty@{domain}"
users = ["{me}"]

[store]
path = "fa-server.sqlite"
""",
    }


def cmd_init(args: argparse.Namespace) -> int:
    domain = args.domain.lower()
    if not _DOMAIN.match(domain):
        raise CliError(EX_USAGE, f"--domain {args.domain}: not a domain name "
                                 "(e.g. lab.example)")
    if not 1 <= args.port <= 65532:
        raise CliError(EX_USAGE, f"--port {args.port}: the nodes use PORT to PORT+3")
    out = Path(args.dir)
    texts = files(domain, args.host, args.port, args.user)
    targets = [out / name for name in texts] + [out / "certs" / "ca.pem",
                                                out / "certs" / "acms.pem"]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.force:
        raise CliError(EX_USAGE, f"{', '.join(existing)} exist: give another DIR or --force")
    (out / "certs").mkdir(parents=True, exist_ok=True)
    pki = make_pki(out / "certs", "lab", {"acms": (domain,)}, days=CERT_DAYS)
    pki["ca"].replace(out / "certs" / "ca.pem")
    pki["acms"].replace(out / "certs" / "acms.pem")
    (out / "certs" / "acms.pem").chmod(0o600)  # holds the key
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"wrote {out}/acms.toml, acmc.toml, fa-server.toml and certs/ (lab CA, the ACMS's "
          f"certificate for {domain}, {CERT_DAYS} days)\n"
          f"check:  mcacm check {out}/*.toml\n"
          f"start:  mcacm fa-server --config {out}/fa-server.toml &\n"
          f"        mcacm acms --config {out}/acms.toml &\n"
          f"        mcacm acmc --config {out}/acmc.toml")
    return EX_OK


@command("init", "write the configuration of a new MC system (ACMS, ACMC, FA server, lab CA)",
         "examples:\n"
         "  mcacm init lab --domain lab.example\n"
         "  mcacm init /etc/mcacm --domain mcx.example --host 10.0.0.5 --port 5060 --user ops\n"
         "Writes DIR/acms.toml, acmc.toml, fa-server.toml and DIR/certs/ (ca.pem, acms.pem:\n"
         "a lab CA and the ACMS's certificate naming the domain, made with the cryptography\n"
         "package). Ports: ACMS PORT (UDP, TCP) and PORT+1 (TLS), ACMC PORT+2, FA server\n"
         "PORT+3. `mcacm check DIR/*.toml` accepts the result.\n"
         "exit codes: 0 written, 2 usage (bad domain, files exist without --force).",
         run=cmd_init)
def _init_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="where to write (created if missing)")
    p.add_argument("--domain", required=True, help="the MC system's domain, e.g. lab.example")
    p.add_argument("--host", default="127.0.0.1", help="address every node listens on "
                                                       "(default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5060,
                   help="first of four ports (default 5060)")
    p.add_argument("--user", default="admin",
                   help="the ACMC's user: sip:USER@DOMAIN (default admin)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
