"""Batched Hamiltonian Monte Carlo with a Metropolis correction (pure init/step kernel).

Target density exp(-U(theta)) on theta (..., d); every leading dim is an independent chain.
The kernel is the leapfrog integrator (reversible and volume preserving for any U, smooth
or not) followed by a Metropolis accept/reject on the total energy H = U + |p|^2 / 2, with
an identity mass matrix. Each chain has its own step size and its own number of leapfrog
steps, so one call moves chains of different geometry at once; chains that finished their
trajectory are frozen while the others go on (the batch runs max(n_steps) gradient calls).

This synchronous kernel is the reference the samplers are tested and benchmarked against;
the lab's driver runs HMC in rounds (tms.samplers.rounds, tms.samplers.tempering), where no
chain waits for the batch's longest trajectory.

A `potential_fn` maps theta (..., d) to (U (...), dU/dtheta (..., d)); `with_grad` builds
one from a function returning U only. Non-finite U counts as a divergence and is rejected.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from tms.core import checks

PotentialFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def with_grad(fn: Callable[[torch.Tensor], torch.Tensor]) -> PotentialFn:
    """Wrap U(theta) (..., d) -> (...) into theta -> (U, dU/dtheta) by autograd.

    Rows of theta that are not finite are evaluated at 0 and given U = +inf, so a chain
    thrown far away is rejected instead of raising inside the model code.
    """

    def potential(theta: torch.Tensor):
        ok = torch.isfinite(theta).all(-1)
        x = torch.where(ok.unsqueeze(-1), theta, torch.zeros_like(theta)).detach().requires_grad_(True)
        with torch.enable_grad():
            U = fn(x)
            (g,) = torch.autograd.grad(U.sum(), x)
        U = U.detach()
        bad = ~ok | ~torch.isfinite(U)
        U = torch.where(bad, torch.full_like(U, math.inf), U)
        g = torch.where(bad.unsqueeze(-1), torch.zeros_like(g), g)
        return U, g

    return potential


class HMCState(NamedTuple):
    """theta (..., d); potential U(theta) (...); grad dU/dtheta (..., d)."""

    theta: torch.Tensor
    potential: torch.Tensor
    grad: torch.Tensor


class HMCInfo(NamedTuple):
    """Per chain (...): Metropolis acceptance probability, accepted flag, divergence flag,
    energy error H(end) - H(start), the number of leapfrog steps of the proposal, and the
    steps to the first U-turn (0 unless measured)."""

    accept_prob: torch.Tensor
    accepted: torch.Tensor
    divergent: torch.Tensor
    energy_error: torch.Tensor
    n_steps: torch.Tensor
    uturn_steps: torch.Tensor


def init(theta: torch.Tensor, potential_fn: PotentialFn) -> HMCState:
    """Start state at theta (..., d)."""
    checks.tensor(theta, "theta", min_dim=1)
    U, g = potential_fn(theta)
    return HMCState(theta, U, g)


def leapfrog(
    theta: torch.Tensor,
    p: torch.Tensor,
    grad: torch.Tensor,
    step_size: torch.Tensor,
    n_steps: torch.Tensor,
    potential_fn: PotentialFn,
    *,
    uturn_cap: int = 0,
    divergence: float = 1000.0,
    H0: torch.Tensor | None = None,
):
    """Per-chain leapfrog trajectories of n_steps (...) steps of size step_size (...).

    The proposal of chain i is its state after n_steps[i] steps. With uturn_cap > 0 the
    integration also goes on (up to uturn_cap steps) until each chain's first U-turn,
    (theta_k - theta_0) . p_k < 0, and reports that number of steps; this measurement never
    changes the proposal, so the transition stays a valid HMC kernel. A chain whose energy
    error exceeds `divergence` (needs H0) or whose U is not finite stops at once and proposes
    that bad state (to be rejected).
    Returns (theta, p, U, grad, length, uturn_length); the last two are (...) integers.
    """
    e = step_size.unsqueeze(-1)
    theta0 = theta
    x, g = theta, grad
    q = p - 0.5 * e * grad  # momentum half a step ahead of x
    out_th, out_p, out_g = theta, p, grad
    out_U = torch.full(theta.shape[:-1], math.nan, dtype=theta.dtype, device=theta.device)
    length = torch.zeros(theta.shape[:-1], dtype=torch.long, device=theta.device)
    uturn_len = torch.zeros_like(length)
    need = n_steps > 0
    measuring = torch.full_like(need, uturn_cap > 0)
    for k in range(max(int(n_steps.max()), uturn_cap)):
        x = x + e * q
        U, g = potential_fn(x)
        p_half = q - 0.5 * e * g  # momentum synchronised with x
        bad = ~torch.isfinite(U)
        if H0 is not None:
            bad = bad | (U + 0.5 * (p_half**2).sum(-1) - H0 > divergence)
        take = need & (bad | ((k + 1) >= n_steps))
        t = take.unsqueeze(-1)
        out_th, out_p, out_g = torch.where(t, x, out_th), torch.where(t, p_half, out_p), torch.where(t, g, out_g)
        out_U = torch.where(take, U, out_U)
        length = length + need.long()
        need = need & ~take
        if uturn_cap > 0:
            turned = bad | (((x - theta0) * p_half).sum(-1) < 0) | ((k + 1) >= uturn_cap)
            uturn_len = uturn_len + measuring.long()
            measuring = measuring & ~turned
        q = q - e * g
        if not bool((need | measuring).any()):
            break
    return out_th, out_p, out_U, out_g, length, uturn_len


def step(
    state: HMCState,
    potential_fn: PotentialFn,
    step_size: torch.Tensor,
    n_steps: torch.Tensor,
    generator: torch.Generator,
    *,
    uturn_cap: int = 0,
    divergence: float = 1000.0,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition for every chain: fresh momentum N(0, I), leapfrog, Metropolis.

    step_size (...) float and n_steps (...) int are per chain. uturn_cap > 0 also measures
    each trajectory's first U-turn (info.uturn_steps) without changing the transition.
    A divergence (energy error > `divergence` or non-finite U) is rejected and flagged.
    """
    theta = state.theta
    p0 = torch.randn(theta.shape, generator=generator, dtype=theta.dtype, device=theta.device)
    H0 = state.potential + 0.5 * (p0**2).sum(-1)
    th, p, U, g, length, ulen = leapfrog(
        theta, p0, state.grad, step_size, n_steps, potential_fn, uturn_cap=uturn_cap, divergence=divergence, H0=H0
    )
    H1 = U + 0.5 * (p**2).sum(-1)
    dH = H1 - H0
    dH = torch.where(torch.isnan(dH), torch.full_like(dH, math.inf), dH)
    divergent = dH > divergence
    log_u = torch.rand(dH.shape, generator=generator, dtype=dH.dtype, device=dH.device).log()
    accepted = (log_u < -dH) & ~divergent
    accept_prob = torch.exp(torch.clamp(-dH, max=0.0))
    a = accepted.unsqueeze(-1)
    new = HMCState(
        torch.where(a, th, theta), torch.where(accepted, U, state.potential), torch.where(a, g, state.grad)
    )
    return new, HMCInfo(accept_prob, accepted, divergent, dH, length, ulen)
