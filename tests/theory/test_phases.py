"""Phase classification (SPEC 2 symmetries): every zoo point keeps its label under O(2),
feature permutations and N(0, 0.02^2) noise; the vectorised kernel equals a loop reference."""
import math

import numpy as np
import pytest
import torch

from reference.phases import classify_reference
from tms.theory import phases, zoo


def perturb(W, b, n, gen, sigma=0.02):
    """n copies of (W, b) under a random rotation, reflection, feature permutation and noise."""
    c = W.shape[-1]
    th = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    rot = torch.stack([torch.stack([th.cos(), -th.sin()], -1), torch.stack([th.sin(), th.cos()], -1)], -2)
    refl = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
    F = torch.diag_embed(torch.stack([torch.ones(n, dtype=torch.float64), refl], -1))
    Wn = rot @ F @ W
    perm = torch.argsort(torch.rand(n, c, generator=gen), -1)
    Wn = Wn.gather(-1, perm.unsqueeze(-2).expand(-1, 2, -1))
    bn = b.expand(n, c).gather(-1, perm)
    return (Wn + sigma * torch.randn(Wn.shape, generator=gen, dtype=torch.float64),
            bn + sigma * torch.randn(bn.shape, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("c", [4, 5, 6, 7, 8])
def test_zoo_points_keep_their_label_under_symmetry_and_noise(c):
    gen = torch.Generator().manual_seed(c)
    fams = zoo.family_members(c)
    labels = [zoo.make_label(k, s, p) for k, s, p in fams]
    pts = [zoo.kgon_params(k, c, s, p) for k, s, p in fams]
    W, b = torch.stack([w for w, _ in pts]), torch.stack([bb for _, bb in pts])  # (P, 2, c), (P, c)
    assert phases.classify(W, b).tolist() == labels  # the exact points
    n = 10_000
    Wn, bn = perturb(W.repeat_interleave(n, 0), b.repeat_interleave(n, 0), len(fams) * n, gen)
    got = phases.classify(Wn.float(), bn.float()).reshape(len(fams), n)  # float32 fast path
    for i, label in enumerate(labels):
        acc = float((got[i] == label).mean())
        assert acc >= 0.99, (c, label, acc, np.unique(got[i], return_counts=True))


def test_vectorised_equals_loop_reference_on_mixed_batch():
    # noisy zoo points with large noise (many land on "other" or a neighbouring family),
    # plus random junk; batch shape (3, N) must be preserved
    gen = torch.Generator().manual_seed(7)
    c = 6
    Ws, bs = [], []
    for k, s, p in zoo.family_members(c):
        W, b = zoo.kgon_params(k, c, s, p)
        Wn, bn = perturb(W, b, 30, gen, sigma=0.15)
        Ws.append(Wn)
        bs.append(bn)
    Ws.append(torch.randn(60, 2, c, generator=gen, dtype=torch.float64))
    bs.append(torch.randn(60, c, generator=gen, dtype=torch.float64))
    W, b = torch.cat(Ws), torch.cat(bs)
    W, b = W[: 3 * (len(W) // 3)].reshape(3, -1, 2, c), b[: 3 * (len(b) // 3)].reshape(3, -1, c)
    got = phases.classify(W, b)
    ref = classify_reference(W.numpy(), b.numpy())
    assert got.shape == W.shape[:2]
    assert (got == ref).all()
    assert 0.1 < (got == "other").mean() < 0.9  # both branches exercised
    # numpy input gives the same labels
    assert (phases.classify(W.numpy(), b.numpy()) == got).all()


def test_labels_invariant_under_exact_symmetries_of_noisy_points():
    gen = torch.Generator().manual_seed(3)
    c = 6
    W, b = zoo.kgon_params(5, c, 1, 0)
    Wn, bn = perturb(W, b, 2000, gen, sigma=0.12)  # noisy enough that labels vary
    lab = phases.classify(Wn, bn)
    assert len(set(lab.tolist())) >= 2
    W2, b2 = perturb(Wn, bn, 2000, gen, sigma=0.0)  # a fresh symmetry for every item
    assert (phases.classify(W2, b2) == lab).all()


def test_non_zoo_configurations_are_other():
    c = 6
    W, b = zoo.kgon_params(5, c)
    Wi = W.clone()
    th = 0.7  # rotate one vertex by 40 degrees: no longer regular
    R = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64)
    Wi[:, 0] = R @ W[:, 0]
    assert phases.classify(Wi, b).item() == "other"
    b_off = b.clone()
    b_off[0] = -5.0  # a switched-off vertex of a 5-gon is not a zoo family
    assert phases.classify(W, b_off).item() == "other"
    W2 = torch.zeros(2, c, dtype=torch.float64)
    W2[0, 0], W2[0, 1] = 1.0, -1.0  # a 2-gon (antipodal pair)
    assert phases.classify(W2, -torch.ones(c, dtype=torch.float64)).item() == "other"
    Wl = W.clone()
    Wl[:, 0] *= 3.0  # one much longer column
    assert phases.classify(Wl, b).item() == "other"
    with pytest.raises(ValueError, match="r = 2"):
        phases.classify(torch.zeros(3, c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64))


def test_nearest_level():
    c = 6
    levels = phases.energy_levels(c)
    losses = np.array([L for L, _ in levels])
    assert (np.diff(losses) > 1e-12).all()
    for q in zoo.critical_points(c):  # every zoo loss sits on a level that names it
        i = int(np.abs(losses - q.loss).argmin())
        assert abs(losses[i] - q.loss) < 1e-12 and q.label in levels[i][1]
    # coincident levels: 3-gon and 4,- share 1/6; the larger k represents the level
    assert phases.nearest_level(1 / 6, c).item() == "4,-"
    x = torch.tensor([[zoo.critical_point(c, "5").loss + 1e-4, zoo.critical_point(c, "6").loss - 2e-4]])
    lab, dist = phases.nearest_level(x, c, return_distance=True)
    assert lab.shape == (1, 2) and lab.tolist() == [["5", "6"]]
    assert np.allclose(dist, [[1e-4, -2e-4]], atol=1e-12)
    # a loss halfway between two adjacent levels goes to the nearer one
    mid = 0.5 * (losses[0] + losses[1])
    assert phases.nearest_level(np.array([mid - 1e-6, mid + 1e-6]), c).tolist() == [levels[0][1][0], levels[1][1][0]]
    assert phases.level_loss("4+,--", c) == pytest.approx((c - 2) / (3 * c) - 1 / (4 * c * c), abs=1e-14)


def test_dead_columns_off_the_polygon_count_as_zero_columns():
    # posterior samples: a flat negative-bias zero column wanders far from 0 (it never fires)
    c = 6
    W, b = zoo.kgon_params(5, c)
    W2, b2 = W.clone(), b.clone()
    W2[:, 5] = torch.tensor([0.5, 0.6], dtype=torch.float64)
    b2[5] = -2.0
    assert phases.classify(W2, b2).item() == "5"
    W, b = zoo.kgon_params(4, c, 1)
    W2, b2 = W.clone(), b.clone()
    W2[:, 5] = torch.tensor([0.7, 0.7], dtype=torch.float64)  # off the 4-gon's vertex positions
    b2[5] = -3.0
    assert phases.classify(W2, b2).item() == "4+"
    # a switched-off column that IS a vertex position keeps the - count
    W, b = zoo.kgon_params(4, c, 0, 1)
    assert phases.classify(W, b).item() == "4,-"
    assert classify_reference(W2.numpy(), b2.numpy()).item() == "4+"
