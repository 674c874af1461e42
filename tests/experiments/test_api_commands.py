"""Each command is a shell over one public function: called with the same arguments, the
command and the function give equal results (zoo, loss, train, transitions, compare, free-energy)."""
import json

import numpy as np
import pytest
import torch

from tms.experiments import compare
from tms.experiments import free_energy as free_energy_run, loss as loss_command, zoo as zoo_command
from tms.experiments import posterior as posterior_run
from tms.theory import zoo
from tms.theory.loss import population_loss
from tms.core import io
from tms.dynamics import antecedents
from tms.dynamics.analysis import TransitionsResult, TransitionsSettings
from tms.experiments import train, transitions
from tms.cli.main import main


def test_zoo_command_equals_run(capsys):
    assert main(["zoo", "--c", "5", "--json", "--no-plot", "--kgons", "4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    api = zoo_command.run(5, kgons=4, plot=False, progress=False)
    assert printed == json.loads(json.dumps(api.as_record()))
    assert [r["label"] for r in printed["points"]] == [q.label for q in api.points]
    assert [(r["k"], r["l"]) for r in printed["kgons"]] == [(r.k, r.l) for r in api.kgons] and len(api.kgons) >= 2


def test_loss_command_equals_run(capsys):
    W, b = [[1.0, 0.0, -0.5], [0.0, 1.0, 0.5]], [0.1, -0.2, 0.0]
    assert main(["loss", "--W", json.dumps(W), "--b", json.dumps(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    res = loss_command.run(torch.tensor(W), torch.tensor(b))
    assert float(lines[0].split("=")[1]) == pytest.approx(res.loss, rel=1e-14)
    assert float(lines[1].split("=")[1]) == pytest.approx(res.grad_norm, rel=1e-3)  # printed to 4 digits
    assert res.loss == pytest.approx(float(population_loss(torch.tensor(W, dtype=torch.float64),
                                                           torch.tensor(b, dtype=torch.float64))), rel=1e-15)
    assert (res.r, res.c) == (2, 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    assert main(["train", "--runs", "2", "--epochs", "40", "--out", str(d / "train")]) == 0
    return d


def test_train_command_equals_run(trained, tmp_path):
    """`tms train --runs 2 --epochs 40` is tms.experiments.train.run(runs=2, epochs=40): equal
    saved results, the settings whole in the record."""
    api = train.run(runs=2, epochs=40, out=tmp_path / "api", progress=False)
    (xa, ra), (xc, rc) = io.load_result(tmp_path / "api"), io.load_result(trained / "train")
    assert io.identity(ra) == io.identity(rc) and rc["settings"] == train.QUICK.replace(runs=2, epochs=40).as_record()
    assert sorted(xa) == sorted(xc) and all(np.array_equal(xa[k], xc[k]) for k in xa)
    assert api.settings == train.QUICK.replace(runs=2, epochs=40)
    with pytest.raises(ValueError, match="unknown setting"):
        train.run(n_steps=5, out=tmp_path / "x")


def test_transitions_command_equals_run(trained):
    d = trained
    args = dict(llc_points=2, n_chains=2, n_draws=40, seed=3)
    assert main(["transitions", "--input", str(d / "train"), "--out", str(d / "cmd"), "--figures", str(d / "f1"),
                 "--llc-points", "2", "--n-chains", "2", "--n-draws", "40", "--seed", "3"]) == 0
    api = transitions.run(str(d / "train"), out=str(d / "api"), figures=str(d / "f2"), progress=False, **args)
    cmd = TransitionsResult.load(d / "cmd")
    assert cmd.settings == api.settings == TransitionsSettings(**args)
    assert cmd.antecedents == api.antecedents and cmd.sequence_counts == api.sequence_counts
    assert cmd.plateau_llc == api.plateau_llc and cmd.figure_run == api.figure_run
    assert cmd.bayesian_unseen == api.bayesian_unseen and cmd.tol == api.tol
    for k, v in api.arrays.items():
        np.testing.assert_array_equal(cmd.arrays[k], v)
    assert (d / "f1" / "sgd_many.png").is_file() and (d / "f2" / "sgd_many.png").is_file()


def test_compare_command_equals_compare(trained, capsys):
    d = trained
    (d / "res" / "sgd").mkdir(parents=True)
    res = transitions.run(str(d / "train"), out=str(d / "res" / "sgd" / "x"), figures=None, llc=False)
    # an observed 5 -> 6 transition at steps 100 and 300, so the comparison has a row to show
    res.antecedents = [antecedents.antecedent(zoo.critical_point(6, "5"), zoo.critical_point(6, "6"), [100, 300])]
    res.save(d / "res" / "sgd" / "train_transitions")
    rows = compare.run(d / "res")
    assert [(r.src, r.dst, r.sgd_count, r.median_step) for r in rows] == [("5", "6", 2, 200.0)]
    assert rows[0].n_c == pytest.approx(zoo.critical_sample_size(zoo.critical_point(6, "5"), zoo.critical_point(6, "6")))
    assert rows[0].posterior_crossing == "-"  # no posterior sweep in these results
    capsys.readouterr()
    assert main(["compare", "--results", str(d / "res")]) == 0
    text = capsys.readouterr().out
    for r in rows:  # every row printed with its numbers
        assert f"{r.src} -> {r.dst}" in text and f"{r.dL:9.5f}" in text and f"{r.n_c:.0f}" in text


def test_posterior_command_equals_run(tmp_path, capsys):
    flags = ["--c", "3", "--ns", "50,100", "--seed", "2", "--seeds", "1", "--n-chains", "3", "--replicas", "2",
             "--n-temps", "3", "--n-warmup", "8", "--n-draws", "6", "--max-steps", "6", "--no-predict", "--no-progress"]
    assert main(["posterior", *flags, "--out", str(tmp_path / "a"), "--figure", str(tmp_path / "a.png")]) == 0
    capsys.readouterr()
    api = posterior_run.run(3, [50, 100], seed=2, seeds=1, n_chains=3, replicas=2, n_temps=3, n_warmup=8, n_draws=6,
                            max_steps=6, predict=False, out=tmp_path / "b", figure=tmp_path / "b.png")
    (xa, ra), (xb, rb) = (io.load_result(d / "c3_quick_b1_s2" / "summary_c3") for d in (tmp_path / "a", tmp_path / "b"))
    assert io.identity(ra) == io.identity(rb) and ra["settings"] == io.jsonable(api.sweep.settings)
    for k in xa:
        np.testing.assert_array_equal(xa[k], xb[k], err_msg=k)
    np.testing.assert_array_equal(xb["mass"], api.sweep.mass)
    assert (tmp_path / "a.png").is_file() and api.summary == tmp_path / "b" / "c3_quick_b1_s2" / "summary_c3"


def test_free_energy_command_equals_run(tmp_path, capsys):
    flags = ["--c", "6", "--ns", "300,500", "--seeds", "2", "--replicas", "2", "--n-temps", "4", "--n-warmup", "8",
             "--n-draws", "12", "--max-steps", "8", "--local-n", "400", "--local-seeds", "1", "--local-replicas", "2",
             "--local-n-temps", "3", "--local-n-warmup", "8", "--local-n-draws", "12", "--labels", "6,5",
             "--sgld-n-chains", "2", "--sgld-n-burnin", "10", "--sgld-n-draws", "20", "--mc-draws", "5000",
             "--no-progress"]
    assert main(["free-energy", *flags, "--out", str(tmp_path / "a"), "--figure", str(tmp_path / "a.png")]) == 0
    capsys.readouterr()
    q = free_energy_run.QUICK
    api = free_energy_run.run(6, [300, 500], sweep=q.sweep.replace(seeds=2, replicas=2, n_temps=4, n_warmup=8,
                                                                   n_draws=12, max_steps=8),
                              local=q.local.replace(n=400, seeds=1, replicas=2, n_temps=3, n_warmup=8, n_draws=12),
                              sgld=q.sgld.replace(n_chains=2, n_burnin=10, n_draws=20), mc_draws=5000,
                              labels=["6", "5"], out=str(tmp_path / "b"), figure=str(tmp_path / "b.png"),
                              progress=False)
    cmd = json.loads((tmp_path / "a" / "c6_quick_b1_s0" / "summary_c6.json").read_text())
    api_record = json.loads(json.dumps(api.summary.as_record()))
    for key in ("readings", "lambda_table", "lam_used", "o1", "settings"):
        assert cmd[key] == api_record[key], key
