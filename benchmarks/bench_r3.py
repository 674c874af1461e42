"""The posterior sweep's cost per chain at r = 3 against r = 2, in the same run.

Protocol: one posterior sweep (tms.bayes.posterior.phase_sweep, float64, CPU, `--threads` torch
threads) per (r, c) in (2, 6), (2, c), (3, c) (default c = 7) at one n, with the same sampler
settings (S data sets, R ladders of K temperatures, W warm-up and D sampling rounds of at most
`max_steps` leapfrog ticks, C plain chains; the budget stops every data set). r = 2 reads draws by
the zoo (tms.theory.phases.classify), r = 3 by a census (tms.theory.census, embedded zoo starts
and frames only, built before the clock starts). Each sweep runs `--repeat` times (best time
kept, the first a warm-up of torch's kernels). Cost per chain = best seconds / (S (R K + C)
chains); the ratio r = 3 / r = 2 at the same c isolates r (d = r c + c: 28 against 21 at c = 7).
The trajectory length adapts to each target (U-turn lengths up to `max_steps`), so the plain
chains' mean leapfrog steps per draw are printed beside: a ratio below 1 can mean shorter
trajectories, not cheaper steps.
The labelling alone (every ladder draw of the r = 3 sweep read by the census, against the same
number of r = 2 draws read by the zoo) is timed beside it.

    python benchmarks/bench_r3.py --c 7 --n 500 --threads 1

Measured (CPU, 1 thread, 2 cores shared with other jobs, so ratios are the reliable part):
see docs/beyond_r2.md.
"""
from __future__ import annotations

import argparse
import time

import torch

from tms.bayes.posterior import phase_sweep
from tms.theory.census import CensusSettings, census
from tms.theory.phases import classify


def timed_sweep(r: int, c: int, n: int, cs, settings: dict, repeat: int) -> tuple[float, float]:
    """Best seconds of `repeat` sweeps, and the plain chains' mean leapfrog steps per draw (the
    trajectory length adapts to the target, so cost per chain mixes step cost and steps)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = phase_sweep(c, [n], r=r, census=cs, predict=False, **settings)
        best = min(best, time.perf_counter() - t0)
    return best, float(sum(res.points[0].diag["plain_mean_steps"]) / len(res.points[0].diag["plain_mean_steps"]))


def timed_reading(r: int, c: int, cs, draws: int) -> float:
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(draws, r, c, generator=gen, dtype=torch.float64)
    b = torch.randn(draws, c, generator=gen, dtype=torch.float64)
    t0 = time.perf_counter()
    cs.read_posterior(W, b) if cs is not None else classify(W, b)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--c", type=int, default=7)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--draws", type=int, default=20000, help="draws of the labelling timing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = dict(seeds=1, replicas=2, n_temps=4, n_warmup=10, n_draws=20, min_draws=20, block=20, max_steps=20,
                    n_chains=4, plain_draws=10)
    chains = settings["seeds"] * (settings["replicas"] * settings["n_temps"] + settings["n_chains"])
    cs3 = census(3, args.c, CensusSettings(n_prior=0, n_gd=0))
    print(f"posterior sweep at n = {args.n}, {chains} chains, {settings['n_warmup']} + {settings['n_draws']} rounds "
          f"of <= {settings['max_steps']} ticks, {args.threads} thread(s); census of (3, {args.c}): "
          f"{len(cs3.points)} points")
    rows = [(2, 6, None), (2, args.c, None), (3, args.c, cs3)]
    cost = {}
    for r, c, cs in rows:
        sec, steps = timed_sweep(r, c, args.n, cs, settings, args.repeat)
        cost[(r, c)] = sec / chains
        print(f"  r = {r}, c = {c} (d = {r * c + c:2d}): {sec:7.2f} s, {1e3 * cost[(r, c)]:8.2f} ms per chain, "
              f"plain chains' mean leapfrog steps per draw {steps:5.1f}")
    print(f"ratio per chain r = 3 / r = 2 at c = {args.c}: {cost[(3, args.c)] / cost[(2, args.c)]:.2f}; "
          f"r = 3, c = {args.c} / r = 2, c = 6: {cost[(3, args.c)] / cost[(2, 6)]:.2f}")
    zoo_s, census_s = timed_reading(2, args.c, None, args.draws), timed_reading(3, args.c, cs3, args.draws)
    print(f"labelling {args.draws} draws: zoo reading (r = 2) {zoo_s:.3f} s, census reading (r = 3) {census_s:.3f} s, "
          f"ratio {census_s / zoo_s:.1f}")


if __name__ == "__main__":
    main()
