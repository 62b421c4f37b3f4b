"""The index of a torchrun launch, `DIR/index.html`: one button per rank that shows that rank's
own report (`rank-K/index.html`) below, and where the ranks' graphs differ.

Like the report of a run it needs no network: its script is allowed by hash, and it frames only
the ranks' reports beside it. Everything it says is escaped text built here.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from graphscope.doctor.ranks import RankDifference
from graphscope.files import write_atomic
from graphscope.model import Finding
from graphscope.report.builder import REPORT_FILE, asset

RANK_INDEX = "index.html"


@dataclass(frozen=True)
class RankEntry:
    """What the index says of one rank: its folder (relative to the index), whether it holds a
    report, and how the rank ended (`status` None: it wrote nothing, it died or still runs)."""

    rank: int
    folder: str
    has_report: bool
    status: int | None
    steps: int | None


def _button(entry: RankEntry, differs: bool) -> str:
    """One rank's button: what it holds, and where its report is."""
    if entry.steps is None:
        return f'<button type="button" data-rank="{entry.rank}" disabled>rank {entry.rank}: wrote nothing</button>'
    ended = "" if entry.status == 0 else f", exit status {entry.status}"
    target = f"{entry.folder}/{REPORT_FILE}" if entry.has_report else f"{entry.folder}/"
    classes = ' class="gs-differs"' if differs else ""
    return (f'<button type="button"{classes} data-rank="{entry.rank}" data-report="{html.escape(target)}">'
            f"rank {entry.rank} · {entry.steps} step(s){html.escape(ended)}</button>")


def _difference(difference: RankDifference) -> str:
    """One list item: a rank's graph at one step, against rank 0's."""
    head = f"step {difference.step}, rank {difference.rank} against rank 0"
    items = [f'<li class="gs-added">only rank {difference.rank}: {html.escape(n)}</li>' for n in difference.added]
    items += [f'<li class="gs-removed">only rank 0: {html.escape(n)}</li>' for n in difference.removed]
    if not items:
        return f"<li>{head}: the same nodes, joined differently</li>"
    return f"<li>{head}<ul>{''.join(items)}</ul></li>"


def _differences(entries: Sequence[RankEntry], differences: Sequence[RankDifference],
                 findings: Sequence[Finding]) -> str:
    """The list of differences, or a sentence that there are none among the ranks compared."""
    compared = [e.rank for e in entries if e.steps is not None]
    if not differences:
        return f'<p class="gs-same">ranks {", ".join(map(str, compared))}: the same graph at every step.</p>'
    notes = "".join(f"<p>{html.escape(f.message)}</p>" for f in findings)
    return notes + "<ul>" + "".join(_difference(d) for d in differences) + "</ul>"


def _csp() -> str:
    """This page's own script and style, frames of the ranks' reports beside it, nothing else."""
    digest = base64.b64encode(hashlib.sha256(asset("ranks.js").encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
            "frame-src 'self'; base-uri 'none'")


def rank_index_html(script: str | None, entries: Sequence[RankEntry], differences: Sequence[RankDifference],
                    findings: Sequence[Finding]) -> str:
    """The whole index page."""
    differing = {d.rank for d in differences}
    written = sum(e.steps is not None for e in entries)
    summary = f"{len(entries)} rank(s)" + ("" if written == len(entries) else f", {written} of them wrote a capture")
    heading = f"{script or 'torchrun launch'} · {summary}"
    return asset("ranks.html").format(
        csp=_csp(), title=html.escape(f"graphscope · {heading}"), heading=html.escape(script or "torchrun launch"),
        summary=html.escape(summary), style=asset("ranks.css"), script=asset("ranks.js"),
        buttons="".join(_button(e, e.rank in differing) for e in entries),
        differences=_differences(entries, differences, findings))


def write_rank_index(directory: Path, script: str | None, entries: Sequence[RankEntry],
                     differences: Sequence[RankDifference], findings: Sequence[Finding]) -> Path:
    """Write `DIR/index.html` atomically."""
    page = rank_index_html(script, entries, differences, findings)
    return write_atomic(directory / RANK_INDEX, page.encode("utf-8"))
