"""MCMC diagnostics: split R-hat and effective sample size, vectorised over any leading dims.

Definitions follow Gelman et al., Bayesian Data Analysis (3rd ed., section 11.4-11.5) and
Vehtari et al. (2021), written from the formulas:
- split R-hat: every chain is cut in half (2m chains of n//2 draws); with W the mean
  within-chain variance and B/n the variance of the chain means,
  R-hat = sqrt(((n-1)/n W + B/n) / W). Near 1 when the chains agree.
- ESS: autocorrelation rho_t of all (split) chains together,
  rho_t = 1 - (W - mean_chains(acov_t)) / var_plus, summed with Geyer's initial positive
  and monotone sequence on pair sums P_k = rho_{2k} + rho_{2k+1}; ESS = m n / tau with
  tau = -1 + 2 sum_k P_k. For an AR(1) series with coefficient phi, ESS -> N (1-phi)/(1+phi).

Arrays are numpy (or torch, converted) of shape (..., chains, draws).
"""
from __future__ import annotations

import numpy as np


def _as_np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"samples must have shape (..., chains, draws), got {x.shape}")
    if x.shape[-1] < 4:
        raise ValueError(f"need at least 4 draws per chain, got {x.shape[-1]}")
    return x


def _split(x: np.ndarray) -> np.ndarray:
    """(..., m, n) -> (..., 2m, n//2): the first and second half of every chain."""
    h = x.shape[-1] // 2
    return np.concatenate([x[..., :h], x[..., x.shape[-1] - h :]], axis=-2)


def split_rhat(x) -> np.ndarray:
    """Split R-hat of samples (..., chains, draws) -> (...). NaN where W = 0 (constant)."""
    x = _split(_as_np(x))
    n = x.shape[-1]
    means = x.mean(-1)
    W = x.var(-1, ddof=1).mean(-1)
    B_over_n = means.var(-1, ddof=1)
    var_plus = (n - 1) / n * W + B_over_n
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(var_plus / W)


def autocovariance(x) -> np.ndarray:
    """Biased autocovariance of each series along the last axis, by FFT: (..., n) -> (..., n)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    xc = x - x.mean(-1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(xc, size, axis=-1)
    return np.fft.irfft(f * np.conj(f), size, axis=-1)[..., :n] / n


def ess(x, split: bool = True) -> np.ndarray:
    """Effective sample size of samples (..., chains, draws) -> (...), over all chains.

    NaN where the samples are constant (no variance). With split=True the chains are split
    in half first (as for split R-hat), which makes ESS sensitive to drift within a chain.
    """
    x = _as_np(x)
    if split:
        x = _split(x)
    m, n = x.shape[-2:]
    acov = autocovariance(x)  # (..., m, n)
    W = acov[..., 0].mean(-1) * n / (n - 1)
    var_plus = W * (n - 1) / n
    if m > 1:
        var_plus = var_plus + x.mean(-1).var(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (W[..., None] - acov.mean(-2)) / var_plus[..., None]  # (..., n)
    rho[..., 0] = 1.0
    npairs = n // 2
    P = rho[..., : 2 * npairs].reshape(rho.shape[:-1] + (npairs, 2)).sum(-1)  # (..., npairs)
    # Geyer: keep the initial run of positive pair sums, then force them monotone
    positive = np.cumprod(P > 0, axis=-1).astype(bool)
    P = np.minimum.accumulate(np.where(positive, P, np.inf), axis=-1)
    P = np.where(positive, P, 0.0)
    tau = -1.0 + 2.0 * P.sum(-1)
    tau = np.maximum(tau, 1.0 / np.log10(m * n + 10))  # Stan's cap on antithetic chains
    with np.errstate(invalid="ignore"):
        out = m * n / tau
    return np.where(np.isfinite(W) & (W > 0), out, np.nan)


def mean_and_se(x) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean of samples (..., chains, draws) and its MCMC standard error sd/sqrt(ESS)."""
    x = _as_np(x)
    flat = x.reshape(x.shape[:-2] + (-1,))
    return flat.mean(-1), flat.std(-1, ddof=1) / np.sqrt(ess(x))


def phase_diagnostics(values, labels, min_share: float = 0.8) -> dict[str, dict]:
    """Diagnostics per phase for chains that stay in one phase.

    values (chains, draws, p) summary parameters; labels (chains, draws) phase labels.
    A chain belongs to phase P when at least `min_share` of its draws are labelled P (a
    classifier flickers at the edge of a phase); its draws are then used whole. For each
    phase held by >= 2 chains: {'chains': k, 'max_rhat': max over parameters of split R-hat,
    'min_ess': min over parameters of ESS}; with 1 chain only {'chains': 1}.
    Under key '_mixed', the number of chains that belong to no phase.
    """
    v = _as_np(np.moveaxis(np.asarray(values, dtype=np.float64), -1, 0))  # (p, chains, draws)
    labels = np.asarray(labels)
    if labels.shape != v.shape[1:]:
        raise ValueError(f"labels must be (chains, draws) = {v.shape[1:]}, got {labels.shape}")
    phases = np.unique(labels)
    share = np.stack([(labels == p).mean(-1) for p in phases], -1)  # (chains, P)
    best = share.argmax(-1)
    pure = share.max(-1) >= min_share
    out: dict[str, dict] = {"_mixed": {"chains": int((~pure).sum())}}
    for i, lab in enumerate(phases):
        sel = pure & (best == i)
        k = int(sel.sum())
        if k == 0:
            continue
        entry: dict = {"chains": k}
        if k >= 2:
            vs = v[:, sel]
            rh, es = split_rhat(vs), ess(vs)
            entry["max_rhat"] = float(np.nanmax(rh)) if np.isfinite(rh).any() else float("nan")
            entry["min_ess"] = float(np.nanmin(es)) if np.isfinite(es).any() else float("nan")
        out[str(lab)] = entry
    return out
