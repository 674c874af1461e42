"""Compiled one-row zoo reading (numba) and the phase wall around a compiled one-row energy.

`reader(c, ...)` is tms.theory.phases.classify for one row theta = (W (2, c) row-major, b (c,))
(tms.theory.loss.flatten_params), as the integer label code of classify's table
(tms.theory.phases.label_codes: (k * (c + 1) + s) * (c + 1) + p for a zoo family, (c + 1)^3
for "other"). The steps and thresholds are classify's (SPEC 2), in the same float64
arithmetic: column norms, the zero / "+" / switched-off tests, the first reading (every nonzero
column a vertex) and, where its label is no family, the second (switched-off columns dead).
The angular tolerances 2 pi / k and angle_tol 2 pi / k come from classify's own torch
expressions (`tables`: float32 there), so the two readings differ only where atan2 rounds
differently (libm here, torch's vector code there) and an angle sits on a threshold.

`walled(energy, scratch, reader, c)` is the compiled form of
tms.bayes.free_energy.ladders.restricted on the zoo reading (SPEC 3: the posterior restricted
to a phase region): the inner energy where the row's code is the chain's wanted code, +inf
elsewhere (the compiled round then zeroes the gradient and counts a divergence, as
tms.samplers.rounds.guarded and the torch round do).
"""
from __future__ import annotations

import math

import numpy as np

from tms.core import jit

_TWO_PI = 2.0 * math.pi


def _make_regular(c: int, norm_tol: float):
    def regular(ang, nrm, kind, with_off, k, expected, tol, srt):
        """phases._regular for one row: do the member columns (kind 1, and kind 2 where
        with_off) of angles ang (c,) and norms nrm (c,) form a regular k-gon (k >= 1)? srt (c,)
        scratch: the members' angles, sorted."""
        n, big, small = 0, 0.0, math.inf
        for i in range(c):
            if kind[i] == 1 or (with_off and kind[i] == 2):
                a, j = ang[i], n
                while j > 0 and srt[j - 1] > a:  # insertion sort: c is small
                    srt[j] = srt[j - 1]
                    j -= 1
                srt[j] = a
                n += 1
                big, small = max(big, nrm[i]), min(small, nrm[i])
        e, dev = expected[k], 0.0
        for j in range(k - 1):
            dev = max(dev, abs((srt[j + 1] - srt[j]) - e))
        dev = max(dev, abs(((srt[0] + _TWO_PI) - srt[k - 1]) - e))
        return dev <= tol[k] and big <= (1 + norm_tol) * small

    return jit.kernel(regular, c, norm_tol, inline="always")


def reader(c: int, zero_tol: float, plus_tol: float, off_ratio: float, norm_tol: float):
    """The compiled one-row reading code(x, p, tables, buf) -> int: the label code of row p of
    x (N, 3 c) (module docstring); tables = `tables`' (known (m^3 + 1,) bool, expected (c + 1,),
    tol (c + 1,)), buf = (ang, nrm, srt) float64 (c,) each and kind int64 (c,)."""
    regular = _make_regular(c, norm_tol)
    m = c + 1
    other = m * m * m

    def code(x, p, tables, buf):
        known, expected, tol = tables
        ang, nrm, srt, kind = buf
        s, k1, p1 = 0, 0, 0
        for i in range(c):
            xi, yi, bi = x[p, i], x[p, c + i], x[p, 2 * c + i]
            n2 = xi * xi + yi * yi
            nrm[i], ang[i] = math.sqrt(n2), math.atan2(yi, xi)
            if nrm[i] < zero_tol:  # a zero column: "+" where its bias is positive
                kind[i] = 0
                s += 1 if bi > plus_tol else 0
            else:  # a vertex, switched off (2) where its output never fires
                kind[i] = 2 if bi < -off_ratio * n2 else 1
                k1 += 1
                p1 += 1 if kind[i] == 2 else 0
        if k1 >= 3 and regular(ang, nrm, kind, True, k1, expected, tol, srt):
            got = (k1 * m + s) * m + p1
            if known[got]:
                return got
        k2 = k1 - p1  # the second reading: switched-off columns are dead zero columns
        if k2 >= 3 and regular(ang, nrm, kind, False, k2, expected, tol, srt):
            got = (k2 * m + s) * m
            if known[got]:
                return got
        return other

    return jit.kernel(code, c, zero_tol, plus_tol, off_ratio, norm_tol, inline="always")


def buffers(c: int):
    """A compiled maker of one row's reading scratch (ang, nrm, srt, kind), (c,) each."""
    def buf():
        return np.empty(c), np.empty(c), np.empty(c), np.empty(c, np.int64)

    return jit.kernel(buf, c)


def codes(theta: np.ndarray, code, buf, tables) -> np.ndarray:
    """The reading of every row of theta (N, 3 c) float64 -> codes (N,) int64 (for tests and
    batch use; `reader`'s code and `buffers`' buf)."""
    return _rows_kernel(code, buf)(np.ascontiguousarray(theta, dtype=np.float64), tables)


_ROWS: dict = {}


def _rows_kernel(code, buf):
    key = (code._uuid, buf._uuid)
    if key not in _ROWS:
        def rows(theta, tables):
            """code of every row of theta (N, d) -> (N,) int64."""
            out, work = np.empty(theta.shape[0], np.int64), buf()
            for p in range(theta.shape[0]):
                out[p] = code(theta, p, tables, work)
            return out

        _ROWS[key] = jit.kernel(rows, *key)
    return _ROWS[key]


def walled(energy, scratch, code, buf):
    """(energy, scratch) of the wall around a compiled one-row energy (module docstring):
    energy(x, p, dset, scale, ge, data, work) with data = (the inner data, want (N,) int64:
    each chain's wanted code, the reading's tables) and work = (the inner work, the reading's
    buf); the inner energy is not evaluated outside the wall."""
    def wall_energy(x, p, dset, scale, ge, data, work):
        inner, want, tables = data
        if code(x, p, tables, work[1]) != want[p]:
            return math.inf
        return energy(x, p, dset, scale, ge, inner, work[0])

    def wall_scratch():
        return scratch(), buf()

    key = (energy._uuid, scratch._uuid, code._uuid)
    return jit.kernel(wall_energy, *key, inline="always"), jit.kernel(wall_scratch, *key)
