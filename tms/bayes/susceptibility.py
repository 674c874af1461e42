"""Susceptibilities of a posterior (docs/SPEC.md section 7): the first-order response of a
posterior expectation to a shift of the data distribution, measured as a posterior covariance.

For q_h = (1 - h) q + h q' the tempered likelihood is exp(-beta_lik n [(1 - h) L_n + h L'_n]),
so d/dh log p_h(w) = -beta_lik n (dL(w) - E_h[dL]) with dL = L'_n - L_n, and

    chi = d/dh E_h[phi] at h = 0 = -beta_lik n Cov(phi, dL)      (fluctuation-dissipation).

Generic, no TMS knowledge: observables phi (..., C, T, K) and loss differences dL (..., C, T, J)
(one column per perturbation) at T draws of C chains (or ladders) of one posterior; the leading
dims are independent posteriors of one problem (data sets at one n), whose susceptibilities
are averaged. Chains of one posterior share its mean, so their draws are pooled; draws of
different data sets are never pooled (the spread of their means is not a posterior covariance).

Estimation (batch means; Flegal and Jones 2010). Each chain's last B*m draws are cut into B
batches of m consecutive draws and the cross products about the pooled mean averaged per batch,
P (..., C, B, K, J). The covariance is mean(P) * N / (N - 1), N = C B m (unbiased for
independent draws); its standard error std(P) / sqrt(C B) times the same factor, which holds
for correlated draws once m exceeds their autocorrelation time. Averaging S posteriors: the
mean, with Monte Carlo error sqrt(sum se^2) / S, and the spread std / sqrt(S) across them.

Spectrum (K = J: phi_k and perturbation k describe the same thing, e.g. feature k): eigenvalues
of the symmetrised matrix (chi + chi^T) / 2, descending. For its eigenvectors V the projected
pairs (phi V, dL V) have v_i^T chi v_i = eigenvalue i on their diagonal, so batch means of the
projection give each eigenvalue's standard error (first order in the error of V).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_BATCHES = 4  # fewest batches (over all chains of a posterior) for a standard error


def as_draws(x, name: str, min_dim: int = 3) -> np.ndarray:
    """x (torch or numpy) as a float64 array of at least min_dim dims, finite, or a ValueError."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < min_dim:
        raise ValueError(f"{name} must have shape (..., chains, draws, columns), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def batch_layout(n_draws: int, n_chains: int, n_batches: int | None = None) -> tuple[int, int]:
    """(batches per chain B, draws per batch m) for chains of n_draws draws.

    Default B = floor(sqrt(n_draws)) (batches of about sqrt(T) draws). ValueError when a batch
    would be empty or the posterior would have fewer than MIN_BATCHES batches in all.
    """
    B = max(1, math.isqrt(n_draws)) if n_batches is None else int(n_batches)
    if B < 1 or n_draws < B:
        raise ValueError(f"n_batches must lie in [1, draws per chain = {n_draws}], got {n_batches}")
    if B * n_chains < MIN_BATCHES:
        raise ValueError(f"too few batches for a standard error: {n_chains} chain(s) x {B} batch(es) < "
                         f"{MIN_BATCHES}; give more draws or chains, or n_batches >= "
                         f"{math.ceil(MIN_BATCHES / n_chains)}")
    return B, n_draws // B


def batches(x: np.ndarray, B: int, m: int) -> np.ndarray:
    """The last B*m draws of every chain in batches: (..., C, T, K) -> (..., C, B, m, K)."""
    T = x.shape[-2]
    return x[..., T - B * m:, :].reshape(x.shape[:-2] + (B, m, x.shape[-1]))


@dataclass
class Covariance:
    """Posterior covariance of every pair (x_k, y_j) per posterior, with batch-means errors.

    value, se: (..., K, J); n_batches per chain of batch_size draws each."""

    value: np.ndarray
    se: np.ndarray
    n_batches: int
    batch_size: int


def posterior_covariance(x, y, *, n_batches: int | None = None) -> Covariance:
    """Cov(x_k, y_j) under each posterior: x (..., C, T, K), y (..., C, T, J) -> (..., K, J).

    C chains of T draws of one posterior are pooled; leading dims are separate posteriors.
    n_batches: batches per chain (batch_layout). See the module docstring for the estimator."""
    x, y = as_draws(x, "x"), as_draws(y, "y")
    if x.shape[:-1] != y.shape[:-1]:
        raise ValueError(f"x and y must share their (..., chains, draws) dims, got {x.shape} and {y.shape}")
    C, T = x.shape[-3:-1]
    B, m = batch_layout(T, C, n_batches)
    xb, yb = batches(x, B, m), batches(y, B, m)  # (..., C, B, m, K), (..., C, B, m, J)
    xc = xb - xb.mean((-4, -3, -2), keepdims=True)  # about the pooled mean of the posterior
    yc = yb - yb.mean((-4, -3, -2), keepdims=True)
    P = np.einsum("...cbtk,...cbtj->...cbkj", xc, yc) / m  # (..., C, B, K, J)
    P = P.reshape(P.shape[:-4] + (C * B,) + P.shape[-2:])
    N = C * B * m
    unbiased = N / (N - 1)
    return Covariance(P.mean(-3) * unbiased, P.std(-3, ddof=1) / math.sqrt(C * B) * unbiased, B, m)


@dataclass
class Spectrum:
    """Eigen-decomposition of a symmetrised susceptibility (K, K): values (K,) descending, their
    Monte Carlo standard errors se (K,), vectors (K, K) with eigenvector i in column i."""

    values: np.ndarray
    se: np.ndarray
    vectors: np.ndarray


@dataclass
class Susceptibility:
    """chi[k, j] = d/dh E_h[phi_k] for perturbation j (module docstring), averaged over posteriors.

    chi, se (K, J): mean over posteriors and its Monte Carlo error (batch means);
    chi_each, se_each (..., K, J): per posterior; se_between (K, J): std / sqrt(S) across the
    S posteriors (data-set spread plus Monte Carlo error), None when S = 1; scale (...,): each
    posterior's n beta_lik; n_batches per chain of batch_size draws; spectrum where K = J."""

    chi: np.ndarray
    se: np.ndarray
    chi_each: np.ndarray
    se_each: np.ndarray
    se_between: np.ndarray | None
    scale: np.ndarray
    n_batches: int
    batch_size: int
    spectrum: Spectrum | None


def _scale(n, beta_lik: float, lead: tuple[int, ...]) -> np.ndarray:
    """n beta_lik per posterior, broadcast to the leading dims (...)."""
    n = np.asarray(n, dtype=np.float64)
    if not np.isfinite(n).all() or (n <= 0).any():
        raise ValueError(f"n must be positive sample sizes, got {n}")
    if not (math.isfinite(beta_lik) and beta_lik > 0):
        raise ValueError(f"beta_lik must be a positive number, got {beta_lik!r}")
    try:
        return np.broadcast_to(n * beta_lik, lead).copy()
    except ValueError:
        raise ValueError(f"n must broadcast to the posteriors' dims {lead}, got shape {n.shape}") from None


def _averaged(value: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean over the posteriors (..., K, J) -> (K, J), its Monte Carlo error and the spread s.e."""
    v, s = value.reshape((-1,) + value.shape[-2:]), se.reshape((-1,) + se.shape[-2:])
    S = v.shape[0]
    between = v.std(0, ddof=1) / math.sqrt(S) if S >= 2 else None
    return v.mean(0), np.sqrt((s**2).sum(0)) / S, between


def susceptibility(phi, dL, n, beta_lik: float = 1.0, *, n_batches: int | None = None) -> Susceptibility:
    """Susceptibilities chi = -n beta_lik Cov(phi, dL) from posterior draws (docs/SPEC.md section 7).

    phi (..., C, T, K): K observables at T draws of C chains of each posterior; dL (..., C, T, J):
    L'_n - L_n of J perturbations at the same draws; n: sample size, a number or an array
    broadcasting to the posteriors' dims (...); n_batches: batches per chain (batch_layout).
    Returns a Susceptibility with the spectrum where K = J.
    """
    phi, dL = as_draws(phi, "phi"), as_draws(dL, "dL")
    cov = posterior_covariance(phi, dL, n_batches=n_batches)
    scale = _scale(n, beta_lik, phi.shape[:-3])
    chi_each, se_each = -scale[..., None, None] * cov.value, scale[..., None, None] * cov.se
    chi, se, between = _averaged(chi_each, se_each)
    spectrum = None
    if phi.shape[-1] == dL.shape[-1]:
        spectrum = _spectrum(chi, phi, dL, scale, cov.n_batches)
    return Susceptibility(chi, se, chi_each, se_each, between, scale, cov.n_batches, cov.batch_size, spectrum)


def _spectrum(chi: np.ndarray, phi: np.ndarray, dL: np.ndarray, scale: np.ndarray, n_batches: int) -> Spectrum:
    """Eigenvalues of (chi + chi^T) / 2, descending, with batch-means errors of the projections."""
    values, vectors = np.linalg.eigh((chi + chi.T) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    proj = posterior_covariance(phi @ vectors, dL @ vectors, n_batches=n_batches)
    diag_value = -scale[..., None] * np.diagonal(proj.value, axis1=-2, axis2=-1)  # (..., K)
    diag_se = scale[..., None] * np.diagonal(proj.se, axis1=-2, axis2=-1)
    _, se, _ = _averaged(diag_value[..., None], diag_se[..., None])
    return Spectrum(values, se[:, 0], vectors)
