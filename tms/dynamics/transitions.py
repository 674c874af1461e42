"""Plateaus and transitions on SGD trajectories (SPEC 4).

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
The Bayesian antecedents of the transitions are in tms.dynamics.antecedents.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
import torch

from tms.core import checks
from tms.theory import phases, zoo


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


# ---- zoo levels, labels, checkpoints for the LLC -----------------------------------------


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


def census_levels(census, llcs: dict[str, float] | None = None, *, tie: float = 1e-9) -> Levels:
    """Levels of any (r, c) from a census (tms.theory.census.Census), for r != 2 where the zoo's
    levels do not apply: every census point (saddles too: SGD plateaus at them), points whose
    losses lie within `tie` sharing the level of the first (the census lists ties in the order
    found); llc: the census's rank/2, else llcs[label] (e.g. SGLD), else NaN."""
    labels, loss, llc, prior = [], [], [], []
    for q in census.points:
        if loss and q.loss - loss[-1] < tie:
            continue
        lam = q.llc if q.llc is not None else (llcs or {}).get(q.label)
        labels.append(q.label), loss.append(q.loss), llc.append(lam), prior.append(q.prior)
    return make_levels(labels, loss, llc, prior)


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


def choose_run(arr: dict) -> int:
    """The run with the most plateaus (ties: lowest final loss)."""
    runs = arr["plateau_run"]
    R = arr["pop_loss"].shape[1] if "pop_loss" in arr else int(runs.max()) + 1
    counts = np.bincount(runs, minlength=R) if len(runs) else np.zeros(R, int)
    final = arr["pop_loss"][-1] if "pop_loss" in arr else np.zeros(R)
    return int(np.lexsort((final, -counts))[0])
