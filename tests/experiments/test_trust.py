"""A number is printed only with its support: diagnostics that cannot be computed are a flag,
never a pass; a result without a standard error says so; a crash-free posterior with one ladder."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tms.experiments import llc, loss
from tms.samplers import diagnostics


def test_llc_whose_draws_never_move_is_flagged_not_ok():
    """eps = 1e-300: w + eps grad == w in float64, every draw equals L(w*): R-hat and the trend
    are 0 / 0. Before the UNDIAGNOSED flag this printed 0.0000 +- 0.0000 'ok'."""
    run = llc.run(point="6", c=6, eps=1e-300, n_chains=2, n_burnin=0, n_draws=16, seed=1)
    res = run.result
    assert abs(float(res.llc)) < 1e-10 and float(res.draws.std()) == 0.0  # the chains did not move at all
    assert not math.isfinite(float(res.rhat))
    assert bool(res.flags.undiagnosed) and not bool(res.trustworthy)
    text = res.summary(labels=run.labels)
    assert "UNDIAGNOSED" in text and "flagged: 1 of 1" in text and " ok" not in text


def test_a_moving_llc_run_has_its_diagnostics():
    res = llc.run(point="5+", c=6, n_chains=2, n_burnin=0, n_draws=16, seed=1).result
    assert math.isfinite(float(res.rhat)) and math.isfinite(float(res.trend_p))
    assert not bool(res.flags.undiagnosed)


def test_undefined_rank_diagnostics_fail():
    assert diagnostics.failing({"rhat": None, "ess_bulk": float("nan"), "ess_tail": 500.0}) == [
        "rhat undefined", "ess_bulk undefined"]
    assert diagnostics.failing({"rhat": 1.0, "ess_bulk": 500.0}) == []
    assert diagnostics.failing({"rhat": 1.5, "ess_bulk": 5.0}) == ["rhat", "ess_bulk"]


def test_a_loss_that_overflows_is_an_error_not_nan():
    assert math.isfinite(loss.run([[1.0, 0.0], [0.0, 1.0]]).loss)
    with pytest.raises(ValueError, match="non-finite loss"):
        loss.run([[1e200, 0.0], [0.0, 1.0]])


def test_posterior_with_one_ladder_runs_and_never_reports_a_zero_error(tmp_path):
    """replicas = 1 (one ladder per data set) crashed in the mass's error; now the error is the
    indicator's mean s.e. from its ESS: finite, or NaN where the ESS is undefined, never 0
    for a mass strictly between 0 and 1."""
    from tms.experiments import posterior

    res = posterior.run(3, [100], seeds=1, replicas=1, n_temps=2, n_chains=2, n_warmup=10, n_draws=6, min_draws=2,
                        plain_draws=4, out=tmp_path, figure=None, predict=False).sweep
    mass, se = np.asarray(res.mass), np.asarray(res.mass_se)
    assert np.allclose(mass.sum(-1), 1.0)
    inside = (mass > 0) & (mass < 1)
    assert not (se[inside] == 0).any()
    assert ((se[np.isfinite(se)]) >= 0).all()


def test_posterior_min_draws_above_n_draws_is_an_error_naming_both(tmp_path):
    from tms.experiments import posterior

    with pytest.raises(ValueError, match="min_draws 50 exceeds n_draws 5"):
        posterior.run(3, [100], min_draws=50, n_draws=5, out=tmp_path, figure=None)
    assert not list(tmp_path.iterdir())


def test_posterior_with_three_draws_is_flagged_not_passed(tmp_path, capsys):
    """3 rounds per data set: no rank diagnostic and no mass-indicator ESS exists; the command
    says so (before: '0 of 2 data sets flagged' and masses '+- 0.000' beside 'ess nan')."""
    from tms.cli.main import main

    argv = ["posterior", "--c", "3", "--ns", "100", "--seeds", "2", "--replicas", "2", "--n-temps", "2",
            "--n-chains", "2", "--n-warmup", "10", "--n-draws", "3", "--min-draws", "2", "--plain-draws", "4",
            "--out", str(tmp_path / "o"), "--figure", str(tmp_path / "f.png"), "--no-progress", "--no-predict"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "these errors are not supported" in out and "ess n/a (undefined)" in out
    assert "2 of 2 data sets flagged" in out and "rhat_loss undefined" in out


class _Reached(Exception):
    """Raised by a stand-in for the sampler: every check before the work has passed."""


def test_free_energy_seeds_follow_the_data_sets(tmp_path, monkeypatch):
    """With data, the sweep's seeds are the data sets per n the file holds (what is reported as
    S), not the preset's; a different value given is an error naming both."""
    from tms.experiments import free_energy

    def measure(c, ns, settings, **kw):
        raise _Reached(settings.sweep.seeds)

    monkeypatch.setattr(free_energy, "measure", measure)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X0=rng.random((50, 4)), X1=rng.random((50, 4)))
    with pytest.raises(_Reached) as got:
        free_energy.run(4, data=str(tmp_path / "d.npz"), out=str(tmp_path / "o"), figure=str(tmp_path / "f.png"))
    assert got.value.args == (2,)
    with pytest.raises(ValueError, match="seeds 3 conflicts with data"):
        free_energy.run(4, data=str(tmp_path / "d.npz"), out=str(tmp_path / "o"), figure=str(tmp_path / "f.png"),
                        sweep=free_energy.QUICK.sweep.replace(seeds=3))


def test_llc_override_lets_a_theory_lambda_be_replaced(tmp_path, monkeypatch):
    from tms.experiments import posterior

    def phase_sweep(*a, **kw):
        raise _Reached(kw["llcs"])

    monkeypatch.setattr(posterior.bayes_tasks, "phase_sweep", phase_sweep)
    with pytest.raises(ValueError, match="theory lambda 6 = 8.5"):
        posterior.run(6, [100], llcs={"6": 100.0}, out=tmp_path, figure=None)
    with pytest.raises(_Reached) as got:
        posterior.run(6, [100], llcs={"6": 100.0}, llc_override=True, out=tmp_path, figure=None)
    assert got.value.args == ({"6": 100.0},)
