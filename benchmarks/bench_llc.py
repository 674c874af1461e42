"""Benchmark of the batched LLC estimator. Run on demand, not collected by pytest:

    .venv/bin/python benchmarks/bench_llc.py [--threads 2] [--bias] [--bias-study]

Protocol (throughput): TMS c = 6, full-batch n = 1000 (one data set, seed 0), eps = 1e-3,
gamma = 1, nbeta = n / log n, 100 centres x 8 chains x 500 steps, float64. Centres: the
SPEC 4 start near a 4-gon (radius 0.9, random rotation, N(0, 0.01^2) noise), i.e. what early
SGD checkpoints look like. Prints chain-steps per second of `estimate_llc` (exact sorted
loss), the same in float32, and of a straightforward reference written here (one torch
module and one SGLD optimiser per chain, chains and centres in a Python loop, direct loss
on the full batch), measured in the same run on a subset (3 centres x 2 chains x 100
steps). Then the split of one step of ours into loss+gradient, noise, and the rest.

--bias: the default protocol (tms.llc.estimator.PROTOCOL, i.e. `tms llc --point P` with its defaults,
seed 0) at the zoo points 6, 5+, 5 against theory rank/2, beside a long run (16 chains x
(5000 + 40000) steps) at the same nbeta = 1000 / log 1000: the numbers in tms.llc.estimator's docstring
and tests/llc/test_llc_converge.py. Only --bias (no throughput): add --no-throughput.

--bias-study: lambda_hat at the zoo points 5, 5+, 6 (c = 6, exact population loss) for
n = 5e3, 5e4, 5e5 (nbeta = n / log n), against rank(H)/2 and the finite-n Laplace value.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import time

import torch

from tms.theory.data import sample_inputs
from tms.llc.estimator import PROTOCOL, default_nbeta, estimate_llc
from tms.experiments import llc
from tms.theory.loss import (batched_grad, batched_hessian, empirical_loss_sorted, flatten_params, population_loss,
                      sorted_data)
from tms.core import rng
from tms.llc.estimator import tms_grad_fn
from tms.samplers import sgld


def centres_near_4gon(m: int, c: int, seed: int, dtype=torch.float64):
    """SPEC 4 start near a 4-gon: (m, 2, c), (m, c)."""
    g = torch.Generator().manual_seed(seed)
    rot = 2 * math.pi * torch.rand(m, 1, generator=g, dtype=dtype)
    ang = rot + torch.arange(4, dtype=dtype) * math.pi / 2
    W = torch.zeros(m, 2, c, dtype=dtype)
    W[:, 0, :4], W[:, 1, :4] = 0.9 * ang.cos(), 0.9 * ang.sin()
    W = W + 0.01 * torch.randn(W.shape, generator=g, dtype=dtype)
    return W, torch.zeros(m, c, dtype=dtype)


# ---- the straightforward reference --------------------------------------------------------


class TMS(torch.nn.Module):
    def __init__(self, W, b):
        super().__init__()
        self.W = torch.nn.Parameter(W.clone())
        self.b = torch.nn.Parameter(b.clone())

    def forward(self, x):
        return torch.relu(x @ self.W.T @ self.W + self.b)


class SGLD(torch.optim.Optimizer):
    """w <- w - (eps/2)(nbeta grad L + gamma (w - w*)) + N(0, eps I), one parameter set."""

    def __init__(self, params, eps, gamma, nbeta, generator):
        super().__init__(params, dict(eps=eps, gamma=gamma, nbeta=nbeta))
        self.gen = generator
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["centre"] = p.detach().clone()

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                drift = group["nbeta"] * p.grad + group["gamma"] * (p - self.state[p]["centre"])
                noise = torch.randn(p.shape, generator=self.gen, dtype=p.dtype)
                p.add_(-0.5 * group["eps"] * drift + math.sqrt(group["eps"]) * noise)


def reference_llc(W, b, X, *, nbeta, eps, gamma, n_chains, n_draws, seed):
    """Per centre: deep-copied module + optimiser per chain, everything in Python loops."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(W.shape[0]):
        base = TMS(W[i], b[i])
        with torch.no_grad():
            L0 = ((X - base(X)) ** 2).sum(-1).mean().item()
        chains = []
        for _ in range(n_chains):
            model = copy.deepcopy(base)
            opt = SGLD(model.parameters(), eps, gamma, nbeta, gen)
            total = 0.0
            for _ in range(n_draws):
                model.zero_grad()
                loss = ((X - model(X)) ** 2).sum(-1).mean()
                loss.backward()
                opt.step()
                total += loss.item()
            chains.append(nbeta * (total / n_draws - L0))
        out.append(sum(chains) / n_chains)
    return torch.tensor(out)


# ---- throughput ------------------------------------------------------------------------------


def throughput(args):
    c, n, C, K, T = 6, 1000, args.centres, args.n_chains, args.n_draws
    nbeta = default_nbeta(n)
    X = sample_inputs(n, c, 0)
    W, b = centres_near_4gon(C, c, 1)
    kw = dict(nbeta=nbeta, eps=1e-3, gamma=1.0, n_chains=K, n_burnin=0, n_draws=T, seed=0)

    t0 = time.perf_counter()
    res = estimate_llc(W, b, X, **kw)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    res32 = estimate_llc(W.float(), b.float(), X.float(), **kw)
    t_ours32 = time.perf_counter() - t0

    sc, sk, st = 3, 2, 100
    t0 = time.perf_counter()
    ref = reference_llc(W[:sc], b[:sc], X, nbeta=nbeta, eps=1e-3, gamma=1.0, n_chains=sk, n_draws=st, seed=0)
    t_ref = time.perf_counter() - t0

    rate = C * K * T / t_ours
    rate32 = C * K * T / t_ours32
    rate_ref = sc * sk * st / t_ref
    print(f"protocol: c={c}, n={n} full batch, eps=1e-3, gamma=1, nbeta=n/log n={nbeta:.2f}, "
          f"{C} centres x {K} chains x {T} steps")
    print(f"ours (float64, exact sorted L_n): {t_ours:7.2f} s   {rate:12,.0f} chain-steps/s")
    print(f"ours (float32):                   {t_ours32:7.2f} s   {rate32:12,.0f} chain-steps/s")
    print(f"reference (module+optimiser per chain, loops; {sc}x{sk}x{st} subset): {t_ref:6.2f} s   "
          f"{rate_ref:10,.0f} chain-steps/s")
    print(f"speed-up over the reference: float64 x{rate / rate_ref:,.0f}, float32 x{rate32 / rate_ref:,.0f}; "
          f"reference extrapolated to the whole protocol: {C * K * T / rate_ref:,.0f} s")
    flagged = int((~res.trustworthy).sum())
    print(f"estimates: mean lambda_hat over centres {res.llc.nanmean():.3f} (float32 {res32.llc.nanmean():.3f}); "
          f"flagged centres {flagged}/{C} (escape {int(res.flag_escape.sum())}, step {int(res.flag_step.sum())}: "
          f"these centres are perturbed 4-gons, not critical points); reference lambda_hat on its subset {ref.mean():.3f} "
          f"(ours on the same centres {res.llc[:sc].mean():.3f}; different noise, short reference chains)")

    # where the time of one step goes (same shapes as the protocol)
    data = sorted_data(X)
    Wk = W.unsqueeze(1).expand(C, K, 2, c)
    bk = b.unsqueeze(1).expand(C, K, c)
    st_ = sgld.init(flatten_params(Wk, bk), generator=0)
    gf = tms_grad_fn(lambda W_, b_: empirical_loss_sorted(W_, b_, data), 2, c)

    def per_call(f, reps=30):
        f()
        t = time.perf_counter()
        for _ in range(reps):
            f()
        return (time.perf_counter() - t) / reps

    t_grad = per_call(lambda: gf(st_.theta))
    t_noise = per_call(lambda: rng.normal(st_.key, torch.arange(rng.NOISE_BLOCK), 18)) / rng.NOISE_BLOCK
    t_step = t_ours / T
    print(f"per step ({C * K} chains): total {t_step * 1e3:.2f} ms = loss+grad {t_grad * 1e3:.2f} ms, "
          f"noise {t_noise * 1e3:.2f} ms, kernel/bookkeeping {max(t_step - t_grad - t_noise, 0) * 1e3:.2f} ms")
    el = C * K * c * c
    print(f"loss+grad handles {el:,} (class, output) pairs per step = "
          f"{t_grad / el * 1e9:.1f} ns per pair: tens of small elementwise kernels over "
          f"~{el * 8 / 1e6:.1f} MB arrays (memory/dispatch-bound, not FLOP-bound)")


# ---- bias study at the zoo points -------------------------------------------------------------


def bias_study(args):
    from tms.theory import zoo

    labels, pts, eigs = ["5", "5+", "6"], [], []
    for label in labels:
        q = zoo.critical_point(6, label)  # verified by tests/theory/test_zoo.py and tests/llc/test_llc_known.py
        W, b = q.W, q.b
        _, gW, gb = batched_grad(population_loss, W, b)
        assert torch.cat([gW.flatten(), gb.flatten()]).norm() < 1e-10
        h = torch.linalg.eigvalsh(batched_hessian(population_loss, W, b))
        pts.append((W, b))
        eigs.append(h[h > 1e-8 * h.max()])
    W = torch.stack([p[0] for p in pts])
    b = torch.stack([p[1] for p in pts])
    gamma = 1.0
    print(f"bias study: population loss, gamma={gamma}, {args.bias_chains} chains x {args.bias_steps} steps "
          f"(burn-in {args.bias_steps * 3 // 8}), eps = 0.05 / (nbeta h_max) per n")
    print(f"{'point':>5} {'n':>8} {'nbeta':>9} {'eps':>8} {'rank/2':>6} {'laplace':>8} {'lambda_hat':>10} "
          f"{'se':>6} {'bias':>7} {'accept':>6}")
    for n in (5e3, 5e4, 5e5):
        nb = default_nbeta(n)
        eps = 0.05 / (nb * max(float(h.max()) for h in eigs))
        t0 = time.perf_counter()
        burn = args.bias_steps * 3 // 8
        res = estimate_llc(W, b, loss="population", nbeta=nb, eps=eps, gamma=gamma, n_chains=args.bias_chains,
                           n_burnin=burn, n_draws=args.bias_steps - burn, seed=0)
        dt = time.perf_counter() - t0
        for i, (lab, h) in enumerate(zip(labels, eigs)):
            lap = (nb * h / (2 * (nb * h + gamma))).sum().item()
            m, se = res.llc[i].item(), res.llc_se[i].item()
            print(f"{lab:>5} {n:8.0e} {nb:9.1f} {eps:8.1e} {len(h) / 2:6.1f} {lap:8.3f} {m:10.3f} {se:6.3f} "
                  f"{m - len(h) / 2:+7.3f} {res.acceptance[i].item():6.3f}" + ("" if res.trustworthy[i] else "  FLAGGED"))
        print(f"   ({dt:.1f} s for n = {n:.0e})")


def default_protocol_bias(args):
    """The default protocol at 6, 5+, 5 (each point alone, as `tms llc --point P` runs it)
    against rank/2, and a long run at the same nbeta (all three in one batch)."""
    from tms.theory import zoo

    labels = ["6", "5+", "5"]
    print(f"default protocol {PROTOCOL}, population loss, nbeta = 1000 / log 1000, seed 0")
    print(f"{'point':>5} {'rank/2':>6} {'estimate':>9} {'se':>6} {'bias':>7} {'trend p':>8} {'rhat':>6}  "
          f"long run (16 chains x {args.long_steps} draws)")
    pts = [zoo.critical_point(6, lab) for lab in labels]
    long = estimate_llc(torch.stack([q.W for q in pts]), torch.stack([q.b for q in pts]), loss="population",
                        nbeta=default_nbeta(1000), eps=PROTOCOL.eps, gamma=PROTOCOL.gamma, n_chains=16,
                        n_burnin=5000, n_draws=args.long_steps, seed=1)
    for i, (lab, q) in enumerate(zip(labels, pts)):
        res = llc.run(point=lab, c=6).result
        m, se = res.llc.item(), res.llc_se.item()
        print(f"{lab:>5} {q.llc:6.1f} {m:9.4f} {se:6.4f} {m - q.llc:+7.4f} {res.trend_p.item():8.3g} "
              f"{res.rhat.item():6.3f}  {long.llc[i].item():.3f} +- {long.llc_se[i].item():.3f}"
              + ("" if res.trustworthy.item() else "  FLAGGED"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--centres", type=int, default=100)
    p.add_argument("--n-chains", type=int, default=8)
    p.add_argument("--n-draws", type=int, default=500, help="throughput: SGLD steps timed per chain")
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--bias", action="store_true")
    p.add_argument("--long-steps", type=int, default=40000)
    p.add_argument("--bias-study", action="store_true")
    p.add_argument("--bias-chains", type=int, default=16)
    p.add_argument("--bias-steps", type=int, default=8000)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    if not args.no_throughput:
        t0 = time.perf_counter()
        throughput(args)
        print(f"whole throughput protocol (ours + float32 + reference subset + profile): "
              f"{time.perf_counter() - t0:.1f} s")
    if args.bias:
        default_protocol_bias(args)
    if args.bias_study:
        bias_study(args)


if __name__ == "__main__":
    main()
