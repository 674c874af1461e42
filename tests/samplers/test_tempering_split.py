"""Warm-up and sampling split over calls (what tms.bayes.sweep checkpoints between) give the
numbers of one call to the last bit: warmup_start / warmup_rounds / warmup_end against
warmup, and sample continuing an earlier call's `totals` against one long sample, with
thinning and a ladder (swaps, round trips, ladder placement)."""
import torch

from tms.core import rng
from tms.samplers import tempering


def _target():
    """A two-well energy in 2-D per data set (G = 2 scales), Gaussian prior."""
    scale = torch.tensor([30.0, 80.0], dtype=torch.float64).reshape(2, 1, 1)

    def energy_grad(theta):
        x, y = theta[..., 0], theta[..., 1]
        E = scale * ((x * x - 1.0) ** 2 + 0.5 * y * y)
        return E, torch.stack([scale * 4 * x * (x * x - 1.0), scale * y], -1)

    return tempering.Target(energy_grad, lambda t: (0.5 * (t * t).sum(-1), t), 12)


def _start():
    keys = rng.keys_from(torch.tensor([rng.key(3, 0), rng.key(3, 1)]), (3, 5))  # (G, R, K)
    betas = tempering.geometric_ladder(5, 0.05).expand(2, 1, 5).clone()
    return tempering.init(rng.normal(keys, 0, 2, torch.float64, rng.START), keys, _target(), betas)


def _equal(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _equal(x, y)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            _equal(a[k], b[k])
    else:
        assert a == b


def test_warmup_in_parts_equals_one_call():
    target = _target()
    whole, info = tempering.warmup(_start(), target, 40)
    w = tempering.warmup_start(_start())
    for k in (7, 1, 13, 30):  # the last asks for more rounds than are left
        kept = {k: v.clone() for k, v in w.stats.items()}, w.divergences.clone(), len(w.recorded)
        new = tempering.warmup_rounds(w, target, 40, k)
        _equal((w.stats, w.divergences, len(w.recorded)), kept)  # the state it started from is left as it was
        w = new
    assert w.done == 40
    parts, pinfo = tempering.warmup_end(w)
    _equal(tuple(whole), tuple(parts))
    _equal(tuple(info), tuple(pinfo))


def test_sample_in_parts_equals_one_call_with_thinning():
    target = _target()
    state, _ = tempering.warmup(_start(), target, 24)
    whole_state, whole = tempering.sample(state, target, 23, record=lambda th: th[..., -1, :].clone(), thin=3)
    st, totals, draws = state, None, []
    for k in (5, 1, 9, 8):
        st, totals = tempering.sample(st, target, k, record=lambda th: th[..., -1, :].clone(), thin=3, totals=totals)
        if totals.draws is not None:
            draws.append(totals.draws)
    _equal(tuple(whole_state), tuple(st))
    _equal(tuple(whole._replace(draws=None)), tuple(totals._replace(draws=None)))
    assert torch.equal(whole.draws, torch.cat(draws)) and whole.draws.shape[0] == 8
    assert (whole.round_trips > 0).any()  # the ladder really swaps
