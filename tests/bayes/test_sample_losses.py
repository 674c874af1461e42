"""The compiled per-sample losses against the batched forward pass, a direct loop, and alone vs
batched vs threads."""
import numpy as np
import torch

from tms.bayes.feature_response import sample_losses as forward_losses
from tms.bayes.sample_losses import sample_losses
from tms.samplers import compiled
from tms.theory.data import sample_inputs
from tms.theory.zoo import kgon_params


def _draws(D: int, c: int = 6, r: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    W0, b0 = kgon_params(5, c, 0, 0) if (r, c) == (2, 6) else (torch.zeros(r, c, dtype=torch.float64), torch.zeros(c))
    W = W0 + 0.3 * torch.randn(D, r, c, generator=g, dtype=torch.float64)
    b = b0 + 0.2 * torch.randn(D, c, generator=g, dtype=torch.float64)
    return W, b


def test_equals_the_forward_pass_and_a_direct_loop():
    W, b = _draws(300)
    X = sample_inputs(500, 6, 4)
    got = sample_losses(W, b, X)
    ref = forward_losses(W, b, X).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)
    # the loss by hand at a few (draw, input): ||x - ReLU(W^T W x + b)||^2
    for p, k in [(0, 0), (17, 123), (299, 499)]:
        x = X[k]
        f = torch.relu(W[p].T @ (W[p] @ x) + b[p])
        assert abs(got[p, k] - float(((x - f) ** 2).sum())) <= 1e-13 * max(1.0, abs(got[p, k]))
    assert (got > 0).all()


def test_other_shapes_and_dead_outputs():
    for r, c in [(3, 7), (2, 4)]:
        W, b = _draws(40, c, r, seed=r)
        b[:5] = -5.0  # every output dead: the loss is |x|^2 = mu^2
        X = sample_inputs(64, c, 9)
        got = sample_losses(W, b, X)
        np.testing.assert_allclose(got, forward_losses(W, b, X).numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(got[:5], np.broadcast_to((X**2).sum(-1).numpy(), (5, 64)))


def test_same_bits_alone_batched_and_on_one_or_two_threads():
    W, b = _draws(512)
    X = sample_inputs(200, 6, 1)  # 512 x 200 draw-samples: the parallel kernel
    with compiled.threads(1):
        one = sample_losses(W, b, X)
    with compiled.threads(2):
        two = sample_losses(W, b, X)
    alone = np.concatenate([sample_losses(W[p:p + 1], b[p:p + 1], X) for p in (0, 300, 511)])
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(alone, one[[0, 300, 511]])
