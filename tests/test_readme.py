"""The README's two commands and .ci/run stay in step (DEVELOPERS: .ci/run calls exactly
the README's test command), and every code block of the README runs as it is written, by
the explicit rules of `RULES` below (no block is skipped without a stated reason)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))

SETUP = "bash scripts/setup.sh && "  # not run: it creates .venv and installs from the network; these
# tests run in the environment it makes, so `.venv/bin/X` is this interpreter's X
SKIPPED = {  # a block (by its first line) that is not run here -> why
    ".venv/bin/python -m pytest -q -n 2": "the test suite itself (this file is in it); .ci/run runs it verbatim, "
                                     "checked by test_ci_runs_the_readme_test_command_verbatim",
    "from dask_jobqueue import SLURMCluster": "needs a SLURM cluster and dask-jobqueue; compiled only",
}
SIZES = {  # a long command -> the flags appended so it runs in seconds (the same code path)
    "tms reproduce": ["--tiny"],  # the test-only scale: every stage, figures and REPORT.md
    "tms posterior": ["--ns", "40,80", "--seeds", "1", "--replicas", "2", "--n-temps", "2",
                      "--n-warmup", "10", "--n-draws", "10", "--min-draws", "10", "--max-steps", "8",
                      "--plain-draws", "8", "--no-predict", "--no-progress"],
}


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def _first_line(block: str) -> str:
    return block.strip().splitlines()[0].removeprefix(SETUP).split("#")[0].strip()


def shell_line(line: str) -> str:
    """One README command line as the test runs it: setup dropped, .venv/bin/ this
    interpreter, the sizes of SIZES appended (before a trailing comment, which is dropped)."""
    line = line.split("#")[0].strip().removeprefix(SETUP)
    line = line.replace(".venv/bin/python", sys.executable).replace(".venv/bin/tms", f"{sys.executable} -m tms")
    for command, sizes in SIZES.items():
        if command.split()[1] == line.split("-m tms ")[-1].split()[0] and "-m tms" in line:
            line += " " + " ".join(sizes)
    return line


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_readme_opens_with_the_main_job_and_the_test_command():
    main_job, test_cmd = _bash_blocks()[:2]
    assert main_job.startswith("bash scripts/setup.sh && ") and "tms reproduce" in main_job
    assert test_cmd.startswith("bash scripts/setup.sh && ") and "pytest" in test_cmd


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = _bash_blocks()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci


def test_every_figure_the_readme_shows_is_committed():
    text = (ROOT / "README.md").read_text()
    for path in re.findall(r"\((figures/[^)]+)\)", text):
        assert (ROOT / path).is_file(), path


def test_every_skip_names_a_readme_block_and_says_why():
    """The run tests below take every block; the ones they pass over are exactly SKIPPED's."""
    firsts = {_first_line(b) for b in _blocks("bash") + _blocks("python")}
    assert set(SKIPPED) <= firsts, "a SKIPPED entry names no README block"
    assert all(len(why) > 20 for why in SKIPPED.values())
    for block in _blocks("python"):  # every Python block at least compiles, skipped or not
        compile(block, "README.md", "exec")


def _run_bash(block: str, cwd: Path) -> None:
    for line in block.strip().splitlines():
        res = subprocess.run(["bash", "-c", shell_line(line)], cwd=cwd, env=ENV, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        assert "Traceback" not in res.stderr


def test_readme_shell_blocks_run(tmp_path):
    """Every bash block not in SKIPPED, in order in one folder (so the paper-scale rerun
    finds the main job's stages and reuses them), by the rules of shell_line."""
    ran = 0
    for block in _blocks("bash"):
        if _first_line(block) in SKIPPED:
            continue
        _run_bash(block, tmp_path)
        ran += 1
    assert ran == len(_blocks("bash")) - sum(_first_line(b) in SKIPPED for b in _blocks("bash"))
    assert (tmp_path / "results" / "figures" / "REPORT.md").is_file()


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_block_runs_in_a_temp_dir(index, tmp_path, monkeypatch, capsys):
    """Every Python block not in SKIPPED executes in a fresh folder; a block that reads a saved
    training result gets a tiny `tms train` there first (the command it documents)."""
    from tms.cli.main import main

    block = _blocks("python")[index]
    if _first_line(block) in SKIPPED:
        pytest.skip(SKIPPED[_first_line(block)])  # stated in SKIPPED; the rule test checks it has a reason
    monkeypatch.chdir(tmp_path)
    if "results/sgd/train" in block:
        assert main(["train", "--runs", "2", "--epochs", "40", "--out", "results/sgd/train", "--no-progress"]) == 0
    exec(compile(block, "README.md", "exec"), {})
    if "tms.critical_point(6" in block:  # the API tour: top-level names only, and it prints lambda
        assert not re.search(r"^from tms|^import tms\.", block, re.M)
        out = capsys.readouterr().out
        assert "6" in out and "lambda" in out.lower()
    if "tms.analyse_transitions(" in block:  # the command-as-function example writes what the command writes
        assert (tmp_path / "results" / "sgd" / "train_transitions.json").is_file()
        assert (tmp_path / "results" / "figures" / "sgd_many.png").is_file()
