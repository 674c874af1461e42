"""HMC kernel, adaptation driver and replica exchange against known answers."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from tms.samplers import diagnostics
from tms.samplers import hmc, rounds, tempering

D = torch.float64


def _gauss_energy():
    A = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, -0.5, 0.2]], dtype=D)
    S = A @ A.T
    P = torch.linalg.inv(S)
    m = torch.tensor([1.0, -2.0, 0.5], dtype=D)
    return (lambda th: 0.5 * torch.einsum("...i,ij,...j->...", th - m, P, th - m)), m, S


def test_leapfrog_is_reversible_and_volume_preserving():
    # a non-quadratic, non-separable potential: the integrator is still exactly reversible
    U = lambda th: (th**4).sum(-1) / 4 + torch.sin(th[..., 0] * th[..., 1])  # noqa: E731
    pf = hmc.with_grad(U)
    g = torch.Generator().manual_seed(0)
    th = torch.randn(5, 2, generator=g, dtype=D)
    p = torch.randn(5, 2, generator=g, dtype=D)
    eps = torch.full((5,), 0.1, dtype=D)
    n = torch.tensor([1, 3, 7, 12, 20])
    _, g0 = pf(th)
    th1, p1, _, g1, length, _ = hmc.leapfrog(th, p, g0, eps, n, pf)
    assert length.tolist() == n.tolist()
    th2, p2, _, _, _, _ = hmc.leapfrog(th1, -p1, g1, eps, n, pf)
    assert torch.allclose(th2, th, atol=1e-12) and torch.allclose(-p2, p, atol=1e-12)

    # Jacobian determinant of (theta, p) -> (theta', p') is 1 (exact symplectic map)
    def flow(z):
        t, q = z[:2].unsqueeze(0), z[2:].unsqueeze(0)
        gt = torch.stack([t[:, 0] ** 3 + t[:, 1] * torch.cos(t[:, 0] * t[:, 1]),
                          t[:, 1] ** 3 + t[:, 0] * torch.cos(t[:, 0] * t[:, 1])], -1)

        def pot(x):  # differentiable twin of pf for the Jacobian
            u = (x**4).sum(-1) / 4 + torch.sin(x[..., 0] * x[..., 1])
            gx = torch.stack([x[..., 0] ** 3 + x[..., 1] * torch.cos(x[..., 0] * x[..., 1]),
                              x[..., 1] ** 3 + x[..., 0] * torch.cos(x[..., 0] * x[..., 1])], -1)
            return u, gx

        a, b, _, _, _, _ = hmc.leapfrog(t, q, gt, eps[:1], torch.tensor([5]), pot)
        return torch.cat([a[0], b[0]])

    z0 = torch.cat([th[0], p[0]])
    J = torch.autograd.functional.jacobian(flow, z0)
    assert abs(torch.linalg.det(J).item() - 1.0) < 1e-10


def test_correlated_gaussian_mean_and_covariance():
    E, m, S = _gauss_energy()
    out = tempering.run_chains(E, torch.zeros(32, 3, dtype=D), n_warmup=120, n_draws=150, generator=1)
    x = out.draws.permute(2, 1, 0).numpy()  # (d, chains, draws)
    assert out.divergences.sum() == 0
    assert np.all(diagnostics.split_rhat(x) < 1.05)
    mean, se = diagnostics.mean_and_se(x)
    assert np.all(np.abs(mean - m.numpy()) < 4 * se), (mean, se)
    # second moments: E[(x_i - m_i)(x_j - m_j)] = S_ij, each with its own MCMC standard error
    xc = x - m.numpy()[:, None, None]
    prods = (xc[:, None] * xc[None]).reshape(9, *xc.shape[1:])
    cm, cse = diagnostics.mean_and_se(prods)
    assert np.all(np.abs(cm - S.numpy().ravel()) < 4 * cse), (cm, cse)
    # dual averaging of the acceptance towards 0.8 (averaged step size accepts a bit more)
    assert 0.7 < out.accept_rate.mean().item() < 0.99


def _mixture():
    w, mus, sds = np.array([0.3, 0.7]), np.array([-1.0, 1.5]), np.array([0.5, 1.0])

    def U(th):
        x = th[..., 0]
        comps = [math.log(wi) - 0.5 * ((x - mi) / si) ** 2 - math.log(si) for wi, mi, si in zip(w, mus, sds)]
        return -torch.logsumexp(torch.stack(comps), 0)

    def draw(n, rng):
        k = rng.choice(2, size=n, p=w)
        return rng.normal(mus[k], sds[k])

    return U, draw


def test_one_step_detailed_balance_on_skewed_target():
    """x ~ pi exactly, x' = one kernel step: (x, x') must be exchangeable (detailed balance).

    The antisymmetric statistic h = x x'^2 - x^2 x' has mean 0 under detailed balance; the
    same kernel without its Metropolis correction must fail the same check (the test can fail).
    """
    U, draw = _mixture()
    pf = hmc.with_grad(U)
    N = 100_000
    x = torch.tensor(draw(N, np.random.default_rng(3)), dtype=D).unsqueeze(-1)
    g = torch.Generator().manual_seed(4)
    eps = torch.full((N,), 1.1, dtype=D)
    n = torch.full((N,), 3)
    st = hmc.init(x, pf)
    new, info = hmc.step(st, pf, eps, n, g)
    assert 0.3 < info.accepted.double().mean() < 0.95  # the Metropolis step matters here

    def check(x0, x1):
        a, b = x0[:, 0].numpy(), x1[:, 0].numpy()
        h = a * b**2 - a**2 * b
        d1 = b - a  # stationarity of the mean
        d2 = b**2 - a**2  # and of the second moment
        return [abs(s.mean()) / (s.std() / math.sqrt(N)) for s in (h, d1, d2)]

    assert max(check(x, new.theta)) < 4
    p0 = torch.randn(x.shape, generator=g, dtype=D)
    raw, _, _, _, _, _ = hmc.leapfrog(x, p0, st.grad, eps, n, pf)  # no accept/reject
    assert max(check(x, raw)) > 8


def test_divergences_are_flagged_and_rejected():
    # U = inf outside the unit ball: big steps leave it, are counted and never accepted
    U = lambda th: torch.where((th**2).sum(-1) < 1, (th**2).sum(-1), torch.full_like(th[..., 0], math.inf))  # noqa: E731
    pf = hmc.with_grad(U)
    g = torch.Generator().manual_seed(0)
    st = hmc.init(torch.zeros(200, 2, dtype=D), pf)
    new, info = hmc.step(st, pf, torch.full((200,), 3.0, dtype=D), torch.full((200,), 4), g)
    assert info.divergent.sum() > 150
    assert not bool((info.accepted & info.divergent).any())
    assert bool(((new.theta**2).sum(-1) < 1).all())


def _two_wells(n=40.0, tilt=0.02):
    """exp(-n L(x) - x^2/2), L = (x+1)^2 (x-1)^4 / 4 + tilt x: a quadratic well at -1 and a
    quartic (flatter, 'more singular') well at +1, separated by a barrier of n * O(1)."""

    def L_np(x):
        return (x + 1) ** 2 * (x - 1) ** 4 / 4 + tilt * x

    f = lambda x: np.exp(-n * L_np(x) - x * x / 2)  # noqa: E731
    left = integrate.quad(f, -12, 0, points=[-1])[0]
    right = integrate.quad(f, 0, 12, points=[1])[0]
    energy = lambda th: n * ((th[..., 0] + 1) ** 2 * (th[..., 0] - 1) ** 4 / 4 + tilt * th[..., 0])  # noqa: E731
    prior = lambda th: 0.5 * (th**2).sum(-1)  # noqa: E731
    return energy, prior, left / (left + right)


def test_replica_exchange_gets_well_masses_where_occupancy_fails():
    energy, prior, p_left = _two_wells()
    assert 0.3 < p_left < 0.7  # a case where both wells matter
    R, K = 12, 8
    g = torch.Generator().manual_seed(5)
    start_left = torch.rand(R, 1, 1, generator=g) < 0.85  # unequal spread of starts
    th0 = torch.where(start_left, -1.0, 1.0).to(D).expand(R, K, 1).clone()
    betas = tempering.geometric_ladder(K, 0.01)
    # rounds of 8 leapfrog ticks: this well-conditioned 1-D target U-turns within ~4 steps
    out = tempering.run_chains(energy, th0, prior_fn=prior, betas=betas, n_warmup=100, n_draws=300,
                               generator=6, max_steps=8, record=lambda th: th[..., -1, 0])
    frac = (out.draws < 0).double().mean(0).numpy()  # per replica (R,)
    est, se = frac.mean(), frac.std(ddof=1) / math.sqrt(R)
    assert abs(est - p_left) < 3 * se, (est, se, p_left)
    assert se < 0.05
    assert np.all(out.swap_rate.numpy() > 0.3)

    # plain chains at the target temperature from the same starts never cross the barrier
    plain = tempering.run_chains(energy, th0[:, -1], prior_fn=prior, n_warmup=100, n_draws=100, generator=7,
                                 max_steps=8)
    occ = (plain.draws < 0).double().mean().item()
    assert occ == pytest.approx(start_left.double().mean().item())
    assert abs(occ - p_left) > 5 * se


def test_swap_acceptance_matches_formula():
    # two slots, energies fixed: the pair swaps with probability min(1, exp(dbeta * dE))
    betas = torch.tensor([0.5, 1.0], dtype=D)
    N = 40_000
    theta = torch.tensor([[0.0], [1.0]], dtype=D).expand(N, 2, 1)
    energy = torch.tensor([3.0, 1.0], dtype=D).expand(N, 2)
    chains = rounds.Chains(theta, energy, torch.zeros_like(theta))
    u = torch.rand(N, 1, generator=torch.Generator().manual_seed(0), dtype=D)
    ch, acc, _ = tempering.swap(chains, betas, 0, u)
    p = math.exp(0.5 * (1.0 - 3.0))
    rate = acc.double().mean().item()
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / N)
    assert torch.equal(ch.theta[acc[:, 0], 0, 0], torch.ones(int(acc.sum()), dtype=D))
    assert torch.equal(ch.energy[acc[:, 0], 0], torch.ones(int(acc.sum()), dtype=D))
    _, acc1, _ = tempering.swap(chains, betas, 1, u)  # odd pairs: none exist for K = 2
    assert not bool(acc1.any())


def test_bad_arguments_raise():
    E, _, _ = _gauss_energy()
    with pytest.raises(ValueError, match="betas"):
        tempering.run_chains(E, torch.zeros(4, 3, 3, dtype=D), betas=torch.tensor([1.0, 0.5, 2.0]),
                             n_warmup=10, n_draws=2, generator=0)
    with pytest.raises(ValueError, match="target_accept"):
        tempering.run_chains(E, torch.zeros(4, 3, dtype=D), n_warmup=10, n_draws=2, generator=0, target_accept=1.5)
