"""The generic LLC front end (tms.llc.modules) on real torch models, against devinterp's algorithm
written out by hand: one deep-copied model per chain, a Python loop over chains and steps,
plain autograd, the update w <- w - (eps/2)(nbeta grad L(w) + gamma (w - w*)) + N(0, eps),
the same counter-based noise (rng.normal of the chain's key at step t), and devinterp's
result keys (llc/mean, llc/std with ddof 1, llc/means, loss/trace of the kept draws)."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tms.llc.estimator import chain_keys
from tms.llc.modules import estimate_llc_model
from reference.rrr import aoyagi_watanabe
from tms.core import rng


def devinterp_by_hand(model, loss_fn, x, y, *, nbeta, eps, gamma, n_chains, n_burnin, n_draws, seed,
                      batch_size=None):
    """devinterp's SGLD LLC estimator, one chain at a time (module docstring)."""
    base = copy.deepcopy(model).eval()
    centre = [p.detach().clone() for p in base.parameters()]
    with torch.no_grad():
        init_loss = loss_fn(base(x), y).item()
    keys, n = chain_keys(seed, None, (), n_chains, "cpu"), x.shape[0]
    means, traces = [], []
    for j in range(n_chains):
        chain = copy.deepcopy(base)
        trace = []
        for t in range(n_burnin + n_draws):
            rows = slice(None)
            if batch_size is not None:  # rows with replacement from the chain's stream 2
                rows = (rng.uniform(keys[j], t, rng.MINIBATCH, batch_size) * n).ceil().long().clamp(1, n) - 1
            chain.zero_grad()
            loss = loss_fn(chain(x[rows]), y[rows])
            loss.backward()
            if t >= n_burnin:
                trace.append(loss.item())
            d = sum(p.numel() for p in chain.parameters())
            noise = rng.normal(keys[j], t, d, dtype=centre[0].dtype).split([p.numel() for p in chain.parameters()])
            with torch.no_grad():
                for p, p0, z in zip(chain.parameters(), centre, noise):
                    p -= eps / 2 * (nbeta * p.grad + gamma * (p - p0))
                    p += math.sqrt(eps) * z.reshape(p.shape)
        traces.append(trace)
        means.append(nbeta * (np.mean(trace) - init_loss))
    means = np.array(means)
    return {"llc/mean": means.mean(), "llc/std": means.std(ddof=1), "llc/means": means,
            "loss/trace": np.array(traces)}


def assert_same(ours: dict, ref: dict):
    for key in ("llc/mean", "llc/std", "llc/means", "loss/trace"):
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-9, atol=1e-11, err_msg=key)


# ---- reduced-rank regression y = B A x -----------------------------------------------------


def test_aoyagi_watanabe_formula_special_cases():
    # independent checks of the formula: regular cases and normal crossings
    assert aoyagi_watanabe(1, 1, 1, 1) == 0.5  # y = b a x, true ba != 0: one effective parameter
    assert aoyagi_watanabe(1, 1, 1, 0) == 0.5  # K = a^2 b^2: lambda 1/2
    assert aoyagi_watanabe(2, 2, 1, 0) == 1.0  # K = |a|^2 |b|^2, a, b in R^2
    assert aoyagi_watanabe(2, 2, 1, 1) == 1.5  # rank-1 2x2 matrices: 3-dim manifold, regular
    assert aoyagi_watanabe(1, 4, 1, 0) == 0.5  # K = a^2 |b|^2: poles -1/2, -2


def rrr(M, N, H, r, n, seed):
    """A two-layer linear model (H hidden units) at the most singular true point of a rank-r
    map (the redundant units' in- and out-weights zero) and noise-free data y = B0 A0 x."""
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(M, H, bias=False), torch.nn.Linear(H, N, bias=False)).double()
    a0 = torch.randn(r, M, generator=g, dtype=torch.float64)
    b0 = torch.randn(N, r, generator=g, dtype=torch.float64)
    with torch.no_grad():
        model[0].weight.zero_()
        model[1].weight.zero_()
        model[0].weight[:r] = a0 / a0.norm()
        model[1].weight[:, :r] = b0 / b0.norm()
    x = torch.randn(n, M, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
    return model, x, y


def mse(pred, y):
    return ((pred - y) ** 2).sum(-1).mean()


@pytest.mark.parametrize("batch_size", [None, 16])
def test_rrr_equals_devinterp_by_hand(batch_size):
    model, x, y = rrr(3, 2, 2, 1, 64, 0)
    kw = dict(nbeta=50.0, eps=1e-3, gamma=1.0, n_chains=3, n_burnin=5, n_draws=20, seed=11, batch_size=batch_size)
    res = estimate_llc_model(model, mse, (x, y), **kw)
    assert_same(res.as_devinterp(), devinterp_by_hand(model, mse, x, y, **kw))


def test_rrr_near_aoyagi_watanabe():
    # (M, N, H, r) = (3, 2, 2, 1): lambda = 2.5 < regular 5; empirical L_n on n = 1000 noise-free
    # rows has the same singularity (L_n = tr((BA - C0) S (BA - C0)^T), S positive definite).
    M, N, H, r = 3, 2, 2, 1
    lam = aoyagi_watanabe(M, N, H, r)
    assert lam == 2.5
    model, x, y = rrr(M, N, H, r, 1000, 5)
    res = estimate_llc_model(model, mse, (x, y), nbeta=1e3, eps=2.5e-5, gamma=1.0, n_chains=16, n_burnin=1600,
                             n_draws=6400, seed=5)
    m, se = res.llc.item(), res.llc_se.item()
    print(res.summary())
    assert not res.flag_step.item() and res.n_included.item() == 16, res.summary()
    assert abs(m - lam) <= 4 * se, (m, se, lam)


# ---- a token classifier with cross-entropy on integer labels --------------------------------


class TokenClassifier(torch.nn.Module):
    """Embedding -> dropout -> batch norm -> linear -> logits times a fixed buffer; integer tokens in."""

    def __init__(self, vocab=7, length=3, width=4, classes=3):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.drop = torch.nn.Dropout(0.5)
        self.norm = torch.nn.BatchNorm1d(length * width)
        self.head = torch.nn.Linear(length * width, classes)
        self.register_buffer("temperature", torch.tensor(0.7))

    def forward(self, tokens):
        h = self.norm(self.drop(self.embed(tokens).flatten(-2)))
        return self.head(h) / self.temperature


def classifier(seed=0, n=48):
    torch.manual_seed(seed)
    model = TokenClassifier().double()
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 7, (n, 3), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    with torch.no_grad():  # non-trivial running statistics, so eval mode differs from train mode
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
    model.eval()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):  # near a minimum of L_n (in eval mode), so that no chain escapes
        opt.zero_grad()
        F.cross_entropy(model(tokens), labels).backward()
        opt.step()
    return model.train(), tokens, labels


@pytest.mark.parametrize("batch_size", [None, 12])
def test_classifier_cross_entropy_equals_devinterp_by_hand(batch_size):
    model, tokens, labels = classifier()
    model.train()  # the estimator switches to eval mode for the run and restores this after
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(nbeta=20.0, eps=1e-3, gamma=1.0, n_chains=3, n_burnin=4, n_draws=16, seed=3, batch_size=batch_size)
    res = estimate_llc_model(model, F.cross_entropy, (tokens, labels), **kw)
    assert res.included.all(), res.summary()
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # untouched, buffers too
    assert_same(res.as_devinterp(), devinterp_by_hand(model, F.cross_entropy, tokens, labels, **kw))
    assert res.as_devinterp()["loss/trace"].shape == (3, 16) and res.settings["eval_mode"]


def test_train_mode_that_vmap_cannot_batch_is_one_clear_error():
    model, tokens, labels = classifier()
    kw = dict(nbeta=20.0, eps=1e-3, gamma=1.0, n_chains=2, n_burnin=0, n_draws=8, seed=0)
    with pytest.raises(ValueError, match="cannot run batched over chains.*eval_mode=True"):
        estimate_llc_model(model, F.cross_entropy, (tokens, labels), eval_mode=False, **kw)
    # dropout alone is vmap-safe in train mode (its draws come from torch's generator)
    model.norm = torch.nn.Identity()
    res = estimate_llc_model(model, F.cross_entropy, (tokens, labels), eval_mode=False, **kw)
    assert torch.isfinite(res.llc_chains).all() and not res.settings["eval_mode"]


def test_dtype_and_device_mismatches_are_one_value_error():
    model, x, y = rrr(3, 2, 2, 1, 20, 0)
    kw = dict(nbeta=20.0, eps=1e-3, gamma=1.0, n_chains=2, n_burnin=0, n_draws=8, seed=0)
    with pytest.raises(ValueError, match=r"share one dtype and device .*inputs are torch.float32.*targets are "
                                         r"torch.float32"):
        estimate_llc_model(model, mse, (x.float(), y.float()), **kw)
    tokens_model, tokens, labels = classifier()
    with pytest.raises(ValueError, match="parameter head.weight is torch.float32"):
        tokens_model.head.float()
        estimate_llc_model(tokens_model, F.cross_entropy, (tokens, labels), **kw)
    with pytest.raises(ValueError, match="inputs are torch.float64 on meta; targets are torch.float64 on meta"):
        estimate_llc_model(model, mse, (x.to("meta"), y.to("meta")), **kw)  # a device other than the model's
    with pytest.raises(ValueError, match="inputs contains NaN"):
        estimate_llc_model(model, mse, (x * float("nan"), y), **kw)
    with pytest.raises(ValueError, match="share n >= 1 rows"):
        estimate_llc_model(model, mse, (x, y[:5]), **kw)
    with pytest.raises(ValueError, match="centre must name exactly"):
        estimate_llc_model(model, mse, (x, y), centre={"0.weight": model[0].weight}, **kw)
