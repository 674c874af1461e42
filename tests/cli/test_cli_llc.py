"""`tms llc` end to end: the command equals its public function (tms.experiments.llc.run) with the
same arguments, and both equal the estimator; zoo point, saved checkpoints, plot, errors."""
import math

import arviz
import numpy as np
import pytest
import torch

from tms.core import io
from tms.cli.main import main
from tms.theory.data import sample_inputs
from tms.llc.estimator import default_nbeta, estimate_llc
from tms.experiments import llc


def assert_same_arrays(saved: dict, run) -> None:
    assert set(saved) >= set(run.result.ARRAYS) and len(run.result.ARRAYS) == 14
    for key in run.result.ARRAYS:
        assert np.array_equal(saved[key], getattr(run.result, key).numpy(), equal_nan=True), key


def test_zoo_point_prints_saves_and_plots(tmp_path, capsys):
    from tms.theory import zoo

    out = tmp_path / "p5"
    png = tmp_path / "p5.png"
    rc = main(["llc", "--c", "6", "--point", "5+", "--n-chains", "3", "--n-burnin", "10", "--n-draws", "30",
               "--seed", "4",
               "--out", str(out), "--plot", str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    q = zoo.critical_point(6, "5+")
    assert "zoo point 5+ (c = 6)" in text and f"theory lambda = rank/2 = {q.llc}" in text
    assert f"Hessian rank {q.hessian_rank}" in text
    assert png.exists() and png.stat().st_size > 10_000
    arr, rec = io.load_result(out)
    assert_same_arrays(arr, llc.run(point="5+", c=6, n_chains=3, n_burnin=10, n_draws=30, seed=4))
    idata = arviz.from_netcdf(str(out) + ".nc")  # the draws, for the ecosystem's tools
    assert np.array_equal(idata.posterior["loss"].values, arr["loss_trace"][:, 10:])  # (chain, draw)
    direct = estimate_llc(q.W, q.b, loss="population", nbeta=default_nbeta(1000), eps=1e-3, gamma=1.0,
                          n_chains=3, n_burnin=10, n_draws=30, seed=4)
    assert np.allclose(arr["llc_chains"], direct.llc_chains.numpy(), rtol=1e-12)
    assert rec["point"] == "5+" and rec["nbeta"] == pytest.approx(1000 / math.log(1000))
    assert f"{direct.llc.item():10.4f}" in text
    # the empirical loss on a drawn data set of size --n, minibatch
    rc = main(["llc", "--c", "6", "--point", "5+", "--loss", "empirical", "--n", "300", "--n-chains", "2",
               "--n-burnin", "0", "--n-draws", "20", "--batch-size", "50", "--out", str(tmp_path / "e")])
    assert rc == 0
    arr, rec = io.load_result(tmp_path / "e")
    assert_same_arrays(arr, llc.run(point="5+", c=6, loss="empirical", n=300, n_chains=2, n_burnin=0, n_draws=20,
                                    batch_size=50))
    direct = estimate_llc(q.W, q.b, sample_inputs(300, 6, 0), nbeta=default_nbeta(300), eps=1e-3, gamma=1.0,
                          n_chains=2, n_burnin=0, n_draws=20, batch_size=50, seed=0)
    assert np.allclose(arr["llc_chains"], direct.llc_chains.numpy(), rtol=1e-12)


def test_checkpoints_file_uses_its_training_sets(tmp_path, capsys):
    # a synthetic trajectory: T = 3 checkpoints of R = 2 runs, one training set per run
    g = torch.Generator().manual_seed(0)
    W = 0.5 * torch.randn(3, 2, 2, 4, generator=g, dtype=torch.float64)
    b = torch.zeros(3, 2, 4, dtype=torch.float64)
    X = sample_inputs(150, 4, 1, batch_shape=(2,))
    path = tmp_path / "traj"
    io.save_result(path, {"steps": np.array([0, 10, 20]), "W": W, "b": b, "X": X}, {"kind": "test"})
    rc = main(["llc", "--checkpoints", str(path) + ".npz", "--n-chains", "2", "--n-burnin", "0",
               "--n-draws", "20", "--out", str(tmp_path / "res"), "--plot", str(tmp_path / "traj.png")])
    assert rc == 0
    assert (tmp_path / "traj.png").exists() and (tmp_path / "traj_vs_checkpoint.png").stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "t=20,r1" in text and "loss=empirical" in text
    arr, rec = io.load_result(tmp_path / "res")
    assert_same_arrays(arr, llc.run(checkpoints=str(path) + ".npz", n_chains=2, n_burnin=0, n_draws=20))
    direct = estimate_llc(W, b, X, nbeta=default_nbeta(150), eps=1e-3, gamma=1.0, n_chains=2, n_burnin=0, n_draws=20,
                          seed=0)
    assert arr["llc"].shape == (3, 2)
    assert np.allclose(arr["llc_chains"], direct.llc_chains.numpy(), rtol=1e-12, equal_nan=True)


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["llc", "--c", "6", "--point", "9+"]) == 2
    err = capsys.readouterr().err
    assert "unknown zoo label" in err and "Traceback" not in err
    assert main(["llc", "--checkpoints", str(tmp_path / "missing.npz")]) == 2
    assert "no file" in capsys.readouterr().err
    assert main(["llc", "--c", "6", "--point", "5", "--eps", "-1"]) == 2
    assert "eps" in capsys.readouterr().err
    assert main(["llc", "--point", "5", "--n-draws", "4"]) == 2
    assert "n_draws" in capsys.readouterr().err
