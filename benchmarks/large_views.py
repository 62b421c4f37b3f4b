"""Large graphs as a new user renders them: wall time of `graphscope render` and the size of
each picture, for the scripts of issue #19 (a 6-layer TransformerEncoder trained two steps,
an RNNCell unrolled 20 steps, the truncated-BPTT GRU language model).

    python -m benchmarks.large_views      # prints a table; writes nothing

Each command runs in a fresh process, as a user types it, one after the other; the widths
are read from the SVG files written. The bar for `--full --steps all` on the GRU language
model is 90 s on the 2-core development machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parent.parent
RUNS = (
    ("transformer, default", ROOT / "tests/scripts/transformer_training.py", ()),
    ("transformer, --full --steps all", ROOT / "tests/scripts/transformer_training.py", ("--full", "--steps", "all")),
    ("RNNCell unrolled 20 steps, default", ROOT / "examples/unrolled_rnn.py", ()),
    ("GRU language model, default", ROOT / "examples/gru_language_model.py", ()),
    ("GRU language model, --full --steps all", ROOT / "examples/gru_language_model.py",
     ("--full", "--steps", "all")),
)


def render(script: Path, options: tuple[str, ...], out: Path) -> float:
    """Seconds `graphscope render SCRIPT OPTIONS -o OUT` takes in a fresh process."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "graphscope", "render", str(script), *options, "-o", str(out)],
                   capture_output=True, check=False, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return time.monotonic() - started


def pictures(out: Path) -> str:
    """`step 0: 985 × 4023 pt` for each step picture written."""
    sizes = []
    for path in sorted(out.glob("step-*.svg")):
        width, height = re.search(rb'<svg width="([\d.]+)pt" height="([\d.]+)pt"', path.read_bytes()).groups()
        sizes.append(f"{path.stem}: {float(width):.0f} × {float(height):.0f} pt")
    return "; ".join(sizes) or "none"


def main() -> None:
    """Run every command once and print what it took and drew."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for number, (name, script, options) in enumerate(RUNS):
            out = Path(folder) / str(number)
            seconds = render(script, options, out)
            report_size = (out / "index.html").stat().st_size if (out / "index.html").exists() else 0
            rows.append([name, report.seconds(seconds), pictures(out), f"{report_size / 1e6:.1f} MB"])
    print(report.table(["command", "wall time", "pictures", "index.html"], rows, right=1))


if __name__ == "__main__":
    main()
