"""Benchmark: the lab's posterior sampler (HMC in rounds on the compiled numba round,
tms.samplers.tempering.run_chains) against NumPyro's NUTS on the same posterior: ESS of the
biases per wall second and per gradient evaluation.

Protocol. c = 6, r = 2, d = 18, one data set of n = 600 inputs (sample_inputs(600, 6, 0)),
the posterior of SPEC 3 at beta_lik = 1: U(theta) = n L_n(W, b) + |theta|^2 / 2.
1. Same posterior. NUTS gets U written in JAX from SPEC 1 directly (dense over the n inputs,
   float64); before any timing, U and its gradient are checked against the lab's fused energy
   (tms.bayes.posterior.energy_grad_fn, n L_n) + posterior.prior at --check-points random
   points, to 1e-9 relative.
2. NUTS: numpyro.infer.NUTS(potential_fn=U), defaults (target_accept_prob 0.8, max_tree_depth
   10, diagonal mass adapted), --nuts-chains chains from the first rows of the lab's start
   (bench_posterior's th0: torch.randn((1, 256, 18), seed 2)), --nuts-warmup + --nuts-samples
   iterations, progress bar off. chain_method 'vectorized' (all chains in lockstep on one XLA
   device) and/or 'parallel' (NumPyro's documented mix: jax.pmap over 2 host devices of
   vectorized halves; XLA_FLAGS=--xla_force_host_platform_device_count=2). Wall time of
   warm-up + sampling; JAX's tracing and compilation (the union of its
   /jax/core/compile/* event spans) is reported and subtracted.
3. The lab: bench_posterior.run_new, --n-chains chains from th0, --warmup + --draws rounds of
   --max-steps ticks, compiled, 1 and 2 threads (torch on 1 thread).
ESS as bench_posterior.bias_ess: single-chain split ESS of each bias, summed over chains, min
over the six biases. Gradients per chain: NUTS's leapfrog steps (num_steps, warm-up
included; a vectorized run computes every chain's lane until the longest tree of the
iteration ends, reported as "lockstep"); the lab's ticks ((warmup + draws) x max steps).

Measured (2-core AMD EPYC, idle, 2026-12-07 evening; torch 2.13, numba 0.68, jax 0.10.2,
numpyro 0.22.0; defaults unless said; the lab on its grouped round, bench_posterior.py):
  NUTS vectorized, 4 chains, 500 + 1000: 168k gradients per chain (112 leapfrog steps per
    iteration, 197 in lockstep, trees up to the 1023-step cap), bias ESS 1,558 (2.3 per chain
    per 1000 of its gradients); run 33.1 s + JAX compile 16.1 s: 47.1 ESS/s (31.7 with compile).
  NUTS parallel (2 host devices x 2 vectorized chains): 170k gradients per chain (lockstep
    154), ESS 1,355 (2.0 per 1000; other keys); run 17.3 s + compile 8.4 s: 78.2 ESS/s.
  Lab, 256 chains, 150 + 400 rounds of 40 ticks, compiled: 22,000 gradients per chain, ESS
    80,052 (14.2 per chain per 1000, 6x NUTS's); 3.2 s on 1 thread: 24,900 ESS/s; 1.9 s on 2
    threads: 43,200 ESS/s.
  Ratio lab / NUTS ESS/s: on the same two cores (lab 2 threads, NUTS parallel on 2 devices)
    502x; one core each (lab 1 thread, NUTS vectorized on one device) 530x; lab 2 threads
    against vectorized NUTS 919x. (Earlier the same day, shared machine, before the lab's
    grouped round: 276-374x on 1 thread.)
  Bias means: NUTS (vectorized) -0.624 -0.569 -0.551 -0.566 -0.604 -0.596, lab -0.636 -0.575
    -0.561 -0.571 -0.613 -0.605: 0.005-0.012 apart, 1-2 standard errors of NUTS's means (sd
    of the chain means 0.01-0.02 in both, 4 NUTS chains); NUTS parallel with 8 chains,
    300 + 800, --seed 1: -0.640 -0.578 -0.565 -0.568 -0.608 -0.603, within 0.005 of the lab.
    No chain of either sits apart (in another phase, with other biases) from these starts.
What the machine's limit would allow. The lab's tick costs ~0.5 us a chain on one core
(~1,500 cycles; bench_posterior.py: the scalar table lookups and the per-chain bookkeeping
bound it, at ~0.7 flop per cycle). The limit of a core for one chain-tick is its loads and
divisions: ~110 loads (36 bucket lookups, 72 prefix sums) at 2 per cycle and 36 divisions at
~4 per 8 cycles, ~150 cycles, about 10x below the tick now; the ~1,000 flops at AVX2's 16 per
cycle are below that. At that limit the ratio would be ~5,000x on the same cores (NUTS's
gradient is XLA's dense one, left as it is).
What bounds NUTS here. The gradient: U + grad U dense over 600 inputs costs 20-30 us per
chain in XLA (float64, 6-wide matrices; measured alone above), against ~0.5 us for the lab's
whole tick on the exact sorted energy (O(c^2 log n), bench_posterior): 40-60x. NUTS then
takes ~112 leapfrog steps an iteration, vectorized chains wait for the longest tree of each
iteration (197 steps, 1.75x), and its ESS per gradient is 6x below the lab's.
Compile: JAX traces and compiles the warm-up loop and the sampling loop separately (7-28 s,
excluded from ESS/s, shown with it); the run's wall minus compile matches lockstep steps x
chains x the gradient's cost (24 s of the 29.6 s run).

Run: python benchmarks/bench_nuts.py [--nuts-chains 4 --nuts-warmup 500 --nuts-samples 1000
     --chain-method vectorized|parallel|both --n-chains 256 --warmup 150 --draws 400
     --max-steps 40 --lab-threads 1,2]  (defaults: NUTS ~1 min with compile, the lab ~10 s)
Needs the optional extra: pip install -e '.[nuts]' (numpyro, which pulls jax).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tms.bayes import posterior
from tms.theory.data import sample_inputs
from tms.theory.loss import sorted_data, stack_sorted

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_posterior  # noqa: E402

R, C = bench_posterior.R, bench_posterior.C
D = R * C + C
HOST_DEVICES = 2  # the 'parallel' chain method's XLA host devices (one per core here)


def import_jax(parallel: bool):
    """(jax, numpyro) with float64 on, or None with how to install them. The host-device
    count of 'parallel' must be set before jax is first imported."""
    if parallel:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={HOST_DEVICES}").strip()
    try:
        import jax
        import numpyro
    except ImportError as err:
        print(f"bench_nuts needs numpyro and jax ({err}); install them with: pip install -e '.[nuts]'")
        return None
    jax.config.update("jax_enable_x64", True)
    return jax, numpyro


def jax_potential(inputs: torch.Tensor):
    """U(theta) = sum_i ||x_i - ReLU(W^T W x_i + b)||^2 + |theta|^2 / 2 (SPEC 1, 3), dense
    over the n inputs (n, c); theta (d,) = (W (r, c) row-major, b (c,))."""
    import jax.numpy as jnp

    x = jnp.asarray(inputs.numpy())

    def potential(theta):
        w, b = theta[: R * C].reshape(R, C), theta[R * C:]
        out = jnp.maximum((x @ w.T) @ w + b, 0.0)
        return jnp.sum((x - out) ** 2) + 0.5 * jnp.sum(theta**2)

    return potential


def check_same_posterior(potential, data, n_points: int, seed: int = 5) -> float:
    """Assert that the JAX potential and its gradient equal the lab's energy + prior at
    n_points random points (N(0, I) draws, so most outputs are active on part of [0, 1]);
    returns the largest relative difference."""
    import jax

    theta = torch.randn((1, n_points, D), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    energy, grad = posterior.energy_grad_fn(data, R, C)(theta)
    lab_u = (energy + posterior.prior(theta))[0].numpy()
    lab_grad = (grad + theta)[0].numpy()
    u_and_grad = jax.jit(jax.vmap(jax.value_and_grad(potential)))
    jax_u, jax_grad = (np.asarray(a) for a in u_and_grad(theta[0].numpy()))
    rel_u = np.abs(jax_u - lab_u) / np.abs(lab_u)
    rel_grad = np.linalg.norm(jax_grad - lab_grad, axis=-1) / np.linalg.norm(lab_grad, axis=-1)
    worst = float(max(rel_u.max(), rel_grad.max()))
    assert worst < 1e-9, f"the JAX potential is not the lab's posterior: relative difference {worst:.2e}"
    return worst


def nuts_chains(numpyro, potential, init, rng_key, args):
    """Warm-up + sampling of init.shape[0] NUTS chains, vectorized; (draws (chains, T, d),
    leapfrog steps of warm-up (chains, W) and of sampling (chains, T))."""
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(potential_fn=potential), num_warmup=args.nuts_warmup, num_samples=args.nuts_samples,
                num_chains=init.shape[0], chain_method="vectorized", progress_bar=False)
    start = init[0] if init.shape[0] == 1 else init  # one chain: MCMC takes its start unbatched
    mcmc.warmup(rng_key, init_params=start, extra_fields=("num_steps",), collect_warmup=True)
    warm_steps = mcmc.get_extra_fields(group_by_chain=True)["num_steps"]
    mcmc.run(rng_key, extra_fields=("num_steps",))
    draws = mcmc.get_samples(group_by_chain=True)
    return draws, warm_steps, mcmc.get_extra_fields(group_by_chain=True)["num_steps"]


def run_parallel(jax, numpyro, potential, init, rng_key, args):
    """nuts_chains on HOST_DEVICES XLA devices at once (jax.pmap of vectorized shares)."""
    n_dev = jax.local_device_count()
    assert init.shape[0] % n_dev == 0, f"--nuts-chains must be a multiple of the {n_dev} devices"
    shares = init.reshape((n_dev, init.shape[0] // n_dev) + init.shape[1:])
    keys = jax.random.split(rng_key, n_dev)
    out = jax.pmap(lambda share, key: nuts_chains(numpyro, potential, share, key, args))(shares, keys)
    return tuple(a.reshape((-1,) + a.shape[2:]) for a in out)


def gradient_cost(jax, potential, init, reps: int = 2000) -> float:
    """us per chain of one evaluation of U and grad U alone (init.shape[0] chains at once,
    vmapped), reps evaluations chained in one compiled loop (no dispatch between them)."""
    value_and_grad = jax.vmap(jax.value_and_grad(potential))

    def step(_, theta):
        return theta - 1e-9 * value_and_grad(theta)[1]  # depends on the last evaluation

    loop = jax.jit(lambda theta: jax.lax.fori_loop(0, reps, step, theta))
    jax.block_until_ready(loop(init))
    start = time.perf_counter()
    jax.block_until_ready(loop(init))
    return 1e6 * (time.perf_counter() - start) / (reps * init.shape[0])


class CompileClock:
    """Seconds JAX spends tracing, lowering and compiling (the union of its
    /jax/core/compile/* event spans) since the last reset."""

    def __init__(self, jax):
        self.spans: list[tuple[float, float]] = []
        jax.monitoring.register_event_time_span_listener(self._record)

    def reset(self) -> None:
        self.spans.clear()

    def _record(self, event: str, start: float, end: float, **_) -> None:
        if event.startswith("/jax/core/compile/"):
            self.spans.append((start, end))

    def seconds(self) -> float:
        total, reach = 0.0, -np.inf
        for start, end in sorted(self.spans):
            total += max(0.0, end - max(start, reach))
            reach = max(reach, end)
        return total


def time_nuts(jax, numpyro, potential, init, method: str, args, clock: CompileClock):
    """One NUTS run from init (chains, d) by chain method; dict of the draws (T, 1, chains, d)
    torch, steps per iteration (chains, W + T), wall seconds with and without JAX's compilation."""
    key = jax.random.PRNGKey(args.seed)
    clock.reset()
    start = time.perf_counter()
    if method == "parallel":
        out = run_parallel(jax, numpyro, potential, init, key, args)
    else:
        out = nuts_chains(numpyro, potential, init, key, args)
    draws, warm_steps, steps = (np.array(a) for a in jax.block_until_ready(out))
    wall = time.perf_counter() - start
    compile_s = clock.seconds()
    return {"draws": torch.from_numpy(draws).permute(1, 0, 2)[:, None], "wall": wall, "compile": compile_s,
            "run": wall - compile_s, "steps": np.concatenate([warm_steps, steps], axis=1),
            "lanes": 1 if method == "vectorized" else jax.local_device_count()}


def report_nuts(method: str, res: dict) -> float:
    """Print one NUTS run's ESS and costs; its ESS/s (compilation excluded)."""
    ess = bench_posterior.bias_ess(res["draws"]).min()
    steps = res["steps"]  # (chains, W + T)
    n_chains, n_draws = steps.shape[0], res["draws"].shape[0]
    grads = steps.sum(1).mean()  # per chain
    shares = steps.reshape(res["lanes"], -1, steps.shape[1])  # lockstep within each device's share
    lockstep = shares.max(1).mean()
    print(f"NUTS {method}: wall {res['wall']:.1f} s ({res['compile']:.1f} s JAX compile, {res['run']:.1f} s run), "
          f"{grads:.0f} gradients per chain, bias ESS min {ess:.0f}; ESS/s {ess / res['run']:.1f} "
          f"({ess / res['wall']:.1f} with compile); ESS per chain per 1000 of its gradients "
          f"{1000 * ess / n_chains / grads:.2f}")
    print(f"  steps per iteration: mean {steps.mean():.1f} (warm-up {steps[:, :-n_draws].mean():.1f}, sampling "
          f"{steps[:, -n_draws:].mean():.1f}), lockstep {lockstep:.1f}, max {steps.max()}")
    return ess / res["run"]


def bias_means(draws: torch.Tensor) -> np.ndarray:
    """(T, 1, chains, d) -> the six biases' posterior means over draws and chains."""
    return draws[:, 0, :, R * C:].to(torch.float64).mean((0, 1)).numpy()


def chain_spread(draws: torch.Tensor) -> np.ndarray:
    """(T, 1, chains, d) -> the spread (sd over chains) of each bias's per-chain mean: large
    when the chains sit in different phases."""
    return draws[:, 0, :, R * C:].to(torch.float64).mean(0).std(0).numpy()


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--nuts-chains", type=int, default=4)
    p.add_argument("--nuts-warmup", type=int, default=500)
    p.add_argument("--nuts-samples", type=int, default=1000)
    p.add_argument("--chain-method", choices=["vectorized", "parallel", "both"], default="vectorized")
    p.add_argument("--seed", type=int, default=0, help="NUTS's PRNG key")
    p.add_argument("--check-points", type=int, default=64)
    p.add_argument("--n-chains", type=int, default=256, help="the lab's chains")
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--draws", type=int, default=400)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--lab-threads", default="1,2", help="thread counts of the lab's compiled round ('' skips)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    methods = ["vectorized", "parallel"] if args.chain_method == "both" else [args.chain_method]
    loaded = import_jax("parallel" in methods)
    if loaded is None:
        return
    jax, numpyro = loaded
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; torch {torch.__version__}, "
          f"jax {jax.__version__}, numpyro {numpyro.__version__}, {jax.local_device_count()} XLA devices; "
          f"c={C}, n={args.n}")
    inputs = sample_inputs(args.n, C, 0)
    data = posterior.with_dims(stack_sorted([sorted_data(inputs)]), 1)  # (1, 1), as bench_posterior
    potential = jax_potential(inputs)
    print(f"same posterior: U and grad U agree with the lab's at {args.check_points} points "
          f"(max relative difference {check_same_posterior(potential, data, args.check_points):.1e})")
    th0 = torch.randn((1, max(args.n_chains, args.nuts_chains), D), generator=torch.Generator().manual_seed(2),
                      dtype=torch.float64)
    init = jax.numpy.asarray(th0[0, : args.nuts_chains].numpy())
    print(f"JAX U + grad U alone: {gradient_cost(jax, potential, init):.1f} us per chain-evaluation "
          f"({args.nuts_chains} chains vmapped, one device)")
    clock, nuts = CompileClock(jax), {}
    for method in methods:
        res = time_nuts(jax, numpyro, potential, init, method, args, clock)
        nuts[method] = (report_nuts(f"{method}, {args.nuts_chains} chains, {args.nuts_warmup}+{args.nuts_samples}",
                                    res), res)
    best = max(nuts, key=lambda m: nuts[m][0])
    print(f"NUTS bias means ({best}): {np.array2string(bias_means(nuts[best][1]['draws']), precision=3)}; "
          f"sd over chains of the chain means {np.array2string(chain_spread(nuts[best][1]['draws']), precision=3)}")
    compare_lab(data, th0[:, : args.n_chains], args, nuts[best][0], best)


def compare_lab(data, th0: torch.Tensor, args, nuts_ess_s: float, method: str) -> None:
    """The lab's sampler at each thread count of --lab-threads and its ESS/s over NUTS's; a
    short run first loads (on a fresh checkout compiles) the numba kernels, untimed."""
    label = f"{args.n_chains} chains, rounds of {args.max_steps}, {args.warmup}+{args.draws} rounds"
    for threads in [int(k) for k in args.lab_threads.split(",") if k]:
        short = argparse.Namespace(warmup=4, draws=2, max_steps=args.max_steps)
        bench_posterior.run_new(data, th0, short, True, threads)
        out, wall, grads = bench_posterior.run_new(data, th0, args, True, threads)
        lab_ess_s = bench_posterior.report(f"lab compiled, {threads} thread(s) ({label})", out, wall, grads)
        per_chain = bench_posterior.bias_ess(out.draws).min() / args.n_chains
        print(f"  ESS per chain per 1000 of its gradients {1000 * per_chain / grads:.2f}")
        print(f"  bias means {np.array2string(bias_means(out.draws), precision=3)}; sd over chains of the chain "
              f"means {np.array2string(chain_spread(out.draws), precision=3)}")
        print(f"ratio ESS/s lab ({threads} thread(s)) / NUTS ({method}, compile excluded): "
              f"{lab_ess_s / nuts_ess_s:.1f}x")


if __name__ == "__main__":
    main()
