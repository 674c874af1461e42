"""Susceptibilities of a posterior (docs/SPEC.md section 7): the first-order response of a
posterior expectation to a shift of the data distribution, measured as a posterior covariance.

For q_h = (1 - h) q + h q' the tempered likelihood is exp(-beta_lik n [(1 - h) L_n + h L'_n]),
so d/dh log p_h(w) = -beta_lik n (dL(w) - E_h[dL]) with dL = L'_n - L_n, and

    chi = d/dh E_h[phi] at h = 0 = -beta_lik n Cov(phi, dL)      (fluctuation-dissipation).

Generic, no TMS knowledge: observables phi (..., C, T, K) and loss differences dL (..., C, T, J)
(one column per perturbation) at T draws of C chains (or ladders) of one posterior; the leading
dims are independent posteriors of one problem (data sets at one n), whose susceptibilities
are averaged (or a list of posteriors whose chains and draws differ in number). Chains of one posterior share its mean, so their draws are pooled; draws of
different data sets are never pooled (the spread of their means is not a posterior covariance).

Estimation (batch means; Flegal and Jones 2010). Each chain's last B*m draws are cut into B
batches of m consecutive draws and the cross products about the pooled mean averaged per batch,
P (..., C, B, K, J). The covariance is mean(P) * N / (N - 1), N = C B m (unbiased for
independent draws); its standard error std(P) / sqrt(C B) times the same factor, which holds
for correlated draws once m exceeds their autocorrelation time ("longest" batches: the fewest
that give MIN_BATCHES, each chain one batch when C >= MIN_BATCHES, for chains whose
autocorrelation time is unknown, e.g. a phase indicator that rarely flips). Averaging S posteriors: the
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


def as_draws(x, name: str, min_dim: int = 3, layout: str = "(..., chains, draws, columns)") -> np.ndarray:
    """x (torch or numpy) as a float64 array of at least min_dim dims (layout: how the error
    message names them), finite, or a ValueError."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < min_dim:
        raise ValueError(f"{name} must have shape {layout}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def batch_layout(n_draws: int, n_chains: int, n_batches: int | str | None = None) -> tuple[int, int]:
    """(batches per chain B, draws per batch m) for chains of n_draws draws.

    n_batches: an int; None: B = floor(sqrt(n_draws)) (batches of about sqrt(T) draws);
    "longest": B = ceil(MIN_BATCHES / n_chains) (one batch per chain when there are enough
    chains: the error is their spread, whatever the autocorrelation). ValueError when a batch
    would be empty or the posterior would have fewer than MIN_BATCHES batches in all.
    """
    if n_batches == "longest":
        B = math.ceil(MIN_BATCHES / n_chains)
    elif n_batches is None or isinstance(n_batches, (int, np.integer)):
        B = max(1, math.isqrt(n_draws)) if n_batches is None else int(n_batches)
    else:
        raise ValueError(f"n_batches must be an int, None or 'longest', got {n_batches!r}")
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


@dataclass
class BatchProducts:
    """Centred cross products of x and y averaged per batch, times N / (N - 1), per block of
    posteriors: blocks[i] (P_i..., C B, K, J); their mean over the batches is the covariance.
    One block when the draws came as one array (P_0... its posteriors' dims); one block (1, ...)
    per posterior when they came as a list (ragged: chains and draws may differ). A linear
    function of the covariance (a trace, a projection) applied per batch gets a batch-means
    error too. n_batches, batch_size: the fewest batches per chain and the smallest batch."""

    blocks: list[np.ndarray]
    ragged: bool
    n_batches: int
    batch_size: int

    @property
    def posteriors(self) -> tuple[int, ...]:
        """The posteriors' dims: (...) of one array, (S,) of a list of S posteriors."""
        return (len(self.blocks),) if self.ragged else self.blocks[0].shape[:-3]

    def mean_and_se(self, linear=None) -> tuple[np.ndarray, np.ndarray]:
        """linear(values) (..., C B, Q...) (default: values) averaged over the batches, per
        posterior (posteriors..., Q...), and its standard error std / sqrt(C B)."""
        means, ses = [], []
        for v in self.blocks:
            axis, nb = v.ndim - 3, v.shape[-3]
            out = np.moveaxis(v if linear is None else linear(v), axis, 0)
            means.append(out.mean(0))
            ses.append(out.std(0, ddof=1) / math.sqrt(nb))
        if not self.ragged:
            return means[0], ses[0]
        return np.concatenate(means), np.concatenate(ses)

    def covariance(self) -> Covariance:
        value, se = self.mean_and_se()
        return Covariance(value, se, self.n_batches, self.batch_size)


def _block_products(x: np.ndarray, y: np.ndarray, n_batches: int | str | None) -> tuple[np.ndarray, int, int]:
    """Batch products (..., C B, K, J) of one block of posteriors x (..., C, T, K), y (..., C, T, J)."""
    if x.shape[:-1] != y.shape[:-1]:
        raise ValueError(f"x and y must share their (..., chains, draws) dims, got {x.shape} and {y.shape}")
    C, T = x.shape[-3:-1]
    B, m = batch_layout(T, C, n_batches)
    xb, yb = batches(x, B, m), batches(y, B, m)  # (..., C, B, m, K), (..., C, B, m, J)
    xc = xb - xb.mean((-4, -3, -2), keepdims=True)  # about the pooled mean of the posterior
    yc = yb - yb.mean((-4, -3, -2), keepdims=True)
    P = np.einsum("...cbtk,...cbtj->...cbkj", xc, yc) / m  # (..., C, B, K, J)
    N = C * B * m
    return P.reshape(P.shape[:-4] + (C * B,) + P.shape[-2:]) * (N / (N - 1)), B, m


def batch_products(x, y, *, n_batches: int | str | None = None) -> BatchProducts:
    """Batch products of x (..., C, T, K) and y (..., C, T, J) about each posterior's pooled
    mean (module docstring), or of lists of S posteriors x[s] (C_s, T_s, K), y[s] (C_s, T_s, J)
    (data sets sampled for different numbers of rounds). n_batches: batches per chain
    (batch_layout; default per posterior)."""
    ragged = isinstance(x, (list, tuple))
    if ragged != isinstance(y, (list, tuple)) or (ragged and (len(x) != len(y) or not x)):
        raise ValueError("x and y must both be arrays, or both non-empty lists of the same length (one per posterior)")
    pairs = zip(x, y) if ragged else [(x, y)]
    blocks, Bs, ms = [], [], []
    for xs, ys in pairs:
        xs, ys = as_draws(xs, "x"), as_draws(ys, "y")
        if ragged and xs.ndim != 3:
            raise ValueError(f"each posterior of a list must be (chains, draws, columns), got shape {xs.shape}")
        P, B, m = _block_products(xs[None] if ragged else xs, ys[None] if ragged else ys, n_batches)
        blocks.append(P)
        Bs.append(B)
        ms.append(m)
    return BatchProducts(blocks, ragged, min(Bs), min(ms))


def posterior_covariance(x, y, *, n_batches: int | str | None = None) -> Covariance:
    """Cov(x_k, y_j) under each posterior: x (..., C, T, K), y (..., C, T, J) -> (..., K, J).

    C chains of T draws of one posterior are pooled; leading dims are separate posteriors.
    n_batches: batches per chain (batch_layout). See the module docstring for the estimator."""
    return batch_products(x, y, n_batches=n_batches).covariance()


@dataclass
class Spectrum:
    """Eigen-decomposition of a symmetrised susceptibility (K, K): values (K,) descending, their
    Monte Carlo standard errors se (K,), vectors (K, K) with eigenvector i in column i."""

    values: np.ndarray
    se: np.ndarray
    vectors: np.ndarray


@dataclass
class Exchangeable:
    """A K x K response whose indices are exchangeable (e.g. features under permutations),
    averaged over the permutations: a I + b (1 1^T - I) with a = diagonal (the mean self
    response), b = off_diagonal (the mean cross response); its eigenvalues uniform = a + (K - 1) b
    (the all-ones direction, once) and contrast = a - b (K - 1 times). Each with its Monte Carlo
    standard error (*_se, batch means), averaged over the posteriors like the matrix."""

    diagonal: float
    diagonal_se: float
    off_diagonal: float
    off_diagonal_se: float
    uniform: float
    uniform_se: float
    contrast: float
    contrast_se: float


def exchangeable_parts(values: np.ndarray) -> np.ndarray:
    """(diagonal mean, off-diagonal mean, uniform, contrast) of square matrices (..., K, K) -> (..., 4)."""
    K = values.shape[-1]
    trace = np.trace(values, axis1=-2, axis2=-1)
    a = trace / K
    b = (values.sum((-2, -1)) - trace) / (K * (K - 1)) if K > 1 else np.zeros_like(a)
    return np.stack([a, b, a + (K - 1) * b, a - b], -1)


def exchangeable(products: BatchProducts, factor: np.ndarray) -> Exchangeable:
    """Exchangeable summary of factor * covariance (factor (...,) per posterior, e.g. -n beta_lik)."""
    value, se = products.mean_and_se(exchangeable_parts)  # (..., 4)
    mean, mc_se, _ = averaged(factor[..., None] * value, np.abs(factor)[..., None] * se, q_dims=1)
    return Exchangeable(*(float(v) for pair in zip(mean, mc_se) for v in pair))


@dataclass
class Susceptibility:
    """chi[k, j] = d/dh E_h[phi_k] for perturbation j (module docstring), averaged over posteriors.

    chi, se (K, J): mean over posteriors and its Monte Carlo error (batch means);
    chi_each, se_each (..., K, J): per posterior; se_between (K, J): std / sqrt(S) across the
    S posteriors (data-set spread plus Monte Carlo error), None when S = 1; scale (...,): each
    posterior's n beta_lik; n_batches per chain of batch_size draws; spectrum where K = J;
    symmetric: the Exchangeable summary where asked for (K = J, exchangeable indices)."""

    chi: np.ndarray
    se: np.ndarray
    chi_each: np.ndarray
    se_each: np.ndarray
    se_between: np.ndarray | None
    scale: np.ndarray
    n_batches: int
    batch_size: int
    spectrum: Spectrum | None
    symmetric: Exchangeable | None = None


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


def averaged(value: np.ndarray, se: np.ndarray, q_dims: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean over the posteriors (S..., Q...) -> (Q...), Q the last q_dims dims, its Monte Carlo
    error sqrt(sum se^2) / S and the spread std / sqrt(S) across them (None when S = 1)."""
    q = value.shape[value.ndim - q_dims:]
    v, s = value.reshape((-1,) + q), se.reshape((-1,) + q)
    S = v.shape[0]
    between = v.std(0, ddof=1) / math.sqrt(S) if S >= 2 else None
    return v.mean(0), np.sqrt((s**2).sum(0)) / S, between


def susceptibility(phi, dL, n, beta_lik: float = 1.0, *, n_batches: int | str | None = None,
                   exchangeable_indices: bool = False) -> Susceptibility:
    """Susceptibilities chi = -n beta_lik Cov(phi, dL) from posterior draws (docs/SPEC.md section 7).

    phi (..., C, T, K): K observables at T draws of C chains of each posterior; dL (..., C, T, J):
    L'_n - L_n of J perturbations at the same draws (or lists of S posteriors, phi[s] (C_s, T_s, K),
    dL[s] (C_s, T_s, J)); n: sample size, a number or an array broadcasting to the posteriors'
    dims ((...) or (S,)); n_batches: batches per chain (batch_layout); exchangeable_indices:
    phi_k and perturbation k are exchangeable in k (K = J), so the Exchangeable summary is
    added. Returns a Susceptibility with the spectrum where K = J.
    """
    products = batch_products(phi, dL, n_batches=n_batches)
    cov = products.covariance()
    scale = _scale(n, beta_lik, products.posteriors)
    chi_each, se_each = -scale[..., None, None] * cov.value, scale[..., None, None] * cov.se
    chi, se, between = averaged(chi_each, se_each)
    K, J = chi.shape
    square = K == J
    if exchangeable_indices and not square:
        raise ValueError(f"exchangeable_indices needs as many observables as perturbations, got {K} and {J}")
    return Susceptibility(chi, se, chi_each, se_each, between, scale, cov.n_batches, cov.batch_size,
                          _spectrum(chi, products, scale) if square else None,
                          exchangeable(products, -scale) if exchangeable_indices else None)


def _spectrum(chi: np.ndarray, products: BatchProducts, scale: np.ndarray) -> Spectrum:
    """Eigenvalues of (chi + chi^T) / 2, descending; each one's error from the batch means of
    v_i^T P v_i, the projection on its eigenvector of every batch's products."""
    values, vectors = np.linalg.eigh((chi + chi.T) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    _, se = products.mean_and_se(lambda P: np.einsum("ki,...kj,ji->...i", vectors, P, vectors))  # (..., K)
    _, mc_se, _ = averaged(-scale[..., None] * se, scale[..., None] * se, q_dims=1)  # only the error is used
    return Spectrum(values, mc_se, vectors)
