"""The README's two commands and .ci/run stay in step (DEVELOPERS: .ci/run calls exactly
the README's test command)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python example does what it says, after a tiny `tms train`."""
    from tms.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--runs", "2", "--epochs", "40", "--out", "results/sgd/train"]) == 0
    blocks = re.findall(r"```python\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    (code,) = [b for b in blocks if "tms.analyse_transitions(" in b]
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "results" / "sgd" / "train_transitions.json").is_file()
    assert (tmp_path / "results" / "figures" / "sgd_many.png").is_file()


def test_readme_tour_runs_with_top_level_names_only(capsys):
    """The API tour imports nothing but `tms` (and torch) and runs as written."""
    blocks = re.findall(r"```python\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    (code,) = [b for b in blocks if "tms.critical_point(6" in b]
    assert not re.search(r"^from tms|^import tms\.", code, re.M)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "6" in out and "lambda" in out.lower()
