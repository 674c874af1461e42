"""The compiled one-row zoo reading (tms.theory.phase_kernels through phases.classify_codes)
against phases.classify, the reference, row by row."""
import math

import numpy as np
import pytest
import torch

from tms.theory import phases, zoo
from tms.theory.loss import flatten_params, unflatten_params

pytest.importorskip("numba")


def _rows(c: int, seed: int) -> np.ndarray:
    """Rows theta (N, 3 c): every zoo family at c under a random O(2) element and feature
    permutation, exact and perturbed at noise 0.01 .. 0.4; posterior-like Gaussian rows of
    several scales; rows with exactly zero columns (some with zero biases too)."""
    g = np.random.default_rng(seed)
    rows = []
    for k, s, p in zoo.family_members(c):
        W, b = (t.numpy() for t in zoo.kgon_params(k, c, s, p))
        for sigma in (0.0, 0.01, 0.05, 0.1, 0.2, 0.4):
            n = 1 if sigma == 0.0 else 1500
            a, flip = g.uniform(0, 2 * math.pi, n), g.choice([1.0, -1.0], n)
            R = np.stack([np.stack([np.cos(a), -np.sin(a)], -1), np.stack([flip * np.sin(a), flip * np.cos(a)], -1)], 1)
            perm = np.argsort(g.uniform(size=(n, c)), -1)
            Wp = np.take_along_axis(R @ W, perm[:, None, :], -1)
            bp = np.take_along_axis(np.broadcast_to(b, (n, c)), perm, -1)
            th = np.concatenate([Wp.reshape(n, 2 * c), bp], -1)
            rows.append(th + sigma * g.normal(size=th.shape))
    rows.append(g.normal(size=(10_000, 3 * c)) * g.uniform(0.05, 2.0, size=(10_000, 1)))
    z = g.normal(size=(10_000, 3 * c))
    cols = g.uniform(size=(10_000, c)) < 0.4
    z[:, :2 * c] *= ~np.concatenate([cols, cols], -1)  # whole columns exactly zero
    z[:, 2 * c:] *= g.uniform(size=(10_000, c)) < 0.8  # and some biases exactly zero
    rows.append(z)
    return np.concatenate(rows)


@pytest.mark.parametrize("c", [4, 5, 6])
def test_the_compiled_reading_gives_classify_labels_on_every_row(c):
    """No disagreement on ~100,000 rows per c (a disagreement could only be an angle within
    rounding of a tolerance, where libm's atan2 and torch's round differently); every zoo
    family is read, and so is "other"."""
    theta = _rows(c, c)
    want = phases.classify(*unflatten_params(torch.from_numpy(theta), 2, c))
    codes = phases.classify_codes(theta, c)
    names = {v: k for k, v in phases.label_codes(c).items()}
    got = np.array([names[int(x)] for x in codes])
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(want[i], got[i], theta[i].tolist()) for i in bad[:3]]
    assert set(want.tolist()) == set(zoo.labels(c)) | {phases.OTHER}


def test_label_codes_index_classify_table():
    for c in (4, 6):
        codes, (table, m) = phases.label_codes(c), phases._lookup(c)
        assert codes[phases.OTHER] == m ** 3
        for lab in zoo.labels(c):
            assert table[codes[lab]] == lab
    k, s, p = zoo.parse_label("4+,-")
    W, b = zoo.kgon_params(k, 6, s, p)
    assert phases.classify_codes(flatten_params(W, b)[None], 6)[0] == phases.label_codes(6)["4+,-"]
