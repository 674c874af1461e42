"""Benchmark: batched HMC on the TMS posterior against one chain at a time (same algorithm).

Protocol. c = 6, r = 2, one data set of n = 600 (seed 0), posterior
N(0, I) exp(-n L_n) (beta_lik = 1). Batched: `chains` chains in one tensor
(tms.samplers.tempering.run_chains, no tempering), warm-up + `draws` draws. Reference: the
same driver and kernel with one chain per call, run for `ref_chains` chains one after the
other; its time is per chain. Effective samples: ESS of each parameter (the 18 raw
coordinates and the 13 symmetry-invariant summaries of tms.posterior) computed per chain
(single-chain split ESS) and summed over chains; the figure of merit is the minimum over
parameters of that sum, per second of wall time. The ratio compares ESS/s of the batched
run with ESS/s of the reference (its ESS per chain and time per chain). Also printed: wall
times, the mean and max leapfrog steps per transition (a batch pays for its longest
trajectory at every step), accept rates, divergences.

Measured (2-core shared x86_64 VM, load ~5 from other jobs, 1 torch thread, defaults):
batched 256 chains 483 s wall, min ESS 5215 (sum over chains), 10.8 ESS/s, mean 26.9
leapfrog steps per transition (the batch runs its longest trajectory, cap 64), accept
0.86, 0 divergences; reference 42.1 s per chain, min ESS 22 per chain, 0.53 ESS/s
(256 chains would take ~10,800 s); ratio 20x. The reference is bound by interpreter
overhead (about 1 ms per leapfrog step for one chain); the batch pays for the longest
trajectory of 256 at each transition (about 2.4x the mean length here).

Run: python benchmarks/bench_posterior.py [--chains 256 --draws 1000 --warmup 300 --ref-chains 3]
Prints the machine and torch thread count. Speed is bound by interpreter overhead per
leapfrog step for small batches (the reference) and by the O(c^2 log n) loss per item for
large ones; see the printed per-step times.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from tms import diagnostics, posterior
from tms.data import sample_inputs
from tms.loss import sorted_data, stack_sorted
from tms.samplers import tempering


def ess_sum(draws: torch.Tensor, data, r: int, c: int) -> np.ndarray:
    """draws (T, 1, C, d) -> per-parameter ESS summed over chains, raw coordinates + summaries."""
    summ = posterior._summaries(draws.to(torch.float64), data, r, c)  # (T, 1, C, 2c+1)
    x = torch.cat([draws.to(torch.float64), summ], -1)[:, 0]  # (T, C, p)
    x = x.permute(2, 1, 0).numpy()[:, :, None, :]  # (p, C, 1, T): each chain on its own
    e = diagnostics.ess(x)  # (p, C)
    return np.nansum(e, axis=1)


def run(n_chains, args, data, seed):
    r, c = 2, 6
    d = r * c + c
    th0 = torch.randn((1, n_chains, d), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    t = time.perf_counter()
    out = tempering.run_chains(posterior.energy_fn(data, r, c), th0, prior_fn=posterior.prior,
                               n_warmup=args.warmup, n_draws=args.draws, generator=seed, max_steps=args.max_steps,
                               record=lambda th: th.to(torch.float32))
    return out, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--chains", type=int, default=256)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--ref-chains", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=64)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    r, c = 2, 6
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"protocol: c={c}, n={args.n}, warm-up {args.warmup} + {args.draws} draws, max_steps {args.max_steps}")
    data = posterior._with_dims(stack_sorted([sorted_data(sample_inputs(args.n, c, 0))]), 1)  # (1, 1)

    out, wall = run(args.chains, args, data, seed=1)
    e = ess_sum(out["draws"], data, r, c)
    print(f"batched  : {args.chains} chains, wall {wall:.1f} s, min ESS (sum over chains) {e.min():.0f}, "
          f"ESS/s {e.min() / wall:.2f}; mean steps {out['mean_steps'].mean():.1f}, accept {out['accept_rate'].mean():.3f}, "
          f"divergences {int(out['divergences'].sum())}")

    ref_wall, ref_e = 0.0, np.zeros_like(e)
    for i in range(args.ref_chains):  # the reference IS one chain per call
        o, w = run(1, args, data, seed=100 + i)
        ref_wall += w
        ref_e += ess_sum(o["draws"], data, r, c)
    per_chain_wall = ref_wall / args.ref_chains
    ref_rate = (ref_e / args.ref_chains).min() / per_chain_wall
    print(f"reference: 1 chain per call x {args.ref_chains}, wall {per_chain_wall:.1f} s per chain, "
          f"min ESS per chain {(ref_e / args.ref_chains).min():.0f}, ESS/s {ref_rate:.2f}")
    print(f"reference time for {args.chains} chains (extrapolated): {per_chain_wall * args.chains:.0f} s")
    print(f"ratio ESS/s batched / reference: {e.min() / wall / ref_rate:.1f}x")


if __name__ == "__main__":
    main()
