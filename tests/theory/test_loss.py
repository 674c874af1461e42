"""The exact loss (SPEC 1) against independent references."""
import math

import numpy as np
import pytest
import torch

from reference.quadrature import population_loss_quad
from tms.theory.data import sample_inputs
from tms.theory.loss import (
    batched_grad,
    batched_hessian,
    empirical_loss,
    empirical_loss_sorted,
    flatten_params,
    population_loss,
    sorted_data,
    stack_sorted,
    unflatten_params,
)


def _random_points(n_points, seed):
    """Random (W, b) for c in 2..8, r in 1..3, with every edge case of the issue mixed in."""
    rng = np.random.default_rng(seed)
    pts = []
    for k in range(n_points):
        c = int(rng.integers(2, 9))
        r = int(rng.integers(1, 4))
        W = rng.normal(0, 0.8, (r, c))
        b = rng.normal(0, 0.5, c)
        case = k % 8
        if case == 1:  # a zero column
            W[:, rng.integers(c)] = 0.0
        elif case == 2 and r >= 2:  # g_ij = 0: two orthogonal columns
            W[:, 0] = [1.0, 0.0] + [0.0] * (r - 2)
            W[:, 1] = [0.0, 0.7] + [0.0] * (r - 2)
        elif case == 3:  # b_j = 0
            b[rng.integers(c)] = 0.0
        elif case == 4:  # b_j exactly at -g_ij: threshold at mu = 1
            G = W.T @ W
            i, j = rng.integers(c), rng.integers(c)
            b[j] = -G[i, j]
        elif case == 5:  # all outputs dead
            W[:] = 0.0
            b = -np.abs(b) - 0.1
        elif case == 6:  # all biases positive
            b = np.abs(b) + 0.01
        elif case == 7:  # mixed: zero column, and zero bias on it
            j = rng.integers(c)
            W[:, j] = 0.0
            b[j] = 0.0
        pts.append((W, b))
    return pts


def test_closed_form_matches_quadrature():
    pts = _random_points(240, seed=0)
    worst = 0.0
    for W, b in pts:
        ref = population_loss_quad(W, b)
        got = population_loss(torch.tensor(W), torch.tensor(b)).item()
        err = abs(got - ref) / max(abs(ref), 1e-300)
        worst = max(worst, err)
        assert err <= 1e-10, (W, b, got, ref)
    assert worst <= 1e-10


def test_closed_form_edge_values():
    # A dead output i (W_i = 0, b_i <= 0) contributes E[x_i^2] = (1/c)(1/3), derived here:
    # x_i = mu with probability 1/c, E[mu^2] = 1/3. All outputs dead: L = c * 1/(3c) = 1/3.
    for c in (2, 5, 8):
        W = torch.zeros(2, c)
        b = -torch.ones(c)
        assert population_loss(W, b).item() == pytest.approx(1 / 3, rel=1e-15)
    # Zero-loss 4-gon at c = 4: columns at right angles, length 1, b = 0 (SPEC 2).
    W = torch.tensor([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
    assert population_loss(W, torch.zeros(4)).item() == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_matches_monte_carlo(seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(2, 6, generator=g)
    b = 0.3 * torch.randn(6, generator=g)
    X = sample_inputs(200_000, 6, seed + 100)
    from tms.theory.model import forward

    per_sample = ((X - forward(W, b, X)) ** 2).sum(-1)
    mean, se = per_sample.mean().item(), per_sample.std().item() / math.sqrt(len(per_sample))
    assert abs(population_loss(W, b).item() - mean) <= 4 * se


def test_sorted_empirical_equals_direct_sum():
    g = torch.Generator().manual_seed(3)
    W = torch.randn(40, 2, 6, generator=g)
    b = 0.4 * torch.randn(40, 6, generator=g)
    b[:5] = 0.0
    W[5:10, :, 2] = 0.0
    for n in (1, 7, 1000):
        X = sample_inputs(n, 6, n)
        direct = empirical_loss(W, b, X)
        fast = empirical_loss_sorted(W, b, sorted_data(X))
        torch.testing.assert_close(fast, direct, rtol=1e-12, atol=1e-14)
        _, gW, gb = batched_grad(lambda W_, b_: empirical_loss(W_, b_, X), W, b)
        _, fW, fb = batched_grad(lambda W_, b_: empirical_loss_sorted(W_, b_, sorted_data(X)), W, b)
        torch.testing.assert_close(fW, gW, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(fb, gb, rtol=1e-10, atol=1e-12)


def test_sorted_empirical_batched_data_sets_of_different_sizes():
    g = torch.Generator().manual_seed(4)
    W = torch.randn(3, 5, 2, 6, generator=g)  # (n-grid, chains, r, c)
    b = 0.3 * torch.randn(3, 5, 6, generator=g)
    Xs = [sample_inputs(n, 6, 10 + n) for n in (50, 120, 333)]
    data = stack_sorted([sorted_data(X) for X in Xs])
    data = data._replace(**{k: getattr(data, k).unsqueeze(1) for k in ("mu", "cum1", "cum2", "count", "n")})
    got = empirical_loss_sorted(W, b, data)
    ref = torch.stack([empirical_loss(W[k], b[k], X) for k, X in enumerate(Xs)])
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)


def test_autograd_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(5)
    W = torch.randn(8, 2, 6, generator=g)
    b = 0.3 * torch.randn(8, 6, generator=g)
    _, gW, gb = batched_grad(population_loss, W, b)
    theta = flatten_params(W, b)
    grad = flatten_params(gW, gb)
    h = 1e-6
    eye = torch.eye(theta.shape[-1])
    fd = torch.stack(
        [
            (population_loss(*unflatten_params(theta + h * e, 2, 6)) - population_loss(*unflatten_params(theta - h * e, 2, 6)))
            / (2 * h)
            for e in eye
        ],
        -1,
    )
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


def test_hessian_matches_finite_differences_of_gradient():
    g = torch.Generator().manual_seed(6)
    W = torch.randn(4, 2, 5, generator=g)
    b = 0.3 * torch.randn(4, 5, generator=g)
    H = batched_hessian(population_loss, W, b)
    theta = flatten_params(W, b)
    h = 1e-6

    def grad_at(th):
        _, gW, gb = batched_grad(population_loss, *unflatten_params(th, 2, 5))
        return flatten_params(gW, gb)

    eye = torch.eye(theta.shape[-1])
    fd = torch.stack([(grad_at(theta + h * e) - grad_at(theta - h * e)) / (2 * h) for e in eye], -2)
    torch.testing.assert_close(H, fd, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(H, H.transpose(-1, -2), rtol=0, atol=1e-12)


def test_invariance_under_rotation_reflection_permutation():
    g = torch.Generator().manual_seed(7)
    W = torch.randn(100, 2, 6, generator=g)
    b = 0.3 * torch.randn(100, 6, generator=g)
    angle = 2 * math.pi * torch.rand(100, generator=g)
    R = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], -2)
    R[::2, 1] *= -1  # reflections for half of them
    perm = torch.stack([torch.randperm(6, generator=g) for _ in range(100)])
    W2 = torch.einsum("nij,njc->nic", R, W).gather(-1, perm.unsqueeze(1).expand(-1, 2, -1))
    b2 = b.gather(-1, perm)
    torch.testing.assert_close(population_loss(W2, b2), population_loss(W, b), rtol=1e-12, atol=1e-14)
    X = sample_inputs(500, 6, 8)
    # permuting features of the data set too leaves L_n unchanged
    Xp = X[:, perm[0]]
    torch.testing.assert_close(
        empirical_loss_sorted(W2[0], b2[0], sorted_data(Xp)), empirical_loss_sorted(W[0], b[0], sorted_data(X)),
        rtol=1e-12, atol=1e-14,
    )


def test_batched_call_equals_loop_bit_for_bit():
    g = torch.Generator().manual_seed(9)
    for shape, r, c in [((17,), 2, 6), ((3, 4), 3, 5), ((64,), 1, 8)]:
        W = torch.randn(shape + (r, c), generator=g)
        b = 0.3 * torch.randn(shape + (c,), generator=g)
        batched = population_loss(W, b).reshape(-1)
        looped = torch.stack([population_loss(w, bb) for w, bb in zip(W.reshape(-1, r, c), b.reshape(-1, c))])
        assert torch.equal(batched, looped)
        data = sorted_data(sample_inputs(200, c, 1))
        batched = empirical_loss_sorted(W, b, data).reshape(-1)
        looped = torch.stack([empirical_loss_sorted(w, bb, data) for w, bb in zip(W.reshape(-1, r, c), b.reshape(-1, c))])
        assert torch.equal(batched, looped)


def test_float32_is_accepted_and_close():
    g = torch.Generator().manual_seed(10)
    W = torch.randn(2, 6, generator=g)
    b = 0.3 * torch.randn(6, generator=g)
    L32 = population_loss(W.float(), b.float())
    assert L32.dtype == torch.float32
    assert L32.item() == pytest.approx(population_loss(W, b).item(), rel=1e-5)
