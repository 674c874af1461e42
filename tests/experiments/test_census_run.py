"""tms.experiments.census.run with llc_points: the SGLD lambdas are tms.llc.census.point_llcs of
the K lowest points (saddles skipped), saved at OUT_llc, reused with the same settings and
recomputed with others; OUT_llc holding another command's result is refused."""
import pytest

from tms.core import io
from tms.experiments import census as census_command
from tms.experiments.census import CensusRun, llc_path
from tms.llc.census import point_llcs
from tms.theory.census import QUICK

SETTINGS = QUICK.replace(n_prior=3, n_gd=2, gd_steps=100, max_iter=80)
SHORT = dict(llc_chains=2, llc_steps=40)


def test_llcs_are_point_llcs_of_the_lowest_points(tmp_path):
    out = str(tmp_path / "c5")
    res = census_command.run(2, 5, settings=SETTINGS, out=out, progress=False, llc_points=5, **SHORT)
    assert isinstance(res, CensusRun) and res.points and res.n_starts > 0
    ref = point_llcs(res, res.points[:5], 2, 40, SETTINGS.seed)
    assert res.llcs == ref and all(q.kind != "saddle" for q in res.llcs)
    assert len(ref) < 5  # c = 5 has saddles among its 5 lowest points: skipped
    saved = io.load_result(llc_path(out))[1]
    assert saved["settings"]["labels"] == [q.label for q in res.llcs] and saved["settings"]["n_chains"] == 2
    before = (tmp_path / "c5_llc.json").read_bytes()
    again = census_command.run(2, 5, settings=SETTINGS, out=out, progress=False, llc_points=5, **SHORT)
    assert again.llcs == res.llcs and (tmp_path / "c5_llc.json").read_bytes() == before  # reused
    more = census_command.run(2, 5, settings=SETTINGS, out=out, progress=False, llc_points=5, llc_chains=3,
                              llc_steps=40)
    assert [q.label for q in more.llcs] == [q.label for q in res.llcs] and more.llcs != res.llcs
    assert io.load_result(llc_path(out))[1]["settings"]["n_chains"] == 3


def test_no_llc_points_and_bad_values(tmp_path):
    res = census_command.run(2, 4, settings=SETTINGS, out=str(tmp_path / "c4"), progress=False)
    assert res.llcs == [] and not io.result_exists(tmp_path / "c4_llc")
    with pytest.raises(ValueError, match="llc_steps must be >= 20"):
        census_command.run(2, 4, settings=SETTINGS, out=str(tmp_path / "c4"), llc_points=1, llc_steps=5)


def test_llc_path_of_another_command_is_refused(tmp_path):
    with io.recording_kind("train"):
        io.save_result(tmp_path / "c4_llc", {}, dict(settings=dict(runs=2)))
    with pytest.raises(ValueError, match="holds a `tms train` result"):
        census_command.run(2, 4, settings=SETTINGS, out=str(tmp_path / "c4"), llc_points=1, **SHORT)
