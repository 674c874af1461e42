"""Benchmark: the population loss's Hessian for N parameter sets, closed form against autograd.

Protocol: float64, (r, c) = (3, 7) by default (the census's), N random points (W, b ~ N(0, 1),
N(0, 0.25)), one batched call each of
  (a) tms.theory.hessian.population_hessian (closed form, no autograd),
  (b) autograd twice through the closed form (tms.theory.loss.batched_hessian), the simple reference,
  (c) the reverse-mode Jacobian of the analytic gradient, one vector-Jacobian product per
      coordinate batched over the points (what the census's Levenberg-Marquardt step used before).
Best of 5 after one warm-up, on the given torch threads. Prints us per point and the ratios
(b)/(a), (c)/(a), and the largest |(a) - (b)| (the benchmark refuses to time unequal answers).
Run: .venv/bin/python benchmarks/bench_hessian.py [--r 3 --c 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from tms.theory.hessian import population_hessian
from tms.theory.loss import (batched_hessian, flatten_params, population_loss, population_loss_and_grad,
                             unflatten_params)


def gradient_jacobian(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(c): the Jacobian of the analytic gradient by reverse mode, one VJP per coordinate."""
    r, c = W.shape[-2:]
    x = flatten_params(W, b).detach().clone().requires_grad_(True)
    n, d = x.shape
    with torch.enable_grad():
        _, gW, gb = population_loss_and_grad(*unflatten_params(x, r, c), compiled=False)
        g = flatten_params(gW, gb)
        basis = torch.eye(d, dtype=x.dtype).unsqueeze(1).expand(d, n, d)
        (H,) = torch.autograd.grad(g, x, grad_outputs=basis, is_grads_batched=True)
    return H.transpose(0, 1)


def best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--r", type=int, default=3)
    ap.add_argument("--c", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"Hessian of the population loss, r = {args.r}, c = {args.c}, d = {args.r * args.c + args.c}, "
          f"{args.threads} torch thread(s); us per point")
    print(f"{'N':>6s} {'closed form':>12s} {'autograd x2':>12s} {'grad Jacobian':>14s} {'x2 / closed':>12s} "
          f"{'Jac / closed':>13s} {'max |diff|':>11s}")
    for N in (1, 16, 256, 4096):
        W = torch.randn(N, args.r, args.c, generator=gen, dtype=torch.float64)
        b = 0.5 * torch.randn(N, args.c, generator=gen, dtype=torch.float64)
        diff = (population_hessian(W, b) - batched_hessian(population_loss, W, b)).abs().max().item()
        if diff > 1e-10:
            raise SystemExit(f"the closed form and autograd disagree by {diff:.2e} at N = {N}")
        t = [best_of(lambda f=f: f(W, b)) / N * 1e6 for f in
             (population_hessian, lambda W, b: batched_hessian(population_loss, W, b), gradient_jacobian)]
        print(f"{N:6d} {t[0]:12.1f} {t[1]:12.1f} {t[2]:14.1f} {t[1] / t[0]:12.1f} {t[2] / t[0]:13.1f} {diff:11.1e}")


if __name__ == "__main__":
    main()
