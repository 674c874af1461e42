"""Localised SGLD (SPEC 5) as a pair of pure functions over batched parameters.

One step, with U(w) = nbeta * L(w) + (gamma/2) ||w - w*||^2 (the localised tempered
posterior's potential) and L the population, full-batch or minibatch loss:

    w <- w - (eps/2) * grad U(w) + N(0, eps I)

The kernel works on a flat parameter vector theta (..., d) with any leading batch dims
(centres x chains); it never sees a model's parameters, only theta and a grad_fn.

Randomness is counter-based: every item (one chain of one centre) carries an integer key,
and the noise of step t, coordinate k is a hash of (key, t, k). The numbers a chain sees
are therefore the same whatever else is in the batch (docs/ARCHITECTURE.md: same seed, same numbers,
whatever the batch layout). tms.core.rng derives the keys from a seed and item indices.

Metropolis-adjusted acceptance (a step-size diagnostic, not used to reject): the SGLD move
w -> w' is a MALA proposal, q(w'|w) = N(w - (eps/2) grad U(w), eps I). Its acceptance
probability min(1, exp(U(w) - U(w') + log q(w|w') - log q(w'|w))) needs U and grad U at
w', which the next step computes anyway, so ``step`` reports the acceptance of the
*previous* move at no extra cost. Near 1: eps resolves the posterior; well below 1: the
step is too large and the SGLD chain's stationary law is visibly biased.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from tms.core import checks, rng
from tms.core.rng import NOISE_BLOCK, item_keys, normal, seed_from

class SGLDState(NamedTuple):
    """State of a batch of localised SGLD chains.

    theta:  (..., d) current parameters        centre: (..., d) localisation centre w*
    key:    (...,) int64 per-item random key  t: steps taken so far
    alive:  (...,) bool; False once an item produced NaN/inf (it is then frozen at its
            centre, its losses are reported as NaN and it is never averaged in)
    prev:   None, or (theta, U, grad U) at the previous point, for the MALA acceptance
    noise:  None, or (t0, normals (..., B, d)) for steps t0 .. t0+B-1: the counter-based
            noise generated a block of steps at a time (same numbers, less overhead)
    """

    theta: torch.Tensor
    centre: torch.Tensor
    key: torch.Tensor
    t: int
    alive: torch.Tensor
    prev: tuple | None
    noise: tuple | None = None


class SGLDInfo(NamedTuple):
    """loss: (...,) L at the point the step started from (NaN for dead items);
    accept_prob: (...,) MALA acceptance of the previous move (NaN at t = 0 / dead items);
    alive: (...,) bool after the step."""

    loss: torch.Tensor
    accept_prob: torch.Tensor
    alive: torch.Tensor


GradFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _keys(generator, batch_shape, device) -> torch.Tensor:
    if isinstance(generator, torch.Tensor):
        if generator.dtype != torch.int64:
            raise ValueError(f"generator given as a key tensor must be int64, got {generator.dtype}")
        return generator.to(device).expand(batch_shape).clone()
    return item_keys(seed_from(generator), tuple(batch_shape), device)


def init(theta: torch.Tensor, *, centre: torch.Tensor | None = None, generator) -> SGLDState:
    """State for chains at theta (..., d), localised at centre (default: theta itself).

    generator: int seed, torch.Generator (one seed is drawn from it), or an int64 tensor of
    per-item keys broadcastable to theta.shape[:-1] (see tms.core.rng.item_keys).
    """
    checks.tensor(theta, "theta", min_dim=1)
    centre = theta if centre is None else checks.tensor(centre, "centre", min_dim=1)
    theta, centre = torch.broadcast_tensors(theta, centre)
    batch = theta.shape[:-1]
    key = _keys(generator, batch, theta.device)
    alive = torch.ones(batch, dtype=torch.bool, device=theta.device)
    return SGLDState(theta.clone(), centre.clone(), key, 0, alive, None)


def step(
    state: SGLDState,
    grad_fn: GradFn,
    *,
    nbeta,
    eps: float,
    gamma: float,
    generator: torch.Generator | None = None,
) -> tuple[SGLDState, SGLDInfo]:
    """One SGLD step for every item (SPEC 5): w <- w - (eps/2) grad U(w) + N(0, eps I).

    grad_fn(theta (..., d)) -> (L (...), dL/dtheta (..., d)); for a minibatch it is the
    minibatch loss. nbeta: float or tensor broadcastable to the batch shape (...).
    generator: if given, the noise comes from torch.randn with it (not layout invariant);
    otherwise from the state's counter-based keys.
    """
    eps = checks.positive_float(eps, "eps")
    gamma = checks.positive_float(gamma, "gamma", allow_zero=True)
    theta, centre = state.theta, state.centre
    nb = torch.as_tensor(nbeta, dtype=theta.dtype, device=theta.device)  # () or batch-broadcastable
    if bool((nb <= 0).any()) or not bool(torch.isfinite(nb).all()):
        raise ValueError(f"nbeta must be finite and > 0, got {nbeta!r}")
    L, g = grad_fn(theta)
    diff = theta - centre
    U = nb * L + 0.5 * gamma * (diff * diff).sum(-1)
    gradU = nb.unsqueeze(-1) * g + gamma * diff
    # MALA acceptance of the previous move prev -> theta (diagnostic only; SPEC 5 step-size check).
    if state.prev is None:
        accept = torch.full_like(L, float("nan"))
    else:
        p_theta, p_U, p_grad = state.prev
        fwd = theta - p_theta + 0.5 * eps * p_grad  # log q(theta | prev) = -|fwd|^2 / (2 eps)
        bwd = p_theta - theta + 0.5 * eps * gradU  # log q(prev | theta)
        log_a = (p_U - U) + ((fwd * fwd).sum(-1) - (bwd * bwd).sum(-1)) / (2 * eps)
        accept = torch.exp(torch.clamp(log_a, max=0.0))
    cache = state.noise
    if generator is None:
        if cache is None or not (cache[0] <= state.t < cache[0] + cache[1].shape[-2]):
            steps = torch.arange(state.t, state.t + NOISE_BLOCK, device=theta.device)
            cache = (state.t, normal(state.key, steps, theta.shape[-1], theta.dtype))
        noise = cache[1][..., state.t - cache[0], :]
    else:
        noise = torch.randn(theta.shape, generator=generator, dtype=theta.dtype).to(theta.device)
    new = theta - 0.5 * eps * gradU + math.sqrt(eps) * noise
    ok = state.alive & torch.isfinite(L) & torch.isfinite(gradU).all(-1) & torch.isfinite(new).all(-1)
    new = torch.where(ok.unsqueeze(-1), new, centre)  # dead items are parked at their centre
    nan = torch.full_like(L, float("nan"))
    info = SGLDInfo(
        loss=torch.where(state.alive & torch.isfinite(L), L, nan),
        accept_prob=torch.where(ok, accept, nan),
        alive=ok,
    )
    prev = (theta, torch.where(ok, U, nan), gradU)
    return SGLDState(new, centre, state.key, state.t + 1, ok, prev, cache), info


def mala_probe(theta: torch.Tensor, centre: torch.Tensor, grad_fn: GradFn, key: torch.Tensor, t: int, *,
               nbeta, eps: float, gamma: float) -> torch.Tensor:
    """MALA acceptance probability (...,) of one fresh Langevin proposal from theta (..., d).

    For minibatch chains, whose own consecutive losses come from different batches: with
    grad_fn the exact full loss, this measures whether eps resolves the full-batch
    posterior. Costs two grad_fn calls; noise from stream 3 of the item keys.
    """
    nb = torch.as_tensor(nbeta, dtype=theta.dtype, device=theta.device)

    def U_grad(x):
        L, g = grad_fn(x)
        diff = x - centre
        return nb * L + 0.5 * gamma * (diff * diff).sum(-1), nb.unsqueeze(-1) * g + gamma * diff

    U0, g0 = U_grad(theta)
    prop = theta - 0.5 * eps * g0 + math.sqrt(eps) * normal(key, t, theta.shape[-1], theta.dtype, rng.MALA_PROBE).to(theta.device)
    U1, g1 = U_grad(prop)
    fwd = prop - theta + 0.5 * eps * g0
    bwd = theta - prop + 0.5 * eps * g1
    log_a = (U0 - U1) + ((fwd * fwd).sum(-1) - (bwd * bwd).sum(-1)) / (2 * eps)
    return torch.exp(torch.clamp(log_a, max=0.0))
