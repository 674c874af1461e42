"""Local-SGLD susceptibilities and BIF (tms.bayes.local_response) against the Laplace prediction
at a regular point (docs/SPEC.md section 7): where the localised posterior
exp(-nbeta L_n - (gamma/2) |w - w0|^2) is close to Gaussian, N(w_bar, A^-1) with w_bar its mode
and A = nbeta H(w_bar) + gamma I, a posterior covariance of smooth functions f, g is
grad f^T A^-1 grad g. Computed here by Newton and autograd on per-sample losses written out
directly; the sampler, the batching and the estimators must agree within their errors."""
import numpy as np
import pytest
import torch

from tms.bayes.local_response import local_draws, local_feature_response
from tms.llc.estimator import LLCSettings
from tms.theory.data import sample_inputs

C, R, N, NBETA, GAMMA = 3, 2, 60, 100.0, 1000.0
SAMPLER = LLCSettings(n_chains=8, n_burnin=1000, n_draws=6000, eps=1e-5, gamma=GAMMA, seed=1)
THIN = 6


def _point():
    g = torch.Generator().manual_seed(5)
    W0 = 0.2 + 0.6 * torch.rand(R, C, generator=g, dtype=torch.float64)  # G = W^T W > 0
    b0 = torch.tensor([0.5, 0.6, 0.7], dtype=torch.float64)  # every ReLU active on every input: no kink
    X = sample_inputs(N, C, 11, dtype=torch.float64)
    return W0, b0, X


def _sample_losses(theta, X):
    W, b = theta[: R * C].reshape(R, C), theta[R * C:]
    out = torch.relu(X @ W.T @ W + b)
    return ((X - out) ** 2).sum(-1)  # (n,)


def _laplace(W0, b0, X):
    """Mode w_bar (Newton), the covariance A^-1, and the per-sample loss gradients (n, d) there."""
    theta0 = torch.cat([W0.reshape(-1), b0])

    def U(th):
        return NBETA * _sample_losses(th, X).mean() + 0.5 * GAMMA * ((th - theta0) ** 2).sum()

    th = theta0.clone()
    for _ in range(20):
        g = torch.func.grad(U)(th)
        th = th - torch.linalg.solve(torch.func.hessian(U)(th), g)
    cov = torch.linalg.inv(torch.func.hessian(U)(th))
    return th, cov, torch.func.jacrev(lambda t: _sample_losses(t, X))(th)


def test_local_sgld_bif_and_susceptibility_match_laplace():
    W0, b0, X = _point()
    th, cov, J = _laplace(W0, b0, X)
    pre = X.sum(-1, keepdim=True) * (th[: R * C].reshape(R, C).T @ th[: R * C].reshape(R, C))[
        (X != 0).to(torch.int64).argmax(-1)] + th[R * C:]
    sd = cov.diagonal().sqrt().max()
    assert pre.min() > 8 * sd, "test point too close to a ReLU kink for Laplace"  # precondition
    res = local_feature_response("w0", W0, b0, [X[None]], [[11]], NBETA / N, SAMPLER, thin=THIN, n_batches=None)
    resp = res.responses[0]
    assert res.acceptance[0] > 0.99
    feat = (X != 0).to(torch.int64).argmax(-1)
    onehot = torch.nn.functional.one_hot(feat, C).to(torch.float64)  # (n, C)
    Jg = (onehot / onehot.sum(0)).T @ J  # grads of the group-mean losses (C, d)
    bif_pred = -(Jg @ cov @ Jg.T).numpy()
    z = (resp.influence.bif - bif_pred) / resp.influence.se
    assert np.abs(z).max() < 4, (resp.influence.bif, bif_pred, z)
    # susceptibility of |W_k|^2 to upweighting feature i: -nbeta grad|W_k|^2 A^-1 grad dL_i
    gnorm = torch.func.jacrev(lambda t: (t[: R * C].reshape(R, C) ** 2).sum(0))(th)  # (C, d)
    gdL = Jg - J.mean(0)
    chi_pred = -(NBETA * gnorm @ cov @ gdL.T).numpy()
    z = (resp.norm.chi - chi_pred) / resp.norm.se
    assert np.abs(z).max() < 4, (resp.norm.chi, chi_pred, z)
    # the estimate resolves the effect: else the comparison above could not fail
    assert np.abs(bif_pred / resp.influence.se).max() > 10


def test_local_draws_do_not_depend_on_the_batch():
    """A centre's draws are the same alone or batched with another n (counter-based keys)."""
    W0, b0, X = _point()
    X2 = sample_inputs(40, C, 12, dtype=torch.float64)
    small = SAMPLER.replace(n_chains=2, n_burnin=10, n_draws=20)
    both = local_feature_response("w0", W0, b0, [X[None], X2[None]], [[11], [12]], 1.0, small, thin=5)
    alone = local_feature_response("w0", W0, b0, [X2[None]], [[12]], 1.0, small, thin=5)
    np.testing.assert_array_equal(both.responses[1].influence.bif_each, alone.responses[0].influence.bif_each)
    with pytest.raises(ValueError, match="thin"):
        local_draws(W0, b0, [X], [1.0], small, thin=0)
