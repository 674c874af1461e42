"""`tms susceptibility` on a tiny real posterior sweep: the command equals the function, the
data sets it regenerates are the ones the posterior saw, the summary and figure are written."""
import numpy as np
import pytest
import torch

from tms.bayes import posterior, predictions
from tms.bayes.feature_response import feature_response, sample_losses
from tms.cli.main import main
from tms.core import inference, io
from tms.experiments import posterior as posterior_run
from tms.experiments import susceptibility as experiment
from tms.theory.data import sample_inputs
from tms.theory.zoo import TransitionRow

TINY = dict(seeds=2, n_chains=3, replicas=2, n_temps=3, n_warmup=8, n_draws=6, max_steps=6)
NS = [50, 100]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("post")
    return posterior_run.run(3, NS, seed=1, out=out, predict=False, **TINY).run_dir


def test_command_equals_function(run_dir, tmp_path, capsys):
    fig = tmp_path / "cmd.png"
    argv = ["susceptibility", "--run", str(run_dir), "--out", str(tmp_path / "cmd"), "--figure", str(fig),
            "--n-batches", "2", "--no-predict"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "susceptibility c=3: 2 n values" in text and "no predicted n_c" in text
    api = experiment.run(run_dir, out=tmp_path / "api", n_batches=2, predict=False)
    cmd_arrays, cmd_rec = io.load_result(tmp_path / "cmd" / "susceptibility_c3")
    api_arrays, api_rec = io.load_result(api.summary)
    assert set(cmd_arrays) == set(api_arrays) and "norm_diagonal" in api_arrays
    for key in api_arrays:
        np.testing.assert_array_equal(cmd_arrays[key], api_arrays[key], err_msg=key)
    assert cmd_rec["settings"] == api_rec["settings"] == experiment.QUICK.replace(n_batches=2).as_record()
    assert api_rec["settings"]["n_batches"] == 2 and api_rec["settings"]["local"] is None
    assert fig.exists() and fig.stat().st_size > 10_000
    # the table prints the summary's numbers
    assert f"{api_arrays['norm_diagonal'][0]:9.3g}" in text


def test_responses_from_the_data_the_posterior_saw(run_dir, tmp_path):
    """Every n: the data sets regenerated from the sweep's seeds give back the loss the sweep saved
    with each draw, and the response equals feature_response on the draws read straight from the
    netCDF files (independent of the experiment's loading)."""
    res = experiment.run(run_dir, out=tmp_path, predict=False)
    for n, resp in zip(NS, res.responses):
        W, b, X = [], [], []
        for s in range(TINY["seeds"]):
            draws = inference.load_point_draws(run_dir / f"posterior_c3_n{n}_draws_s{s}.nc")
            theta = torch.as_tensor(draws["theta"], dtype=torch.float64)  # (R, T, 9)
            W.append(theta[..., :6].reshape(theta.shape[:2] + (2, 3)))
            b.append(theta[..., 6:])
            X.append(sample_inputs(n, 3, posterior.data_seed(1, n, s), dtype=torch.float64))
            loss = sample_losses(W[-1], b[-1], X[-1]).mean(-1)  # (R, T)
            np.testing.assert_allclose(loss.numpy(), draws["loss"], rtol=1e-10, atol=1e-12)
        direct = feature_response(W, b, torch.stack(X), 1.0)
        np.testing.assert_allclose(resp.norm.chi, direct.norm.chi, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(resp.feature_loss.se, direct.feature_loss.se, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(resp.influence.bif, direct.influence.bif, rtol=1e-12, atol=1e-14)
        assert resp.counts.sum(1).tolist() == [n] * TINY["seeds"]


def test_figure_marks_predictions_and_crossings(run_dir, tmp_path, monkeypatch):
    row = TransitionRow(alpha="5", beta="6", L_alpha=0.1, L_beta=0.08, dL=-0.02, lam_alpha=5.0, lam_beta=6.5,
                        dlambda=1.5, dc=2.7, n_c=70.0)
    monkeypatch.setattr(predictions, "predicted_transitions", lambda c, beta_lik, llcs=None: [row])
    fig = tmp_path / "s.png"
    res = experiment.run(run_dir, out=tmp_path, figure=fig)
    assert res.figure == fig and fig.exists() and fig.stat().st_size > 10_000
    _, rec = io.load_result(res.summary)
    assert rec["transitions"][0]["n_c"] == 70.0 and rec["transitions_error"] is None
    assert ("5", "6") in [(x["alpha"], x["beta"]) for x in rec["crossings"]]
    with pytest.raises(ValueError, match="no posterior sweep summary"):
        experiment.run(tmp_path / "nothing", out=tmp_path)


def test_local_sgld_beside_the_global_estimate(run_dir, tmp_path, capsys):
    """--local LABEL adds the local-SGLD responses at that zoo point (same data sets, nbeta = n
    beta_lik) to the summary and the table; the command equals the function; an unknown label
    fails before any work."""
    flags = dict(local="3", n_chains=2, n_burnin=20, n_draws=40, thin=5, eps=1e-4)
    argv = ["susceptibility", "--run", str(run_dir), "--out", str(tmp_path / "cmd"), "--figure",
            str(tmp_path / "c.png"), "--no-predict"] + [a for k, v in flags.items()
                                                          for a in (f"--{k.replace('_', '-')}", str(v))]
    assert main(argv) == 0
    assert "localised at the zoo point 3" in capsys.readouterr().out
    api = experiment.run(run_dir, out=tmp_path / "api", predict=False, **flags)
    assert api.local is not None and api.local.label == "3" and list(api.local.ns) == NS
    cmd_arrays, _ = io.load_result(tmp_path / "cmd" / "susceptibility_c3")
    api_arrays, rec = io.load_result(api.summary)
    assert rec["local"] == "3" and api_arrays["local_influence_matrix"].shape == (2, 3, 3)
    for key in api_arrays:
        np.testing.assert_array_equal(cmd_arrays[key], api_arrays[key], err_msg=key)
    assert (api.local.acceptance > 0.9).all()
    with pytest.raises(ValueError, match="unknown zoo label"):
        experiment.run(run_dir, out=tmp_path / "bad", predict=False, local="9")


def test_bif_panels_below_at_and_above_the_crossing():
    """The BIF panels sit at the grid n nearest the first recorded crossing and a factor >= 1.5
    either side (the grid's ends where none is that far; ends and middle without a crossing)."""
    from tms.report.plots.susceptibility import transition_ns

    ns = np.array([100, 200, 300, 450, 600, 800, 1100])
    rec = dict(crossings=[dict(alpha="5", beta="6", n="354"), dict(alpha="other", beta="5", n="243")])
    assert transition_ns(ns, rec) == [("below", 200), ("at", 300), ("above", 600)]
    rec = dict(crossings=[dict(alpha="5", beta="6", n="> 1100"), dict(alpha="4", beta="5", n="120")])
    assert transition_ns(ns, rec) == [("below", 100), ("at", 100), ("above", 200)]
    assert transition_ns(ns, dict(crossings=[])) == [("below", 100), ("middle", 450), ("above", 1100)]
