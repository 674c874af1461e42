"""Susceptibilities and the Bayesian influence function against closed forms (docs/SPEC.md 7).

(a) Bayesian linear regression with known noise: the posterior under data weights (1 - h) on
the data set and h on a perturbation set is Gaussian with explicit precision and mean, so
d/dh E_h[theta] at h = 0 is a matrix formula; exact posterior draws feed the estimator.
(b) The 1-D potential L(x) = (lam/2) x^2 + (alpha/6) x^3 + (gamma/24) x^4 with posterior
exp(-t L): Cov_t[x^2, x] -> -2 alpha / (lam^3 t^2) (second-order perturbation theory about the
Gaussian), checked by quadrature, and exact draws (inverse CDF) agree with quadrature.
The per-sample loss covariances of (a) are closed forms too (Gaussian moments), for the BIF.
"""
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.signal import lfilter

from tms.bayes.influence import influence
from tms.bayes.susceptibility import batch_layout, posterior_covariance, susceptibility

Z_MAX = 4.0  # estimates within this many of their own standard errors (fixed seeds)


# ---- (a) conjugate Gaussian regression ---------------------------------------------------------


def _regression(seed=0, n=50, p=3, n_pert=20, J=3, beta_lik=1.0):
    """A data set, J perturbation sets, and the exact posterior N(mu, Sigma) with prior N(0, I):
    precision I + 2 beta_lik X^T X (the unhalved loss L_n = mean (y - x theta)^2)."""
    g = np.random.default_rng(seed)
    X = g.normal(size=(n, p))
    y = X @ np.array([1.0, -0.5, 0.3][:p]) + 0.5 * g.normal(size=n)
    Xp = g.normal(size=(J, n_pert, p)) + np.eye(J, p)[:, None, :]  # each shifted along one axis
    yp = np.einsum("jmp,p->jm", Xp, np.array([0.8, 0.1, -0.7][:p])) + 0.5 * g.normal(size=(J, n_pert))
    prec = np.eye(p) + 2 * beta_lik * X.T @ X
    mu = np.linalg.solve(prec, 2 * beta_lik * X.T @ y)
    return dict(X=X, y=y, Xp=Xp, yp=yp, mu=mu, Sigma=np.linalg.inv(prec), prec=prec, n=n, beta_lik=beta_lik)


def _exact_response(m: dict) -> np.ndarray:
    """D[k, j] = d/dh E_h[theta_k] for perturbation j: precision P(h) = I + 2 b n ((1-h) A + h A'_j),
    P(h) mu(h) = 2 b n ((1-h) v + h v'_j), A = X^T X / n, v = X^T y / n; so at h = 0
    dmu/dh = P^{-1} 2 b n ((v'_j - v) - (A'_j - A) mu)."""
    X, y, Xp, yp, n, b = m["X"], m["y"], m["Xp"], m["yp"], m["n"], m["beta_lik"]
    A, v = X.T @ X / n, X.T @ y / n
    cols = []
    for Xj, yj in zip(Xp, yp):
        Aj, vj = Xj.T @ Xj / len(yj), Xj.T @ yj / len(yj)
        cols.append(np.linalg.solve(m["prec"], 2 * b * n * ((vj - v) - (Aj - A) @ m["mu"])))
    return np.stack(cols, -1)


def _draws(m: dict, shape, seed=1) -> np.ndarray:
    """Exact posterior draws theta (*shape, p)."""
    z = np.random.default_rng(seed).normal(size=tuple(shape) + (len(m["mu"]),))
    return m["mu"] + z @ np.linalg.cholesky(m["Sigma"]).T


def _loss_differences(m: dict, theta: np.ndarray) -> np.ndarray:
    """dL_j = L'_j(theta) - L_n(theta): (..., p) -> (..., J)."""
    Ln = ((m["y"] - theta @ m["X"].T) ** 2).mean(-1)
    Lp = ((m["yp"] - np.einsum("...p,jmp->...jm", theta, m["Xp"])) ** 2).mean(-1)
    return Lp - Ln[..., None]


def test_regression_susceptibility_is_the_derivative_of_the_posterior_mean():
    m = _regression(beta_lik=0.7)
    theta = _draws(m, (4, 3000))  # (C, T, p)
    res = susceptibility(theta, _loss_differences(m, theta), m["n"], m["beta_lik"])
    exact = _exact_response(m)
    assert np.abs(exact).max() > 0.5  # a real response (the perturbations move the mean)
    assert (res.se < 0.05 * np.abs(exact).max()).all()  # the comparison has power
    assert (np.abs(res.chi - exact) <= Z_MAX * res.se).all(), (res.chi, exact, res.se)
    # the same estimate without n beta_lik, or with the opposite sign, is rejected
    assert not (np.abs(-res.chi - exact) <= Z_MAX * res.se).all()
    assert not (np.abs(res.chi / (m["n"] * m["beta_lik"]) - exact) <= Z_MAX * res.se).all()


def test_regression_spectrum_matches_the_symmetrised_exact_matrix():
    m = _regression(seed=3)
    theta = _draws(m, (4, 3000), seed=4)
    res = susceptibility(theta, _loss_differences(m, theta), m["n"])
    exact = _exact_response(m)
    values = np.sort(np.linalg.eigvalsh((exact + exact.T) / 2))[::-1]
    sp = res.spectrum
    assert sp is not None and (sp.se > 0).all()
    assert (np.abs(sp.values - values) <= Z_MAX * sp.se).all(), (sp.values, values, sp.se)
    np.testing.assert_allclose(sp.vectors @ np.diag(sp.values) @ sp.vectors.T, (res.chi + res.chi.T) / 2, atol=1e-12)
    assert susceptibility(theta[..., :2], _loss_differences(m, theta), m["n"]).spectrum is None  # K != J


def test_posteriors_are_averaged_and_each_is_the_same_alone_or_batched():
    m = _regression(seed=5)
    theta = _draws(m, (3, 2, 500), seed=6)  # 3 posteriors (here: repeats of one), 2 chains each
    dL = _loss_differences(m, theta)
    n = np.array([50.0, 50.0, 50.0])
    res = susceptibility(theta, dL, n)
    alone = susceptibility(theta[1], dL[1], 50)
    np.testing.assert_allclose(res.chi_each[1], alone.chi, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.se_each[1], alone.se, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.chi, res.chi_each.mean(0), rtol=1e-12)
    np.testing.assert_allclose(res.se, np.sqrt((res.se_each**2).sum(0)) / 3, rtol=1e-12)
    np.testing.assert_allclose(res.se_between, res.chi_each.std(0, ddof=1) / math.sqrt(3), rtol=1e-12)
    assert alone.se_between is None
    # draws of different posteriors are never pooled: shifting one posterior's draws changes nothing
    shifted = susceptibility(theta + np.array([10.0, 0, 0])[:, None, None, None], dL, n)
    np.testing.assert_allclose(shifted.chi, res.chi, rtol=1e-9, atol=1e-9)


def test_posteriors_of_different_lengths_come_as_lists():
    m = _regression(seed=14)
    long, short = _draws(m, (2, 900), seed=15), _draws(m, (3, 400), seed=16)
    parts = [long, short]
    res = susceptibility(parts, [_loss_differences(m, t) for t in parts], [50, 50], exchangeable_indices=True)
    for s, t in enumerate(parts):
        alone = susceptibility(t, _loss_differences(m, t), 50)
        np.testing.assert_allclose(res.chi_each[s], alone.chi, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(res.se_each[s], alone.se, rtol=1e-12, atol=1e-12)
    same = susceptibility(np.stack([long[:, :400], long[:, 400:800]]),
                          np.stack([_loss_differences(m, long[:, :400]), _loss_differences(m, long[:, 400:800])]), 50)
    listed = susceptibility([long[:, :400], long[:, 400:800]],
                            [_loss_differences(m, long[:, :400]), _loss_differences(m, long[:, 400:800])], 50)
    np.testing.assert_allclose(listed.chi, same.chi, rtol=1e-12)
    np.testing.assert_allclose(listed.spectrum.se, same.spectrum.se, rtol=1e-12)
    bif = influence([_per_sample_losses(m, t) for t in parts], [np.arange(50) % 5] * 2)
    for s, t in enumerate(parts):
        np.testing.assert_allclose(bif.bif_each[s], influence(_per_sample_losses(m, t), np.arange(50) % 5).bif,
                                   rtol=1e-12)
    with pytest.raises(ValueError, match="both"):
        susceptibility(parts, _loss_differences(m, long), 50)


def test_exchangeable_summary_and_spectrum_of_an_exchangeable_covariance():
    """phi = dL ~ N(0, a I + b (J - I)), K = 4: chi = -n Cov has diagonal -n a, off-diagonal -n b,
    eigenvalues -n (a + 3 b) (once) and -n (a - b) (three times)."""
    K, a, b, n = 4, 1.0, 0.3, 20.0
    cov = a * np.eye(K) + b * (np.ones((K, K)) - np.eye(K))
    v = np.random.default_rng(13).normal(size=(3, 2, 2000, K)) @ np.linalg.cholesky(cov).T
    res = susceptibility(v, v, n, exchangeable_indices=True)
    sym = res.symmetric
    for got, se, want in ((sym.diagonal, sym.diagonal_se, -n * a), (sym.off_diagonal, sym.off_diagonal_se, -n * b),
                          (sym.uniform, sym.uniform_se, -n * (a + 3 * b)), (sym.contrast, sym.contrast_se, -n * (a - b))):
        assert 0 < se < 0.05 * abs(want) and abs(got - want) <= Z_MAX * se, (got, want, se)
    want = np.array([-n * (a - b)] * 3 + [-n * (a + 3 * b)])
    assert (np.abs(res.spectrum.values - want) <= Z_MAX * res.spectrum.se).all()
    with pytest.raises(ValueError, match="exchangeable_indices"):
        susceptibility(v[..., :3], v, n, exchangeable_indices=True)


def _ar1_pairs(R: int, C: int, T: int, rho: float, corr: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """R independent runs of C stationary AR(1) chains (x, y), unit variance, Cov(x, y) = corr."""
    g = np.random.default_rng(seed)
    burn = 300
    z1, z2 = g.normal(size=(2, R, C, T + burn))
    innov = math.sqrt(1 - rho**2)
    x = lfilter([innov], [1, -rho], z1, axis=-1)[..., burn:]
    y = lfilter([innov], [1, -rho], corr * z1 + math.sqrt(1 - corr**2) * z2, axis=-1)[..., burn:]
    return x[..., None], y[..., None]


def test_batch_means_error_covers_correlated_draws_and_one_draw_batches_do_not():
    x, y = _ar1_pairs(R=400, C=2, T=4000, rho=0.9, corr=0.5, seed=7)
    cov = posterior_covariance(x, y)  # batches of sqrt(4000) = 63 draws >> the correlation time (~10)
    z = (cov.value[..., 0, 0] - 0.5) / cov.se[..., 0, 0]
    assert 0.90 <= (np.abs(z) < 2).mean() <= 0.99  # about 95%: the error is calibrated
    naive = posterior_covariance(x, y, n_batches=4000)  # batches of one draw: the iid formula
    z = (naive.value[..., 0, 0] - 0.5) / naive.se[..., 0, 0]
    assert (np.abs(z) < 2).mean() < 0.8  # far too small an error for correlated draws


def test_too_few_draws_or_batches_and_bad_shapes_are_refused():
    x = np.zeros((1, 3, 2))
    with pytest.raises(ValueError, match="too few batches"):
        posterior_covariance(x, x)  # one chain, sqrt(3) -> 1 batch
    with pytest.raises(ValueError, match="n_batches"):
        posterior_covariance(x, x, n_batches=4)  # more batches than draws
    with pytest.raises(ValueError, match="share"):
        posterior_covariance(np.zeros((2, 10, 1)), np.zeros((2, 9, 1)))
    with pytest.raises(ValueError, match="shape"):
        posterior_covariance(np.zeros((10, 1)), np.zeros((10, 1)))
    with pytest.raises(ValueError, match="n must broadcast"):
        susceptibility(np.zeros((3, 2, 16, 1)), np.zeros((3, 2, 16, 1)), np.ones(2))
    with pytest.raises(ValueError, match="beta_lik"):
        susceptibility(np.zeros((2, 16, 1)), np.zeros((2, 16, 1)), 10, beta_lik=0.0)
    with pytest.raises(ValueError, match="NaN"):
        susceptibility(np.full((2, 16, 1), np.nan), np.zeros((2, 16, 1)), 10)
    assert batch_layout(100, 3) == (10, 10)
    assert batch_layout(101, 4, "longest") == (1, 101) and batch_layout(100, 2, "longest") == (2, 50)
    with pytest.raises(ValueError, match="longest"):
        batch_layout(100, 2, "shortest")


# ---- (b) the 1-D potential ---------------------------------------------------------------------

LAM, ALPHA, GAMMA = 1.0, 1.0, 1.0  # L >= x^2 / 3 everywhere: a proper posterior at every t


def _potential(x, h=0.0):
    return LAM / 2 * x**2 + ALPHA / 6 * x**3 + GAMMA / 24 * x**4 + h * x


def _moments(t: float, h: float = 0.0) -> tuple[float, float, float]:
    """E[x], E[x^2] and Cov(x^2, x) under exp(-t (L(x) + h x)), by quadrature (scipy)."""
    R = max(math.sqrt(200 / t), 12 / math.sqrt(LAM * t))  # t L > 60 beyond (L >= x^2 / 3)

    def integral(f):
        return quad(lambda x: f(x) * math.exp(-t * _potential(x, h)), -R, R, points=[0.0], epsabs=0,
                    epsrel=1e-11, limit=500)[0]

    Z = integral(lambda x: 1.0)
    m1, m2 = integral(lambda x: x) / Z, integral(lambda x: x * x) / Z
    return m1, m2, integral(lambda x: (x * x - m2) * (x - m1)) / Z


def test_potential_covariance_approaches_its_asymptote_faster_than_t_to_the_minus_two():
    ts = [1e2, 1e3, 1e4, 1e5]
    rel = [abs(_moments(t)[2] / (-2 * ALPHA / (LAM**3 * t**2)) - 1) for t in ts]
    assert rel[-1] < 1e-5
    ratios = [b / a for a, b in zip(rel[:-1], rel[1:])]
    assert all(r < 0.15 for r in ratios), rel  # relative error O(1/t): Cov = -2 alpha/(lam^3 t^2) + o(t^-2)


def _inverse_cdf_draws(t: float, shape, seed: int) -> np.ndarray:
    """Exact draws of exp(-t L) by inverse CDF on a fine grid (linear interpolation)."""
    R = max(math.sqrt(200 / t), 12 / math.sqrt(LAM * t))
    grid = np.linspace(-R, R, 400_001)
    dens = np.exp(-t * _potential(grid))
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2)])
    u = np.random.default_rng(seed).uniform(size=shape) * cdf[-1]
    return np.interp(u, cdf, grid)


def test_potential_draws_agree_with_quadrature_and_with_a_finite_difference():
    t = 5.0
    x = _inverse_cdf_draws(t, (4, 5000), seed=8)[..., None]  # (C, T, 1)
    cov = posterior_covariance(x**2, x)
    _, _, exact = _moments(t)
    assert abs(cov.value[0, 0] - exact) <= Z_MAX * cov.se[0, 0]
    assert cov.se[0, 0] < 0.1 * abs(exact)
    # as a susceptibility: the perturbation adds h x to L (dL = x, "n beta_lik" = t); its
    # response is the central difference of E_h[x^2] by quadrature
    h = 1e-4
    fd = (_moments(t, h)[1] - _moments(t, -h)[1]) / (2 * h)
    res = susceptibility(x**2, x, t)
    assert abs(-t * exact - fd) < 1e-6 * abs(fd)  # fluctuation-dissipation, both by quadrature
    assert abs(res.chi[0, 0] - fd) <= Z_MAX * res.se[0, 0]


# ---- the Bayesian influence function -----------------------------------------------------------


def _per_sample_losses(m: dict, theta: np.ndarray) -> np.ndarray:
    return (m["y"] - theta @ m["X"].T) ** 2  # (..., n)


def _exact_loss_covariance(m: dict) -> np.ndarray:
    """Cov(l_k, l_l) for l_k = (a_k - u_k)^2, a = y - X mu, u = X (theta - mu) ~ N(0, S), S = X Sigma X^T:
    4 a_k a_l S_kl + 2 S_kl^2 (Gaussian moments; odd ones vanish)."""
    a = m["y"] - m["X"] @ m["mu"]
    S = m["X"] @ m["Sigma"] @ m["X"].T
    return 4 * np.outer(a, a) * S + 2 * S**2


def test_grouped_bif_and_correlation_match_gaussian_moments():
    m = _regression(seed=9, beta_lik=0.5)
    theta = _draws(m, (4, 3000), seed=10)
    groups = np.arange(m["n"]) % 5
    res = influence(_per_sample_losses(m, theta), groups)
    cov = _exact_loss_covariance(m)
    sd = np.sqrt(np.diag(cov))
    onehot = (groups[:, None] == np.arange(5)).astype(float)
    pairs = onehot.T @ np.ones((m["n"], m["n"])) @ onehot  # pairs per block
    exact_bif = -(onehot.T @ cov @ onehot) / pairs
    exact_corr = (onehot.T @ (cov / np.outer(sd, sd)) @ onehot) / pairs
    assert (np.abs(res.bif - exact_bif) <= Z_MAX * res.se).all(), (res.bif, exact_bif, res.se)
    assert (np.abs(res.correlation - exact_corr) <= Z_MAX * res.correlation_se).all()
    assert (res.se < 0.05 * np.abs(exact_bif).max()).all()  # the comparison has power
    np.testing.assert_array_equal(res.counts, np.full(5, 10.0))


def test_ungrouped_bif_is_minus_the_loss_covariance_and_empty_groups_are_nan():
    m = _regression(seed=11, n=6)
    theta = _draws(m, (4, 3000), seed=12)
    res = influence(_per_sample_losses(m, theta))
    cov = _exact_loss_covariance(m)
    assert (np.abs(res.bif + cov) <= Z_MAX * res.se).all()
    np.testing.assert_allclose(np.diag(res.correlation), 1.0, rtol=1e-12)  # Corr(l_k, l_k) = 1
    gaps = influence(_per_sample_losses(m, theta), np.zeros(6, dtype=int), n_groups=2)
    assert np.isnan(gaps.bif[1]).all() and np.isnan(gaps.bif[:, 1]).all() and np.isfinite(gaps.bif[0, 0])
    with pytest.raises(ValueError, match="groups"):
        influence(_per_sample_losses(m, theta), np.full(6, 0.5))


def test_group_means_equal_a_loop_over_groups_with_empty_groups_nan():
    from tms.bayes.influence import group_means

    rng = np.random.default_rng(5)
    losses = rng.random((2, 3, 4, 30))  # (S, C, T, N)
    groups = rng.integers(0, 3, (2, 30))  # group 3 of 4 is empty
    means, counts = group_means(losses, groups, 4)
    for s in range(2):
        for g in range(3):
            np.testing.assert_allclose(means[s, ..., g], losses[s][..., groups[s] == g].mean(-1), rtol=1e-13)
            assert counts[s, g] == (groups[s] == g).sum()
    assert np.isnan(means[..., 3]).all() and (counts[:, 3] == 0).all()
