"""Feature susceptibilities of the TMS posterior (docs/SPEC.md sections 1 and 7): how the
posterior moves when one feature's inputs become more frequent.

Perturbations. Under the high-sparsity distribution every input is mu e_i with one active
feature i. q'_i is the distribution of feature i's inputs; on a data set of n inputs, n_i of
them feature i's, the tempered likelihood under q_h = (1 - h) q + h q'_i is
exp(-beta_lik n [(1 - h) L_n + h L'_{n,i}]) with L'_{n,i} = (1/n_i) sum_{k: i_k = i} l_k the
mean per-sample loss l_k = ||x_k - f(x_k)||^2 of those inputs, so dL_i = L'_{n,i} - L_n and
chi[:, i] = -beta_lik n Cov(phi, dL_i) (tms.bayes.susceptibility). As sum_i (n_i / n) L'_{n,i} =
L_n, the frequency-weighted sum of the dL_i vanishes at every draw: sum_i (n_i / n) chi[:, i] = 0
(making every feature more frequent in proportion changes nothing).

Observables per feature k: ||W_k||^2, b_k, and the population loss on feature k's inputs,
L_k(W, b) = E_mu ||mu e_k - f(mu e_k)||^2 (closed form, SPEC 1: the class-k terms of the
decomposition in tms.theory.loss, whose mean over k is the population loss); for r = 2 the
phase indicators 1[classify(W, b) = p] (tms.theory.phases) against each perturbation.
Relabelling the features permutes rows and columns of every c x c matrix alike, and the
distribution of data sets is invariant, so averaged over data sets each is exchangeable
(tms.bayes.susceptibility.Exchangeable: self response, cross response, and their eigenvalues);
one data set's own matrix is not (its feature counts differ). The Bayesian influence function
is grouped by the active feature of each input (tms.bayes.influence).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tms.bayes.influence import Influence, group_means, influence
from tms.bayes.susceptibility import Susceptibility, as_draws, susceptibility
from tms.theory.loss import gram
from tms.theory.model import forward
from tms.theory.phases import classify

DRAW_CHUNK = 256  # draws per forward pass of the per-sample losses (memory ~ DRAW_CHUNK * n * c)


def feature_population_losses(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Population loss on each feature's inputs: W (..., r, c), b (..., c) -> (..., c).

    On mu e_i output j is ReLU(mu g_ij + b_j), active for mu in [lo, hi] (SPEC 1), where the
    error ((delta_ij - g_ij) mu - b_j)^2 integrates to a^2 m3 - 2 a b_j m2 + b_j^2 m1 with
    m_p = (hi^p - lo^p) / p; off it the error is delta_ij mu^2. The mean over i is
    tms.theory.loss.population_loss."""
    G = gram(W)  # (..., i, j): input feature i, output j
    bj = b.unsqueeze(-2)
    t = (-bj / torch.where(G == 0, torch.ones_like(G), G)).clamp(0.0, 1.0)
    zero, one = torch.zeros_like(t), torch.ones_like(t)
    pos, neg = G > 0, G < 0
    lo = torch.where(pos, t, zero)  # g > 0: active above t; g < 0: below t; g = 0: iff b > 0
    hi = torch.where(pos, one, torch.where(neg, t, torch.where(bj > 0, one, zero)))
    m1, m2, m3 = hi - lo, (hi**2 - lo**2) / 2, (hi**3 - lo**3) / 3
    delta = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    a = delta - G
    return (a**2 * m3 - 2 * a * bj * m2 + bj**2 * m1 + delta * (1.0 / 3.0 - m3)).sum(-1)


def sample_losses(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Per-sample losses l_k = ||x_k - f(x_k)||^2 at every draw.

    W (..., D, r, c), b (..., D, c): D draws per data set; X (..., n, c) -> (..., D, n), the
    draws taken DRAW_CHUNK at a time (memory)."""
    Xd = X.unsqueeze(-3)  # (..., 1, n, c)
    parts = [((Xd - forward(w, bb, Xd)) ** 2).sum(-1)
             for w, bb in zip(W.split(DRAW_CHUNK, -3), b.split(DRAW_CHUNK, -2))]
    return torch.cat(parts, -2)


def active_features(X: torch.Tensor) -> torch.Tensor:
    """The active feature of every input: X (..., n, c), one nonzero per row -> (..., n) int."""
    return (X != 0).to(torch.int64).argmax(-1)


@dataclass
class FeatureResponse:
    """Feature susceptibilities at one n (module docstring), averaged over the data sets.

    norm, bias, feature_loss: c x c Susceptibility of ||W_k||^2, b_k and L_k (row k) to
    upweighting feature i (column i), each with its Exchangeable summary (`.symmetric`);
    phase: P x c Susceptibility of the phase indicators (rows `phases`), None for r != 2;
    influence: the BIF grouped by active feature (c x c, exchangeable); counts (S, c): inputs
    of each feature per data set; n, beta_lik, c as given."""

    n: int
    beta_lik: float
    c: int
    norm: Susceptibility
    bias: Susceptibility
    feature_loss: Susceptibility
    phases: list[str]
    phase: Susceptibility | None
    influence: Influence
    counts: np.ndarray


def _checked(W, b, X) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W (S, C, T, r, c), b (S, C, T, c), X (S, n, c) as float64 tensors, or a ValueError."""
    W, b, X = (torch.as_tensor(as_draws(v, name, dims, layout)) for v, name, dims, layout in (
        (W, "W", 5, "(data sets, chains, draws, r, c)"), (b, "b", 4, "(data sets, chains, draws, c)"),
        (X, "X", 3, "(data sets, n, c)")))
    if W.ndim != 5 or b.shape != W.shape[:3] + W.shape[-1:]:
        raise ValueError(f"W must be (data sets, chains, draws, r, c) and b (data sets, chains, draws, c), "
                         f"got {tuple(W.shape)} and {tuple(b.shape)}")
    if X.ndim != 3 or X.shape[0] != W.shape[0] or X.shape[-1] != W.shape[-1]:
        raise ValueError(f"X must be (data sets = {W.shape[0]}, n, c = {W.shape[-1]}), got {tuple(X.shape)}")
    if ((X != 0).sum(-1) != 1).any() or (X < 0).any():
        raise ValueError("X must be high-sparsity inputs: each row mu e_i with mu > 0 (one nonzero)")
    return W, b, X


def feature_response(W, b, X, beta_lik: float = 1.0, *, n_batches: int | None = None) -> FeatureResponse:
    """Feature susceptibilities and the grouped BIF from posterior draws (docs/SPEC.md section 7).

    W (S, C, T, r, c), b (S, C, T, c): T draws of C chains (or ladders) of the posterior of
    each of S data sets X (S, n, c) (high-sparsity inputs), sampled at exp(-beta_lik n L_n);
    n_batches: batches per chain for the errors (tms.bayes.susceptibility.batch_layout).
    ValueError when a data set has no input of some feature (its perturbation is undefined).
    """
    W, b, X = _checked(W, b, X)
    S, C, T, r, c = W.shape
    n = X.shape[-2]
    features = active_features(X)  # (S, n)
    flat = sample_losses(W.reshape(S, C * T, r, c), b.reshape(S, C * T, c), X).reshape(S, C, T, n)
    per_feature, counts = group_means(flat.numpy(), features.numpy(), c)  # (S, C, T, c), (S, c)
    if (counts == 0).any():
        raise ValueError(f"every data set needs inputs of every feature; feature counts {counts.tolist()}")
    dL = per_feature - flat.numpy().mean(-1, keepdims=True)  # L'_{n,i} - L_n
    resp = dict(n=n, beta_lik=beta_lik, n_batches=n_batches, exchangeable_indices=True)
    labels, phase = [], None
    if r == 2:
        found = classify(W, b)  # (S, C, T)
        labels = sorted(set(np.unique(found).tolist()))
        indicators = np.stack([(found == p) for p in labels], -1).astype(np.float64)
        phase = susceptibility(indicators, dL, n, beta_lik, n_batches=n_batches)
    return FeatureResponse(
        n=n, beta_lik=float(beta_lik), c=c,
        norm=susceptibility((W**2).sum(-2).numpy(), dL, **resp),
        bias=susceptibility(b.numpy(), dL, **resp),
        feature_loss=susceptibility(feature_population_losses(W, b).numpy(), dL, **resp),
        phases=labels, phase=phase,
        influence=influence(flat.numpy(), features.numpy(), c, n_batches=n_batches, exchangeable_groups=True),
        counts=counts)
