"""The closed-form Hessian of the population loss (tms.theory.hessian) against two independent
references: autograd twice through the closed form, and central differences of the analytic
gradient."""
import pytest
import torch

from tms.theory.hessian import population_hessian
from tms.theory.loss import (batched_hessian, flatten_params, is_smooth, population_loss, population_loss_and_grad,
                             unflatten_params)


def _points(n, r, c, seed):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(n, r, c, generator=gen, dtype=torch.float64)
    b = 0.5 * torch.randn(n, c, generator=gen, dtype=torch.float64)
    return W, b


@pytest.mark.parametrize("r,c", [(1, 1), (2, 3), (2, 6), (3, 7), (4, 5)])
def test_equals_autograd_twice_through_the_closed_form(r, c):
    W, b = _points(300, r, c, seed=r * 10 + c)
    assert bool(is_smooth(W, b).all())
    G = W.mT @ W
    t = -b / torch.diagonal(G, dim1=-2, dim2=-1)
    assert int(((t >= 0) & (t <= 1)).sum()) > 20  # the own-threshold boundary term is exercised
    H = population_hessian(W, b)
    ref = batched_hessian(population_loss, W, b)
    assert H.shape == (300, r * c + c, r * c + c)
    torch.testing.assert_close(H, ref, rtol=0, atol=1e-12)


def _gradient(theta, r, c):
    _, gW, gb = population_loss_and_grad(*unflatten_params(theta, r, c), compiled=False)
    return flatten_params(gW, gb)


def test_equals_central_differences_of_the_analytic_gradient():
    r, c = 3, 5
    W, b = _points(40, r, c, seed=7)
    theta = flatten_params(W, b)
    d = theta.shape[-1]
    h = 1e-6
    cols = []
    for k in range(d):  # one coordinate at a time: the reference is a plain loop
        e = torch.zeros(d, dtype=theta.dtype)
        e[k] = h
        cols.append((_gradient(theta + e, r, c) - _gradient(theta - e, r, c)) / (2 * h))
    fd = torch.stack(cols, -1)
    H = population_hessian(W, b)
    torch.testing.assert_close(H, fd, rtol=0, atol=1e-7)
    torch.testing.assert_close(H, H.mT, rtol=0, atol=1e-13)


def test_one_sided_where_only_c1_as_autograd():
    # own threshold exactly at mu = 1 (b_0 = -|w_0|^2), a zero column with bias 0, a dead column
    W = torch.tensor([[[1.0, 0.3, 0.0], [0.0, 0.8, 0.0]]], dtype=torch.float64)
    b = torch.tensor([[-1.0, 0.0, -1.0]], dtype=torch.float64)
    W2 = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 0.0, 0.5]]], dtype=torch.float64)
    b2 = torch.tensor([[0.2, 0.0, -0.1]], dtype=torch.float64)
    for Wi, bi in ((W, b), (W2, b2)):
        assert not bool(is_smooth(Wi, bi).all())
        torch.testing.assert_close(population_hessian(Wi, bi), batched_hessian(population_loss, Wi, bi),
                                   rtol=0, atol=1e-14)


def test_batch_shapes_and_bad_input():
    W, b = _points(6, 2, 4, seed=1)
    H = population_hessian(W.reshape(2, 3, 2, 4), b.reshape(2, 3, 4))
    torch.testing.assert_close(H.reshape(6, 12, 12), population_hessian(W, b), rtol=0, atol=0)
    torch.testing.assert_close(population_hessian(W[0], b[0]), population_hessian(W, b)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="batch shape"):
        population_hessian(W, b[0])
