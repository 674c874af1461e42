"""The TMS susceptibility by fluctuation-dissipation equals a finite difference of the posterior
mean over sweeps rerun with the likelihood reweighted towards one feature (docs/SPEC.md
section 7): chi[k, i] = -n beta_lik Cov(phi_k, L'_{n,i} - L_n) against
(E_{+h}[phi_k] - E_{-h}[phi_k]) / 2h, same seeds, within the stated errors."""
import math

import numpy as np
import pytest
import torch

from tms.bayes import posterior
from tms.bayes.feature_response import feature_population_losses, feature_response, sample_losses
from tms.theory.data import sample_inputs
from tms.theory.loss import SortedData, sorted_data

N, C, SEED, H, FEATURE = 20, 3, 0, 0.1, 0
CFG = dict(seeds=1, n_chains=2, plain_draws=10, replicas=12, n_temps=6, n_warmup=60, n_draws=400, min_draws=400,
           block=100, max_steps=20)


def _data() -> torch.Tensor:
    return sample_inputs(N, C, posterior.data_seed(SEED, N, 0), dtype=torch.float64)


def test_reweighted_energy_is_the_weighted_per_sample_loss():
    """beta_lik n [(1 - h) L_n + h L'_{n,i}] from the fused sorted loss equals the per-sample
    losses summed with weights (1 - h) / n and h / n_i by brute force, gradient by autograd."""
    X = _data()
    data = posterior.with_dims(SortedData(*(t.unsqueeze(0) for t in sorted_data(X))), 1)
    theta = torch.randn(1, 5, 3 * C, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    U, g = posterior.energy_grad_fn(data, 2, C, 0.7, (1, 0.3))(theta)
    th = theta[0].clone().requires_grad_(True)
    losses = sample_losses(th[:, : 2 * C].reshape(5, 2, C), th[:, 2 * C:], X)  # (5, n)
    own = (X != 0).to(torch.int64).argmax(-1) == 1
    ref = 0.7 * N * (0.7 * losses.mean(-1) + 0.3 * losses[:, own].mean(-1))
    ref.sum().backward()
    np.testing.assert_allclose(U[0].numpy(), ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(g[0].numpy(), th.grad.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="reweight h"):
        posterior.phase_sweep(C, [N], reweight=(0, 1.0), predict=False)


def _draws(reweight) -> tuple[torch.Tensor, torch.Tensor, dict]:
    sweep = posterior.phase_sweep(C, [N], seed=SEED, predict=False, reweight=reweight, **CFG)
    theta = torch.as_tensor(sweep.points[0].draws[0]["theta"], dtype=torch.float64)  # (R, T, 9)
    return theta[..., : 2 * C].reshape(theta.shape[:2] + (2, C)), theta[..., 2 * C:], sweep.settings


def test_covariance_equals_finite_difference_of_reweighted_sweeps():
    (W, b, rec0), plus, minus = _draws(None), _draws((FEATURE, H)), _draws((FEATURE, -H))
    assert "reweight" not in rec0 and plus[2]["reweight"] == [FEATURE, H]
    response = feature_response([W], [b], _data()[None], 1.0)
    observables = dict(feature_loss=lambda W, b: feature_population_losses(W, b)[..., FEATURE],
                       norm=lambda W, b: (W[..., FEATURE] ** 2).sum(-1))
    for name, phi in observables.items():
        chi = getattr(response, name)
        value, se = chi.chi[FEATURE, FEATURE], chi.se[FEATURE, FEATURE]
        ladder_p, ladder_m = phi(*plus[:2]).mean(1), phi(*minus[:2]).mean(1)  # (R,) per ladder
        R = ladder_p.shape[0]
        fd = float(ladder_p.mean() - ladder_m.mean()) / (2 * H)
        fd_se = math.sqrt(float(ladder_p.var()) / R + float(ladder_m.var()) / R) / (2 * H)
        assert abs(value) > 5 * se, (name, value, se)  # resolved, so agreement means something
        if name == "feature_loss":  # the loss of the upweighted feature falls: resolved in both
            assert value < 0 and fd < -5 * fd_se, (value, fd, fd_se)
        assert abs(fd - value) < 3 * np.hypot(se, fd_se), (name, value, se, fd, fd_se)
