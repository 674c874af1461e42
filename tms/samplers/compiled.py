"""A compiled HMC round (numba): tms.samplers.rounds.run_round for every chain in one call,
parallel over chains.

`run_round` spends most of a tick, at the batch sizes the posterior sweeps use, on ~25 small
torch operations of bookkeeping around one fused energy call. Here a round is one compiled
call: each chain runs its n_ticks leapfrog ticks on its own (a chain's round never reads
another chain), calling the fused one-row energy of tms.theory.loss_kernels in place, so the
chains split over threads (numba prange) and a chain's numbers are the same whatever the
thread count or its place in the batch. The arithmetic is run_round's, step for step:
momentum refresh from the counter-based keys (tms.core.rng: the same hash, the same
Box-Muller), the leapfrog with frozen chains, energy-error checks at restart ticks (every
tick with U-turns), divergences, the Metropolis step at a trajectory's end and per-chain dual
averaging. The two paths agree to rounding (sums over d and libm's log/exp/cos/sin round
differently from torch's vector code), the integer counts exactly in practice.

It applies where the target is the posterior's: the energy from
tms.bayes.posterior.energy_grad_fn (marked with `kernel`: r, c, the sorted data sets, the
per-data-set scale) and the N(0, I) prior (marked `kernel_prior`), float64 on the CPU with
numba loaded; run_round falls back to its torch path anywhere else (and is the reference).
Threads: `threads(k)` (tms.core.checks.torch_threads sets it); rounds of fewer than
PARALLEL_MIN chains run on one thread, where a thread pool costs more than it saves.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

from tms.core import rng

PARALLEL_MIN = 256  # chains below which a round runs on one thread
_THREADS: int | None = None  # compiled kernels' threads (None: every core)


class EnergyKernel(NamedTuple):
    """What the compiled round needs of an energy: beta_lik n L_n(theta) on sorted `data`
    (batch dims broadcasting with the chains'), `scale` = beta_lik n per data set."""

    r: int
    c: int
    data: object
    scale: object


def available() -> bool:
    """Whether numba loads (the compiled energy kernels do)."""
    from tms.theory import loss
    return loss._kernels() is not None


def applies(energy_grad, prior_grad, theta: torch.Tensor) -> bool:
    """Whether a round of these chains can run compiled (module docstring)."""
    return (isinstance(getattr(energy_grad, "kernel", None), EnergyKernel)
            and (prior_grad is None or getattr(prior_grad, "kernel_prior", False))
            and theta.device.type == "cpu" and theta.dtype == torch.float64 and available())


@contextmanager
def threads(k: int | None):
    """The compiled rounds use k threads inside the block (None: every core)."""
    global _THREADS
    before, _THREADS = _THREADS, k
    try:
        yield
    finally:
        _THREADS = before


def thread_count() -> int:
    """Threads a parallel round uses now: the set count, else every core numba sees."""
    import numba
    return max(1, min(_THREADS or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS))


@lru_cache(maxsize=None)
def _round_kernels(r: int, c: int):
    """(serial, parallel) compiled rounds at (r, c) (tms.samplers.compiled_kernel)."""
    from tms.samplers import compiled_kernel
    return compiled_kernel.make_round(r, c)


_ENABLED = True
_STREAM = np.uint64(rng.key(rng.HMC_MOMENTUM))  # the momentum stream's hash (rng.uniform_at)


@contextmanager
def use(enabled: bool):
    """Inside the block, rounds run compiled where they can (True) or always on the torch
    path (False: the reference, e.g. for tests and benchmarks)."""
    global _ENABLED
    before, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = before


def enabled() -> bool:
    return _ENABLED


def _flat(x: torch.Tensor | None, B: tuple, N: int, dtype, fill=0.0) -> np.ndarray:
    """A C-contiguous copy (N, ...) of x broadcast to the batch B (N = prod B; fill where x is
    None). In numpy: a round's dozen conversions must not cost what its ticks do."""
    if x is None:
        return np.full(N, fill, dtype=dtype)
    a = x.detach().numpy()
    tail = a.shape[len(B):] if a.ndim >= len(B) else ()
    if a.shape[:len(B)] != B:
        a = np.broadcast_to(a, B + tail)
    return np.array(a.reshape((N,) + tail), dtype=dtype, order="C")


def _data_args(kernel: EnergyKernel, B: tuple):
    """The kernel's data arguments for chains of batch B: (didx, arrays..., use_tab, tables...,
    sc, ss), or None where the data's batch dims do not broadcast to B."""
    from tms.theory import loss_kernels as lk
    data = kernel.data
    D = tuple(data.mu.shape[:-2])
    try:
        if lk._broadcast_shape(B, D) != B:
            return None
    except ValueError:
        return None
    nd = math.prod(D)
    didx = np.ascontiguousarray(np.broadcast_to(np.arange(nd).reshape(D), B).reshape(-1)) if D \
        else np.zeros(math.prod(B), np.int64)
    arrays, tables = lk._prepared(data, np.float64, nd, True)
    return (didx, *arrays, True, *tables, *lk._scales(kernel.scale, B))


def run_round(ch, keys, counts, n_ticks, energy_grad, prior_grad=None, beta=None, *, step_size=None, da=None,
              lengths=None, uturn=False, divergence=1000.0, target_accept=0.8, restart_every=4):
    """tms.samplers.rounds.run_round, compiled (same arguments and results); None where the
    data do not fit the chains' batch (the caller takes the torch path)."""
    from tms.samplers import rounds
    kernel: EnergyKernel = energy_grad.kernel
    B, d = tuple(ch.energy.shape), ch.theta.shape[-1]
    data_args = _data_args(kernel, B)
    if data_args is None:
        return None
    N = math.prod(B)
    theta, E, gE = (_flat(t, B, N, np.float64) for t in ch)
    cnt = _flat(counts, B, N, np.int64)
    dav = np.stack([_flat(t, B, N, np.float64) for t in da]) if da is not None else np.zeros((5, N))
    lens = (np.ascontiguousarray(np.broadcast_to(lengths.numpy(), lengths.shape[:1] + B).reshape(-1, N),
                                 dtype=np.int64) if lengths is not None else np.zeros((0, N), np.int64))
    info, accept_sum = np.zeros((4, N), np.int64), np.zeros(N)
    scratch = [np.empty((N, d)) for _ in range(5)]
    serial, parallel = _round_kernels(kernel.r, kernel.c)
    k = thread_count() if N >= PARALLEL_MIN else 1
    fn = parallel if k > 1 else serial
    if k > 1:
        import numba
        numba.set_num_threads(k)
    fn(theta, E, gE, _flat(keys, B, N, np.uint64), cnt, _STREAM, _flat(beta, B, N, np.float64, 1.0),
       1.0 if prior_grad is not None else 0.0, _flat(step_size, B, N, np.float64),
       da is not None, dav, lens, int(n_ticks), bool(uturn), float(divergence), float(target_accept),
       int(restart_every), *data_args, info, accept_sum, *scratch)
    def t(a):
        return torch.from_numpy(a.reshape(B + a.shape[1:]))

    chains = rounds.Chains(t(theta), t(E), t(gE))
    out_info = rounds.RoundInfo(t(info[0]), t(accept_sum), t(info[1]), t(info[2]), t(info[3]))
    out_da = None if da is None else rounds.DualAverage(*(t(dav[i]) for i in range(5)))
    return chains, out_info, out_da, t(cnt)
