"""The fused exact loss and gradient (SPEC 1) against the direct sum and autograd.

Both paths run: the compiled kernel (numba) and the eager torch fallback. References:
`empirical_loss` (the direct O(n c) sum), autograd of `empirical_loss_sorted` and of
`population_loss`, and item-by-item calls for the batched layouts.
"""
import subprocess
import sys

import numpy as np
import pytest
import torch

import tms.theory.loss as tl
from tms.theory.data import sample_inputs
from tms.theory.loss import (
    batched_grad,
    empirical_loss,
    empirical_loss_and_grad_sorted,
    empirical_loss_sorted,
    flatten_params,
    loss_and_grad_flat,
    population_loss,
    population_loss_and_grad,
    sorted_data,
    stack_sorted,
)

PATHS = [pytest.param(False, id="eager"), pytest.param(True, id="compiled")]
TOL = 1e-12


def close(x, ref, tol=TOL):
    """|x - ref| <= tol * max |ref| (relative to the tensor's scale), same shape."""
    assert x.shape == ref.shape, (x.shape, ref.shape)
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    err = float((x - ref).abs().max()) if ref.numel() else 0.0
    assert err <= tol * max(scale, 1e-30), f"max error {err:.3e} vs scale {scale:.3e}"


def full_batch(W, b, *shapes):
    """W, b expanded to the broadcast batch shape (autograd then gives per-item gradients)."""
    B = torch.broadcast_shapes(W.shape[:-2], b.shape[:-1], *shapes)
    return W.expand(B + W.shape[-2:]).clone(), b.expand(B + b.shape[-1:]).clone()


def random_params(shape, r=2, c=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    W = 0.8 * torch.randn(shape + (r, c), generator=gen)
    b = 0.4 * torch.randn(shape + (c,), generator=gen)
    return W, b


def edge_params(r=2, c=6):
    """One parameter set per edge case, stacked (8, r, c), (8, c)."""
    W, b = random_params((8,), r, c, seed=3)
    W[1, :, 2] = 0.0  # a dead column
    b[1, 2] = -0.3
    W[2, :, 0], W[2, :, 1] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.7])  # g_01 = 0
    b[3] = 0.0  # b = 0
    G = W[4].T @ W[4]
    b[4] = -G[0] - 0.25  # b_j < -g_0j: output j never fires on class 0 (where g > 0)
    W[5] = 0.0  # everything dead, b > 0 and b < 0 mixed
    W[6, :, 3] = 0.0  # dead column with b = 0
    b[6, 3] = 0.0
    b[7] = b[7].abs() + 0.05  # all biases positive
    return W, b


@pytest.mark.parametrize("compiled", PATHS)
def test_empirical_matches_direct_sum_and_autograd(compiled):
    W, b = torch.cat([random_params((24,))[0], edge_params()[0]]), torch.cat([random_params((24,))[1], edge_params()[1]])
    X = sample_inputs(300, 6, 1)
    data = sorted_data(X)
    L, gW, gb = empirical_loss_and_grad_sorted(W, b, data, compiled=compiled)
    close(L, empirical_loss(W, b, X))
    L0, gW0, gb0 = batched_grad(lambda w, bb: empirical_loss_sorted(w, bb, data), W, b)
    close(L, L0), close(gW, gW0), close(gb, gb0)
    # no threshold sits on a data point here, so the direct sum's autograd agrees too
    _, gW1, gb1 = batched_grad(lambda w, bb: empirical_loss(w, bb, X), W, b)
    close(gW, gW1), close(gb, gb1)


@pytest.mark.parametrize("compiled", PATHS)
def test_population_matches_autograd(compiled):
    W, b = torch.cat([random_params((40,))[0], edge_params()[0]]), torch.cat([random_params((40,))[1], edge_params()[1]])
    L, gW, gb = population_loss_and_grad(W, b, compiled=compiled)
    L0, gW0, gb0 = batched_grad(population_loss, W, b)
    close(L, L0), close(gW, gW0), close(gb, gb0)
    # another shape: r = 3, c = 5
    W, b = random_params((16,), 3, 5, seed=5)
    L, gW, gb = population_loss_and_grad(W, b, compiled=compiled)
    L0, gW0, gb0 = batched_grad(population_loss, W, b)
    close(L, L0), close(gW, gW0), close(gb, gb0)


@pytest.mark.parametrize("compiled", PATHS)
def test_population_gradient_is_the_derivative(compiled):
    """Central differences of the closed form (L is C^1: the boundary terms cancel)."""
    W, b = random_params((6,), seed=8)
    _, gW, gb = population_loss_and_grad(W, b, compiled=compiled)
    h = 1e-6
    for k in range(12):
        E = torch.zeros(12, dtype=W.dtype)
        E[k] = h
        dW = E.reshape(2, 6)
        fd = (population_loss(W + dW, b) - population_loss(W - dW, b)) / (2 * h)
        torch.testing.assert_close(fd, gW[:, k // 6, k % 6], rtol=1e-6, atol=1e-8)
    for j in range(6):
        e = torch.zeros(6, dtype=b.dtype)
        e[j] = h
        fd = (population_loss(W, b + e) - population_loss(W, b - e)) / (2 * h)
        torch.testing.assert_close(fd, gb[:, j], rtol=1e-6, atol=1e-8)


def _tie_case():
    """c = 3, r = 2, dyadic numbers so that g, t = -b_j/g_ij and mu*g + b are exact.

    g = [[1, .5, 0], [.5, .5, .5], [0, .5, 1]]; b = (-1/2, -1/4, 1/4):
      class 0, output 0 (diagonal): t = 1/2, a data point of class 0 -> the kink;
      class 1, output 0 (off-diagonal): t = 1, a data point of class 1;
      class 1, output 1 (diagonal): t = 1/2, a data point of class 1 -> a second kink;
      g_02 = g_20 = 0 with b_2 > 0 (all active) and b_0 < 0 (none).
    """
    W = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]])
    b = torch.tensor([-0.5, -0.25, 0.25])
    mus = {0: [0.125, 0.5, 0.75, 0.5], 1: [0.25, 0.5, 1.0], 2: [0.375, 0.0625]}
    rows = [mu * torch.eye(3)[i] for i, ms in mus.items() for mu in ms]
    return W, b, torch.stack(rows)


@pytest.mark.parametrize("compiled", PATHS)
def test_thresholds_exactly_at_data_points(compiled):
    W, b, X = _tie_case()
    data = sorted_data(X)
    L, gW, gb = empirical_loss_and_grad_sorted(W, b, data, compiled=compiled)
    close(L, empirical_loss(W, b, X))
    for _ in range(2):  # 40 copies: the kernel's bucket-table path (and its cached tables)
        Lm, gWm, gbm = empirical_loss_and_grad_sorted(W.expand(40, 2, 3), b, data, compiled=compiled)
        close(Lm, L.expand(40)), close(gWm, gW.expand(40, 2, 3)), close(gbm, gb.expand(40, 3))
    L0, gW0, gb0 = batched_grad(lambda w, bb: empirical_loss_sorted(w, bb, data), W, b)
    close(L, L0), close(gW, gW0), close(gb, gb0)
    # The direct sum's autograd takes relu'(0) = 0, the sorted loss counts mu = t as active
    # (g > 0). They differ only at diagonal ties: there d err/dg_ii = -2 mu^2 and
    # d err/db_i = -2 mu per tied input (a mu - b = mu at the tie), off-diagonal ties agree.
    n = X.shape[0]
    D = torch.zeros(3, 3)
    kink_b = torch.zeros(3)
    for i, mu in [(0, 0.5), (0, 0.5), (1, 0.5)]:  # class 0 holds mu = 1/2 twice
        D[i, i] += -2 * mu**2 / n
        kink_b[i] += -2 * mu / n
    _, gW1, gb1 = batched_grad(lambda w, bb: empirical_loss(w, bb, X), W, b)
    close(gW, gW1 + W @ (D + D.T)), close(gb, gb1 + kink_b)


@pytest.mark.parametrize("compiled", PATHS)
def test_single_input_and_ties_inside_the_data(compiled):
    """n = 1; a class whose inputs are all equal (a bucket table with zero width); many
    repeated values; the loss and gradient still equal the references."""
    W, b = torch.cat([random_params((40,))[0], edge_params()[0]]), torch.cat([random_params((40,))[1], edge_params()[1]])
    X1 = torch.zeros(1, 6)
    X1[0, 2] = 0.6
    gen = torch.Generator().manual_seed(4)
    idx = torch.randint(0, 6, (200,), generator=gen)
    mu = torch.randint(1, 5, (200,), generator=gen).double() / 4  # values in {1/4, .., 1}
    Xr = torch.zeros(200, 6).scatter_(1, idx[:, None], mu[:, None])
    Xr[idx == 5, 5] = 0.5  # class 5: all inputs equal
    for X in (X1, Xr):
        data = sorted_data(X)
        L, gW, gb = empirical_loss_and_grad_sorted(W, b, data, compiled=compiled)
        close(L, empirical_loss(W, b, X))
        L0, gW0, gb0 = batched_grad(lambda w, bb: empirical_loss_sorted(w, bb, data), W, b)
        close(L, L0), close(gW, gW0), close(gb, gb0)


@pytest.mark.parametrize("compiled", PATHS)
def test_chains_by_data_sets_of_different_sizes(compiled):
    """Data (G, 1) from stack_sorted against chains (G, K): equal to item by item."""
    sizes = (1, 7, 50, 300)
    Xs = [sample_inputs(n, 6, 10 + n) for n in sizes]
    data = stack_sorted([sorted_data(X) for X in Xs])  # (G,)
    data_gk = tl.SortedData(data.mu[:, None], data.cum1[:, None], data.cum2[:, None],
                            data.count[:, None], data.n[:, None])  # (G, 1): broadcast over chains
    W, b = random_params((len(sizes), 40), seed=6)  # 40 chains: the kernel's table path
    L, gW, gb = empirical_loss_and_grad_sorted(W, b, data_gk, compiled=compiled)
    assert L.shape == (4, 40) and gW.shape == (4, 40, 2, 6) and gb.shape == (4, 40, 6)
    for g, X in enumerate(Xs):
        one = sorted_data(X)
        close(L[g], empirical_loss(W[g], b[g], X))
        Lg, gWg, gbg = empirical_loss_and_grad_sorted(W[g], b[g], one, compiled=compiled)
        close(L[g], Lg), close(gW[g], gWg), close(gb[g], gbg)
        for k in (0, 17):  # single items (the kernel's binary-search path)
            Lk, gWk, gbk = empirical_loss_and_grad_sorted(W[g, k], b[g, k], one, compiled=compiled)
            close(L[g, k], Lk), close(gW[g, k], gWk), close(gb[g, k], gbk)
            if compiled:  # rows are computed independently: bit for bit
                assert torch.equal(gW[g, k], gWk) and torch.equal(L[g, k], Lk)
    # autograd of the sorted loss on the whole batch
    L0, gW0, gb0 = batched_grad(lambda w, bb: empirical_loss_sorted(w, bb, data_gk), W, b)
    close(L, L0), close(gW, gW0), close(gb, gb0)


@pytest.mark.parametrize("compiled", PATHS)
def test_broadcasting_of_parameters_and_data(compiled):
    """Shared W with per-chain b; data sets (G,) against chains (K, 1) -> (K, G)."""
    data = stack_sorted([sorted_data(sample_inputs(n, 6, n)) for n in (20, 90, 33)])
    W, b = random_params((), seed=7)
    bK = 0.3 * torch.randn(5, 1, 6, generator=torch.Generator().manual_seed(2))
    L, gW, gb = empirical_loss_and_grad_sorted(W, bK, data, compiled=compiled)
    assert L.shape == (5, 3) and gW.shape == (5, 3, 2, 6) and gb.shape == (5, 3, 6)
    Wf, bf = full_batch(W, bK, data.batch_shape)
    L0, gW0, gb0 = batched_grad(lambda w, bb: empirical_loss_sorted(w, bb, data), Wf, bf)
    close(L, L0), close(gW, gW0), close(gb, gb0)
    Lp, gWp, gbp = population_loss_and_grad(W, bK[:, 0], compiled=compiled)
    Wf, bf = full_batch(W, bK[:, 0])
    L0, gW0, gb0 = batched_grad(population_loss, Wf, bf)
    close(Lp, L0), close(gWp, gW0), close(gbp, gb0)


def test_compiled_equals_eager():
    W, b = random_params((300,), seed=11)
    X = sample_inputs(600, 6, 12)
    data = sorted_data(X)
    for fn, args in ((empirical_loss_and_grad_sorted, (data,)), (population_loss_and_grad, ())):
        for x, y in zip(fn(W, b, *args, compiled=True), fn(W, b, *args, compiled=False)):
            close(x, y)
    # float32 rows: float32 out, equal to float64 on the same (rounded) numbers to ~1e-6
    W32, b32, X32 = W.float(), b.float(), X.float()
    for fn, a32, a64 in ((empirical_loss_and_grad_sorted, (sorted_data(X32),), (sorted_data(X32.double()),)),
                         (population_loss_and_grad, (), ())):
        out = fn(W32, b32, *a32, compiled=True)
        ref = fn(W32.double(), b32.double(), *a64, compiled=False)
        for x, y in zip(out, ref):
            assert x.dtype == torch.float32
            close(x.double(), y, tol=1e-5)


@pytest.mark.parametrize("compiled", PATHS)
def test_flat_layout_equals_wb_layout(compiled):
    W, b = random_params((3, 4), seed=13)
    theta = flatten_params(W, b)
    data = sorted_data(sample_inputs(100, 6, 14))
    for d in (None, data):
        L, g = loss_and_grad_flat(theta, 2, 6, d, compiled=compiled)
        fn = population_loss_and_grad if d is None else empirical_loss_and_grad_sorted
        L1, gW, gb = fn(W, b, compiled=compiled) if d is None else fn(W, b, d, compiled=compiled)
        close(L, L1), close(g, flatten_params(gW, gb))
    # the posterior energy beta n L_n + |theta|^2 / 2 per data set of a stack (SPEC 3)
    stack = stack_sorted([sorted_data(sample_inputs(n, 6, n)) for n in (40, 120, 7)])
    th = flatten_params(*random_params((3, 5), seed=21))
    stack1 = tl.SortedData(stack.mu[:, None], stack.cum1[:, None], stack.cum2[:, None],
                           stack.count[:, None], stack.n[:, None])
    U, gU = loss_and_grad_flat(th, 2, 6, stack1, scale=0.5 * stack.n[:, None], prior=1.0, compiled=compiled)
    energy = lambda x: 0.5 * stack.n[:, None] * empirical_loss_sorted(*tl.unflatten_params(x, 2, 6), stack1) \
        + 0.5 * (x**2).sum(-1)  # noqa: E731
    x = th.clone().requires_grad_(True)
    U0 = energy(x)
    (g0,) = torch.autograd.grad(U0.sum(), x)
    close(U, U0.detach()), close(gU, g0)
    Up, gp = loss_and_grad_flat(th, 2, 6, None, scale=3.0, prior=0.25, compiled=compiled)
    x = th.clone().requires_grad_(True)
    Up0 = 3.0 * population_loss(*tl.unflatten_params(x, 2, 6)) + 0.125 * (x**2).sum(-1)
    (gp0,) = torch.autograd.grad(Up0.sum(), x)
    close(Up, Up0.detach()), close(gp, gp0)


def test_cached_data_follow_in_place_changes():
    """The kernel keeps the numpy views and tables of recent data sets; an in-place change
    of the tensors must be seen (here: every mu halved, a consistent sorted data set)."""
    X = sample_inputs(400, 6, 15)
    data = sorted_data(X)
    W, b = random_params((64,), seed=16)
    empirical_loss_and_grad_sorted(W, b, data, compiled=True)
    empirical_loss_and_grad_sorted(W, b, data, compiled=True)  # cached, with tables
    data.mu.mul_(0.5), data.cum1.mul_(0.5), data.cum2.mul_(0.25)
    L, gW, gb = empirical_loss_and_grad_sorted(W, b, data, compiled=True)
    ref = empirical_loss_and_grad_sorted(W, b, sorted_data(X * 0.5), compiled=False)
    for x, y in zip((L, gW, gb), ref):
        close(x, y)


def test_fallback_switches(monkeypatch):
    W, b = random_params((4,), seed=17)
    data = sorted_data(sample_inputs(50, 6, 18))
    assert tl.use_compiled(None, W) and not tl.use_compiled(False, W)
    assert not tl.use_compiled(None, W.half())  # only float32/float64 go to the kernel
    assert not tl.use_compiled(None, torch.empty(2, 6, device="meta"))  # not on the CPU
    with pytest.raises(ValueError, match="compiled=True"):
        tl.use_compiled(True, torch.empty(2, 6, device="meta"))
    ref = empirical_loss_and_grad_sorted(W, b, data, compiled=False)
    monkeypatch.setattr(tl, "COMPILE", False)
    assert not tl.use_compiled(None, W)
    monkeypatch.setattr(tl, "COMPILE", True)
    monkeypatch.setattr(tl, "_KERNELS", False)  # as if numba failed to import
    assert not tl.use_compiled(None, W)
    with pytest.raises(ValueError, match="numba unavailable"):
        empirical_loss_and_grad_sorted(W, b, data, compiled=True)
    for x, y in zip(empirical_loss_and_grad_sorted(W, b, data), ref):
        assert torch.equal(x, y)


def test_environment_switch_and_import_failure_fall_back():
    """TMS_NO_COMPILE=1 at import, and numba missing, both leave a working eager path."""
    code = ("import sys, torch; {pre}import tms.theory.loss as tl; W = torch.ones(2, 3, dtype=torch.float64); "
            "b = torch.zeros(3, dtype=torch.float64); L, gW, gb = tl.population_loss_and_grad(W, b); "
            "print(tl.use_compiled(None, W), float(L))")
    block = "sys.modules['numba'] = None; "  # makes `import numba` raise ImportError
    for env, pre in (({"TMS_NO_COMPILE": "1"}, ""), ({}, block)):
        out = subprocess.run([sys.executable, "-c", code.format(pre=pre)], capture_output=True, text=True,
                             env={**__import__("os").environ, **env}, check=True).stdout.split()
        assert out[0] == "False"
        ref = float(population_loss(torch.ones(2, 3), torch.zeros(3)))
        assert abs(float(out[1]) - ref) <= 1e-15


@pytest.mark.parametrize("compiled", PATHS)
def test_bad_inputs_raise_value_errors(compiled):
    W, b = random_params((3,), seed=19)
    data = sorted_data(sample_inputs(30, 6, 20))
    Wn = W.clone()
    Wn[1, 0, 2] = float("nan")
    bi = b.clone()
    bi[2, 1] = float("inf")
    for args in ((Wn, b), (W, bi)):
        with pytest.raises(ValueError, match="NaN or inf"):
            empirical_loss_and_grad_sorted(*args, data, compiled=compiled)
        with pytest.raises(ValueError, match="NaN or inf"):
            population_loss_and_grad(*args, compiled=compiled)
    with pytest.raises(ValueError, match="NaN or inf"):
        loss_and_grad_flat(flatten_params(Wn, b), 2, 6, data, compiled=compiled)
    with pytest.raises(ValueError, match="b must have shape"):
        population_loss_and_grad(W, b[..., :5], compiled=compiled)
    with pytest.raises(ValueError, match="do not broadcast"):
        population_loss_and_grad(W, b[:2], compiled=compiled)
    with pytest.raises(ValueError, match="classes"):
        empirical_loss_and_grad_sorted(W[..., :5], b[..., :5], data, compiled=compiled)
    with pytest.raises(ValueError, match="SortedData"):
        empirical_loss_and_grad_sorted(W, b, np.zeros(3), compiled=compiled)
