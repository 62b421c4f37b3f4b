"""The docs gallery: one page per example, its pictures, and the check that fails CI when they are stale."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import subprocess
import sys

import pytest

from conftest import EXAMPLES, ROOT, load_tool


gallery = load_tool("gallery")

SVG = "{http://www.w3.org/2000/svg}svg"
GROWING = '''"""The update recorded in the graph: each step drags the one before along."""
import torch

w = torch.ones(1, requires_grad=True)
for _ in range(3):
    (w * w).sum().backward()
    w = w - 0.1 * w.grad
    w.retain_grad()
'''
FAILING = '''"""One backward, then a mistake."""
import torch

x = torch.tensor([2.0], requires_grad=True)
(x * x).sum().backward()
raise ValueError("stop here")
'''


@pytest.fixture
def examples(tmp_path) -> Path:
    """A small examples folder: a growing graph and a script that fails after one step."""
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "growing.py").write_text(GROWING)
    (folder / "failing.py").write_text(FAILING)
    return folder


def linked_images(page: str) -> list[str]:
    """The image paths a Markdown page shows."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)


def test_build_writes_a_page_per_example_with_its_script_and_graphs(examples, tmp_path):
    docs = tmp_path / "docs"
    written = gallery.build(examples, docs)
    assert sorted(p.relative_to(docs).as_posix() for p in written) == [
        "README.md", "failing.md", "growing.md", "images/failing-step-0000.svg", "images/growing-growth.svg",
        "images/growing-step-0000.svg", "images/growing-step-0001.svg", "images/growing-step-0002.svg"]
    page = (docs / "growing.md").read_text()
    assert GROWING.strip() in page and "The graph grows: step 2 carries" in page
    assert [ET.fromstring((docs / image).read_bytes()).tag for image in linked_images(page)] == [SVG] * 4
    findings = gallery.run_example(examples / "growing.py").run.findings
    assert findings and all(f"**{f.severity}** `{f.rule}` ({f.location}, step {f.step})" in page for f in findings)
    assert "The script stops with `ValueError: stop here`." in (docs / "failing.md").read_text()
    index = (docs / "README.md").read_text()
    assert "| [growing.py](growing.md) | The update recorded in the graph: each step drags the one before along. | 3 |" in index


def test_check_lists_what_is_out_of_date(examples, tmp_path):
    docs = tmp_path / "docs"
    gallery.build(examples, docs)
    assert gallery.check(examples, docs) == []
    (docs / "images" / "growing-step-0001.svg").write_text("<svg/>")
    (docs / "failing.md").unlink()
    (docs / "images" / "gone-step-0000.svg").write_text("<svg/>")
    (docs / "notes.md").write_text("written by hand")
    assert gallery.check(examples, docs) == [f"{docs / 'failing.md'}: missing",
                                             f"{docs / 'images/growing-step-0001.svg'}: out of date",
                                             f"{docs / 'images/gone-step-0000.svg'}: no example makes it any more"]
    gallery.build(examples, docs)
    assert gallery.check(examples, docs) == [] and (docs / "notes.md").exists()


def gallery_tool(*args: str) -> subprocess.CompletedProcess:
    """`python tools/gallery.py ARGS` in a fresh process, as CI runs it."""
    return subprocess.run([sys.executable, str(ROOT / "tools" / "gallery.py"), *args],
                          capture_output=True, text=True, timeout=300)


def test_gallery_tool_builds_and_checks(examples, tmp_path):
    docs = tmp_path / "docs"
    args = ["--examples", str(examples), "-o", str(docs)]
    assert gallery_tool(*args, "--check").returncode == 1
    built = gallery_tool(*args)
    assert built.returncode == 0 and "wrote 8 files" in built.stdout
    (examples / "growing.py").write_text(GROWING.replace("range(3)", "range(2)"))
    stale = gallery_tool(*args, "--check")
    assert stale.returncode == 1
    assert "growing-step-0002.svg: no example makes it any more" in stale.stderr
    assert "run `python tools/gallery.py`" in stale.stderr


def test_gallery_is_not_a_user_command():
    from click.testing import CliRunner

    from graphscope.cli import main

    assert CliRunner().invoke(main, ["docs", "--check"]).exit_code == 2


def test_committed_gallery_covers_every_example():
    docs = ROOT / "docs"
    index = (docs / "README.md").read_text()
    for example in sorted(EXAMPLES.glob("*.py")):
        page = (docs / f"{example.stem}.md").read_text()
        assert f"]({example.stem}.md)" in index
        assert example.read_text().strip() in page
        assert all((docs / image).is_file() for image in linked_images(page))


def test_gallery_without_example_scripts_says_so(tmp_path):
    done = gallery_tool("--check", "--examples", str(tmp_path / "none"), "-o", str(tmp_path))
    assert done.returncode == 2 and "no example scripts (*.py)" in done.stderr and "--examples" in done.stderr
