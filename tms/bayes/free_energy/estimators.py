"""Estimators of the free-energy measurement (numpy, no sampling; docs/SPEC.md section 3):
phase fractions per ladder, families, -log mass ratios with their delta-method errors,
pooling over data sets, the weighted fit of the free-energy form, the WBIC slope lambda and
the crossing of a difference."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tms.core import io
from tms.theory import zoo


class Record:
    """Base of the free-energy result records (dataclasses): as_record() gives the fields as
    JSON (arrays as lists, records within as their records), leaving out the fields named in
    OPTIONAL while they are None; from_record builds one back from it (a saved summary's,
    arrays as lists)."""

    OPTIONAL: tuple = ()

    def as_record(self) -> dict:
        return {f.name: io.jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not (f.name in self.OPTIONAL and getattr(self, f.name) is None)}

    @classmethod
    def from_record(cls, record: dict):
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record})


class Pooled(NamedTuple):
    """Per-data-set differences pooled: mean, its s.e. (the larger of the two below), the
    across-data-set s.e. and the Monte Carlo s.e."""

    mean: float
    se: float
    se_between: float
    se_mc: float


@dataclass(frozen=True)
class FreeEnergyFit(Record):
    """A weighted fit of F(alpha) - F(beta) = n dL + dlambda log n + dc (fit_free_energy):
    dlambda and dc with standard errors (inflated by the Birge ratio sqrt(chi2 / dof) when it
    exceeds 1) and their correlation, chi2, dof, the Birge ratio, the points used."""

    dlam: float
    dlam_se: float
    dc: float
    dc_se: float
    corr: float
    chi2: float
    dof: int
    birge: float
    n_points: int


@dataclass(frozen=True)
class WbicLambda(Record):
    """lambda_Bayes from a tempered ladder (wbic_lambda): the slope lam with its jackknife s.e.,
    the slots used, and per data set (G) and slot (K): mean E_beta[E | phase], count of
    in-phase draws, x = 1/beta, frac, the in-phase fraction."""

    lam: float
    se: float
    slots_used: int
    mean: np.ndarray
    count: np.ndarray
    x: np.ndarray
    frac: np.ndarray


def ladder_fractions(labels: np.ndarray, phases: list[str]) -> np.ndarray:
    """Phase fractions per ladder: labels (T, ...) (draws first) -> (..., P)."""
    return np.stack([(labels == p).mean(0) for p in phases], -1)


def family(label: str) -> str | None:
    """'5-family' for a label with k = 5 and no switched-off vertex ('5', '5+'), else None."""
    try:
        k, s, p = zoo.parse_label(label)
    except ValueError:
        return None
    return f"{k}-family" if p == 0 else None


def group_fractions(frac: np.ndarray, phases: list[str]) -> tuple[np.ndarray, list[str]]:
    """frac (..., P) -> (..., P + F) with the F families of two or more members appended
    (sums of their members)."""
    fam = [family(p) for p in phases]
    fams = sorted({f for f in fam if f and fam.count(f) >= 2}, key=lambda f: -int(f.split("-")[0]))
    cols = [frac[..., [i for i, p in enumerate(phases) if family(p) == f]].sum(-1) for f in fams]
    return np.concatenate([frac] + [c[..., None] for c in cols], -1), list(phases) + fams


def log_mass_ratio(frac: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """F(i) - F(j) = -log(P_i / P_j) per data set, with its delta-method error over ladders.

    frac (S, R, P) phase fractions of S data sets x R independent ladders. Returns (S,)
    differences and (S,) standard errors: Var = V_ii/P_i^2 + V_jj/P_j^2 - 2 V_ij/(P_i P_j),
    V the covariance of the ladder means (/R). NaN where either mass is 0; error NaN if R < 2.
    """
    Pi, Pj = frac[..., i].mean(-1), frac[..., j].mean(-1)
    R = frac.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        dF = np.where((Pi > 0) & (Pj > 0), -np.log(Pi / Pj), np.nan)
        if R < 2:
            return dF, np.full_like(dF, np.nan)
        fi, fj = frac[..., i] - Pi[:, None], frac[..., j] - Pj[:, None]
        vii, vjj, vij = ((fi * fi).sum(-1), (fj * fj).sum(-1), (fi * fj).sum(-1))
        var = (vii / Pi**2 + vjj / Pj**2 - 2 * vij / (Pi * Pj)) / (R * (R - 1))
    return dF, np.where(np.isfinite(dF), np.sqrt(np.maximum(var, 0.0)), np.nan)


def pool(dF: np.ndarray, se: np.ndarray) -> Pooled:
    """Pool per-data-set differences (S,): (mean, s.e., across-data-set s.e., Monte Carlo s.e.).

    s.e. = max(across-data-set, Monte Carlo): the first holds the data-set variability of
    F_n (what the asymptotic formula averages over) but has S - 1 degrees of freedom only.
    NaN when any data set lacks one of the two phases."""
    S = dF.shape[0]
    if S == 0 or not np.isfinite(dF).all():
        return Pooled(math.nan, math.nan, math.nan, math.nan)
    mc = float(np.sqrt((se**2).sum()) / S) if np.isfinite(se).all() else math.nan
    between = float(dF.std(ddof=1) / math.sqrt(S)) if S >= 2 else math.nan
    return Pooled(float(dF.mean()), float(np.nanmax([mc, between])), between, mc)


def fit_free_energy(ns, dF, se, dL: float, dlam: float | None = None, offset=None) -> FreeEnergyFit:
    """Weighted least squares of y = dF - offset - n dL on dlambda log n + dc (SPEC 3 form).

    ns, dF, se (N,): the n-grid, measured F(alpha) - F(beta) and its error; offset (N,) a
    known n-dependent part to subtract first (e.g. the data term), default 0. dlam given:
    only dc is fitted (dlam_se 0). NaN if too few points.
    """
    ns, dF, se = (np.asarray(v, dtype=float) for v in (ns, dF, se))
    off = np.zeros_like(dF) if offset is None else np.asarray(offset, dtype=float)
    ok = np.isfinite(dF) & np.isfinite(se) & (se > 0) & np.isfinite(off)
    k = 1 if dlam is not None else 2
    nan = dict(dlam=math.nan, dlam_se=math.nan, dc=math.nan, dc_se=math.nan, corr=math.nan, chi2=math.nan,
               dof=0, birge=math.nan, n_points=int(ok.sum()))
    if ok.sum() < k:
        return FreeEnergyFit(**nan)
    y = dF[ok] - off[ok] - ns[ok] * dL - (0.0 if dlam is None else dlam * np.log(ns[ok]))
    X = np.ones((int(ok.sum()), 1)) if dlam is not None else np.stack([np.log(ns[ok]), np.ones(int(ok.sum()))], 1)
    w = 1.0 / se[ok] ** 2
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    beta = cov @ X.T @ (w * y)
    chi2, dof = float((w * (y - X @ beta) ** 2).sum()), int(ok.sum()) - k
    birge = math.sqrt(chi2 / dof) if dof > 0 else math.nan
    cov = cov * max(1.0, birge if dof > 0 else 1.0) ** 2
    out = dict(nan, chi2=chi2, dof=dof, birge=birge)
    if dlam is None:
        out.update(dlam=float(beta[0]), dlam_se=float(math.sqrt(cov[0, 0])), dc=float(beta[1]),
                   dc_se=float(math.sqrt(cov[1, 1])), corr=float(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])))
    else:
        out.update(dlam=float(dlam), dlam_se=0.0, dc=float(beta[0]), dc_se=float(math.sqrt(cov[0, 0])))
    return FreeEnergyFit(**out)


def _wbic_fit(S1: np.ndarray, N: np.ndarray, x: np.ndarray, use: np.ndarray) -> float:
    """Common slope of per-slot means S1/N (G, K) on x (G, K) with one intercept per row
    (data set), weights N / x^2 (Var E_beta[nL] ~ lambda / beta^2), slots `use` (G, K) only."""
    w = np.where(use & (N > 0), N / x**2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(N > 0, S1 / np.maximum(N, 1), 0.0)
        xb = (w * x).sum(-1, keepdims=True) / w.sum(-1, keepdims=True)
        yb = (w * y).sum(-1, keepdims=True) / w.sum(-1, keepdims=True)
    xc, yc = np.nan_to_num(x - xb), np.nan_to_num(y - yb)
    den = (w * xc * xc).sum()
    return float((w * xc * yc).sum() / den) if den > 0 else math.nan


def wbic_lambda(energy, inphase, betas, group, *, min_frac: float = 0.5, min_count: int = 10) -> WbicLambda:
    """Bayesian learning coefficient from a tempered ladder: slope of E_beta[E | phase] in 1/beta.

    energy (T, U, K): the tempered energy E = n L_n at every slot of U ladders; inphase
    (T, U, K) bool: the draw is in the phase; betas (U, K) the ladders' inverse temperatures
    (E is multiplied by beta in the target); group (U,) int: the data set of each ladder (one
    intercept n L_n(w*) per data set). Slots used: in-phase fraction >= min_frac over the
    ladders of a data set and >= min_count draws. Error: jackknife over the U ladders.
    """
    E, m = np.asarray(energy, dtype=float), np.asarray(inphase, dtype=bool)
    betas, group = np.asarray(betas, dtype=float), np.asarray(group)
    gs = sorted(set(group.tolist()))
    S1u, Nu = (E * m).sum(0), m.sum(0).astype(float)  # (U, K)
    Tu = np.full_like(Nu, E.shape[0])
    onehot = np.stack([group == g for g in gs]).astype(float)  # (G, U)
    x = np.stack([1.0 / betas[group == g].mean(0) for g in gs])  # (G, K) (ladders of a data set share betas)

    def est(wu):
        S1, N, T = onehot @ (wu[:, None] * S1u), onehot @ (wu[:, None] * Nu), onehot @ (wu[:, None] * Tu)
        use = (N >= min_count) & (N >= min_frac * T)
        return _wbic_fit(S1, N, x, use), use

    lam, use = est(np.ones(len(group)))
    U = len(group)
    jack = np.array([est(np.arange(U) != u)[0] for u in range(U)]) if U >= 2 else np.array([math.nan])
    se = float(math.sqrt((U - 1) / U * ((jack - jack.mean()) ** 2).sum())) if U >= 2 else math.nan
    N = onehot @ Nu
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(N > 0, (onehot @ S1u) / N, np.nan)
    return WbicLambda(lam=lam, se=se, slots_used=int(use.sum()), mean=mean, count=N, x=x, frac=N / (onehot @ Tu))


def crossing(ns, dF) -> float | None:
    """Where F(alpha) - F(beta) (N,) on the grid ns changes sign from - to + (the last such
    change), interpolated linearly in log n; None if it does not."""
    ns, dF = np.asarray(ns, dtype=float), np.asarray(dF, dtype=float)
    ok = np.isfinite(dF)
    ns, dF = ns[ok], dF[ok]
    idx = [i for i in range(len(dF) - 1) if dF[i] < 0 <= dF[i + 1]]
    if not idx:
        return None
    i = idx[-1]
    t = -dF[i] / (dF[i + 1] - dF[i])
    return float(math.exp(math.log(ns[i]) + t * (math.log(ns[i + 1]) - math.log(ns[i]))))

