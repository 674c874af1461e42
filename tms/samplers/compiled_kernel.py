"""The numba body of the compiled HMC round (tms.samplers.compiled): one group of chains (of
one data set) per prange iteration, in lockstep, each chain's arithmetic tms.samplers.rounds.
run_round's step for step, for any energy given as a compiled one-row function (tms.samplers.
compiled.RowEnergy); where the energy has a group form (tms.theory.loss_lanes) a tick's moving
chains take one vectorised call, else their rows one by one. A chain's numbers do not depend
on its group: the group form equals the row form bit for bit.

Per chain p, with U = beta E + |theta|^2 / 2 (the prior where it is on) and H = U + |q|^2 / 2:
a trajectory starts from the boundary state with momentum p0 (Box-Muller of the uniforms at
the chain's trajectory counter), q = p0 - eps/2 grad U; each tick moves x += eps q, evaluates
the fused energy at x and, unless it is the trajectory's last tick, q -= eps grad U; energy
errors are checked at restart ticks, and a trajectory that has ended takes its Metropolis step
at the next one (SPEC 3, docs/ARCHITECTURE.md: HMC in rounds).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from tms.core import jit

LANES_MIN = 4  # moving chains of a group from which their energies take the group kernel


_M32 = np.uint64(0xFFFFFFFF)
_S15, _S16 = np.uint64(15), np.uint64(16)
_C1, _C2 = np.uint64(0x7FEB352D), np.uint64(0x846CA68B)
_GOLD, _ADD = np.uint64(0x9E3779B9), np.uint64(0x85EBCA6B)
_ONE, _TWO = np.uint64(1), np.uint64(2)
_TWO_PI = 2.0 * math.pi
_BIG = 1.7976931348623157e308  # torch.nan_to_num's stand-in for +-inf (the largest float64)


@njit(cache=True, inline="always")
def _mix32(x):
    """tms.core.rng.mix32 on a uint64 below 2^32 (the products fit: both factors < 2^32)."""
    x = x ^ (x >> _S16)
    x = (x * _C1) & _M32
    x = x ^ (x >> _S15)
    x = (x * _C2) & _M32
    return x ^ (x >> _S16)


@njit(cache=True, inline="always")
def _uniform(ks, j):
    """Uniform j of a (key, counter, stream) hash ks: rng.uniform_at's last two lines."""
    h = _mix32(ks ^ _mix32(np.uint64(j) * _TWO + _ONE))
    return (float(h) + 1.0) / 4294967296.0


@njit(cache=True, inline="always")
def _stream_hash(key, count, stream_key):
    """rng.uniform_at's hash of (chain key, trajectory counter, stream) before the index."""
    cc = _mix32(_GOLD ^ _mix32(((np.uint64(count) & _M32) + _ADD) & _M32))
    return _mix32(_mix32(key ^ cc) ^ stream_key)


for _kernel in (_mix32, _uniform, _stream_hash):  # reached from cached closures (tms.core.jit)
    jit.stable(_kernel)


def _make_start(d: int):
    def start(p, theta, E, gE, keys, counts, stream_key, bp, prior, eps_fixed, use_da, da, lengths, left, x, q, x0):
        """A trajectory of chain p from its boundary state: (eps, H0, Metropolis uniform, length)."""
        ks = _stream_hash(keys[p], counts[p], stream_key)
        counts[p] += 1
        h = (d + 1) // 2
        m = 2 * h + 2
        eps = math.exp(da[0, p]) if use_da else eps_fixed[p]
        U, ssq, kin = bp * E[p], 0.0, 0.0
        for k in range(d):
            ssq += theta[p, k] * theta[p, k]
        U = U + prior * (0.5 * ssq) if prior != 0.0 else U
        for k in range(d):  # Box-Muller, both branches (rng.normals_from)
            kk = k if k < h else k - h
            rad = math.sqrt(-2.0 * math.log(_uniform(ks, kk)))
            ang = _TWO_PI * _uniform(ks, h + kk)
            p0 = rad * math.cos(ang) if k < h else rad * math.sin(ang)
            g = bp * gE[p, k] + prior * theta[p, k]
            x[p, k], x0[p, k] = theta[p, k], theta[p, k]
            q[p, k] = p0 - 0.5 * eps * g
            kin += p0 * p0
        want = left
        M = lengths.shape[0]
        if M > 0:  # sampling: a recorded length of this chain, cut to the round end
            pick = min(max(int(math.ceil(_uniform(ks, m - 1) * M)), 1), M) - 1
            want = min(lengths[pick, p], left)
        return eps, U + 0.5 * kin, _uniform(ks, m - 2), want

    return jit.kernel(start, d, inline="always")


def _make_finish(d: int):
    def finish(p, theta, E, gE, x, ge, Ex, dH, div, u_acc, use_da, da, target_accept, info, accept_sum):
        """The Metropolis step of chain p's finished trajectory (end state x, energy Ex)."""
        acc = math.log(u_acc) < -dH and not div
        if acc:
            E[p] = Ex
            for k in range(d):
                theta[p, k], gE[p, k] = x[p, k], ge[p, k]
        prob = 0.0 if div else math.exp(min(-dH, 0.0))
        info[0, p] += 1
        info[1, p] += 1 if acc else 0
        info[2, p] += 1 if div else 0
        accept_sum[p] += prob
        if use_da:  # rounds.da_update, one learner
            t = da[4, p] + 1.0
            w = 1.0 / (t + 10.0)
            hb = (1.0 - w) * da[2, p] + w * (target_accept - prob)
            le = da[3, p] - math.sqrt(t) / 0.05 * hb
            eta = math.exp(-0.75 * math.log(t))
            da[1, p] = eta * le + (1.0 - eta) * da[1, p]
            da[0, p], da[2, p], da[4, p] = le, hb, t

    return jit.kernel(finish, d, inline="always")


def _make_advance(d: int):
    def advance(p, x, q, eps):
        """x += eps q for chain p; whether x is finite there (rounds.guarded)."""
        ok = True
        for k in range(d):
            x[p, k] = x[p, k] + eps * q[p, k]
            ok = ok and math.isfinite(x[p, k])
        return ok

    return jit.kernel(advance, d, inline="always")


def _make_settle(d: int):
    def settle(p, x, ge, gx, Ex, bp, prior):
        """E = Ex at chain p's x (+inf and a zero gradient ge[p] where it is not finite: rounds.
        guarded), grad U to gx[p]. Returns (E, U)."""
        ssq = 0.0
        if not math.isfinite(Ex):
            Ex = math.inf
            for k in range(d):
                ge[p, k] = 0.0
        for k in range(d):
            gx[p, k] = bp * ge[p, k] + prior * x[p, k]
            ssq += x[p, k] * x[p, k]
        return Ex, (bp * Ex + prior * (0.5 * ssq) if prior != 0.0 else bp * Ex)

    return jit.kernel(settle, d, inline="always")


def _make_evaluate(energy, lanes, key: str):
    def by_row(x, rows, nm, dset, sc, ge, Eg, data, work, wl):
        """Eg[l] = the energy of row rows[l] of x (N, d), its gradient to ge, for l < nm (wl unused)."""
        for l in range(nm):
            p = rows[l]
            Eg[l] = energy(x, p, dset, sc[p], ge, data, work)

    by_row = jit.kernel(by_row, key, inline="always")
    if lanes is None:
        return by_row

    def evaluate(x, rows, nm, dset, sc, ge, Eg, data, work, wl):
        """by_row's numbers: the group kernel from LANES_MIN rows on, else row by row."""
        if nm >= LANES_MIN:
            lanes(x, rows, nm, dset, sc, ge, Eg, data, wl)
        else:
            by_row(x, rows, nm, dset, sc, ge, Eg, data, work, wl)

    return jit.kernel(evaluate, key, "lanes", inline="always")


def _make_check(d: int):
    def check(p, q, x, x0, gx, eps, Ux, H0):
        """(energy error dH, as torch.nan_to_num(nan=inf) leaves it; the U-turn sum (x - x0).p)
        with the momentum p = q - eps/2 grad U level with x."""
        kin, turn = 0.0, 0.0
        for k in range(d):
            pk = q[p, k] - 0.5 * eps * gx[p, k]
            kin += pk * pk
            turn += (x[p, k] - x0[p, k]) * pk
        dH = Ux + 0.5 * kin - H0
        if dH != dH:
            return math.inf, turn
        if dH == math.inf or dH == -math.inf:
            return math.copysign(_BIG, dH), turn
        return dH, turn

    return jit.kernel(check, d, inline="always")


def _make_group(d: int, scratch, lanes_scratch, evaluate, key: str):
    start, finish, advance, settle, check = _make_start(d), _make_finish(d), _make_advance(d), _make_settle(d), \
        _make_check(d)

    def group(g0, g1, theta, E, gE, keys, counts, stream_key, beta, prior, eps_fixed, use_da, da, lengths, n_ticks,
              uturn, divergence, target_accept, restart_every, didx, sc, data, info, accept_sum, x, q, x0, ge, gx):
        """The round of chains g0 .. g1 - 1 (one data set, at most the group width) in lockstep: each
        chain's tick is rounds.run_round's, the moving chains' energies one group call a tick."""
        nl, dset, work, wl = g1 - g0, didx[g0], scratch(), lanes_scratch()
        first, diverged, moving = np.ones(nl, np.bool_), np.zeros(nl, np.bool_), np.zeros(nl, np.bool_)
        steps, want, rows = np.zeros(nl, np.int64), np.zeros(nl, np.int64), np.zeros(nl, np.int64)
        Ex, Ux, dH, Eg = np.zeros(nl), np.zeros(nl), np.zeros(nl), np.zeros(nl)
        eps, H0, u_acc = np.zeros(nl), np.zeros(nl), np.zeros(nl)
        for l in range(nl):
            eps[l], H0[l], u_acc[l], want[l] = start(g0 + l, theta, E, gE, keys, counts, stream_key, beta[g0 + l],
                                                     prior, eps_fixed, use_da, da, lengths, n_ticks, x, q, x0)
        for j in range(n_ticks):
            nm = 0
            for l in range(nl):  # a frozen chain keeps x, so its energy is the one last evaluated
                moving[l] = steps[l] < want[l] and not diverged[l]
                if moving[l] and advance(g0 + l, x, q, eps[l]):
                    rows[nm] = g0 + l
                    nm += 1
            evaluate(x, rows, nm, dset, sc, ge, Eg, data, work, wl)
            last, m = j == n_ticks - 1, 0
            checked = uturn or last or (j + 1) % restart_every == 0
            for l in range(nl):
                p = g0 + l
                if moving[l]:
                    done = m < nm and rows[m] == p  # evaluated (x finite)
                    Ex[l], Ux[l] = settle(p, x, ge, gx, Eg[m] if done else math.inf, beta[p], prior)
                    m += 1 if done else 0
                steps[l] += 1 if steps[l] < want[l] else 0
                if checked:  # energy errors: divergences, U-turns, and the Metropolis step below
                    dH[l], turn = check(p, q, x, x0, gx, eps[l], Ux[l], H0[l])
                    diverged[l] = diverged[l] or (moving[l] and dH[l] > divergence)
                    if uturn and moving[l] and turn < 0:
                        want[l] = steps[l]
                go_on = steps[l] < want[l]
                if go_on and not diverged[l]:
                    for k in range(d):
                        q[p, k] = q[p, k] - eps[l] * gx[p, k]
                if not checked or (not last and (j + 1) % restart_every) or go_on:
                    continue
                if uturn and first[l]:
                    info[3, p] = steps[l]
                first[l] = False
                finish(p, theta, E, gE, x, ge, Ex[l], dH[l], diverged[l], u_acc[l], use_da, da, target_accept, info,
                       accept_sum)
                if not last:
                    eps[l], H0[l], u_acc[l], want[l] = start(p, theta, E, gE, keys, counts, stream_key, beta[p], prior,
                                                             eps_fixed, use_da, da, lengths, n_ticks - j - 1, x, q, x0)
                    steps[l], diverged[l] = 0, False

    return jit.kernel(group, d, key)


def make_round(energy, scratch, d: int, lanes=None, lanes_scratch=None):
    """(serial, parallel) compiled rounds of chains of dimension d on a one-row `energy`
    (tms.samplers.compiled.RowEnergy), with its group form `lanes` where it has one."""
    key = "|".join(f._uuid for f in (energy, scratch, lanes, lanes_scratch) if f is not None)  # the energy's identity
    group = _make_group(d, scratch, lanes_scratch or scratch, _make_evaluate(energy, lanes, key), key)

    def round_serial(groups, theta, E, gE, keys, counts, stream_key, beta, prior, eps_fixed, use_da, da, lengths,
                     n_ticks, uturn, divergence, target_accept, restart_every, didx, sc, data, info, accept_sum, x, q,
                     x0, ge, gx):
        """One round for every chain p, in groups of chains groups[g] .. groups[g + 1] - 1
        (rows of theta (N, d), E (N,), gE (N, d), counts (N,), da (5, N): log_eps,
        log_eps_bar, h_bar, mu, t; all updated in place); info (4, N): transitions, accepted,
        divergences, U-turn length (added to); x, q, x0, ge (grad E), gx (grad U) (N, d)
        scratch; lengths (M, N), M = 0 outside sampling; prior 1.0 with the N(0, I) prior, else
        0.0; didx, sc (N,): each chain's data set and scale."""
        for g in range(groups.shape[0] - 1):
            group(groups[g], groups[g + 1], theta, E, gE, keys, counts, stream_key, beta, prior, eps_fixed, use_da,
                  da, lengths, n_ticks, uturn, divergence, target_accept, restart_every, didx, sc, data, info,
                  accept_sum, x, q, x0, ge, gx)

    # a function of its own, not round_serial compiled again: numba's disk cache keys a
    # function by its name and source, not by the parallel flag
    def round_parallel(groups, theta, E, gE, keys, counts, stream_key, beta, prior, eps_fixed, use_da, da, lengths,
                       n_ticks, uturn, divergence, target_accept, restart_every, didx, sc, data, info, accept_sum, x,
                       q, x0, ge, gx):
        """round_serial with the groups split over threads."""
        for g in prange(groups.shape[0] - 1):
            group(groups[g], groups[g + 1], theta, E, gE, keys, counts, stream_key, beta, prior, eps_fixed, use_da,
                  da, lengths, n_ticks, uturn, divergence, target_accept, restart_every, didx, sc, data, info,
                  accept_sum, x, q, x0, ge, gx)

    return jit.kernel(round_serial, d, key), jit.kernel(round_parallel, d, key, parallel=True)
