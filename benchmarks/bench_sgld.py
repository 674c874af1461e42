"""The cost of one localised SGLD step per chain: the torch step against the compiled block.
Run on demand, not collected by pytest:

    .venv/bin/python benchmarks/bench_sgld.py [--max-chains 16384] [--loss population|empirical]

Protocol: TMS c = 6 (d = 18), chains at random points near a 4-gon (the SPEC 4 start,
radius 0.9, N(0, 0.01^2) noise), nbeta = 1000 / log 1000, eps = 1e-3, gamma = 1, float64,
the exact full loss (population, or the sorted empirical loss of one data set of n = 1000).
For N = 1, 4, 16, ..., max chains: us per chain-step of
  torch     tms.samplers.sgld.step in a Python loop (one torch thread; the reference),
  comp 1t   tms.samplers.compiled_sgld.run, one call for all steps, one thread,
  comp 2t   the same on two threads (numba prange over chains),
  energy    the batched one-row energy kernel alone (loss_kernels), per row: the bound,
with the wall time of a measured block of at least ~0.2 s each; the ratio torch / comp 1t.
What bounds the compiled step: one energy row per chain-step plus d normals (two hashes,
a log and a cos each); below ~16 chains the fixed cost of a call (~0.1 ms) adds.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np
import torch

from tms.core import checks
from tms.llc.estimator import chain_keys, default_nbeta
from tms.samplers import compiled, compiled_sgld, sgld
from tms.theory import loss as L
from tms.theory import loss_kernels
from tms.theory.data import sample_inputs

R, C = 2, 6


def _start(N: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    rot = 2 * math.pi * torch.rand(N, 1, generator=g, dtype=torch.float64)
    ang = rot + torch.arange(4, dtype=torch.float64) * math.pi / 2
    W = torch.zeros(N, R, C, dtype=torch.float64)
    W[:, 0, :4], W[:, 1, :4] = 0.9 * ang.cos(), 0.9 * ang.sin()
    W += 0.01 * torch.randn(W.shape, generator=g, dtype=torch.float64)
    return L.flatten_params(W, torch.zeros(N, C, dtype=torch.float64))


def _grad_fn(data):
    def grad_fn(theta):
        return L.loss_and_grad_flat(theta, R, C, data)

    grad_fn.kernel = compiled.RowEnergy(*L.row_energy(R, C, data, 1.0))
    return grad_fn


def _timed(f, work: int) -> float:
    """us per unit of work of f(steps), steps doubled until a call takes >= 0.2 s."""
    steps = 4
    while True:
        t = time.perf_counter()
        f(steps)
        dt = time.perf_counter() - t
        if dt >= 0.2 or steps >= 1 << 16:
            return dt / (steps * work) * 1e6
        steps *= 2


def row(N: int, grad_fn, nbeta: float) -> list[float]:
    theta = _start(N)
    state = sgld.init(theta, generator=chain_keys(0, None, (N,), 1, "cpu")[:, 0])

    def torch_steps(T):
        s = state
        for _ in range(T):
            s, _ = sgld.step(s, grad_fn, nbeta=nbeta, eps=1e-3, gamma=1.0)

    def comp(k):
        def f(T):
            with checks.kernel_threads_set(k):
                compiled_sgld.run(state, grad_fn, nbeta=nbeta, eps=1e-3, gamma=1.0, n_steps=T)
        return f

    rows = np.ascontiguousarray(theta.numpy())
    data = getattr(grad_fn, "data", None)

    def energy(T):
        for _ in range(T):
            if data is None:
                loss_kernels.population_rows(rows, R, (N,))
            else:
                loss_kernels.empirical_rows(rows, R, data, (), (N,))

    comp(1)(2)  # compile / load the kernels first
    comp(2)(2)
    with checks.torch_threads(1):
        return [_timed(torch_steps, N), _timed(comp(1), N), _timed(comp(2), N), _timed(energy, N)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-chains", type=int, default=16384)
    p.add_argument("--loss", choices=("population", "empirical"), default="population")
    args = p.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}; loss {args.loss}, c = {C}")
    data = None
    if args.loss == "empirical":
        data = L.sorted_data(sample_inputs(1000, C, torch.Generator().manual_seed(0), dtype=torch.float64))
    grad_fn = _grad_fn(data)
    grad_fn.data = data
    nbeta = default_nbeta(1000)
    print(f"{'chains':>7} {'torch':>9} {'comp 1t':>9} {'comp 2t':>9} {'energy':>9} {'torch/1t':>9}  (us per chain-step)")
    N = 1
    while N <= args.max_chains:
        t, c1, c2, e = row(N, grad_fn, nbeta)
        print(f"{N:>7} {t:>9.3f} {c1:>9.3f} {c2:>9.3f} {e:>9.3f} {t / c1:>9.1f}", flush=True)
        N *= 4


if __name__ == "__main__":
    main()
