"""Split R-hat and ESS against closed forms (AR(1) chains, shifted chains)."""
import math

import numpy as np
import pytest
from scipy.signal import lfilter

from tms.samplers import diagnostics


def _ar1(phi, shape, n, seed):
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(shape + (n + 300,))
    return lfilter([1.0], [1.0, -phi], e, axis=-1)[..., 300:]


@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_ess_of_ar1_matches_closed_form(phi):
    # ESS of N draws of a stationary AR(1) series -> N (1 - phi) / (1 + phi); 200 independent
    # replicates of (4 chains x 1000 draws) give the estimator's mean and its standard error
    R, m, n = 200, 4, 1000
    est = diagnostics.ess(_ar1(phi, (R, m), n, seed=int(phi * 10)))
    true = m * n * (1 - phi) / (1 + phi)
    assert abs(est.mean() - true) < 4 * est.std(ddof=1) / math.sqrt(R), (est.mean(), true)
    # one estimate is within a few of its own standard deviations of the truth
    assert np.mean(np.abs(est - true) < 3 * est.std(ddof=1)) > 0.97


def test_ess_detects_strong_autocorrelation_and_iid():
    iid = diagnostics.ess(_ar1(0.0, (50, 4), 1000, seed=1))
    sticky = diagnostics.ess(_ar1(0.99, (50, 4), 1000, seed=2))
    assert np.all(iid > 3000) and np.all(sticky < 200)


def test_split_rhat_matches_shifted_chain_formula():
    # 2 chains of iid N(0,1) and N(delta,1): split chains have means 0,0,delta,delta, so
    # R-hat^2 -> ((h-1)/h W + var(means)) / W with W = 1, var(means) = delta^2/3 (ddof 1)
    R, n, delta = 300, 2000, 0.5
    rng = np.random.default_rng(0)
    x = rng.standard_normal((R, 2, n))
    x[:, 1] += delta
    rh = diagnostics.split_rhat(x)
    h = n // 2
    expected = math.sqrt((h - 1) / h + delta**2 / 3)
    assert abs(rh.mean() - expected) < 4 * rh.std(ddof=1) / math.sqrt(R) + 1e-3
    same = diagnostics.split_rhat(rng.standard_normal((R, 4, n)))
    assert abs(same.mean() - 1.0) < 1e-3 and same.max() < 1.01


def test_split_rhat_sees_drift_within_one_chain():
    # a single chain drifting linearly: plain R-hat over 1 chain is undefined, split R-hat > 1
    x = np.linspace(0, 3, 1000)[None, :] + np.random.default_rng(0).standard_normal((1, 1000)) * 0.1
    assert diagnostics.split_rhat(x) > 1.5


def test_mean_and_se_coverage():
    phi, R = 0.8, 400
    x = _ar1(phi, (R, 4), 500, seed=7) * math.sqrt(1 - phi**2)  # unit stationary variance
    mean, se = diagnostics.mean_and_se(x)
    z = mean / se
    assert 0.9 < np.mean(np.abs(z) < 1.96) < 0.99  # ~95% coverage of the true mean 0


def test_phase_diagnostics_groups_pure_chains():
    rng = np.random.default_rng(0)
    vals = rng.standard_normal((6, 200, 3))
    labels = np.array([["a"] * 200] * 3 + [["b"] * 190 + ["a"] * 10] + [["b"] * 200] + [["a"] * 100 + ["b"] * 100])
    out = diagnostics.phase_diagnostics(vals, labels)
    assert out.mixed == 1  # the 50/50 chain; the 95% 'b' chain counts as 'b'
    assert out.phases["a"].chains == 3 and out.phases["b"].chains == 2
    assert out.phases["a"].max_rhat < 1.05 and out.phases["a"].min_ess_bulk > 300
    a = vals[:3].transpose(2, 0, 1)  # (p, chains, draws) of the three 'a' chains
    assert out.phases["a"].max_rhat == float(diagnostics.rhat(a).max())
    assert out.phases["a"].min_ess_tail == float(diagnostics.ess_tail(a).min())
    rec = out.as_record()  # the layout the posterior's saved records hold
    assert list(rec) == ["_mixed", "a", "b"] and rec["_mixed"] == {"chains": 1}
    assert rec["a"]["min_ess"] == rec["a"]["min_ess_bulk"] == out.phases["a"].min_ess_bulk
    assert rec["a"]["flags"] == list(out.phases["a"].flags)
    one = diagnostics.phase_diagnostics(vals[:2], np.array([["a"] * 200, ["b"] * 200]))
    assert one.as_record() == {"_mixed": {"chains": 0}, "a": {"chains": 1}, "b": {"chains": 1}}


def test_bad_input():
    with pytest.raises(ValueError, match="draws"):
        diagnostics.ess(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="chains, draws"):
        diagnostics.split_rhat(np.zeros(10))


# ---- rank-normalised diagnostics against ArviZ 0.23 (independent implementation, per item)

def _cases():
    """(batch..., chains, draws) arrays: random walks, AR(1), heavy tails, ties, odd sizes."""
    rng = np.random.default_rng(11)
    walk = np.cumsum(rng.standard_normal((3, 4, 200)), -1) * 0.2 + rng.standard_normal((3, 4, 200))
    ar = _ar1(0.9, (2, 3, 4), 101, seed=3)
    heavy = rng.standard_cauchy((5, 2, 64))
    ties = np.round(rng.standard_normal((2, 4, 50)), 1)
    tiny = rng.standard_normal((3, 2, 4))
    return [walk, ar, heavy, ties, tiny]


@pytest.mark.parametrize("case", range(5))
def test_rank_diagnostics_equal_arviz(case):
    az = pytest.importorskip("arviz")
    x = _cases()[case]
    flat = x.reshape((-1,) + x.shape[-2:])
    ref = {"rhat": [float(az.rhat(a)) for a in flat],
           "ess_bulk": [float(az.ess(a, method="bulk")) for a in flat],
           "ess_tail": [float(az.ess(a, method="tail")) for a in flat],
           "mcse_mean": [float(az.mcse(a)[0]) for a in flat]}
    for name, expected in ref.items():
        got = getattr(diagnostics, name)(x)  # one batched call over all leading dims
        assert got.shape == x.shape[:-2]
        np.testing.assert_allclose(got.ravel(), expected, rtol=1e-10, atol=1e-12, err_msg=name)


def test_rank_diagnostics_accept_torch_and_single_chain():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((3, 1, 40))
    assert np.all(np.isnan(diagnostics.rhat(x)))  # ArviZ needs 2 chains for R-hat
    np.testing.assert_allclose(diagnostics.ess_bulk(torch.tensor(x)), diagnostics.ess_bulk(x))
    x[0, 0, 5] = np.nan
    assert np.isnan(diagnostics.ess_bulk(x)[0]) and np.isfinite(diagnostics.ess_bulk(x)[1])


def test_stuck_chain_and_unequal_scale_are_flagged():
    # the stuck-chain cases: classic split R-hat ~1.0 misses both; the rank diagnostics do not
    rng = np.random.default_rng(1)
    stuck = rng.standard_normal((4, 1000))
    stuck[0] *= 0.01  # one chain frozen at the right mean
    wide = rng.standard_normal((4, 1000))
    wide[0] *= 4.0  # one chain at 4x the scale
    assert diagnostics.split_rhat(stuck) < 1.01 and diagnostics.split_rhat(wide) < 1.01
    assert diagnostics.rhat(stuck) > 1.4
    assert diagnostics.ess_tail(wide) < 60 < 3000 < diagnostics.ess_bulk(wide)
    labels = np.zeros((4, 1000), int)
    d_stuck = diagnostics.phase_diagnostics(stuck[..., None], labels).phases["0"]
    d_wide = diagnostics.phase_diagnostics(wide[..., None], labels).phases["0"]
    assert "rhat" in d_stuck.flags and "ess_tail" in d_wide.flags
    iid = diagnostics.phase_diagnostics(rng.standard_normal((4, 1000, 2)), labels).phases["0"]
    assert iid.flags == () and iid.max_rhat < 1.01


def test_ranks_equal_scipy_rankdata_exactly():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    cases = [rng.standard_normal((3, 500)), rng.integers(0, 4, (2, 3, 300)).astype(float),
             np.round(rng.standard_normal((4, 101)), 1), np.zeros((2, 7)), rng.standard_normal((1, 1))]
    withnan = rng.standard_normal((3, 40))
    withnan[1, 7] = np.nan
    for x in cases + [withnan]:
        np.testing.assert_array_equal(diagnostics._ranks(x), stats.rankdata(x, method="average", axis=-1))


@pytest.mark.parametrize("case", range(5))
def test_rank_diagnostics_together_equal_each_alone(case):
    x = _cases()[case]
    together = diagnostics.rank_diagnostics(x)
    alone = (diagnostics.rhat(x), diagnostics.ess_bulk(x), diagnostics.ess_tail(x))
    for t, a in zip(together, alone):
        np.testing.assert_array_equal(t, a)
    one = x[..., :1, :]  # a single chain: R-hat undefined, the ESS as alone
    r1 = diagnostics.rank_diagnostics(one)
    assert np.all(np.isnan(r1[0]))
    np.testing.assert_array_equal(r1[1], diagnostics.ess_bulk(one))
