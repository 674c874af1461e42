"""`tms loss`: the exact population loss (and gradient norm) of a given point."""
from __future__ import annotations

import json

import torch

from tms import checks
from tms.loss import batched_grad, population_loss

NAME = "loss"
HELP = "exact population loss of a point W (r x c) and b (c)"


def add_arguments(p) -> None:
    p.add_argument("--W", required=True, help='JSON nested list, r rows of c entries, e.g. "[[1,0,-1,0],[0,1,0,-1]]"')
    p.add_argument("--b", help="JSON list of c biases (default zeros)")


MAX_C = 1000  # features: the closed-form loss is O(c^2) terms, instant up to here


def _numbers_only(x) -> bool:
    """Leaves of a parsed JSON value are numbers (true/false/null and strings are not)."""
    if isinstance(x, list):
        return all(_numbers_only(v) for v in x)
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _parse(text: str, name: str) -> torch.Tensor:
    try:
        value = json.loads(text)
        if not isinstance(value, list) or not _numbers_only(value):
            raise TypeError
        return torch.tensor(value, dtype=torch.float64)
    except (json.JSONDecodeError, TypeError, ValueError, RuntimeError, OverflowError):
        raise ValueError(f"--{name} must be a JSON list of numbers, got {text!r}") from None


def run(args) -> int:
    W = _parse(args.W, "W")
    if W.dim() != 2 or 0 in W.shape:
        raise ValueError(f"--W must be a 2-D list (r >= 1 rows of c >= 1 entries), got shape {tuple(W.shape)}")
    r, c = W.shape
    if r > c:
        raise ValueError(f"--W has r = {r} rows and c = {c} columns; the TMS needs r <= c (r hidden dims, c features)")
    if c > MAX_C:
        raise ValueError(f"--W has c = {c} columns; at most {MAX_C} supported")
    b = _parse(args.b, "b") if args.b else torch.zeros(c, dtype=torch.float64)
    if b.dim() != 1:
        raise ValueError(f"--b must be a flat list of c = {c} biases, got shape {tuple(b.shape)}")
    checks.params(W, b)
    dev = checks.device(args.device)
    L, gW, gb = batched_grad(population_loss, W.to(dev), b.to(dev))
    gnorm = torch.cat([gW.flatten(), gb.flatten()]).norm().item()
    print(f"population loss L = {L.item():.15g}")
    print(f"|grad L|          = {gnorm:.3e}")
    return 0
