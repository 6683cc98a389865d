"""Verdicts, the checks that make them, and the report (table, JSON, exit code).  No I/O.

Verdict semantics (docs/conformance.md):

- **Pass**: every check held.
- **Fail**: a check was contradicted by what the peer did (a wrong answer, a missing process
  indication although the peer answered 2xx, a second delivery of one request ...).
- **Inconclusive**: nothing contradicted, but something could not be observed (no answer
  within the wait, the runner could not set the scenario up).
- **Not applicable**: the profile says the peer lacks the user, alias or behaviour the
  scenario needs (the reason names the profile key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mcacm_sip.text import printable

EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE = 0, 1, 3  # 2: a usage error (cli.main EX_USAGE)


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "n/a"


@dataclass(frozen=True, slots=True)
class Check:
    """One expectation: ``ok`` True (held), False (contradicted), None (not observable)."""

    what: str
    ok: bool | None
    detail: str = ""


@dataclass(slots=True)
class Checks:
    """The checks of one scenario run, in order; :attr:`verdict` combines them."""

    items: list[Check] = field(default_factory=list)

    def expect(self, what: str, ok: bool | None, detail: str = "") -> bool:
        """Record an expectation; returns whether it held (None counts as not held)."""
        self.items.append(Check(what, ok, "" if ok else detail))  # details explain a miss
        return ok is True

    def unobservable(self, what: str, detail: str) -> None:
        self.items.append(Check(what, None, detail))

    @property
    def verdict(self) -> Verdict:
        if any(c.ok is False for c in self.items):
            return Verdict.FAIL
        if not self.items or any(c.ok is None for c in self.items):
            return Verdict.INCONCLUSIVE
        return Verdict.PASS

    @property
    def reason(self) -> str:
        """The first contradicted check, else the first unobservable one (empty on Pass)."""
        for wanted in (False, None):
            for c in self.items:
                if c.ok is wanted:
                    return c.what + (f": {c.detail}" if c.detail else "")
        return "" if self.items else "no check was made"


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    id: str
    title: str
    clause: str
    verdict: Verdict
    reason: str = ""
    checks: tuple[Check, ...] = ()
    seconds: float = 0.0
    pcap: str | None = None
    log: str | None = None

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "clause": self.clause,
                "verdict": str(self.verdict), "reason": self.reason or None,
                "seconds": round(self.seconds, 3), "pcap": self.pcap, "log": self.log,
                "checks": [{"what": c.what, "ok": c.ok, "detail": c.detail or None}
                           for c in self.checks]}


@dataclass(frozen=True, slots=True)
class Report:
    peer: str
    role: str
    profile: str
    results: tuple[ScenarioResult, ...]

    def count(self, verdict: Verdict) -> int:
        return sum(1 for r in self.results if r.verdict is verdict)

    @property
    def exit_code(self) -> int:
        """0 all Pass / N-A, 1 any Fail, 3 some Inconclusive and no Fail."""
        if self.count(Verdict.FAIL):
            return EXIT_FAIL
        if self.count(Verdict.INCONCLUSIVE):
            return EXIT_INCONCLUSIVE
        return EXIT_PASS

    def json(self) -> dict[str, Any]:
        return {"peer": self.peer, "role": self.role, "profile": self.profile,
                "summary": {str(v): self.count(v) for v in Verdict},
                "exit": self.exit_code, "scenarios": [r.json() for r in self.results]}

    def json_text(self) -> str:
        return json.dumps(self.json(), indent=2)

    def table(self) -> str:
        """A fixed-width table, one line per scenario, the reason of each non-pass below it."""
        width = max([len(r.id) for r in self.results] + [8])
        clause = max([len(r.clause) for r in self.results] + [6])
        lines = [f"conformance of {self.peer} as {self.role} ACMS (profile {self.profile})", "",
                 f"{'scenario':<{width}}  {'verdict':<12}  {'clause':<{clause}}  title"]
        for r in self.results:
            lines.append(f"{r.id:<{width}}  {r.verdict.value:<12}  {r.clause:<{clause}}  "
                         f"{r.title}")
            if r.verdict is not Verdict.PASS and r.reason:
                lines.append(f"{'':<{width}}  -> {printable(r.reason)}")  # the peer's words
        lines.append("")
        lines.append(", ".join(f"{self.count(v)} {v.name.replace('_', ' ').lower()}"
                               for v in Verdict))
        return "\n".join(lines) + "\n"
