"""Localised SGLD compiled (numba): many steps of tms.samplers.sgld.step for every chain in one
call, parallel over chains.

A call runs n_steps steps of each chain on its own (a chain never reads another), with the
fused one-row energy of the loss (a RowEnergy, as the compiled HMC round takes: scale 1, so
it returns L and grad L) and the arithmetic of ``sgld.step`` (SPEC 5): U = nbeta L +
(gamma/2)|w - w*|^2, the MALA acceptance of the previous move, the counter-based noise of
tms.core.rng.normal (the same hash and Box-Muller), the move, and a chain that goes
non-finite parked dead at its centre. The torch step is the reference; the two agree to
rounding (libm's log and cos, sums in another order), and a chain's numbers do not depend on
the thread count or on the other chains in the batch.

It applies where the loss's grad_fn carries `.kernel` (tms.llc.estimator marks the exact
full-batch TMS losses with it), in float64 on the CPU, unless ``compiled.use(False)``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from tms.core import jit, rng
from tms.samplers import compiled
from tms.samplers.sgld import SGLDState

PARALLEL_WORK = 20_000  # chain-steps in a call from which even a few chains split over threads
_NOISE = (np.uint64(rng.key(rng.SGLD_NOISE)), np.uint64(rng.key(rng.SGLD_NOISE + 1)))


def applies(grad_fn, theta: torch.Tensor) -> bool:
    """Whether SGLD steps of these chains can run compiled (module docstring)."""
    return (compiled.enabled() and isinstance(getattr(grad_fn, "kernel", None), compiled.RowEnergy)
            and theta.device.type == "cpu" and theta.dtype == torch.float64)


def _make_chain(d: int, energy, scratch, key: str):
    from tms.samplers import compiled_kernel  # numba, imported where steps compile
    _stream_hash, _uniform = compiled_kernel._stream_hash, compiled_kernel._uniform

    def chain(p, theta, centre, keys, alive, has_prev, p_theta, p_U, p_grad, t0, n_steps, nb, eps, gamma, didx, sc,
              data, s0, s1, keep_from, thin, m0, losses, accepts, kept, ge, x):
        """n_steps SGLD steps of chain p (sgld.step's arithmetic, in place on its rows)."""
        work, dset, scale, nbp, root, prev = scratch(), didx[p], sc[p], nb[p], math.sqrt(eps), has_prev
        for j in range(n_steps):
            L = energy(theta, p, dset, scale, ge, data, work)
            ssq, fin_g = 0.0, True
            for k in range(d):
                dk = theta[p, k] - centre[p, k]
                ssq += dk * dk
                ge[p, k] = nbp * ge[p, k] + gamma * dk  # grad U
                fin_g = fin_g and math.isfinite(ge[p, k])
            U = nbp * L + 0.5 * gamma * ssq
            acc = math.nan
            if prev:  # MALA acceptance of the move prev -> theta (sgld module docstring)
                f2, b2 = 0.0, 0.0
                for k in range(d):
                    fwd = theta[p, k] - p_theta[p, k] + 0.5 * eps * p_grad[p, k]
                    bwd = p_theta[p, k] - theta[p, k] + 0.5 * eps * ge[p, k]
                    f2 += fwd * fwd
                    b2 += bwd * bwd
                la = (p_U[p] - U) + (f2 - b2) / (2 * eps)
                acc = math.exp(la if la < 0.0 else 0.0) if la == la else math.nan
            k0, k1 = _stream_hash(keys[p], t0 + j, s0), _stream_hash(keys[p], t0 + j, s1)
            live = alive[p] and math.isfinite(L)
            ok = live and fin_g
            for k in range(d):  # rng.normal: Box-Muller, cosine branch, streams 0 and 1
                z = math.sqrt(-2.0 * math.log(_uniform(k0, k))) * math.cos(2.0 * math.pi * _uniform(k1, k))
                x[p, k] = theta[p, k] - 0.5 * eps * ge[p, k] + root * z
                ok = ok and math.isfinite(x[p, k])
            losses[p, j] = L if live else math.nan
            accepts[p, j] = acc if ok else math.nan
            p_U[p] = U if ok else math.nan
            for k in range(d):
                p_theta[p, k], p_grad[p, k] = theta[p, k], ge[p, k]
                theta[p, k] = x[p, k] if ok else centre[p, k]  # dead chains are parked at their centre
            alive[p], prev = ok, True
            t = t0 + j
            if thin > 0 and t >= keep_from and (t - keep_from) % thin == thin - 1:
                for k in range(d):
                    kept[p, (t - keep_from) // thin - m0, k] = theta[p, k]

    return jit.kernel(chain, d, key, inline="always")


def _make_steps(energy, scratch, d: int):
    """(serial, parallel) compiled step blocks of chains of dimension d on a one-row `energy`."""
    from numba import prange

    key = f"{energy._uuid}|{scratch._uuid}"
    chain = _make_chain(d, energy, scratch, key)

    def steps_serial(theta, centre, keys, alive, has_prev, p_theta, p_U, p_grad, t0, n_steps, nb, eps, gamma, didx,
                     sc, data, s0, s1, keep_from, thin, m0, losses, accepts, kept, ge, x):
        """n_steps steps of every chain p: rows of theta, centre, p_theta, p_grad (N, d); keys,
        alive, p_U, nb, didx, sc (N,); losses, accepts (N, n_steps); kept (N, M, d) the points
        after steps (counted from 0, not t0) keep_from + m thin - 1, m = 1, 2, ..., the first
        of them here number m0 (thin 0: none); ge, x (N, d) scratch."""
        for p in range(theta.shape[0]):
            chain(p, theta, centre, keys, alive, has_prev, p_theta, p_U, p_grad, t0, n_steps, nb, eps, gamma, didx,
                  sc, data, s0, s1, keep_from, thin, m0, losses, accepts, kept, ge, x)

    def steps_parallel(theta, centre, keys, alive, has_prev, p_theta, p_U, p_grad, t0, n_steps, nb, eps, gamma,
                       didx, sc, data, s0, s1, keep_from, thin, m0, losses, accepts, kept, ge, x):
        """steps_serial with the chains split over threads (a function of its own: numba's disk
        cache keys a function by name and source, not by the parallel flag)."""
        for p in prange(theta.shape[0]):
            chain(p, theta, centre, keys, alive, has_prev, p_theta, p_U, p_grad, t0, n_steps, nb, eps, gamma, didx,
                  sc, data, s0, s1, keep_from, thin, m0, losses, accepts, kept, ge, x)

    return jit.kernel(steps_serial, d, key), jit.kernel(steps_parallel, d, key, parallel=True)


_STEPS: dict = {}


def _kernels(kernel: compiled.RowEnergy, d: int):
    k = (kernel.energy, kernel.scratch, d)
    if k not in _STEPS:
        _STEPS[k] = _make_steps(kernel.energy, kernel.scratch, d)
    return _STEPS[k]


def run(state: SGLDState, grad_fn, *, nbeta, eps: float, gamma: float, n_steps: int, keep_from: int = 0,
        thin: int = 0):
    """n_steps SGLD steps of every chain of `state` (batch B..., dimension d), as n_steps calls
    of sgld.step(state, grad_fn, ...) with the counter-based noise. nbeta: float or tensor
    broadcastable to B.... Returns (state, losses (B..., n_steps), accepts (B..., n_steps),
    kept (B..., M, d): the points after the steps keep_from + thin - 1, keep_from + 2 thin - 1,
    ... (steps counted from the chains' start, state.t = 0) that fall in this call; M = 0 when
    thin is 0), or None where the chains do not fit the energy's data (torch path)."""
    kernel: compiled.RowEnergy = grad_fn.kernel
    B, d = tuple(state.theta.shape[:-1]), state.theta.shape[-1]
    bound = kernel.bind(B)
    if bound is None:
        return None
    N = math.prod(B)
    f64 = np.float64
    theta, centre = compiled._flat(state.theta, B, N, f64), compiled._flat(state.centre, B, N, f64)
    alive = compiled._flat(state.alive, B, N, np.bool_)
    has_prev = state.prev is not None
    prev = state.prev if has_prev else (None, None, None)
    p_theta = compiled._flat(prev[0], B, N, f64) if has_prev else np.zeros((N, d))
    p_grad = compiled._flat(prev[2], B, N, f64) if has_prev else np.zeros((N, d))
    p_U = compiled._flat(prev[1], B, N, f64, math.nan)
    nb = compiled._flat(torch.as_tensor(nbeta, dtype=torch.float64), B, N, f64)
    t0 = int(state.t)
    m0 = max(t0 - keep_from, 0) // thin if thin > 0 else 0
    M = max(t0 + n_steps - keep_from, 0) // thin - m0 if thin > 0 else 0
    losses, accepts, kept = np.empty((N, n_steps)), np.empty((N, n_steps)), np.empty((N, M, d))
    args = (theta, centre, compiled._flat(state.key, B, N, np.uint64), alive, has_prev, p_theta, p_U, p_grad,
            t0, int(n_steps), nb, float(eps), float(gamma), *bound, *_NOISE, int(keep_from), int(thin), m0,
            losses, accepts, kept, np.empty((N, d)), np.empty((N, d)))
    serial, parallel = _kernels(kernel, d)
    compiled.call(serial, parallel, N, args, min_chains=2 if N * n_steps >= PARALLEL_WORK else compiled.PARALLEL_MIN)

    def t(a):
        return torch.from_numpy(a.reshape(B + a.shape[1:]))

    new = SGLDState(t(theta), state.centre, state.key, state.t + n_steps, t(alive), (t(p_theta), t(p_U), t(p_grad)),
                    state.noise)
    return new, t(losses), t(accepts), t(kept)
