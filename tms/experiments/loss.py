"""`tms loss` as one Python function: the exact population loss (SPEC 1) of one point (W, b)
and the norm of its full gradient.

    from tms.experiments import loss
    loss.run([[1, 0, -1, 0], [0, 1, 0, -1]]).loss      # the 4-gon of c = 4: 0
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tms.core import checks
from tms.theory.loss import batched_grad, population_loss

MAX_C = 1000  # features: the closed form is O(c^2) terms, instant up to here


@dataclass(frozen=True)
class PointLoss:
    """loss: L(W, b), the unhalved population loss (SPEC 1); grad_norm: |grad L| over all
    r*c + c coordinates; r, c: the point's shape."""

    loss: float
    grad_norm: float
    r: int
    c: int


def run(W, b=None, *, device=None) -> PointLoss:
    """L and |grad L| at one point: W (r, c) with r <= c <= MAX_C (nested lists or a tensor),
    b (c,) (default zeros), in float64 on `device`. A loss or gradient that overflows to
    inf / NaN is a ValueError (never a printed nan)."""
    W = torch.as_tensor(W, dtype=torch.float64)
    if W.dim() != 2 or 0 in W.shape:
        raise ValueError(f"W must be 2-D (r >= 1 rows of c >= 1 entries), got shape {tuple(W.shape)}")
    r, c = W.shape
    if r > c:
        raise ValueError(f"W has r = {r} rows and c = {c} columns; the TMS needs r <= c (r hidden dims, c features)")
    if c > MAX_C:
        raise ValueError(f"W has c = {c} columns; at most {MAX_C} supported")
    b = torch.zeros(c, dtype=torch.float64) if b is None else torch.as_tensor(b, dtype=torch.float64)
    if b.dim() != 1:
        raise ValueError(f"b must be a flat list of c = {c} biases, got shape {tuple(b.shape)}")
    checks.params(W, b)
    dev = checks.device(device)
    L, gW, gb = batched_grad(population_loss, W.to(dev), b.to(dev))
    res = PointLoss(L.item(), torch.cat([gW.flatten(), gb.flatten()]).norm().item(), r, c)
    if not (math.isfinite(res.loss) and math.isfinite(res.grad_norm)):
        scale = max(W.abs().max().item(), b.abs().max().item())
        raise ValueError(f"L = {res.loss}, |grad L| = {res.grad_norm} at this point: float64 overflows with entries "
                         f"up to {scale:.3g}; a non-finite loss is no result")
    return res
