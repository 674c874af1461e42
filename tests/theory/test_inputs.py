"""Model, data and the error messages for bad input (the lab's conventions, docs/ARCHITECTURE.md)."""
import pytest
import torch

from tms.theory.data import sample_inputs, sample_inputs_sparse
from tms.theory.loss import empirical_loss, empirical_loss_sorted, population_loss, sorted_data
from tms.theory.model import forward, init_params


def test_forward_matches_explicit_formula_and_broadcasts():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 2, 6, generator=g)
    b = torch.randn(4, 6, generator=g)
    X = torch.rand(10, 6, generator=g)
    out = forward(W, b, X)
    assert out.shape == (4, 10, 6)
    for k in range(4):
        ref = torch.relu(X @ (W[k].T @ W[k]).T + b[k])
        torch.testing.assert_close(out[k], ref, rtol=1e-14, atol=1e-14)


def test_sample_inputs_distribution_and_seed():
    X = sample_inputs(60_000, 6, 0)
    assert ((X != 0).sum(-1) <= 1).all()
    mu = X.sum(-1)
    cls = X.argmax(-1)
    assert (mu >= 0).all() and (mu <= 1).all()
    # class frequencies 1/6 each within 4 standard errors; E[mu] = 1/2, E[mu^2] = 1/3
    freq = torch.bincount(cls, minlength=6).double() / len(cls)
    se = (1 / 6 * 5 / 6 / len(cls)) ** 0.5
    assert ((freq - 1 / 6).abs() <= 4 * se).all()
    assert abs(mu.mean().item() - 0.5) <= 4 * (1 / 12 / len(mu)) ** 0.5
    assert torch.equal(sample_inputs(100, 6, 3), sample_inputs(100, 6, torch.Generator().manual_seed(3)))
    assert not torch.equal(sample_inputs(100, 6, 3), sample_inputs(100, 6, 4))


def test_sparse_inputs_activation_rate():
    X = sample_inputs_sparse(20_000, 5, 0.9, 1)
    rate = (X > 0).double().mean().item()
    assert abs(rate - 0.1) <= 4 * (0.1 * 0.9 / X.numel()) ** 0.5


def test_init_params_seeded():
    p1 = init_params(2, 6, (3,), sigma=0.5, seed=7)
    p2 = init_params(2, 6, (3,), sigma=0.5, seed=7)
    assert torch.equal(p1.W, p2.W) and (p1.b == 0).all()
    assert p1.W.shape == (3, 2, 6)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: population_loss(torch.zeros(2, 6), torch.zeros(5)), "b must have shape"),
        (lambda: population_loss(torch.zeros(3, 2, 6), torch.zeros(4, 6)), "do not broadcast"),
        (lambda: population_loss(torch.zeros(2, 0), torch.zeros(0)), "r, c >= 1"),
        (lambda: population_loss(torch.full((2, 6), float("nan")), torch.zeros(6)), "W contains NaN or inf"),
        (lambda: population_loss(torch.zeros(2, 6), torch.tensor([0, 0, 0, 0, 0, float("inf")])), "b contains NaN or inf"),
        (lambda: population_loss([[1.0]], torch.zeros(1)), "W must be a torch.Tensor"),
        (lambda: population_loss(torch.zeros(6), torch.zeros(6)), "W must have at least 2 dims"),
        (lambda: population_loss(torch.zeros(2, 6), torch.zeros(6, dtype=torch.float32)), "share a dtype"),
        (lambda: empirical_loss(torch.zeros(2, 6), torch.zeros(6), torch.zeros(0, 6)), "n >= 1"),
        (lambda: empirical_loss(torch.zeros(2, 6), torch.zeros(6), torch.zeros(5, 4)), "x must have shape"),
        (lambda: sample_inputs(0, 6, 0), "n must be an integer >= 1"),
        (lambda: sample_inputs(10, 0, 0), "c must be an integer >= 1"),
        (lambda: sample_inputs(10, 6, "seed"), "seed must be"),
        (lambda: sorted_data(torch.ones(4, 3)), "high-sparsity"),
        (lambda: empirical_loss_sorted(torch.zeros(2, 6), torch.zeros(6), torch.zeros(5, 6)), "SortedData"),
        (lambda: init_params(2, 6, sigma=-1.0), "sigma"),
    ],
)
def test_bad_input_raises_named_value_error(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()
