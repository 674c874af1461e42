"""The Bayesian influence function (docs/SPEC.md section 7): the posterior covariance of
per-sample losses, BIF(k, l) = -Cov(l_k, l_l), here averaged over groups of samples.

Upweighting sample l by h moves the posterior expectation of l_k by -beta_lik Cov(l_k, l_l) h
(fluctuation-dissipation, tms.bayes.susceptibility), so the BIF says which samples pull the
posterior together (negative: learning one raises the loss of the other less, or lowers it).
Grouped (e.g. by the active feature): for groups a and b the mean over k in a, l in b of
Cov(l_k, l_l) is the covariance of the group-mean losses, and the mean of Corr(l_k, l_l) the
covariance of the group means of z_k = l_k / sd(l_k); both are estimated with the batch means
of tms.bayes.susceptibility.posterior_covariance, so every entry has a Monte Carlo error.
Generic: per-sample losses (..., C, T, N) of C chains of T draws, leading dims independent
posteriors (data sets), whose matrices are averaged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tms.bayes.susceptibility import (BatchProducts, Exchangeable, as_draws, averaged, batch_layout, batch_products,
                                      batches, exchangeable)


@dataclass
class Influence:
    """Grouped Bayesian influence, averaged over posteriors (module docstring).

    bif, se (G, G): -mean Cov(l_k, l_l) over k in group a, l in group b, and its Monte Carlo
    error; correlation, correlation_se (G, G): the mean Corr(l_k, l_l) over the same pairs
    (diagonal blocks include k = l); bif_each, correlation_each (..., G, G) per posterior;
    counts (..., G): samples per group (NaN rows and columns where a group is empty);
    symmetric: the BIF's Exchangeable summary where the groups are exchangeable (asked for)."""

    bif: np.ndarray
    se: np.ndarray
    correlation: np.ndarray
    correlation_se: np.ndarray
    bif_each: np.ndarray
    correlation_each: np.ndarray
    counts: np.ndarray
    symmetric: Exchangeable | None = None


def group_means(losses: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss of each group: losses (..., C, T, N), groups (..., N) ints in [0, G) ->
    (..., C, T, G) (NaN for an empty group) and counts (..., G)."""
    onehot = (groups[..., None] == np.arange(n_groups)).astype(np.float64)  # (..., N, G)
    counts = onehot.sum(-2)
    sums = losses @ onehot[..., None, :, :]  # (..., C, T, N) @ (..., 1, N, G): BLAS, not einsum's loop
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[..., None, None, :], counts


def _groups(groups, n_samples: int, lead: tuple[int, ...], n_groups: int) -> np.ndarray:
    """The group of every sample broadcast to (..., N), checked against n_groups."""
    groups = np.arange(n_samples) if groups is None else np.asarray(groups)
    if not np.issubdtype(groups.dtype, np.integer) or (groups < 0).any():
        raise ValueError(f"groups must hold non-negative integer group ids, got dtype {groups.dtype}")
    try:
        groups = np.broadcast_to(groups, lead + (n_samples,))
    except ValueError:
        raise ValueError(f"groups must broadcast to (..., N) = {lead + (n_samples,)}, got {groups.shape}") from None
    if groups.max() >= n_groups:
        raise ValueError(f"groups must lie in [0, n_groups = {n_groups}), got {int(groups.max())}")
    return groups


def _standardised(losses: np.ndarray, n_batches: int | str | None) -> np.ndarray:
    """l_k / sd(l_k), sd over the pooled draws the covariance uses (ddof 1, as its N / (N - 1));
    0 where a loss does not vary (its correlations are undefined and counted as 0)."""
    C, T = losses.shape[-3:-1]
    B, m = batch_layout(T, C, n_batches)
    used = batches(losses, B, m)  # (..., C, B, m, N)
    flat = used.reshape(used.shape[:-4] + (-1, used.shape[-1]))
    sd = flat.std(-2, ddof=1)[..., None, None, :]  # (..., 1, 1, N)
    return np.divide(losses, sd, out=np.zeros_like(losses), where=sd > 0)


def _blocks(losses, groups, n_groups: int | None) -> tuple[list[np.ndarray], list, int, bool]:
    """The posteriors as blocks (an array, or each of a list), their groups, G and raggedness."""
    ragged = isinstance(losses, (list, tuple))
    blocks = [as_draws(v, "losses") for v in (losses if ragged else [losses])]
    if ragged and (not blocks or any(v.ndim != 3 for v in blocks)):
        raise ValueError("losses as a list must hold one (chains, draws, N) array per posterior")
    per_block = list(groups) if ragged and groups is not None else [groups] * len(blocks)
    if len(per_block) != len(blocks):
        raise ValueError(f"groups must give one array per posterior ({len(blocks)}), got {len(per_block)}")
    if n_groups is None:
        n_groups = max(v.shape[-1] if g is None else int(np.max(g)) + 1 for v, g in zip(blocks, per_block))
    return blocks, per_block, int(n_groups), ragged


def influence(losses, groups=None, n_groups: int | None = None, *, n_batches: int | str | None = None,
              exchangeable_groups: bool = False) -> Influence:
    """Grouped Bayesian influence function of per-sample losses (docs/SPEC.md section 7).

    losses (..., C, T, N): the loss of each of N samples at T draws of C chains of each
    posterior (leading dims: independent posteriors), or a list of S posteriors (C_s, T_s, N_s);
    groups (..., N) or (N,) (a list of (N_s,) with a list of losses): group id of every sample
    (default: every sample its own group, memory ~ C B N^2); n_groups: G (default max id + 1);
    n_batches: batches per chain (tms.bayes.susceptibility.batch_layout); exchangeable_groups:
    add the Exchangeable summary of the BIF (e.g. groups = features).
    """
    blocks, per_block, G, ragged = _blocks(losses, groups, n_groups)
    means, zmeans, counts = [], [], []
    for v, g in zip(blocks, per_block):
        g = _groups(g, v.shape[-1], v.shape[:-3], G)
        m, cnt = group_means(v, g, G)
        means.append(m)
        zmeans.append(group_means(_standardised(v, n_batches), g, G)[0])
        counts.append(cnt)
    cov = _products_with_gaps(means, ragged, n_batches)
    corr = _products_with_gaps(zmeans, ragged, n_batches)
    (cov_value, cov_se), (corr_value, corr_se) = cov.mean_and_se(), corr.mean_and_se()
    bif, se, _ = averaged(-cov_value, cov_se)
    correlation, correlation_se, _ = averaged(corr_value, corr_se)
    symmetric = exchangeable(cov, -np.ones(cov.posteriors)) if exchangeable_groups else None
    return Influence(bif, se, correlation, correlation_se, -cov_value, corr_value,
                     np.stack(counts) if ragged else counts[0], symmetric)


def _products_with_gaps(means: list[np.ndarray], ragged: bool, n_batches: int | str | None) -> BatchProducts:
    """batch_products of group means (..., C, T, G) with themselves (a list of posteriors when
    ragged, else its one array); NaN wherever a group is empty."""
    clean = [np.nan_to_num(m) for m in means]
    products = batch_products(clean if ragged else clean[0], clean if ragged else clean[0], n_batches=n_batches)
    for block, m in zip(products.blocks, means):
        empty = np.isnan(m).any((-3, -2))  # (..., G)
        gap = (empty[..., :, None] | empty[..., None, :])[..., None, :, :]  # (..., 1, G, G)
        block[np.broadcast_to(gap.reshape(block.shape[:-3] + gap.shape[-3:]), block.shape)] = np.nan
    return products
