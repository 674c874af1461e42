"""Input distributions (SPEC 1). Every sampler takes an explicit int seed (or a torch.Generator).

High-sparsity limit: x = mu * e_i with i ~ U{0..c-1}, mu ~ U[0, 1]; target y = x.
"""
from __future__ import annotations

import torch

from tms.core import checks


def sample_inputs(
    n: int,
    c: int,
    seed: int | torch.Generator,
    *,
    batch_shape: tuple[int, ...] = (),
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """n draws of the high-sparsity distribution: (*batch_shape, n, c), one nonzero per row."""
    checks.positive_int(n, "n")
    checks.positive_int(c, "c")
    gen = checks.generator(seed, "seed")
    shape = tuple(batch_shape) + (n,)
    idx = torch.randint(0, c, shape, generator=gen)
    mu = torch.rand(shape, generator=gen, dtype=dtype)
    X = torch.zeros(shape + (c,), dtype=dtype)
    X.scatter_(-1, idx.unsqueeze(-1), mu.unsqueeze(-1))
    return X


def sample_inputs_sparse(
    n: int,
    c: int,
    sparsity: float,
    seed: int | torch.Generator,
    *,
    batch_shape: tuple[int, ...] = (),
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The original TMS distribution: each feature active independently with probability
    1 - sparsity, with magnitude U[0, 1]. Returns (*batch_shape, n, c)."""
    checks.positive_int(n, "n")
    checks.positive_int(c, "c")
    if not (0.0 <= float(sparsity) <= 1.0):
        raise ValueError(f"sparsity must lie in [0, 1], got {sparsity!r}")
    gen = checks.generator(seed, "seed")
    shape = tuple(batch_shape) + (n, c)
    mag = torch.rand(shape, generator=gen, dtype=dtype)
    active = torch.rand(shape, generator=gen, dtype=dtype) >= sparsity
    return mag * active
