"""The analysis behind `tms transitions` (SPEC 4): its settings validate once, its result
round-trips through its files, and the LLC along the trajectories is reused only for the
same settings and training result (tms.core.io.reuse_problem)."""
import dataclasses

import numpy as np
import pytest

from tms.core import io
from tms.dynamics import analysis
from tms.dynamics.analysis import TransitionsResult, TransitionsSettings, analyse_training, checkpoint_llc
from tms.dynamics.train import train_sgd

LLC = dict(llc_points=2, n_chains=2, n_draws=10, seed=1)


@pytest.mark.parametrize("bad, words", [
    (dict(tol=0.0), "tol must be > 0"), (dict(min_span=0.5), "min_span must be >= 1.0"),
    (dict(min_points=0), "min_points must be >= 1"), (dict(n_draws=1), "n_draws must be >= 2"),
    (dict(eps=10.0), "eps must be <= 1.0"), (dict(beta_lik=0.0), "beta_lik must be > 0"),
    (dict(seed=-1), "seed must be >= 0"), (dict(figure_run=-1), "figure_run must be >= 0"),
    (dict(llc="yes"), "llc must be True or False"), (dict(window=2), "unknown setting(s) window"),
])
def test_settings_refuse_bad_values_naming_the_field(bad, words):
    with pytest.raises(ValueError) as err:
        TransitionsSettings().replace(**bad)
    assert words in str(err.value)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("analysis")
    return d, train_sgd(runs=2, n=100, batch_size=10, epochs=4, path=d / "train", progress=False)


def test_result_round_trips_through_its_files(trained):
    d, res = trained
    got = analyse_training(res, TransitionsSettings(**LLC), llc_path=d / "a_llc", progress=False)
    got = dataclasses.replace(got, input=str(d / "train"))
    got.save(d / "a")
    back = TransitionsResult.load(d / "a")
    assert io.load_json(d / "a.json")["settings"] == TransitionsSettings(**LLC).as_record()
    for f in dataclasses.fields(TransitionsResult):
        if f.name == "arrays":
            assert sorted(back.arrays) == sorted(got.arrays)
            for k, v in got.arrays.items():
                np.testing.assert_array_equal(back.arrays[k], np.asarray(v), err_msg=k)
        else:
            assert io.identity(getattr(back, f.name)) == io.identity(getattr(got, f.name)), f.name
    assert back.settings == got.settings and back.c == 6 and back.input == str(d / "train")
    assert got.arrays["llc"].shape == (len(got.arrays["llc_index"]), 2)
    broken = io.load_json(d / "a.json")
    io.save_result(d / "broken", got.arrays, dict(broken, settings=dict(broken["settings"], n_draws=1)))
    with pytest.raises(ValueError, match="not a `tms transitions` result.*n_draws must be >= 2"):
        TransitionsResult.load(d / "broken")


def test_llc_along_the_trajectories_is_reused_only_for_its_settings(trained, monkeypatch):
    d, res = trained
    first = checkpoint_llc(res, TransitionsSettings(**LLC), path=d / "llc", progress=False)
    assert io.load_json(d / "llc.json")["settings"] == io.jsonable(first.settings)

    def refuse(*a, **k):
        raise AssertionError("recomputed a result that should be reused")

    with monkeypatch.context() as m:
        m.setattr(analysis.tasks, "trajectory_llc", refuse)
        again = checkpoint_llc(res, TransitionsSettings(**LLC), path=d / "llc", progress=False)
        with pytest.raises(AssertionError, match="recomputed"):  # other SGLD settings: not reused
            checkpoint_llc(res, TransitionsSettings(**dict(LLC, n_draws=12)), path=d / "llc", progress=False)
        # the segmentation settings do not enter the LLC's
        checkpoint_llc(res, TransitionsSettings(**LLC, tol=1e-3, prior=False), path=d / "llc", progress=False)
    for k, v in first.arrays().items():
        np.testing.assert_array_equal(again.arrays()[k], v, err_msg=k)
    fresh = checkpoint_llc(res, TransitionsSettings(**LLC), progress=False)  # same seed, same numbers
    np.testing.assert_array_equal(fresh.llc, first.llc)
