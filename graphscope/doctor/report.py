"""The doctor's report for the terminal, and its findings as JSON."""

from __future__ import annotations

import json
import textwrap
from typing import Iterable, Sequence

from graphscope.model import SEVERITIES, Finding

FAIL_LEVELS = ("error", "warning", "info", "never")


# --- reporting -------------------------------------------------------------------------------


def fails(findings: Iterable[Finding], fail_on: str = "error") -> bool:
    """True when any finding is at least as severe as `fail_on` (`never` never fails)."""
    if fail_on == "never":
        return False
    threshold = SEVERITIES.index(fail_on)
    return any(SEVERITIES.index(f.severity) >= threshold for f in findings)


def _counts(findings: Sequence[Finding]) -> str:
    """`2 errors, 1 warning`."""
    parts = []
    for severity in reversed(SEVERITIES):
        count = sum(f.severity == severity for f in findings)
        if count:
            parts.append(f"{count} {severity}" + ("s" if count > 1 else ""))
    return ", ".join(parts)


def format_finding(finding: Finding, width: int = 100) -> str:
    """A few terminal lines: severity, rule, where; the message; the fix."""
    head = f"{finding.severity} {finding.rule}"
    if finding.location:
        head += f" at {finding.location}"
    if finding.step is not None:
        head += f" (step {finding.step})"
    body = textwrap.fill(finding.message, width, initial_indent="  ", subsequent_indent="  ")
    fix = textwrap.fill(finding.fix, width, initial_indent="  fix: ", subsequent_indent="       ")
    return "\n".join((head, body, fix))


def report(findings: Sequence[Finding], script: str | None = None) -> str:
    """The doctor's report: a headline, then each finding."""
    subject = f" in {script}" if script else ""
    if not findings:
        return f"graphscope doctor: no autograd mistakes found{subject}"
    head = f"graphscope doctor: {len(findings)} finding(s){subject}: {_counts(findings)}"
    return "\n\n".join([head, *(format_finding(f) for f in findings)])


def findings_json(findings: Sequence[Finding]) -> str:
    """The findings as a JSON list, deterministic."""
    return json.dumps([f.to_dict() for f in findings], indent=2, sort_keys=True, ensure_ascii=False) + "\n"
