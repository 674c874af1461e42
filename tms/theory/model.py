"""The TMS network f(x; W, b) = ReLU(W^T W x + b) (SPEC 1), batched over leading dims."""
from __future__ import annotations

from typing import NamedTuple

import torch
from einops import einsum

from tms.core import checks


class Params(NamedTuple):
    """W: (..., r, c) embeddings (column i embeds feature i); b: (..., c) output bias."""

    W: torch.Tensor
    b: torch.Tensor


def forward(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """f(x; W, b) = ReLU(W^T W x + b).

    W: (..., r, c), b: (..., c), x: (..., n, c) or (n, c); batch dims broadcast.
    Returns (..., n, c).
    """
    checks.params(W, b)
    checks.tensor(x, "x", min_dim=2)
    if x.shape[-1] != W.shape[-1]:
        raise ValueError(f"x must have shape (..., n, c) with c = {W.shape[-1]}, got {tuple(x.shape)}")
    h = einsum(W, x, "... r c, ... n c -> ... n r")
    out = einsum(W, h, "... r c, ... n r -> ... n c") + b.unsqueeze(-2)
    return torch.relu(out)


def init_params(
    r: int,
    c: int,
    batch_shape: tuple[int, ...] = (),
    *,
    sigma: float = 1.0,
    seed: int | torch.Generator = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Params:
    """Random start: W ~ N(0, sigma^2) entrywise, b = 0 (SPEC 4 random initialisation).

    Returns Params with W (*batch_shape, r, c) and b (*batch_shape, c).
    """
    checks.positive_int(r, "r")
    checks.positive_int(c, "c")
    checks.positive_float(sigma, "sigma", allow_zero=True)
    gen = checks.generator(seed, "seed")
    shape = tuple(batch_shape)
    W = sigma * torch.randn(shape + (r, c), generator=gen, dtype=dtype)
    b = torch.zeros(shape + (c,), dtype=dtype)
    if device is not None:
        W, b = W.to(device), b.to(device)
    return Params(W, b)
