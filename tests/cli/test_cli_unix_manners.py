"""Shell habits: a closed pipe ends quietly with status 0, an ASCII-only stream gets '?' for
what it cannot write instead of a crash, every command takes --no-progress and hands it on,
and nothing writes carriage returns when stderr is not a terminal."""
from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tms.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, env=dict(ENV, **env), timeout=120)


def test_a_closed_pipe_ends_quietly_with_status_0():
    """`tms zoo ... | head -1` once head has gone: stdout is a pipe whose reader is closed, so
    every write fails with EPIPE (made certain here, where a real `head` races the writer)."""
    code = ("import os, sys\nfrom tms.cli.main import main\n"
            "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
            "sys.exit(main(['zoo', '--c', '3', '--no-plot', '--no-progress']))")
    res = _python(code)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stderr == b""


def test_head_in_a_shell_pipeline_sees_the_first_line_and_status_0(tmp_path):
    shell = f"{sys.executable} -m tms zoo --c 3 --no-plot --no-progress --json | head -1; echo status=${{PIPESTATUS[0]}}"
    res = subprocess.run(["bash", "-c", shell], capture_output=True, env=ENV, cwd=tmp_path, timeout=300, text=True)
    assert res.stdout.splitlines() == ["{", "status=0"], res.stdout + res.stderr
    assert res.stderr == "", res.stderr


def test_an_ascii_stream_gets_replacements_not_a_crash(tmp_path):
    """What a command prints (here a free-energy line with a minus sign and lambda) reaches
    an ASCII-only stdout with '?' in place of what ASCII lacks; the exit status is 0."""
    code = ("import sys, tms.cli.loss as loss\nfrom tms.cli.main import main\n"
            "loss.run = lambda args: print('F_n(5) \\u2212 F_n(6): \\u03bb = 8.5, \\u03b2 = 1') or 0\n"
            "sys.exit(main(['loss', '--W', '[[1,0,0],[0,1,0]]']))")
    res = _python(code, PYTHONIOENCODING="ascii")
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode("ascii") == "F_n(5) ? F_n(6): ? = 8.5, ? = 1\n"
    assert b"Traceback" not in res.stderr


def _subparsers():
    parser = cli_main.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sub.choices


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_command_takes_no_progress(name):
    actions = {a.dest: a for a in _subparsers()[name]._actions}
    assert "--no-progress" in actions["progress"].option_strings
    assert actions["progress"].default is True


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_command_hands_no_progress_to_its_experiment(name):
    """Where the experiment's run takes `progress`, the command passes args.progress to it."""
    mod = importlib.import_module(f"tms.cli.{name.replace('-', '_')}")
    exp = importlib.import_module(f"tms.experiments.{name.replace('-', '_')}")
    if "progress" in inspect.signature(exp.run).parameters:
        assert "progress=args.progress" in inspect.getsource(mod), name


def test_no_progress_reaches_the_experiment(monkeypatch, capsys):
    seen = {}
    from tms.experiments import zoo as zoo_experiment

    real = zoo_experiment.run
    monkeypatch.setattr(zoo_experiment, "run", lambda *a, **k: seen.update(k) or real(*a, **k))
    assert cli_main.main(["zoo", "--c", "3", "--no-plot", "--no-progress"]) == 0
    assert seen["progress"] is False


def test_a_long_phase_writes_plain_lines_to_a_file_not_carriage_returns(tmp_path):
    """stderr redirected to a file: the SGD phase's progress comes as lines, no '\\r'."""
    code = ("import tms.core.progress as p; p.PLAIN_INTERVAL = 0.0\n"
            "import sys; from tms.cli.main import main\n"
            f"sys.exit(main(['train', '--runs', '2', '--epochs', '300', '--n', '100', '--batch-size', '10', "
            f"'--out', {str(tmp_path / 'train')!r}]))")
    with open(tmp_path / "err.txt", "wb") as err:
        res = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err, env=ENV, timeout=300)
    assert res.returncode == 0
    text = (tmp_path / "err.txt").read_text()
    assert "\r" not in text
    assert "SGD x 2 runs: " in text


def test_an_identical_rerun_announces_what_it_reused(tmp_path, capsys):
    argv = ["train", "--runs", "2", "--epochs", "3", "--n", "100", "--batch-size", "10", "--no-progress",
            "--out", str(tmp_path / "train")]
    assert cli_main.main(argv) == 0
    first = capsys.readouterr()
    assert "reused:" not in first.err
    assert cli_main.main(argv) == 0
    again = capsys.readouterr()
    assert f"reused: training result (2 runs x 3 epochs, same settings) from {tmp_path / 'train'}" in again.err
    assert again.out == first.out  # the same numbers, now said to come from the saved result


class _Stop(Exception):
    """Raised where the long work would begin: the estimate must be out by then."""


def _stop(*args, **kwargs):
    raise _Stop


@pytest.mark.parametrize("argv, module, attr", [
    (["llc", "--point", "6", "--n-chains", "100000", "--n-burnin", "5000000"], "tms.experiments.llc", "estimate_llc"),
    (["train", "--runs", "10000", "--epochs", "1000000"], "tms.experiments.train", "tasks.train_sgd"),
    (["posterior", "--c", "6", "--replicas", "10000", "--no-predict"], "tms.experiments.posterior",
     "bayes_tasks.phase_sweep"),
    (["zoo", "--c", "16", "--no-plot"], "tms.experiments.zoo", "zoo.critical_points"),
], ids=["llc", "train", "posterior", "zoo-c16"])
def test_the_issues_unbounded_runs_say_how_long_before_starting(argv, module, attr, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    monkeypatch.setattr(owner, name, _stop)
    assert cli_main.main(["--debug", *argv]) == 1  # --debug: the stand-in error's traceback, not a log file
    err = capsys.readouterr().err
    assert "_Stop" in err
    assert err.startswith("tms: expect about "), err
    assert "progress follows" in err


def test_a_posterior_rerun_announces_its_reused_points(tmp_path, capsys):
    argv = ["posterior", "--c", "3", "--ns", "40,80", "--seeds", "1", "--replicas", "2", "--n-temps", "2",
            "--n-warmup", "10", "--n-draws", "10", "--min-draws", "10", "--max-steps", "8", "--plain-draws", "8",
            "--no-predict", "--no-progress", "--out", str(tmp_path / "post"), "--figure", str(tmp_path / "p.png")]
    assert cli_main.main(argv) == 0
    assert "reused:" not in capsys.readouterr().err
    assert cli_main.main(argv) == 0
    err = capsys.readouterr().err
    assert "reused: 2 of 2 posterior points (n = 40, 80; same settings) from " in err
