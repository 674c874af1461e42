"""Benchmark: what the feature susceptibilities and the Bayesian influence function add to a
posterior sweep, both measured in one run.

Protocol. c = 6, r = 2, beta_lik = 1, seed 0; a `tms posterior` sweep (tms.experiments.
posterior.run, the quick ladders: 2 data sets x 4 ladders x 10 temperatures, up to 120 rounds)
over --ns, in a fresh folder, timed (its own time: the reference). Then, in the same process
(so imports both share are paid once, by the sweep), tms.experiments.susceptibility.run on
that folder: reading every point's saved draws, regenerating the data sets, every
susceptibility (||W_k||^2, b_k, L_k, the phase indicators: c x c matrices, spectra, the
exchangeable summaries) and the grouped BIF with their errors, the summary saved (no figure,
no predicted n_c). Printed: both wall times, the split of the second into reading the draws
and computing, and the ratio added / sweep (the target: under 0.20).

Measured (2-core x86_64 machine shared with other jobs, load ~5; torch 2.13, 1 thread;
--ns 200,450,800):
  sweep (tms posterior, zoo prediction included as the command runs it): 40.9 s
  susceptibilities + BIF from its draws: 1.8 s (reading the draws 1.4 s, computing 0.3 s)
  added / sweep: 0.04 (target < 0.20). The one-off costs of a fresh process (importing ArviZ
  to read the netCDF draws, ~17 s here; the k-gon solves behind the phase classifier) are the
  sweep's too, so a separate `tms susceptibility` process pays them again: 20 s of CPU for
  the 9 points of the quick c = 6 sweep, against its 31 s. The local-SGLD option (--local)
  is a sampler of its own and not counted here.

Run: python benchmarks/bench_susceptibility.py [--ns 200,450,800 --threads 1]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from tms.bayes.feature_response import feature_response
from tms.experiments import posterior as posterior_run
from tms.experiments import susceptibility as susceptibility_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", default="200,450,800", help="the sweep's n-grid")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    ns = [int(v) for v in args.ns.split(",")]
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; torch {torch.__version__}, "
          f"{args.threads} thread(s); c = 6, ns = {ns}, quick ladders")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sweep = posterior_run.run(6, ns, out=Path(tmp) / "posterior", threads=args.threads)
        t_sweep = time.perf_counter() - t0
        t0 = time.perf_counter()
        susceptibility_run.run(sweep.run_dir, out=Path(tmp) / "sus", predict=False, threads=args.threads)
        t_added = time.perf_counter() - t0
        t0 = time.perf_counter()
        draws = [susceptibility_run.point_draws(sweep.run_dir, 6, n)[:3] for n in ns]
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        for W, b, X in draws:
            feature_response(W, b, X)
        t_compute = time.perf_counter() - t0
    print(f"sweep (tms posterior):                 {t_sweep:7.1f} s")
    print(f"susceptibilities + BIF from its draws: {t_added:7.1f} s  (again, split: reading the draws {t_read:.1f} s, "
          f"computing {t_compute:.1f} s)")
    print(f"added / sweep: {t_added / t_sweep:.2f}  (target < 0.20)")


if __name__ == "__main__":
    main()
