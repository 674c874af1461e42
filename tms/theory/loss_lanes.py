"""The fused exact loss and gradient of a group of rows on one data set, vectorised over the
rows (numba; SPEC 1): the compiled HMC round's energy for a group of chains in lockstep.

tms.theory.loss_kernels' one-row kernel is scalar code: per row c^2 thresholds, each a
division, a bucket lookup and a few dozen flops, latency-bound. Here the same arithmetic runs
for up to LANES rows at once, each step a loop over the rows (the innermost loop, over
contiguous scratch of shape (.., LANES)), which LLVM turns into SIMD code: the Gram matrix,
thresholds (vector divisions) and buckets first, then the lookups (scalar loads: the gathers),
then the sums and the gradient. Every row's operations are the one-row kernel's, in its
order, so a row's energy and gradient are bit-identical to `loss_kernels.row_kernel`'s
whatever the group (tested); measured ~2x faster per row from 8 rows on (benchmarks/
bench_posterior.py), slower below ~4, where the round calls the one-row kernel instead.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from tms.core import jit
from tms.theory.loss_kernels import _below

LANES = 32  # rows per group: the scratch's last dim


def _make_prepare(r: int, c: int):
    def prepare(x, rows, nm, dset, sc, n, lo, inv, nb, X, scl, sc2, G, T, KB):
        """Gather rows[:nm] of x (N, d) into X (d, LANES), their scales into scl and 2 scl / n
        into sc2; then per pair q = i c + j: G = W^T W, the threshold T = -b_j / g_ij and its
        bucket KB (as a float). (Inner loops read scratch only: LLVM cannot tell the data
        arrays from the scratch, so a data read there would keep the loop scalar.)"""
        for k in range(r * c + c):
            for l in range(nm):
                X[k, l] = x[rows[l], k]
        nv = n[dset]
        for l in range(nm):
            scl[l] = sc[rows[l]]
            sc2[l] = 2.0 * scl[l] / nv
        for i in range(c):
            li, vi = lo[dset, i], inv[dset, i]
            for j in range(c):
                q = i * c + j
                for l in range(nm):
                    s = 0.0
                    for k in range(r):
                        s += X[k * c + i, l] * X[k * c + j, l]
                    G[q, l] = s
                    t = -X[r * c + j, l] / (s if s != 0 else 1.0)
                    T[q, l] = t
                    y = (t - li) * vi + 1.0  # loss_kernels._bucket, inline
                    KB[q, l] = min(max(y if y == y else 0.0, 0.0), nb + 2.0)

    return jit.kernel(prepare, r, c, inline="always")


def _make_lookup(c: int):
    def lookup(nm, dset, mu, cum1, cum2, count, use_tab, tab, T, KB, K, S1, S2):
        """Inputs of class i below each threshold (the one-row kernel's count, exactly) and the
        prefix sums there: K, S1 = cum1[K], S2 = cum2[K] (c^2, LANES)."""
        for i in range(c):
            cnt = count[dset, i]
            for j in range(c):
                q = i * c + j
                for l in range(nm):
                    t = T[q, l]
                    if use_tab:
                        kb = int(KB[q, l])
                        f = tab[dset, i, kb, 1]  # NaN: two or more inputs in the bucket (rare)
                        k = int(tab[dset, i, kb, 0]) + (1 if f < t else 0) if f == f else _below(mu, dset, i, cnt, t)
                    else:
                        k = _below(mu, dset, i, cnt, t)
                    K[q, l], S1[q, l], S2[q, l] = k, cum1[dset, i, k], cum2[dset, i, k]

    return jit.kernel(lookup, c, inline="always")


def _make_sums(r: int, c: int):
    def sums(nm, dset, cum1, cum2, count, X, sc2, G, K, S1, S2, Dm, gb, err):
        """err (LANES,) = the squared errors' sum, Dm = dL/dg and gb = dL/db scaled (the one-row
        kernel's second loop, per row in its order)."""
        m = cum1.shape[2] - 1
        for l in range(nm):
            err[l] = 0.0
        for j in range(c):
            for l in range(nm):
                gb[j, l] = 0.0
        for i in range(c):
            cnt, t1, t2 = count[dset, i], cum1[dset, i, m], cum2[dset, i, m]
            for j in range(c):
                q = i * c + j
                dl = 1.0 if i == j else 0.0
                for l in range(nm):
                    g, bj, k = G[q, l], X[r * c + j, l], K[q, l]
                    scale = sc2[l]
                    sg = 1.0 * (g < 0) - 1.0 * (g > 0)
                    tau = 1.0 * (g > 0) + 1.0 * ((g == 0) & (bj > 0))
                    s0, s1, s2 = sg * k + tau * cnt, sg * S1[q, l] + tau * t1, sg * S2[q, l] + tau * t2
                    a = dl - g
                    err[l] += a * a * s2 - 2.0 * a * bj * s1 + bj * bj * s0 + dl * (t2 - s2)
                    Dm[q, l] = scale * (bj * s1 - a * s2)
                    gb[j, l] += scale * (bj * s0 - a * s1)

    return jit.kernel(sums, r, c, inline="always")


def _make_lanes(r: int, c: int):
    prepare, lookup, sums = _make_prepare(r, c), _make_lookup(c), _make_sums(r, c)

    def lanes(x, rows, nm, dset, sc, ge, E, data, work):
        """E[l] = sc[p] L_n of row p = rows[l] of x (N, d) on data set dset, its gradient to
        ge[p], for l < nm <= LANES (loss_kernels.row_energy's energy, row by row)."""
        mu, cum1, cum2, count, n, use_tab, tab, lo, inv = data
        X, scl, sc2, G, T, KB, K, S1, S2, Dm, gb, err, GE = work
        prepare(x, rows, nm, dset, sc, n, lo, inv, tab.shape[2] - 3, X, scl, sc2, G, T, KB)
        lookup(nm, dset, mu, cum1, cum2, count, use_tab, tab, T, KB, K, S1, S2)
        sums(nm, dset, cum1, cum2, count, X, sc2, G, K, S1, S2, Dm, gb, err)
        for k in range(r):  # dL/dW = W (D + D^T), the one-row tail with prior 0
            for q in range(c):
                for l in range(nm):
                    s, w = 0.0, X[k * c + q, l]
                    for j in range(c):
                        s += X[k * c + j, l] * (Dm[q * c + j, l] + Dm[j * c + q, l])
                    GE[k * c + q, l] = s + 0.0 * w
        for j in range(c):
            for l in range(nm):
                GE[r * c + j, l] = gb[j, l] + 0.0 * X[r * c + j, l]
        nv = n[dset]
        for l in range(nm):
            p, ssq = rows[l], 0.0
            for k in range(r * c + c):
                ssq += X[k, l] * X[k, l]
                ge[p, k] = GE[k, l]
            E[l] = scl[l] * err[l] / nv + 0.5 * 0.0 * ssq

    def scratch():
        P, L, d = c * c, LANES, r * c + c
        return (np.empty((d, L)), np.empty(L), np.empty(L), np.empty((P, L)), np.empty((P, L)), np.empty((P, L)),
                np.empty((P, L), np.int64), np.empty((P, L)), np.empty((P, L)), np.empty((P, L)), np.empty((c, L)),
                np.empty(L), np.empty((d, L)))

    return jit.kernel(lanes, r, c, inline="always"), jit.kernel(scratch, r, c, inline="always")


@lru_cache(maxsize=None)
def lanes_energy(r: int, c: int):
    """(lanes, scratch): the group form of loss_kernels.row_energy(r, c), same data tuple;
    lanes(x, rows, nm, dset, sc, ge, E, data, work), work = scratch()."""
    return _make_lanes(r, c)
