"""The conformance report as JUnit XML (``mcacm conformance --junit FILE``), for CI servers
(Jenkins, GitLab, GitHub test reporters).  No I/O.

One ``<testsuite>`` per run, one ``<testcase>`` per selected scenario (``classname``
``conformance.<role>``, ``name`` the scenario id).  Verdicts map onto what every JUnit reader
knows (decision, docs/decisions.md "CLI conformance in CI"): pass -> a plain testcase; fail ->
``<failure>``; inconclusive -> ``<error>`` (nothing contradicted the peer, but the run could
not judge it: not a pass); n/a and scenarios not run after ``--fail-fast`` -> ``<skipped>``.
Each testcase carries its verdict, clause, pcap and log as ``<properties>``, and the pcap path
again in ``<system-out>`` as ``[[ATTACHMENT|path]]`` (the Jenkins attachments convention).
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from mcacm_sip.conformance.catalogue import Scenario
from mcacm_sip.conformance.report import Report, ScenarioResult, Verdict
from mcacm_sip.text import printable

NOT_RUN = "not run: an earlier scenario failed (--fail-fast)"


_SAID = {True: "ok", False: "FAILED", None: "not observed"}


def _checks_text(result: ScenarioResult) -> str:
    # the peer's words, escaped: XML 1.0 cannot carry control characters
    return "\n".join(printable(f"{_SAID[c.ok]}: {c.what}"
                                + (f" ({c.detail})" if c.detail else ""))
                      for c in result.checks)


def junit_xml(report: Report, selected: Sequence[Scenario]) -> bytes:
    """JUnit XML of ``report``; ``selected``: every scenario chosen to run, in order (those the
    report lacks were not run)."""
    played = {r.id: r for r in report.results}
    suites = etree.Element("testsuites", name="mcacm conformance")
    suite = etree.SubElement(suites, "testsuite", name=f"conformance.{report.role}")
    props = etree.SubElement(suite, "properties")
    for name, value in (("peer", report.peer), ("role", report.role),
                        ("profile", report.profile)):
        etree.SubElement(props, "property", name=name, value=value)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    for scenario in selected:
        result = played.get(scenario.id)
        case = etree.SubElement(suite, "testcase", classname=f"conformance.{report.role}",
                                name=scenario.id,
                                time=f"{result.seconds:.3f}" if result else "0.000")
        counts["tests"] += 1
        cprops = etree.SubElement(case, "properties")
        values: dict[str, str | None] = {"verdict": str(result.verdict) if result else "not-run",
            "clause": scenario.clause, "title": scenario.title,
            "pcap": result.pcap if result else None, "log": result.log if result else None}
        for key, text in values.items():
            if text:
                etree.SubElement(cprops, "property", name=key, value=text)
        if result is None:
            etree.SubElement(case, "skipped", message=NOT_RUN)
            counts["skipped"] += 1
            continue
        total += result.seconds
        if result.verdict is Verdict.FAIL:
            etree.SubElement(case, "failure", message=printable(result.reason),
                             type="fail").text = _checks_text(result)
            counts["failures"] += 1
        elif result.verdict is Verdict.INCONCLUSIVE:
            etree.SubElement(case, "error", message=printable(result.reason),
                             type="inconclusive").text = _checks_text(result)
            counts["errors"] += 1
        elif result.verdict is Verdict.NOT_APPLICABLE:
            etree.SubElement(case, "skipped",
                             message=printable(f"not applicable: {result.reason}"))
            counts["skipped"] += 1
        if result.pcap:
            etree.SubElement(case, "system-out").text = f"[[ATTACHMENT|{result.pcap}]]"
    for element in (suite, suites):
        for key, count in counts.items():
            element.set(key, str(count))
        element.set("time", f"{total:.3f}")
    return bytes(etree.tostring(suites, xml_declaration=True, encoding="UTF-8",
                                pretty_print=True))


__all__ = ["NOT_RUN", "junit_xml"]
