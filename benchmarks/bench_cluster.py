"""Benchmark: a small posterior sweep in-process, on 1 and on 2 local Dask workers (tms.bayes.tasks).

Protocol: tms.bayes.posterior.phase_sweep at c = 4 over an n-grid of 6 values (default
100,150,200,300,400,600), 2 data sets per n, the quick sampler settings with the budgets cut
(--n-draws rounds, --n-warmup), seed 0, float64, CPU, one torch thread per process.
  in-process, one batch:      posterior.phase_sweep over the whole grid in one batched call
                              (today's default path);
  in-process, 1 n per batch:  the same with batch_points = 1 (the tasks' batches);
  k workers:                  tms.bayes.tasks.phase_sweep(workers=k): a LocalCluster of k
                              single-threaded processes started and closed by the lab (in
                              the time; the start alone is printed first), one task per n.
Every variant writes to a fresh folder (nothing reused from disk); the results of all four
are checked to be bit-identical.
Each variant is timed --repeats times; the minimum is reported, and the ratios of each to
2 workers are printed.

Measured twice on the 2-core development machine shared with other jobs (load average
about 2): start and close of a 2-worker cluster 3.7-8.3 s; in-process one batch 4.1 / 5.2 s,
in-process 1 n per batch 13.3 / 14.5 s, 1 worker 20.0 / 20.9 s, 2 workers 20.3 / 23.5 s
(ratios in-process one batch / 2 workers 0.20x / 0.22x, 1 worker / 2 workers 0.98x / 0.89x).
Dask's task stream showed the two workers running side by side, each task 2-3x slower than
in-process: no core was idle to give.

The machine has 2 cores shared with every other job running at the time, so 2 workers can
at best halve the time and on a loaded machine do not: the ratio says only roughly what idle
cores would give. One batch over all n is the cheapest way to use one core (the sampler's
per-round costs are paid once for all n); tasks pay off when there are more cores than one
batch can use, i.e. on a cluster.
Run: .venv/bin/python benchmarks/bench_cluster.py [--c 4] [--ns 100,150,...] [--repeats 1]
"""
import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tms.core import cluster
from tms.bayes import posterior
from tms.bayes import tasks as bayes_tasks


def _timed(fn) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _sweep(c, ns, kw, where: Path, workers=None, batch_points=None) -> dict:
    if workers is None:
        return posterior.phase_sweep(c, ns, out_dir=where, predict=False, batch_points=batch_points, **kw)
    return bayes_tasks.phase_sweep(c, ns, out_dir=where, workers=workers, predict=False, points_per_task=1, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c", type=int, default=4)
    ap.add_argument("--ns", default="100,150,200,300,400,600")
    ap.add_argument("--n-draws", type=int, default=60, help="sampling-round budget per data set")
    ap.add_argument("--n-warmup", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ns = [int(v) for v in args.ns.split(",")]
    kw = dict(seed=0, seeds=2, n_warmup=args.n_warmup, n_draws=args.n_draws, min_draws=min(args.n_draws, 40))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus (shared with other jobs); torch {torch.__version__}")
    print(f"protocol: posterior c={args.c}, n = {ns}, {kw}; quick otherwise; one task per n on the workers")

    t_start = min(_timed(lambda: cluster.run_tasks([cluster.Task(os.getpid)], workers=2, progress=False))[0]
                  for _ in range(args.repeats))
    print(f"starting + closing a 2-worker LocalCluster (one trivial task): {t_start:.2f} s")
    times, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = (("in-process, one batch", None, None), ("in-process, 1 n per batch", None, 1),
                    ("1 worker", 1, None), ("2 workers", 2, None))
        for label, workers, bp in variants:
            runs = [_timed(lambda i=i, label=label, workers=workers, bp=bp:
                           _sweep(args.c, ns, kw, Path(tmp) / f"{label}{i}", workers, bp))
                    for i in range(args.repeats)]
            times[label], results[label] = min(t for t, _ in runs), runs[0][1]
            print(f"{label:>26}: {times[label]:7.2f} s")
    ref = results["in-process, one batch"]
    for label in results:
        assert all(np.array_equal(getattr(ref, k), getattr(results[label], k)) for k in ("ns", "mass", "mass_se", "occupancy")), label
    print("results identical in every variant")
    two = times["2 workers"]
    print(f"ratios to 2 workers: in-process one batch {times['in-process, one batch'] / two:.2f}x, in-process "
          f"1 n per batch {times['in-process, 1 n per batch'] / two:.2f}x, 1 worker {times['1 worker'] / two:.2f}x "
          "(2 shared cores: at most 2x)")


if __name__ == "__main__":  # the worker processes import this module: no work at import
    main()
