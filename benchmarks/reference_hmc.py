"""The lab's previous HMC driver (synchronous transitions), kept as the benchmarks' reference.

Every transition runs all chains for max(n_steps) leapfrog steps (a chain that finished its
trajectory waits, frozen, for the batch's longest); warm-up adapts per-chain step sizes by
dual averaging (first 3/4) and records each chain's steps to the first U-turn (last 1/4);
sampling draws each transition's length from the chain's recorded lengths. Plain chains
only (no tempering). Randomness from one torch.Generator. Potential through autograd.
"""
from __future__ import annotations

import torch

from tms.samplers import hmc, rng, rounds


def run_chains(energy_fn, theta0, *, n_warmup: int, n_draws: int, seed: int, prior_fn=None,
               target_accept: float = 0.8, max_steps: int = 64, record=None) -> dict:
    """theta0 (..., d); target exp(-E - P). Returns draws (n_draws, ...), accept_rate,
    divergences, mean_steps (per chain) and grad_evals (leapfrog steps the batch ran)."""
    gen = torch.Generator().manual_seed(seed)
    record = record or (lambda th: th)
    calls = [0]

    def U_fn(th):
        calls[0] += 1
        return energy_fn(th) + (prior_fn(th) if prior_fn is not None else 0.0)

    pf = hmc.with_grad(U_fn)
    state = hmc.init(theta0, pf)
    shape = state.potential.shape
    flat = torch.arange(state.potential.numel())
    eps = rounds.initial_step_size(rounds.Chains(state.theta, state.potential, state.grad),
                                   rng.item_keys(seed, tuple(shape)), pf)  # the same heuristic as the lab's
    da = rounds.da_init(eps.reshape(-1))
    n_adapt = max(1, (3 * n_warmup) // 4)
    lengths = torch.empty((n_warmup - n_adapt,) + shape, dtype=torch.long)
    ema = torch.full(shape, 8.0, dtype=theta0.dtype)
    acc, div, steps = torch.zeros(shape, dtype=theta0.dtype), torch.zeros(shape), torch.zeros(shape)
    draws = []
    for it in range(n_warmup + n_draws):
        if it < n_warmup:  # jittered length, U-turn measured on the same trajectory
            n_steps = (torch.rand(shape, generator=gen, dtype=ema.dtype) * ema).ceil().long().clamp(1, max_steps)
            step = da.log_eps.exp().reshape(shape) if it < n_adapt else eps
            state, info = hmc.step(state, pf, step, n_steps, gen, uturn_cap=max_steps)
            ulen = info.uturn_steps.clamp(min=1)
            ema = 0.9 * ema + 0.1 * 2 * ulen.to(ema.dtype)
            if it < n_adapt:
                rounds.da_update(da, flat, info.accept_prob.reshape(-1), target_accept)
                eps = da.log_eps_bar.exp().reshape(shape) if it == n_adapt - 1 else eps
            else:
                lengths[it - n_adapt] = ulen
        else:
            pick = torch.randint(0, lengths.shape[0], (1,) + shape, generator=gen)
            state, info = hmc.step(state, pf, eps, lengths.gather(0, pick)[0], gen)
            acc += info.accept_prob
            div += info.divergent
            steps += info.n_steps
            draws.append(record(state.theta).detach().clone())
    return dict(draws=torch.stack(draws), accept_rate=acc / n_draws, divergences=div, mean_steps=steps / n_draws,
                grad_evals=calls[0])
