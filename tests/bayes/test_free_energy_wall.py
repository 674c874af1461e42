"""The phase wall of the local ladders (tms.bayes.free_energy.ladders.restricted) on the
compiled HMC round (tms.theory.phases.wall_kernel) against the torch round on the same
restricted energy: round by round from the same states, and whole local_lambda runs."""
import numpy as np
import pytest
import torch

from tms.bayes.free_energy import ladders
from tms.bayes.posterior import ladder_target, prior_grad
from tms.bayes.settings import LocalLadders
from tms.samplers import compiled, rounds
from tms.theory import loss, phases
from tms.theory.data import sample_inputs
from tms.theory.loss import flatten_params, sorted_data, stack_sorted

pytestmark = pytest.mark.skipif(loss._kernels() is None, reason="numba not available")
LABELS = ["6", "5", "4+", "4,-"]  # a zero column of each kind, and a switched-off vertex (first reading)


def _same_round(a, b, tol: float) -> None:
    """Two run_round results: floats to rounding (relative where large, as energies n L_n),
    integers exactly."""
    for x, y in zip(a[0], b[0]):
        torch.testing.assert_close(y, x, rtol=tol, atol=tol)
    for name, x, y in zip(a[1]._fields, a[1], b[1]):
        assert torch.equal(x, y) if x.dtype == torch.long else torch.allclose(x, y, rtol=tol, atol=tol), name
    assert torch.equal(a[3], b[3])
    for x, y in zip(a[2] or (), b[2] or ()):
        torch.testing.assert_close(y, x, rtol=tol, atol=tol)


def test_the_wall_runs_compiled_only_with_the_zoo_reading():
    data = stack_sorted([sorted_data(sample_inputs(100, 6, 0).double())])
    tgt = ladder_target(data, 2, 6, 1.0, 8)
    th = torch.zeros(1, 2, 3, 18, dtype=torch.float64)
    walled = ladders.restricted(tgt.energy_grad, np.array(["5"]), 2, 6)
    assert compiled.applies(walled, prior_grad, th)
    census_like = ladders.restricted(tgt.energy_grad, np.array(["5"]), 2, 6, reader=lambda W, b: phases.classify(W, b))
    assert not compiled.applies(census_like, prior_grad, th)
    bare = ladders.restricted(lambda t: tgt.energy_grad(t), np.array(["5"]), 2, 6)  # no compiled form inside
    assert not compiled.applies(bare, prior_grad, th)
    two = ladders.restricted(tgt.energy_grad, np.array(["5", "6"]), 2, 6)
    assert two.kernel.bind((3, 2, 3)) is None and walled.kernel.bind((3, 2, 3)) is not None  # labels broadcast


def test_one_walled_round_equals_the_torch_round_field_by_field():
    """Chains at the zoo points of four phases on two data sets, with step sizes from small to
    far too large: warm-up (dual averaging, U-turns) and sampling rounds; many trajectories end
    at the wall (divergences) and the rest move."""
    r, c, R, K = 2, 6, 4, 5
    G = 2 * len(LABELS)
    data = stack_sorted([sorted_data(sample_inputs(n, c, n).double()) for n in (300, 900)] * len(LABELS))
    eg = ladders.restricted(ladder_target(data, r, c, 1.0, 8).energy_grad, np.repeat(LABELS, 2), r, c)
    theta = torch.stack([ladders._flat_point(lab, c, torch.float64) for lab in LABELS]).repeat_interleave(2, 0)
    theta = theta[:, None, None].expand(G, R, K, r * c + c).clone()
    ch = rounds.evaluate(theta, eg)
    assert torch.isfinite(ch.energy).all()  # every chain starts inside its phase
    keys = torch.arange(G * R * K).reshape(G, R, K) * 7919 + 11
    counts = torch.zeros(G, R, K, dtype=torch.long)
    beta = torch.linspace(0.25, 1.0, K, dtype=torch.float64).expand(G, R, K)
    eps = torch.logspace(-3, -0.5, R, dtype=torch.float64)[None, :, None].expand(G, R, K)
    lengths = torch.randint(1, 12, (7, G, R, K), generator=torch.Generator().manual_seed(0))
    walls = moved = 0
    for kw in (dict(uturn=True, da=rounds.da_init(eps)), dict(step_size=eps, lengths=lengths)):
        with compiled.use(False):
            a = rounds.run_round(ch, keys, counts, 24, eg, prior_grad, beta, **kw)
        with compiled.use(True):
            b = rounds.run_round(ch, keys, counts, 24, eg, prior_grad, beta, **kw)
        _same_round(a, b, 1e-10)
        walls += int(a[1].divergences.sum())
        moved += int(a[1].accepted.sum())
    assert walls > 50 and moved > 50


def test_every_round_of_local_ladders_equals_the_torch_round_from_the_same_state(monkeypatch):
    """local_lambda's rounds (warm-up with ladder placement, then sampling) from the torch run's
    states: the compiled round gives the same decisions and the same chains to rounding."""
    original, walls = rounds.run_round, []

    def both(*args, **kw):
        with compiled.use(False):
            ref = original(*args, **kw)
        with compiled.use(True):
            out = original(*args, **kw)
        _same_round(ref, out, 1e-9)
        walls.append(int(ref[1].divergences.sum()))
        return ref

    monkeypatch.setattr(rounds, "run_round", both)
    st = LocalLadders(n=600, seeds=1, replicas=2, n_temps=3, n_warmup=6, n_draws=8, max_steps=32)
    with compiled.use(False):
        ladders.local_lambda(6, LABELS, st, seed=2)
    assert len(walls) == 14 and sum(walls) > 0


def test_local_lambda_is_the_same_on_both_paths():
    """A short run (20 rounds of 8 ticks): the same decisions (round trips, ladders, wall
    rates exactly) and lambda to rounding. Longer runs part ways: a leapfrog trajectory
    magnifies a rounding difference about a thousandfold per 32-tick round (the unwalled
    posterior too), so after a few rounds one accept decision differs and the two runs are
    two samples of one target."""
    st = LocalLadders(n=400, seeds=2, replicas=2, n_temps=3, n_warmup=8, n_draws=12, max_steps=8)
    with compiled.use(False):
        a = ladders.local_lambda(6, LABELS, st, seed=1)
    with compiled.use(True):
        b = ladders.local_lambda(6, LABELS, st, seed=1)
    for lab in LABELS:
        x, y = a.per_label[lab], b.per_label[lab]
        assert np.array_equal(x.round_trips, y.round_trips) and np.array_equal(x.wall, y.wall)
        assert np.array_equal(x.betas, y.betas) and np.array_equal(x.frac, y.frac)
        assert y.lam == pytest.approx(x.lam, rel=1e-9) and y.se == pytest.approx(x.se, rel=1e-9)
        assert x.wall.max() > 0.1  # the wall was hit
