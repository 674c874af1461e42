"""The lab's previous HMC driver (synchronous transitions), kept as the reference that the
tests and benchmarks compare the driver in rounds (tms.samplers.tempering) against.

Every transition runs all chains for max(n_steps) leapfrog steps (a chain that finished its
trajectory waits, frozen, for the batch's longest); warm-up adapts per-chain step sizes by
dual averaging (first 3/4) and records each chain's steps to the first U-turn (last 1/4);
sampling draws each transition's length from the chain's recorded lengths. With betas, every
transition is followed by even-odd replica swaps. Randomness from one torch.Generator (so
results depend on the batch layout), potential through autograd. Slow; not for real work.
"""
from __future__ import annotations

import math

import torch

from tms.samplers import hmc, rounds
from tms.core import rng


def swap(theta, energy, betas, parity: int, gen: torch.Generator):
    """Even-odd neighbour swaps of theta (..., K, d) from energies (..., K): (theta, accepted)."""
    K = theta.shape[-2]
    log_a = torch.nan_to_num((betas[1:] - betas[:-1]) * (energy[..., 1:] - energy[..., :-1]), nan=-math.inf)
    proposed = (torch.arange(K - 1) % 2) == parity
    acc = (torch.rand(log_a.shape, generator=gen, dtype=log_a.dtype).log() < log_a) & proposed
    idx = torch.arange(K).expand(acc.shape[:-1] + (K,))
    idx = idx + torch.nn.functional.pad(acc, (0, 1)).long() - torch.nn.functional.pad(acc, (1, 0)).long()
    return theta.gather(-2, idx.unsqueeze(-1).expand(theta.shape)), acc


def run_chains(energy_fn, theta0, *, n_warmup: int, n_draws: int, seed: int, prior_fn=None, betas=None,
               target_accept: float = 0.8, max_steps: int = 64, record=None) -> dict:
    """theta0 (..., d), or (..., K, d) with betas (K,); target exp(-beta E - P). Returns
    draws (n_draws, ...), accept_rate, divergences, mean_steps (per chain) and grad_evals
    (leapfrog steps the batch ran)."""
    gen = torch.Generator().manual_seed(seed)
    record = record or (lambda th: th)
    calls = [0]

    def U_fn(th):
        calls[0] += 1
        E = energy_fn(th) * (betas if betas is not None else 1.0)
        return E + (prior_fn(th) if prior_fn is not None else 0.0)

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
    K = theta0.shape[-2] if betas is not None else 1
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
        if betas is not None and K > 1:
            with torch.no_grad():
                th, _ = swap(state.theta, energy_fn(state.theta), betas, it % 2, gen)
            state = hmc.init(th, pf)
        if it >= n_warmup:
            draws.append(record(state.theta).detach().clone())
    return dict(draws=torch.stack(draws), accept_rate=acc / n_draws, divergences=div, mean_steps=steps / n_draws,
                grad_evals=calls[0])
