"""Plateaus and transitions on SGD trajectories, and their Bayesian antecedents (SPEC 4).

A trajectory is the loss of R runs at T checkpoints (T, R). Each checkpoint is matched to
the nearest zoo energy level; a *plateau* is a stretch of checkpoints whose loss stays within
`tol` of one level for at least `min_points` checkpoints spanning a factor `min_span` in
step count (plateaus live on a log step axis), short excursions between two stretches on the
same level are merged, and a *transition* alpha -> beta is a pair of consecutive plateaus
of one run on different levels. The step of a transition is the first checkpoint of the
new plateau (its range is recorded too).

Bayesian antecedent (SPEC 3, 4): a dynamical transition alpha -> beta with dL < 0 has a
Bayesian counterpart when the posterior also moves alpha -> beta as n grows, i.e. when
dlambda > 0 so that n dL + dlambda log n + dc = 0 has a root n_c.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
import torch

from tms import checks


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
    step: int  # first checkpoint of the new plateau
    left_step: int  # last checkpoint of the old plateau
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


def nearest_level(loss, level_loss) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest level and the distance to it: loss (...) -> ((...), (...))."""
    loss = np.asarray(loss, dtype=np.float64)
    lv = np.asarray(level_loss, dtype=np.float64)
    d = np.abs(loss[..., None] - lv)
    k = d.argmin(-1)
    return k, np.take_along_axis(d, k[..., None], -1)[..., 0]


def segment(
    loss,
    steps,
    levels: Levels,
    *,
    tol: float,
    min_points: int = 3,
    min_span: float = 3.0,
) -> Segmentation:
    """Segment trajectories into plateaus on `levels` and transitions between them.

    loss: (T, R) or (T,) losses at checkpoints (the population loss is the natural choice:
      at an SGD plateau it sits O(1/n) above the level, the training loss O(n^-1/2) off);
    steps: (T,) increasing step counts; tol: absolute loss tolerance around a level (keep
      it below half the smallest gap between levels that should be told apart);
    min_points: fewest checkpoints on a plateau; min_span: (end_step + 1) / (start_step + 1)
      of a plateau must be at least this (a plateau is flat on a log step axis).
    """
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
    checks.positive_int(min_points, "min_points")
    if not (min_span >= 1.0):
        raise ValueError(f"min_span must be >= 1, got {min_span!r}")
    T, R = L.shape
    k, dist = nearest_level(L, levels.loss)
    on = dist <= tol
    lab = np.where(on, k, -1)  # (T, R)
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
        seg = L[s : e + 1, r]
        plateaus.append(Plateau(r, kk, levels.labels[kk], s, e, int(st[s]), int(st[e]), float(seg.mean())))
    transitions = [
        Transition(a.run, a.label, b.label, b.start_step, a.end_step, float(levels.loss[b.level] - levels.loss[a.level]))
        for a, b in zip(plateaus[:-1], plateaus[1:])
        if a.run == b.run and a.level != b.level
    ]
    settings = dict(tol=tol, min_points=min_points, min_span=min_span)
    return Segmentation(plateaus, transitions, k, on, R, settings)
