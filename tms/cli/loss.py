"""`tms loss`: the exact population loss (and gradient norm) of a given point: a shell over
tms.experiments.loss.run."""
from __future__ import annotations

import json

import torch

from tms.experiments import loss

NAME = "loss"
HELP = "exact population loss of a point W (r x c) and b (c)"


def add_arguments(p) -> None:
    p.add_argument("--W", required=True, help='JSON nested list, r rows of c entries, e.g. "[[1,0,-1,0],[0,1,0,-1]]"')
    p.add_argument("--b", help="JSON list of c biases (default zeros)")



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
    res = loss.run(_parse(args.W, "W"), _parse(args.b, "b") if args.b else None, device=args.device)
    print(f"population loss L = {res.loss:.15g}")
    print(f"|grad L|          = {res.grad_norm:.3e}")
    return 0
