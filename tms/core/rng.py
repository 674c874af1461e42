"""Counter-based random numbers: every number is a pure function of (key, counter, stream, index).

An item (a chain, a data set, a run) carries an int64 key derived from the seed and its own
index tuple, never from its position in a batch, so it sees the same numbers alone, batched,
chunked, resumed or on a Dask worker (docs/ARCHITECTURE.md, Randomness).

Keys. ``key(seed, *ids)`` hashes Python ints into one 32-bit key; ``keys_from(base, shape)``
gives the items below each base key their own keys (item (b, i_1..i_k) -> hash(base[b],
i_1, ..., i_k)); ``item_keys(seed, shape)`` is keys_from of key(seed). That is the one key
derivation; a family of keys that must differ from another's (the LLC's chains below their
centres) passes its own ``salt``.

Streams. The table below is every stream id and key family in the lab, in one place.
All hashing is int64 arithmetic that never overflows (32-bit values, 16-bit multiplies).
"""
from __future__ import annotations

import math

import torch

from tms.core import checks

# ---- the one table of streams (counter streams) and key families (ids hashed into keys) ----
SGLD_NOISE = 0        # SGLD noise: uniform streams 0 and 1 (Box-Muller)
MINIBATCH = 2         # SGLD minibatch rows
MALA_PROBE = 3        # the MALA acceptance probe's noise: uniform streams 3 and 4
HMC_MOMENTUM = 10     # HMC rounds: one draw per trajectory (momentum, Metropolis, length)
HMC_INIT_STEP = 14    # the initial step-size search
SWAP = 20             # replica swaps: uniform stream 20
START = 30            # chains' starting points (prior draws): uniform streams 30 and 31
POSTERIOR_LADDERS, POSTERIOR_PLAIN = 0, 1   # key families of a posterior data set's chains
FE_SWEEP, FE_LOCAL = 40, 41                 # key families of the free-energy sweep / local ladders
CENSUS_PRIOR, CENSUS_GD = 50, 51            # key families of the census's random starts (prior draws, descents)

AXIS_SALT = 0x632BE5AB   # keys_from: the salt of an item index
CHAIN_SALT = 0x2545F491  # LLC chains below their centre's key

_MASK32 = 0xFFFFFFFF
NOISE_BLOCK = 32  # steps of noise generated per call by the SGLD kernel


def _mul32(x: torch.Tensor, k: int) -> torch.Tensor:
    """(x * k) mod 2^32 for 0 <= x < 2^32, split in 16-bit halves so int64 never overflows."""
    lo, hi = k & 0xFFFF, k >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash (xorshift-multiply, 'lowbias32' constants), elementwise."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mix_int(x: int) -> int:
    """mix32 on a Python int (for step counters and stream ids)."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def key(*ints: int) -> int:
    """Hash non-negative Python ints (any size), e.g. (seed, n, s, family), into one 32-bit key."""
    h = 0x9E3779B9
    for v in ints:
        if v < 0:  # the loop below would never end on a negative int
            raise ValueError(f"random keys hash non-negative integers (seeds, indices), got {v}")
        while True:
            h = _mix_int(h ^ _mix_int((v & _MASK32) + 0x85EBCA6B))
            v >>= 32
            if not v:
                break
    return h


def _counter_code(t) -> torch.Tensor | int:
    """key(t) for an int, or elementwise for an int64 tensor of counters in [0, 2^32)."""
    if isinstance(t, torch.Tensor):
        return mix32(0x9E3779B9 ^ mix32(((t & _MASK32) + 0x85EBCA6B) & _MASK32))
    return key(t)


def keys_from(base: torch.Tensor, shape: tuple[int, ...], salt: int = AXIS_SALT) -> torch.Tensor:
    """Keys (*base.shape, *shape): item (b, i_1..i_k) -> hash(base[b], i_1, ..., i_k).

    base: int64 keys of independent groups (e.g. one per data set, from its own seed), so an
    item's key depends on its group's base and its index inside the group only."""
    k = base.reshape(tuple(base.shape) + (1,) * len(shape)).expand(tuple(base.shape) + tuple(shape))
    for axis, size in enumerate(shape):
        view = [1] * (base.dim() + len(shape))
        view[base.dim() + axis] = size
        k = mix32(k ^ mix32(torch.arange(size, device=base.device).reshape(view) + salt))
    return k


def item_keys(seed: int, shape: tuple[int, ...], device=None) -> torch.Tensor:
    """Keys (*shape) for items indexed by their position: hash(seed, i_1, ..., i_k).

    The key of an item depends only on the seed and its own index tuple, so an item keeps
    its random numbers when it is estimated alone (pass ``item_keys(seed, shape)[i]``).
    """
    return keys_from(torch.tensor(key(int(seed)), dtype=torch.int64, device=device), tuple(shape))


def uniform(keys: torch.Tensor, t, stream: int, m: int) -> torch.Tensor:
    """U(0, 1] numbers, float64, a pure function of (key, counter t, stream, index < m).

    keys (...,); t an int -> (..., m), or a 1-D int64 tensor of counters (B,) -> (..., B, m).
    """
    if isinstance(t, torch.Tensor):
        kt = mix32(keys.unsqueeze(-1) ^ _counter_code(t.to(keys.device)))
    else:
        kt = mix32(keys ^ _counter_code(t))
    ks = mix32(kt ^ key(stream)).unsqueeze(-1)
    h = mix32(ks ^ mix32(torch.arange(m, device=keys.device) * 2 + 1))
    return (h.to(torch.float64) + 1.0) / 4294967296.0


def uniform_at(keys: torch.Tensor, counters: torch.Tensor, stream: int, m: int) -> torch.Tensor:
    """U(0, 1] numbers (float64) at per-item counters: keys (B,), counters (B, M) int64 ->
    (B, M, m), entry [i, k, j] a pure function of (keys[i], counters[i, k], stream, j)."""
    kt = mix32(keys.unsqueeze(-1) ^ _counter_code(counters))
    ks = mix32(kt ^ key(stream)).unsqueeze(-1)
    h = mix32(ks ^ mix32(torch.arange(m, device=keys.device) * 2 + 1))
    return (h.to(torch.float64) + 1.0) / 4294967296.0


def normal(keys: torch.Tensor, t, d: int, dtype=torch.float64, stream: int = SGLD_NOISE) -> torch.Tensor:
    """Standard normals (..., d) (t an int) or (..., B, d) (t a tensor of B counters), from
    uniform streams `stream` and `stream + 1` (Box-Muller, cosine branch)."""
    u1 = uniform(keys, t, stream, d)
    u2 = uniform(keys, t, stream + 1, d)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(dtype)


def normals_from(u: torch.Tensor, d: int) -> torch.Tensor:
    """Box-Muller, both branches: (..., 2 * ceil(d / 2)) uniforms -> (..., d) normals."""
    h = (d + 1) // 2
    r = torch.sqrt(-2.0 * torch.log(u[..., :h]))
    a = 2.0 * math.pi * u[..., h : 2 * h]
    return torch.cat([r * torch.cos(a), r * torch.sin(a)], -1)[..., :d]


def seed_from(generator: torch.Generator | int) -> int:
    """An int seed from an int or by drawing from a torch.Generator."""
    if isinstance(generator, int) and not isinstance(generator, bool):
        return checks.seed(generator, "seed")
    gen = checks.generator(generator)
    return int(torch.randint(0, 2**62, (1,), generator=gen).item())
