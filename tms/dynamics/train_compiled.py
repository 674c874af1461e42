"""A compiled SGD epoch block (numba): the steps of tms.dynamics.train._run_block for every
run in one call, parallel over runs.

The torch step (tms.dynamics.sgd_step.sgd_step_) is a dozen small kernels, so at the paper's
scale (32 runs, r = 2, c = 6, batch 20) it costs its fixed per-call overheads, not its
arithmetic. Here a block of steps is one call: each run runs its steps in sequence on its own
(a run never reads another), gathering its minibatch rows by the block's index array (drawn
in Python by `train._block_order`, unchanged), doing `sgd_step_`'s arithmetic and copying
the block's checkpoints (tms.dynamics.train_kernel). The runs split over threads (numba prange), so a
run's numbers are the same bits whatever the thread count or the other runs of its batch,
and they agree with the torch step's to rounding (its matrix products sum in other orders).

It applies to float64 parameters and data on the CPU; float32 and other devices take the
torch path, the reference, as does everything inside `use(False)`.
Threads: the run's (tms.core.checks.torch_threads; every core by default); blocks of fewer
than PARALLEL_MIN run-steps run on one thread, where a thread pool costs more than it saves.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

from tms.core import jit
from tms.samplers import compiled as compiled_round

PARALLEL_MIN = 2048  # run-steps (runs x steps) of a block below which it runs on one thread

_ENABLED = True


@contextmanager
def use(enabled: bool):
    """Inside the block, SGD runs compiled where it can (True) or always on the torch path
    (False: the reference, e.g. for tests and benchmarks)."""
    global _ENABLED
    before, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = before


def enabled() -> bool:
    return _ENABLED


class Data(NamedTuple):
    """The flattened training rows (N, c) in CSR form (rowptr (N + 1,), cols and vals
    (nnz,), the nonzero entries row by row, columns increasing) and off (R,), each run's
    first row (0 for a shared training set)."""

    rowptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    off: np.ndarray


def prepare(Xflat: torch.Tensor, W: torch.Tensor, n: int, shared: bool) -> Data | None:
    """The compiled form of the training data Xflat ((R * n, c) per-run sets, or (n, c)
    shared) for runs W (R, r, c), or None where the block runs on the torch path (module
    docstring)."""
    if not (_ENABLED and Xflat.device.type == W.device.type == "cpu"
            and Xflat.dtype == W.dtype == torch.float64):
        return None
    X = np.ascontiguousarray(Xflat.numpy())
    rows, cols = np.nonzero(X)  # row-major: rows ascending, columns ascending within a row
    rowptr = np.zeros(X.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=X.shape[0]), out=rowptr[1:])
    R, r, c = W.shape
    off = np.zeros(R, np.int64) if shared else np.arange(R, dtype=np.int64) * n
    data = Data(rowptr, cols.astype(np.int64), np.ascontiguousarray(X[rows, cols]), off)
    empty = W.new_zeros((0, r, c))  # no runs: loads (or compiles) the kernels before the first block's clock
    run_block(empty, W.new_zeros((0, c)), torch.zeros((0, 0, 1), dtype=torch.int64), data, 0.0, [], warm=True)
    return data


@lru_cache(maxsize=None)
def _kernels(r: int, c: int):
    """(serial, parallel) compiled blocks for (r, c) (tms.dynamics.train_kernel)."""
    from tms.dynamics import train_kernel
    return train_kernel.make_block(r, c)


def run_block(W: torch.Tensor, b: torch.Tensor, idx: torch.Tensor, data: Data, scale: float,
              ck_t: list[int], warm: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The S steps of a block for every run, in place on W (R, r, c), b (R, c) (CPU float64,
    contiguous): idx (S, R, B) the minibatch rows of each run's training set, scale = -2 lr / B.
    Returns (W_ck (K, R, r, c), b_ck (K, R, c)), the parameters after steps ck_t (K indices
    in 0 .. S - 1, increasing). warm: call both kernels (with no runs, to load them)."""
    R, r, c = W.shape
    S = idx.shape[0]
    W_ck, b_ck = torch.empty((len(ck_t), R, r, c), dtype=W.dtype), torch.empty((len(ck_t), R, c), dtype=W.dtype)
    args = (W.numpy(), b.numpy(), np.ascontiguousarray(idx.numpy(), dtype=np.int64), data.off, data.rowptr,
            data.cols, data.vals, float(scale), np.asarray(ck_t, dtype=np.int64), W_ck.numpy(), b_ck.numpy())
    serial, parallel = _kernels(r, c)
    if warm:  # both kernels, with no runs
        serial(*args)
        with jit.PARALLEL:
            parallel(*args)
    else:  # the runs over threads from two runs when the block holds PARALLEL_MIN run-steps
        compiled_round.call(serial, parallel, R, args, min_chains=2 if R * S >= PARALLEL_MIN else R + 1)
    return W_ck, b_ck
