"""Benchmark: the paper's SGD protocol (SPEC 4) for 32 runs with the vectorised trainer.

Protocol: c = 6, r = 2, n = 1000 (one training set per run), batch 20, lr 0.005, 4500 epochs
= 225,000 steps per run, 4-gon start, float64, the default checkpoint schedule (exact train
and population losses of every checkpoint computed at the end, included in the time).
tms.dynamics.train.train_sgd runs all runs as one batch with an analytic gradient, one torch thread.

Reference, measured in the same process on a subset: tests/reference/train.py train_sgd_reference, one
torch.nn.Module and torch.optim.SGD per run with autograd, a Python loop over runs and
steps (same seeds, same numbers). Its per-run-step time is extrapolated to 32 x 225,000.

Also printed: per-step time against the number of runs R (short runs), which shows what
bounds the speed: a flat curve means per-step fixed costs (Python and torch dispatch of a
dozen small kernels), a linear one means arithmetic/memory.
Run: .venv/bin/python benchmarks/bench_train.py [--runs 32] [--epochs 4500] [--threads 1] [--profile]
"""
import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from tms.dynamics.train import train_sgd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference.train import train_sgd_reference  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=4500)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest at these sizes)")
    ap.add_argument("--ref-runs", type=int, default=2)
    ap.add_argument("--ref-steps", type=int, default=2000)
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also print a torch.profiler op table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cpus; "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    steps_per_run = args.epochs * 50
    print(f"protocol: {args.runs} runs x {steps_per_run} steps (n=1000, batch 20, lr 0.005), float64")

    t0 = time.perf_counter()
    res = train_sgd(runs=args.runs, seed=0, epochs=args.epochs, shared_data=False, threads=args.threads)
    wall = time.perf_counter() - t0
    print(f"vectorised: {wall:8.2f} s wall, {steps_per_run / wall:10.0f} vectorised steps/s, "
          f"{1e3 * wall / steps_per_run:.4f} ms per step of all runs, "
          f"{args.runs * steps_per_run / wall:.3g} run-steps/s")
    print(f"            final population loss: min {res.pop_loss[-1].min():.4f}, max {res.pop_loss[-1].max():.4f}")

    ref_epochs = -(-args.ref_steps // 50)
    t0 = time.perf_counter()
    train_sgd_reference(args.ref_runs, seed=0, epochs=ref_epochs, shared_data=False, steps=[args.ref_steps])
    ref = (time.perf_counter() - t0) / (args.ref_runs * args.ref_steps)
    ref_total = ref * args.runs * steps_per_run
    print(f"reference (module + optimizer per run, autograd): {1e3 * ref:.4f} ms per run-step "
          f"({args.ref_runs} runs x {args.ref_steps} steps), extrapolated {ref_total:.0f} s for the protocol")
    print(f"ratio reference / vectorised: {ref_total / wall:.1f}x   target (< 180 s): "
          f"{'met' if wall < 180 else 'NOT met'}")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_sgd(runs=args.runs, seed=0, epochs=40, shared_data=False, steps=[0], progress=False,
                      threads=args.threads)
        print(f"op profile of 2000 steps with R = {args.runs} (self CPU time; per step = total / 2000):")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))

    if not args.no_scaling:
        print("per-step time vs number of runs (2000 steps, checkpoint losses excluded):")
        for R in (1, 32, 256, 2048):
            t0 = time.perf_counter()
            train_sgd(runs=R, seed=0, epochs=40, shared_data=False, steps=[0], progress=False, threads=args.threads)
            dt = time.perf_counter() - t0
            print(f"  R = {R:5d}: {1e3 * dt / 2000:.4f} ms per step, {1e6 * dt / 2000 / R:.3f} us per run-step")


if __name__ == "__main__":
    main()
