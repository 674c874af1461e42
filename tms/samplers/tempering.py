"""Replica exchange (parallel tempering) over the likelihood temperature, and the driver
that runs batched HMC chains through warm-up and sampling, with or without tempering.

Tempered targets: p_beta(theta) proportional to exp(-beta * E(theta) - P(theta)), E the
energy that is tempered (for the TMS posterior E = n L_n, SPEC 3), P the part that is not
(the Gaussian prior). A ladder 0 < beta_0 < ... < beta_{K-1} lives on the last batch dim of
theta (..., K, d); every HMC step is followed by swap proposals between neighbours k, k+1
(even pairs, then odd pairs: the deterministic even-odd scheme), accepted with probability
min(1, exp((beta_{k+1} - beta_k) (E_{k+1} - E_k))). The product of the K tempered targets
is invariant, so the chain in slot K-1 samples p_{beta_{K-1}} even where chains at that
temperature alone never cross between wells: the hot end crosses, and swaps carry it up.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from tqdm.auto import tqdm

from tms import checks
from tms.samplers import hmc


def geometric_ladder(n_temps: int, beta_min: float, beta_max: float = 1.0, dtype=torch.float64) -> torch.Tensor:
    """(K,) inverse temperatures from beta_min to beta_max, equally spaced in log beta."""
    checks.positive_int(n_temps, "n_temps")
    checks.positive_float(beta_min, "beta_min")
    checks.positive_float(beta_max, "beta_max")
    if n_temps == 1:
        return torch.tensor([beta_max], dtype=dtype)
    if beta_min >= beta_max:
        raise ValueError(f"beta_min must be < beta_max, got {beta_min} >= {beta_max}")
    return torch.logspace(math.log10(beta_min), math.log10(beta_max), n_temps, dtype=dtype)


def swap(
    theta: torch.Tensor, energy: torch.Tensor, betas: torch.Tensor, parity: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Propose swaps of neighbours (k, k+1), k = parity, parity + 2, ...

    theta (..., K, d), energy (..., K) (the tempered part E), betas broadcastable to (..., K).
    Returns (theta after swaps, accepted (..., K-1) for every pair (False where not proposed),
    proposed (K-1,) bool).
    """
    K = theta.shape[-2]
    if K < 2:
        z = torch.zeros(theta.shape[:-2] + (0,), dtype=torch.bool, device=theta.device)
        return theta, z, torch.zeros(0, dtype=torch.bool)
    betas = betas.to(energy)
    dB = betas[..., 1:] - betas[..., :-1]
    log_a = dB * (energy[..., 1:] - energy[..., :-1])  # (..., K-1)
    log_a = torch.nan_to_num(log_a, nan=-math.inf)
    proposed = (torch.arange(K - 1, device=theta.device) % 2) == parity
    log_u = torch.rand(log_a.shape, generator=generator, dtype=log_a.dtype, device=log_a.device).log()
    acc = (log_u < log_a) & proposed
    # permutation of slots: slot k takes k+1 and k+1 takes k where pair k is accepted
    idx = torch.arange(K, device=theta.device).expand(acc.shape[:-1] + (K,)).clone()
    up = torch.nn.functional.pad(acc, (0, 1))  # slot k, pair (k, k+1) accepted
    down = torch.nn.functional.pad(acc, (1, 0))  # slot k, pair (k-1, k) accepted
    idx = idx + up.long() - down.long()
    theta = theta.gather(-2, idx.unsqueeze(-1).expand(theta.shape))
    return theta, acc, proposed


def run_chains(
    energy_fn: Callable[[torch.Tensor], torch.Tensor],
    theta0: torch.Tensor,
    *,
    n_warmup: int,
    n_draws: int,
    generator: torch.Generator | int,
    prior_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    betas: torch.Tensor | None = None,
    target_accept: float = 0.8,
    max_steps: int = 64,
    record: Callable[[torch.Tensor], torch.Tensor] | None = None,
    thin: int = 1,
    progress: bool = False,
    desc: str = "hmc",
) -> dict:
    """Warm up and sample batched HMC chains, optionally with replica exchange.

    energy_fn: theta (..., d) -> E (...); prior_fn: theta -> P (...) (not tempered; None = 0).
    theta0: (..., d) starting points; with betas (K,) the last batch dim of theta0 is the
    temperature slot (..., K, d) and the target of slot k is exp(-betas[k] E - P).
    Without betas the target is exp(-E - P).

    Warm-up (n_warmup steps, valid HMC moves with jittered lengths): the first 3/4 adapt
    each chain's step size by dual averaging; the last 1/4 freeze it and record each chain's
    steps to the first U-turn (capped at max_steps). Sampling (n_draws steps): fixed step size,
    trajectory length drawn from the chain's recorded lengths.

    record: theta (..., d) -> any tensor kept at every `thin`-th draw (default: theta).
    Returns a dict: draws (ceil(n_draws / thin), *record shape); accept_rate, divergences (during
    sampling), warmup_divergences, step_size, mean_steps: per chain (...);
    swap_rate (K-1,) mean swap acceptance per neighbour pair (tempering only); theta (final).
    """
    checks.tensor(theta0, "theta0", min_dim=1)
    checks.positive_int(n_warmup, "n_warmup", minimum=4)
    checks.positive_int(n_draws, "n_draws")
    checks.positive_int(max_steps, "max_steps")
    checks.positive_int(thin, "thin")
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}")
    gen = checks.generator(generator)
    record = record or (lambda th: th)
    if betas is not None:
        betas = betas.to(theta0)
        if betas.dim() != 1 or theta0.dim() < 2 or theta0.shape[-2] != betas.shape[0]:
            raise ValueError(
                f"with betas (K,) theta0 must be (..., K, d); got betas {tuple(betas.shape)}, theta0 {tuple(theta0.shape)}"
            )
        if bool((betas <= 0).any()) or not bool((betas[1:] > betas[:-1]).all()):
            raise ValueError("betas must be positive and strictly increasing")
    bcol = betas if betas is not None else None

    def U_fn(th):
        E = energy_fn(th)
        U = E * bcol if bcol is not None else E
        return U + prior_fn(th) if prior_fn is not None else U

    potential_fn = hmc.with_grad(U_fn)
    state = hmc.init(theta0, potential_fn)
    chain_shape = state.potential.shape
    eps = hmc.initial_step_size(state, potential_fn, gen)
    da = hmc.da_init(eps)
    n_adapt = max(1, (3 * n_warmup) // 4)
    n_record = n_warmup - n_adapt
    cap = torch.full(chain_shape, max_steps, dtype=torch.long, device=theta0.device)
    lengths = torch.empty((n_record,) + chain_shape, dtype=torch.long, device=theta0.device)

    acc_sum = torch.zeros(chain_shape, dtype=theta0.dtype, device=theta0.device)
    div = torch.zeros(chain_shape, dtype=torch.long, device=theta0.device)
    wdiv = torch.zeros_like(div)
    steps_sum = torch.zeros_like(div)
    K = theta0.shape[-2] if betas is not None else 1
    swap_acc = torch.zeros(max(K - 1, 0), dtype=theta0.dtype)
    swap_prop = torch.zeros(max(K - 1, 0), dtype=theta0.dtype)
    draws = []

    def do_swap(st, it):
        if betas is None or K < 2:
            return st
        with torch.no_grad():
            E = energy_fn(st.theta)
        th, acc, prop = swap(st.theta, E, betas, it % 2, gen)
        swap_acc.add_(acc.to(swap_acc.dtype).reshape(-1, K - 1).mean(0).cpu())
        swap_prop.add_(prop.to(swap_prop.dtype).cpu())
        return hmc.init(th, potential_fn)

    total = n_warmup + n_draws
    ema = torch.full(chain_shape, 8.0, dtype=theta0.dtype, device=theta0.device)  # U-turn steps guess
    bar = tqdm(range(total), desc=desc, disable=not progress, leave=False)
    for it in bar:
        if it < n_warmup:
            # jittered proposal length around the current U-turn estimate; the U-turn itself
            # is measured on the same trajectory (hmc.leapfrog) and recorded
            u = torch.rand(chain_shape, generator=gen, dtype=ema.dtype).to(ema.device)
            n_steps = (u * ema).ceil().long().clamp(1, max_steps)
            step_eps = da.log_eps.exp() if it < n_adapt else eps
            state, info = hmc.step(state, potential_fn, step_eps, n_steps, gen, uturn_cap=max_steps)
            ulen = info.uturn_steps.clamp(min=1)
            ema = 0.9 * ema + 0.1 * 2 * ulen.to(ema.dtype)  # uniform on [0, 2 * mean]: mean U-turn
            wdiv += info.divergent.long()
            if it < n_adapt:
                da = hmc.da_update(da, info.accept_prob, target=target_accept)
                if it == n_adapt - 1:
                    eps = da.log_eps_bar.exp()
            else:
                lengths[it - n_adapt] = ulen
        else:
            pick = torch.randint(0, n_record, (1,) + chain_shape, generator=gen).to(lengths.device)
            n_steps = lengths.gather(0, pick)[0]
            state, info = hmc.step(state, potential_fn, eps, n_steps, gen)
            acc_sum += info.accept_prob
            div += info.divergent.long()
            steps_sum += info.n_steps
        state = do_swap(state, it)
        if it >= n_warmup and (it - n_warmup) % thin == 0:
            draws.append(record(state.theta).detach().clone())
    out = dict(
        draws=torch.stack(draws),
        accept_rate=acc_sum / n_draws,
        divergences=div,
        warmup_divergences=wdiv,
        step_size=eps,
        mean_steps=steps_sum.to(theta0.dtype) / n_draws,
        theta=state.theta,
    )
    if betas is not None:
        out["swap_rate"] = swap_acc / swap_prop.clamp(min=1)
        out["betas"] = betas
    return out
