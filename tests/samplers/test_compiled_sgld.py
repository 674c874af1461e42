"""The compiled SGLD steps (tms.samplers.compiled_sgld) against the torch step (tms.samplers.sgld),
the reference: the same keys give the same numbers to rounding, whatever the chunking, the
thread count or the other chains in the batch."""
import pytest
import torch

from tms.core import checks
from tms.llc.estimator import chain_keys, estimate_llc
from tms.samplers import compiled, compiled_sgld, sgld
from tms.theory import loss as L
from tms.theory.data import sample_inputs

R, C = 2, 6


def _grad_fn(data):
    def grad_fn(theta):
        return L.loss_and_grad_flat(theta, R, C, data)

    grad_fn.kernel = compiled.RowEnergy(*L.row_energy(R, C, data, 1.0))
    return grad_fn


def _data(P: int, n: int = 400):
    X = torch.stack([sample_inputs(n, C, torch.Generator().manual_seed(10 + i), dtype=torch.float64)
                     for i in range(P)])
    data = L.sorted_data(X)
    return type(data)(*(v.unsqueeze(1) for v in data))  # (P, 1, ...) against the chains


def _start(P: int, K: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    W = 0.8 * torch.randn(R, C, generator=g, dtype=torch.float64)
    b = -0.1 * torch.rand(C, generator=g, dtype=torch.float64)
    theta = L.flatten_params(W, b).expand(P, K, R * C + C).clone()
    theta += 0.01 * torch.randn(theta.shape, generator=g, dtype=torch.float64)
    return sgld.init(theta, centre=theta, generator=chain_keys(seed, None, (P,), K, "cpu"))


def _torch_run(state, grad_fn, nb, eps, gamma, T, keep_from, thin):
    losses, accepts, kept = [], [], []
    for t in range(T):
        state, info = sgld.step(state, grad_fn, nbeta=nb, eps=eps, gamma=gamma)
        losses.append(info.loss)
        accepts.append(info.accept_prob)
        if t >= keep_from and (t - keep_from) % thin == thin - 1:
            kept.append(state.theta)
    return state, torch.stack(losses, -1), torch.stack(accepts, -1), torch.stack(kept, -2)


def _compiled_run(state, grad_fn, nb, eps, gamma, chunks, keep_from, thin):
    out = []
    for n in chunks:
        state, *arrays = compiled_sgld.run(state, grad_fn, nbeta=nb, eps=eps, gamma=gamma, n_steps=n,
                                           keep_from=keep_from, thin=thin)
        out.append(arrays)
    return state, *(torch.cat([o[i] for o in out], -1 if i < 2 else -2) for i in range(3))


def _same(a, b, tol):
    assert torch.equal(a.isnan(), b.isnan())
    assert (a.nan_to_num() - b.nan_to_num()).abs().max().item() <= tol


@pytest.mark.parametrize("population", [True, False])
def test_compiled_steps_equal_the_torch_steps(population):
    """300 steps from the same state and keys, the compiled ones in three chunks: losses, MALA
    acceptances, kept points and the final state agree to rounding; alive masks exactly."""
    P, K = 3, 4
    grad_fn = _grad_fn(None if population else _data(P))
    nb = torch.tensor([50.0, 100.0, 150.0]).unsqueeze(-1)
    s0 = _start(P, K)
    ref = _torch_run(s0, grad_fn, nb, 1e-3, 1.0, 300, 100, 10)
    got = _compiled_run(s0, grad_fn, nb, 1e-3, 1.0, (1, 150, 149), 100, 10)
    assert got[0].t == ref[0].t == 300 and torch.equal(got[0].alive, ref[0].alive)
    _same(got[0].theta, ref[0].theta, 1e-12)
    for a, b in zip(got[1:], ref[1:]):
        assert a.shape == b.shape
        _same(a, b, 1e-12)
    for a, b in zip(got[0].prev, ref[0].prev):  # the state goes on either way
        _same(a, b, 1e-10)


def test_dead_chains_match_the_torch_step():
    """A step too large for some chains: they go non-finite, are parked at their centre and
    report NaN, on both paths alike."""
    P, K = 2, 8
    grad_fn = _grad_fn(None)
    s0 = _start(P, K, seed=3)
    s0 = s0._replace(theta=s0.theta * torch.linspace(1, 40, K).unsqueeze(-1))
    ref = _torch_run(s0, grad_fn, 1e4, 0.5, 1.0, 20, 0, 1)
    got = _compiled_run(s0, grad_fn, 1e4, 0.5, 1.0, (7, 13), 0, 1)
    assert not ref[0].alive.all() and torch.equal(got[0].alive, ref[0].alive)
    for a, b in zip(got[1:], ref[1:]):
        _same(a, b, 1e-9 * max(1.0, b.nan_to_num().abs().max().item()))


def test_threads_and_batch_layout_do_not_change_a_chain():
    """Bit-identical: 1 and 2 threads over 512 chains; a centre's chains alone or in the batch."""
    P, K = 64, 8
    data = _data(P, 200)
    grad_fn = _grad_fn(data)
    s0 = _start(P, K, seed=1)
    runs = []
    for k in (1, 2):
        with checks.kernel_threads_set(k):
            runs.append(compiled_sgld.run(s0, grad_fn, nbeta=80.0, eps=1e-3, gamma=1.0, n_steps=60))
    for a, b in zip(runs[0][1:], runs[1][1:]):
        assert torch.equal(a.nan_to_num(), b.nan_to_num())
    one = type(data)(*(v[5:6] for v in data))
    alone_state = sgld.SGLDState(*(x[5:6] if isinstance(x, torch.Tensor) else x for x in s0))
    alone = compiled_sgld.run(alone_state, _grad_fn(one), nbeta=80.0, eps=1e-3, gamma=1.0, n_steps=60)
    assert torch.equal(alone[1], runs[0][1][5:6]) and torch.equal(alone[0].theta, runs[0][0].theta[5:6])


def test_estimate_llc_is_the_same_on_both_paths():
    """estimate_llc (empirical, per-centre data) compiled and on the torch step: the same
    estimate to rounding, chain by chain."""
    X = torch.stack([sample_inputs(300, C, torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(2)])
    g = torch.Generator().manual_seed(4)
    W, b = 0.9 * torch.randn(2, R, C, generator=g, dtype=torch.float64), torch.zeros(2, C, dtype=torch.float64)
    kw = dict(nbeta=60.0, eps=1e-3, gamma=1.0, n_chains=3, n_burnin=50, n_draws=150, seed=7)
    fast = estimate_llc(W, b, X, **kw)
    with compiled.use(False):
        slow = estimate_llc(W, b, X, **kw)
    _same(fast.llc_chains, slow.llc_chains, 1e-9)
    _same(fast.loss_trace, slow.loss_trace, 1e-12)
    _same(fast.llc, slow.llc, 1e-9)
