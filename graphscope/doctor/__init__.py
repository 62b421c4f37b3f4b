"""The doctor: a catalogue of autograd mistakes, each a small rule over what a run captured.

A rule is a function from `Evidence` (the captured steps, the user's source files, and what
the script did: its failure, its warnings, its optimizer steps) to `Finding`s, registered
under a stable id with `@rule("id")` in the module of its family (`graphscope.doctor.rules`).
Adding one is one function there and its tests.

    findings = diagnose(run)       # a Run from record_script, or one loaded from session.json

Torch-free, so saved runs can be examined anywhere.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from graphscope.doctor import scriptsource as code
from graphscope.doctor.evidence import RULES, Evidence
from graphscope.doctor import rules  # noqa: F401 - importing it registers the rules
from graphscope.model import SEVERITIES, Finding, Run
from graphscope.model.records import paused_gc

SCRIPT_FAILED = "script-failed"


def _unexplained_failure(evidence: Evidence, findings: Sequence[Finding]) -> list[Finding]:
    """A finding for a failure no rule explains, so the doctor never passes a failing script."""
    if any(f.explains_failure for f in findings):
        return []
    failure = evidence.failure
    if failure is not None and failure.type == "KeyboardInterrupt":
        message = f"the script was interrupted (Ctrl-C) at {evidence.at(failure.location)}, before it ended."
        fix = "graphscope kept every step captured before it; run the script to its end to check the rest."
    elif failure is not None:
        message = (f"the script failed at {evidence.at(failure.location)}: {failure.first_line} "
                   "(no doctor rule explains this error).")
        fix = "fix the error the traceback shows; graphscope kept every step captured before it."
    elif evidence.status not in (None, 0):
        message = f"the script exited with status {evidence.status}."
        fix = "see why the script chose that status; graphscope kept every step captured before it."
    else:
        return []
    step = evidence.snapshots[-1].step if evidence.snapshots else None
    return [Finding(SCRIPT_FAILED, "error", message, fix, failure.location if failure else None, step, (), True)]


def _order(finding: Finding) -> tuple:
    """Errors first, then by file and line, then by rule: a stable reading order."""
    where = code.split_location(finding.location) or (finding.location or "~", 0)
    return -SEVERITIES.index(finding.severity), where, finding.rule, finding.step or 0, finding.message


def diagnose(run: Run, sources: Mapping[str, str] | None = None) -> list[Finding]:
    """Every finding for a run, errors first; `sources` maps display paths to the text of the
    user's files, read from the run's root folder (else the current folder) when not given."""
    with paused_gc():  # reading every step makes records that hold no cycles
        evidence = Evidence.of(run, sources)
        findings = [finding for check in RULES.values() for finding in check(evidence)]
        return sorted(findings + _unexplained_failure(evidence, findings), key=_order)
