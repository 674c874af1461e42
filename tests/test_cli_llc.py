"""`tms llc` end to end: zoo point, saved checkpoints, plot, errors."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tms import io
from tms.cli import main
from tms.data import sample_inputs
from tms.llc import default_nbeta, estimate_llc


def _four_gon(c):
    """The 4-gon at c: closed form (l*, b*) = (1, 0) (SPEC 2), zero columns at bias -1."""
    W = torch.zeros(2, c, dtype=torch.float64)
    W[0, :4] = torch.tensor([1.0, 0.0, -1.0, 0.0])
    W[1, :4] = torch.tensor([0.0, 1.0, 0.0, -1.0])
    b = torch.full((c,), -1.0, dtype=torch.float64)
    b[:4] = 0.0
    return W, b


@pytest.fixture
def fast_zoo(monkeypatch):
    """tms.zoo.critical_point builds and verifies the whole zoo of c (minutes on a loaded
    2-core machine); the CLI plumbing is tested with the closed-form 4-gon instead."""
    from tms.loss import population_loss

    try:
        from tms import zoo
    except ImportError:  # the zoo module not in this checkout: the CLI only needs critical_point
        import sys
        import types

        zoo = types.ModuleType("tms.zoo")
        monkeypatch.setitem(sys.modules, "tms.zoo", zoo)
        import tms

        monkeypatch.setattr(tms, "zoo", zoo, raising=False)

    def critical_point(c, label):
        if label != "4":
            raise ValueError(f"unknown zoo label {label!r} for c = {c}; valid labels: '4' (test zoo)")
        W, b = _four_gon(c)
        return SimpleNamespace(label="4", W=W, b=b, loss=population_loss(W, b).item(), llc=None,
                               hessian_rank=None)

    monkeypatch.setattr(zoo, "critical_point", critical_point, raising=False)


def test_zoo_point_prints_saves_and_plots(tmp_path, capsys, fast_zoo):
    out = tmp_path / "p4"
    png = tmp_path / "p4.png"
    rc = main(["llc", "--c", "6", "--point", "4", "--chains", "3", "--steps", "40", "--seed", "4",
               "--out", str(out), "--plot", str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    W, b = _four_gon(6)
    assert "zoo point 4 (c = 6)" in text and "n/a (not C^2)" in text
    assert png.exists() and png.stat().st_size > 10_000
    arr, rec = io.load_result(out)
    direct = estimate_llc(W, b, loss="population", nbeta=default_nbeta(1000), eps=1e-3, gamma=1.0,
                          n_chains=3, n_steps=40, generator=4)
    assert np.allclose(arr["llc_chains"], direct.llc_chains.numpy(), rtol=1e-12)
    assert rec["point"] == "4" and rec["nbeta"] == pytest.approx(1000 / math.log(1000))
    assert f"{direct.llc.item():10.4f}" in text
    # the empirical loss on a drawn data set of size --n
    rc = main(["llc", "--c", "6", "--point", "4", "--loss", "empirical", "--n", "300", "--chains", "2",
               "--steps", "20", "--batch-size", "50", "--out", str(tmp_path / "e")])
    assert rc == 0
    arr, rec = io.load_result(tmp_path / "e")
    direct = estimate_llc(W, b, sample_inputs(300, 6, 0), nbeta=default_nbeta(300), eps=1e-3, gamma=1.0,
                          n_chains=2, n_steps=20, batch_size=50, generator=0)
    assert np.allclose(arr["llc_chains"], direct.llc_chains.numpy(), rtol=1e-12)


def test_checkpoints_file_uses_its_training_sets(tmp_path, capsys):
    # a synthetic trajectory: T = 3 checkpoints of R = 2 runs, one training set per run
    g = torch.Generator().manual_seed(0)
    W = 0.5 * torch.randn(3, 2, 2, 4, generator=g, dtype=torch.float64)
    b = torch.zeros(3, 2, 4, dtype=torch.float64)
    X = sample_inputs(150, 4, 1, batch_shape=(2,))
    path = tmp_path / "traj"
    io.save_result(path, {"steps": np.array([0, 10, 20]), "W": W, "b": b, "X": X}, {"kind": "test"})
    rc = main(["llc", "--checkpoints", str(path) + ".npz", "--chains", "2", "--steps", "20",
               "--out", str(tmp_path / "res")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "t=20,r1" in text and "loss=empirical" in text
    arr, rec = io.load_result(tmp_path / "res")
    direct = estimate_llc(W, b, X, nbeta=default_nbeta(150), eps=1e-3, gamma=1.0, n_chains=2, n_steps=20,
                          generator=0)
    assert arr["llc"].shape == (3, 2)
    assert np.allclose(arr["llc_chains"], direct.llc_chains.numpy(), rtol=1e-12, equal_nan=True)


def test_errors_are_one_line(tmp_path, capsys, fast_zoo):
    assert main(["llc", "--c", "6", "--point", "9+"]) == 2
    err = capsys.readouterr().err
    assert "unknown zoo label" in err and "Traceback" not in err
    assert main(["llc", "--checkpoints", str(tmp_path / "missing.npz")]) == 2
    assert "no file" in capsys.readouterr().err
    assert main(["llc", "--c", "6", "--point", "4", "--eps", "-1"]) == 2
    assert "eps" in capsys.readouterr().err
