"""The group form of the fused loss (tms.theory.loss_lanes) against the one-row kernel it
vectorises (tms.theory.loss_kernels.row_energy): the same bits, row by row, whatever the
group, and the one-row kernel against the eager torch loss (an independent reference)."""
import numpy as np
import pytest
import torch
from numba import njit

from tms.theory import loss
from tms.theory.data import sample_inputs
from tms.theory.loss import sorted_data, stack_sorted

pytestmark = pytest.mark.skipif(loss._kernels() is None, reason="numba not available")


def _rows(r: int, c: int, N: int, seed: int) -> np.ndarray:
    """Rows (N, r c + c): posterior-like (unit columns, negative biases) and Gaussian rows of
    several scales, some columns exactly zero (g = 0 pairs) with biases of both signs, and
    some biases exactly zero."""
    g = np.random.default_rng(seed)
    rows = g.normal(size=(N, r * c + c)) * g.uniform(0.05, 1.5, size=(N, 1))
    rows[: N // 4, r * c:] = -np.abs(rows[: N // 4, r * c:]) * 0.3
    zero = g.uniform(size=(N, c)) < 0.2
    rows[:, : r * c] *= ~np.tile(zero, r)
    rows[:, r * c:] *= g.uniform(size=(N, c)) < 0.9
    return rows


def _callers(r: int, c: int):
    """(by rows, by groups) compiled callers of the one-row energy and its group form."""
    kernels = loss._kernels()
    energy, scratch = kernels.row_energy(r, c)
    from tms.theory import loss_lanes
    lanes, lanes_scratch = loss_lanes.lanes_energy(r, c)

    @njit
    def by_rows(x, dset, sc, ge, E, data):
        work = scratch()
        for p in range(x.shape[0]):
            E[p] = energy(x, p, dset, sc[p], ge, data, work)

    @njit
    def by_groups(x, dset, sc, ge, E, data, rows_all, sizes):
        wl, at = lanes_scratch(), 0
        Eg = np.empty(rows_all.shape[0])
        for nm in sizes:  # the rows in groups of these sizes, in the order rows_all gives
            lanes(x, rows_all[at:at + nm], nm, dset, sc, ge, Eg[at:at + nm], data, wl)
            at += nm
        for k in range(rows_all.shape[0]):
            E[rows_all[k]] = Eg[k]

    return by_rows, by_groups


@pytest.mark.parametrize("r, c, use_tab", [(2, 6, True), (3, 5, True), (2, 4, False)])
def test_groups_of_any_size_give_the_one_row_kernels_bits(r, c, use_tab):
    from tms.theory import loss_kernels, loss_lanes
    data = stack_sorted([sorted_data(sample_inputs(n, c, n).double()) for n in (40, 700)])
    dset_idx, sc, bound = loss_kernels.row_binding(data, 2.5, (2,))
    bound = bound[:5] + (use_tab,) + bound[6:]
    N = 301
    x = _rows(r, c, N, 7)
    sc = np.linspace(0.5, 3.0, N)
    by_rows, by_groups = _callers(r, c)
    ref_E, ref_g = np.empty(N), np.empty_like(x)
    by_rows(x, 1, sc, ref_g, ref_E, bound)
    g = np.random.default_rng(1)
    sizes = []
    while sum(sizes) < N:  # every size from 1 to LANES, the rows shuffled
        sizes.append(min(int(g.integers(1, loss_lanes.LANES + 1)), N - sum(sizes)))
    sizes[:2] = [loss_lanes.LANES, 1]
    sizes[-1] = N - sum(sizes[:-1])
    E, ge = np.full(N, np.nan), np.full_like(x, np.nan)
    by_groups(x, 1, sc, ge, E, bound, g.permutation(N).astype(np.int64), np.array(sizes, np.int64))
    assert np.array_equal(E, ref_E) and np.array_equal(ge, ref_g)
    # and the one-row kernel is the loss: the direct sum over data set 1's inputs, autograd
    W = torch.from_numpy(x[:, : r * c].reshape(N, r, c)).requires_grad_()
    b = torch.from_numpy(x[:, r * c:]).requires_grad_()
    U = torch.from_numpy(sc) * loss.empirical_loss(W, b, sample_inputs(700, c, 700).double())
    gW, gb = torch.autograd.grad(U.sum(), (W, b))
    torch.testing.assert_close(torch.from_numpy(ref_E), U.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.from_numpy(ref_g), torch.cat([gW.reshape(N, r * c), gb], -1), rtol=1e-9, atol=1e-9)
