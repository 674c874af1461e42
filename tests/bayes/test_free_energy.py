"""tms.bayes.free_energy: measured free-energy differences, lambda from the ladder, the
O(1) terms, the hull reading, and the command. Known answers: a two-well density whose
masses are 1-D quadratures (scipy), regular and w^(2k) energies for the WBIC slope, brute
force over permutations for the orbit multiplicity, scipy's ConvexHull for the hull."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.spatial import ConvexHull

from tms.bayes.free_energy import estimators, ladders, measure, terms
from tms.bayes.settings import FreeEnergySettings, FreeEnergySweep, LocalLadders
from tms.llc.estimator import PROTOCOL
from tms.core import io
from tms.theory import phases, zoo
from tms.core import rng
from tms.samplers import tempering

# ---- hull reading ------------------------------------------------------------------------------------


def test_hull_vertices_match_scipy_on_random_batches():
    g = np.random.default_rng(0)
    W = g.normal(size=(3, 400, 2, 6)) * g.uniform(0.2, 1.5, size=(3, 400, 1, 6))  # some columns negligible
    got = phases.hull_vertices(torch.from_numpy(W), zero_tol=0.3).numpy()
    assert got.shape == (3, 400, 6)
    flat, gotf = W.reshape(-1, 2, 6), got.reshape(-1, 6)
    for Wi, hi in zip(flat, gotf):
        keep = np.flatnonzero(np.hypot(*Wi) >= 0.3)
        ref = np.zeros(6, bool)
        ref[keep[ConvexHull(Wi[:, keep].T).vertices] if len(keep) >= 3 else keep] = True
        assert (ref == hi).all()
    b = g.normal(size=(3, 400, 6))
    lab = phases.classify_hull(W, b)
    k = got.sum(-1)
    s = ((np.hypot(W[..., 0, :], W[..., 1, :]) < 0.3) & (b > 0)).sum(-1)
    assert (lab == np.vectorize(zoo.make_label)(k, s)).all()
    assert (phases.classify_hull(W.astype(np.float32), b.astype(np.float32)) == lab).all()


def test_hull_reading_of_zoo_points_and_invariance():
    for q in zoo.critical_points(6):
        if q.p == 0:
            assert phases.classify_hull(q.W, q.b).item() == q.label
    q = zoo.critical_point(6, "5+")
    R = torch.tensor([[math.cos(1.0), math.sin(1.0)], [-math.sin(1.0), math.cos(1.0)]], dtype=torch.float64)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert phases.classify_hull(-(R @ q.W)[:, perm], q.b[perm]).item() == "5+"


# ---- orbit multiplicity ------------------------------------------------------------------------------


def _brute_multiplicity(label: str, c: int) -> int:
    """Distinct (W^T W, b) over all c! feature permutations: W and W' are related by O(2)
    iff their Gram matrices agree (rank-2 W), so this counts copies modulo O(2)."""
    k, s, p = zoo.parse_label(label)
    W, b = (t.numpy() for t in zoo.kgon_params(k, c, s, p))
    seen = set()
    for perm in itertools.permutations(range(c)):
        Wp, bp = W[:, perm], b[list(perm)]
        seen.add(tuple(np.round(np.concatenate([(Wp.T @ Wp).ravel(), bp]), 8) + 0.0))
    return len(seen)


@pytest.mark.parametrize("c", [4, 5, 6])
def test_orbit_multiplicity_by_brute_force(c):
    for label in zoo.labels(c):
        assert zoo.orbit_multiplicity(label, c) == _brute_multiplicity(label, c), label


# ---- estimators on known answers ---------------------------------------------------------------------


def test_log_mass_ratio_delta_method_and_pool():
    g = np.random.default_rng(1)
    frac = g.dirichlet([3, 2, 1], size=(2, 50))  # (S, R, P)
    dF, se = estimators.log_mass_ratio(frac, 0, 1)
    P = frac.mean(1)
    assert np.allclose(dF, -np.log(P[:, 0] / P[:, 1]))
    # delta method = the s.e. of the ratio's log by the linearised per-ladder contributions
    lin = frac[..., 0] / P[:, :1] - frac[..., 1] / P[:, 1:2]
    assert np.allclose(se, lin.std(1, ddof=1) / math.sqrt(50))
    m, s, between, mc = estimators.pool(dF, se)
    assert m == pytest.approx(dF.mean()) and s == max(between, mc)
    assert np.isnan(estimators.log_mass_ratio(np.zeros((1, 4, 2)), 0, 1)[0]).all()


def test_fit_recovers_an_exact_line_and_crossing():
    ns = np.array([100.0, 200, 400, 800, 1600])
    y = 0.01 * ns - 1.3 * np.log(ns) + 2.0
    r = estimators.fit_free_energy(ns, y, np.full(5, 0.1), 0.01)
    assert r.dlam == pytest.approx(-1.3, abs=1e-9) and r.dc == pytest.approx(2.0, abs=1e-8)
    assert r.chi2 == pytest.approx(0.0, abs=1e-12) and r.dof == 3
    fixed = estimators.fit_free_energy(ns, y, np.full(5, 0.1), 0.01, dlam=-1.3)
    assert fixed.dc == pytest.approx(2.0, abs=1e-9)
    root = brentq(lambda n: 0.01 * n - 1.3 * math.log(n) + 2.0, 200, 1600)
    fine = np.exp(np.linspace(math.log(100), math.log(1600), 3000))
    assert estimators.crossing(fine, 0.01 * fine - 1.3 * np.log(fine) + 2.0) == pytest.approx(root, rel=1e-4)


A, DELTA = 1.5, 0.003  # two wells at x = -A (regular) and x = +A (quartic in x, higher loss by DELTA)
NS = [30, 60, 120, 250, 500, 1000]


def _two_well(n: torch.Tensor):
    """E = n K(w), K = min((x+A)^2 + y^2, (x-A)^4 + y^2 + DELTA), n (G, 1, 1); theta (G, R, K, 2)."""

    def f(theta):
        x, y = theta[..., 0], theta[..., 1]
        ka, kb = (x + A) ** 2 + y * y, (x - A) ** 4 + y * y + DELTA
        a = ka <= kb
        gx = torch.where(a, 2 * (x + A), 4 * (x - A) ** 3)
        return n * torch.minimum(ka, kb), n.unsqueeze(-1) * torch.stack([gx, 2 * y], -1)

    return f


def _quadrature_dF(n: int, x0: float) -> float:
    """F(B) - F(A) = -log(Z_B / Z_A) by 1-D quadrature (the y factor is common), prior N(0, 1)."""
    za = quad(lambda x: math.exp(-n * (x + A) ** 2 - x * x / 2), -A - 30 / math.sqrt(n) - 8, x0, points=[-A],
              epsabs=0, epsrel=1e-11, limit=400)[0]
    zb = quad(lambda x: math.exp(-n * ((x - A) ** 4) - x * x / 2), x0, A + 30 * n ** -0.25 + 8, points=[A],
              epsabs=0, epsrel=1e-11, limit=400)[0]
    return n * DELTA - math.log(zb / za)


def test_two_well_free_energy_matches_quadrature_and_fit_recovers_dlambda():
    x0 = brentq(lambda x: (x + A) ** 2 - (x - A) ** 4 - DELTA, -A, A)  # phase boundary (depends on x only)
    G, R, K = len(NS), 16, 12
    n = torch.tensor(NS, dtype=torch.float64).reshape(G, 1, 1)
    keys = rng.keys_from(torch.tensor([rng.key(5, m) for m in NS]), (R, K))
    betas = tempering.geometric_ladder(K, 2e-4).expand(G, 1, K).clone()
    target = tempering.Target(_two_well(n), lambda t: (0.5 * (t * t).sum(-1), t), 16)
    th0 = rng.normal(keys, 0, 2, torch.float64, rng.START)
    out = ladders.run_ladders(target, th0, keys, betas, 150, 600)
    labels = np.where(out.draws[..., 0].numpy() > x0, "B", "A")  # (T, G, R)
    frac = estimators.ladder_fractions(labels, ["B", "A"])  # (G, R, 2)
    exact = np.array([_quadrature_dF(m, x0) for m in NS])
    got, se = np.empty(G), np.empty(G)
    for i in range(G):
        d, s = estimators.log_mass_ratio(frac[i : i + 1], 0, 1)  # one "data set": the model has no data
        got[i], se[i] = estimators.pool(d, s)[:2]
    assert (out.round_trips > 0).all()
    assert np.all(np.abs(got - exact) < 3.5 * se), (got, exact, se)
    fit = estimators.fit_free_energy(NS, got, se, DELTA)
    ref = estimators.fit_free_energy(NS, exact, se, DELTA)  # the same fit of the exact values: its finite-n bias
    assert abs(fit.dlam - (-0.25)) < 3.5 * fit.dlam_se + abs(ref.dlam + 0.25)
    assert abs(ref.dlam + 0.25) < 0.1  # the grid is asymptotic enough for the fit form


def test_wbic_slope_recovers_d_over_2_and_one_over_2k():
    """Regular E = n |w|^2 / 2 in d = 3 (lambda 3/2), E = n w_0^4 (1/4), E = n w_0^6 (1/6)."""
    nval, G, R, K = 1e5, 3, 6, 6
    pw = torch.tensor([2.0, 4.0, 6.0]).reshape(G, 1, 1)

    def energy(theta):
        w0 = theta[..., 0]
        reg = 0.5 * nval * (theta * theta).sum(-1)
        gk = nval * w0.abs() ** pw
        E = torch.where(pw == 2.0, reg, gk)
        g_single = torch.zeros_like(theta)
        g_single[..., 0] = nval * pw * w0.abs() ** (pw - 1) * w0.sign()
        return E, torch.where((pw == 2.0).unsqueeze(-1), nval * theta, g_single)

    keys = rng.keys_from(torch.tensor([rng.key(9, i) for i in range(G)]), (R, K))
    betas = tempering.geometric_ladder(K, 0.2).expand(G, 1, K).clone()
    target = tempering.Target(energy, lambda t: (0.5 * (t * t).sum(-1), t), 16)
    th0 = 0.01 * rng.normal(keys, 0, 3, torch.float64, rng.START)
    out = ladders.run_ladders(target, th0, keys, betas, 150, 800, all_slots=True)
    E = energy(out.draws)[0].numpy()  # (T, G, R, K)
    for i, lam in enumerate([1.5, 0.25, 1 / 6]):
        res = estimators.wbic_lambda(E[:, i], np.ones_like(E[:, i], bool), np.repeat(out.betas[i:i + 1].numpy(), R, 0),
                             np.zeros(R, int))
        assert res.slots_used == K
        assert abs(res.lam - lam) < 3.5 * res.se, (lam, res.lam, res.se)
        assert res.se < 0.1 * lam  # the test can fail


# ---- O(1) terms ---------------------------------------------------------------------------------------


def test_o1_terms_and_data_term():
    o1 = terms.o1_terms(6, ["6", "5", "4"], n_mc=40_000)
    assert o1["6"].flat == 0.0 and o1["6"].multiplicity == 60 and o1["4"].laplace is None
    assert 0 < o1["5"].flat - 0 and o1["5"].flat_se < 0.1
    # c-gon: every copy has the same L_n, so the data term is -n (L_n(w*) - L) exactly
    from tms.theory.data import sample_inputs
    from tms.theory.loss import empirical_loss_sorted, sorted_data, stack_sorted

    X = [sample_inputs(300, 6, s) for s in range(2)]
    data = stack_sorted([sorted_data(x) for x in X])
    dt = terms.data_term(data, 6, ["6", "5"])
    W6, b6 = zoo.kgon_params(6, 6)
    W5, b5 = zoo.kgon_params(5, 6)
    L6, L5 = float(zoo.population_loss(W6, b6)), float(zoo.population_loss(W5, b5))
    for s in range(2):
        one = sorted_data(X[s])
        assert dt[s, 0] == pytest.approx(300 * (float(empirical_loss_sorted(W6, b6, one)) - L6), abs=1e-8)
        # the 5-gon: L_n depends only on which feature is dead (column 5 of the zoo layout), and
        # each of the 6 choices is 120 of the 720 permutations
        x = []
        for i in range(6):
            perm = [j for j in range(5)]
            perm.insert(i, 5)
            x.append(-300 * (float(empirical_loss_sorted(W5[:, perm], b5[perm], one)) - L5))
        assert dt[s, 1] == pytest.approx(-(np.logaddexp.reduce(x) - math.log(6)), abs=1e-8)
        assert dt[s, 1] < -np.mean(x)  # the copy of lowest L_n dominates: below the mean copy


def test_flat_mass_and_volume_share_their_draws_losses(monkeypatch):
    """flat_volume reads the loss increases flat_prior_mass computed (same draws): no second
    population-loss pass, and the same numbers as from a fresh computation."""
    P, _ = terms.flat_prior_mass(6, "5", n_mc=5000, seed=3)
    calls = []
    real = terms.population_loss
    monkeypatch.setattr(terms, "population_loss", lambda W, b: calls.append(1) or real(W, b))
    vol = terms.flat_volume(6, "5", [100, 1000], n_mc=5000, seed=3)
    assert not calls
    monkeypatch.setattr(terms, "_INCREASES", {})
    assert np.array_equal(terms.flat_volume(6, "5", [100, 1000], n_mc=5000, seed=3), vol) and calls
    assert terms.flat_prior_mass(6, "5", n_mc=5000, seed=3)[0] == P and 0 < P < 1


def test_data_term_and_local_energies_are_the_same_on_the_compiled_and_eager_losses(monkeypatch):
    """terms.sorted_losses (the compiled fused kernel where it runs) against the eager torch
    loss: the data term of every zoo label and ladders' energies to rounding."""
    from tms.theory import loss
    from tms.theory.data import sample_inputs
    from tms.theory.loss import sorted_data, stack_sorted

    if loss._kernels() is None:
        pytest.skip("numba not available")
    data = stack_sorted([sorted_data(sample_inputs(n, 6, n).double()) for n in (150, 700)])
    draws = 0.8 * torch.randn(3, 2, 2, 4, 18, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fast = terms.data_term(data, 6, zoo.labels(6)), ladders._energies(draws, data, 2, 6, 1.0)
    monkeypatch.setattr(loss, "COMPILE", False)
    slow = terms.data_term(data, 6, zoo.labels(6)), ladders._energies(draws, data, 2, 6, 1.0)
    assert np.allclose(fast[0], slow[0], rtol=1e-12, atol=1e-11)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-12, atol=1e-10)


# ---- the TMS pipeline ---------------------------------------------------------------------------------

TINY = FreeEnergySettings(sweep=FreeEnergySweep(seeds=2, replicas=2, n_temps=4, n_warmup=8, n_draws=12, max_steps=8),
                          local=LocalLadders(n=400, seeds=1, replicas=2, n_temps=3, n_warmup=8, n_draws=12,
                                             max_steps=8),
                          sgld=PROTOCOL.replace(n_chains=2, n_burnin=10, n_draws=20), dcurve_sets=3, mc_draws=5000)


def test_measure_tiny_saves_resumes_reports_and_plots(tmp_path):
    res = measure.measure(6, [300, 500], TINY, out_dir=tmp_path, labels=["6", "5"])
    assert set(res.readings) == {"zoo", "hull"}
    for n in (300, 500):
        assert io.result_exists(tmp_path / f"fe_c6_n{n}")
    again = measure.measure(6, [300, 500], TINY, out_dir=tmp_path, labels=["6", "5"])
    assert again.readings["zoo"]["mass"] == res.readings["zoo"]["mass"]
    assert [r["bayes"] for r in again.lambda_table] == [r["bayes"] for r in res.lambda_table]
    lines = measure.report_section(measure.load_summary(tmp_path / "summary_c6"))
    assert lines[0] == "## Measured free energies (c = 6)" and any("lambda three ways" in ln for ln in lines)
    from tms.report.plots.free_energy import plot_free_energy

    assert plot_free_energy(tmp_path / "summary_c6", tmp_path / "fig.png", reading="hull").is_file()
    with pytest.raises(ValueError, match="other settings"):
        measure.measure(6, [300, 500], TINY.replace(sweep=TINY.sweep.replace(n_draws=13)), out_dir=tmp_path,
                        labels=["6", "5"])


def test_user_data_sets_equal_seeded_ones_and_local_ladders_stay_in_phase():
    from tms.theory.data import sample_inputs
    from tms.bayes.posterior import data_seed

    seeded = ladders.sweep_seeds(6, [300], TINY.sweep, seed=3, theory=False)[0]
    X = [sample_inputs(300, 6, data_seed(3, 300, s)).numpy() for s in range(2)]
    user = ladders.sweep_data(6, [X], TINY.sweep.replace(seeds=1), seed=3, theory=False)[0]
    assert np.array_equal(seeded.frac_zoo, user.frac_zoo) and np.array_equal(seeded.round_trips, user.round_trips)
    assert user.frac_zoo.shape[:2] == (2, 2) and user.round_trips.shape == (2, 2)
    with pytest.raises(ValueError, match="one sample size"):
        ladders.sweep_data(6, [[X[0], X[0][:100]]])
    lam = ladders.local_lambda(6, ["5"], TINY.local, seed=1)
    r = lam.per_label["5"]
    assert np.allclose(r.frac, 1.0)  # the wall keeps every slot's draws in the phase


def test_cli_free_energy_tiny(tmp_path, capsys):
    from tms.cli.main import main

    argv = ["free-energy", "--c", "6", "--ns", "300,500", "--seeds", "2", "--replicas", "2", "--n-temps", "4",
            "--n-warmup", "8", "--n-draws", "12", "--max-steps", "8", "--local-n", "400", "--local-seeds", "1",
            "--local-replicas", "2", "--local-n-temps", "3", "--local-n-warmup", "8", "--local-n-draws", "12",
            "--labels", "6,5", "--sgld-n-chains", "2", "--sgld-n-burnin", "20", "--sgld-n-draws", "20",
            "--mc-draws", "5000", "--dcurve-sets", "3",
            "--out", str(tmp_path / "r"),
            "--figure", str(tmp_path / "f.png"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Measured free energies" in out and (tmp_path / "f.png").is_file()
    assert main(["free-energy", "--c", "6", "--labels", "7", "--out", str(tmp_path / "r")]) == 2
    assert main(["free-energy", "--c", "3"]) == 2
