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

Rank-normalised diagnostics (Vehtari, Gelman, Simpson, Carpenter, Buerkner 2021), equal to
ArviZ 0.23 (``az.rhat``, ``az.ess(method="bulk"|"tail")``, ``az.mcse``) to rounding, but
vectorised over any leading batch dims (tests/samplers/test_diagnostics.py compares them):
- ``rhat``: split the chains, replace every draw by the normal score of its rank over all
  draws (Blom's offset 3/8), take the classic R-hat of those z-scores and of the z-scores of
  |x - median|, and report the larger (bulk and tail). Catches a stuck chain whose mean
  is right but whose spread is not, and heavy tails where plain R-hat says 1.
- ``ess_bulk``: ESS of the rank z-scores of the split chains; ``ess_tail``: the smaller ESS
  of the indicators x <= q5 and x <= q95 (a chain at a larger scale has few effective
  draws in the tails); ``mcse_mean``: sd / sqrt(split ESS of x).
Their ESS uses ArviZ's Geyer truncation exactly (``_geyer_ess``), which differs in the
last pair's treatment from ``ess`` above (about 2% on short chains).

Arrays are numpy (or torch, converted) of shape (..., chains, draws).
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


def _ranks(flat: np.ndarray) -> np.ndarray:
    """Ranks 1..N over the last axis with ties averaged (scipy.stats.rankdata's "average",
    the same numbers): (..., N) -> (..., N) float, NaN over a row holding a NaN."""
    order = np.argsort(flat, axis=-1)  # any order among ties: their ranks are averaged
    s = np.take_along_axis(flat, order, -1)
    new = np.ones(flat.shape, dtype=bool)
    new[..., 1:] = s[..., 1:] != s[..., :-1]  # a tie group starts
    end = np.ones(flat.shape, dtype=bool)
    end[..., :-1] = new[..., 1:]
    idx = np.arange(flat.shape[-1])
    first = np.maximum.accumulate(np.where(new, idx, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(end, idx, flat.shape[-1]), -1), axis=-1), -1)
    out = np.empty(flat.shape)
    np.put_along_axis(out, order, (first + last) / 2 + 1, -1)
    return np.where(np.isnan(flat).any(-1, keepdims=True), np.nan, out)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks over the last two axes jointly (ties averaged): same shape."""
    from scipy import special  # loaded where R-hat is computed, not with tms

    flat = x.reshape(x.shape[:-2] + (-1,))
    return special.ndtri((_ranks(flat) - 0.375) / (flat.shape[-1] + 0.25)).reshape(x.shape)  # = norm.ppf


def _classic_rhat(x: np.ndarray) -> np.ndarray:
    """R-hat of (..., m, n) without splitting: sqrt((B/W + n - 1) / n), B = n var(chain means)."""
    n = x.shape[-1]
    W = x.var(-1, ddof=1).mean(-1)
    B = n * x.mean(-1).var(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((B / W + n - 1) / n)


def _geyer_ess(x: np.ndarray) -> np.ndarray:
    """ESS of (..., m, n) over all chains (no splitting), ArviZ's estimator in batched form.

    Pair sums P_k = rho_2k + rho_2k+1 (k < (n-1)//2) are summed up to the first P_L <= 0
    (or the last pair), made monotone by a running minimum; rho_2L is added when it is
    positive (always when the sequence ran out). tau = -1 + 2 sum_{k<L} P_k + that term.
    """
    m, n = x.shape[-2:]
    acov = autocovariance(x)
    mean_var = acov[..., 0].mean(-1) * n / (n - 1)
    var_plus = mean_var * (n - 1) / n + (x.mean(-1).var(-1, ddof=1) if m > 1 else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[..., None] - acov.mean(-2)) / var_plus[..., None]
    rho[..., 0] = 1.0
    K = max((n - 1) // 2, 1)
    P = rho[..., 0 : 2 * K : 2] + rho[..., 1 : 2 * K : 2]  # (..., K)
    nonpos = P <= 0
    last = np.where(nonpos.any(-1), nonpos.argmax(-1), K - 1)  # L: the last pair looked at
    before = np.arange(K) < last[..., None]
    mono = np.minimum.accumulate(np.where(np.isnan(P), np.inf, P), axis=-1)
    rho_even = np.take_along_axis(rho, 2 * last[..., None], -1)[..., 0]
    P_last = np.take_along_axis(P, last[..., None], -1)[..., 0]
    extra = np.where(P_last >= 0, rho_even, np.maximum(rho_even, 0.0))
    tau = -1.0 + 2.0 * np.where(before, mono, 0.0).sum(-1) + extra
    tau = np.maximum(tau, 1.0 / np.log10(m * n))
    out = np.where(np.isnan(rho[..., : 2 * K]).any(-1), np.nan, m * n / tau)
    constant = (x.max((-2, -1)) - x.min((-2, -1))) < np.finfo(float).resolution
    return np.where(constant, float(m * n), out)


def _nan_where_invalid(x: np.ndarray, value: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x).any((-2, -1)), np.nan, value)


def rhat(x) -> np.ndarray:
    """Rank-normalised split R-hat of samples (..., chains, draws) -> (...) (az.rhat).

    max(bulk, tail): classic R-hat of the rank z-scores of the split chains and of the
    z-scores of |x - median|. NaN with one chain (ArviZ needs 2) or a NaN draw.
    """
    x = _as_np(x)
    if x.shape[-2] < 2:
        return np.full(x.shape[:-2], np.nan)
    s = _split(x)
    return _nan_where_invalid(x, _rhat_of_split(s, _z_scale(s)))


def _rhat_of_split(s: np.ndarray, z: np.ndarray) -> np.ndarray:
    """rhat's value from the split chains s and their rank z-scores z (both (..., 2m, n))."""
    med = np.median(s.reshape(s.shape[:-2] + (-1,)), -1)[..., None, None]
    return np.maximum(_classic_rhat(z), _classic_rhat(_z_scale(np.abs(s - med))))


def ess_bulk(x) -> np.ndarray:
    """Bulk ESS of samples (..., chains, draws) -> (...): ESS of the split chains' rank z-scores."""
    x = _as_np(x)
    return _nan_where_invalid(x, _geyer_ess(_z_scale(_split(x))))


def rank_diagnostics(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rhat, ess_bulk, ess_tail) of samples (..., chains, draws), each (...), the three
    functions' numbers with the split chains' rank z-scores computed once."""
    x = _as_np(x)
    s = _split(x)
    z = _z_scale(s)
    rh = _rhat_of_split(s, z) if x.shape[-2] >= 2 else np.full(x.shape[:-2], np.nan)
    return _nan_where_invalid(x, rh), _nan_where_invalid(x, _geyer_ess(z)), ess_tail(x)


def ess_tail(x, prob: tuple[float, float] = (0.05, 0.95)) -> np.ndarray:
    """Tail ESS of samples (..., chains, draws) -> (...): min ESS of 1[x <= q] at q_0.05, q_0.95."""
    x = _as_np(x)
    flat = x.reshape(x.shape[:-2] + (-1,))
    out = []
    for p in prob:  # two quantiles, not a loop over items
        q = np.quantile(flat, p, axis=-1)[..., None, None]  # type 7, as ArviZ (R's default)
        out.append(_geyer_ess(_split((x <= q).astype(np.float64))))
    return _nan_where_invalid(x, np.minimum(*out))


def mcse_mean(x) -> np.ndarray:
    """Monte Carlo s.e. of the mean of samples (..., chains, draws) -> (...) (az.mcse)."""
    x = _as_np(x)
    flat = x.reshape(x.shape[:-2] + (-1,))
    return _nan_where_invalid(x, flat.std(-1, ddof=1) / np.sqrt(_geyer_ess(_split(x))))


def mean_and_se(x) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean of samples (..., chains, draws) and its MCMC standard error sd/sqrt(ESS)."""
    x = _as_np(x)
    flat = x.reshape(x.shape[:-2] + (-1,))
    return flat.mean(-1), flat.std(-1, ddof=1) / np.sqrt(ess(x))


# Vehtari et al. (2021): rank-normalised R-hat above this means the chains have not converged. The one
# convergence threshold of the lab; the LLC's coarser flag on its SGLD loss traces is
# tms.llc.result.RHAT_GROSS (gross disagreement), a different test.
RHAT_MAX = 1.01
ESS_MIN = 100  # bulk or tail ESS below this: too few effective draws for a reliable mean or quantile


def failing(values: dict) -> list[str]:
    """The names in `values` whose diagnostic fails: an R-hat (name starting "rhat") above
    RHAT_MAX, any other (an ESS) below ESS_MIN; a diagnostic that could not be computed (None,
    NaN: too few draws, constant draws) fails too, as "NAME undefined": a missing diagnostic
    is never a pass."""
    def undefined(v):
        return v is None or not np.isfinite(v)

    def bad(name, v):
        return bool(v > RHAT_MAX if name.startswith("rhat") else v < ESS_MIN)
    return [f"{name} undefined" if undefined(v) else name for name, v in values.items()
            if undefined(v) or bad(name, v)]


@dataclass(frozen=True)
class ChainGroupDiagnostics:
    """The rank diagnostics of the chains that hold one phase, worst over the summary
    parameters: max R-hat, min bulk and tail ESS, and which of 'rhat' (> RHAT_MAX), 'ess_bulk',
    'ess_tail' (< ESS_MIN) fail. With one chain only `chains` is known (the rest None)."""

    chains: int
    max_rhat: float | None = None
    min_ess_bulk: float | None = None
    min_ess_tail: float | None = None
    flags: tuple[str, ...] = ()

    def as_record(self) -> dict:
        """JSON-ready: chains, max_rhat, min_ess (= min_ess_bulk), min_ess_bulk, min_ess_tail,
        flags; only chains with one chain."""
        if self.chains < 2:
            return {"chains": self.chains}
        return {"chains": self.chains, "max_rhat": self.max_rhat, "min_ess": self.min_ess_bulk,
                "min_ess_bulk": self.min_ess_bulk, "min_ess_tail": self.min_ess_tail, "flags": list(self.flags)}


@dataclass(frozen=True)
class PhaseDiagnostics:
    """Per phase label, the diagnostics of the chains that stay in it; `mixed`: the chains
    that belong to no phase."""

    phases: dict[str, ChainGroupDiagnostics] = field(default_factory=dict)
    mixed: int = 0

    def as_record(self) -> dict:
        """JSON-ready: {'_mixed': {'chains': mixed}, label: ChainGroupDiagnostics.as_record(), ...}."""
        return {"_mixed": {"chains": self.mixed}, **{lab: g.as_record() for lab, g in self.phases.items()}}


def phase_diagnostics(values, labels, min_share: float = 0.8) -> PhaseDiagnostics:
    """Diagnostics per phase for chains that stay in one phase.

    values (chains, draws, p) summary parameters; labels (chains, draws) phase labels.
    A chain belongs to phase P when at least `min_share` of its draws are labelled P (a
    classifier flickers at the edge of a phase); its draws are then used whole. Every phase
    some chain holds gets a ChainGroupDiagnostics (its numbers with >= 2 chains).
    """
    v = _as_np(np.moveaxis(np.asarray(values, dtype=np.float64), -1, 0))  # (p, chains, draws)
    labels = np.asarray(labels)
    if labels.shape != v.shape[1:]:
        raise ValueError(f"labels must be (chains, draws) = {v.shape[1:]}, got {labels.shape}")
    phases = np.unique(labels)
    share = np.stack([(labels == p).mean(-1) for p in phases], -1)  # (chains, P)
    best = share.argmax(-1)
    pure = share.max(-1) >= min_share
    groups = {}
    for i, lab in enumerate(phases):
        sel = pure & (best == i)
        k = int(sel.sum())
        if k == 0:
            continue
        groups[str(lab)] = _chain_group_diagnostics(v[:, sel]) if k >= 2 else ChainGroupDiagnostics(1)
    return PhaseDiagnostics(groups, int((~pure).sum()))


def _chain_group_diagnostics(v: np.ndarray) -> ChainGroupDiagnostics:
    """rank R-hat, bulk and tail ESS of (p, k, draws), worst over the p parameters, and flags."""
    def worst(a, fn):
        return float(fn(a)) if np.isfinite(a).any() else float("nan")
    rh, bulk, tail = rank_diagnostics(v)
    rh, bulk, tail = worst(rh, np.nanmax), worst(bulk, np.nanmin), worst(tail, np.nanmin)
    flags = failing({"rhat": rh, "ess_bulk": bulk, "ess_tail": tail})
    return ChainGroupDiagnostics(v.shape[1], rh, bulk, tail, tuple(flags))
