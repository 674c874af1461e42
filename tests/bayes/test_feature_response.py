"""The TMS feature susceptibilities (tms.bayes.feature_response) against independent code:
per-feature population losses by quadrature of the network, per-feature empirical losses by the
sorted exact loss, covariances by numpy; the exact identity sum_i (n_i / n) chi[:, i] = 0; and
equivariance under relabelling the features."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from tms.bayes.feature_response import (active_features, feature_population_losses, feature_response,
                                        sample_losses)
from tms.theory.data import sample_inputs
from tms.theory.loss import empirical_loss, empirical_loss_sorted, population_loss, sorted_data
from tms.theory.zoo import kgon_params


def _class_loss_quad(W: np.ndarray, b: np.ndarray, i: int) -> float:
    """E_mu ||mu e_i - ReLU(W^T W mu e_i + b)||^2, mu ~ U[0, 1], by quadrature split at the kinks."""
    G = W.T @ W
    e = np.eye(W.shape[1])[i]
    kinks = sorted(-b[j] / G[j, i] for j in range(len(b)) if G[j, i] != 0 and 0 < -b[j] / G[j, i] < 1)
    edges = [0.0] + kinks + [1.0]
    err = lambda mu: float(np.sum((mu * e - np.maximum(mu * G[:, i] + b, 0.0)) ** 2))  # noqa: E731
    return sum(quad(err, lo, hi, epsabs=1e-13, epsrel=1e-12)[0] for lo, hi in zip(edges[:-1], edges[1:]))


def test_feature_population_losses_match_quadrature_and_average_to_the_population_loss():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 2, 5, generator=g)
    b = 0.3 * torch.randn(6, 5, generator=g)
    W[1, :, 2] = 0.0  # a zero column (g = 0 on its row and column)
    b[2, 1] = 0.0  # b = 0
    b[3, 0] = -5.0  # b < -g: an output that never fires
    W[4] = torch.tensor([[1.0, 0.0, -1.0, 0.0, 0.0], [0.0, 1.0, 0.0, -1.0, 0.0]])  # orthogonal columns: g = 0 pairs
    L = feature_population_losses(W, b)
    for k in range(W.shape[0]):
        ref = [_class_loss_quad(W[k].numpy(), b[k].numpy(), i) for i in range(5)]
        np.testing.assert_allclose(L[k].numpy(), ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(L.mean(-1), population_loss(W, b), rtol=1e-12, atol=1e-14)
    Wd, bd = kgon_params(5, 6, 0, 0)  # a dead feature loses E[mu^2] = 1/3 on its own inputs
    assert math.isclose(float(feature_population_losses(Wd, bd)[5]), 1 / 3, rel_tol=1e-12)


def _fake_draws(S=2, C=2, T=64, c=6, seed=0):
    """Draws scattered about a 5-gon with a zero sixth column (not a posterior: the estimator's
    algebra is what is checked), W (S, C, T, 2, c), b (S, C, T, c)."""
    g = torch.Generator().manual_seed(seed)
    W0, b0 = kgon_params(5, c, 0, 0)
    W = W0 + 0.15 * torch.randn(S, C, T, 2, c, generator=g)
    b = b0 + 0.15 * torch.randn(S, C, T, c, generator=g)
    return W, b


def test_sample_losses_group_into_the_per_feature_empirical_losses():
    W, b = _fake_draws(S=1, C=1, T=5)
    X = sample_inputs(40, 6, 3)
    ls = sample_losses(W[0, 0], b[0, 0], X)  # (5, 40)
    torch.testing.assert_close(ls.mean(-1), empirical_loss(W[0, 0], b[0, 0], X), rtol=1e-12, atol=1e-14)
    feats = active_features(X)
    for i in range(6):
        sub = sorted_data(X[feats == i])
        torch.testing.assert_close(ls[:, feats == i].mean(-1), empirical_loss_sorted(W[0, 0], b[0, 0], sub))


def test_feature_response_equals_covariances_computed_independently():
    W, b = _fake_draws()
    X = torch.stack([sample_inputs(60, 6, s) for s in (11, 12)])
    res = feature_response(W, b, X, beta_lik=0.5)
    n, feats = 60, active_features(X)
    for s in range(2):
        Ln = empirical_loss_sorted(W[s], b[s], sorted_data(X[s]))  # (C, T)
        dL = torch.stack([empirical_loss_sorted(W[s], b[s], sorted_data(X[s][feats[s] == i])) - Ln
                          for i in range(6)], -1).reshape(-1, 6).numpy()
        norm = (W[s] ** 2).sum(-2).reshape(-1, 6).numpy()
        cov = np.cov(np.concatenate([norm, dL], 1), rowvar=False)[:6, 6:]  # pooled chains, ddof 1
        np.testing.assert_allclose(res.norm.chi_each[s], -0.5 * n * cov, rtol=1e-9, atol=1e-12)
        # making every feature more frequent in proportion changes nothing: sum_i (n_i/n) chi[:, i] = 0
        weights = res.counts[s] / n
        for part in (res.norm, res.bias, res.feature_loss, res.phase):
            np.testing.assert_allclose(part.chi_each[s] @ weights, 0.0, atol=1e-9 * np.abs(part.chi_each[s]).max())
    np.testing.assert_allclose(res.norm.chi, res.norm.chi_each.mean(0))
    sym = res.norm.symmetric
    assert math.isclose(sym.diagonal, np.trace(res.norm.chi) / 6, rel_tol=1e-12)
    assert math.isclose(sym.contrast, sym.diagonal - sym.off_diagonal, rel_tol=1e-12)
    assert res.phases and res.phase.chi.shape == (len(res.phases), 6)
    assert res.influence.bif.shape == (6, 6) and res.influence.symmetric is not None


def test_relabelling_features_permutes_every_matrix():
    W, b = _fake_draws(seed=1)
    X = torch.stack([sample_inputs(60, 6, s) for s in (21, 22)])
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    a = feature_response(W, b, X)
    p = feature_response(W[..., perm], b[..., perm], X[..., perm])
    for name in ("norm", "bias", "feature_loss"):
        x, y = getattr(a, name), getattr(p, name)
        np.testing.assert_allclose(y.chi, x.chi[perm][:, perm], rtol=1e-9, atol=1e-12)
        assert math.isclose(y.symmetric.diagonal, x.symmetric.diagonal, rel_tol=1e-9)
        assert math.isclose(y.symmetric.off_diagonal_se, x.symmetric.off_diagonal_se, rel_tol=1e-9)
    np.testing.assert_allclose(p.influence.bif, a.influence.bif[perm][:, perm], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(p.phase.chi, a.phase.chi[:, perm], rtol=1e-9, atol=1e-12)  # labels are invariant


def test_a_data_set_without_some_feature_is_refused():
    W, b = _fake_draws(S=1)
    X = sample_inputs(30, 6, 0)
    X = X[active_features(X) != 2][None]  # no input of feature 2
    with pytest.raises(ValueError, match="every feature"):
        feature_response(W, b, X)
    with pytest.raises(ValueError, match="X must have shape"):
        feature_response(W, b, X[0])
