"""Reference phase classifier: a plain Python loop per item (the oracle of
tms.theory.phases.classify)."""
from __future__ import annotations

import math

import numpy as np

from tms.theory import zoo
from tms.theory.phases import OTHER


def classify_reference(W, b, *, zero_tol: float = 0.3, plus_tol: float = 0.0, off_ratio: float = 0.8,
                       angle_tol: float = 0.35, norm_tol: float = 0.5) -> np.ndarray:
    """Slow per-item reference of `classify` (plain Python loop, for tests and benchmarks)."""
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    c = W.shape[-1]
    shape = np.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    Wf = np.broadcast_to(W, shape + W.shape[-2:]).reshape(-1, 2, c)
    bf = np.broadcast_to(b, shape + (c,)).reshape(-1, c)
    valid = {(k, s, p): zoo.make_label(k, s, p) for k, s, p in zoo.family_members(c)}

    def polygon(cols):  # do the (angle, norm) pairs form a regular k-gon?
        k = len(cols)
        if k < 3 or max(n for _, n in cols) > (1 + norm_tol) * min(n for _, n in cols):
            return False
        angles = sorted(a for a, _ in cols)
        gaps = [angles[i + 1] - angles[i] for i in range(k - 1)] + [angles[0] + 2 * math.pi - angles[-1]]
        return all(abs(g - 2 * math.pi / k) <= angle_tol * 2 * math.pi / k for g in gaps)

    out = []
    for Wi, bi in zip(Wf, bf):
        s = 0
        on, dead = [], []  # (angle, norm) of firing and of switched-off nonzero columns
        for col in range(c):
            x, y = Wi[0, col], Wi[1, col]
            n = math.hypot(x, y)
            if n < zero_tol:
                s += bi[col] > plus_tol
            elif bi[col] < -off_ratio * n * n:
                dead.append((math.atan2(y, x), n))
            else:
                on.append((math.atan2(y, x), n))
        label = OTHER
        if (len(on) + len(dead), s, len(dead)) in valid and polygon(on + dead):
            label = valid[(len(on) + len(dead), s, len(dead))]
        elif (len(on), s, 0) in valid and polygon(on):
            label = valid[(len(on), s, 0)]
        out.append(label)
    return np.array(out, dtype=str).reshape(shape)
