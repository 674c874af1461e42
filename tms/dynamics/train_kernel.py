"""The numba body of the compiled SGD epoch block (tms.dynamics.train_compiled): one run's
steps per prange iteration, the arithmetic of tms.dynamics.sgd_step.sgd_step_ step for step
(SPEC 4: plain SGD on the batch mean of ||x - f(x)||^2, f(x) = ReLU(W^T W x + b)).

Per run p and step t, with the minibatch rows x_k = X[idx[t, p, k] + off[p]] (k < B):
    g = W^T W,  pre_k = x_k g + b,  d_k = (pre_k - x_k) where pre_k > 0 (else 0),
    A = sum_k x_k^T d_k,  W += scale W (A + A^T),  b += scale sum_k d_k,
with scale = -2 lr / B. The training rows are given sparse (CSR: rowptr, cols, vals; the
lab's data have one nonzero a row, SPEC 1): a product with a zero entry of x adds an exact
zero to its sum, so skipping it changes no bit of a finite sum. Sums run in index order
(over k, then over a row's entries); torch's matrix products may order or block theirs
otherwise, so the two paths differ by rounding (~1 ulp: tests/dynamics/test_train_compiled.py).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from tms.core import jit


def _make_gram(r: int, c: int):
    def gram(W, p, g):
        """g (c, c) = W[p]^T W[p] of W (R, r, c): each pair summed once, g symmetric."""
        for i in range(c):
            for j in range(i, c):
                s = 0.0
                for a in range(r):
                    s += W[p, a, i] * W[p, a, j]
                g[i, j] = s
                g[j, i] = s

    return jit.kernel(gram, r, c, inline="always")


def _make_row(c: int):
    def row(q, rowptr, cols, vals, g, b, p, A, db, d):
        """Training row q's part of a step of run p: d (c,) = (out - x) where out = ReLU(x g +
        b[p]) > 0 (else 0), then A (c, c) += x^T d and db (c,) += d. x is row q of the CSR
        data (rowptr (N + 1,), cols, vals (nnz,))."""
        e0, e1 = rowptr[q], rowptr[q + 1]
        for j in range(c):
            d[j] = 0.0
        for e in range(e0, e1):  # x g over x's nonzero entries
            i, v = cols[e], vals[e]
            for j in range(c):
                d[j] += v * g[i, j]
        for j in range(c):
            pre = d[j] + b[p, j]
            d[j] = pre if pre > 0.0 else 0.0  # out, = out - x where x_j = 0 (NaN: 0, as torch's mask)
        for e in range(e0, e1):  # out - x at x's nonzero entries, where out > 0
            i = cols[e]
            if d[i] > 0.0:
                d[i] = d[i] - vals[e]
        for e in range(e0, e1):
            i, v = cols[e], vals[e]
            for j in range(c):
                A[i, j] += v * d[j]
        for j in range(c):
            db[j] += d[j]

    return jit.kernel(row, c, inline="always")


def _make_step(r: int, c: int):
    gram, row = _make_gram(r, c), _make_row(c)

    def step(p, t, W, b, idx, off, rowptr, cols, vals, scale, g, A, db, d):
        """One SGD step of run p on minibatch t (idx (S, R, B) rows, off (R,) the run's first
        row): W[p] (r, c), b[p] (c,) updated in place. Scratch g, A (c, c); db, d (c,)."""
        gram(W, p, g)
        A[:, :] = 0.0
        db[:] = 0.0
        for k in range(idx.shape[2]):
            row(idx[t, p, k] + off[p], rowptr, cols, vals, g, b, p, A, db, d)
        for a in range(r):  # W[p] += scale W[p] (A + A^T), row by row (a row reads only itself)
            for j in range(c):
                s = 0.0
                for i in range(c):
                    s += W[p, a, i] * (A[i, j] + A[j, i])
                d[j] = s
            for j in range(c):
                W[p, a, j] = W[p, a, j] + scale * d[j]
        for j in range(c):
            b[p, j] = b[p, j] + scale * db[j]

    return jit.kernel(step, r, c, inline="always")


def _make_run(r: int, c: int):
    step = _make_step(r, c)

    def run(p, W, b, idx, off, rowptr, cols, vals, scale, ck_t, W_ck, b_ck):
        """Run p's steps of the block in sequence, copying W[p], b[p] into W_ck[q, p], b_ck[q, p]
        after step ck_t[q] (ck_t (K,) increasing step indices of the block)."""
        g, A = np.empty((c, c)), np.empty((c, c))
        db, d = np.empty(c), np.empty(c)
        q = 0
        for t in range(idx.shape[0]):
            step(p, t, W, b, idx, off, rowptr, cols, vals, scale, g, A, db, d)
            while q < ck_t.shape[0] and ck_t[q] == t:
                W_ck[q, p] = W[p]
                b_ck[q, p] = b[p]
                q += 1

    return jit.kernel(run, r, c, inline="always")


def make_block(r: int, c: int):
    """(serial, parallel) compiled epoch blocks for runs of W (R, r, c), b (R, c):
    block(W, b, idx, off, rowptr, cols, vals, scale, ck_t, W_ck, b_ck) runs steps
    t = 0 .. S - 1 of every run (module docstring) in place on float64 W, b, with
    idx (S, R, B) int64 rows of the flattened data, off (R,) int64 added to a run's rows,
    the data as CSR rowptr (N + 1,) int64, cols (nnz,) int64, vals (nnz,) float64, and the
    block's checkpoints: after step ck_t[q] (ck_t (K,) int64) W_ck[q] (K, R, r, c) and
    b_ck[q] (K, R, c) hold every run's parameters."""
    run = _make_run(r, c)

    def block_serial(W, b, idx, off, rowptr, cols, vals, scale, ck_t, W_ck, b_ck):
        """Every run in turn."""
        for p in range(W.shape[0]):
            run(p, W, b, idx, off, rowptr, cols, vals, scale, ck_t, W_ck, b_ck)

    # a function of its own, not block_serial compiled again: numba's disk cache keys a
    # function by its name and source, not by the parallel flag
    def block_parallel(W, b, idx, off, rowptr, cols, vals, scale, ck_t, W_ck, b_ck):
        """block_serial with the runs split over threads (a run never reads another)."""
        for p in prange(W.shape[0]):
            run(p, W, b, idx, off, rowptr, cols, vals, scale, ck_t, W_ck, b_ck)

    return jit.kernel(block_serial, r, c), jit.kernel(block_parallel, r, c, parallel=True)
