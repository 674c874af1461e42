"""Batched HMC in rounds: every gradient evaluation moves a chain (no batch waits for its
longest trajectory).

A round is S leapfrog ticks for every chain at once. Each chain runs its own trajectories
inside the round, back to back: when one ends (its length is reached, a divergence, or the
round's last tick) the chain takes its Metropolis step and, if ticks are left, starts the
next trajectory with fresh momentum at the following tick. Every chain is at a trajectory
boundary at the end of a round, which is where replica swaps happen and draws are recorded.

Validity (sampling rounds): trajectory lengths are drawn from a fixed per-chain distribution
and cut to the ticks left in the round; that cut depends on the round's schedule only, never
on the state, so each transition is a reversible HMC kernel of fixed length (given the
schedule) and the target is invariant. The state at a round end is a draw of the target
(the round end is a state-independent stopping time of the transition sequence).

Warm-up rounds (``uturn=True``): a trajectory also ends at its first U-turn,
(x - x_0) . p < 0 (proposal = that point, so warm-up moves are adaptive, not exactly
invariant; they are discarded). The length of each chain's first trajectory of a round (the
one not cut short by an earlier trajectory) is reported as its U-turn length, capped at S.

The target of chain i is exp(-U_i), U_i = beta_i E(theta) + P(theta): E the tempered part
(the likelihood), P the untempered part (the prior). ``energy_grad`` and ``prior_grad`` map
theta (..., d) to (value (...), gradient (..., d)).

Randomness is counter-based (tms.core.rng): the momentum, Metropolis uniform and length
of a chain's k-th trajectory are functions of (chain key, k) only, so a chain's numbers do
not depend on what else is in the batch.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from tms.core import rng
from tms.samplers import compiled

GradFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
BUFFER = 4  # trajectories of random numbers generated ahead per chain


class Chains(NamedTuple):
    """Chains at a trajectory boundary: theta (..., d); energy E(theta) (...) and its
    gradient (..., d) (the tempered part only, so a swap needs no new evaluation)."""

    theta: torch.Tensor
    energy: torch.Tensor
    egrad: torch.Tensor


class RoundInfo(NamedTuple):
    """Per chain (...): transitions completed, sum of their acceptance probabilities,
    accepted transitions, divergent ones, and the U-turn length of the round's first
    trajectory (warm-up rounds; 0 otherwise)."""

    transitions: torch.Tensor
    accept_sum: torch.Tensor
    accepted: torch.Tensor
    divergences: torch.Tensor
    uturn: torch.Tensor


def evaluate(theta: torch.Tensor, energy_grad: GradFn) -> Chains:
    """Chains at theta (..., d); non-finite rows get E = +inf (rejected, never used)."""
    E, g = guarded(energy_grad)(theta)
    return Chains(theta, E, g)


def guarded(fn: GradFn) -> GradFn:
    """fn evaluated at 0 where theta is not finite, reporting +inf there (a divergence).
    The check costs one reduction when everything is finite (the hot path)."""

    def f(theta):
        try:
            E, g = fn(theta)
            if math.isfinite(float(E.sum())):
                return E, g
        except ValueError:  # an energy that refuses non-finite parameters: the masked path below
            pass
        ok = torch.isfinite(theta).all(-1)
        E, g = fn(torch.where(ok.unsqueeze(-1), theta, torch.zeros_like(theta)))
        bad = ~ok | ~torch.isfinite(E)
        E = torch.where(bad, torch.full_like(E, math.inf), E)
        g = torch.where(bad.unsqueeze(-1), torch.zeros_like(g), g)
        return E, g

    return f


def potential(theta, E, gE, beta, prior_grad: GradFn | None):
    """U = beta E + P and its gradient, (...) and (..., d)."""
    U, g = (E, gE) if beta is None else (beta * E, beta.unsqueeze(-1) * gE)
    if prior_grad is not None:
        P, gP = prior_grad(theta)
        U, g = U + P, g + gP
    return U, g


def initial_step_size(ch: Chains, keys, energy_grad: GradFn, beta=None, prior_grad: GradFn | None = None,
                      step_size: float = 0.1, iters: int = 12) -> torch.Tensor:
    """Per-chain starting step size: halve or double until one leapfrog step accepts with
    probability about 1/2 (Hoffman and Gelman's heuristic, batched). Returns (...)."""
    U, g = potential(ch.theta, ch.energy, ch.egrad, beta, prior_grad)
    eps = torch.full(U.shape, step_size, dtype=ch.theta.dtype, device=ch.theta.device)
    for it in range(iters):
        p0 = rng.normal(keys, it, ch.theta.shape[-1], ch.theta.dtype, rng.HMC_INIT_STEP)
        e = eps.unsqueeze(-1)
        x = ch.theta + e * (p0 - 0.5 * e * g)
        Ex, gEx = guarded(energy_grad)(x)
        Ux, gx = potential(x, Ex, gEx, beta, prior_grad)
        p1 = p0 - 0.5 * e * (g + gx)
        dH = Ux + 0.5 * (p1 * p1).sum(-1) - U - 0.5 * (p0 * p0).sum(-1)
        ok = torch.nan_to_num(-dH, nan=-math.inf) > math.log(0.5)
        eps = torch.where(ok, eps * 2, eps / 2).clamp(1e-6, 10.0)
    return eps


class DualAverage(NamedTuple):
    """Per-chain Nesterov dual averaging of log step size towards a target acceptance
    (Hoffman and Gelman 2014, 3.2); every field (...), t counts each chain's own updates."""

    log_eps: torch.Tensor
    log_eps_bar: torch.Tensor
    h_bar: torch.Tensor
    mu: torch.Tensor
    t: torch.Tensor


def da_init(step_size: torch.Tensor, shrink: float = 10.0) -> DualAverage:
    """Learners starting at step_size, shrinking towards log(shrink * step_size)."""
    z = torch.zeros_like(step_size)
    return DualAverage(step_size.log(), step_size.log(), z, (shrink * step_size).log(), z.clone())


def da_update(da: DualAverage, idx, accept_prob, target: float, gamma=0.05, t0=10.0, kappa=0.75) -> None:
    """In place: one update of the flat (B,) learners idx from their acceptance probabilities."""
    t = da.t[idx] + 1
    w = 1.0 / (t + t0)
    h = (1 - w) * da.h_bar[idx] + w * (target - accept_prob)
    le = da.mu[idx] - t.sqrt() / gamma * h
    # t^-kappa as exp(-kappa log t): torch's CPU pow rounds differently in the vectorised body and
    # the scalar tail of a tensor, so a chain's step size would depend on its place in the batch
    eta = torch.exp(-kappa * torch.log(t))
    da.log_eps_bar[idx] = eta * le + (1 - eta) * da.log_eps_bar[idx]
    da.log_eps[idx], da.h_bar[idx], da.t[idx] = le, h, t


def _flat(x, B):
    return None if x is None else x.expand(B + x.shape[len(B):]).reshape((-1,) + x.shape[len(B):])


class _Round:
    """Flat (B, ...) working state of one round (internal to run_round): the boundary
    chains, their trajectories in flight, and the round's counters."""

    def __init__(self, ch, keys, counts, beta, step_size, da, lengths, prior_grad):
        B = ch.energy.shape
        self.shape, self.d, self.prior_grad = B, ch.theta.shape[-1], prior_grad
        self.theta, self.E, self.gE = (_flat(t, B).clone() for t in ch)
        self.keys, self.beta = _flat(keys, B), _flat(beta, B)
        self.da = None if da is None else DualAverage(*(_flat(t, B).clone() for t in da))
        self.fixed_eps = _flat(step_size, B)
        self.lengths = None if lengths is None else lengths.reshape(lengths.shape[0], -1)
        n, dev = self.theta.shape[0], self.theta.device
        zi = torch.zeros(n, dtype=torch.long, device=dev)
        self.transitions, self.accepted, self.divergences, self.uturn = zi, zi.clone(), zi.clone(), zi.clone()
        self.accept_sum = torch.zeros(n, dtype=self.theta.dtype, device=dev)
        self.first = torch.ones(n, dtype=torch.bool, device=dev)
        self.x, self.q, self.x0 = self.theta.clone(), torch.zeros_like(self.theta), self.theta.clone()
        self.H0, self.u_acc = torch.zeros_like(self.accept_sum), torch.ones_like(self.accept_sum)
        self.eps = torch.ones_like(self.accept_sum)
        self.steps, self.want = zi.clone(), zi.clone()
        self.diverged = torch.zeros(n, dtype=torch.bool, device=dev)
        self.counts = _flat(counts, B).clone()  # trajectories started so far (the RNG counter)
        self.buf, self.buf_at = None, zi.clone()

    def potential(self, x, E, gE, idx=None):
        beta = self.beta if self.beta is None or idx is None else self.beta[idx]
        return potential(x, E, gE, beta, self.prior_grad)

    def draws(self, idx):
        """Uniforms (len(idx), u) of the next trajectory of chains idx: ceil(d/2)*2 for the
        momentum, one Metropolis, one length; keyed by (chain key, trajectory number) and
        generated for every chain BUFFER trajectories ahead (few generator calls)."""
        m = 2 * ((self.d + 1) // 2) + 2
        if self.buf is None or bool((self.buf_at[idx] >= BUFFER).any()):
            ahead = self.counts.unsqueeze(-1) + torch.arange(BUFFER, device=self.counts.device)
            self.buf, self.buf_at = rng.uniform_at(self.keys, ahead, rng.HMC_MOMENTUM, m), torch.zeros_like(self.counts)
        u = self.buf[idx, self.buf_at[idx]]
        self.buf_at[idx] += 1
        self.counts[idx] += 1
        return u

    def start(self, idx, left: int) -> None:
        """(Re)start the trajectories of chains idx from their boundary state."""
        th = self.theta[idx]
        U, g = self.potential(th, self.E[idx], self.gE[idx], idx)
        u = self.draws(idx)
        p0 = rng.normals_from(u[:, :-2], self.d).to(th.dtype)
        eps = self.da.log_eps[idx].exp() if self.da is not None else self.fixed_eps[idx]
        if self.lengths is None:  # warm-up: to the round end (or the first U-turn)
            want = torch.full_like(idx, left)
        else:  # sampling: a recorded length of this chain, cut to the round end
            m = self.lengths.shape[0]
            pick = (u[:, -1] * m).ceil().long().clamp(1, m) - 1
            want = self.lengths[pick, idx].clamp(max=left)
        self.x[idx], self.x0[idx] = th, th
        self.q[idx] = p0 - 0.5 * eps.unsqueeze(-1) * g
        self.H0[idx] = U + 0.5 * (p0 * p0).sum(-1)
        self.u_acc[idx], self.eps[idx], self.want[idx] = u[:, -2], eps, want
        self.steps[idx] = 0
        self.diverged[idx] = False

    def finish(self, idx, Ex, gEx, dH, target_accept: float) -> None:
        """Metropolis step of the finished trajectories of chains idx (their end states x)."""
        div = self.diverged[idx]
        acc = (self.u_acc[idx].log().to(dH.dtype) < -dH) & ~div
        a = acc.unsqueeze(-1)
        self.theta[idx] = torch.where(a, self.x[idx], self.theta[idx])
        self.E[idx] = torch.where(acc, Ex, self.E[idx])
        self.gE[idx] = torch.where(a, gEx, self.gE[idx])
        prob = torch.where(div, torch.zeros_like(dH), torch.exp(torch.clamp(-dH, max=0.0)))
        self.transitions[idx] += 1
        self.accepted[idx] += acc.long()
        self.divergences[idx] += div.long()
        self.accept_sum[idx] += prob
        if self.da is not None:
            da_update(self.da, idx, prob, target_accept)

    def result(self):
        B = self.shape
        ch = Chains(self.theta.reshape(B + (self.d,)), self.E.reshape(B), self.gE.reshape(B + (self.d,)))
        info = RoundInfo(*(t.reshape(B) for t in (self.transitions, self.accept_sum, self.accepted,
                                                  self.divergences, self.uturn)))
        da = None if self.da is None else DualAverage(*(t.reshape(B) for t in self.da))
        return ch, info, da, self.counts.reshape(B)


def _compiled_round(ch, keys, counts, n_ticks, energy_grad, prior_grad, beta, step_size, da, lengths, uturn,
                    divergence, target_accept, restart_every):
    """run_round by tms.samplers.compiled, as run_round returns it; None where it cannot run."""
    out = compiled.run_round(ch, keys, counts, n_ticks, energy_grad, prior_grad, beta, step_size=step_size, da=da,
                             lengths=lengths, uturn=uturn, divergence=divergence, target_accept=target_accept,
                             restart_every=restart_every)
    if out is None:
        return None
    theta, E, gE, stats, da_out, counts_out = out
    return Chains(theta, E, gE), RoundInfo(*stats), None if da_out is None else DualAverage(*da_out), counts_out


def run_round(ch: Chains, keys: torch.Tensor, counts: torch.Tensor, n_ticks: int, energy_grad: GradFn,
              prior_grad: GradFn | None = None, beta: torch.Tensor | None = None, *,
              step_size: torch.Tensor | None = None, da: DualAverage | None = None,
              lengths: torch.Tensor | None = None, uturn: bool = False, divergence: float = 1000.0,
              target_accept: float = 0.8, restart_every: int = 4):
    """One round of n_ticks leapfrog ticks for every chain (module docstring).

    ch: chains at a boundary, batch (...); keys (...) int64; counts (...) int64: trajectories
    each chain started before (the random numbers' counter); beta (...) or None (= 1).
    Step sizes: fixed step_size (...) or adapted by dual averaging `da` (returned updated).
    Trajectory lengths: drawn from lengths (n_rec, ...) (sampling), else to the round end or
    (uturn=True) the first U-turn. A finished trajectory waits (frozen) for the next restart
    tick, every `restart_every` ticks: the bookkeeping is batched, at most that many idle
    ticks per transition. Energy errors are checked at restart ticks (every tick in warm-up):
    a divergent trajectory (energy error > divergence) freezes there and is rejected at its
    scheduled end, so no timing depends on the state while sampling.
    Returns (chains, info, da after the round, counts after the round). The posterior's
    target on the CPU runs compiled (tms.samplers.compiled); this torch body is the reference.
    """
    if compiled.enabled() and compiled.applies(energy_grad, prior_grad, ch.theta):
        out = _compiled_round(ch, keys, counts, n_ticks, energy_grad, prior_grad, beta, step_size, da, lengths, uturn,
                              divergence, target_accept, restart_every)
        if out is not None:
            return out
    st = _Round(ch, keys, counts, beta, step_size, da, lengths, prior_grad)
    egrad = guarded(energy_grad)
    st.start(torch.arange(st.theta.shape[0], device=st.theta.device), n_ticks)
    for j in range(n_ticks):
        active = st.steps < st.want  # inside its scheduled trajectory
        moving = active & ~st.diverged
        e = st.eps.unsqueeze(-1)
        st.x = st.x + (e * moving.unsqueeze(-1).to(e.dtype)) * st.q  # frozen chains stay
        Ex, gEx = egrad(st.x.view(st.shape + (st.d,)))  # the energy sees the batch layout
        Ex, gEx = Ex.reshape(-1), gEx.reshape(-1, st.d)
        Ux, gx = st.potential(st.x, Ex, gEx)
        st.steps = st.steps + active.long()
        last = j == n_ticks - 1
        check = uturn or last or (j + 1) % restart_every == 0
        if check:  # energy errors: divergences, U-turns, and the Metropolis step below
            p = st.q - 0.5 * e * gx  # momentum level with x
            dH = torch.nan_to_num(Ux + 0.5 * (p * p).sum(-1) - st.H0, nan=math.inf)
            st.diverged = st.diverged | (moving & (dH > divergence))
            if uturn:  # warm-up: a trajectory also ends at its first U-turn
                turned = moving & (((st.x - st.x0) * p).sum(-1) < 0)
                st.want = torch.where(turned, st.steps, st.want)
        go_on = st.steps < st.want
        st.q = st.q - (e * (go_on & ~st.diverged).unsqueeze(-1).to(e.dtype)) * gx
        if not check or (not last and (j + 1) % restart_every):
            continue
        idx = (~go_on).nonzero()[:, 0]
        if idx.numel() == 0:
            continue
        if uturn:
            fi = idx[st.first[idx]]
            st.uturn[fi] = st.steps[fi]
            st.first[idx] = False
        st.finish(idx, Ex[idx], gEx[idx], dH[idx], target_accept)
        if not last:
            st.start(idx, n_ticks - j - 1)
    return st.result()
