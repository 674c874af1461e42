"""The SGLD kernel (tms/samplers/sgld.py) against hand-written references."""
import math

import pytest
import torch
from scipy import stats

from tms.theory.loss import flatten_params, population_loss, unflatten_params
from tms.theory.model import init_params
from tms.core import rng
from tms.llc.estimator import tms_grad_fn
from tms.samplers import sgld



def quad_grad(h):
    """L = (h/2)|theta|^2, batched."""
    return lambda th: (0.5 * h * (th * th).sum(-1), h * th)


def test_one_step_matches_the_spec_formula():
    # SPEC 5: w <- w - (eps/2)(nbeta grad L + gamma (w - w*)) + N(0, eps I), written out by hand.
    p = init_params(2, 5, (3, 4), sigma=0.7, seed=1)
    c = init_params(2, 5, (3, 1), sigma=0.7, seed=2)
    st = sgld.init(flatten_params(p.W, p.b), centre=flatten_params(c.W, c.b), generator=7)
    nbeta, eps, gamma = 37.0, 1e-3, 2.5
    new, info = sgld.step(st, tms_grad_fn(population_loss, 2, 5), nbeta=nbeta, eps=eps, gamma=gamma)
    W = p.W.clone().requires_grad_(True)
    b = p.b.clone().requires_grad_(True)
    L = population_loss(W, b)
    gW, gb = torch.autograd.grad(L.sum(), (W, b))
    noise = rng.normal(st.key, 0, 15)
    theta = flatten_params(p.W, p.b)
    ref = theta - eps / 2 * (nbeta * flatten_params(gW, gb) + gamma * (theta - flatten_params(c.W, c.b))) \
        + math.sqrt(eps) * noise
    assert torch.allclose(new.theta, ref, rtol=0, atol=1e-13)
    assert torch.allclose(info.loss, L.detach(), rtol=0, atol=1e-15)
    assert torch.equal(unflatten_params(new.theta, 2, 5)[0], new.theta[..., :10].reshape(3, 4, 2, 5))
    assert torch.isnan(info.accept_prob).all() and info.alive.all()


def test_mala_acceptance_matches_scipy_densities():
    # Acceptance of the move prev -> theta from independent Gaussian log-densities.
    h, nbeta, gamma, eps = 3.0, 5.0, 0.7, 0.05
    centre = torch.tensor([[0.3, -0.2, 0.1]])
    st = sgld.init(torch.tensor([[1.0, 0.5, -0.4]]), centre=centre, generator=3)
    g = quad_grad(h)
    st1, _ = sgld.step(st, g, nbeta=nbeta, eps=eps, gamma=gamma)
    _, info = sgld.step(st1, g, nbeta=nbeta, eps=eps, gamma=gamma)
    x0, x1 = st.theta[0].numpy(), st1.theta[0].numpy()
    cn = centre[0].numpy()

    def U(x):
        return nbeta * 0.5 * h * (x @ x) + 0.5 * gamma * ((x - cn) @ (x - cn))

    def gradU(x):
        return nbeta * h * x + gamma * (x - cn)

    logq = lambda to, frm: stats.multivariate_normal(frm - eps / 2 * gradU(frm), eps).logpdf(to)  # noqa: E731
    log_a = U(x0) - U(x1) + logq(x0, x1) - logq(x1, x0)
    assert info.accept_prob.item() == pytest.approx(min(1.0, math.exp(log_a)), rel=1e-10)


def test_noise_is_standard_normal_and_layout_invariant():
    keys = rng.item_keys(11, (50, 40))
    z = rng.normal(keys, 0, 25).flatten().numpy()
    # 50,000 draws: KS against N(0, 1); p-value far from the 1e-3 level for a correct generator.
    assert stats.kstest(z, "norm").pvalue > 1e-3
    a = rng.normal(keys, 5, 25).flatten()
    b = rng.normal(keys, 6, 25).flatten()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < 4 / math.sqrt(a.numel())
    # the numbers of one item depend only on its key and step, never on the batch around it
    one = rng.normal(keys[7, 3], 5, 25)
    assert torch.equal(one, rng.normal(keys, 5, 25)[7, 3])
    block = rng.normal(keys, torch.arange(3, 9), 25)  # a block of steps in one call
    assert torch.equal(block[..., 2, :], rng.normal(keys, 5, 25))
    assert len(torch.unique(keys)) == keys.numel()


def test_brute_force_loop_reference():
    # Chains stepped one by one with plain tensors equal the batched kernel over 50 steps.
    h, nbeta, gamma, eps, T = 2.0, 10.0, 1.0, 1e-2, 50
    theta0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    st = sgld.init(theta0, generator=5)
    for _ in range(T):
        st, _ = sgld.step(st, quad_grad(h), nbeta=nbeta, eps=eps, gamma=gamma)
    keys = rng.item_keys(5, (4,))
    for i in range(4):
        w = theta0[i].clone()
        for t in range(T):
            grad = nbeta * h * w + gamma * (w - theta0[i])
            w = w - eps / 2 * grad + math.sqrt(eps) * rng.normal(keys[i], t, 3)
        assert torch.allclose(st.theta[i], w, rtol=0, atol=1e-12)


def test_stationary_variance_of_ula_on_a_gaussian():
    # SGLD on U = (p/2) w^2 has stationary variance 1/(p (1 - eps p / 4)) (exact for ULA).
    p, eps = 1.0, 0.4
    st = sgld.init(torch.zeros(2000, 1, dtype=torch.float64), generator=9)
    g = lambda th: (0.5 * (th * th).sum(-1), th)  # noqa: E731
    xs = []
    for t in range(300):
        st, _ = sgld.step(st, g, nbeta=p, eps=eps, gamma=0.0)
        if t >= 100 and t % 10 == 0:  # relaxation time 1/(eps p/2) = 5 steps
            xs.append(st.theta[:, 0])
    x = torch.cat(xs)
    var, want = x.var().item(), 1 / (p * (1 - eps * p / 4))
    se = want * math.sqrt(2 / x.numel())  # draws 10 steps apart: nearly independent
    assert abs(var - want) < 5 * se


def test_dead_chains_are_frozen_and_reported():
    # a loss that blows up for one item: that item dies, the others go on untouched
    def g(th):
        L = 0.5 * (th * th).sum(-1)
        L = torch.where(th[..., 0] > 5, torch.full_like(L, float("inf")), L)
        return L, th

    theta0 = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    st = sgld.init(theta0, centre=torch.zeros(2, 2), generator=1)
    st, info = sgld.step(st, g, nbeta=1.0, eps=0.01, gamma=0.0)
    assert info.alive.tolist() == [True, False]
    assert math.isnan(info.loss[1].item()) and torch.equal(st.theta[1], torch.zeros(2))
    st, info = sgld.step(st, g, nbeta=1.0, eps=0.01, gamma=0.0)
    assert info.alive.tolist() == [True, False] and math.isnan(info.loss[1].item())


def test_errors():
    st = sgld.init(torch.zeros(2, 3), generator=0)
    with pytest.raises(ValueError, match="eps"):
        sgld.step(st, quad_grad(1.0), nbeta=1.0, eps=0.0, gamma=1.0)
    with pytest.raises(ValueError, match="nbeta"):
        sgld.step(st, quad_grad(1.0), nbeta=-1.0, eps=0.1, gamma=1.0)
    with pytest.raises(ValueError, match="generator"):
        sgld.init(torch.zeros(2, 3), generator="seed")
    with pytest.raises(ValueError, match="theta"):
        sgld.init(torch.tensor([[float("nan")]]), generator=0)


def test_mala_probe_matches_scipy_densities():
    h, nbeta, gamma, eps = 2.0, 4.0, 0.5, 0.08
    theta = torch.tensor([[0.7, -0.3], [0.1, 0.4]])
    centre = torch.tensor([[0.2, 0.0], [0.0, 0.1]])
    keys = rng.item_keys(3, (2,))
    acc = sgld.mala_probe(theta, centre, quad_grad(h), keys, 17, nbeta=nbeta, eps=eps, gamma=gamma)
    for i in range(2):
        x0, cn = theta[i].numpy(), centre[i].numpy()
        U = lambda x: nbeta * 0.5 * h * (x @ x) + 0.5 * gamma * ((x - cn) @ (x - cn))  # noqa: E731
        gU = lambda x: nbeta * h * x + gamma * (x - cn)  # noqa: E731
        x1 = x0 - eps / 2 * gU(x0) + math.sqrt(eps) * rng.normal(keys[i], 17, 2, stream=3).numpy()
        logq = lambda to, frm: stats.multivariate_normal(frm - eps / 2 * gU(frm), eps).logpdf(to)  # noqa: E731
        want = min(1.0, math.exp(U(x0) - U(x1) + logq(x0, x1) - logq(x1, x0)))
        assert acc[i].item() == pytest.approx(want, rel=1e-10)
    # the probe's noise is its own stream, not the SGLD noise of the same step
    assert not torch.allclose(rng.normal(keys, 17, 2, stream=3), rng.normal(keys, 17, 2))
