"""Measured free energies of the phases (SPEC 3): why the posterior crosses where it does.

The lab predicts Bayesian transitions from F_n(alpha) ~ n L_alpha + lambda_alpha log n +
|w*_alpha|^2 / 2 and drops every other O(1) term. This module measures what it drops.

1. Free-energy differences from phase masses. With Z_alpha the posterior integral over
   phase alpha, P_alpha = Z_alpha / Z, so F_n(alpha) - F_n(beta) = -log(P_alpha / P_beta)
   exactly. Masses come from replica exchange over the likelihood temperature (R
   independent ladders per data set, tms.samplers.tempering); the error bar is the delta
   method over the ladders (the covariance of the two masses across ladders); pooled over
   S data sets the estimate is the mean of the per-data-set differences, with standard
   error max(across-data-set s.e., Monte Carlo s.e.) (the first has S - 1 degrees of
   freedom only). Every pair of phases that both hold mass, and families ("5-family" =
   every label with k = 5, p = 0), in two readings of the samples: the zoo classifier
   (tms.theory.phases.classify) and the paper's hull reading (tms.theory.phases.classify_hull).
2. A Bayesian learning coefficient per phase, from the ladder, independent of SGLD: for a
   tempered posterior exp(-beta n L_n) phi restricted to phase alpha, dF/dbeta =
   E_beta[n L_n | alpha] = n L_n(w_alpha) + lambda_alpha / beta + o(1) (the WBIC /
   thermodynamic-integration relation), so E_beta[n L_n | alpha] against 1/beta is a line
   of slope lambda_alpha. Local ladders started at the zoo point and confined to the phase
   by a wall (`restricted`; temperatures beta_lo..1 at one n) give it; the fit has one
   intercept per data set and a jackknife error over the ladders (`wbic_lambda`).
3. The O(1) terms the formula drops, computed (`o1_terms`): the orbit multiplicity m
   (tms.theory.zoo.orbit_multiplicity: -log m), and at smooth minimally singular points the rest
   of the Laplace constant: (1/2) log det'H, the length of the O(2) orbit circle, the prior
   mass of the flat zero-column region (Monte Carlo over the prior) and (1/2) log 2 pi; the
   same volume at finite n (`flat_volume`: the loss rises gently past the flat region, so
   the limit is reached slowly); the data term -log mean_sigma exp(-n (L_n(sigma w*) - L))
   over feature permutations sigma (exact per data set: the posterior picks the copy whose
   empirical loss is lowest, an O(sqrt n) effect). Fits F_n(alpha) - F_n(beta) = n dL +
   dlambda log n + dc over the n-grid (dL from the zoo) give dlambda and dc with standard
   errors (`fit_free_energy`), and constant remainders beyond each level of theory.

Results (tms.core.io): per-n sweep points `fe_c{c}_n{n}`, the local ladders `lambda_c{c}`, the
SGLD estimates `sgld_c{c}`, and the analysis `summary_c{c}` (what the figure and
`report_section` read), all in one folder; finished pieces are skipped when rerun.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tms.core import checks, io
from tms.bayes import posterior
from tms.theory import zoo
from tms.theory.data import sample_inputs
from tms.theory.loss import (SortedData, empirical_loss_sorted, flatten_params, population_loss, sorted_data, stack_sorted,
                      unflatten_params)
from tms.theory.phases import classify, classify_hull
from tms.core import rng
from tms.samplers import tempering

QUICK = dict(seeds=4, replicas=4, n_temps=10, beta_min=0.01, n_warmup=60, n_draws=120, max_steps=32)
PAPER = dict(seeds=8, replicas=8, n_temps=12, beta_min=0.005, n_warmup=200, n_draws=600, max_steps=48)
LAMBDA_QUICK = dict(n=1000, seeds=2, replicas=3, n_temps=5, beta_lo=0.25, n_warmup=40, n_draws=80, max_steps=32)
LAMBDA_PAPER = dict(n=2000, seeds=4, replicas=6, n_temps=8, beta_lo=0.2, n_warmup=150, n_draws=500, max_steps=48)
SGLD_QUICK = dict(n=1000, n_chains=8, n_burnin=4000, n_draws=4000)
QUICK_NS = {6: [200, 300, 400, 500, 650], 5: [100, 150, 200, 300, 400], 4: [100, 150, 200, 300, 400]}
PAIRS = {6: [("5-family", "6"), ("5", "6")], 5: [("4-family", "5"), ("4", "5")], 4: [("3-family", "4")]}
MIN_MASS = 0.01  # a phase "holds mass" at n when its pooled mass reaches this
MAX_PERM_C = 8  # the data term enumerates all c! permutations up to this c


# ---- estimators (numpy, no sampling) ------------------------------------------------------------


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


def pool(dF: np.ndarray, se: np.ndarray) -> tuple[float, float, float, float]:
    """Pool per-data-set differences (S,): (mean, s.e., across-data-set s.e., Monte Carlo s.e.).

    s.e. = max(across-data-set, Monte Carlo): the first holds the data-set variability of
    F_n (what the asymptotic formula averages over) but has S - 1 degrees of freedom only.
    NaN when any data set lacks one of the two phases."""
    S = dF.shape[0]
    if S == 0 or not np.isfinite(dF).all():
        return (math.nan,) * 4
    mc = float(np.sqrt((se**2).sum()) / S) if np.isfinite(se).all() else math.nan
    between = float(dF.std(ddof=1) / math.sqrt(S)) if S >= 2 else math.nan
    return float(dF.mean()), float(np.nanmax([mc, between])), between, mc


def fit_free_energy(ns, dF, se, dL: float, dlam: float | None = None, offset=None) -> dict:
    """Weighted least squares of y = dF - offset - n dL on dlambda log n + dc (SPEC 3 form).

    ns, dF, se (N,): the n-grid, measured F(alpha) - F(beta) and its error; offset (N,) a
    known n-dependent part to subtract first (e.g. the data term), default 0. dlam given:
    only dc is fitted. Returns dlam, dlam_se, dc, dc_se, corr, chi2, dof, birge (standard
    errors inflated by sqrt(chi2 / dof) when that exceeds 1), n_points. NaN if too few points.
    """
    ns, dF, se = (np.asarray(v, dtype=float) for v in (ns, dF, se))
    off = np.zeros_like(dF) if offset is None else np.asarray(offset, dtype=float)
    ok = np.isfinite(dF) & np.isfinite(se) & (se > 0) & np.isfinite(off)
    k = 1 if dlam is not None else 2
    nan = dict(dlam=math.nan, dlam_se=math.nan, dc=math.nan, dc_se=math.nan, corr=math.nan, chi2=math.nan,
               dof=0, birge=math.nan, n_points=int(ok.sum()))
    if ok.sum() < k:
        return nan
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
    return out


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


def wbic_lambda(energy, inphase, betas, group, *, min_frac: float = 0.5, min_count: int = 10) -> dict:
    """Bayesian learning coefficient from a tempered ladder: slope of E_beta[E | phase] in 1/beta.

    energy (T, U, K): the tempered energy E = n L_n at every slot of U ladders; inphase
    (T, U, K) bool: the draw is in the phase; betas (U, K) the ladders' inverse temperatures
    (E is multiplied by beta in the target); group (U,) int: the data set of each ladder (one
    intercept n L_n(w*) per data set). Slots used: in-phase fraction >= min_frac over the
    ladders of a data set and >= min_count draws. Error: jackknife over the U ladders.
    Returns lam, se, slots_used, and per data set and slot: mean (G, K), count, x = 1/beta.
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
    return dict(lam=lam, se=se, slots_used=int(use.sum()), mean=mean, count=N, x=x,
                frac=N / (onehot @ Tu))


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


# ---- the O(1) terms the asymptotic formula drops (SPEC 2-3) ---------------------------------------


def _zero_column_draws(c: int, label: str, n_mc: int, seed: int):
    """w* of `label` with its negative-bias zero columns (W_z, b_z) drawn from the prior:
    W (n_mc, 2, c), b (n_mc, c) and the population-loss increase dL (n_mc,); None when the
    point has no such column."""
    k, s, p = zoo.parse_label(label)
    W, b = zoo.kgon_params(k, c, s, p)
    z = list(range(k + s, c))
    if not z:
        return None
    gen = torch.Generator().manual_seed(int(rng.key(seed, c, len(z))) & 0x7FFFFFFF)
    Ws, bs = W.expand(n_mc, 2, c).clone(), b.expand(n_mc, c).clone()
    Ws[:, :, z] = torch.randn(n_mc, 2, len(z), generator=gen, dtype=W.dtype)
    bs[:, z] = torch.randn(n_mc, len(z), generator=gen, dtype=W.dtype)
    L0 = float(population_loss(W, b))
    dL = torch.cat([population_loss(Wc, bc) - L0 for Wc, bc in zip(Ws.split(20000), bs.split(20000))])
    return Ws, bs, dL


def flat_prior_mass(c: int, label: str, n_mc: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Prior mass of the flat region of the negative-bias zero columns of `label`.

    Their (W_z, b_z) are drawn from the prior N(0, I) with the rest of w* fixed; the region
    is where the population loss stays exactly at L(w*) (|dL| <= 1e-12). Returns (P_flat,
    its Monte Carlo s.e.); (1, 0) when the point has no such column."""
    draws = _zero_column_draws(c, label, n_mc, seed)
    if draws is None:
        return 1.0, 0.0
    P = float((draws[2].abs() <= 1e-12).double().mean())
    return P, math.sqrt(max(P * (1 - P), 1e-300) / n_mc)


def flat_volume(c: int, label: str, ns, n_mc: int = 200_000, seed: int = 0, beta_lik: float = 1.0) -> np.ndarray:
    """The zero-column volume at finite n: -log E_prior[exp(-beta_lik n dL) 1[zoo reading = label]]
    at each n of ns (N,), the polygon held at w* (population loss, exact). It tends to
    -log P_flat as n grows, slowly, since past the flat region the loss rises gently (no
    quadratic rise is assumed). Zeros (N,) when the point has no such column."""
    draws = _zero_column_draws(c, label, n_mc, seed)
    ns = np.asarray(ns, dtype=float)
    if draws is None:
        return np.zeros_like(ns)
    Ws, bs, dL = draws
    inside = torch.from_numpy(classify(Ws, bs) == label) & (dL >= -1e-12)  # lower-loss draws belong elsewhere
    x = dL.clamp(min=0.0)[inside]
    return np.array([-(torch.logsumexp(-beta_lik * n * x, 0) - math.log(len(dL))).item() for n in ns])


def o1_terms(c: int, labels, n_mc: int = 200_000, seed: int = 0) -> dict[str, dict]:
    """The O(1) part of F_n(alpha) = n L + lambda log n + const, term by term (SPEC 3).

    Per label: prior (|w*|^2/2, zero-column negative biases as 0: the lab's c_alpha),
    multiplicity m (tms.theory.zoo.orbit_multiplicity, term -log m), and where L is C^2 and the
    point minimally singular with null space = O(2) rotation + flat zero columns, the rest
    of the Laplace constant: half_logdet = (1/2) log det'H, circle = -log(2 pi |W*|_F)
    (length of the SO(2) orbit), reflection = -log 2, flat = -log P_flat (prior mass of the
    flat zero-column region, with flat_se), gauss = (1/2) log 2 pi (from (2 pi)^(-d_p/2)
    (2 pi / n)^(r/2), r = d_p - 1). laplace = their sum + prior - log m (None elsewhere).
    """
    pts = {q.label: q for q in zoo.critical_points(c)}
    out = {}
    for lab in labels:
        q = pts[lab]
        m = zoo.orbit_multiplicity(lab, c)
        rec = dict(loss=q.loss, llc=q.llc, prior=q.prior, multiplicity=m, log_mult=-math.log(m), laplace=None)
        n_zero_cols = c - q.k - q.s
        if q.llc is not None and q.hessian_rank == q.d - 3 * n_zero_cols - 1:
            ev = q.hessian_eigs[q.hessian_eigs.abs() > q.rank_tol]
            P, Pse = flat_prior_mass(c, lab, n_mc, seed)
            rec.update(half_logdet=0.5 * float(ev.log().sum()), circle=-math.log(2 * math.pi * float(q.W.norm())),
                       reflection=-math.log(2.0), flat=-math.log(P), flat_se=Pse / P, gauss=0.5 * math.log(2 * math.pi))
            rec["laplace"] = (q.prior + rec["log_mult"] + rec["half_logdet"] + rec["circle"] + rec["reflection"]
                              + rec["flat"] + rec["gauss"])
        out[lab] = rec
    return out


def _perm_points(c: int, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Every feature permutation of every zoo point: W (L, c!, 2, c), b (L, c!, c)."""
    perms = torch.tensor(list(itertools.permutations(range(c))), dtype=torch.long)  # (c!, c)
    Ws, bs = [], []
    for lab in labels:
        W, b = _zoo_point(lab, c)
        Ws.append(W[:, perms].permute(1, 0, 2))
        bs.append(b[perms])
    return torch.stack(Ws), torch.stack(bs)


def _zoo_point(label: str, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W (2, c), b (c,) of the zoo point `label` (tms.theory.zoo.kgon_params layout)."""
    k, s, p = zoo.parse_label(label)
    return zoo.kgon_params(k, c, s, p)


def data_term(data: SortedData, c: int, labels) -> np.ndarray | None:
    """The data term of each phase per data set: -log mean_sigma exp(-n (L_n(sigma w*) - L(w*))).

    data: S data sets (batch (S,)); labels (L,) zoo labels. The mean runs over all c!
    feature permutations sigma (equal weight per copy of the critical set); L_n is
    O(2)-invariant, so this is exactly the spread of n L_n over the copies, which the
    posterior resolves by preferring the copy of lowest empirical loss (an O(sqrt n) term,
    zero in expectation only for phases whose copies all have equal L_n, e.g. the c-gon).
    Returns (S, L) float64, or None for c > MAX_PERM_C (c! too large).
    """
    if c > MAX_PERM_C:
        return None
    W, b = _perm_points(c, labels)  # (L, P, 2, c)
    Lpop = torch.tensor([float(population_loss(*_zoo_point(lab, c))) for lab in labels], dtype=W.dtype)
    out = []
    for s in range(data.mu.shape[0]):
        one = SortedData(*(t[s] for t in data))
        Ln = empirical_loss_sorted(W.to(one.mu.dtype), b.to(one.mu.dtype), one)  # (L, P)
        x = -one.n * (Ln - Lpop[:, None].to(Ln.dtype))
        out.append(-(torch.logsumexp(x, -1) - math.log(x.shape[-1])))
    return torch.stack(out).double().numpy()


def data_term_curve(c: int, labels, ns, n_sets: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """E over data sets of `data_term` at each n of ns: mean (N, L) and s.e. (N, L), from
    n_sets synthetic data sets per n (seeds independent of the sweep's)."""
    if c > MAX_PERM_C:
        return None
    means, ses = [], []
    for n in ns:
        X = [sample_inputs(int(n), c, _data_seed(seed + 7919, int(n), s)) for s in range(n_sets)]
        t = data_term(stack_sorted([sorted_data(x) for x in X]), c, labels)
        means.append(t.mean(0))
        ses.append(t.std(0, ddof=1) / math.sqrt(n_sets))
    return np.array(means), np.array(ses)


def _data_seed(seed: int, n: int, s: int) -> int:
    return posterior.data_seed(seed, n, s)


# ---- sampling: replica-exchange ladders ------------------------------------------------------------


def run_ladders(target: tempering.Target, theta0: torch.Tensor, keys: torch.Tensor, betas: torch.Tensor, cfg: dict,
                *, all_slots: bool = False, progress: bool = False, desc: str = "ladders") -> dict:
    """Warm up and sample replica-exchange ladders (tms.samplers.tempering), batched.

    theta0 (G, R, K, d), keys (G, R, K) chain keys, betas (G, 1, K) (one ladder per item G,
    re-placed in warm-up from the swap rates pooled over its R ladders). cfg: n_warmup,
    n_draws, max_steps. Returns draws (T, G, R, d) at the coldest slot, or (T, G, R, K, d)
    with all_slots; betas (G, K) final; swap_rate (G, K-1); round_trips (G, R); accept (G,)
    mean Metropolis acceptance; divergences (G,) while sampling and divergence_rate (G,)
    per transition.
    """
    state = tempering.init(theta0, keys, target, betas)
    state, _ = tempering.warmup(state, target, cfg["n_warmup"], progress=progress, desc=f"{desc} warm-up")
    record = (lambda th: th.clone()) if all_slots else (lambda th: th[..., -1, :].to(torch.float32))
    state, out = tempering.sample(state, target, cfg["n_draws"], record=record, progress=progress, desc=desc)
    trans = out["transitions"].sum((1, 2)).clamp(min=1)
    return dict(draws=out["draws"], betas=state.betas[:, 0], swap_rate=out["swap_rate"].mean(1),
                round_trips=out["round_trips"], accept=(out["accept_rate"] * out["transitions"]).sum((1, 2)) / trans,
                divergences=out["divergences"].sum((1, 2)), divergence_rate=out["divergences"].sum((1, 2)) / trans)


def _with_dims(data: SortedData, k: int) -> SortedData:
    """Insert k singleton dims after the leading data dim (to broadcast with chain dims)."""
    return posterior._with_dims(data, k)


def _target(data: SortedData, r: int, c: int, beta_lik: float, max_steps: int) -> tempering.Target:
    """Tempered part beta_lik n L_n (exact fused loss) and the N(0, I) prior (SPEC 3), data (G,)."""
    return tempering.Target(posterior.energy_grad_fn(_with_dims(data, 2), r, c, beta_lik), posterior.prior_grad,
                            max_steps)


def _keys(seed: int, items: list[tuple], R: int, K: int, device=None) -> torch.Tensor:
    """Chain keys (G, R, K): each item's keys from its own tuple (e.g. (seed, n, s, which)),
    never from its position in a batch."""
    base = torch.tensor([rng.key(seed, *it) for it in items], dtype=torch.int64, device=device)
    return rng.keys_from(base, (R, K))


def _label_draws(draws: torch.Tensor, r: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Both readings of draws (..., d): zoo labels and hull labels, numpy str (...)."""
    W, b = unflatten_params(draws.double().cpu(), r, c)
    return np.asarray(classify(W, b)), np.asarray(classify_hull(W, b))


def _as_X(x, c: int, dtype) -> torch.Tensor:
    X = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(dtype)
    if X.dim() != 2 or X.shape[1] != c:
        raise ValueError(f"every data set must be an array of shape (n, c = {c}), got {tuple(X.shape)}")
    return X


def data_id(X: torch.Tensor) -> str:
    """SHA-256 of a data set's values (float64): a user data set's identity in saved settings."""
    return hashlib.sha256(np.ascontiguousarray(X.double().cpu().numpy()).tobytes()).hexdigest()[:16]


def _check_cfg(cfg: dict, defaults: dict, what: str) -> dict:
    unknown = set(cfg) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {what} settings {sorted(unknown)}; expected some of {sorted(defaults)}")
    cfg = {**defaults, **cfg}
    for k, v in cfg.items():
        if k in ("beta_min", "beta_lo"):
            if not 0 < checks.positive_float(v, k) < 1:
                raise ValueError(f"{k} must lie in (0, 1), got {v!r}")
        else:
            checks.positive_int(v, k, minimum=4 if k == "n_warmup" else 2 if k in ("replicas", "n_temps", "n") else 1)
    return cfg


def _point(n: int, sl: slice, out: dict, zl: np.ndarray, hl: np.ndarray, dterm, theory: list[str], ids) -> dict:
    """The sweep result at one n: its data sets are the items sl of the batch (cold-slot
    labels zl, hl (T, G, R)); phase fractions per data set and ladder (S, R, P) for both
    readings, round trips per ladder (S, R), final ladders (S, K), swap rates (S, K-1)."""
    pz = sorted(set(np.unique(zl[:, sl]).tolist()))
    ph = sorted(set(np.unique(hl[:, sl]).tolist()))
    fz, fh = ladder_fractions(zl[:, sl], pz), ladder_fractions(hl[:, sl], ph)
    R = fz.shape[1]
    return dict(n=n, ids=list(ids), phases_zoo=pz, phases_hull=ph, frac_zoo=fz, frac_hull=fh,
                mass_seed_zoo=fz.mean(1), mass_se_seed_zoo=fz.std(1, ddof=1) / math.sqrt(R),
                mass_seed_hull=fh.mean(1), mass_se_seed_hull=fh.std(1, ddof=1) / math.sqrt(R),
                round_trips=out["round_trips"][sl].cpu().numpy(), betas=out["betas"][sl].cpu().numpy(),
                swap_rate=out["swap_rate"][sl].cpu().numpy(), accept=out["accept"][sl].cpu().numpy(),
                divergences=out["divergences"][sl].cpu().numpy(), theory_labels=list(theory),
                data_term=None if dterm is None else dterm[sl])


POINT_ARRAYS = ("frac_zoo", "frac_hull", "mass_seed_zoo", "mass_se_seed_zoo", "mass_seed_hull", "mass_se_seed_hull",
                "round_trips", "betas", "swap_rate", "accept", "divergences", "data_term")
POINT_FIELDS = ("n", "ids", "phases_zoo", "phases_hull", "theory_labels")


def _run_chunk(c, r, items, beta_lik, seed, cfg, dtype, device, progress, theory) -> list[dict]:
    """One batched replica-exchange run over every data set of `items` [(n, [X], ids)]."""
    datas = [sorted_data(X.to(dtype)) for _, Xs, _ in items for X in Xs]
    data = SortedData(*(t.to(device) for t in stack_sorted(datas)))  # batch (G,)
    G, R, K, d = len(datas), cfg["replicas"], cfg["n_temps"], r * c + c
    keys = _keys(seed, [(n, s, rng.FE_SWEEP) for n, Xs, _ in items for s in range(len(Xs))], R, K, device)
    betas = tempering.geometric_ladder(K, cfg["beta_min"], dtype=dtype).to(device).expand(G, 1, K).clone()
    out = run_ladders(_target(data, r, c, beta_lik, cfg["max_steps"]), rng.normal(keys, 0, d, dtype, rng.START),
                      keys, betas, cfg, progress=progress, desc=f"replica exchange ({G} data sets)")
    zl, hl = _label_draws(out["draws"], r, c)  # (T, G, R)
    dterm = data_term(SortedData(*(t.cpu() for t in data)), c, theory) if theory else None
    points, g = [], 0
    for n, Xs, ids in items:
        points.append(_point(n, slice(g, g + len(Xs)), out, zl, hl, dterm, theory, ids))
        g += len(Xs)
    return points


def _save_point(path: Path, pt: dict, settings: dict) -> None:
    arrays = {k: pt[k] for k in POINT_ARRAYS if pt.get(k) is not None}
    io.save_result(path, arrays, dict(settings=settings, **{k: pt[k] for k in POINT_FIELDS}))


def _load_point(path: Path, settings: dict, ids) -> dict:
    arrays, rec = io.load_result(path)
    if rec["settings"] != io.jsonable(settings) or rec["ids"] != io.jsonable(list(ids)):
        raise ValueError(f"{path} holds a result with other settings or data sets ({rec['settings']}); "
                         "use another output folder or delete it")
    return dict({k: rec[k] for k in POINT_FIELDS}, **{k: arrays.get(k) for k in POINT_ARRAYS})


def sweep_data(c: int, datasets, *, r: int = 2, beta_lik: float = 1.0, seed: int = 0, ids=None,
               out_dir: str | Path | None = None, progress: bool = False, batch_points: int | None = None,
               dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu", theory: bool = True,
               **overrides) -> list[dict]:
    """Phase masses per data set and ladder at every n, from replica exchange (SPEC 3), on
    the researcher's own data sets.

    datasets: a list over the n-grid, item i a list of S_i arrays X (n_i, c) (numpy or torch,
    high-sparsity rows mu e_j) that share one sample size n_i; the n_i distinct. ids: per
    item a list of S_i identities saved with the result (default: SHA-256 of the values).
    Sampler settings: QUICK (replicas, n_temps, beta_min, n_warmup, n_draws, max_steps) or
    keyword overrides ('seeds' is ignored here). out_dir: each finished n saved there as
    fe_c{c}_n{n} and skipped when rerun with the same settings and data. theory: add the
    exact data term of every zoo label (c <= MAX_PERM_C). Returns the points (named fields:
    frac_zoo / frac_hull (S, R, P) per data set and ladder, mass_seed_*, mass_se_seed_*,
    round_trips (S, R), betas (S, K), swap_rate, accept, divergences, data_term (S, L)).
    """
    checks.positive_int(c, "c", minimum=3)
    checks.positive_int(r, "r")
    if r != 2:
        raise ValueError(f"the phase readings need r = 2, got r = {r}")
    checks.positive_float(beta_lik, "beta_lik")
    cfg = _check_cfg({k: v for k, v in overrides.items() if k != "seeds"}, {k: v for k, v in QUICK.items()
                                                                             if k != "seeds"}, "sampler")
    items = _items(c, datasets, ids, dtype)
    settings = dict(c=c, r=r, beta_lik=float(beta_lik), seed=seed, **cfg)
    theory_labels = _theory_labels(c) if theory and c <= MAX_PERM_C else []
    out_dir = Path(out_dir) if out_dir is not None else None
    done = {}
    for n, _, i in items:
        if out_dir is not None and io.result_exists(out_dir / f"fe_c{c}_n{n}"):
            done[n] = _load_point(out_dir / f"fe_c{c}_n{n}", settings, i)
    todo = [it for it in items if it[0] not in done]
    step = batch_points or max(1, len(todo))
    chunks = [todo[j: j + step] for j in range(0, len(todo), step)]
    for chunk in tqdm(chunks, desc=f"free energy sweep c={c}", disable=not progress or len(chunks) < 2):
        for pt in _run_chunk(c, r, chunk, beta_lik, seed, cfg, dtype, device, progress, theory_labels):
            done[pt["n"]] = pt
            if out_dir is not None:
                _save_point(out_dir / f"fe_c{c}_n{pt['n']}", pt, settings)
    return [done[n] for n, _, _ in items]


def _items(c: int, datasets, ids, dtype) -> list[tuple]:
    """[(n, [X (n, c)], ids)] checked: non-empty, one n per item, distinct n."""
    if not isinstance(datasets, (list, tuple)) or not datasets:
        raise ValueError("datasets must be a non-empty list over the n-grid of lists of arrays X (n, c)")
    items = []
    for i, group in enumerate(datasets):
        Xs = [_as_X(x, c, dtype) for x in (group if isinstance(group, (list, tuple)) else [group])]
        if not Xs or len({X.shape[0] for X in Xs}) != 1:
            raise ValueError(f"datasets[{i}] must hold one or more arrays of one sample size n")
        gid = list(ids[i]) if ids is not None else [data_id(X) for X in Xs]
        if len(gid) != len(Xs):
            raise ValueError(f"ids[{i}] must name each of the {len(Xs)} data sets of datasets[{i}]")
        items.append((int(Xs[0].shape[0]), Xs, gid))
    ns = [it[0] for it in items]
    if len(set(ns)) != len(ns):
        raise ValueError(f"the sample sizes of datasets must be distinct, got {ns}")
    return items


def _theory_labels(c: int) -> list[str]:
    return zoo.labels(c)


def sweep_seeds(c: int, ns, *, seed: int = 0, seeds: int | None = None, **kw) -> list[dict]:
    """sweep_data on synthetic data sets: at each n, `seeds` (default QUICK) data sets drawn
    from the high-sparsity distribution with the seeds tms.bayes.posterior.data_seed(seed, n, s)
    (the same data sets as tms.bayes.posterior.phase_sweep); the data seeds are the ids."""
    S = checks.positive_int(seeds if seeds is not None else QUICK["seeds"], "seeds")
    ns = [checks.positive_int(int(n), "n", minimum=2) for n in ns]
    dtype = kw.get("dtype", torch.float64)
    dsets = [[sample_inputs(n, c, _data_seed(seed, n, s), dtype=dtype) for s in range(S)] for n in ns]
    ids = [[_data_seed(seed, n, s) for s in range(S)] for n in ns]
    return sweep_data(c, dsets, seed=seed, ids=ids, **kw)


# ---- lambda from local ladders (SPEC 3, 5: independent of SGLD) ---------------------------------------


def lambda_labels(c: int) -> list[str]:
    """Default phases for the three-way lambda table: p = 0 families with k >= max(4, c - 2)
    (c = 6: 6, 5+, 5, 4++, 4+, 4)."""
    return [lab for lab in zoo.labels(c) if (k := zoo.parse_label(lab))[2] == 0 and k[0] >= max(4, c - 2)]


def _energies(draws: torch.Tensor, data: SortedData, r: int, c: int, beta_lik: float) -> torch.Tensor:
    """beta_lik n L_n of draws (T, G, R, K, d) on data (G,) -> (T, G, R, K)."""
    th = draws.permute(1, 0, 2, 3, 4)  # (G, T, R, K, d)
    W, b = unflatten_params(th.to(data.mu.dtype), r, c)
    E = beta_lik * _with_dims(data, 3).n * empirical_loss_sorted(W, b, _with_dims(data, 3))
    return E.permute(1, 0, 2, 3)


def restricted(energy_grad, labels: np.ndarray, r: int, c: int):
    """The energy with a wall: +inf where the zoo reading of theta is not the item's phase.

    energy_grad: theta (G, ..., d) -> (E (G, ...), grad); labels (G,) str: the phase of each
    item. HMC proposals that leave the phase are then rejected (tms.samplers.rounds treats
    a non-finite energy as a divergence), so the chains sample the posterior restricted to
    the phase region, exp(-beta E - |w|^2/2) 1[classify(w) = label] (SPEC 3: a local free
    energy is the integral over that region)."""
    codes = {lab: i for i, lab in enumerate(sorted(set(labels.tolist())))}
    want = torch.tensor([codes[lab] for lab in labels.tolist()])

    def f(theta):
        E, g = energy_grad(theta)
        fin = torch.isfinite(theta).all(-1)
        W, b = unflatten_params(torch.where(fin.unsqueeze(-1), theta, torch.zeros_like(theta)).detach(), r, c)
        lab = classify(W, b)
        got = torch.from_numpy(np.vectorize(lambda x: codes.get(x, -1), otypes=[np.int64])(lab)).to(theta.device)
        ok = fin & (got == want.to(theta.device).reshape((-1,) + (1,) * (got.dim() - 1)))
        return torch.where(ok, E, torch.full_like(E, math.inf)), g

    return f


def local_lambda(c: int, labels=None, *, r: int = 2, beta_lik: float = 1.0, seed: int = 0, data=None,
                 progress: bool = False, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
                 **overrides) -> dict:
    """lambda_Bayes of each phase from local ladders restricted to the phase (SPEC 3).

    For every label and data set, R ladders of K temperatures beta_lo..1 (geometric, then
    re-placed in warm-up) at one sample size n, every slot started at the zoo point and
    confined to the phase by a wall (`restricted`): E = beta_lik n L_n at every slot and
    round, and `wbic_lambda` on them. Settings: LAMBDA_QUICK (n, seeds, replicas, n_temps,
    beta_lo, n_warmup, n_draws, max_steps) or keyword overrides. data: optional list of S
    arrays X (n, c) instead of the synthetic data sets data_seed(seed, n, s).
    Returns {labels, settings, ids, per_label: {label: wbic_lambda result + betas (S, K),
    round_trips (S, R), accept (S,), wall (S,) fraction of transitions rejected at the wall}}.
    """
    cfg = _check_cfg(overrides, LAMBDA_QUICK, "local-ladder")
    labels = list(labels) if labels is not None else lambda_labels(c)
    Xs = [_as_X(x, c, dtype) for x in data] if data is not None else \
        [sample_inputs(cfg["n"], c, _data_seed(seed, cfg["n"], s), dtype=dtype) for s in range(cfg["seeds"])]
    n, S, R, K, d = int(Xs[0].shape[0]), len(Xs), cfg["replicas"], cfg["n_temps"], r * c + c
    ids = [data_id(X) for X in Xs] if data is not None else [_data_seed(seed, n, s) for s in range(S)]
    base = stack_sorted([sorted_data(X) for X in Xs])
    data_g = SortedData(*(t.repeat((len(labels),) + (1,) * (t.dim() - 1)).to(device) for t in base))  # label-major
    theta0 = torch.stack([_flat_point(lab, c, dtype) for lab in labels]).repeat_interleave(S, 0).to(device)
    keys = _keys(seed, [(n, s, rng.FE_LOCAL, _label_code(lab)) for lab in labels for s in range(S)], R, K, device)
    betas = tempering.geometric_ladder(K, cfg["beta_lo"], dtype=dtype).to(device).expand(len(labels) * S, 1, K).clone()
    tgt = _target(data_g, r, c, beta_lik, cfg["max_steps"])
    tgt = tgt._replace(energy_grad=restricted(tgt.energy_grad, np.repeat(labels, S), r, c))
    out = run_ladders(tgt, theta0[:, None, None].expand(-1, R, K, d).clone(), keys, betas, cfg, all_slots=True,
                      progress=progress, desc=f"local ladders ({len(labels)} phases)")
    E = _energies(out["draws"], data_g, r, c, beta_lik).cpu().numpy()  # (T, G, R, K)
    zl, _ = _label_draws(out["draws"], r, c)
    per = {}
    for i, lab in enumerate(labels):
        g, T = slice(i * S, (i + 1) * S), E.shape[0]
        bet = out["betas"][g].cpu().numpy()  # (S, K)
        res = wbic_lambda(E[:, g].reshape(T, S * R, K), (zl[:, g] == lab).reshape(T, S * R, K),
                          np.repeat(bet, R, 0), np.repeat(np.arange(S), R))
        res.update(betas=bet, round_trips=out["round_trips"][g].cpu().numpy(), accept=out["accept"][g].cpu().numpy(),
                   wall=out["divergence_rate"][g].cpu().numpy())
        per[lab] = res
    return dict(labels=labels, settings=dict(c=c, r=r, beta_lik=float(beta_lik), seed=seed, **cfg, n_used=n),
                ids=ids, per_label=per)


def _flat_point(label: str, c: int, dtype) -> torch.Tensor:
    W, b = _zoo_point(label, c)
    return flatten_params(W, b).to(dtype)


def _label_code(label: str) -> int:
    return int.from_bytes(label.encode(), "little")


# ---- analysis: measured differences, fits, theory curves, crossings --------------------------------


def reading_table(points: list[dict], reading: str = "zoo") -> dict:
    """Phase fractions of a sweep in one reading ('zoo' or 'hull'), families appended.

    Returns ns (N,), cols (phases + families, 'other' kept), frac: list over n of (S, R, P')
    arrays on the common columns, mass (N, P') pooled means over data sets and ladders."""
    if reading not in ("zoo", "hull"):
        raise ValueError(f"reading must be 'zoo' or 'hull', got {reading!r}")
    phases = sorted({p for pt in points for p in pt[f"phases_{reading}"]})
    fr = []
    for pt in points:
        f = np.zeros(pt[f"frac_{reading}"].shape[:2] + (len(phases),))
        f[..., [phases.index(p) for p in pt[f"phases_{reading}"]]] = pt[f"frac_{reading}"]
        fr.append(f)
    fr = [group_fractions(f, phases)[0] for f in fr]
    cols = group_fractions(fr[0][..., : len(phases)] if fr else np.zeros((1, 1, len(phases))), phases)[1]
    return dict(ns=np.array([pt["n"] for pt in points]), cols=cols, frac=fr, reading=reading,
                mass=np.stack([f.mean((0, 1)) for f in fr]))


def _loss_of(col: str, c: int) -> float:
    """Zoo loss of a label or family (a family: its lowest member); inf if none."""
    pts = {q.label: q.loss for q in zoo.critical_points(c)}
    if col in pts:
        return pts[col]
    members = [v for lab, v in pts.items() if family(lab) == col]
    return min(members) if members else math.inf


def pair_differences(table: dict, i: int, j: int) -> dict:
    """F(col i) - F(col j) at every n of a reading table: per data set (lists of (S,)) and
    pooled (N,) with s.e., across-data-set s.e. and Monte Carlo s.e. (NaN where not held)."""
    out = dict(dF_seed=[], se_seed=[], dF=[], se=[], se_between=[], se_mc=[])
    for f in table["frac"]:
        d, s = log_mass_ratio(f, i, j)
        out["dF_seed"].append(d)
        out["se_seed"].append(s)
        for k, v in zip(("dF", "se", "se_between", "se_mc"), pool(d, s)):
            out[k].append(v)
    return {k: (np.array(v) if k in ("dF", "se", "se_between", "se_mc") else v) for k, v in out.items()}


def all_pairs(table: dict, c: int, min_mass: float = MIN_MASS) -> list[dict]:
    """Every pair of columns (phases and families, not 'other') that both hold pooled mass
    >= min_mass at some common n; alpha is the one of higher zoo loss (the earlier phase)."""
    cols, mass = table["cols"], table["mass"]
    keep = [i for i, col in enumerate(cols) if col != "other" and (mass[:, i] >= min_mass).any()]
    out = []
    for a, b in itertools.combinations(keep, 2):
        if not ((mass[:, a] >= min_mass) & (mass[:, b] >= min_mass)).any():
            continue
        if family(cols[a]) == cols[b] or family(cols[b]) == cols[a]:
            continue  # a family and its own member
        i, j = (a, b) if _loss_of(cols[a], c) >= _loss_of(cols[b], c) else (b, a)
        out.append(dict(alpha=cols[i], beta=cols[j], **pair_differences(table, i, j)))
    return out


def theory_curves(c: int, labels, ns, o1: dict, dcurve: dict | None = None, llcs: dict | None = None,
                  beta_lik: float = 1.0) -> dict[str, dict]:
    """Predicted F_n of each zoo label at every n of ns (N,), four ways (SPEC 3):
    paper = m L + lambda log m + |w*|^2/2 (m = beta_lik n); mult = paper - log(multiplicity);
    laplace = m L + lambda log m + the full Laplace constant (o1_terms; None where it has
    none); data = laplace + the mean data term, a + b sqrt(n) fitted to dcurve ({'labels',
    'fit' (L, 2), 'ns', 'flat_n' (Nc, L)}, see `_dcurve`); laplace_n = laplace with the
    zero-column volume at n (flat_volume, interpolated in log n, NaN outside dcurve's grid)
    instead of its n -> infinity limit; finite = laplace_n + the data term (every computed
    term). lambda: the zoo's, else llcs[label], else the label is skipped (no curve)."""
    ns = np.asarray(ns, dtype=float)
    m = beta_lik * ns
    out = {}
    for lab in labels:
        t = o1[lab]
        lam = t["llc"] if t["llc"] is not None else (llcs or {}).get(lab)
        if lam is None or not np.isfinite(lam):
            continue
        base = m * t["loss"] + lam * np.log(m)
        cur = dict(paper=base + t["prior"], mult=base + t["prior"] + t["log_mult"], laplace=None, data=None,
                   laplace_n=None, finite=None, lam=lam)
        if t["laplace"] is not None:
            cur["laplace"] = base + t["laplace"]
            if dcurve is not None and lab in dcurve["labels"]:
                j = dcurve["labels"].index(lab)
                a, b = dcurve["fit"][j]
                cur["data"] = cur["laplace"] + a + b * np.sqrt(m)
                fl = np.interp(np.log(m), np.log(np.asarray(dcurve["ns"], float)), np.asarray(dcurve["flat_n"])[:, j],
                               left=np.nan, right=np.nan)
                cur["laplace_n"] = cur["laplace"] - t["flat"] + fl
                cur["finite"] = cur["laplace_n"] + a + b * np.sqrt(m)
        out[lab] = cur
    return out


def column_curve(col: str, curves: dict, variant: str):
    """A variant of the theory curve of a label or a family (-log sum exp(-F) over its members
    that have one); None if no member has it."""
    members = [col] if col in curves else [lab for lab in curves if family(lab) == col]
    ys = [curves[lab][variant] for lab in members if lab in curves and curves[lab][variant] is not None]
    if not ys:
        return None
    ys = np.stack(ys)
    with np.errstate(invalid="ignore"):  # NaN outside a data-term grid stays NaN
        return ys[0] if len(ys) == 1 else -np.logaddexp.reduce(-ys, axis=0)


def representative(col: str, curves: dict, idx: int) -> str | None:
    """The member of a family with the lowest paper F at grid index idx of the curves (the
    label itself if not a family); None if no member has a curve."""
    if col in curves:
        return col
    members = [lab for lab in curves if family(lab) == col]
    return min(members, key=lambda lab: float(curves[lab]["paper"][idx])) if members else None


TERMS = (("prior", "prior ‖w*‖²/2"), ("log_mult", "orbit multiplicity −log m"),
         ("half_logdet", "Hessian ½ log det'H"), ("circle", "O(2) orbit length −log(2π‖W*‖)"),
         ("flat", "flat zero-column volume −log P_flat"))


def decompose(a: str, b: str, o1: dict, n: float, lam: dict, data_at: dict | None = None) -> list[tuple[str, float]]:
    """F(a) - F(b) at n split into the asymptotic part and each O(1) term (SPEC 3):
    [('n dL + dlambda log n', v), ('prior ...', v), ...] (reflection and (1/2) log 2 pi cancel
    between smooth phases); with data_at ({label: {'data', 'flat_n'}} at n, `_data_at`) the
    mean data term and the finite-n correction of the zero-column volume."""
    ta, tb = o1[a], o1[b]
    rows = [("n dL + dlambda log n", n * (ta["loss"] - tb["loss"]) + (lam[a] - lam[b]) * math.log(n))]
    for key, name in TERMS:
        va, vb = ta.get(key), tb.get(key)
        if va is not None and vb is not None:
            rows.append((name, float(va - vb)))
    if data_at is not None and a in data_at and b in data_at:
        rows.append(("data term (copy of lowest L_n), mean over data sets",
                     data_at[a]["data"] - data_at[b]["data"]))
        rows.append(("zero-column volume at this n instead of −log P_flat",
                     data_at[a]["flat_n"] - data_at[b]["flat_n"]))
    return rows


def _data_delta(points: list[dict], a: str, b: str) -> list[np.ndarray] | None:
    """Per n, the exact data term difference delta(a) - delta(b) of each data set (S,)."""
    if not points or points[0].get("data_term") is None:
        return None
    out = []
    for pt in points:
        tl = pt["theory_labels"]
        if a not in tl or b not in tl:
            return None
        out.append(np.asarray(pt["data_term"])[:, tl.index(a)] - np.asarray(pt["data_term"])[:, tl.index(b)])
    return out


def _fits(pair: dict, ns, grid: dict, ta: dict, tb: dict, delta) -> dict:
    """The fits of one pair: free (dlambda, dc; dL of the representatives), remainder beyond
    the paper formula, beyond the Laplace constants, and both again with the exact data term
    of each data set subtracted first (`_data`)."""
    dL = ta["loss"] - tb["loss"]
    fits = dict(free=fit_free_energy(ns, pair["dF"], pair["se"], dL),
                remainder=fit_free_energy(ns, pair["dF"], pair["se"], 0.0, 0.0, offset=grid["paper"]))
    if grid["laplace"] is not None:
        fits["remainder_laplace"] = fit_free_energy(ns, pair["dF"], pair["se"], 0.0, 0.0, offset=grid["laplace"])
    if delta is not None:
        dc = [pool(d - dd, s) for d, dd, s in zip(pair["dF_seed"], delta, pair["se_seed"])]
        y, se = np.array([v[0] for v in dc]), np.array([v[1] for v in dc])
        pair.update(dF_data_corrected=y, se_data_corrected=se)
        fits["free_data"] = fit_free_energy(ns, y, se, dL)
        if grid["laplace"] is not None:
            fits["remainder_laplace_data"] = fit_free_energy(ns, y, se, 0.0, 0.0, offset=grid["laplace"])
        if grid["laplace_n"] is not None:
            fits["remainder_all"] = fit_free_energy(ns, y, se, 0.0, 0.0, offset=grid["laplace_n"])
    return fits


def analyse_pair(pair: dict, ns, c: int, o1: dict, curves: dict, fine: dict, n_fine, points, lam: dict) -> dict:
    """Fits, predicted crossings and the term-by-term split of one pair (alpha -> beta).

    curves / fine: theory_curves on the sweep grid ns and on n_fine. n_c: 'paper' (the
    lab's formula), 'multiplicity', 'laplace' (all computed O(1) terms), 'laplace+data'
    (and the mean data term), 'measured O(1)' (paper + fitted remainder), 'fit' (fitted
    dlambda and dc), 'observed' (the measured difference changes sign)."""
    a, b = pair["alpha"], pair["beta"]
    mid = int(np.argmin(np.abs(np.log(np.asarray(n_fine)) - np.log(np.sqrt(ns[0] * ns[-1])))))
    ra, rb = representative(a, fine, mid), representative(b, fine, mid)
    if ra is None or rb is None:
        return dict(pair, theory=False)
    def cc(d, v):
        ya, yb = column_curve(a, d, v), column_curve(b, d, v)
        return None if ya is None or yb is None else ya - yb

    variants = ("paper", "mult", "laplace", "data", "laplace_n", "finite")
    grid, fcur = {v: cc(curves, v) for v in variants}, {v: cc(fine, v) for v in variants}
    fits = _fits(pair, ns, grid, o1[ra], o1[rb], _data_delta(points, ra, rb))
    fr, rem = fits["free"], fits["remainder"]["dc"]
    dL = o1[ra]["loss"] - o1[rb]["loss"]
    fcur["measured"] = None if not np.isfinite(rem) else fcur["paper"] + rem
    fcur["fit"] = None if not np.isfinite(fr["dlam"]) else n_fine * dL + fr["dlam"] * np.log(n_fine) + fr["dc"]
    obs = crossing(ns, pair["dF"])
    roots = {k: (None if fcur[v] is None else crossing(n_fine, fcur[v])) for k, v in
             (("paper", "paper"), ("multiplicity", "mult"), ("laplace", "laplace"), ("laplace+data", "data"),
              ("all computed", "finite"), ("measured O(1)", "measured"), ("fit", "fit"))}
    roots["observed"] = obs
    n_star = obs if obs is not None else float(np.sqrt(ns[0] * ns[-1]))
    data_at = _data_at(fine, n_fine, n_star, (ra, rb))
    measured = {k: pair[k] for k in ("dF", "se", "se_between", "se_mc", "dF_seed", "se_seed", "dF_data_corrected",
                                     "se_data_corrected") if k in pair}
    return dict(alpha=a, beta=b, theory=True, **measured, rep_alpha=ra, rep_beta=rb, dL=dL, dlam=lam[ra] - lam[rb],
                dc_paper=o1[ra]["prior"] - o1[rb]["prior"], dc_laplace=_diff(o1, ra, rb, "laplace"),
                fits=fits, n_c=roots, n_star=n_star, terms=decompose(ra, rb, o1, n_star, lam, data_at),
                curves={k: v for k, v in fcur.items() if v is not None},
                grid={k: v for k, v in grid.items() if v is not None})


def _diff(o1: dict, a: str, b: str, key: str):
    va, vb = o1[a].get(key), o1[b].get(key)
    return None if va is None or vb is None else float(va - vb)


def _data_at(fine: dict, n_fine, n: float, labels) -> dict | None:
    """Per label at n, from the fine curves: the mean data term (data - laplace) and the
    finite-n correction of the zero-column volume (laplace_n - laplace)."""
    out = {}
    for lab in labels:
        if lab not in fine or fine[lab]["data"] is None:
            return None
        at = lambda y: float(np.interp(math.log(n), np.log(n_fine), y))  # noqa: E731
        out[lab] = dict(data=at(fine[lab]["data"] - fine[lab]["laplace"]),
                        flat_n=at(fine[lab]["laplace_n"] - fine[lab]["laplace"]))
    return out if all(np.isfinite(v) for d in out.values() for v in d.values()) else None


def lambda_table(c: int, lam_res: dict, sgld: dict, o1: dict) -> list[dict]:
    """lambda three ways per phase: zoo theory (None where L is only C^1), SGLD at the zoo
    point (value, s.e.), Bayes from the local ladders (value, s.e., slots used, the
    restricted ladders' temperatures n*beta)."""
    rows = []
    for lab in lam_res["labels"]:
        r = lam_res["per_label"][lab]
        sg = sgld.get(lab, (math.nan, math.nan))
        nb = np.asarray(r["betas"]) * lam_res["settings"]["n_used"]
        rows.append(dict(label=lab, theory=o1[lab]["llc"] if lab in o1 else None, sgld=float(sg[0]),
                         sgld_se=float(sg[1]),
                         bayes=float(r["lam"]), bayes_se=float(r["se"]), slots_used=int(r["slots_used"]),
                         nbeta_min=float(nb.min()), nbeta_max=float(nb.max()),
                         wall_rate=float(np.mean(r["wall"]))))
    return rows


def analyse(points: list[dict], c: int, o1: dict, lam: dict, *, dcurve: dict | None = None, beta_lik: float = 1.0,
            pairs=None, min_mass: float = MIN_MASS) -> dict:
    """Both readings of a sweep: every pair's measured differences, and for the primary
    pairs (PAIRS[c] or `pairs`) fits, crossings and the split into terms (analyse_pair).
    lam: lambda per label for the theory curves (zoo theory, else the Bayes estimate)."""
    ns = np.array([pt["n"] for pt in points], dtype=float)
    n_fine = np.exp(np.linspace(math.log(10.0), math.log(1e5), 600))
    labels = list(o1)
    curves = theory_curves(c, labels, ns, o1, dcurve, lam, beta_lik)
    fine = theory_curves(c, labels, n_fine, o1, dcurve, lam, beta_lik)
    out = dict(ns=ns, n_fine=n_fine, readings={})
    for reading in ("zoo", "hull"):
        table = reading_table(points, reading)
        every = all_pairs(table, c, min_mass)
        prim = []
        for a, b in pairs or PAIRS.get(c, []):
            pr = next((p for p in every if p["alpha"] == a and p["beta"] == b), None)
            if pr is None and a in table["cols"] and b in table["cols"]:
                pr = dict(alpha=a, beta=b, **pair_differences(table, table["cols"].index(a), table["cols"].index(b)))
            if pr is not None:
                prim.append(analyse_pair(pr, ns, c, o1, curves, fine, n_fine, points, lam))
        out["readings"][reading] = dict(cols=table["cols"], mass=table["mass"], pairs=every, primary=prim)
    return out


# ---- the whole measurement, saved ------------------------------------------------------------------------


def _cached(path: Path | None, settings: dict, compute):
    """Load the record at path if it was made with these settings, else compute(), save, return."""
    if path is not None and io.result_exists(path):
        _, rec = io.load_result(path)
        if rec.get("settings") == io.jsonable(settings):
            return rec["value"]
        raise ValueError(f"{path} holds a result with other settings ({rec.get('settings')}); "
                         "use another output folder or delete it")
    value = io.jsonable(compute())
    if path is not None:
        io.save_result(path, {}, dict(settings=settings, value=value))
    return value


def _sgld(c: int, labels, cfg: dict, seed: int) -> dict:
    """SGLD estimates at the zoo points (tms.bayes.posterior.estimate_llcs), {label: [value, se]};
    NaN with the error recorded if the estimator fails."""
    try:
        est = posterior.estimate_llcs(c, list(labels), n=cfg["n"], n_chains=cfg["n_chains"],
                                      n_burnin=cfg["n_burnin"], n_draws=cfg["n_draws"], seed=seed)
        return {lab: [float(v), float(s)] for lab, (v, s) in est.items()}
    except (ValueError, RuntimeError) as err:  # the estimator refused or failed: recorded, the rest goes on
        return {lab: [math.nan, math.nan] for lab in labels} | {"_error": f"{type(err).__name__}: {err}"}


def measure(c: int = 6, ns=None, *, seed: int = 0, scale: str = "quick", out_dir: str | Path | None = None,
            datasets=None, beta_lik: float = 1.0, progress: bool = False, sweep: dict | None = None,
            lam: dict | None = None, sgld: dict | None = None, labels=None, dcurve_sets: int = 24,
            batch_points: int | None = None, n_mc: int = 200_000, dtype: torch.dtype = torch.float64,
            device: str | torch.device = "cpu") -> dict:
    """Everything of issue 11 at one c: the sweep (seeds, or `datasets` as in sweep_data), the
    local-ladder lambdas, SGLD lambdas, the O(1) terms, the data-term curve and `analyse`.

    Settings: QUICK / LAMBDA_QUICK / SGLD_QUICK (PAPER, LAMBDA_PAPER with scale="full"),
    overridden by the dicts sweep, lam, sgld. ns: the n-grid (default QUICK_NS[c]; ignored
    with datasets). out_dir: every piece saved there and reused when rerun (resumable; with
    batch_points, n values are sampled and saved that many at a time); the summary
    `summary_c{c}` is rewritten. n_mc: prior draws for the zero-column volumes; dcurve_sets:
    synthetic data sets per n for the mean data term. Returns the summary record.
    """
    full = checks.scale(scale) == "full"
    out = Path(out_dir) if out_dir is not None else None
    scfg = {**(PAPER if full else QUICK), **(sweep or {})}
    lcfg = {**(LAMBDA_PAPER if full else LAMBDA_QUICK), **(lam or {})}
    unknown = sorted(set(sgld or {}) - set(SGLD_QUICK))
    if unknown:
        raise ValueError(f"sgld: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SGLD_QUICK)}")
    gcfg = {**SGLD_QUICK, **(sgld or {})}
    zoo.critical_points(c, progress=progress)
    common = dict(seed=seed, beta_lik=beta_lik, out_dir=out, progress=progress, batch_points=batch_points,
                  dtype=dtype, device=device)
    if datasets is None:
        ns = list(ns if ns is not None else QUICK_NS.get(c, QUICK_NS[5]))
        points = sweep_seeds(c, ns, **common, **scfg)
    else:
        points = sweep_data(c, datasets, **common, **{k: v for k, v in scfg.items() if k != "seeds"})
    labels = list(labels) if labels is not None else lambda_labels(c)
    lam_res = _cached(None if out is None else out / f"lambda_c{c}", dict(labels=labels, seed=seed, beta_lik=beta_lik,
                      **lcfg), lambda: local_lambda(c, labels, seed=seed, beta_lik=beta_lik, progress=progress,
                                                    dtype=dtype, device=device, **lcfg))
    sg = _cached(None if out is None else out / f"sgld_c{c}", dict(labels=labels, seed=seed, **gcfg),
                 lambda: _sgld(c, labels, gcfg, seed))
    o1 = o1_terms(c, zoo.labels(c), n_mc=n_mc, seed=seed)
    bayes = {lab: r["lam"] for lab, r in lam_res["per_label"].items()}
    lam_used = {lab: t["llc"] if t["llc"] is not None else bayes.get(lab) for lab, t in o1.items()}
    dcurve = _dcurve(c, o1, [pt["n"] for pt in points], dcurve_sets, seed, beta_lik, n_mc)
    res = analyse(points, c, o1, lam_used, dcurve=dcurve, beta_lik=beta_lik)
    res.update(c=c, o1=o1, lam_used=lam_used, dcurve=dcurve, lambda_table=lambda_table(c, lam_res, sg, o1),
               sgld_error=sg.get("_error"), settings=dict(c=c, r=2, seed=seed, beta_lik=beta_lik, scale=scale,
               sweep=scfg, lam=lcfg, sgld=gcfg, data="user" if datasets is not None else "seeds",
               ids={str(pt["n"]): pt["ids"] for pt in points}), diagnostics=_diagnostics(points))
    res = io.jsonable(res)
    if out is not None:
        save_summary(out / f"summary_c{c}", res)
    return res


def _dcurve(c: int, o1: dict, ns, n_sets: int, seed: int, beta_lik: float, n_mc: int) -> dict | None:
    """The mean data term (with its a + b sqrt(n) fit) and the finite-n zero-column volume of
    the smooth labels on a log grid from half the sweep's smallest n to twice its largest."""
    labs = [lab for lab, t in o1.items() if t["laplace"] is not None]
    if not labs or c > MAX_PERM_C or beta_lik != 1.0:
        return None
    grid = np.unique(np.round(np.exp(np.linspace(math.log(min(ns) / 2), math.log(max(ns) * 2), 10))).astype(int))
    mean, se = data_term_curve(c, labs, grid, n_sets=n_sets, seed=seed)
    X = np.stack([np.ones(len(grid)), np.sqrt(grid)], 1)
    fit = []
    for j in range(len(labs)):  # E[data term](n) ~ a + b sqrt(n): the lowest of the copies' n L_n fluctuations
        w = 1.0 / np.maximum(se[:, j], 1e-6) ** 2
        fit.append(np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * mean[:, j])))
    flat_n = np.stack([flat_volume(c, lab, grid, n_mc, seed) for lab in labs], 1)  # (Nc, L)
    return dict(ns=grid.tolist(), labels=labs, mean=mean, se=se, n_sets=n_sets, fit=np.array(fit), flat_n=flat_n)


def _diagnostics(points: list[dict]) -> dict:
    """Per n: phase masses per data set (S, P) in both readings, round trips per ladder
    (S, R), final ladders (S, K), swap rates, acceptance, divergences."""
    keys = ("phases_zoo", "mass_seed_zoo", "phases_hull", "mass_seed_hull", "round_trips", "betas", "swap_rate",
            "accept", "divergences")
    return {str(pt["n"]): {k: pt[k] for k in keys} for pt in points}


def save_summary(path: str | Path, res: dict) -> None:
    """The summary record (JSON) with ns and n_fine as arrays (tms.core.io)."""
    io.save_result(path, dict(ns=np.asarray(res["ns"]), n_fine=np.asarray(res["n_fine"])), res)


def load_summary(path: str | Path) -> dict:
    """The record saved by measure / save_summary."""
    _, rec = io.load_result(path)
    return rec


# ---- REPORT.md section ------------------------------------------------------------------------------------


def _pm(v, se, fmt: str = ".2f") -> str:
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:{fmt}}" + ("" if se is None or not np.isfinite(se) or se == 0 else f" ± {se:{fmt}}")


def _nc(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _measured_table(pr: dict, other: dict | None, ns) -> list[str]:
    """Rows n | measured (both readings) | the theory curves on the grid."""
    g = pr.get("grid", {})
    head = ["n", "measured (zoo)", "measured (hull)", "formula", "+ computed O(1), n → ∞", "+ data term",
            "+ zero-column volume at n (all computed)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, n in enumerate(ns):
        vals = [f"{int(n)}", _pm(pr["dF"][i], pr["se"][i]),
                _pm(other["dF"][i], other["se"][i]) if other is not None else "-"]
        vals += [_pm(g[k][i], None) if k in g else "-" for k in ("paper", "laplace", "data", "finite")]
        rows.append("| " + " | ".join(vals) + " |")
    return rows


def _fit_rows(pr: dict) -> list[str]:
    f = pr["fits"]
    names = dict(free="dlambda, dc fitted (dL from the zoo)", free_data="the same, data term of each data set "
                 "subtracted first", remainder="remainder beyond the formula (dlambda from theory)",
                 remainder_laplace="remainder beyond formula + computed O(1)",
                 remainder_laplace_data="remainder beyond formula + computed O(1) + data term",
                 remainder_all="remainder beyond all computed terms (zero-column volume at n)")
    rows = ["| fit | dlambda | dc | chi2 / dof |", "|---|---|---|---|",
            f"| theory (zoo) | {pr['dlam']:.2f} | {pr['dc_paper']:.2f} (formula: \u0394‖w*‖²/2); "
            f"{_pm(pr['dc_laplace'], None)} (all computed O(1) terms) | - |"]
    for key, name in names.items():
        if key in f:
            r = f[key]
            dl = _pm(r["dlam"], r["dlam_se"]) if key.startswith("free") else "(theory)"
            rows.append(f"| {name} | {dl} | {_pm(r['dc'], r['dc_se'])} | {_pm(r['chi2'], None, '.1f')} / {r['dof']} |")
    return rows


def _which_term(pr: dict) -> list[str]:
    """The split of F(alpha) - F(beta) at the observed crossing, and the sentence saying
    which term moves the crossing."""
    terms = [(k, float(v)) for k, v in pr["terms"]]
    rows = [f"Split of F_n({pr['rep_alpha']}) − F_n({pr['rep_beta']}) at n = {pr['n_star']:.0f} "
            "(the observed crossing, where the measured difference is 0):", "",
            "| term | nats |", "|---|---|"] + [f"| {k} | {v:+.2f} |" for k, v in terms]
    total = sum(v for _, v in terms)
    rows.append(f"| **sum** | **{total:+.2f}** |")
    o1 = [(k, v) for k, v in terms[2:]]  # beyond the formula (its asymptotic part and prior)
    if o1:
        k, v = max(o1, key=lambda kv: abs(kv[1]))
        nc = pr["n_c"]
        rows += ["", f"Which term moves the crossing: the lab's formula (asymptotic part + prior) puts n_c at "
                 f"{_nc(nc['paper'])}; the O(1) terms it drops add {sum(x for _, x in o1):+.2f} nats at n = "
                 f"{pr['n_star']:.0f}, the largest being {k} ({v:+.2f}). With the computed O(1) terms n_c = "
                 f"{_nc(nc['laplace'])}, adding the data term n_c = {_nc(nc['laplace+data'])}, with every computed "
                 f"term (zero-column volume at n) n_c = {_nc(nc.get('all computed'))}; formula + measured constant "
                 f"n_c = {_nc(nc['measured O(1)'])}; fitted dlambda and dc n_c = {_nc(nc['fit'])}; "
                 f"observed {_nc(nc['observed'])}."]
    return rows


def _lambda_rows(rows: list[dict]) -> list[str]:
    out = ["| phase | lambda (zoo theory) | lambda (SGLD) | lambda (Bayes, ladder) | n beta range |",
           "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['label']}` | {_pm(r['theory'], None, '.1f')} | {_pm(r['sgld'], r['sgld_se'])} | "
                   f"{_pm(r['bayes'], r['bayes_se'])} | {r['nbeta_min']:.0f}..{r['nbeta_max']:.0f} |")
    return out


def report_section(result: dict) -> list[str]:
    """Markdown lines of a REPORT.md section: the measured free-energy differences of the
    primary pairs (both readings), the fits, the crossings, the term that moves the
    crossing, and lambda three ways. result: measure(...) or load_summary(path)."""
    st, ns = result["settings"], np.asarray(result["ns"], float)
    sw = st["sweep"]
    lines = [f"## Measured free energies (c = {st['c']})", "",
             "F_n(alpha) − F_n(beta) = −log(P_alpha / P_beta) from the posterior phase masses (replica exchange, "
             f"K = {sw['n_temps']} temperatures, R = {sw['replicas']} ladders per data set, "
             f"S = {sw['seeds']} data sets per n, likelihood inverse temperature {st['beta_lik']:g}); "
             "error bars: delta method over the ladders, "
             "pooled over data sets (max of the across-data-set and Monte Carlo s.e.). The lab's formula is "
             "n dL + dlambda log n + d(‖w*‖²/2); the other O(1) terms are computed here (orbit multiplicity, "
             "Hessian determinant, O(2) orbit length, prior mass of the flat zero-column region) and the data term "
             "(the posterior picks the copy of the critical set with the lowest empirical loss) is exact per data "
             "set.", ""]
    zoo_p = {(p["alpha"], p["beta"]): p for p in result["readings"]["zoo"]["primary"]}
    hull_p = {(p["alpha"], p["beta"]): p for p in result["readings"]["hull"]["primary"]}
    for key, pr in zoo_p.items():
        if not pr.get("theory"):
            continue
        lines += [f"### F_n({key[0]}) − F_n({key[1]})", ""] + _measured_table(pr, hull_p.get(key), ns) + [""]
        lines += _fit_rows(pr) + [""] + _which_term(pr) + [""]
    lines += ["### lambda three ways", "", "Bayes: slope of E_beta[n L_n | phase] against 1/beta on ladders confined "
              f"to the phase (n = {st['lam']['n']}, jackknife over ladders); SGLD: at the zoo point, population loss, "
              f"n beta = n / log n, n = {st['sgld']['n']}.", ""] + _lambda_rows(result["lambda_table"]) + [""]
    return lines
