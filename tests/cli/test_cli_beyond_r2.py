"""`tms beyond-r2`: the command is tms.experiments.beyond_r2.run (the same saved summary, the
tables print its numbers, the reproduce stage's figures), its output folder is claimed like every
command's (other settings: --force), and bad input is one line and exit status 2. The tiny study
runs once per module for the command and once for the function."""
import contextlib
import io as stdio
import shutil

import numpy as np
import pytest

from tms.cli import common
from tms.cli.main import main
from tms.core import io
from tms.experiments import beyond_r2
from tms.experiments.beyond_r2 import TINY


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The tiny study by the command (folder cmd, figures figs, its stdout) and by the function (api)."""
    d = tmp_path_factory.mktemp("beyond_r2")
    text = stdio.StringIO()
    with contextlib.redirect_stdout(text):
        code = main(["beyond-r2", "--scale", "tiny", "--out", str(d / "cmd"), "--figures", str(d / "figs"),
                     "--no-progress"])
    assert code == 0
    api = beyond_r2.run(TINY, out=d / "api")
    return d, text.getvalue(), api


def test_command_equals_the_function(study):
    d, _, api = study
    (xc, rc), (xa, ra) = io.load_result(d / "cmd" / "summary"), io.load_result(d / "api" / "summary")
    assert io.identity(rc) == io.identity(ra) and rc["settings"] == TINY.as_record()
    assert sorted(xc) == sorted(xa) and all(np.array_equal(xc[k], xa[k]) for k in xa)
    assert [row["sgld"] for row in rc["llcs"]] == [q.sgld for q in api.llcs]


def test_tables_print_the_saved_numbers_and_the_figures_are_drawn(study):
    d, text, api = study
    for q in api.llcs:  # the census minima with rank/2 and the SGLD lambda +- its s.e.
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{q.label} "))
        assert f"{q.loss:.9f}" in line and common.plus_minus(q.sgld, q.sgld_se) in line
    for t in api.transitions:
        assert f"{t.alpha} -> {t.beta}: dL {t.dL:+.5f}" in text
    for x in api.crossings:
        assert f"{x.alpha} -> {x.beta} at n = {common.plus_minus(x.n, x.n_se, '.0f')}" in text
    for seq, n in api.sgd.sequence_counts().items():
        assert f"{n:4d} x {' -> '.join(seq) if seq else '(no plateau)'}" in text
    for name in ("census.png", "census_columns.png", "posterior.png"):
        assert (d / "figs" / name).stat().st_size > 10_000
    assert f"saved {d / 'cmd' / 'summary'}.npz" in text


def test_other_settings_need_force(study, tmp_path, capsys):
    d, _, _ = study
    shutil.copytree(d / "cmd", tmp_path / "b")
    argv = ["beyond-r2", "--scale", "tiny", "--out", str(tmp_path / "b"), "--figures", str(tmp_path / "f"),
            "--no-progress", "--epochs", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epochs: 3 -> 4" in err[0] and "--force" in err[0]
    assert main([*argv, "--force"]) == 0  # the SGD of 3 epochs is replaced, the other parts reused
    assert io.load_result(tmp_path / "b" / "summary")[1]["settings"]["epochs"] == 4
    assert io.load_result(tmp_path / "b" / "sgd")[1]["settings"]["epochs"] == 4


@pytest.mark.parametrize("argv, message", [
    (["--scale", "huge"], "invalid choice: 'huge'"),
    (["--scale", "tiny", "--n-minima", "-1"], "n_minima must be >= 0"),
    (["--scale", "tiny", "--ns", "100,0"], "ns[1] must be > 0"),
    (["--scale", "tiny", "--threads", "0"], "threads"),
    (["--scale", "tiny", "--census-scale", "big"], "invalid choice: 'big'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["beyond-r2", *argv, "--out", str(tmp_path / "x"), "--figures", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x" / "summary.json").exists()
