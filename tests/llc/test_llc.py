"""The batched TMS LLC estimator: brute-force reference, batch invariance, diagnostics, errors."""
import dataclasses
import math

import pytest
import torch

from tms.theory.data import sample_inputs
from tms.llc.estimator import centre_keys, default_nbeta, estimate_llc, estimate_llc_flat
from tms.theory.loss import empirical_loss, flatten_params, unflatten_params
from tms.theory.model import init_params
from tms.core import rng



def kgon(k, c, zero_bias=-0.05, length=1.0, bias=0.0):
    """Regular k-gon in the first k columns (SPEC 2); zero columns with a negative bias."""
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    W = torch.zeros(2, c, dtype=torch.float64)
    W[0, :k], W[1, :k] = length * ang.cos(), length * ang.sin()
    b = torch.full((c,), zero_bias, dtype=torch.float64)
    b[:k] = bias
    return W, b


def test_default_nbeta():
    assert default_nbeta(1000) == pytest.approx(1000 / math.log(1000), rel=1e-15)
    with pytest.raises(ValueError, match="n must be > 1"):
        default_nbeta(1)


def test_matches_a_brute_force_loop_over_centres_and_chains():
    # Reference: every chain of every centre stepped alone in Python, the direct O(n c) loss,
    # the same counter-based noise; estimate = nbeta * (mean post-burn-in loss - L(w*)).
    p = init_params(2, 4, (3,), sigma=0.8, seed=3)
    X = sample_inputs(200, 4, 4)
    nbeta, eps, gamma, K, T, burn = 30.0, 2e-3, 1.5, 2, 25, 5
    res = estimate_llc(p.W, p.b, X, nbeta=nbeta, eps=eps, gamma=gamma, n_chains=K, n_burnin=burn, n_draws=T - burn, seed=123)
    keys = centre_keys(123, (3,))
    for i in range(3):
        w0 = flatten_params(p.W[i], p.b[i])
        L0 = empirical_loss(p.W[i], p.b[i], X)
        kk = rng.mix32(keys[i] ^ rng.mix32(torch.arange(K) + 0x2545F491))
        for j in range(K):
            w = w0.clone()
            losses = []
            for t in range(T):
                wv = w.clone().requires_grad_(True)
                L = empirical_loss(*unflatten_params(wv, 2, 4), X)
                (g,) = torch.autograd.grad(L, wv)
                losses.append(L.item())
                w = w - eps / 2 * (nbeta * g + gamma * (w - w0)) + math.sqrt(eps) * rng.normal(kk[j], t, 12)
            ref = nbeta * (sum(losses[burn:]) / (T - burn) - L0.item())
            assert res.llc_chains[i, j].item() == pytest.approx(ref, rel=1e-9, abs=1e-9)
            assert torch.allclose(res.loss_trace[i, j], torch.tensor(losses), rtol=1e-10, atol=1e-12)
        assert res.centre_loss[i].item() == pytest.approx(L0.item(), rel=1e-12)
    # random centres are not critical: chains go downhill, the escape rule decides inclusion
    late = res.loss_trace[..., burn:][..., (T - burn) // 2:].mean(-1)
    assert torch.equal(res.escaped, late < res.centre_loss.unsqueeze(-1))
    for i in range(3):
        inc = res.included[i]
        if inc.sum() >= 2:
            assert res.llc[i].item() == pytest.approx(res.llc_chains[i][inc].mean().item(), rel=1e-12)
            se = res.llc_chains[i][inc].std().item() / math.sqrt(inc.sum().item())
            assert res.llc_se[i].item() == pytest.approx(se, rel=1e-10)


@pytest.mark.parametrize("mode", ["full", "minibatch", "population", "per-centre-data"])
def test_batched_equals_alone(mode):
    # 100 centres in one call; centre 37 alone with its own key: identical chains.
    p = init_params(2, 5, (100,), sigma=0.6, seed=8)
    kw = dict(nbeta=50.0, eps=1e-3, gamma=1.0, n_chains=4, n_burnin=5, n_draws=25)
    X = sample_inputs(300, 5, 9)
    if mode == "full":
        args, extra, one = (X,), {}, (X,)
    elif mode == "minibatch":
        args, extra, one = (X,), {"batch_size": 32}, (X,)
    elif mode == "population":
        args, extra, one = (None,), {"loss": "population"}, (None,)
    else:
        Xs = sample_inputs(300, 5, 10, batch_shape=(100,))
        args, extra, one = (Xs,), {}, (Xs[37],)
    res = estimate_llc(p.W, p.b, *args, seed=2024, **kw, **extra)
    alone = estimate_llc(p.W[37], p.b[37], *one, keys=centre_keys(2024, (100,))[37], **kw, **extra)
    assert torch.allclose(res.llc_chains[37], alone.llc_chains, rtol=1e-10, atol=1e-10)
    assert torch.allclose(res.loss_trace[37], alone.loss_trace, rtol=1e-10, atol=1e-12)
    for key in ("llc", "llc_se", "trend", "trend_p", "rhat", "acceptance"):  # and every per-centre diagnostic
        assert torch.allclose(getattr(res, key)[37], getattr(alone, key), rtol=1e-9, equal_nan=True), key
    # and the first centre alone under the plain seed is centre 0 of the batch
    first = estimate_llc(p.W[0], p.b[0], *((args[0][0],) if mode == "per-centre-data" else one),
                         seed=2024, **kw, **extra)
    assert not torch.allclose(first.llc_chains, alone.llc_chains)
    assert res.llc.shape == (100,) and res.loss_trace.shape == (100, 4, 30)


def test_sorted_and_direct_losses_give_the_same_chains():
    # high-sparsity data take the exact O(c^2 log n) sorted path; a copy with one tiny extra
    # nonzero is not high-sparsity and takes the direct O(n c) sum: same chains.
    W, b = kgon(5, 5, length=1.05, bias=-0.05)
    X = sample_inputs(400, 5, 11)
    res = estimate_llc(W, b, X, nbeta=60.0, eps=1e-3, gamma=1.0, n_chains=3, n_burnin=0, n_draws=20, seed=1)
    direct = [empirical_loss(W, b, X).item()]
    assert res.centre_loss.item() == pytest.approx(direct[0], rel=1e-12)
    Xd = X.clone()
    j = int((X[0] == 0).nonzero()[0])
    Xd[0, j] = 1e-300  # two nonzeros in row 0: forces the direct path, changes L by ~1e-300
    res_d = estimate_llc(W, b, Xd, nbeta=60.0, eps=1e-3, gamma=1.0, n_chains=3, n_burnin=0, n_draws=20, seed=1)
    assert torch.allclose(res.loss_trace, res_d.loss_trace, rtol=1e-9, atol=1e-12)


def test_too_large_step_is_flagged_and_inflates():
    # 4-gon at c = 4 (zero loss), full batch n = 1000, nbeta = n / log n (SPEC 4 settings).
    W, b = kgon(4, 4)
    X = sample_inputs(1000, 4, 0)
    kw = dict(nbeta=default_nbeta(1000), gamma=1.0, n_chains=8, n_burnin=1000, n_draws=2000, seed=0)
    good = estimate_llc(W, b, X, eps=1e-3, **kw)
    bad = estimate_llc(W, b, X, eps=1e-2, **kw)
    assert not good.flag_step.item() and good.trustworthy.item()
    assert bad.flag_step.item() and not bad.trustworthy.item()
    assert bad.acceptance.item() < good.acceptance.item()
    gap = bad.llc.item() - good.llc.item()
    assert gap > 4 * math.hypot(bad.llc_se.item(), good.llc_se.item())  # inflated, not noise
    assert "STEP-TOO-LARGE" in bad.summary()
    # minibatch chains: judged by full-batch MALA probes every PROBE_EVERY steps
    good_mb = estimate_llc(W, b, X, eps=1e-3, batch_size=100, **kw)
    bad_mb = estimate_llc(W, b, X, eps=1e-2, batch_size=100, **kw)
    assert not good_mb.flag_step.item() and bad_mb.flag_step.item()
    assert abs(good_mb.acceptance.item() - good.acceptance.item()) < 0.03


def test_centre_above_a_lower_loss_phase_is_flagged():
    # 4-gon at c = 6 with the two zero columns at bias -0.05: raising such a bias above 0 lowers
    # the loss (4 -> 4+), so chains leave w*'s level and sit below L(w*).
    W, b = kgon(4, 6)
    res = estimate_llc(W, b, loss="population", nbeta=default_nbeta(1e4), eps=1e-4, gamma=1.0,
                       n_chains=8, n_burnin=0, n_draws=600, seed=0)
    assert res.flag_escape.item() and res.n_escaped.item() >= 4
    assert res.frac_escaped.item() == res.n_escaped.item() / 8
    assert res.frac_below.item() > 0.3
    # escaped chains are not averaged in: the mean is over included chains only
    inc = res.included[0] if res.included.dim() > 1 else res.included
    assert torch.allclose(res.llc, res.llc_chains[inc].mean())
    assert (res.llc_chains[res.escaped] < res.llc_chains[inc].min()).all()
    assert "ESCAPED" in res.summary()


def test_local_minimum_behind_a_high_barrier_is_not_flagged():
    # control for the escape rule: tilted double well L = (w^2 - 1)^2 + 0.3 w, centred at the
    # upper (local) minimum; at nbeta = 200 the barrier is ~100 nats, no chain crosses.
    f = lambda th: (th[..., 0] ** 2 - 1) ** 2 + 0.3 * th[..., 0]  # noqa: E731
    w = torch.tensor([1.0], dtype=torch.float64)
    for _ in range(50):  # Newton on f'(w) = 4 w^3 - 4 w + 0.3
        w = w - (4 * w**3 - 4 * w + 0.3) / (12 * w**2 - 4)
    res = estimate_llc_flat(f, w, nbeta=200.0, eps=5e-5, gamma=1.0, n_chains=8, n_burnin=200, n_draws=800, seed=0)
    assert not res.flag_escape.item() and res.frac_below.item() == 0.0 and res.trustworthy.item()
    # regular: lambda = 1/2 minus the localisation (exact Gaussian: nbeta h / (2 (nbeta h + gamma)))
    h = 12 * w.item() ** 2 - 4
    assert abs(res.llc.item() - 200 * h / (2 * (200 * h + 1))) < 4 * res.llc_se.item() + 0.03


def test_nonfinite_chains_are_excluded_and_counted():
    # a loss that is NaN for w > 0.8: the chains that get there are excluded, never averaged in
    f = lambda th: torch.where(th[..., 0] > 0.8, torch.full_like(th[..., 0], float("nan")), th[..., 0] ** 2)  # noqa
    res = estimate_llc_flat(f, torch.zeros(1, dtype=torch.float64), nbeta=2.0, eps=1e-2, gamma=1.0,
                            n_chains=16, n_burnin=0, n_draws=300, seed=0)
    n_bad = res.n_nonfinite.item()
    assert 0 < n_bad < 16 and res.flag_nonfinite.item() and "NON-FINITE" in res.summary()
    ok = ~res.nonfinite
    assert torch.isfinite(res.llc) and torch.allclose(res.llc, res.llc_chains[ok].mean())
    assert torch.isnan(res.llc_chains[res.nonfinite]).all()
    # a diverging step size on TMS: every chain blows up, the estimate is NaN, not a number
    W, b = kgon(4, 4)
    res = estimate_llc(W, b, loss="population", nbeta=1e6, eps=1.0, gamma=1.0, n_chains=3, n_burnin=0, n_draws=30,
                       seed=0)
    assert res.n_nonfinite.item() == 3 and math.isnan(res.llc.item())


def test_input_errors():
    W, b = kgon(4, 4)
    X = sample_inputs(50, 4, 0)
    kw = dict(nbeta=10.0, eps=1e-3, gamma=1.0, n_chains=2, n_burnin=0, n_draws=10, seed=0)
    with pytest.raises(ValueError, match="loss must be"):
        estimate_llc(W, b, X, loss="train", **kw)
    with pytest.raises(ValueError, match="X must be None"):
        estimate_llc(W, b, X, loss="population", **kw)
    with pytest.raises(ValueError, match="needs a data set"):
        estimate_llc(W, b, **kw)
    with pytest.raises(ValueError, match="c = 4"):
        estimate_llc(W, b, sample_inputs(50, 5, 0), **kw)
    with pytest.raises(ValueError, match="nbeta"):
        estimate_llc(W, b, X, **{**kw, "nbeta": 0.0})
    with pytest.raises(ValueError, match="n_draws"):
        estimate_llc(W, b, X, **{**kw, "n_draws": 4})
    with pytest.raises(ValueError, match="keys must be an int64"):
        estimate_llc(W, b, X, keys=torch.zeros(1), **kw)
    with pytest.raises(ValueError, match="batch_size"):
        estimate_llc(W, b, X, batch_size=0, **kw)
    with pytest.raises(ValueError, match="W contains NaN"):
        estimate_llc(W * float("nan"), b, X, **kw)


def test_save_and_load_round_trip(tmp_path):
    W, b = kgon(5, 6)
    res = estimate_llc(torch.stack([W, W]), torch.stack([b, b]), loss="population", nbeta=50.0, eps=1e-3, gamma=1.0,
                       n_chains=3, n_burnin=4, n_draws=16, seed=1)
    res.save(tmp_path / "r", label="five")
    back = type(res).load(tmp_path / "r")
    assert back.settings == res.settings and len(res.ARRAYS) == 14
    for name in res.ARRAYS:  # every tensor field, exactly (NaN where NaN)
        assert torch.equal(getattr(back, name), getattr(res, name)) or torch.allclose(
            getattr(back, name), getattr(res, name), equal_nan=True, rtol=0, atol=0), name
    assert set(res.ARRAYS) == {f.name for f in dataclasses.fields(res) if f.name != "settings"}
    assert back.summary() == res.summary() and bool((back.trustworthy == res.trustworthy).all())
