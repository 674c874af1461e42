"""Replica exchange (parallel tempering) over the likelihood temperature, and the driver
that runs batched HMC chains (tms.samplers.rounds) through warm-up and sampling.

Tempered targets: p_beta(theta) proportional to exp(-beta E(theta) - P(theta)), E the
energy that is tempered (for the TMS posterior E = n L_n, SPEC 3), P the part that is not
(the Gaussian prior). A ladder 0 < beta_0 < ... < beta_{K-1} lives on the last batch dim of
theta (..., K, d). After every round (all chains at a trajectory boundary) neighbours k, k+1
are proposed for a swap (even pairs after even rounds, odd after odd: the deterministic
even-odd scheme), accepted with probability min(1, exp((beta_{k+1} - beta_k)(E_{k+1} - E_k))).
The product of the K tempered targets is invariant, so the slot K-1 samples p_{beta_{K-1}}
even where chains at that temperature alone never cross between wells.

Ladder placement (warm-up): the temperatures are re-placed so that every neighbour pair
has the same rejection rate (the cumulative rejection along log beta is made linear, the
communication-barrier rule of Syed et al. 2019 for even-odd tempering); the swap rates are
pooled over the dims along which `betas` is broadcast (in tms.bayes.posterior: the R ladders of
one data set), so each data set gets its own ladder. Round trips (a replica going from the
hottest slot to the coldest and back) are counted per ladder while sampling.

Driver = ``warmup`` then ``sample`` (pure functions over an explicit SamplerState, so a
caller can sample in blocks, check precision and drop finished items: see tms.bayes.sweep).
Both can be split over calls with the same numbers: warm-up as warmup_start, warmup_rounds,
warmup_end over an explicit Warmup, sampling by passing the previous call's out as `totals`;
a caller saves the state between calls and resumes from it (tms.bayes.sweep).
All randomness is counter-based per chain key (tms.core.rng).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from tms.core import progress as progress_bar
from tms.core import checks
from tms.core import rng
from tms.samplers import rounds
from tms.samplers.hmc import with_grad

N_PLACE = 4  # ladder placements during warm-up (a fixed-point iteration on the swap rates)


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


def swap(chains: rounds.Chains, betas: torch.Tensor, parity: int, u: torch.Tensor, replica: torch.Tensor | None = None):
    """Propose swaps of neighbours (k, k+1), k = parity, parity + 2, ...

    chains: theta (..., K, d), energy (..., K) (the tempered part E); betas broadcastable to
    (..., K); u (..., K-1) uniforms in (0, 1]. replica (..., K): the replica in each slot.
    Returns (chains after swaps, accepted (..., K-1) (False where not proposed), replica).
    """
    K = chains.theta.shape[-2]
    E = chains.energy
    if K < 2:
        return chains, torch.zeros(E.shape[:-1] + (0,), dtype=torch.bool, device=E.device), replica
    betas = betas.to(E)
    log_a = (betas[..., 1:] - betas[..., :-1]) * (E[..., 1:] - E[..., :-1])  # (..., K-1)
    log_a = torch.nan_to_num(log_a, nan=-math.inf)
    proposed = (torch.arange(K - 1, device=E.device) % 2) == parity
    acc = (u.log().to(log_a.dtype) < log_a) & proposed
    # slot k takes k+1 and k+1 takes k where pair k is accepted
    idx = torch.arange(K, device=E.device).expand(acc.shape[:-1] + (K,))
    idx = idx + torch.nn.functional.pad(acc, (0, 1)).long() - torch.nn.functional.pad(acc, (1, 0)).long()
    th = chains.theta.gather(-2, idx.unsqueeze(-1).expand(chains.theta.shape))
    gE = chains.egrad.gather(-2, idx.unsqueeze(-1).expand(chains.egrad.shape))
    rep = None if replica is None else replica.gather(-1, idx)
    return rounds.Chains(th, E.gather(-1, idx), gE), acc, rep


def place_ladder(betas: torch.Tensor, swap_rate: torch.Tensor) -> torch.Tensor:
    """Temperatures (..., K) re-placed so that neighbour rejection rates are equal.

    swap_rate (..., K-1): measured acceptance of each pair. The cumulative rejection
    Lambda (piecewise linear in log beta through the current temperatures) is inverted at
    K equally spaced levels; beta_0 and beta_{K-1} stay. Returns (..., K).
    """
    K = betas.shape[-1]
    if K < 3:
        return betas
    rej = (1.0 - swap_rate).clamp(min=1e-3)  # a tiny floor keeps Lambda strictly increasing
    lam = torch.nn.functional.pad(rej.cumsum(-1), (1, 0))  # (..., K)
    lb = betas.log().expand(lam.shape)
    levels = torch.linspace(0, 1, K, dtype=lam.dtype, device=lam.device) * lam[..., -1:]
    j = torch.searchsorted(lam.contiguous(), levels.contiguous()).clamp(1, K - 1)
    l0, l1 = lam.gather(-1, j - 1), lam.gather(-1, j)
    b0, b1 = lb.gather(-1, j - 1), lb.gather(-1, j)
    new = (b0 + (levels - l0) / (l1 - l0) * (b1 - b0)).exp()
    new[..., 0], new[..., -1] = betas[..., 0], betas[..., -1]
    return new


class SamplerState(NamedTuple):
    """Everything the driver carries between rounds.

    chains: rounds.Chains, batch (..., [K]); keys (..., [K]) int64 chain keys; betas None or
    broadcastable to (..., K); step_size (..., [K]); lengths (n_rec, ..., [K]) U-turn lengths
    recorded in warm-up; replica (..., K) replica in each slot and last_end (..., K) per
    replica (0 none, 1 hottest, 2 coldest), or None; counts (..., [K]) trajectories run per
    chain (the random numbers' counter); rounds: rounds run (the swap counter).
    """

    chains: rounds.Chains
    keys: torch.Tensor
    betas: torch.Tensor | None
    step_size: torch.Tensor
    lengths: torch.Tensor
    replica: torch.Tensor | None
    last_end: torch.Tensor | None
    counts: torch.Tensor
    rounds: int


class Target(NamedTuple):
    """The target: energy_grad (tempered part) and prior_grad (untempered, or None), each
    theta (..., d) -> (value (...), grad (..., d)); n_ticks leapfrog ticks per round."""

    energy_grad: Callable
    prior_grad: Callable | None
    n_ticks: int


def _beta(state: SamplerState):
    return None if state.betas is None else state.betas.expand(state.chains.energy.shape)


def _do_swap(state: SamplerState, stats: dict | None) -> SamplerState:
    """Swap neighbours after a round (parity = round number mod 2); count acceptances."""
    if state.betas is None or state.chains.theta.shape[-2] < 2:
        return state
    K = state.chains.theta.shape[-2]
    u = rng.uniform(state.keys[..., 0], state.rounds, rng.SWAP, K - 1)
    ch, acc, rep = swap(state.chains, state.betas, state.rounds % 2, u, state.replica)
    last = state.last_end
    if stats is not None:
        proposed = (torch.arange(K - 1, device=acc.device) % 2) == state.rounds % 2
        stats["swap_acc"] += acc.to(stats["swap_acc"].dtype)
        stats["swap_prop"] += proposed.to(stats["swap_prop"].dtype)
        cold = rep[..., -1:]
        was_hot = last.gather(-1, cold) == 1
        stats["round_trips"] += was_hot[..., 0].long()
        last = last.scatter(-1, cold, torch.full_like(cold, 2)).scatter(-1, rep[..., :1], torch.ones_like(cold))
    return state._replace(chains=ch, replica=rep, last_end=last)


def _round(state, target, stats, **kw):
    ch, info, da, counts = rounds.run_round(state.chains, state.keys, state.counts, target.n_ticks,
                                            target.energy_grad, target.prior_grad, _beta(state), **kw)
    state = state._replace(chains=ch, counts=counts)
    state = _do_swap(state, stats)
    return state._replace(rounds=state.rounds + 1), info, da


def _new_stats(state: SamplerState) -> dict:
    shape = state.chains.energy.shape
    K = shape[-1] if state.betas is not None else 1
    z = torch.zeros(shape[:-1] + (max(K - 1, 0),), dtype=state.chains.theta.dtype, device=state.keys.device)
    return dict(swap_acc=z, swap_prop=z.clone(), round_trips=torch.zeros(shape[:-1], dtype=torch.long,
                                                                         device=state.keys.device))


def _pooled_rate(stats: dict, betas: torch.Tensor) -> torch.Tensor:
    """Swap acceptance (..., K-1) averaged over the dims along which betas is broadcast."""
    rate = stats["swap_acc"] / stats["swap_prop"].clamp(min=1)
    shape = (1,) * (rate.dim() - betas.dim()) + tuple(betas.shape[:-1])
    dims = [i for i in range(rate.dim() - 1) if shape[i] == 1 and rate.shape[i] != 1]
    return rate.mean(dims, keepdim=True) if dims else rate


def init(theta0: torch.Tensor, keys: torch.Tensor, target: Target, betas: torch.Tensor | None = None) -> SamplerState:
    """Start state at theta0 (..., [K,] d) with chain keys (..., [K])."""
    ch = rounds.evaluate(theta0, target.energy_grad)
    shape = ch.energy.shape
    rep = last = None
    if betas is not None:
        K = shape[-1]
        rep = torch.arange(K, device=theta0.device).expand(shape).clone()
        last = torch.zeros(shape, dtype=torch.long, device=theta0.device)
    beta = None if betas is None else betas.expand(shape)
    eps = rounds.initial_step_size(ch, keys, target.energy_grad, beta, target.prior_grad)
    lengths = torch.full((1,) + shape, target.n_ticks, dtype=torch.long, device=theta0.device)
    return SamplerState(ch, keys, betas, eps, lengths, rep, last, torch.zeros_like(keys), 0)


class WarmupInfo(NamedTuple):
    """What a warm-up reports: divergences per chain (...), and with a ladder the swap rate of
    the final ladder (..., K-1) pooled as the placement pools it (None without a ladder)."""

    divergences: torch.Tensor
    swap_rate: torch.Tensor | None


class Sampled(NamedTuple):
    """What sample() gives besides the state: draws (ceil(n_draws / thin), *record shape; None
    if none was kept); per chain accept_rate (mean Metropolis acceptance probability),
    divergences, transitions, mean_steps (leapfrog steps per transition); accept_sum and rounds,
    the sums behind them; with a ladder per ladder swap_rate (..., K-1) with its counts swap_acc
    and swap_prop, and round_trips (...), else None."""

    draws: torch.Tensor | None
    accept_rate: torch.Tensor
    divergences: torch.Tensor
    transitions: torch.Tensor
    mean_steps: torch.Tensor
    accept_sum: torch.Tensor
    rounds: int
    swap_rate: torch.Tensor | None = None
    round_trips: torch.Tensor | None = None
    swap_acc: torch.Tensor | None = None
    swap_prop: torch.Tensor | None = None


class Warmup(NamedTuple):
    """Warm-up under way, resumable: the sampler state after `done` rounds, the step-size
    learners, divergences per chain, the swap statistics since the last ladder placement and
    the U-turn lengths recorded so far (a caller may save it between calls of warmup_rounds)."""

    state: SamplerState
    da: rounds.DualAverage
    divergences: torch.Tensor
    stats: dict
    recorded: list
    done: int


def warmup_start(state: SamplerState) -> Warmup:
    """A warm-up of `state` at round 0 (warmup_rounds advances it, warmup_end ends it)."""
    div = torch.zeros(state.chains.energy.shape, dtype=torch.long, device=state.keys.device)
    return Warmup(state, rounds.da_init(state.step_size), div, _new_stats(state), [], 0)


def warmup_rounds(w: Warmup, target: Target, n_warmup: int, n_rounds: int, *, target_accept: float = 0.8,
                  adapt_ladder: bool = True, bar=None) -> Warmup:
    """The next n_rounds of an n_warmup-round warm-up (fewer where fewer are left), as a new
    Warmup (`w` is left as it was). Rounds split over calls give the numbers of one call.

    First 3/4: per-chain dual averaging of the step size; with a ladder of K >= 3 and
    adapt_ladder, the temperatures are re-placed N_PLACE times, evenly through that phase,
    each time from the swap rates since the last placement (step sizes re-adapted from there).
    Last 1/4: step sizes fixed, each round's first-trajectory U-turn length recorded per chain
    (the sampling lengths). bar: a progress bar advanced per round, or None."""
    n_adapt = max(1, (3 * n_warmup) // 4)
    state, da, recorded = w.state, w.da, list(w.recorded)
    places = ({(k * n_adapt) // (N_PLACE + 1) for k in range(1, N_PLACE + 1)} - {0}
              if adapt_ladder and state.betas is not None else set())
    div, stats = w.divergences.clone(), {k: v.clone() for k, v in w.stats.items()}
    stop = min(n_warmup, w.done + n_rounds)
    for it in range(w.done, stop):
        if it in places and state.betas.shape[-1] >= 3:
            state = state._replace(betas=place_ladder(state.betas, _pooled_rate(stats, state.betas)))
            # re-adapt from the averaged step sizes (shrinking towards 2x, not 10x: already tuned)
            da, stats = rounds.da_init(da.log_eps_bar.exp(), shrink=2.0), _new_stats(state)
        if it < n_adapt:
            state, info, da = _round(state, target, stats, da=da, uturn=True, target_accept=target_accept)
            if it == n_adapt - 1:
                state = state._replace(step_size=da.log_eps_bar.exp())
        else:
            state, info, _ = _round(state, target, stats, step_size=state.step_size, uturn=True)
            recorded.append(info.uturn.clamp(min=1))
        div += info.divergences
        if bar is not None:
            bar.update(1)
    return Warmup(state, da, div, stats, recorded, stop)


def warmup_end(w: Warmup) -> tuple[SamplerState, WarmupInfo]:
    """The state to sample from after warm-up, and what the warm-up reports."""
    state = w.state
    if w.recorded:
        state = state._replace(lengths=torch.stack(w.recorded))
    if state.last_end is not None:  # round trips are counted from the end of warm-up
        state = state._replace(last_end=torch.zeros_like(state.last_end))
    swap_rate = _pooled_rate(w.stats, state.betas) if state.betas is not None else None
    return state, WarmupInfo(w.divergences, swap_rate)


def warmup(state: SamplerState, target: Target, n_warmup: int, *, target_accept: float = 0.8,
           adapt_ladder: bool = True, progress: bool = False, desc: str = "warm-up") -> tuple[SamplerState, WarmupInfo]:
    """n_warmup adaptive rounds (trajectories to the first U-turn; see warmup_rounds)."""
    with progress_bar.bar(total=n_warmup, desc=desc, disable=not progress, leave=False) as bar:
        w = warmup_rounds(warmup_start(state), target, n_warmup, n_warmup, target_accept=target_accept,
                          adapt_ladder=adapt_ladder, bar=bar)
    return warmup_end(w)


def _sums(state: SamplerState, totals: Sampled | None):
    """The running sums sample() adds to: zeros, or copies of an earlier call's (totals)."""
    if totals is None:
        acc = torch.zeros(state.chains.energy.shape, dtype=state.chains.theta.dtype, device=state.keys.device)
        return acc, torch.zeros_like(acc, dtype=torch.long), torch.zeros_like(acc, dtype=torch.long), \
            _new_stats(state), 0
    stats = ({k: getattr(totals, k).clone() for k in ("swap_acc", "swap_prop", "round_trips")}
             if totals.swap_acc is not None else _new_stats(state))
    return totals.accept_sum.clone(), totals.divergences.clone(), totals.transitions.clone(), stats, totals.rounds


def sample(state: SamplerState, target: Target, n_draws: int, *, record: Callable | None = None, thin: int = 1,
           progress: bool = False, desc: str = "sampling",
           totals: Sampled | None = None) -> tuple[SamplerState, Sampled]:
    """n_draws sampling rounds; a draw is the state at a round end (every `thin`-th kept).

    totals: the Sampled of an earlier call whose sums and round count this one continues, so
    a run split over calls gives the numbers of one call (its draws are the parts' draws
    concatenated); it is left as it was.
    """
    record = record or (lambda th: th)
    acc, div, trans, stats, done = _sums(state, totals)
    draws = []
    for it in progress_bar.bar(range(n_draws), desc=desc, disable=not progress, leave=False):
        state, info, _ = _round(state, target, stats, step_size=state.step_size, lengths=state.lengths)
        acc += info.accept_sum
        div += info.divergences
        trans += info.transitions
        if (done + it) % thin == 0:
            draws.append(record(state.chains.theta).detach().clone())
    done += n_draws
    ladder = {} if state.betas is None else dict(
        swap_rate=stats["swap_acc"] / stats["swap_prop"].clamp(min=1), round_trips=stats["round_trips"],
        swap_acc=stats["swap_acc"], swap_prop=stats["swap_prop"])
    return state, Sampled(torch.stack(draws) if draws else None, acc / trans.clamp(min=1), div, trans,
                          (done * target.n_ticks) / trans.clamp(min=1).to(acc.dtype), acc, done, **ladder)


def select(state: SamplerState, idx: torch.Tensor) -> SamplerState:
    """The items idx (a 1-D index) of the leading batch dim: drop finished items from a run.

    betas of leading size 1 (shared) are kept as they are."""
    def take(t, dim=0):
        return None if t is None else t.index_select(dim, idx)

    betas = state.betas
    if betas is not None and betas.dim() == state.chains.energy.dim() and betas.shape[0] != 1:
        betas = take(betas)
    ch = rounds.Chains(*(take(t) for t in state.chains))
    return state._replace(chains=ch, keys=take(state.keys), betas=betas, step_size=take(state.step_size),
                          lengths=take(state.lengths, 1), replica=take(state.replica), last_end=take(state.last_end),
                          counts=take(state.counts))


def _check_run(theta0, betas, n_warmup, n_draws, max_steps, thin, target_accept):
    checks.tensor(theta0, "theta0", min_dim=1)
    checks.positive_int(n_warmup, "n_warmup", minimum=4)
    checks.positive_int(n_draws, "n_draws")
    checks.positive_int(max_steps, "max_steps")
    checks.positive_int(thin, "thin")
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}")
    if betas is None:
        return None
    betas = betas.to(theta0)
    if betas.dim() < 1 or theta0.dim() < 2 or betas.shape[-1] != theta0.shape[-2]:
        raise ValueError(
            f"with betas (..., K) theta0 must be (..., K, d); got betas {tuple(betas.shape)}, theta0 {tuple(theta0.shape)}"
        )
    if bool((betas <= 0).any()) or not bool((betas[..., 1:] > betas[..., :-1]).all()):
        raise ValueError("betas must be positive and strictly increasing")
    return betas


class ChainRun(NamedTuple):
    """What run_chains gives: draws (ceil(n_draws / thin), *record shape); per chain
    accept_rate, divergences, warmup_divergences, transitions, mean_steps, step_size and the
    final theta; with tempering swap_rate (K-1,) (mean over ladders), swap_rate_ladder
    (..., K-1), round_trips (...) and the final betas, else None."""

    draws: torch.Tensor | None
    accept_rate: torch.Tensor
    divergences: torch.Tensor
    warmup_divergences: torch.Tensor
    transitions: torch.Tensor
    mean_steps: torch.Tensor
    step_size: torch.Tensor
    theta: torch.Tensor
    swap_rate: torch.Tensor | None = None
    swap_rate_ladder: torch.Tensor | None = None
    round_trips: torch.Tensor | None = None
    betas: torch.Tensor | None = None


def run_chains(
    energy_fn: Callable[[torch.Tensor], torch.Tensor] | None,
    theta0: torch.Tensor,
    *,
    n_warmup: int,
    n_draws: int,
    generator: torch.Generator | int | None = None,
    keys: torch.Tensor | None = None,
    prior_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    energy_grad_fn: Callable | None = None,
    prior_grad_fn: Callable | None = None,
    betas: torch.Tensor | None = None,
    target_accept: float = 0.8,
    max_steps: int = 64,
    adapt_ladder: bool = True,
    record: Callable[[torch.Tensor], torch.Tensor] | None = None,
    thin: int = 1,
    progress: bool = False,
    desc: str = "hmc",
) -> ChainRun:
    """Warm up and sample batched HMC chains in rounds, optionally with replica exchange.

    energy_fn: theta (..., d) -> E (...) (differentiated by autograd), or energy_grad_fn:
    theta -> (E, dE/dtheta); likewise prior_fn / prior_grad_fn (not tempered; None = 0).
    theta0 (..., d); with betas (..., K) the last batch dim of theta0 is the temperature
    slot (..., K, d) and the target of slot k is exp(-betas[k] E - P), else exp(-E - P).
    Randomness: chain keys (theta0's batch shape) or, from `generator` (an int seed or a
    torch.Generator), keys by position. max_steps: ticks per round = the longest trajectory.
    Rounds: n_warmup of warm-up (see warmup), n_draws of sampling (see sample).

    Returns a ChainRun.
    """
    betas = _check_run(theta0, betas, n_warmup, n_draws, max_steps, thin, target_accept)
    if (energy_fn is None) == (energy_grad_fn is None):
        raise ValueError("give exactly one of energy_fn and energy_grad_fn")
    target = Target(energy_grad_fn or with_grad(energy_fn),
                    prior_grad_fn or (with_grad(prior_fn) if prior_fn is not None else None), max_steps)
    shape = theta0.shape[:-1]
    if keys is None:
        if generator is None:
            raise ValueError("give keys or a generator (int seed or torch.Generator)")
        keys = rng.item_keys(rng.seed_from(generator), tuple(shape), device=theta0.device)
    elif tuple(keys.shape) != tuple(shape):
        raise ValueError(f"keys must have the chains' shape {tuple(shape)}, got {tuple(keys.shape)}")
    state = init(theta0, keys, target, betas)
    state, winfo = warmup(state, target, n_warmup, target_accept=target_accept, adapt_ladder=adapt_ladder,
                          progress=progress, desc=f"{desc} warm-up")
    state, sampled = sample(state, target, n_draws, record=record, thin=thin, progress=progress, desc=desc)
    ladder = {}
    if betas is not None:
        ladder = dict(swap_rate_ladder=sampled.swap_rate, round_trips=sampled.round_trips, betas=state.betas,
                      swap_rate=sampled.swap_rate.reshape(-1, max(theta0.shape[-2] - 1, 0)).mean(0))
    return ChainRun(draws=sampled.draws, accept_rate=sampled.accept_rate, divergences=sampled.divergences,
                    warmup_divergences=winfo.divergences, transitions=sampled.transitions,
                    mean_steps=sampled.mean_steps, step_size=state.step_size, theta=state.chains.theta, **ladder)
