"""The LLC of each plateau and the Bayesian antecedents of SGD transitions (SPEC 3, 4).

A dynamical transition alpha -> beta with dL < 0 has a Bayesian counterpart when the
posterior also moves alpha -> beta as n grows, i.e. when n dL + dlambda log n + dc = 0 has a
root n_c (tms.theory.zoo.critical_sample_size; without the prior term dc this needs
dlambda > e |dL|, in particular dlambda > 0). lambda is the zoo's theory where it has one
and the SGLD estimate on the plateaus (`plateau_llc`) otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tms.dynamics.transitions import Segmentation
from tms.theory import zoo


@dataclass(frozen=True)
class PlateauLLC:
    """The estimated LLC of one plateau label: mean over its plateaus, the standard error
    across them (one plateau: the propagated error of its mean), how many plateaus and
    trustworthy estimates went in."""

    mean: float
    se: float
    n_plateaus: int
    n_estimates: int


def plateau_llc(seg: Segmentation, llc_index, llc, llc_se, ok) -> dict[str, PlateauLLC]:
    """Estimated LLC of each plateau label from LLC estimates at checkpoints.

    llc_index: (T',) checkpoint indices of the estimates; llc, llc_se, ok: (T', R) estimate,
    its standard error and whether it is trustworthy (tms.llc.estimator diagnostics). Each plateau's
    value is the mean of its trustworthy estimates; a label's value is the mean over its
    plateaus with the standard error across plateaus (or, for one plateau, the propagated
    error of its mean). Returns {label: PlateauLLC} for the labels with an estimate.
    """
    idx = np.asarray(llc_index)
    llc, llc_se, ok = (np.asarray(a) for a in (llc, llc_se, ok))
    per: dict[str, list] = {}
    for p in seg.plateaus:
        j = np.nonzero((idx >= p.start) & (idx <= p.end) & ok[:, p.run])[0]
        if len(j):
            v, s = llc[j, p.run], llc_se[j, p.run]
            per.setdefault(p.label, []).append((v.mean(), math.sqrt(float((s**2).mean()) / len(j)), len(j)))
    out = {}
    for lab, vals in per.items():
        m = np.array([v[0] for v in vals])
        se = m.std(ddof=1) / math.sqrt(len(m)) if len(m) > 1 else vals[0][1]
        out[lab] = PlateauLLC(float(m.mean()), float(se), len(m), int(sum(v[2] for v in vals)))
    return out


@dataclass
class Antecedent:
    """One observed SGD transition src -> dst (all runs) and its Bayesian counterpart (SPEC 3-4).

    lam_*: lambda used (zoo theory where it has one, else the plateau estimate), *_se its s.e.
    and *_from "theory" | "estimate" | "none"; lam_*_est: the plateau estimate whatever the
    source (a check of the estimator where theory exists). n_c: predicted critical sample
    size (None: no root). antecedent: "yes" | "no" | "uphill" | "unknown", plus
    " (sign uncertain)" when |dlambda| < 2 s.e. geometry_*: share of the plateau checkpoints
    that tms.theory.phases.classify gives the level's label (None when not computed).
    """

    src: str
    dst: str
    count: int
    first_step: int
    median_step: float
    L_src: float
    L_dst: float
    dL: float
    lam_src: float | None
    lam_src_se: float | None
    lam_src_from: str
    lam_dst: float | None
    lam_dst_se: float | None
    lam_dst_from: str
    lam_src_est: float | None
    lam_src_est_se: float | None
    lam_dst_est: float | None
    lam_dst_est_se: float | None
    dlambda: float | None
    dlambda_se: float | None
    dc: float
    n_c: float | None
    antecedent: str
    geometry_src: float | None = None
    geometry_dst: float | None = None


def _lambda_source(q, llc_est: dict[str, PlateauLLC]) -> tuple[float | None, float | None, str]:
    """(lambda, s.e., source) of zoo point q: theory where the zoo has it, else the estimate."""
    if q.llc is not None:
        return float(q.llc), 0.0, "theory"
    if q.label in llc_est:
        return float(llc_est[q.label].mean), float(llc_est[q.label].se), "estimate"
    return None, None, "none"


def antecedent(a: zoo.CriticalPoint, b: zoo.CriticalPoint, steps: list[int],
               llc_est: dict[str, PlateauLLC] | None = None, *, prior: bool = True,
               beta_lik: float = 1.0) -> Antecedent:
    """The Antecedent row of the transitions a -> b between zoo points observed at `steps`
    (SPEC 3-4); llc_est as in `antecedent_table`."""
    llc_est = dict(llc_est or {})
    la, sa, ta = _lambda_source(a, llc_est)
    lb, sb, tb = _lambda_source(b, llc_est)
    dL = b.loss - a.loss
    dlam = None if la is None or lb is None else lb - la
    dse = None if dlam is None else math.hypot(sa, sb)
    n_c = None if dlam is None else zoo.critical_sample_size(a, b, prior, la, lb, beta_lik)
    if dlam is None:
        verdict = "unknown"
    elif not dL < 0:
        verdict = "uphill"
    else:
        verdict = ("yes" if n_c is not None else "no") + (" (sign uncertain)" if dse and abs(dlam) < 2 * dse else "")
    est = {k: (llc_est[k].mean, llc_est[k].se) if k in llc_est else (None, None) for k in (a.label, b.label)}
    return Antecedent(src=a.label, dst=b.label, count=len(steps), first_step=int(min(steps)),
                      median_step=float(np.median(steps)), L_src=a.loss, L_dst=b.loss, dL=dL,
                      lam_src=la, lam_src_se=sa, lam_src_from=ta, lam_dst=lb, lam_dst_se=sb, lam_dst_from=tb,
                      lam_src_est=est[a.label][0], lam_src_est_se=est[a.label][1],
                      lam_dst_est=est[b.label][0], lam_dst_est_se=est[b.label][1],
                      dlambda=dlam, dlambda_se=dse, dc=(b.prior - a.prior) if prior else 0.0, n_c=n_c, antecedent=verdict)


def antecedent_table(seg: Segmentation, c: int, llc_est: dict[str, PlateauLLC] | None = None, *, prior: bool = True,
                     beta_lik: float = 1.0) -> tuple[list[Antecedent], list[zoo.TransitionRow]]:
    """The Bayesian-antecedent table of the observed SGD transitions (one Antecedent per
    (src, dst), most frequent first), and the Bayesian transitions out of visited phases
    that SGD never made (with a finite n_c).

    llc_est: estimated LLCs per label (e.g. `plateau_llc`); the zoo's theoretical lambda is
    used where it has one (exact, se 0), the estimate otherwise. beta_lik: the likelihood's
    inverse temperature in n_c (SPEC 3).
    """
    llc_est = dict(llc_est or {})
    pts = {q.label: q for q in zoo.critical_points(c)}
    groups: dict[tuple, list] = {}
    for t in seg.transitions:
        groups.setdefault((t.src, t.dst), []).append(t.step)
    rows = [antecedent(pts[src], pts[dst], steps, llc_est, prior=prior, beta_lik=beta_lik)
            for (src, dst), steps in sorted(groups.items(), key=lambda kv: -len(kv[1]))]
    visited = {p.label for p in seg.plateaus}
    llcs = {k: v.mean for k, v in llc_est.items() if pts.get(k) is not None and pts[k].llc is None}
    unseen = [r for r in zoo.transition_table(c, llcs, prior, beta_lik)
              if r.alpha in visited and (r.alpha, r.beta) not in groups and r.n_c is not None]
    return rows, unseen


def _format_row(r: Antecedent) -> str:
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731

    def lam(v, se, src):
        return "-" if v is None else (f"{v:.2f}" if src == "theory" else f"{v:.2f}+-{se:.2f}*")

    dl = "-" if r.dlambda is None else (f"{r.dlambda:.2f}" + (f"+-{r.dlambda_se:.2f}" if r.dlambda_se else ""))
    geo = (f"   [geometry {100 * r.geometry_src:.0f}% / {100 * r.geometry_dst:.0f}%]"
           if r.geometry_src is not None and r.geometry_dst is not None else "")
    return (f"{r.src + ' -> ' + r.dst:>14} {r.count:5d} {r.median_step:11.0f} {r.dL:9.5f} "
            f"{lam(r.lam_src, r.lam_src_se, r.lam_src_from):>11} {lam(r.lam_dst, r.lam_dst_se, r.lam_dst_from):>11} "
            f"{dl:>12} {f(r.n_c, '9.1f'):>9}  {r.antecedent}{geo}")


def format_antecedents(rows: list[Antecedent], unseen: list[zoo.TransitionRow], max_unseen: int = 15) -> str:
    """The antecedent table as text."""
    out = [f"{'transition':>14} {'count':>5} {'median step':>11} {'dL':>9} {'lam src':>11} {'lam dst':>11} "
           f"{'dlambda':>12} {'n_c':>9}  antecedent"]
    out += [_format_row(r) for r in rows] or ["  (no transitions observed)"]
    out.append("lambda: theory = zoo rank/2 (minimally singular points); * = SGLD estimate on the plateaus")
    if any(r.geometry_src is not None for r in rows):
        out.append("geometry: share of src / dst plateau checkpoints that tms.theory.phases.classify gives the level's label "
                   "(low: the loss sits on the level but the parameters are not that zoo point)")
    checked = {}
    for r in rows:
        for side in ("src", "dst"):
            if getattr(r, f"lam_{side}_from") == "theory" and getattr(r, f"lam_{side}_est") is not None:
                checked[getattr(r, side)] = (f"  check: {getattr(r, side)} theory {getattr(r, f'lam_{side}'):.2f}, "
                                             f"plateau estimate {getattr(r, f'lam_{side}_est'):.2f}"
                                             f"+-{getattr(r, f'lam_{side}_est_se'):.2f}")
    out.extend(checked.values())
    out.append(f"Bayesian transitions out of visited phases never seen in SGD ({len(unseen)}):")
    for r in unseen[:max_unseen]:
        out.append(f"{r.alpha + ' -> ' + r.beta:>14} dL {r.dL:9.5f}  dlambda {r.dlambda:6.2f}  n_c {r.n_c:9.1f}")
    if len(unseen) > max_unseen:
        out.append(f"  ... {len(unseen) - max_unseen} more (saved in the result)")
    return "\n".join(out)
