"""HMC in rounds (tms.samplers.rounds) and the tempering driver: invariance, layout
independence, divergences, ladder placement, round trips."""
import math

import numpy as np
import torch

from tms.core import rng
from tms.samplers import rounds, tempering

D = torch.float64


def _mixture_grad():
    """1-D mixture 0.3 N(-1, 0.5^2) + 0.7 N(1.5, 1): U and dU/dx by hand, and a sampler."""
    w, mus, sds = torch.tensor([0.3, 0.7], dtype=D), torch.tensor([-1.0, 1.5], dtype=D), torch.tensor([0.5, 1.0], dtype=D)

    def eg(th):
        x = th[..., :1]
        logc = torch.log(w) - 0.5 * ((x - mus) / sds) ** 2 - torch.log(sds)  # (..., 2)
        resp = torch.softmax(logc, -1)
        U = -torch.logsumexp(logc, -1)
        return U, (resp * (x - mus) / sds**2).sum(-1, keepdim=True)

    def draw(n, gen):
        k = (torch.rand(n, generator=gen) < 0.7).long()
        return (mus[k] + sds[k] * torch.randn(n, generator=gen, dtype=D)).unsqueeze(-1)

    return eg, draw


def _stationarity(x0, x1):
    """|z| of the change of the first three moments between x0 and x1 (N draws each)."""
    N = x0.shape[0]
    return [abs(float(d.mean())) / (float(d.std()) / math.sqrt(N))
            for d in (x1 - x0, x1**2 - x0**2, x1**3 - x0**3)]


def test_one_sampling_round_leaves_the_target_invariant():
    """Chains started exactly at the target stay at it after one round of several
    trajectories of random (cut) lengths, with frozen waits and a large step; the same
    round with every proposal accepted (no Metropolis) must fail the same check."""
    eg, draw = _mixture_grad()
    N = 60_000
    gen = torch.Generator().manual_seed(0)
    x = draw(N, gen)
    keys = rng.item_keys(3, (N,))
    ch = rounds.evaluate(x, eg)
    eps = torch.full((N,), 1.3, dtype=D)
    lengths = torch.randint(1, 7, (5, N), generator=gen)
    new, info, _, counts = rounds.run_round(ch, keys, torch.zeros(N, dtype=torch.long), 13, eg, step_size=eps,
                                            lengths=lengths)
    acc = info.accepted.sum().item() / info.transitions.sum().item()
    assert 0.3 < acc < 0.95 and info.transitions.float().mean() > 2
    assert torch.equal(counts, info.transitions)
    assert max(_stationarity(x, new.theta)) < 4

    class NoMH(rounds._Round):  # a broken kernel: accepts every proposal
        def finish(self, idx, Ex, gEx, dH, target_accept):
            super().finish(idx, Ex, gEx, torch.full_like(dH, -math.inf), target_accept)

    orig = rounds._Round
    rounds._Round = NoMH
    try:
        bad, _, _, _ = rounds.run_round(ch, keys, torch.zeros(N, dtype=torch.long), 13, eg, step_size=eps,
                                        lengths=lengths)
    finally:
        rounds._Round = orig
    assert max(_stationarity(x, bad.theta)) > 8


def test_a_chain_gets_the_same_numbers_alone_or_batched():
    """Counter-based keys: chains 3 and 7 of a batch of 16 (other chains on other targets)
    reproduce exactly when run alone with their keys."""
    def eg(th):
        scale = 1.0 + th.new_tensor(range(th.shape[0])).unsqueeze(-1)  # chain i: N(0, 1/(1+i))
        return 0.5 * (scale * th * th).sum(-1), scale * th

    th0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    keys = rng.item_keys(11, (16,))
    full = tempering.run_chains(None, th0, keys=keys, energy_grad_fn=eg, n_warmup=12, n_draws=10, max_steps=10)
    for i in (3, 7):
        def eg_i(th, i=i):
            return 0.5 * (1.0 + i) * (th * th).sum(-1), (1.0 + i) * th

        one = tempering.run_chains(None, th0[i:i + 1], keys=keys[i:i + 1], energy_grad_fn=eg_i, n_warmup=12,
                                   n_draws=10, max_steps=10)
        assert torch.equal(one.draws[:, 0], full.draws[:, i])
        assert torch.equal(one.step_size[0], full.step_size[i])


def test_divergences_are_counted_and_never_accepted():
    # U = inf outside the unit ball: a huge fixed step leaves it; those trajectories are
    # counted as divergent, rejected, and the chains stay inside
    def eg(th):
        r2 = (th**2).sum(-1)
        return torch.where(r2 < 1, r2, torch.full_like(r2, math.inf)), 2 * th

    N = 300
    ch = rounds.evaluate(torch.zeros(N, 2, dtype=D), eg)
    new, info, _, _ = rounds.run_round(ch, rng.item_keys(0, (N,)), torch.zeros(N, dtype=torch.long), 12, eg,
                                       step_size=torch.full((N,), 3.0, dtype=D),
                                       lengths=torch.full((1, N), 4, dtype=torch.long))
    assert info.divergences.sum() > 0.8 * info.transitions.sum()
    assert bool(((new.theta**2).sum(-1) < 1).all())
    assert bool((info.accepted + info.divergences <= info.transitions).all())


def test_place_ladder_equalises_the_cumulative_rejection():
    betas = tempering.geometric_ladder(6, 0.01).unsqueeze(0).repeat(2, 1)
    rate = torch.tensor([[0.9, 0.8, 0.3, 0.2, 0.6], [0.5, 0.5, 0.5, 0.5, 0.5]], dtype=D)
    new = tempering.place_ladder(betas, rate)
    assert torch.allclose(new[1], betas[1])  # already equal rates: unchanged
    lam = np.concatenate([[0], np.cumsum(1 - rate[0].numpy())])
    # the cumulative rejection (piecewise linear in log beta) at the new temperatures
    at = np.interp(np.log(new[0].numpy()), np.log(betas[0].numpy()), lam)
    np.testing.assert_allclose(np.diff(at), lam[-1] / 5, rtol=1e-12)
    assert bool((new[0, 1:] > new[0, :-1]).all()) and new[0, 0] == betas[0, 0] and new[0, -1] == 1.0


def test_ladder_placement_evens_out_swap_rates():
    """Two wells (tests/test_hmc): after warm-up placement the neighbour swap rates are
    closer to equal than on the geometric ladder."""
    n = 40.0

    def energy(th):
        x = th[..., 0]
        return n * ((x + 1) ** 2 * (x - 1) ** 4 / 4 + 0.02 * x)

    th0 = torch.zeros(16, 8, 1, dtype=D)
    betas = tempering.geometric_ladder(8, 0.001)
    kw = dict(prior_fn=lambda th: 0.5 * (th**2).sum(-1), betas=betas, n_warmup=120, n_draws=80, generator=2,
              max_steps=8)
    fixed = tempering.run_chains(energy, th0, adapt_ladder=False, **kw)
    placed = tempering.run_chains(energy, th0, **kw)
    spread = lambda r: float(r.max() - r.min())  # noqa: E731
    assert spread(placed.swap_rate) < 0.6 * spread(fixed.swap_rate), (fixed.swap_rate, placed.swap_rate)
    assert placed.round_trips.sum() > fixed.round_trips.sum()


def test_round_trips_match_a_replay_of_the_swaps():
    """E = 0: every proposed swap is accepted, so replicas move deterministically under the
    even-odd scheme; the driver's round-trip count equals a direct replay."""
    K, R = 4, 3
    eg = lambda th: (torch.zeros(th.shape[:-1], dtype=D), torch.zeros_like(th))  # noqa: E731
    out = tempering.run_chains(None, torch.zeros(R, K, 1, dtype=D), energy_grad_fn=eg,
                               prior_grad_fn=lambda th: (0.5 * (th**2).sum(-1), th),
                               betas=tempering.geometric_ladder(K, 0.1), n_warmup=8, n_draws=40, generator=0,
                               max_steps=2, adapt_ladder=False)
    slot = list(range(K))  # replica in each slot
    last, trips = [0] * K, 0
    for it in range(8, 48):  # sampling rounds follow the 8 warm-up rounds
        for k in range(it % 2, K - 1, 2):
            slot[k], slot[k + 1] = slot[k + 1], slot[k]
        if last[slot[-1]] == 1:
            trips += 1
        last[slot[-1]], last[slot[0]] = 2, 1
    assert out.round_trips.tolist() == [trips] * R and trips > 0


def test_tms_phase_mass_agrees_with_the_previous_sampler():
    """c = 6, n = 450 (5- and 6-gon both hold mass): replica exchange in rounds with the
    fused energy, and the previous synchronous sampler (tms.samplers.reference, autograd),
    give 5-family and 6 masses within 3 combined standard errors (across ladders)."""
    from tms.bayes import posterior
    from tms.theory.data import sample_inputs
    from tms.theory.loss import sorted_data, stack_sorted, unflatten_params
    from tms.theory.phases import classify
    from reference import samplers as reference

    c, r, n, R, K = 6, 2, 450, 8, 10
    data = posterior.with_dims(stack_sorted([sorted_data(sample_inputs(n, c, posterior.data_seed(0, n, 0)))]), 2)
    th0 = torch.randn(1, R, K, r * c + c, generator=torch.Generator().manual_seed(4), dtype=D)
    betas = tempering.geometric_ladder(K, 0.01)
    cold = lambda th: th[..., -1, :].clone()  # noqa: E731
    new = tempering.run_chains(None, th0, energy_grad_fn=posterior.energy_grad_fn(data, r, c),
                               prior_grad_fn=posterior.prior_grad, betas=betas, n_warmup=80, n_draws=100,
                               max_steps=32, generator=1, record=cold)
    old = reference.run_chains(posterior.energy_fn(data, r, c), th0, prior_fn=posterior.prior, betas=betas,
                               n_warmup=80, n_draws=100, max_steps=32, seed=2, record=cold)
    fam = {"5": ("5", "5+", "5++", "5,-"), "6": ("6",)}
    for phase, members in fam.items():
        m, se = [], []
        for draws in (new.draws, old["draws"]):
            lab = classify(*unflatten_params(draws[:, 0], r, c))  # (T, R)
            f = np.isin(lab, members).mean(0)
            m.append(f.mean())
            se.append(f.std(ddof=1) / math.sqrt(R))
        assert abs(m[0] - m[1]) < 3 * math.hypot(*se), (phase, m, se)
        assert min(m) > 0.1
