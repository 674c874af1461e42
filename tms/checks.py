"""Input validation shared by every module: one ValueError that names the argument.

DESIGN.md: bad shapes, n < 1, r > c, NaN parameters and nonsensical hyperparameters raise a
ValueError saying what was wrong and what was expected.
"""
from __future__ import annotations

import math

import torch


def tensor(x, name: str, *, min_dim: int = 0, finite: bool = True) -> torch.Tensor:
    """Check that ``x`` is a floating torch tensor with at least ``min_dim`` dims."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got shape {tuple(x.shape)}")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; expected finite values")
    return x


def params(W, b) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a (W, b) pair: W (..., r, c), b (..., c), finite, same dtype, r, c >= 1."""
    tensor(W, "W", min_dim=2)
    tensor(b, "b", min_dim=1)
    r, c = W.shape[-2:]
    if r < 1 or c < 1:
        raise ValueError(f"W must have shape (..., r, c) with r, c >= 1, got {tuple(W.shape)}")
    if b.shape[-1] != c:
        raise ValueError(
            f"b must have shape (..., c) with c = {c} matching W (..., r, c); got b {tuple(b.shape)}"
        )
    try:
        torch.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"batch dims of W {tuple(W.shape[:-2])} and b {tuple(b.shape[:-1])} do not broadcast"
        ) from None
    if W.dtype != b.dtype:
        raise ValueError(f"W and b must share a dtype, got {W.dtype} and {b.dtype}")
    return W, b


def positive_int(x, name: str, minimum: int = 1) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {x!r}")
    return x


def positive_float(x, name: str, *, allow_zero: bool = False) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {x!r}")
    return v


def generator(g, name: str = "generator") -> torch.Generator:
    if isinstance(g, int) and not isinstance(g, bool):
        gen = torch.Generator()
        gen.manual_seed(g)
        return gen
    if not isinstance(g, torch.Generator):
        raise ValueError(f"{name} must be a torch.Generator or an int seed, got {type(g).__name__}")
    return g
