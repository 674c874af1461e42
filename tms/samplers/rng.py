"""Counter-based random numbers shared by every sampler: a number is a pure function of
(item key, counter, stream, index), so an item sees the same numbers whatever else is in the
batch (DESIGN: same seed, same numbers whatever the batch layout).

Streams in use: 0-4 SGLD (noise, minibatches, MALA probe); 10 HMC rounds (one draw per
trajectory: momentum, Metropolis uniform, length); 14 the initial step-size search; 20-21
replica swaps; 30-31 starting points.
"""
import math

import torch

from tms.samplers.sgld import _code, _mix32, _tcode, item_keys, normal, seed_from, uniform  # noqa: F401


def uniform_at(keys, counters, stream: int, m: int):
    """U(0, 1] numbers (float64) at per-item counters: keys (B,), counters (B, M) int64 ->
    (B, M, m), entry [i, k, j] a pure function of (keys[i], counters[i, k], stream, j)."""
    kt = _mix32(keys.unsqueeze(-1) ^ _tcode(counters))
    ks = _mix32(kt ^ _code(stream)).unsqueeze(-1)
    h = _mix32(ks ^ _mix32(torch.arange(m, device=keys.device) * 2 + 1))
    return (h.to(torch.float64) + 1.0) / 4294967296.0


def normals_from(u, d: int):
    """Box-Muller, both branches: (..., 2 * ceil(d / 2)) uniforms -> (..., d) normals."""
    h = (d + 1) // 2
    r = torch.sqrt(-2.0 * torch.log(u[..., :h]))
    a = 2.0 * math.pi * u[..., h : 2 * h]
    return torch.cat([r * torch.cos(a), r * torch.sin(a)], -1)[..., :d]


def keys_from(base, shape: tuple[int, ...]):
    """Keys (*base.shape, *shape): item (b, i_1..i_k) -> hash(base[b], i_1, ..., i_k).

    base: int64 keys of independent groups (e.g. one per data set, from its own seed), so an
    item's key depends on its group's base and its index inside the group only."""
    key = base.reshape(tuple(base.shape) + (1,) * len(shape)).expand(tuple(base.shape) + tuple(shape))
    for axis, size in enumerate(shape):
        view = [1] * (base.dim() + len(shape))
        view[base.dim() + axis] = size
        key = _mix32(key ^ _mix32(torch.arange(size, device=base.device).reshape(view) + 0x632BE5AB))
    return key
