"""`tms loss`: the exact population loss (and gradient norm) of a given point."""
from __future__ import annotations

import json

import torch

from tms.loss import batched_grad, population_loss

NAME = "loss"
HELP = "exact population loss of a point W (r x c) and b (c)"


def add_arguments(p) -> None:
    p.add_argument("--W", required=True, help='JSON nested list, r rows of c entries, e.g. "[[1,0,-1,0],[0,1,0,-1]]"')
    p.add_argument("--b", help="JSON list of c biases (default zeros)")


def _parse(text: str, name: str) -> torch.Tensor:
    try:
        return torch.tensor(json.loads(text), dtype=torch.float64)
    except (json.JSONDecodeError, TypeError, ValueError, RuntimeError):
        raise ValueError(f"--{name} must be a JSON list of numbers, got {text!r}") from None


def run(args) -> int:
    W = _parse(args.W, "W")
    if W.dim() != 2:
        raise ValueError(f"--W must be a 2-D list (r rows of c entries), got shape {tuple(W.shape)}")
    b = _parse(args.b, "b") if args.b else torch.zeros(W.shape[1], dtype=torch.float64)
    L, gW, gb = batched_grad(population_loss, W, b)
    gnorm = torch.cat([gW.flatten(), gb.flatten()]).norm().item()
    print(f"population loss L = {L.item():.15g}")
    print(f"|grad L|          = {gnorm:.3e}")
    return 0
