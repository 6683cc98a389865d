"""``mcacm validate FILE...``: check documents as a receiver would, with a fix for each problem.

ACM documents (namespace ``urn:mcacm-sip:ns:acm:1.0``) go through
:func:`~mcacm_sip.acm.validate.validate_document`: the bundled XSD (every error, with its
element path and line), the rules XSD 1.0 cannot say, and the model's checks.  The FA bodies of
TS 24.379 9A (pidf, mcpttinfo, simple-filter) and an MCPTT user profile (TS 24.484) go through
their decoders in :mod:`mcacm_sip.acm.fa` / :mod:`mcacm_sip.acm.codec`, chosen by the root's
namespace; those stop at the first problem.

Exit codes: 0 every document valid, 1 at least one invalid, 2 usage (unreadable file).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from mcacm_sip.acm import codec, fa
from mcacm_sip.acm.errors import AcmError
from mcacm_sip.acm.validate import Problem, validate_document
from mcacm_sip.acm.xmlsafe import element_path, parse
from mcacm_sip.cli.main import EX_FAILED, EX_OK, EX_USAGE, CliError, command
from mcacm_sip.text import printable

_LINE = re.compile(r"\bline (\d+)")
_CLARK = re.compile(r"\{[^}]*\}")

_DECODERS: dict[str, Callable[[bytes], object]] = {
    # TS 24.379 9A bodies, by the namespace of their root (fa.py checks the root name too)
    fa.PIDF_NS: fa.decode_presence,
    fa.MCPTT_INFO_NS: fa.decode_mcptt_info,
    fa.FILTER_NS: fa.decode_filter,
    codec.USER_PROFILE_NS: codec.profile_from_xml,
}


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The verdict on one document."""

    file: str
    root: str | None
    """The root element's local name, when the document parsed."""
    problems: tuple[Problem, ...]

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "root": self.root, "valid": self.valid,
                "problems": [dataclasses.asdict(p) for p in self.problems]}


def _problem_of(exc: AcmError, root: etree._Element) -> Problem:
    """A decoder's error as a Problem: its lxml XPath (``/*/*[1]``) becomes our element path
    and line; Clark names in the text become local names."""
    path, line = exc.path, None
    if path and path.startswith("/*"):
        found = root.getroottree().xpath(path)
        if isinstance(found, list) and found and isinstance(found[0], etree._Element):
            path, line = element_path(found[0]), found[0].sourceline
    reason = _CLARK.sub("", exc.message)
    hint = exc.hint or "see TS 24.379 9A and docs/functional-alias.md for this body"
    return Problem(path, reason, hint, "schema", line if isinstance(line, int) else None,
                   exc.sip_status)


def check(name: str, data: bytes) -> ValidationReport:
    """Validate ``data`` (shown as ``name``) by the kind its root's namespace names."""
    try:
        root = parse(data)
    except AcmError:  # validate_document reports the parse problem with its hint
        return ValidationReport(name, None, _with_lines(validate_document(data)))
    qname = etree.QName(root)
    decoder = _DECODERS.get(qname.namespace or "")
    if decoder is None:  # ACM, or a foreign root that validate_document explains
        return ValidationReport(name, qname.localname, _with_lines(validate_document(data)))
    try:
        decoder(data)
    except AcmError as exc:
        return ValidationReport(name, qname.localname, (_problem_of(exc, root),))
    except ValueError as exc:  # a model check of an FA value
        return ValidationReport(name, qname.localname, (Problem(
            None, str(exc), "see docs/functional-alias.md", "model"),))
    return ValidationReport(name, qname.localname, ())


def _with_lines(problems: list[Problem]) -> tuple[Problem, ...]:
    """Parse errors carry their line only in the text (libxml2's message)."""
    out = []
    for p in problems:
        found = _LINE.search(p.reason) if p.line is None else None
        out.append(dataclasses.replace(p, line=int(found.group(1))) if found else p)
    return tuple(out)


def format_problem(file: str, p: Problem) -> str:
    """``file:line: path: reason (hint)``, leaving out what is unknown."""
    where = f"{file}:{p.line}" if p.line is not None else file
    path = f" {p.path}:" if p.path else ""
    hint = f" ({p.hint})" if p.hint else ""
    return f"{where}:{path} {p.reason}{hint}"


def _read(name: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise CliError(EX_USAGE, f"{name}: cannot read: {exc.strerror or exc}") from None


def cmd_validate(args: argparse.Namespace) -> int:
    if args.files.count("-") > 1:
        raise CliError(EX_USAGE, "stdin (-) can be given once")
    # read everything first: an unreadable file is a usage error, before any verdict
    documents = [(("<stdin>" if name == "-" else name), _read(name)) for name in args.files]
    reports = [check(name, data) for name, data in documents]
    quiet = getattr(args, "quiet", False)
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    else:
        for r in reports:
            for p in r.problems:
                print(printable(format_problem(r.file, p)))  # may quote the document
            if r.valid and not quiet:
                print(f"{r.file}: valid ({r.root})")
    invalid = sum(not r.valid for r in reports)
    if not quiet and len(reports) > 1:
        print(f"{invalid} of {len(reports)} documents invalid", file=sys.stderr)
    return EX_FAILED if invalid else EX_OK


@command("validate", "check ACM and FA documents against the schemas and the rules beyond them",
         "examples:\n"
         "  mcacm validate examples/flows/*.xml\n"
         "  mcacm validate request.xml --json\n"
         "  curl -s https://host/doc.xml | mcacm validate -\n"
         "each problem: FILE:LINE: PATH: REASON (HINT)\n"
         "exit codes: 0 every document valid, 1 some invalid, 2 usage (unreadable file).",
         run=cmd_validate)
def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="XML document; - reads stdin")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {file, root, valid, problems[]}")
