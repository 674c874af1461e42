"""The k-gon zoo (SPEC 2): every family member is a critical point of the exact loss,
its losses, Hessians and learning coefficients are right, and n_c solves its equation."""
import math

import pytest
import torch

from tms import zoo
from tms.loss import batched_grad, flatten_params, population_loss


@pytest.mark.parametrize("c", [4, 5, 6, 7, 8])
def test_full_gradient_vanishes(c):
    # all r*c + c coordinates, autograd on the exact closed form (independent of the solver's
    # restricted 2-D gradient)
    pts = zoo.critical_points(c)
    assert len(pts) > 0
    for q in pts:
        _, gW, gb = batched_grad(population_loss, q.W, q.b)
        g = flatten_params(gW, gb).norm().item()
        assert g <= 1e-8, (c, q.label, g)
        assert q.grad_norm <= 1e-8
        assert q.W.dtype == torch.float64 and q.W.shape == (2, c) and q.b.shape == (c,)
