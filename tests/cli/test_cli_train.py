"""`tms train` and `tms transitions` end to end at a tiny scale (SPEC 4)."""
import json

import numpy as np
import pytest

from tms.cli.main import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("sgd")
    out = d / "train"
    assert main(["train", "--runs", "3", "--epochs", "40", "--out", str(out)]) == 0
    return d, out


def test_train_writes_a_resumable_result(trained, capsys):
    d, out = trained
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["runs"] == [0, 1, 2] and rec["total_steps"] == 2000 and rec["settings"]["init"] == "4gon"
    assert rec["settings"]["runs"] == 3 and rec["settings"]["epochs"] == 40  # the quick preset, overridden
    with np.load(out.with_suffix(".npz")) as z:
        assert z["W"].shape[1:] == (3, 2, 6) and z["pop_loss"].shape[1] == 3
        first = z["W"].copy()
    # a second call finds the finished result and reuses it
    assert main(["train", "--runs", "3", "--epochs", "40", "--out", str(out)]) == 0
    with np.load(out.with_suffix(".npz")) as z:
        assert np.array_equal(z["W"], first)
    assert "final population loss" in capsys.readouterr().out


def test_transitions_table_and_figures(trained, capsys):
    d, out = trained
    figs = d / "figs"
    code = main(["transitions", "--input", str(out), "--figures", str(figs), "--llc-points", "3",
                 "--n-chains", "4", "--n-draws", "200"])  # long enough to pass the convergence checks
    assert code == 0
    text = capsys.readouterr().out
    assert "plateau sequences" in text and "antecedent" in text
    for name in ("sgd_trajectory.png", "sgd_many.png"):
        assert (figs / name).stat().st_size > 10_000
    rec = json.loads((d / "train_transitions.json").read_text())
    # 2000 steps from the 4-gon start end on the 4++ plateau (SPEC 2 level 2/(3c) - 2/(4c^2))
    assert rec["sequence_counts"] == [[["4++"], 3]]
    k = rec["levels"]["labels"].index("4++")
    assert rec["levels"]["loss"][k] == pytest.approx(2 / 18 - 2 / 144, abs=1e-12)
    assert rec["llc_settings"]["nbeta"] == pytest.approx(1000 / np.log(1000))
    # the Bayesian transitions out of 4++ that SGD did not make are listed, each with its n_c
    assert rec["bayesian_unseen"] and all(r["alpha"] == "4++" and r["n_c"] > 1 for r in rec["bayesian_unseen"])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["transitions", "--input", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "no training result" in err and "Traceback" not in err
    assert main(["train", "--runs", "1", "--epochs", "1", "--lr", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "lr" in capsys.readouterr().err


def test_train_command_equals_train_sgd(trained, tmp_path):
    """`tms train` is train_sgd with the same arguments: the command's saved result equals
    the function's, checkpoint for checkpoint."""
    from tms.core import io
    from tms.dynamics.train import train_sgd

    _, out = trained  # main(["train", "--runs", "3", "--epochs", "40", ...]): the quick scale's other defaults
    api = train_sgd(runs=3, epochs=40, seed=0, init="4gon", path=tmp_path / "api", progress=False)
    arrays, rec = io.load_result(out)
    assert io.identity(rec) == io.identity(io.load_json(tmp_path / "api.json"))
    for key in ("steps", "W", "b", "train_loss", "pop_loss", "X"):
        np.testing.assert_array_equal(arrays[key], getattr(api, key).numpy(), err_msg=key)
    # --scale names a preset of tms.experiments.train.PRESETS; a wrong one is a one-line error
    assert main(["train", "--scale", "paper", "--out", str(tmp_path / "x")]) == 2
