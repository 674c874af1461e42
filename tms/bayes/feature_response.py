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
from tms.core.settings import Settings, setting
from tms.theory.loss import gram, use_compiled
from tms.theory.model import forward
from tms.theory.phases import classify

DRAW_CHUNK = 256  # draws per forward pass of the per-sample losses (memory ~ DRAW_CHUNK * n * c)


@dataclass(frozen=True)
class SusceptibilitySettings(Settings):
    """How `tms susceptibility` estimates from a posterior sweep's saved draws."""

    n_batches: int = setting(0, "batches per ladder for the errors (0: the fewest that give an error, one per "
                                "ladder with 4 or more ladders: the spread across independent ladders)",
                             minimum=0, maximum=10**4)

    local: str | None = setting(None, "zoo label of a critical point (e.g. 6): also the susceptibilities and BIF from "
                                      "SGLD localised there, the field's estimator, at every n (None: not run)",
                                optional=True)
    n_chains: int = setting(4, "local SGLD chains per data set", minimum=1, maximum=10**4)
    n_burnin: int = setting(1000, "local SGLD steps dropped first", minimum=0, maximum=10**7)
    n_draws: int = setting(4000, "local SGLD steps after the burn-in", minimum=1, maximum=10**7)
    thin: int = setting(10, "local SGLD: one draw kept every this many steps", minimum=1, maximum=10**6)
    eps: float = setting(1e-4, "local SGLD step size (acceptance near 1: resolved)", positive=True)
    gamma: float = setting(100.0, "local SGLD localisation strength", minimum=0.0)

    def check(self) -> None:
        if self.thin > self.n_draws:
            raise ValueError(f"thin must be <= n_draws = {self.n_draws}, got {self.thin}")

    def batches(self) -> int | str:
        """n_batches as feature_response takes it ("longest" for 0)."""
        return "longest" if self.n_batches == 0 else self.n_batches


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
    """Per-sample losses l_k = ||x_k - f(x_k)||^2 at every draw, by the batched forward pass
    (differentiable; the reference of tms.bayes.sample_losses, which feature_response uses).

    W (..., D, r, c), b (..., D, c): D draws per data set; X (..., n, c) -> (..., D, n), the
    draws taken DRAW_CHUNK at a time (memory)."""
    Xd = X.unsqueeze(-3)  # (..., 1, n, c)
    parts = [((Xd - forward(w, bb, Xd)) ** 2).sum(-1)
             for w, bb in zip(W.split(DRAW_CHUNK, -3), b.split(DRAW_CHUNK, -2))]
    return torch.cat(parts, -2)


def _sample_losses(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor) -> np.ndarray:
    """sample_losses as numpy (D, n): compiled (tms.bayes.sample_losses) where the loss kernels
    run (tms.theory.loss.use_compiled: numba loads, CPU), else the forward pass."""
    if use_compiled(None, W):
        from tms.bayes import sample_losses as kernel  # numba: imported where used
        return kernel.sample_losses(W, b, X)
    return sample_losses(W, b, X).numpy()


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


def _checked(W, b, X) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Per data set s: W[s] (C_s, T_s, r, c), b[s] (C_s, T_s, c) float64; X (S, n, c); or a ValueError."""
    X = torch.as_tensor(as_draws(X, "X", 3, "(data sets, n, c)"))
    if X.ndim != 3:
        raise ValueError(f"X must have shape (data sets, n, c), got {tuple(X.shape)}")
    Ws = [torch.as_tensor(as_draws(w, "W", 4, "(chains, draws, r, c) per data set")) for w in W]
    bs = [torch.as_tensor(as_draws(v, "b", 3, "(chains, draws, c) per data set")) for v in b]
    if len(Ws) != len(bs) or len(Ws) != X.shape[0]:
        raise ValueError(f"W, b and X must hold the same number of data sets, got {len(Ws)}, {len(bs)}, {X.shape[0]}")
    for w, v in zip(Ws, bs):
        if w.ndim != 4 or v.shape != w.shape[:2] + w.shape[-1:] or w.shape[-1] != X.shape[-1]:
            raise ValueError(f"each data set's W must be (chains, draws, r, c = {X.shape[-1]}) and b (chains, "
                             f"draws, c), got {tuple(w.shape)} and {tuple(v.shape)}")
    if ((X != 0).sum(-1) != 1).any() or (X < 0).any():
        raise ValueError("X must be high-sparsity inputs: each row mu e_i with mu > 0 (one nonzero)")
    return Ws, bs, X


def _draw_quantities(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor) -> dict:
    """One data set X (n, c) and its draws W (C, T, r, c), b (C, T, c): per-sample losses (C, T, n),
    the perturbations dL (C, T, c), the observables (C, T, c) and the feature counts (c,)."""
    C, T, r, c = W.shape
    features = active_features(X).numpy()
    losses = _sample_losses(W.reshape(C * T, r, c), b.reshape(C * T, c), X).reshape(C, T, -1)
    per_feature, counts = group_means(losses, features, c)
    if (counts == 0).any():
        raise ValueError(f"every data set needs inputs of every feature; feature counts {counts.tolist()}")
    return dict(losses=losses, features=features, counts=counts, dL=per_feature - losses.mean(-1, keepdims=True),
                norm=(W**2).sum(-2).numpy(), bias=b.numpy(), feature_loss=feature_population_losses(W, b).numpy())


def feature_response(W, b, X, beta_lik: float = 1.0, *, n_batches: int | str | None = "longest") -> FeatureResponse:
    """Feature susceptibilities and the grouped BIF from posterior draws (docs/SPEC.md section 7).

    W (S, C, T, r, c), b (S, C, T, c): T draws of C chains (or ladders) of the posterior of each
    of S data sets X (S, n, c) (high-sparsity inputs), sampled at exp(-beta_lik n L_n); or lists of
    S arrays W[s] (C_s, T_s, r, c), b[s] (C_s, T_s, c) where data sets ran for different numbers
    of rounds. n_batches: batches per chain for the errors (tms.bayes.susceptibility.batch_layout;
    default "longest": with 4 or more ladders each ladder is one batch and the error is the
    spread across the independent ladders, as for the phase mass, since a phase indicator may
    flip too rarely for shorter batches to be independent).
    ValueError when a data set has no input of some feature (its perturbation is undefined).
    """
    Ws, bs, X = _checked(W, b, X)
    n, c, r = X.shape[-2], X.shape[-1], Ws[0].shape[-2]
    parts = [_draw_quantities(w, v, x) for w, v, x in zip(Ws, bs, X)]

    def each(key):
        return [q[key] for q in parts]

    resp = dict(n=n, beta_lik=beta_lik, n_batches=n_batches, exchangeable_indices=True)
    labels, phase = [], None
    if r == 2:
        found = [classify(w, v) for w, v in zip(Ws, bs)]  # (C_s, T_s) each
        labels = sorted(set().union(*(np.unique(f).tolist() for f in found)))
        indicators = [np.stack([(f == p) for p in labels], -1).astype(np.float64) for f in found]
        phase = susceptibility(indicators, each("dL"), n, beta_lik, n_batches=n_batches)
    return FeatureResponse(
        n=n, beta_lik=float(beta_lik), c=c,
        norm=susceptibility(each("norm"), each("dL"), **resp),
        bias=susceptibility(each("bias"), each("dL"), **resp),
        feature_loss=susceptibility(each("feature_loss"), each("dL"), **resp),
        phases=labels, phase=phase,
        influence=influence(each("losses"), each("features"), c, n_batches=n_batches, exchangeable_groups=True),
        counts=np.stack(each("counts")))
