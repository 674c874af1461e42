"""A compiled HMC round (numba): tms.samplers.rounds.run_round for every chain in one call,
parallel over chains.

`run_round` spends most of a tick, at the batch sizes the posterior sweeps use, on ~25 small
torch operations of bookkeeping around one fused energy call. Here a round is one compiled
call: each chain runs its n_ticks leapfrog ticks on its own (a chain's round never reads
another chain), in groups of up to 32 consecutive chains of one data set that tick in
lockstep, so that a tick's energies are one vectorised call (tms.theory.loss_lanes, the fused
one-row energy of tms.theory.loss_kernels over the group's rows, bit for bit); the groups
split over threads (numba prange) and a chain's numbers are the same whatever the thread
count, its group or its place in the batch. The arithmetic is run_round's, step for step:
momentum refresh from the counter-based keys (tms.core.rng: the same hash, the same
Box-Muller), the leapfrog with frozen chains, energy-error checks at restart ticks (every
tick with U-turns), divergences, the Metropolis step at a trajectory's end and per-chain dual
averaging. The two paths agree to rounding (sums over d and libm's log/exp/cos/sin round
differently from torch's vector code), the integer counts exactly in practice.

It applies where the energy carries a compiled one-row form (`kernel`, a RowEnergy: the
posterior's tms.bayes.posterior.energy_grad_fn does, through tms.theory.loss.row_energy) and
the prior is None or the N(0, I) prior (marked `kernel_prior`), in float64 on the CPU;
run_round takes its torch path anywhere else (and is the reference).
Threads: the run's (tms.core.checks.torch_threads, every core by default); rounds of fewer than
PARALLEL_MIN chains run on one thread, where a thread pool costs more than it saves.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np
import torch

from tms.core import checks, jit, rng

PARALLEL_MIN = 256  # chains below which a round runs on one thread
GROUP = 32  # chains a group of a round holds at most (where the energy has no group form)


class RowEnergy(NamedTuple):
    """An energy in the form the compiled round calls, row by row (numba functions):
    energy(x, p, dset, scale, ge, data, work) -> E of row p of x (N, d) on data set dset,
    its gradient written to ge[p]; scratch() -> work, one chain's buffers; bind(B) ->
    (data-set index (N,), scale (N,), data: a tuple of arrays) for chains of batch B, or
    None where the chains do not fit the data. lanes: optionally its group form (lanes,
    lanes_scratch, width): lanes(x, rows, nm, dset, sc, ge, E, data, lanes_scratch()) ->
    E[l] and ge of rows rows[:nm] (nm <= width) on data set dset, bit-identical to energy's."""

    energy: Callable
    scratch: Callable
    bind: Callable
    lanes: tuple | None = None


def applies(energy_grad, prior_grad, theta: torch.Tensor) -> bool:
    """Whether a round of these chains can run compiled (module docstring)."""
    return (isinstance(getattr(energy_grad, "kernel", None), RowEnergy)
            and (prior_grad is None or getattr(prior_grad, "kernel_prior", False))
            and theta.device.type == "cpu" and theta.dtype == torch.float64)


def threads(k: int | None):
    """The compiled rounds use k threads inside the block (None: every core); torch's count is
    left as it is (tms.core.checks.torch_threads sets both)."""
    return checks.kernel_threads_set(k)


def thread_count() -> int:
    """Threads a parallel round uses now: the run's count (checks.kernel_threads), else every
    core numba sees."""
    cores = _numba().config.NUMBA_NUM_THREADS
    k = checks.kernel_threads()
    return max(1, min(k or cores, cores))


def _numba():
    """numba, imported where a compiled round runs (the torch path works without it)."""
    import numba
    return numba


@lru_cache(maxsize=None)
def _round_kernels(energy, scratch, d: int, lanes=None, lanes_scratch=None):
    """(serial, parallel) compiled rounds on a one-row energy (tms.samplers.compiled_kernel)."""
    from tms.samplers import compiled_kernel
    return compiled_kernel.make_round(energy, scratch, d, lanes, lanes_scratch)


def groups(didx: np.ndarray, width: int) -> np.ndarray:
    """Bounds (G + 1,) of the round's groups: runs of consecutive chains on one data set
    (didx (N,)), cut every `width` chains; group g is chains bounds[g] .. bounds[g + 1] - 1."""
    N = didx.shape[0]
    runs = np.concatenate(([0], np.flatnonzero(didx[1:] != didx[:-1]) + 1, [N]))
    return np.concatenate([np.arange(a, b, width) for a, b in zip(runs[:-1], runs[1:])] + [[N]]).astype(np.int64)


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


def call(serial, parallel, N: int, args: tuple, min_chains: int = PARALLEL_MIN) -> None:
    """A compiled kernel over N chains: `parallel` on the run's threads (thread_count) from
    min_chains chains on, else `serial`."""
    k = thread_count() if N >= min_chains else 1
    if k > 1:
        with jit.PARALLEL:  # one parallel call at a time in the process (the SGD block's too)
            _numba().set_num_threads(k)
            parallel(*args)
    else:
        serial(*args)


def run_round(ch, keys, counts, n_ticks, energy_grad, prior_grad=None, beta=None, *, step_size=None, da=None,
              lengths=None, uturn=False, divergence=1000.0, target_accept=0.8, restart_every=4):
    """tms.samplers.rounds.run_round, compiled (same arguments): (theta, E, gE, (transitions,
    accept_sum, accepted, divergences, uturn), da fields or None, counts) as tensors of the
    chains' batch, or None where the chains do not fit the energy's data (torch path then)."""
    kernel: RowEnergy = energy_grad.kernel
    B, d = tuple(ch[1].shape), ch[0].shape[-1]
    bound = kernel.bind(B)
    if bound is None:
        return None
    N = math.prod(B)
    theta, E, gE = (_flat(t, B, N, np.float64) for t in ch)
    cnt = _flat(counts, B, N, np.int64)
    dav = np.stack([_flat(t, B, N, np.float64) for t in da]) if da is not None else np.zeros((5, N))
    lens = (np.array(np.broadcast_to(lengths.numpy(), lengths.shape[:1] + B).reshape(-1, N), dtype=np.int64)
            if lengths is not None else np.zeros((0, N), np.int64))  # a writable copy: one compiled signature
    info, accept_sum = np.zeros((4, N), np.int64), np.zeros(N)
    lanes, lanes_scratch, width = kernel.lanes or (None, None, GROUP)
    args = (groups(bound[0], width), theta, E, gE, _flat(keys, B, N, np.uint64), cnt, _STREAM,
            _flat(beta, B, N, np.float64, 1.0), 1.0 if prior_grad is not None else 0.0,
            _flat(step_size, B, N, np.float64), da is not None, dav, lens,
            int(n_ticks), bool(uturn), float(divergence), float(target_accept), int(restart_every), *bound,
            info, accept_sum, *(np.empty((N, d)) for _ in range(5)))
    serial, parallel = _round_kernels(kernel.energy, kernel.scratch, d, lanes, lanes_scratch)
    call(serial, parallel, N, args)

    def t(a):
        return torch.from_numpy(a.reshape(B + a.shape[1:]))

    stats = (t(info[0]), t(accept_sum), t(info[1]), t(info[2]), t(info[3]))
    return t(theta), t(E), t(gE), stats, None if da is None else tuple(t(dav[i]) for i in range(5)), t(cnt)
