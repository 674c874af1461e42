"""Plateaus and transitions on SGD trajectories, and their Bayesian antecedents (SPEC 4).

A trajectory is the loss of R runs at T checkpoints (T, R). Each checkpoint is matched to
the nearest zoo energy level. Plateaus live on a log step axis, so a checkpoint is *on* a
level when its loss is within `tol` of it AND the loss is flat there: its least-squares
slope over a window of `window` decades of steps is at most `slope_tol` per decade (a descent
that merely passes through a level's band moves by a whole level gap in a fraction of a
decade). A *plateau* is a stretch of on-level checkpoints of one level, at least
`min_points` long and spanning a factor `min_span` in step count; stretches on one level
separated by a short excursion are merged. A *transition* alpha -> beta is a pair of consecutive plateaus of one
run on different levels; its step is the first checkpoint between them where the loss is
past the midpoint of the two levels (the last step of the old plateau and the first of the
new one are recorded too).

The loss level says which energy the run sits at, not which critical point: a plateau can
sit within `tol` of a level at parameters that are not that zoo point (seen from random
starts: 6 features on 5 directions, just above the 5-gon level). `label_checkpoints` adds
the geometric label of tms.theory.phases.classify as a check; `tms transitions` reports both.

Bayesian antecedent (SPEC 3, 4): a dynamical transition alpha -> beta with dL < 0 has a
Bayesian counterpart when the posterior also moves alpha -> beta as n grows, i.e. when
n dL + dlambda log n + dc = 0 has a root n_c (tms.theory.zoo.critical_sample_size; without the
prior term dc this needs dlambda > e |dL|, in particular dlambda > 0).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from tms.core import checks, io
from tms.dynamics import tasks
from tms.theory import phases, zoo
from tms.llc.estimator import default_nbeta
from tms.core.records import Antecedent


class Levels(NamedTuple):
    """Zoo energy levels, ascending in loss.

    labels: K family labels; loss: (K,) population losses; llc: (K,) theoretical learning
    coefficients (NaN where the zoo has none, e.g. 4-gons); prior: (K,) prior terms c_alpha.
    """

    labels: list
    loss: np.ndarray
    llc: np.ndarray
    prior: np.ndarray


def make_levels(labels: Sequence[str], loss, llc=None, prior=None) -> Levels:
    """Levels from plain lists (sorted by loss). llc / prior default to NaN / 0."""
    loss = np.asarray(loss, dtype=np.float64)
    K = len(loss)
    if len(labels) != K or K == 0:
        raise ValueError(f"labels and loss must be non-empty and of equal length, got {len(labels)} and {K}")
    llc = np.full(K, np.nan) if llc is None else np.asarray([np.nan if v is None else v for v in llc], dtype=np.float64)
    prior = np.zeros(K) if prior is None else np.asarray(prior, dtype=np.float64)
    order = np.argsort(loss, kind="stable")
    return Levels([labels[i] for i in order], loss[order], llc[order], prior[order])


class Plateau(NamedTuple):
    run: int
    level: int  # index into Levels
    label: str
    start: int  # first checkpoint index
    end: int  # last checkpoint index (inclusive)
    start_step: int
    end_step: int
    mean_loss: float


class Transition(NamedTuple):
    run: int
    src: str
    dst: str
    step: int  # first checkpoint between the plateaus with the loss past the midpoint of the levels
    left_step: int  # last checkpoint of the old plateau
    arrive_step: int  # first checkpoint of the new plateau
    dL: float  # level loss difference L(dst) - L(src)


@dataclass
class Segmentation:
    """Result of `segment`: plateaus and transitions of every run, and per-checkpoint labels.

    level_index: (T, R) nearest level of every checkpoint; on_level: (T, R) within tol.
    """

    plateaus: list
    transitions: list
    level_index: np.ndarray
    on_level: np.ndarray
    n_runs: int
    settings: dict = field(default_factory=dict)

    def sequences(self) -> list[tuple[str, ...]]:
        """Per run, the labels of its plateaus in order (empty if none was found)."""
        seq = [[] for _ in range(self.n_runs)]
        for p in self.plateaus:
            seq[p.run].append(p.label)
        return [tuple(s) for s in seq]

    def sequence_counts(self) -> Counter:
        """How many runs followed each plateau sequence (runs that never leave their first
        plateau appear as 1-tuples, runs with no plateau as the empty tuple)."""
        return Counter(self.sequences())

    def transition_counts(self) -> Counter:
        return Counter((t.src, t.dst) for t in self.transitions)


def nearest_level_index(loss, level_loss) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest level and the distance to it: loss (...) -> ((...), (...))."""
    loss = np.asarray(loss, dtype=np.float64)
    lv = np.asarray(level_loss, dtype=np.float64)
    d = np.abs(loss[..., None] - lv)
    k = d.argmin(-1)
    return k, np.take_along_axis(d, k[..., None], -1)[..., 0]


def log_slope(L: np.ndarray, steps: np.ndarray, window: float) -> np.ndarray:
    """Least-squares slope dL / dlog10(step + 1) of every run over the checkpoints within
    `window` decades centred on each checkpoint (at least its two neighbours; the window is
    clipped at the ends of the run). Vectorised with prefix sums.

    L: (T, R), steps: (T,) -> (T, R).
    """
    x = np.log10(np.asarray(steps, dtype=np.float64) + 1.0)
    T = len(x)
    if T < 2:
        return np.zeros_like(L)
    i0 = np.minimum(np.searchsorted(x, x - window / 2, side="left"), np.maximum(np.arange(T) - 1, 0))
    i1 = np.maximum(np.searchsorted(x, x + window / 2, side="right"), np.minimum(np.arange(T) + 2, T))
    xc = x - x.mean()  # better conditioned sums

    def csum(v):
        return np.concatenate([np.zeros((1,) + v.shape[1:]), np.cumsum(v, 0)])

    def wsum(v):
        c = csum(v)
        return c[i1] - c[i0]

    n = (i1 - i0).astype(np.float64)[:, None]
    sx, sxx = wsum(xc)[:, None], wsum(xc**2)[:, None]
    sy, sxy = wsum(L), wsum(xc[:, None] * L)
    den = n * sxx - sx**2
    return np.where(den > 0, (n * sxy - sx * sy) / np.where(den > 0, den, 1.0), 0.0)


def segment(
    loss,
    steps,
    levels: Levels,
    *,
    tol: float,
    slope_tol: float | None = None,
    window: float = 0.3,
    min_points: int = 3,
    min_span: float = 1.25,
) -> Segmentation:
    """Segment trajectories into plateaus on `levels` and transitions between them.

    loss: (T, R) or (T,) losses at checkpoints (the population loss is the natural choice:
      at an SGD plateau it sits O(1/n) above the level, the training loss O(n^-1/2) off);
    steps: (T,) increasing step counts; tol: absolute loss tolerance around a level (keep
      it below half the smallest gap between levels that should be told apart);
    slope_tol: largest |dL / dlog10(step + 1)| on a plateau (default: 2 tol per decade; a
      passage through a level's band moves a whole level gap, >= 4 tol, in well under half a
      decade), the least-squares slope over `window` decades centred on the checkpoint;
    min_points: fewest checkpoints on a plateau; min_span: (end_step + 1) / (start_step + 1)
      of a plateau must be at least this.
    """
    L, st = _check_segment(loss, steps, tol, window, min_points, min_span)
    slope_tol = 2 * tol if slope_tol is None else checks.positive_float(slope_tol, "slope_tol")
    T, R = L.shape
    k, dist = nearest_level_index(L, levels.loss)
    on = (dist <= tol) & (np.abs(log_slope(L, st, window)) <= slope_tol)
    plateaus = _plateaus(L, st, np.where(on, k, -1), levels, min_points, min_span)
    transitions = [_transition(L, st, a, b, levels) for a, b in zip(plateaus[:-1], plateaus[1:])
                   if a.run == b.run and a.level != b.level]
    settings = dict(tol=tol, slope_tol=slope_tol, window=window, min_points=min_points, min_span=min_span)
    return Segmentation(plateaus, transitions, k, on, R, settings)


def _check_segment(loss, steps, tol, window, min_points, min_span) -> tuple[np.ndarray, np.ndarray]:
    """`segment`'s inputs checked: losses (T, R) float64 and steps (T,) int64."""
    L = np.asarray(loss.detach().cpu() if isinstance(loss, torch.Tensor) else loss, dtype=np.float64)
    if L.ndim == 1:
        L = L[:, None]
    st = np.asarray(steps.cpu() if isinstance(steps, torch.Tensor) else steps, dtype=np.int64)
    if L.ndim != 2 or st.ndim != 1 or len(st) != L.shape[0]:
        raise ValueError(f"loss must be (T, R) or (T,) with T = len(steps) = {len(st)}, got {L.shape}")
    if len(st) > 1 and bool((np.diff(st) <= 0).any()):
        raise ValueError("steps must be strictly increasing")
    if not np.isfinite(L).all():
        raise ValueError("loss contains NaN or inf")
    checks.positive_float(tol, "tol")
    checks.positive_float(window, "window")
    checks.positive_int(min_points, "min_points")
    if not (min_span >= 1.0):
        raise ValueError(f"min_span must be >= 1, got {min_span!r}")
    return L, st


def _plateaus(L, st, lab, levels: Levels, min_points: int, min_span: float) -> list[Plateau]:
    """Plateaus from per-checkpoint level labels lab (T, R) (-1: on no level), every run at once."""
    T, R = lab.shape
    # Run-length encoding of every run at once: a segment starts where the label changes.
    change = np.ones((T, R), dtype=bool)
    change[1:] = lab[1:] != lab[:-1]
    r_idx, starts = np.nonzero(change.T)  # ordered by run, then time
    ends = np.empty_like(starts)
    nxt_same_run = np.r_[r_idx[1:] == r_idx[:-1], False]
    ends[nxt_same_run] = starts[1:][nxt_same_run[:-1]] - 1
    ends[~nxt_same_run] = T - 1
    seg_lab = lab[starts, r_idx]
    span = (st[ends] + 1.0) / (st[starts] + 1.0)
    keep = (seg_lab >= 0) & (ends - starts + 1 >= min_points) & (span >= min_span)
    plateaus: list[Plateau] = []
    for s, e, r, kk in zip(starts[keep], ends[keep], r_idx[keep], seg_lab[keep]):
        s, e, r, kk = int(s), int(e), int(r), int(kk)
        if plateaus and plateaus[-1].run == r and plateaus[-1].level == kk:
            s = plateaus.pop().start  # an excursion between two stretches on one level: merge
        plateaus.append(Plateau(r, kk, levels.labels[kk], s, e, int(st[s]), int(st[e]), float(L[s : e + 1, r].mean())))
    return plateaus


def _transition(L, st, a: Plateau, b: Plateau, levels: Levels) -> Transition:
    """The transition between consecutive plateaus a, b of one run: its step is the first
    checkpoint with the loss past the midpoint of the two levels."""
    la, lb = levels.loss[a.level], levels.loss[b.level]
    seg = L[a.end : b.start + 1, a.run]
    past = (seg - (la + lb) / 2) * np.sign(lb - la) >= 0
    mid = a.end + int(np.argmax(past))  # past[-1] holds: b.start is within tol of lb
    return Transition(a.run, a.label, b.label, int(st[mid]), a.end_step, b.start_step, float(lb - la))


# ---- zoo levels, labels, LLC along trajectories ------------------------------------------


def zoo_levels(c: int, *, max_k: int | None = None) -> Levels:
    """Energy levels of the zoo at c, ascending in loss: the one table of
    tms.theory.phases.energy_levels, where families whose losses coincide share a level named by
    the one with the larger k (e.g. "4+,-" for the level it shares with "3+" at c = 6).
    max_k: leave out families with more than max_k polygon vertices.
    """
    labels = []
    for _, names in phases.energy_levels(c):
        kept = [lab for lab in names if max_k is None or zoo.parse_label(lab)[0] <= max_k]
        if kept:
            labels.append(kept[0])
    pts = [zoo.critical_point(c, lab) for lab in labels]
    return Levels(labels, np.array([q.loss for q in pts]), np.array([np.nan if q.llc is None else q.llc for q in pts]),
                  np.array([q.prior for q in pts]))


def label_checkpoints(W: torch.Tensor, b: torch.Tensor, loss, levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    """Two labels for every checkpoint of every run: the zoo family read off the geometry
    (tms.theory.phases.classify) and the nearest zoo energy level of its loss.

    W: (T, R, 2, c), b: (T, R, c), loss: (T, R) -> two numpy str arrays (T, R).
    """
    k, _ = nearest_level_index(loss.detach().cpu().numpy() if isinstance(loss, torch.Tensor) else loss, levels.loss)
    return np.asarray(phases.classify(W, b)).astype(str), np.asarray(levels.labels, dtype=str)[k]


def default_tol(levels: Levels, cap: float = 2e-3) -> float:
    """A quarter of the smallest gap between distinct levels, at most `cap`."""
    gaps = np.diff(levels.loss)
    gaps = gaps[gaps > 1e-12]
    return float(min(cap, 0.25 * gaps.min())) if len(gaps) else cap


def llc_checkpoints(steps, n_points: int) -> np.ndarray:
    """Indices of about n_points checkpoints: half spread evenly in log(step + 1) (the early
    staircase), half evenly in step (the late plateaus), the last one included."""
    st = np.asarray(steps, dtype=np.float64)
    checks.positive_int(n_points, "n_points")
    if n_points >= len(st):
        return np.arange(len(st))
    n_log = (n_points + 1) // 2
    target = np.r_[np.geomspace(1.0, st[-1] + 1.0, n_log) - 1.0, np.linspace(0, st[-1], n_points - n_log + 1)[1:]]
    idx = np.abs(st[None, :] - target[:, None]).argmin(-1)
    return np.unique(np.r_[idx, len(st) - 1])


# LLC at every checkpoint of every run in one batched call (SPEC 4 defaults: localized
# full-batch SGLD on the run's training set, eps 1e-3, gamma 1, 500 draws, nbeta = n/log n);
# with scheduler= or workers= the checkpoints go to Dask tasks (the same numbers).


# ---- LLC per plateau and the Bayesian-antecedent table -----------------------------------


def plateau_llc(seg: Segmentation, llc_index, llc, llc_se, ok) -> dict:
    """Estimated LLC of each plateau label from LLC estimates at checkpoints.

    llc_index: (T',) checkpoint indices of the estimates; llc, llc_se, ok: (T', R) estimate,
    its standard error and whether it is trustworthy (tms.llc.estimator diagnostics). Each plateau's
    value is the mean of its trustworthy estimates; a label's value is the mean over its
    plateaus with the standard error across plateaus (or, for one plateau, the propagated
    error of its mean). Returns {label: (mean, se, n_plateaus, n_estimates)}.
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
        out[lab] = (float(m.mean()), float(se), len(m), int(sum(v[2] for v in vals)))
    return out


def _lambda_source(q, llc_est: dict) -> tuple[float | None, float | None, str]:
    """(lambda, s.e., source) of zoo point q: theory where the zoo has it, else the estimate."""
    if q.llc is not None:
        return float(q.llc), 0.0, "theory"
    if q.label in llc_est:
        return float(llc_est[q.label][0]), float(llc_est[q.label][1]), "estimate"
    return None, None, "none"


def _antecedent(a, b, steps: list, llc_est: dict, prior: bool, beta_lik: float) -> Antecedent:
    """The Antecedent row of the observed transitions a -> b at `steps` (SPEC 3-4)."""
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
    est = {k: tuple(llc_est[k][:2]) if k in llc_est else (None, None) for k in (a.label, b.label)}
    return Antecedent(src=a.label, dst=b.label, count=len(steps), first_step=int(min(steps)),
                      median_step=float(np.median(steps)), L_src=a.loss, L_dst=b.loss, dL=dL,
                      lam_src=la, lam_src_se=sa, lam_src_from=ta, lam_dst=lb, lam_dst_se=sb, lam_dst_from=tb,
                      lam_src_est=est[a.label][0], lam_src_est_se=est[a.label][1],
                      lam_dst_est=est[b.label][0], lam_dst_est_se=est[b.label][1],
                      dlambda=dlam, dlambda_se=dse, dc=(b.prior - a.prior) if prior else 0.0, n_c=n_c, antecedent=verdict)


def antecedent_table(seg: Segmentation, c: int, llc_est: dict | None = None, *, prior: bool = True,
                     beta_lik: float = 1.0) -> tuple[list[Antecedent], list[dict]]:
    """The Bayesian-antecedent table of the observed SGD transitions (one Antecedent per
    (src, dst), most frequent first), and the Bayesian transitions out of visited phases
    that SGD never made (rows of tms.theory.zoo.transition_table).

    llc_est: {label: (mean, se, ...)} estimated LLCs (e.g. `plateau_llc`); the zoo's
    theoretical lambda is used where it has one (exact, se 0), the estimate otherwise.
    beta_lik: the likelihood's inverse temperature in n_c (SPEC 3).
    """
    llc_est = dict(llc_est or {})
    pts = {q.label: q for q in zoo.critical_points(c)}
    groups: dict[tuple, list] = {}
    for t in seg.transitions:
        groups.setdefault((t.src, t.dst), []).append(t.step)
    rows = [_antecedent(pts[src], pts[dst], steps, llc_est, prior, beta_lik)
            for (src, dst), steps in sorted(groups.items(), key=lambda kv: -len(kv[1]))]
    visited = {p.label for p in seg.plateaus}
    llcs = {k: v[0] for k, v in llc_est.items() if pts.get(k) is not None and pts[k].llc is None}
    unseen = [asdict(r) for r in zoo.transition_table(c, llcs, prior, beta_lik)
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


def format_antecedents(rows: list[Antecedent], unseen: list[dict], max_unseen: int = 15) -> str:
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
        out.append(f"{r['alpha'] + ' -> ' + r['beta']:>14} dL {r['dL']:9.5f}  dlambda {r['dlambda']:6.2f}  n_c {r['n_c']:9.1f}")
    if len(unseen) > max_unseen:
        out.append(f"  ... {len(unseen) - max_unseen} more (saved in the result)")
    return "\n".join(out)


# ---- the whole analysis of a `tms train` result (`tms transitions`) -------------------------


def geometry(seg: Segmentation, cls: np.ndarray) -> tuple[dict, dict]:
    """Cross-check of the level labels by geometry: per plateau label, the fraction of its
    checkpoints that tms.theory.phases.classify gives the same label, and what it says otherwise."""
    agree, other = {}, {}
    for p in seg.plateaus:
        got = cls[p.start : p.end + 1, p.run]
        agree.setdefault(p.label, []).extend((got == p.label).tolist())
        other.setdefault(p.label, Counter()).update(got[got != p.label].tolist())
    return {k: float(np.mean(v)) for k, v in agree.items()}, {k: dict(v.most_common(3)) for k, v in other.items()}


def segmentation_arrays(seg: Segmentation) -> dict:
    col = lambda name: np.array([getattr(p, name) for p in seg.plateaus], dtype=np.int64)  # noqa: E731
    return dict(level_index=seg.level_index, on_level=seg.on_level, plateau_run=col("run"),
                plateau_level=col("level"), plateau_start=col("start"), plateau_end=col("end"))


def checkpoint_llc(res, out: Path, *, llc_points: int, n_chains: int, n_burnin: int, n_draws: int, eps: float,
                   gamma: float, nbeta: float | None, seed: int, device=None, progress: bool = True,
                   scheduler: str | None = None, workers: int | None = None) -> tuple[dict, dict]:
    """LLC at about `llc_points` checkpoints of every run of a TrainResult, saved to OUT_llc
    and reused from there when its settings match: (arrays llc_index, llc, llc_se, llc_ok;
    settings). scheduler / workers: checkpoint blocks as Dask tasks (tms.dynamics.tasks.trajectory_llc,
    blocks in OUT_llc_blocks until merged; same numbers)."""
    n = int(res.record["n"])
    idx = llc_checkpoints(res.steps.numpy(), llc_points)
    nb = float(default_nbeta(n) if nbeta is None else nbeta)
    settings = dict(nbeta=nb, eps=eps, gamma=gamma, n_chains=n_chains, n_burnin=n_burnin, n_draws=n_draws, seed=seed,
                    loss="empirical (full batch, training set)", checkpoints=idx.tolist(), train=res.record)
    llc_path = out.with_name(out.stem + "_llc")
    if io.result_exists(llc_path) and io.same_settings(io.load_json(llc_path.with_suffix(".json")), settings):
        la, _ = io.load_result(llc_path)
    else:
        ii, dev = torch.from_numpy(idx), checks.device(device)
        lr = tasks.trajectory_llc(res.W[ii].to(dev), res.b[ii].to(dev), res.X.to(dev), nbeta=nb, eps=eps,
                                    gamma=gamma, n_chains=n_chains, n_burnin=n_burnin, n_draws=n_draws, seed=seed,
                                    progress=progress, scheduler=scheduler, workers=workers,
                                    out_dir=llc_path.with_name(llc_path.name + "_blocks"))
        la = dict(llc_index=idx, llc=lr.llc, llc_se=lr.llc_se, llc_ok=lr.trustworthy)
        io.save_result(llc_path, la, settings)
        la = {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in la.items()}
    return {k: np.asarray(la[k]) for k in ("llc_index", "llc", "llc_se", "llc_ok")}, settings


def choose_run(arr: dict) -> int:
    """The run with the most plateaus (ties: lowest final loss)."""
    runs = arr["plateau_run"]
    R = arr["pop_loss"].shape[1] if "pop_loss" in arr else int(runs.max()) + 1
    counts = np.bincount(runs, minlength=R) if len(runs) else np.zeros(R, int)
    final = arr["pop_loss"][-1] if "pop_loss" in arr else np.zeros(R)
    return int(np.lexsort((final, -counts))[0])
