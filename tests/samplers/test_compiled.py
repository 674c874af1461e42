"""The compiled HMC round (tms.samplers.compiled) against the torch round it replaces, and
against posteriors known independently (the prior exactly; a two-well TMS posterior by
quadrature)."""
import math

import numpy as np
import pytest
import torch
from numba import njit

from tms.bayes.posterior import energy_grad_fn, ladder_target, plain_target, prior_grad, with_dims
from tms.core import jit, rng
from tms.samplers import compiled, rounds, tempering
from tms.theory.data import sample_inputs
from tms.theory import loss
from tms.theory.loss import empirical_loss, sorted_data, stack_sorted

pytestmark = pytest.mark.skipif(loss._kernels() is None, reason="numba not available")
D = torch.float64


def _ladder_run(use_compiled: bool, threads: int, R: int = 32):
    """A c = 4 posterior on two data sets, R replica ladders of 4 temperatures (256 chains: the
    parallel kernel): 12 warm-up rounds (dual averaging, U-turns, ladder placement), 20 draws."""
    r, c, K = 2, 4, 4
    data = stack_sorted([sorted_data(sample_inputs(n, c, n).double()) for n in (60, 200)])
    target = ladder_target(data, r, c, 1.0, 12)
    theta0 = 0.7 * rng.normal(rng.item_keys(5, (2, R, K)), 0, r * c + c, D, rng.START)
    keys = rng.item_keys(9, (2, R, K))
    betas = torch.tensor([0.1, 0.3, 0.6, 1.0], dtype=D)
    assert compiled.applies(target.energy_grad, target.prior_grad, theta0)
    with compiled.use(use_compiled), compiled.threads(threads):
        state = tempering.init(theta0, keys, target, betas)
        state, winfo = tempering.warmup(state, target, 12)
        state, out = tempering.sample(state, target, 20)
    return state, winfo, out


def test_the_compiled_run_ignores_the_thread_count_and_keeps_the_torch_runs_decisions():
    """32 rounds through the whole driver (warm-up, swaps, ladder placement, sampling): one
    thread and two give the same bits; against the torch run every decision is the same
    (trajectory counts, acceptances, divergences, swaps, replica order). Positions are not
    compared here: rounding differences grow along ~400 leapfrog steps (the next test
    compares every round from the same state)."""
    (s_ref, w_ref, o_ref), (s1, w1, o1), (s2, _, o2) = _ladder_run(False, 1), _ladder_run(True, 1), _ladder_run(True, 2)
    for a, b in [(s1.chains.theta, s2.chains.theta), (o1.draws, o2.draws), (o1.accept_sum, o2.accept_sum),
                 (s1.step_size, s2.step_size), (s1.counts, s2.counts), (s1.replica, s2.replica), (s1.betas, s2.betas)]:
        assert torch.equal(a, b)
    assert torch.equal(s_ref.counts, s1.counts) and torch.equal(s_ref.replica, s1.replica)
    assert torch.equal(o_ref.transitions, o1.transitions) and torch.equal(o_ref.divergences, o1.divergences)
    assert torch.equal(w_ref.divergences, w1.divergences) and torch.equal(o_ref.swap_acc, o1.swap_acc)
    assert torch.equal(o_ref.round_trips, o1.round_trips)
    assert o1.transitions.sum() > 256 * 20 and 0 < o1.accept_rate.mean() < 1  # the run did move


def _same_round(a, b, tol: float) -> None:
    """Two run_round results: floats to rounding, integers exactly."""
    for x, y in zip(a[0], b[0]):
        torch.testing.assert_close(y, x, rtol=tol, atol=tol)
    for name, x, y in zip(a[1]._fields, a[1], b[1]):
        assert torch.equal(x, y) if x.dtype == torch.long else torch.allclose(x, y, rtol=tol, atol=tol), name
    assert torch.equal(a[3], b[3])
    for x, y in zip(a[2] or (), b[2] or ()):
        torch.testing.assert_close(y, x, rtol=tol, atol=tol)


def test_every_round_of_a_run_equals_the_torch_round_from_the_same_state(monkeypatch):
    """Along the driver's 32 rounds (the torch run's states: warm-up with dual averaging and
    U-turns, placed ladders, sampling lengths), the compiled round from each state gives the
    torch round's chains, step-size learners, counters and statistics to rounding."""
    original, compared = rounds.run_round, []

    def both(*args, **kw):
        with compiled.use(False):
            ref = original(*args, **kw)
        with compiled.use(True):
            out = original(*args, **kw)
        _same_round(ref, out, 1e-10)
        compared.append(kw.get("uturn", False))
        return ref

    monkeypatch.setattr(rounds, "run_round", both)
    _ladder_run(False, 2)
    assert len(compared) == 32 and sum(compared) == 12


def test_one_compiled_round_equals_the_torch_round_field_by_field():
    """Warm-up (dual averaging, U-turns) and sampling (recorded lengths) rounds, tempered, with
    a divergence threshold low enough that some trajectories diverge."""
    r, c, G, K = 2, 6, 3, 5
    data = stack_sorted([sorted_data(sample_inputs(100 * (g + 2), c, g).double()) for g in range(G)])
    eg = energy_grad_fn(with_dims(data, 1), r, c, 1.0)
    theta = 0.5 * rng.normal(rng.item_keys(1, (G, K)), 0, r * c + c, D, rng.START)
    ch, keys = rounds.evaluate(theta, eg), rng.item_keys(3, (G, K))
    counts = torch.arange(G * K).reshape(G, K)
    beta, eps = torch.linspace(0.2, 1.0, K, dtype=D).expand(G, K), torch.full((G, K), 0.05, dtype=D)
    lengths = torch.randint(1, 12, (7, G, K), generator=torch.Generator().manual_seed(0))
    cases = [dict(uturn=True, da=rounds.da_init(eps)), dict(step_size=eps, lengths=lengths),
             dict(step_size=4 * eps, lengths=lengths, divergence=5.0)]
    diverged = 0
    for kw in cases:
        with compiled.use(False):
            a = rounds.run_round(ch, keys, counts, 16, eg, prior_grad, beta, **kw)
        with compiled.use(True):
            b = rounds.run_round(ch, keys, counts, 16, eg, prior_grad, beta, **kw)
        _same_round(a, b, 1e-12)
        diverged += int(a[1].divergences.sum())
    assert diverged > 0  # the divergence bookkeeping was exercised


def test_the_compiled_round_is_used_only_where_it_applies():
    r, c = 2, 4
    data = stack_sorted([sorted_data(sample_inputs(50, c, 0).double())])
    eg = energy_grad_fn(with_dims(data, 1), r, c, 1.0)
    th = torch.zeros(1, 3, r * c + c, dtype=D)
    assert compiled.applies(eg, prior_grad, th) and compiled.applies(eg, None, th)
    assert not compiled.applies(eg, lambda t: (t.sum(-1), t), th)  # another prior
    assert not compiled.applies(eg, prior_grad, th.float())  # float32: the torch path
    assert not compiled.applies(energy_grad_fn(with_dims(data, 1), r, c, 1.0, reweight=(0, 0.1)), prior_grad, th)


def _chain_means(draws: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """draws (T, C, k) of C independent chains -> (mean (k,), its s.e. (k,) from the spread of
    the chains' own means)."""
    m = draws.mean(0).numpy()
    return m.mean(0), m.std(0, ddof=1) / math.sqrt(m.shape[0])


def test_beta_zero_chains_sample_the_prior_exactly():
    """At beta = 0 the target is the N(0, I) prior: mean 0 and second moment 1 in every
    coordinate, within 4.5 standard errors (of 2 x 18 checks)."""
    r, c, C = 2, 6, 512
    data = stack_sorted([sorted_data(sample_inputs(300, c, 1).double())])
    target = ladder_target(data, r, c, 1.0, 16)
    theta0 = 3.0 + torch.zeros(1, C, 1, r * c + c, dtype=D)  # far from the target: warm-up must move
    keys = rng.item_keys(4, (1, C, 1))
    state = tempering.init(theta0, keys, target, torch.zeros(1, dtype=D))
    state, _ = tempering.warmup(state, target, 40)
    state, out = tempering.sample(state, target, 150)
    x = out.draws[:, 0, :, 0]  # (T, C, d)
    for values, want in ((x, 0.0), (x**2, 1.0)):
        mean, se = _chain_means(values)
        assert np.all(np.abs(mean - want) < 4.5 * se), (mean, se)


def _quadrature(X: torch.Tensor, grid: int = 401, half: float = 4.0):
    """Posterior exp(-n L_n(w, b)) N(0, I) of r = c = 1 on data X by a grid of grid^2 points
    on [-half, half]^2: E[w > 0], E[w^2], E[b], E[L_n]."""
    w = torch.linspace(-half, half, grid, dtype=D)
    W, B = torch.meshgrid(w, w, indexing="ij")
    L = empirical_loss(W.reshape(-1, 1, 1), B.reshape(-1, 1), X).reshape(grid, grid)
    logp = -X.shape[0] * L - 0.5 * (W**2 + B**2)
    p = torch.exp(logp - logp.max())
    p = p / p.sum()
    return np.array([float((p * (W > 0)).sum()), float((p * W**2).sum()), float((p * B).sum()), float((p * L).sum())])


def test_a_two_well_tms_posterior_matches_quadrature():
    """r = c = 1, n = 40: the posterior is symmetric in w (two wells, w and -w); plain chains
    from prior draws on the compiled path give the quadrature's mass of w > 0, E[w^2], E[b]
    and E[L_n] within 4.5 standard errors."""
    X = sample_inputs(40, 1, 7).double()
    want = _quadrature(X)
    data = stack_sorted([sorted_data(X)])
    target = plain_target(data, 1, 1, 1.0, 16)
    C = 256
    theta0 = rng.normal(rng.item_keys(2, (1, C)), 0, 2, D, rng.START)
    assert compiled.applies(target.energy_grad, target.prior_grad, theta0)
    state = tempering.init(theta0, rng.item_keys(6, (1, C)), target)
    state, _ = tempering.warmup(state, target, 40)
    state, out = tempering.sample(state, target, 150)
    w, b = out.draws[:, 0, :, 0], out.draws[:, 0, :, 1]
    Ln = empirical_loss(w.reshape(-1, 1, 1), b.reshape(-1, 1), X).reshape(w.shape)
    got = [_chain_means(v.unsqueeze(-1)) for v in ((w > 0).to(D), w**2, b, Ln)]
    for (mean, se), q, name in zip(got, want, ("P(w > 0)", "E[w^2]", "E[b]", "E[L_n]")):
        assert abs(mean[0] - q) < 4.5 * se[0], (name, mean[0], q, se[0])


# ---- a generic energy on the compiled path: the 1-D mixture of tests/samplers/test_rounds.py ----

@njit(cache=True)
def _mixture_row(x, p, dset, scale, ge, data, work):
    """0.3 N(-1, 0.5^2) + 0.7 N(1.5, 1): U = -log density (up to a constant), dU/dx to ge[p]."""
    v = x[p, 0]
    a = math.log(0.3) - 0.5 * ((v + 1.0) / 0.5) ** 2 - math.log(0.5)
    b = math.log(0.7) - 0.5 * (v - 1.5) ** 2
    m = max(a, b)
    s = math.exp(a - m) + math.exp(b - m)
    ge[p, 0] = (math.exp(a - m) * (v + 1.0) / 0.25 + math.exp(b - m) * (v - 1.5)) / s
    return -(m + math.log(s))


@njit(cache=True)
def _no_scratch():
    return np.empty(0)


jit.stable(_mixture_row, "test")  # the round compiled on them is cached under a stable name
jit.stable(_no_scratch, "test")


def _mixture():
    """(torch energy_grad marked with its compiled row form, exact sampler of the target)."""
    from test_rounds import _mixture_grad  # this folder (pytest puts it on sys.path)
    eg, draw = _mixture_grad()

    def bind(B):
        N = math.prod(B)
        return np.zeros(N, np.int64), np.ones(N), (np.empty(0),)

    def energy_grad(theta):
        return eg(theta)

    energy_grad.kernel = compiled.RowEnergy(_mixture_row, _no_scratch, bind)
    return energy_grad, draw


def test_a_generic_energy_runs_compiled_equal_to_torch_and_keeps_its_target():
    """The two-well mixture, chains started exactly at the target: the compiled sampling round
    (60,000 chains, parallel) equals the torch round to rounding and leaves the first three
    moments where they were (|z| < 4), with several cut trajectories per chain and frozen waits."""
    from test_rounds import _stationarity
    eg, draw = _mixture()
    N = 60_000
    gen = torch.Generator().manual_seed(0)
    x = draw(N, gen)
    keys, counts = rng.item_keys(3, (N,)), torch.zeros(N, dtype=torch.long)
    ch = rounds.evaluate(x, eg)
    eps, lengths = torch.full((N,), 1.3, dtype=D), torch.randint(1, 7, (5, N), generator=gen)
    assert compiled.applies(eg, None, x)
    with compiled.use(False):
        ref = rounds.run_round(ch, keys, counts, 13, eg, step_size=eps, lengths=lengths)
    out = rounds.run_round(ch, keys, counts, 13, eg, step_size=eps, lengths=lengths)
    _same_round(ref, out, 1e-7)  # the two energies are different code (torch's logsumexp): 1e-16 grown by 13 ticks
    info = out[1]
    assert 0.3 < info.accepted.sum().item() / info.transitions.sum().item() < 0.95
    assert info.transitions.float().mean() > 2
    assert max(_stationarity(x, out[0].theta)) < 4


def test_a_chains_round_is_the_same_in_any_group():
    """Chains of a data set run in lockstep groups with one vectorised energy call a tick
    (tms.theory.loss_lanes): a chain's round gives the same bits in a full group of 32, in a
    group of 7 and alone (the one-row kernel), warm-up and sampling rounds alike."""
    r, c, G, K = 2, 6, 2, 45
    data = stack_sorted([sorted_data(sample_inputs(n, c, n).double()) for n in (150, 900)])
    eg = energy_grad_fn(with_dims(data, 1), r, c, 1.0)
    theta = 0.5 * rng.normal(rng.item_keys(1, (G, K)), 0, r * c + c, D, rng.START)
    keys, counts = rng.item_keys(3, (G, K)), torch.arange(G * K).reshape(G, K)
    beta, eps = torch.linspace(0.2, 1.0, K, dtype=D).expand(G, K), torch.full((G, K), 0.05, dtype=D)
    lengths = torch.randint(1, 12, (7, G, K), generator=torch.Generator().manual_seed(0))
    for kw in [dict(uturn=True, da=rounds.da_init(eps)), dict(step_size=eps, lengths=lengths)]:
        def run(sl):
            ch = rounds.evaluate(theta[:, sl], eg)
            part = {k: (tuple(t[..., sl] for t in v) if k == "da" else v if k == "uturn" else v[..., sl])
                    for k, v in kw.items()}
            return rounds.run_round(ch, keys[:, sl], counts[:, sl], 16, eg, prior_grad, beta[:, sl], **part)

        whole = run(slice(None))
        for sl in (slice(3, 10), slice(33, 34), slice(5, 6)):
            chains, stats, da, cnt = whole
            cut = (tuple(t[:, sl] for t in chains), type(stats)(*(t[:, sl] for t in stats)),
                   None if da is None else tuple(t[:, sl] for t in da), cnt[:, sl])
            _same_round(cut, run(sl), 0.0)  # every field, to the bit
