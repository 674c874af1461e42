"""The r = 3 study (tms.experiments.beyond_r2) at its tiny scale: every part runs, is saved and
reused, and its tables agree with what they are computed from."""
import math

import numpy as np

from tms.core import io
from tms.experiments import beyond_r2
from tms.experiments.beyond_r2 import TINY, observed_crossings
from tms.report.plots.census import plot_beyond_r2


def test_tiny_study_runs_saves_and_reuses(tmp_path):
    res = beyond_r2.run(TINY, out=tmp_path / "b")
    assert (res.census.r, res.census.c) == (3, 5)
    assert [q.label for q in res.llcs] == [q.label for q in res.census.points if q.kind in ("min", "min?")][:2]
    assert set(res.posterior.phases) <= {q.label for q in res.census.points} | {"other"}
    assert res.sgd is not None and res.sgd.level_index.shape[1] == TINY.sgd_runs
    arrays, rec = io.load_result(tmp_path / "b" / "summary")
    np.testing.assert_array_equal(arrays["mass"], res.posterior.mass)
    assert rec["settings"] == TINY.as_record() and len(rec["census"]) == len(res.census.points)
    again = beyond_r2.run(TINY, out=tmp_path / "b")  # every part reused: the same numbers
    np.testing.assert_array_equal(again.posterior.mass, res.posterior.mass)
    assert [q.sgld for q in again.llcs] == [q.sgld for q in res.llcs]
    figs = plot_beyond_r2(tmp_path / "b", tmp_path / "figs")
    assert all(p.is_file() and p.stat().st_size > 10_000 for p in figs)


def test_observed_crossings_by_hand():
    """beta overtakes alpha between n = 100 and 400 where the mass difference goes -0.2 -> +0.2:
    log-linear midpoint n = 200; the delta-method error from se 0.05 on each mass."""
    ns, phases = [100, 400], ["a", "b"]
    mass = np.array([[0.6, 0.4], [0.4, 0.6]])
    se = np.full((2, 2), 0.05)
    (x,) = observed_crossings(ns, phases, mass, se)
    assert (x.alpha, x.beta) == ("a", "b") and math.isclose(x.n, 200.0)
    s = math.hypot(0.05, 0.05)
    assert math.isclose(x.n_se, 200 * math.log(4) * math.hypot(0.2 * s, 0.2 * s) / 0.4**2)


def test_only_the_full_reproduce_runs_the_r3_stage():
    from tms.experiments import reproduce
    assert reproduce.SCALES["full"]["beyond_r2"] == beyond_r2.FULL
    assert all("beyond_r2" not in reproduce.SCALES[s] for s in ("tiny", "quick"))
