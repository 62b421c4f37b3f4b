"""torchrun and DistributedDataParallel under graphscope, on CPU with gloo and 2 ranks: the
script runs as under plain torchrun (same losses, final parameters bit for bit), each rank
writes its own folder, rank 0 an index of them all, and the doctor reads DDP's errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import graphscope
from graphscope.doctor.ranks import divergence_findings, merged, rank_differences
from graphscope.model import Failure, Finding, Run
from graphscope.output import write_run
from graphscope.ranks import (RANK_FILE, Ranks, completed, index_line, mark_complete, rank_folder, ranks_from,
                              write_index)

SCRIPTS = Path(__file__).resolve().parent / "scripts"
LOSS = re.compile(r"rank (\d+) step (\d+) loss ([-+]?\d+\.\d+(?:e[-+]?\d+)?)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("GRAPHSCOPE_REQUIRE_BROWSER"),
    reason="no chromium on PATH (CI sets GRAPHSCOPE_REQUIRE_BROWSER=1 to make this a failure)")


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 ARGS`, as a user runs it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def graphscope_command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The `graphscope` command itself (it starts torchrun when given --nproc)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "graphscope", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def losses(output: str) -> dict[tuple[int, int], str]:
    """Each rank's printed loss at each step (ranks print side by side, in any order, even
    within a line: print writes the text and its newline separately)."""
    return {(int(rank), int(step)): loss for rank, step, loss in LOSS.findall(output)}


def files(folder: Path) -> list[str]:
    """Every file under `folder`, relative to it, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> dict:
    """The DDP training script under plain torchrun and under torchrun with graphscope render."""
    tmp = tmp_path_factory.mktemp("ddp")
    script = str(SCRIPTS / "ddp_train.py")
    plain = torchrun(script, str(tmp / "plain"), cwd=tmp)
    program = str(Path(sys.executable).with_name("graphscope"))
    rendered = torchrun("--no-python", program, "render", script, str(tmp / "ours"), "-o", "out", "--format", "json",
                        cwd=tmp)
    return {"plain": plain, "rendered": rendered, "tmp": tmp}


def test_under_torchrun_the_script_trains_as_without_graphscope(ddp):
    plain, rendered, tmp = ddp["plain"], ddp["rendered"], ddp["tmp"]
    assert plain.returncode == 0, plain.stderr
    assert rendered.returncode == 0, rendered.stderr
    assert losses(rendered.stdout) == losses(plain.stdout) and len(losses(plain.stdout)) == 6
    for rank in (0, 1):  # DDP's own hooks averaged the gradients exactly as without graphscope
        ours, theirs = torch.load(tmp / f"ours.rank-{rank}"), torch.load(tmp / f"plain.rank-{rank}")
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_each_rank_writes_its_own_folder_and_rank_0_the_index(ddp):
    out = ddp["tmp"] / "out"
    for rank in (0, 1):
        folder = out / f"rank-{rank}"
        assert {"session.json", "index.html", RANK_FILE, "step-0000.json", "step-0002.json"} <= set(files(folder))
        run = graphscope.load(folder)
        assert len(run) == 3 and run.status == 0
        assert run[0].find("model.module.0.weight").grad is not None
    assert (out / "index.html").is_file()
    assert "wrote out/index.html: 2 rank(s)" in ddp["rendered"].stderr
    assert "[rank 1] graphscope: captured 3 step(s)" in ddp["rendered"].stderr


def test_render_nproc_starts_torchrun_and_writes_the_same_layout(ddp):
    tmp = ddp["tmp"]
    done = graphscope_command("render", "--nproc", "2", str(SCRIPTS / "ddp_train.py"), "-o", "nproc",
                              "--format", "json", cwd=tmp)
    assert done.returncode == 0, done.stderr
    assert losses(done.stdout) == losses(ddp["plain"].stdout)
    assert files(tmp / "nproc") == files(tmp / "out")


def test_doctor_nproc_names_the_parameters_ddp_gave_up_on(tmp_path):
    script = str(SCRIPTS / "ddp_aux_head.py")
    plain = torchrun(script, cwd=tmp_path)
    assert plain.returncode != 0 and "Parameter indices which did not receive grad for rank 0: 4 5" in plain.stderr
    done = graphscope_command("doctor", "--nproc", "2", script, cwd=tmp_path)
    assert done.returncode == 1
    assert losses(done.stdout) == losses(plain.stdout)
    report = done.stderr[done.stderr.index("graphscope doctor:"):]
    assert "error ddp-unused-parameter at ddp_aux_head.py:22 (step 1)" in report
    assert "on ranks 0, 1:" in report and "`module.aux.weight` and `module.aux.bias`" in report
    assert "(`return self.head(h)`)" in report and "find_unused_parameters=True" in report
    error = "[rank0]: RuntimeError: Expected to have finished reduction in the prior iteration"
    assert error in plain.stderr and error in done.stderr  # the script's failure, shown as torch shows it


@needs_browser
def test_the_index_switches_between_ranks(ddp):
    index = ddp["tmp"] / "out" / "index.html"
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          index.resolve().as_uri() + "#rank-1"], capture_output=True, text=True, timeout=60).stdout
    assert 'id="gs-rank" title="the report of the chosen rank" src="rank-1/index.html"' in dom
    assert re.search(r'<button type="button" data-rank="1" data-report="rank-1/index.html" class="gs-on">', dom)
    assert "ranks 0, 1: the same graph at every step." in dom


def _rank_run(tmp: Path, rank: int, launch: str, extra_op: bool) -> None:
    """One rank's folder as a render under torchrun writes it, from a recorded block."""
    w = torch.ones(3, requires_grad=True)
    with graphscope.record() as session:
        for step in range(2):
            y = (w * 2) if step == 0 or not extra_op else (w * 2).exp()
            y.sum().backward()
    folder = rank_folder(tmp, rank)
    run = Run(list(session.snapshots), "train.py", 0)
    write_run(run, folder, ["json"], report=False)
    mark_complete(folder, Ranks(rank, 3, 3, launch, False), 0, len(run))


def test_ranks_that_build_different_graphs_are_shown_and_found(tmp_path):
    _rank_run(tmp_path, 0, "now", extra_op=False)
    _rank_run(tmp_path, 1, "now", extra_op=True)
    _rank_run(tmp_path, 2, "an earlier launch", extra_op=False)
    assert sorted(completed(tmp_path, "now", 3)) == [0, 1]
    index, findings = write_index(tmp_path, 3, "now", "train.py")
    page = index.read_text()
    assert "only rank 1: ExpBackward0" in page and "step 1, rank 1 against rank 0" in page
    assert 'data-rank="2" disabled>rank 2: wrote nothing' in page and "2 of them wrote a capture" in page
    assert [(f.rule, f.step) for f in findings] == [("rank-divergence", 1)]
    assert "rank 1 built a different graph than rank 0 at step 1 (only rank 1 has ExpBackward0 @ " in findings[0].message
    said = index_line(index, 3, "now", findings)  # what render prints after writing the index
    assert said.startswith(f"graphscope: wrote {index}: 3 rank(s)") and "rank(s) 2 wrote nothing" in said
    assert "\n\nwarning rank-divergence (step 1)\n" in said


def test_differences_compare_steps_structurally():
    w = torch.ones(2, requires_grad=True)
    same = [graphscope.trace((w * 3).sum()), graphscope.trace((w * 3).sum())]
    other = graphscope.trace((w * 3).sin().sum())
    runs = {0: Run([same[0]]), 1: Run([same[1]]), 2: Run([other])}
    differences = rank_differences(runs)
    assert [(d.rank, d.added, d.removed) for d in differences] == [(2, ("SinBackward0",), ())]
    assert divergence_findings(differences)[0].rule == "rank-divergence"


def test_findings_several_ranks_share_are_told_once():
    shared, own = Finding("r", "error", "m.", "f."), Finding("s", "warning", "n.", "g.")
    told = merged({0: [shared], 1: [shared, own]})
    assert [f.message for f in told] == ["on ranks 0, 1: m.", "on rank 1: n."]


def test_rank_is_read_from_torchrun_s_environment():
    assert ranks_from({}) is None
    env = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "abc",
           "TORCHELASTIC_RESTART_COUNT": "0"}
    assert ranks_from(env) == Ranks(1, 4, 2, "abc/0", False)
    assert ranks_from({**env, "GRAPHSCOPE_LAUNCH": "x"}) == Ranks(1, 4, 2, "x", True)


class _AuxHead(torch.nn.Module):
    """A model whose auxiliary head helps in warm-up steps only."""

    def __init__(self):
        super().__init__()
        self.head, self.aux = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)

    def forward(self, x, warmup):
        if warmup:
            return self.head(x) + self.aux(x)
        return self.head(x)  # the branch that leaves aux out


DDP_ERROR = ("Expected to have finished reduction in the prior iteration before starting a new one. This error "
             "indicates that your module has parameters that were not used in producing loss.\n"
             "Parameter indices which did not receive grad for rank 0: 2 3\n")


def test_the_unused_parameter_rule_names_them_and_the_branch_that_skipped_them():
    """The rule on its own (no DDP): the steps as a recording captured them, DDP's message."""
    torch.manual_seed(0)
    model = _AuxHead()
    with graphscope.Session(root=str(Path(__file__).parent)) as session:
        for step in range(2):
            model(torch.randn(4, 3), warmup=step == 0).sum().backward()
    names = ("module.head.weight", "module.head.bias", "module.aux.weight", "module.aux.bias")
    lines = Path(__file__).read_text().splitlines()
    branch = next(i for i, line in enumerate(lines, 1) if "# the branch that leaves aux out" in line)
    debug = DDP_ERROR.replace("Parameter indices", "Parameters which did not receive grad for rank 0: aux.bias, "
                                                   "aux.weight\nParameter indices")
    for message, known, expected in ((DDP_ERROR, names, "`module.aux.weight` and `module.aux.bias`"),
                                     (debug, (), "`aux.bias` and `aux.weight`"),
                                     (DDP_ERROR, (), "`parameter 2` and `parameter 3`")):
        run = Run(list(session.snapshots), "train.py", 1, failure=Failure("RuntimeError", message, "train.py:40"),
                  ddp_parameters=known, root=str(Path(__file__).parent))
        (finding,) = [f for f in graphscope.diagnose(run) if f.rule == "ddp-unused-parameter"]
        assert expected in finding.message and finding.explains_failure
    assert finding.step is None and finding.location == "train.py:40"  # parameters it cannot find in the graphs
    run = Run(list(session.snapshots), "train.py", 1, failure=Failure("RuntimeError", DDP_ERROR, "train.py:40"),
              ddp_parameters=names, root=str(Path(__file__).parent))
    (finding,) = [f for f in graphscope.diagnose(run) if f.rule == "ddp-unused-parameter"]
    assert finding.location == f"test_ranks.py:{branch}" and finding.step == 1
    assert "from step 1 on (step 0 gave them one)" in finding.message


def test_each_rank_shows_its_own_gradients_and_the_averaged_grad_without_claiming_accumulation(ddp):
    """On each edge what flowed on this rank; on each parameter the `.grad` DDP averaged; no
    'this step' share beside it (DDP replaced it in `.grad`, which a share would make read as
    never zeroed). The reference is the same model and shards in plain PyTorch."""
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    inputs = torch.randn(96, 4, generator=torch.Generator().manual_seed(1))
    local = []
    for rank in (0, 1):
        x = inputs[rank::2][:16]
        loss = nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
        local.append(torch.autograd.grad(loss, model[2].weight)[0])
    averaged = (local[0] + local[1]) / 2
    for rank in (0, 1):
        step = graphscope.load(ddp["tmp"] / "out" / f"rank-{rank}")[0]
        leaf = step.find("model.module.2.weight")
        assert leaf.grad_step is None
        assert abs(leaf.grad.norm - averaged.norm().item()) < 1e-6
        transpose = next(e.target for e in step.edges if e.source == leaf.id)
        onward = [e for e in step.edges if e.source == transpose]
        for edge in [step.edge(leaf.id, transpose), *onward]:
            assert abs(edge.grad.norm - local[rank].norm().item()) < 1e-6, (rank, edge)
