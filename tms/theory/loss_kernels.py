"""Compiled CPU kernels (numba) for the fused exact loss and gradient of tms.theory.loss (SPEC 1).

One loop over parameter sets (rows); per row it forms g = W^T W, counts the class-i inputs
below every threshold t = -b_j/g_ij, reads S0, S1, S2 off the prefix sums (or forms the
population moments m1, m2, m3), accumulates L, D = dL/dg and dL/db, and writes
dL/dW = W (D + D^T). The arithmetic is the eager torch path's (tms.theory.loss._quadratic_err and
_quadratic_grad) in another order: the two agree to rounding, the counts exactly.

Counting below t: a binary search of the sorted class or, when many rows share a data set
or a data set comes back (a sampler's loop), a bucket table (``_tables``, kept for the last
few data sets): buckets of a monotone float formula of the value, so inputs in earlier
buckets are below t and inputs in later ones above it; each bucket keeps its first input and
its size, so one lookup and one comparison give the count, with the binary search for the
rare bucket that holds two or more inputs. Both equal torch.searchsorted(left) exactly. The
code is branch-free where the data decide (signs of g, which bucket), since mispredicted
branches and memory latency, not flops, bound a kernel of a few hundred flops per row.

Layout: rows theta (N, d), d = r*c + c (W row-major, then b, as tms.theory.loss.flatten_params),
the gradient comes back the same way; the data sets are passed once with a per-row data-set
index, never copied per row. The kernels are compiled per (r, c), as constants, so the small
loops unroll (cached on disk by numba). Importing this module needs numba; tms.theory.loss falls
back to its eager path when it cannot (tms.theory.loss.use_compiled).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import torch
from numba import njit

from tms.core import checks, jit
from tms.theory.loss import SortedData, _check_sorted_data

TABLE_ROWS = 32  # bucket tables when at least this many rows share each data set on average
TABLE_PER = 4  # buckets per element of the largest class


@njit(cache=True)
def _below(mu, d, i, cnt, t):
    """Number of mu[d, i, :cnt] (ascending) strictly below t: searchsorted(left)."""
    base, size = 0, cnt
    while size > 1:
        half = size >> 1
        base += half if mu[d, i, base + half] < t else 0
        size -= half
    return base + (1 if (cnt > 0 and mu[d, i, base] < t) else 0)


@njit(cache=True)
def _bucket(v, lo, inv, nb):
    """Bucket of a value: floor(clamp((v - lo) * inv + 1, 0, nb + 2)), NaN -> 0. Monotone in
    v and the same float64 formula in the table and the kernel, so bucket membership is
    exact; the data fill buckets 1 .. nb + 1, so t outside [lo, hi] lands in an empty one."""
    x = (v - lo) * inv + 1.0
    return int(min(max(x if x == x else 0.0, 0.0), nb + 2.0))


@njit(cache=True)
def _tables(mu, count, nb):
    """Bucket tables, nb + 3 buckets per class (``_bucket`` with lo = smallest mu and
    inv = nb / (largest - smallest), 0 when they are equal): tab (nd, c, nb+3, 2) holds for
    each bucket (inputs in earlier buckets, its one input; inf if empty, NaN if it holds
    two or more); lo and inv (nd, c). 16 bytes a bucket, to stay in cache."""
    nd, c = count.shape
    tab = np.zeros((nd, c, nb + 3, 2))
    lo, inv = np.zeros((nd, c)), np.zeros((nd, c))
    size = np.zeros(nb + 3, np.int64)
    for d in range(nd):
        for i in range(c):
            cnt = count[d, i]
            tab[d, i, :, 1] = np.inf
            size[:] = 0
            if cnt == 0:
                continue
            a, z = float(mu[d, i, 0]), float(mu[d, i, cnt - 1])
            lo[d, i], inv[d, i] = a, (nb / (z - a) if z > a else 0.0)
            for p in range(cnt):  # sorted, so buckets fill in order
                k = _bucket(float(mu[d, i, p]), lo[d, i], inv[d, i], nb)
                tab[d, i, k, 1] = mu[d, i, p] if size[k] == 0 else np.nan
                size[k] += 1
            for k in range(1, nb + 3):
                tab[d, i, k, 0] = tab[d, i, k - 1, 0] + size[k - 1]
    return tab, lo, inv


@njit(cache=True, inline="always")
def _row_tail(x, p, r, c, Dm, gb, prior, grad):
    """grad[p] = (W (D + D^T), gb) + prior x[p] for row p of x (N, d) (SPEC 1: g = W^T W);
    returns the prior's energy prior |x[p]|^2 / 2."""
    ssq = 0.0
    for k in range(r):
        for q in range(c):
            s, w = 0.0, x[p, k * c + q]
            for j in range(c):
                s += x[p, k * c + j] * (Dm[q, j] + Dm[j, q])
            grad[p, k * c + q] = s + prior * w
            ssq += w * w
    for j in range(c):
        w = x[p, r * c + j]
        grad[p, r * c + j] = gb[j] + prior * w
        ssq += w * w
    return 0.5 * prior * ssq


@njit(cache=True, inline="always")
def _gram(x, p, r, c, G):
    """G = W^T W (c, c) of row p of x (N, d), W its first r*c entries row-major (SPEC 1)."""
    for i in range(c):
        for j in range(c):
            s = 0.0
            for k in range(r):
                s += x[p, k * c + i] * x[p, k * c + j]
            G[i, j] = s


for _kernel in (_below, _bucket, _tables, _row_tail, _gram):  # reached from cached closures (tms.core.jit)
    jit.stable(_kernel)


def _make_row(r: int, c: int):
    def row(x, p, d, mu, cum1, cum2, count, n, use_tab, tab, lo, inv, sc, prior, G, Dm, gb, K, grad):
        """U = sc L_n + prior |x[p]|^2 / 2 of the finite row p of x (N, d) on data set d, its
        gradient written to grad[p]; G, Dm, gb, K: the caller's scratch (c, c), (c, c), (c,), (c, c)
        (rows by index, not views: a view per row costs what the lookups do not)."""
        m, nb = mu.shape[2], tab.shape[2] - 3
        _gram(x, p, r, c, G)
        for i in range(c):  # all counts first: independent lookups overlap in the CPU
            cnt = count[d, i]
            for j in range(c):
                g = G[i, j]
                t = -x[p, r * c + j] / (g if g != 0 else 1.0)
                if use_tab:  # inputs in earlier buckets are < t, in later ones > t
                    y = (t - lo[d, i]) * inv[d, i] + 1.0  # _bucket, inline (see above)
                    kb = int(min(max(y if y == y else 0.0, 0.0), nb + 2.0))
                    f = tab[d, i, kb, 1]  # NaN: two or more inputs in the bucket (rare)
                    K[i, j] = int(tab[d, i, kb, 0]) + (1 if f < t else 0) if f == f else _below(mu, d, i, cnt, t)
                else:
                    K[i, j] = _below(mu, d, i, cnt, t)
        scale, err = 2.0 * sc / n[d], 0.0
        for j in range(c):
            gb[j] = 0.0
        for i in range(c):
            cnt, t1, t2 = count[d, i], cum1[d, i, m], cum2[d, i, m]
            for j in range(c):
                g, bj, k = G[i, j], x[p, r * c + j], K[i, j]
                # S = sg * (sum below t) + tau * (class total): g > 0 above t, g < 0 below,
                # g = 0 all iff b > 0 (SPEC 1); products by 0/1 keep S exact.
                sg = 1.0 * (g < 0) - 1.0 * (g > 0)
                tau = 1.0 * (g > 0) + 1.0 * ((g == 0) & (bj > 0))
                S0, S1, S2 = sg * k + tau * cnt, sg * cum1[d, i, k] + tau * t1, sg * cum2[d, i, k] + tau * t2
                dl = 1.0 if i == j else 0.0
                a = dl - g
                err += a * a * S2 - 2.0 * a * bj * S1 + bj * bj * S0 + dl * (t2 - S2)
                Dm[i, j] = scale * (bj * S1 - a * S2)
                gb[j] += scale * (bj * S0 - a * S1)
        return sc * err / n[d] + _row_tail(x, p, r, c, Dm, gb, prior, grad)

    return jit.kernel(row, r, c, inline="always")


def _make_empirical(r: int, c: int):
    row = row_kernel(r, c)

    def empirical(theta, didx, mu, cum1, cum2, count, n, use_tab, tab, lo, inv, sc, ss, prior, L, grad):
        """U = sc L_n + prior |theta|^2 / 2 (N,) and dU/dtheta (N, d) of finite rows theta,
        row p on data set didx[p], sc[p * ss] (`row` of each)."""
        G, Dm, gb, K = np.empty((c, c)), np.empty((c, c)), np.empty(c), np.empty((c, c), np.int64)
        for p in range(theta.shape[0]):
            L[p] = row(theta, p, didx[p], mu, cum1, cum2, count, n, use_tab, tab, lo, inv, sc[p * ss], prior,
                       G, Dm, gb, K, grad)

    return jit.kernel(empirical, r, c)


def _make_population_row(r: int, c: int):
    def row(x, p, sc, prior, G, Dm, gb, grad):
        """U = sc L + prior |x[p]|^2 / 2 of the finite row p of x (N, d), L the closed-form
        population loss (SPEC 1), its gradient written to grad[p]; G, Dm, gb: scratch as `row`'s."""
        scale = 2.0 * sc / c
        _gram(x, p, r, c, G)
        err = 0.0
        for j in range(c):
            gb[j] = 0.0
        for i in range(c):
            for j in range(c):
                g, bj = G[i, j], x[p, r * c + j]
                t = min(max(-bj / (g if g != 0 else 1.0), 0.0), 1.0)
                pos, neg = 1.0 * (g > 0), 1.0 * (g < 0)
                # g > 0: active on [t, 1]; g < 0: on [0, t]; g = 0: [0, 1] iff b > 0.
                lo, hi = pos * t, pos + neg * t + 1.0 * ((g == 0) & (bj > 0))
                m1, m2, m3 = hi - lo, (hi * hi - lo * lo) / 2, (hi * hi * hi - lo * lo * lo) / 3
                dl = 1.0 if i == j else 0.0
                a = dl - g
                err += a * a * m3 - 2.0 * a * bj * m2 + bj * bj * m1 + dl * (1.0 / 3.0 - m3)
                Dm[i, j] = scale * (bj * m2 - a * m3)
                gb[j] += scale * (bj * m1 - a * m2)
        return sc * err / c + _row_tail(x, p, r, c, Dm, gb, prior, grad)

    return jit.kernel(row, r, c, inline="always")


def _make_population(r: int, c: int):
    row = population_row_kernel(r, c)

    def population(theta, sc, ss, prior, L, grad):
        """U = sc L + prior |theta|^2 / 2 (N,) and dU/dtheta (N, d) of finite rows theta, L
        the closed-form population loss, sc[p * ss] (`population_row` of each)."""
        G, Dm, gb = np.empty((c, c)), np.empty((c, c)), np.empty(c)
        for p in range(theta.shape[0]):
            L[p] = row(theta, p, sc[p * ss], prior, G, Dm, gb, grad)

    return jit.kernel(population, r, c)


@lru_cache(maxsize=None)
def _kernels(r: int, c: int):
    return _make_empirical(r, c), _make_population(r, c)


@lru_cache(maxsize=None)
def row_kernel(r: int, c: int):
    """The compiled one-row energy and gradient (`_make_row`) at (r, c), for other kernels to call."""
    return _make_row(r, c)


@lru_cache(maxsize=None)
def population_row_kernel(r: int, c: int):
    """The compiled one-row population energy and gradient (`_make_population_row`) at (r, c)."""
    return _make_population_row(r, c)


@lru_cache(maxsize=None)
def row_energy(r: int, c: int):
    """(energy, scratch): the one-row energy in the generic form a compiled sampler calls,
    energy(x, p, dset, scale, ge, data, work) -> scale L_n of row p of x on data set dset,
    gradient to ge[p]; data = `row_binding`'s tuple, work = scratch() (one chain's buffers)."""
    row = row_kernel(r, c)

    def energy(x, p, dset, scale, ge, data, work):
        mu, cum1, cum2, count, n, use_tab, tab, lo, inv = data
        G, Dm, gb, K = work
        return row(x, p, dset, mu, cum1, cum2, count, n, use_tab, tab, lo, inv, scale, 0.0, G, Dm, gb, K, ge)

    def scratch():
        return np.empty((c, c)), np.empty((c, c)), np.empty(c), np.empty((c, c), np.int64)

    return jit.kernel(energy, r, c, inline="always"), jit.kernel(scratch, r, c)


@lru_cache(maxsize=None)
def population_row_energy(r: int, c: int):
    """(energy, scratch) as `row_energy`, of the closed-form population loss: scale L of row
    p (dset and data unused; `population_binding` gives them)."""
    row = population_row_kernel(r, c)

    def energy(x, p, dset, scale, ge, data, work):
        G, Dm, gb, K = work
        return row(x, p, scale, 0.0, G, Dm, gb, ge)

    def scratch():
        return np.empty((c, c)), np.empty((c, c)), np.empty(c), np.empty((c, c), np.int64)

    return jit.kernel(energy, "population", r, c, inline="always"), jit.kernel(scratch, "population", r, c)


def population_binding(scale, B: tuple):
    """`row_binding` of the population energy: (zeros (N,), scale (N,), a placeholder data
    tuple), or None where the scale does not broadcast to B."""
    try:
        sc, ss = _scales(scale, B)
    except ValueError:
        return None
    N = math.prod(B)
    return np.zeros(N, np.int64), (sc if ss else np.full(N, sc[0])), (np.zeros(1),)


def row_binding(data, scale, B: tuple):
    """For chains of batch B on sorted data (batch dims D broadcasting to B) and a scale
    broadcasting to B: (data-set index (N,), scale (N,), the data tuple `row_energy` reads),
    or None where D or the scale do not broadcast to B."""
    D = tuple(data.mu.shape[:-2])
    try:
        if _broadcast_shape(B, D) != B:
            return None
        sc, ss = _scales(scale, B)
    except ValueError:
        return None
    N, nd = math.prod(B), math.prod(D)
    arrays, tables = _prepared(data, np.float64, nd, True)
    return np.ascontiguousarray(_dataset_index(D, B)), (sc if ss else np.full(N, sc[0])), (*arrays, True, *tables)


_NO_TABLE = (np.zeros((0, 0, 3, 2)), np.zeros((0, 0)), np.zeros((0, 0)))
_PREPARED: OrderedDict = OrderedDict()  # the last few data sets: numpy views and tables
_PREPARED_MAX = 4


def _data_arrays(data, np_dtype, nd: int):
    """The sorted data as C-contiguous numpy arrays, data-set dims flattened to nd (views
    where the tensors already are)."""
    c, m = data.mu.shape[-2:]

    def flat(x, tail):
        return np.ascontiguousarray(x.detach().numpy().reshape((nd,) + tail), dtype=np_dtype)

    return (flat(data.mu, (c, m)), flat(data.cum1, (c, m + 1)), flat(data.cum2, (c, m + 1)),
            np.ascontiguousarray(data.count.numpy().reshape(nd, c), dtype=np.int64), flat(data.n, ()))


def _prepared(data, np_dtype, nd: int, many_rows: bool):
    """(arrays, tables or None) for a data set, kept for the next call with the same object.

    The entry holds the data object itself (so its id cannot be reused while cached) and
    the tensors' version counters (an in-place change rebuilds it). Tables are built when
    many rows share the data sets or the data set comes back (a sampler's loop).
    """
    key = (id(data), np.dtype(np_dtype).str)
    versions = (data.mu._version, data.cum1._version, data.cum2._version, data.count._version)
    hit = _PREPARED.get(key)
    if hit is None or hit[0] is not data or hit[1] != versions:
        hit = [data, versions, _data_arrays(data, np_dtype, nd), None]
        _PREPARED[key] = hit
        if len(_PREPARED) > _PREPARED_MAX:
            _PREPARED.popitem(last=False)
        if not many_rows:
            return hit[2], None
    _PREPARED.move_to_end(key)
    if hit[3] is None:
        mu, count = hit[2][0], hit[2][3]
        hit[3] = _tables(mu, count, TABLE_PER * mu.shape[-1])
    return hit[2], hit[3]


def _scales(scale, B: tuple):
    """A per-row scale: (array, step): step 0 for one number, 1 for rows of the batch B."""
    if isinstance(scale, torch.Tensor) and scale.dim():
        return np.ascontiguousarray(np.broadcast_to(scale.detach().double().numpy(), B).reshape(-1)), 1
    return np.full(1, float(scale)), 0


def _dataset_index(D: tuple, B: tuple) -> np.ndarray:
    """The data set (index into the flattened data dims D) of every row of the batch B (N,)."""
    return np.broadcast_to(np.arange(math.prod(D)).reshape(D), B).reshape(-1) if D else np.zeros(math.prod(B), np.int64)


def empirical_rows(theta: np.ndarray, r: int, data, D: tuple, B: tuple, scale=1.0, prior=0.0):
    """Rows theta (N, d) of the broadcast batch B, on sorted data with batch dims D
    (broadcasting to B) -> (U (N,), dU/dtheta (N, d)), U = scale L_n + prior |theta|^2 / 2."""
    N, nd = theta.shape[0], math.prod(D)
    c = theta.shape[1] // (r + 1)
    didx = _dataset_index(D, B)
    arrays, tables = _prepared(data, theta.dtype, nd, N >= TABLE_ROWS * nd)
    L, grad = np.empty(N, theta.dtype), np.empty_like(theta)
    use_tab = tables is not None
    _kernels(r, c)[0](theta, didx, *arrays, use_tab, *(tables if use_tab else _NO_TABLE), *_scales(scale, B),
                      float(prior), L, grad)
    return L, grad


def population_rows(theta: np.ndarray, r: int, B: tuple, scale=1.0, prior=0.0):
    """Rows theta (N, d) -> (U (N,), dU/dtheta (N, d)), U = scale L + prior |theta|^2 / 2."""
    c = theta.shape[1] // (r + 1)
    L, grad = np.empty(theta.shape[0], theta.dtype), np.empty_like(theta)
    _kernels(r, c)[1](theta, *_scales(scale, B), float(prior), L, grad)
    return L, grad


# ---- torch front ends (called by tms.theory.loss when use_compiled says so) ---------------------


def _broadcast_shape(*shapes) -> tuple[int, ...]:
    """torch.broadcast_shapes without its tensor round trip; ValueError when they clash."""
    shapes = [tuple(s) for s in shapes]
    if all(s == shapes[0] or not s for s in shapes):
        return max(shapes, key=len)
    out = [1] * max(len(s) for s in shapes)
    for s in shapes:
        for k, v in enumerate(s, len(out) - len(s)):
            if v != 1:
                if out[k] not in (1, v):
                    raise ValueError(f"batch dims {shapes} of the parameters and the data do not broadcast")
                out[k] = v
    return tuple(out)


def _data_batch(data: SortedData | None, c: int) -> tuple[int, ...]:
    if data is None:
        return ()
    _check_sorted_data(data, c)
    return tuple(data.mu.shape[:-2])


def _run(rows: np.ndarray, r: int, data: SortedData | None, B: tuple, scale=1.0, prior=0.0):
    """Kernel on C-contiguous rows (N, d) of the batch B -> (U (N,), grad (N, d)), or None
    when some row is not finite (the kernels take finite rows only)."""
    if not np.isfinite(rows).all():
        return None
    if data is None:
        return population_rows(rows, r, B, scale, prior)
    return empirical_rows(rows, r, data, tuple(data.mu.shape[:-2]), B, scale, prior)


def fused(W: torch.Tensor, b: torch.Tensor, data: SortedData | None):
    """(W (..., r, c), b (..., c)) -> (L (B...), gW (B..., r, c), gb (B..., c)); checks as
    tms.theory.loss: the structure here, then finiteness on the rows, checks.params for the message."""
    if not (isinstance(b, torch.Tensor) and W.dim() >= 2 and b.dim() >= 1 and W.dtype == b.dtype
            and W.shape[-1] == b.shape[-1] >= 1 and W.shape[-2] >= 1):
        checks.params(W, b)
    r, c = W.shape[-2:]
    try:
        B = _broadcast_shape(W.shape[:-2], b.shape[:-1], _data_batch(data, c))
    except ValueError:
        checks.params(W, b)  # names W and b when they are what does not broadcast
        raise
    N, Wn, bn = math.prod(B), W.detach().numpy(), b.detach().numpy()
    if W.shape[:-2] == b.shape[:-1] == B:
        rows = np.concatenate((Wn.reshape(N, r * c), bn.reshape(N, c)), axis=1)
    else:
        rows = np.empty(B + (r * c + c,), dtype=Wn.dtype)
        rows[..., : r * c], rows[..., r * c :] = Wn.reshape(W.shape[:-2] + (r * c,)), bn
    out = _run(rows.reshape(N, r * c + c), r, data, B)
    if out is None:
        checks.params(W, b)  # raises, naming the non-finite argument
    L, grad = out
    gW, gb = grad[:, : r * c].reshape(B + (r, c)), grad[:, r * c :].reshape(B + (c,))
    return torch.from_numpy(L.reshape(B)), torch.from_numpy(gW), torch.from_numpy(gb)


def fused_flat(theta: torch.Tensor, r: int, c: int, data: SortedData | None, scale=1.0, prior=0.0):
    """theta (..., r*c + c) -> (U (B...), grad (B..., r*c + c)), as tms.theory.loss.loss_and_grad_flat."""
    checks.tensor(theta, "theta", min_dim=1, finite=False)
    d = r * c + c
    if theta.shape[-1] != d:
        raise ValueError(f"theta must have last dim r*c + c = {d}, got {theta.shape[-1]}")
    B = _broadcast_shape(theta.shape[:-1], _data_batch(data, c))
    x = theta.detach().numpy()
    if theta.shape[:-1] != B:
        x = np.broadcast_to(x, B + (d,))
    out = _run(np.ascontiguousarray(x.reshape(-1, d)), r, data, B, scale, prior)
    if out is None:
        checks.tensor(theta, "theta")  # raises: theta contains NaN or inf
    L, grad = out
    return torch.from_numpy(L.reshape(B)), torch.from_numpy(grad.reshape(B + (d,)))
