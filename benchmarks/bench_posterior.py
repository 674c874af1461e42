"""Benchmark: the lab's posterior sampler, HMC in rounds on the compiled round (numba, one
call per round for every chain) against the same rounds on the torch tick, and optionally the
previous sampler (synchronous HMC transitions + autograd energy), in one run.

Protocol. c = 6, r = 2, one data set of n = 600 (seed 0), posterior N(0, I) exp(-n L_n)
(beta_lik = 1).
1. us per chain-tick: sampling rounds of 16 ticks (recorded lengths 8) at 1 .. 16,384 chains
   near the posterior (prior draws x 0.3), best of 3 after a warm call, for the torch tick
   (tms.samplers.rounds, compiled.use(False)), the compiled tick on 1 and 2 threads, and the
   fused energy alone (one batched kernel call per row, 1 thread), in the same process.
2. ESS per second: `chains` plain chains from the same prior draws, tms.samplers.tempering.
   run_chains (--warmup + --draws rounds of --max-steps ticks), compiled (1 and 2 threads)
   and torch tick; ESS of each of the six biases per chain (single-chain split ESS, draws at
   round ends), summed over chains; min over the biases, per wall second (warm-up included).
3. (--old) the synchronous reference sampler of tests/reference/samplers.py, as before.

Measured (2-core AMD EPYC, idle, 2026-12-07 evening; torch 2.13, numba 0.68, torch on 1 thread;
the compiled round ticks chains of a data set in lockstep groups of up to 32, a tick's energies
one vectorised call, tms.theory.loss_lanes):
  chains     torch  compiled 1t  compiled 2t  energy 1t
       1   364.1        12.8         17.6       70.0    (us per chain-tick)
      16    27.3         1.15         1.19       5.57
      64     7.40        0.99         0.72       1.82
     256     2.44        0.59         0.35       0.94
    1024     1.76        0.51         0.30       0.64
    4096     1.28        0.53         0.29       0.67
   16384      -          0.53         0.27       0.86
  ("energy 1t": the one-row kernel over a batch through its torch front end, the reference.)
  Before the groups (same machine, shared, that afternoon): compiled 0.71-0.75 (1t), 0.33-0.41 (2t).
  ESS/s of the biases at 256 chains (150 + 400 rounds of 40): compiled 25,800 (1 thread),
  44,600 (2 threads), torch tick 5,200: 4.9x and 8.6x, the same ESS per gradient (3,640
  against 3,610 per 1000 gradients per chain: the same sampler). Against NumPyro's NUTS on
  the same posterior: benchmarks/bench_nuts.py (~500x on the same two cores).
On the Intel Xeon (AVX-512) 2-core machine of 2026-12-08, idle: compiled 0.382 / 0.379 / 0.370 us
(1 thread) and 0.220 / 0.184 / 0.185 us (2 threads) per chain-tick at 256 / 1024 / 4096 chains,
torch 1.48 at 256; ESS/s at 256 chains (20 + 40 rounds) 4.9x (1 thread) and 8.2x (2 threads) the
torch tick's. The group energy alone (32 rows a call, n = 600) measured 237 ns a row; with LLVM
allowed 512-bit vectors (numba's CPU features without prefer-256-bit) 207-214 ns, ~10% of the
energy and less of the round, not taken (numba reads its CPU features once per process, for
every kernel); a branch-free lookup pass (gathers) measured no faster (235-243 ns).
What bounds it. Below ~64 chains a round costs its fixed ~0.25 ms (the Python front end and
numba's dispatch of 28 arguments): interpreter-bound. From 256 chains on, a chain-tick costs
~0.5 us on one thread (~1,500 cycles): the group energy ~0.28 us (tms.theory.loss_lanes; 0.50
for the one-row kernel: its c^2 = 36 thresholds' divisions, Gram matrix, sums and gradient now
run 4 rows per AVX2 instruction, the 36 bucket lookups and prefix-sum loads a row stay scalar
loads) and the leapfrog bookkeeping ~0.2 us (momentum, U-turn and energy checks,
per chain, scalar; a version with the bookkeeping in columns vectorised over the group measured
slower, 0.59-0.65 us, and was not kept). Arithmetic is ~1,000 flops a chain-tick: ~0.7 flop
per cycle against AVX2's 16, so neither FLOPs nor bandwidth (the tables of a data set fit in
L2) bound it: the scalar lookups' latency and the per-chain bookkeeping do. Two threads give
1.7-1.9x from 256 chains on.

Run: python benchmarks/bench_posterior.py [--n-chains 256 --tick-chains 1,16,256 --old]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tms.core import rng
from tms.samplers import compiled, diagnostics, rounds
from tms.bayes import posterior
from tms.theory.data import sample_inputs
from tms.theory.loss import sorted_data, stack_sorted
from tms.samplers import tempering

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import samplers as reference  # noqa: E402

R, C = 2, 6


def bias_ess(draws: torch.Tensor) -> np.ndarray:
    """draws (T, 1, chains, d) -> (6,) ESS of each bias, single-chain ESS summed over chains."""
    b = draws[:, 0, :, R * C:].to(torch.float64)  # (T, chains, 6)
    x = b.permute(2, 1, 0).numpy()[:, :, None, :]  # (6, chains, 1, T): each chain on its own
    return np.nansum(diagnostics.ess(x), axis=1)


def run_old(data, th0, args):
    t = time.perf_counter()
    out = reference.run_chains(posterior.energy_fn(data, R, C), th0, n_warmup=args.old_warmup,
                               n_draws=args.old_draws, seed=1, prior_fn=posterior.prior,
                               max_steps=args.old_max_steps, record=lambda th: th.to(torch.float32))
    return out, time.perf_counter() - t, out["grad_evals"]


def run_new(data, th0, args, use_compiled: bool = True, threads: int | None = 1):
    """The lab's sampler; on the compiled round (tms.samplers.compiled) or the torch one."""
    eg = posterior.energy_grad_fn(data, R, C)
    t = time.perf_counter()
    with compiled.use(use_compiled), compiled.threads(threads):
        out = tempering.run_chains(None, th0, energy_grad_fn=eg, prior_grad_fn=posterior.prior_grad,
                                   n_warmup=args.warmup, n_draws=args.draws, max_steps=args.max_steps, generator=1,
                                   record=lambda th: th.to(torch.float32))
    return out, time.perf_counter() - t, (args.warmup + args.draws) * args.max_steps  # one evaluation a tick


def tick_cost(data, n_chains: int, use_compiled: bool, threads: int, budget: float = 0.3) -> float:
    """us per chain-tick of sampling rounds (16 ticks, recorded lengths 8) at n_chains chains
    near the posterior (prior draws x 0.3): rounds repeated for `budget` seconds, best of 3."""
    eg = posterior.energy_grad_fn(data, R, C)
    theta = 0.3 * rng.normal(rng.item_keys(2, (1, n_chains)), 0, R * C + C, torch.float64, rng.START)
    ch, keys = rounds.evaluate(theta, eg), rng.item_keys(3, (1, n_chains))
    counts = torch.zeros(1, n_chains, dtype=torch.long)
    eps, lengths = torch.full((1, n_chains), 0.01, dtype=torch.float64), torch.full((1, 1, n_chains), 8)
    with compiled.use(use_compiled), compiled.threads(threads):
        def one():
            rounds.run_round(ch, keys, counts, 16, eg, posterior.prior_grad, None, step_size=eps, lengths=lengths)
        one()
        t0, reps = time.perf_counter(), 0
        while time.perf_counter() - t0 < budget / 3 or reps < 1:
            one()
            reps += 1
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                one()
            best = min(best, (time.perf_counter() - t0) / reps)
    return 1e6 * best / (16 * n_chains)


def energy_cost(data, n_chains: int) -> float:
    """us per row of the fused energy alone (one batched call of the compiled kernel, one thread)."""
    eg = posterior.energy_grad_fn(data, R, C)
    theta = 0.3 * rng.normal(rng.item_keys(2, (1, n_chains)), 0, R * C + C, torch.float64, rng.START)
    eg(theta)
    reps = max(1, 200_000 // n_chains)
    t0 = time.perf_counter()
    for _ in range(reps):
        eg(theta)
    return 1e6 * (time.perf_counter() - t0) / (reps * n_chains)


def tick_table(data, sizes: list[int], torch_max: int) -> None:
    print("us per chain-tick (sampling rounds of 16 ticks, c = 6, n = %d); energy alone: one batched kernel call"
          % int(data.n.reshape(-1)[0]))
    print(f"{'chains':>7} {'torch':>9} {'compiled 1t':>12} {'compiled 2t':>12} {'energy 1t':>10} {'torch/comp1':>11}")
    for N in sizes:
        tt = tick_cost(data, N, False, 1) if N <= torch_max else math.nan
        c1, c2, e = tick_cost(data, N, True, 1), tick_cost(data, N, True, 2), energy_cost(data, N)
        print(f"{N:7d} {tt:9.3f} {c1:12.3f} {c2:12.3f} {e:10.3f} {tt / c1:11.1f}", flush=True)


def report(name, out, wall, grads):
    out = out if isinstance(out, dict) else out._asdict()  # the reference returns a dict, run_chains a ChainRun
    e = bias_ess(out["draws"])
    print(f"{name}: wall {wall:7.1f} s, {grads} gradient evals per chain, bias ESS (sum over chains) min {e.min():.0f} "
          f"mean {e.mean():.0f}; ESS/s min {e.min() / wall:.2f}; ESS per 1000 grads per chain {1000 * e.min() / grads:.1f}; "
          f"mean steps {out['mean_steps'].mean():.1f}, accept {out['accept_rate'].mean():.3f}, "
          f"divergences {int(out['divergences'].sum())}")
    return e.min() / wall


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-chains", type=int, default=256)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--old-warmup", type=int, default=200)
    p.add_argument("--old-draws", type=int, default=400)
    p.add_argument("--old-max-steps", type=int, default=64)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--draws", type=int, default=400)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--tick-chains", default="1,4,16,64,256,1024,4096,16384",
                   help="batch sizes of the us per chain-tick table ('' skips it)")
    p.add_argument("--torch-max", type=int, default=16384, help="largest batch timed on the torch tick")
    p.add_argument("--old", action="store_true", help="also run the synchronous autograd sampler (minutes)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; c={C}, n={args.n}, {args.n_chains} chains")
    data = posterior.with_dims(stack_sorted([sorted_data(sample_inputs(args.n, C, 0))]), 1)  # (1, 1)
    if args.tick_chains:
        tick_table(data, [int(x) for x in args.tick_chains.split(",")], args.torch_max)
    th0 = torch.randn((1, args.n_chains, R * C + C), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    label = f"rounds of {args.max_steps}, {args.warmup}+{args.draws} rounds"
    comp = [report(f"compiled, {k} thread(s) ({label})", *run_new(data, th0, args, True, k)) for k in (1, 2)]
    tor = report(f"torch tick ({label})", *run_new(data, th0, args, False))
    print(f"ratio ESS/s compiled / torch tick: {comp[0] / tor:.1f}x (1 thread), {comp[1] / tor:.1f}x (2 threads)")
    if args.old:
        old = report(f"old (sync, cap {args.old_max_steps}, {args.old_warmup}+{args.old_draws} transitions)",
                     *run_old(data, th0, args))
        print(f"ratio ESS/s compiled (2 threads) / old: {comp[1] / old:.1f}x; torch tick / old: {tor / old:.1f}x")


if __name__ == "__main__":
    main()
