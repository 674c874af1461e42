"""Benchmark: loss + gradient for 100,000 parameter sets (c = 6, r = 2) in one batched call.

Protocol: float64, one call each of
  (a) closed-form population loss (tms.theory.loss.population_loss),
  (b) direct empirical loss on a data set of n = 1000 (tms.theory.loss.empirical_loss, O(n c)),
  (c) sorted exact empirical loss on the same data set (O(c^2 log n)),
each followed by backward ((b) in chunks of 4,000 sets: its activations for\n100,000 sets would need tens of GB). Best of 3 repeats after one warm-up. Prints throughput
(parameter sets per second) and ratios against (b), the simple reference.
Run: .venv/bin/python benchmarks/bench_loss.py [--sets 100000] [--threads N]
"""
import argparse
import os
import platform
import time

import torch

from tms.theory.data import sample_inputs
from tms.theory.loss import batched_grad, empirical_loss, empirical_loss_sorted, population_loss, sorted_data
from tms.theory.model import init_params


def timed(fn, repeats=3):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def direct_chunked(W, b, X, chunk=4000):
    """The O(n c) reference; chunked because 100,000 x n x c activations do not fit in memory."""
    for k in range(0, W.shape[0], chunk):
        batched_grad(lambda w, bb: empirical_loss(w, bb, X), W[k : k + chunk], b[k : k + chunk])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cpus; "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    W, b = init_params(2, 6, (args.sets,), sigma=0.7, seed=0)
    b = 0.2 * torch.randn(b.shape, generator=torch.Generator().manual_seed(1), dtype=b.dtype)
    X = sample_inputs(args.n, 6, 2)
    data = sorted_data(X)
    rows = [
        ("closed-form population loss", lambda: batched_grad(population_loss, W, b)),
        (f"direct empirical loss, n={args.n}", lambda: direct_chunked(W, b, X)),
        (f"sorted exact empirical loss, n={args.n}", lambda: batched_grad(lambda w, bb: empirical_loss_sorted(w, bb, data), W, b)),
    ]
    times = {name: timed(fn) for name, fn in rows}
    ref = times[rows[1][0]]
    print(f"{'loss + gradient, ' + str(args.sets) + ' sets':45s} {'seconds':>9s} {'sets/s':>12s} {'vs direct':>10s}")
    for name, _ in rows:
        t = times[name]
        print(f"{name:45s} {t:9.3f} {args.sets / t:12.3e} {ref / t:9.1f}x")


if __name__ == "__main__":
    main()
