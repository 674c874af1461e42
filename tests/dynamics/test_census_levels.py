"""SGD levels from a census (tms.dynamics.transitions.census_levels): at r = 2 they are the zoo's
energy levels (tms.theory.phases.energy_levels, computed from the zoo, not the census)."""
import numpy as np
import torch

from tms.dynamics.transitions import census_levels
from tms.theory import phases, zoo
from tms.theory.census import Census, CensusSettings
from tms.theory.census_points import describe


def test_census_levels_at_r2_are_the_zoo_energy_levels():
    c = 5
    pts = zoo.critical_points(c)
    census = Census(2, c, CensusSettings(n_prior=0, n_gd=0, frames=False),
                    sorted(describe(torch.stack([q.W for q in pts]), torch.stack([q.b for q in pts])),
                           key=lambda q: q.loss), len(pts), len(pts))
    levels = census_levels(census, {"4": 3.5})
    want = [loss for loss, _ in phases.energy_levels(c)]
    np.testing.assert_allclose(levels.loss, want, atol=1e-12)
    lam = dict(zip(levels.labels, levels.llc))
    assert lam["5"] == zoo.critical_point(c, "5").llc and lam["4"] == 3.5
    merged = census_levels(census, tie=0.02)
    assert len(merged.labels) < len(levels.labels) and np.all(np.diff(merged.loss) >= 0.02)
