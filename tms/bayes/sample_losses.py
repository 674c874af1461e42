"""Per-sample losses l_k = ||x_k - f(x_k)||^2 of high-sparsity inputs at many draws, compiled
(numba, parallel over draws): the susceptibilities' per-sample losses (docs/SPEC.md section 7).

Input k is mu_k e_i (i = i_k), so the forward pass f(x) = ReLU(W^T W x + b) (tms.theory.model)
reduces to h_q = W_qi mu_k and f_j = ReLU(sum_q W_qj h_q + b_j): the same products without the
zero terms, equal to the batched forward's losses to rounding (tests/bayes/test_sample_losses.py),
~c times fewer flops and no (draws, n, c) temporaries.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from tms.samplers import compiled

PARALLEL_WORK = 20_000  # draw-samples (draws x n) of a call from which the draws split over threads


@njit(cache=True, inline="always")
def _draw(p, W, b, idx, mu, out):
    """out[p, k] = l_k at draw p: W (D, r, c), b (D, c), idx (n,) active features, mu (n,) magnitudes."""
    r, c = W.shape[1], W.shape[2]
    for k in range(idx.shape[0]):
        i, m = idx[k], mu[k]
        s = 0.0
        for j in range(c):
            f = 0.0
            for q in range(r):
                f += W[p, q, j] * (W[p, q, i] * m)
            e = (m if j == i else 0.0) - max(f + b[p, j], 0.0)
            s += e * e
        out[p, k] = s


@njit(cache=True)
def _losses_serial(W, b, idx, mu, out):
    for p in range(W.shape[0]):
        _draw(p, W, b, idx, mu, out)


@njit(cache=True, parallel=True)
def _losses_parallel(W, b, idx, mu, out):
    for p in prange(W.shape[0]):
        _draw(p, W, b, idx, mu, out)


def sample_losses(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor) -> np.ndarray:
    """Per-sample losses at every draw: W (D, r, c), b (D, c), X (n, c) high-sparsity inputs (one
    nonzero per row, checked by the caller) -> (D, n) float64, on the run's threads
    (tms.samplers.compiled.call; the numbers do not depend on the thread count)."""
    Wn = np.ascontiguousarray(W.detach().cpu().numpy(), dtype=np.float64)
    bn = np.ascontiguousarray(b.detach().cpu().numpy(), dtype=np.float64)
    Xn = X.detach().cpu().numpy()
    idx = np.ascontiguousarray((Xn != 0).argmax(-1), dtype=np.int64)
    mu = np.ascontiguousarray(Xn[np.arange(len(idx)), idx], dtype=np.float64)
    D = Wn.shape[0]
    out = np.empty((D, len(idx)))
    compiled.call(_losses_serial, _losses_parallel, D, (Wn, bn, idx, mu, out),
                  min_chains=2 if D * len(idx) >= PARALLEL_WORK else D + 1)
    return out
