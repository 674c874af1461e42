"""The Bayesian experiment: posterior potential, aggregation, resumable sweep, TMS transition."""
import math

import numpy as np
import pytest
import torch

from tms.bayes import posterior, predictions, sweep
from tms.bayes.posterior import PhaseMass
from tms.bayes.posterior_point import PosteriorPoint
from tms.theory.data import sample_inputs
from tms.theory.loss import empirical_loss, sorted_data, stack_sorted, unflatten_params

D = torch.float64


def test_potential_matches_direct_sum_over_a_stacked_n_grid():
    c, r = 5, 2
    ns = [30, 75]
    Xs = [sample_inputs(n, c, posterior.data_seed(0, n, 0)) for n in ns]
    data = posterior.with_dims(stack_sorted([sorted_data(X) for X in Xs]), 1)
    theta = torch.randn(2, 7, r * c + c, generator=torch.Generator().manual_seed(0), dtype=D)
    E = posterior.energy_fn(data, r, c, beta_lik=0.5)(theta)
    for g, (n, X) in enumerate(zip(ns, Xs)):
        W, b = unflatten_params(theta[g], r, c)
        ref = 0.5 * n * empirical_loss(W, b, X)  # independent direct sum over the n inputs
        assert torch.allclose(E[g], ref, rtol=1e-12, atol=1e-10)
    assert torch.allclose(posterior.prior(theta), 0.5 * (theta**2).sum(-1))


def test_aggregate_over_seeds():
    pts = [
        PosteriorPoint(n=100, phases=["5", "6"], mass_seed=np.array([[0.6, 0.4], [0.8, 0.2]]),
                       mass_se_seed=np.array([[0.03, 0.03], [0.04, 0.04]]),
                       occupancy_seed=np.array([[0.9, 0.1], [0.9, 0.1]]), occupancy_se_seed=np.zeros((2, 2)),
                       round_trips_seed=np.zeros((2, 3)), diag={}),
        PosteriorPoint(n=200, phases=["6", "other"], mass_seed=np.array([[0.9, 0.1], [1.0, 0.0]]),
                       mass_se_seed=np.array([[0.02, 0.02], [0.0, 0.0]]),
                       occupancy_seed=np.array([[0.5, 0.5], [0.5, 0.5]]), occupancy_se_seed=np.zeros((2, 2)),
                       round_trips_seed=np.zeros((2, 3)), diag={}),
    ]
    agg = posterior.aggregate(pts)
    assert agg.phases == ["5", "6", "other"]
    np.testing.assert_allclose(agg.mass, [[0.7, 0.3, 0.0], [0.0, 0.95, 0.05]])
    # s.e. over data sets: std(ddof=1)/sqrt(2) = |x1 - x2| / 2
    np.testing.assert_allclose(agg.mass_se, [[0.1, 0.1, 0.0], [0.0, 0.05, 0.05]])
    np.testing.assert_allclose(agg.mass_mc_se[0], [0.025, 0.025, 0.0])
    np.testing.assert_allclose(agg.occupancy[1], [0.0, 0.5, 0.5])


def test_sweep_saves_each_point_and_resumes(tmp_path, monkeypatch):
    calls = []

    def fake_chunk(job, items, snap, out_dir, save_every, progress):
        calls.append([it.n for it in items])
        points = {}
        for it in items:
            S = len(it.data)
            points[it.n] = PosteriorPoint(n=it.n, phases=["a", "b"], mass_seed=np.full((S, 2), 0.5),
                                          mass_se_seed=np.full((S, 2), 0.1), occupancy_seed=np.tile([1.0, 0.0], (S, 1)),
                                          occupancy_se_seed=np.zeros((S, 2)), round_trips_seed=np.zeros((S, 4)),
                                          diag={"n": it.n})
            sweep._save_point(job, it, points[it.n], out_dir)
        return points

    monkeypatch.setattr(sweep, "_run_chunk", fake_chunk)
    kw = dict(out_dir=tmp_path, predict=False, seeds=2)
    posterior.phase_sweep(4, [100, 200], batch_points=1, **kw)
    assert calls == [[100], [200]]  # one batched call per chunk, each point saved after it
    assert posterior.io.result_exists(tmp_path / "posterior_c4_n100")
    res = posterior.phase_sweep(4, [100, 200, 300], **kw)
    assert calls[-1] == [300]  # the saved points are not sampled again
    np.testing.assert_allclose(res.mass, 0.5)
    assert res.points[0].diag == {"n": 100}
    with pytest.raises(ValueError, match="other settings"):
        posterior.phase_sweep(4, [100], out_dir=tmp_path, predict=False, seeds=3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="distinct"):
        posterior.phase_sweep(6, [100, 100], predict=False)
    with pytest.raises(ValueError, match="unknown setting"):
        posterior.phase_sweep(6, [100], predict=False, chainz=3)
    with pytest.raises(ValueError, match="beta_min"):
        posterior.phase_sweep(6, [100], predict=False, beta_min=2.0)
    with pytest.raises(ValueError, match="r must be"):
        posterior.phase_sweep(2, [100], r=3, predict=False)


def _family(phases, k):
    from tms.theory.zoo import parse_label

    out = []
    for i, p in enumerate(phases):
        try:
            if parse_label(p)[0] == k:
                out.append(i)
        except ValueError:
            pass
    return out


def test_tms_c6_transition_direction():
    """A short sweep at c = 6: the 5-gon family loses mass and the 6-gon gains it as n grows.

    n = 300 (below the zoo's n_c = 601 for 5 -> 6) against n = 1100 (above it); the change
    must exceed 3 combined standard errors (from the independent replica-exchange ladders).
    At smaller n most posterior draws are too spread for the classifier ("other").
    """
    pytest.importorskip("tms.theory.phases")
    res = posterior.phase_sweep(6, [300, 1100], seed=1, predict=False, seeds=1, n_chains=4, replicas=5,
                                n_temps=10, beta_min=0.01, n_warmup=48, n_draws=48, max_steps=24)
    ph = res.phases
    i6 = ph.index("6")
    five = _family(ph, 5)
    m, se = res.mass, res.mass_se
    m5, se5 = m[:, five].sum(1), np.sqrt((se[:, five] ** 2).sum(1))
    assert m[1, i6] - m[0, i6] > 3 * math.hypot(se[0, i6], se[1, i6]), (ph, m, se)
    assert m5[0] - m5[1] > 3 * math.hypot(se5[0], se5[1]), (ph, m, se)
    # diagnostics are reported per n
    d = res.points[1].diag
    assert len(d["swap_rate"]) == 9 and min(d["swap_rate"]) > 0.1
    assert all(a > 0.5 for a in d["pt_accept"])


def test_llc_estimates_for_missing_zoo_lambdas():
    # `tms posterior --llc-estimate` runs tms.llc.zoo.zoo_llc (tms.llc.estimator.estimate_llc at the
    # zoo points with the lab's protocol): same numbers as a direct call; and the phases the zoo has
    # no lambda for are named
    from tms.theory import zoo
    from tms.llc.estimator import PROTOCOL, default_nbeta, estimate_llc
    from tms.llc.zoo import zoo_llc

    est = zoo_llc(5, ["5", "4"], PROTOCOL.replace(n_chains=4, n_burnin=60, n_draws=240, seed=3)).estimates()
    pts = {q.label: q for q in zoo.critical_points(5)}
    ref = estimate_llc(torch.stack([pts["5"].W, pts["4"].W]), torch.stack([pts["5"].b, pts["4"].b]), None,
                       nbeta=default_nbeta(1000), eps=1e-3, gamma=1.0, n_chains=4, n_burnin=60, n_draws=240,
                       loss="population", seed=3)
    assert est["5"] == (float(ref.llc[0]), float(ref.llc_se[0])) and est["4"][0] == float(ref.llc[1])
    assert 4.0 < est["5"][0] < 10.0  # zoo: rank/2 = 7 (SGLD at this nbeta and step is biased upward)
    result = PhaseMass(np.array([100]), ["4", "5", "other"], np.array([[0.1, 0.5, 0.4]]), *np.zeros((2, 1, 3)),
                       np.zeros((1, 3)), np.zeros((1, 3)))
    assert predictions.missing_llc_labels(5, result) == ["4"]


def test_tms_phase_mass_does_not_depend_on_the_start():
    """c = 6, n = 450 (both phases carry mass): replica-exchange ladders started all in the
    5-gon and all in the 6-gon must agree on the 5- and 6-gon masses within 3 combined
    standard errors (the method's answer is a property of the posterior, not of the start)."""
    pytest.importorskip("tms.theory.phases")
    from tms.theory import zoo
    from tms.theory.loss import flatten_params
    from tms.theory.phases import classify
    from tms.samplers import tempering

    c, r, n, R, K = 6, 2, 450, 10, 10
    data = posterior.with_dims(stack_sorted([sorted_data(sample_inputs(n, c, posterior.data_seed(0, n, 0)))] * 2), 2)
    pts = {q.label: q for q in zoo.critical_points(c)}
    starts = torch.stack([flatten_params(pts[lab].W, pts[lab].b) for lab in ("5", "6")])  # (2, d)
    g = torch.Generator().manual_seed(0)
    th0 = starts[:, None, None, :] + 0.05 * torch.randn(2, R, K, r * c + c, generator=g, dtype=D)
    out = tempering.run_chains(posterior.energy_fn(data, r, c), th0, prior_fn=posterior.prior,
                               betas=tempering.geometric_ladder(K, 0.01), n_warmup=100, n_draws=100, generator=1,
                               max_steps=32, record=lambda th: th[..., -1, :].clone())
    lab = classify(*unflatten_params(out.draws, r, c))  # (T, 2 starts, R)
    for phase in ("5", "6"):
        f = (lab == phase).mean(0)  # (2, R)
        m, se = f.mean(1), f.std(1, ddof=1) / math.sqrt(R)
        assert abs(m[0] - m[1]) < 3 * math.hypot(*se), (phase, m, se)
        assert m.min() > 0.1  # both phases really carry mass at this n


def test_a_point_is_the_same_alone_chunked_or_dropped_early():
    """Counter-based keys per (seed, n, data set): the n = 1100 point gives identical masses,
    occupancies, ladders and round trips alone and batched with n = 300, while data sets
    that reach the target standard error first leave the batch (precision-sized sampling)."""
    kw = dict(seed=1, predict=False, seeds=2, n_chains=3, replicas=3, n_temps=6, beta_min=0.01, n_warmup=16,
              n_draws=32, max_steps=12, block=8, min_draws=8, plain_draws=8, target_se=0.2)
    alone = posterior.phase_sweep(6, [1100], **kw).points[0]
    both = posterior.phase_sweep(6, [300, 1100], **kw).points
    # some data sets reach s.e. 0.2 and leave the batch while others (stuck ladders) go on
    rounds = [k for p in both for k in p.diag["pt_rounds"]]
    assert min(rounds) < max(rounds) == 32 and min(rounds) >= 8
    assert alone.diag["pt_rounds"] == both[1].diag["pt_rounds"]
    assert alone.phases == both[1].phases
    for k in ("mass_seed", "mass_se_seed", "occupancy_seed", "round_trips_seed"):
        np.testing.assert_array_equal(getattr(alone, k), getattr(both[1], k))
    assert alone.diag["betas_seed"] == both[1].diag["betas_seed"]


def test_fused_energy_gradient_equals_autograd_of_the_energy():
    """posterior.energy_grad_fn (analytic, the samplers' hot path) against autograd of
    posterior.energy_fn on a stacked n-grid broadcast over chains."""
    from tms.samplers.hmc import with_grad

    c, r = 6, 2
    data = posterior.with_dims(stack_sorted([sorted_data(sample_inputs(n, c, n)) for n in (40, 300)]), 1)
    theta = torch.randn(2, 9, r * c + c, generator=torch.Generator().manual_seed(1), dtype=D)
    E, g = posterior.energy_grad_fn(data, r, c, beta_lik=0.7)(theta)
    E_ref, g_ref = with_grad(posterior.energy_fn(data, r, c, beta_lik=0.7))(theta)
    assert torch.allclose(E, E_ref, rtol=1e-12, atol=0) and torch.allclose(g, g_ref, rtol=1e-10, atol=1e-10)


def test_summaries_equal_the_direct_loss_norms_and_biases():
    from tms.bayes.posterior_point import summaries

    r, c, G, C = 2, 6, 3, 5
    X = torch.stack([sample_inputs(400, c, seed=g) for g in range(G)])
    data = posterior.with_dims(sorted_data(X), 1)  # (G, 1, ...) against chains (T, G, C)
    theta = 0.6 * torch.randn(4, G, C, r * c + c, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = summaries(theta, data, r, c)
    W, b = unflatten_params(theta, r, c)
    L = empirical_loss(W, b, X[None, :, None])  # the direct sum over every input
    assert got.shape == (4, G, C, 2 * c + 1)
    torch.testing.assert_close(got[..., 0], L, rtol=0, atol=1e-12)
    norms = torch.stack([W[..., :, i].pow(2).sum(-1).sqrt() for i in range(c)], -1)
    torch.testing.assert_close(got[..., 1 : c + 1], norms.sort(-1).values, rtol=0, atol=1e-14)
    torch.testing.assert_close(got[..., c + 1 :], b.sort(-1).values, rtol=0, atol=0)
