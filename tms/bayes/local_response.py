"""Susceptibilities and the Bayesian influence function from local SGLD (docs/SPEC.md section 7):
the field's estimator, beside the global one of tms.bayes.feature_response.

The field estimates both from SGLD chains localised at one point w* (a trained network),
sampling exp(-nbeta L_n(w) - (gamma/2) ||w - w*||^2) (tms.samplers.sgld, SPEC 5). Here w*
is a zoo point, the data sets and nbeta = n beta_lik are those of the posterior sweep, so the
only differences from the global estimate are the localisation (one basin, gamma) and the
SGLD discretisation. Reweighting the data moves the localised posterior as it moves the
global one, chi = -nbeta Cov(phi, dL) (tms.bayes.susceptibility), so the draws go through the
same tms.bayes.feature_response with beta_lik = nbeta / n.

Batching: every (n, data set) of a sweep is one centre, its data sorted (tms.theory.loss.
stack_sorted pads the different n) and its chains a trailing batch dim: one SGLD run for the
whole grid. Randomness is counter-based per centre: its key hashes (seed, n, data seed), its
chains' keys that key and the chain index (tms.llc.estimator.chain_keys), so a point gives
the same draws alone or with others.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tms.bayes.feature_response import FeatureResponse, feature_response
from tms.core import rng
from tms.llc.estimator import LLCSettings, chain_keys, check_sgld_args, marked_grad_fn
from tms.samplers import compiled_sgld, sgld
from tms.theory.loss import flatten_params, loss_and_grad_flat, sorted_data, stack_sorted, unflatten_params


@dataclass
class LocalDraws:
    """Kept SGLD draws of every centre: W (P, K, T, r, c), b (P, K, T, c) for P centres
    ((n, data set) pairs), K chains, T kept draws; nbeta (P,); acceptance (P,): the mean MALA
    acceptance of the kept moves (near 1: eps resolves the localised posterior)."""

    W: torch.Tensor
    b: torch.Tensor
    nbeta: torch.Tensor
    acceptance: torch.Tensor


def centre_keys(seed: int, ns, data_seeds) -> torch.Tensor:
    """Key (P,) of each centre: hash(seed, n, data seed) (module docstring)."""
    return torch.tensor([rng.key(int(seed), int(n), int(s)) for n, s in zip(ns, data_seeds)], dtype=torch.int64)


def local_draws(W0: torch.Tensor, b0: torch.Tensor, X: list[torch.Tensor], nbeta, sampler: LLCSettings, *,
                thin: int = 10, keys: torch.Tensor | None = None) -> LocalDraws:
    """Local SGLD at w* = (W0 (r, c), b0 (c,)) on each data set X[p] (n_p, c) (high sparsity,
    sizes may differ), nbeta (P,): sampler.n_chains chains per data set, sampler.n_burnin steps
    dropped, then sampler.n_draws steps of which every thin-th draw is kept (full batch, the
    exact sorted loss; sampler.nbeta, n and batch_size are not used). keys (P,): per-centre
    keys (default hash(sampler.seed, p)). Returns LocalDraws."""
    P, K = len(X), sampler.n_chains
    nbeta = torch.as_tensor(nbeta, dtype=torch.float64).reshape(P)
    check_sgld_args(nbeta, sampler.eps, sampler.gamma, K, sampler.n_burnin, sampler.n_draws, None)
    if not 1 <= thin <= sampler.n_draws:
        raise ValueError(f"thin must lie in [1, n_draws = {sampler.n_draws}], got {thin}")
    r, c = W0.shape
    data = stack_sorted([sorted_data(x.to(torch.float64)) for x in X])  # (P, c, m)
    data = type(data)(*(v.unsqueeze(1) for v in data))  # (P, 1, ...) against the chains
    theta0 = flatten_params(W0.to(torch.float64), b0.to(torch.float64)).expand(P, K, r * c + c)
    keys = chain_keys(sampler.seed, keys, (P,), K, theta0.device)  # (P, K)
    state = sgld.init(theta0, centre=theta0, generator=keys)
    nb = nbeta.unsqueeze(-1)  # (P, 1)

    grad_fn = marked_grad_fn(lambda theta: loss_and_grad_flat(theta, r, c, data), r, c, data)
    out = None
    if compiled_sgld.applies(grad_fn, theta0):  # compiled steps, the torch loop the reference
        out = compiled_sgld.run(state, grad_fn, nbeta=nb, eps=sampler.eps, gamma=sampler.gamma,
                                n_steps=sampler.n_burnin + sampler.n_draws, keep_from=sampler.n_burnin, thin=thin)
    if out is not None:
        theta, accept = out[3], out[2][..., sampler.n_burnin:]  # (P, K, T, d), (P, K, n_draws)
    else:
        theta, accept = _torch_draws(state, grad_fn, nb, sampler, thin)
    W, b = unflatten_params(theta, r, c)
    return LocalDraws(W, b, nbeta, accept.nanmean((-2, -1)))


def _torch_draws(state, grad_fn, nb, sampler: LLCSettings, thin: int):
    """local_draws' SGLD loop on torch: (kept points (P, K, T, d), acceptances (P, K, n_draws))."""
    kept, accepts = [], []
    for t in range(sampler.n_burnin + sampler.n_draws):
        state, info = sgld.step(state, grad_fn, nbeta=nb, eps=sampler.eps, gamma=sampler.gamma)
        if t >= sampler.n_burnin:
            accepts.append(info.accept_prob)
            if (t - sampler.n_burnin) % thin == thin - 1:
                kept.append(state.theta)
    return torch.stack(kept, -2), torch.stack(accepts, -1)


@dataclass
class LocalResponse:
    """Local-SGLD feature susceptibilities and BIF per n (FeatureResponse, beta_lik = nbeta / n),
    the centre's label, and the mean MALA acceptance per n (N,)."""

    label: str
    ns: np.ndarray
    responses: list[FeatureResponse]
    acceptance: np.ndarray


def local_feature_response(label: str, W0: torch.Tensor, b0: torch.Tensor, X_by_n: list[torch.Tensor],
                           data_seeds: list[list[int]], beta_lik: float, sampler: LLCSettings, *, thin: int = 10,
                           n_batches: int | str | None = "longest") -> LocalResponse:
    """feature_response from local SGLD at the point `label` (W0, b0) for every n of a sweep:
    X_by_n[i] (S, n_i, c) its data sets, data_seeds[i] their seeds (the centres' keys),
    nbeta = n_i beta_lik. One SGLD run over every (n, data set) (module docstring)."""
    X = [x for xs in X_by_n for x in xs]
    ns = [x.shape[-2] for x in X]
    S = [xs.shape[0] for xs in X_by_n]
    draws = local_draws(W0, b0, X, [n * beta_lik for n in ns], sampler, thin=thin,
                        keys=centre_keys(sampler.seed, ns, [s for seeds in data_seeds for s in seeds]))
    responses, start = [], 0
    for xs, count in zip(X_by_n, S):  # per n: the statistics only (the sampling ran once)
        part = slice(start, start + count)
        responses.append(feature_response(list(draws.W[part]), list(draws.b[part]), xs, beta_lik,
                                          n_batches=n_batches))
        start += count
    acceptance = [float(draws.acceptance[sum(S[:i]):sum(S[:i + 1])].mean()) for i in range(len(S))]
    return LocalResponse(label, np.array([xs.shape[-2] for xs in X_by_n]), responses, np.array(acceptance))
