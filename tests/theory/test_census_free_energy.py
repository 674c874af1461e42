"""The free-energy terms at census points (tms.theory.census_free_energy) against the r = 2 zoo's
terms computed by other code (tms.bayes.free_energy.terms: the SO(2) circle |W|_F by hand) and
closed forms of the orbit volume."""
import math

import pytest
import torch

from tms.bayes.free_energy.terms import o1_terms
from tms.theory import zoo
from tms.theory.census import Census, CensusSettings
from tms.theory.census_free_energy import free_energy_terms, orbit_log_volume, so_volume
from tms.theory.census_points import describe


def test_so_volumes_are_the_known_ones():
    assert math.isclose(so_volume(2), 2 * math.pi)
    assert math.isclose(so_volume(3), 8 * math.pi**2)
    assert math.isclose(so_volume(4), 8 * math.pi**2 * 2 * math.pi**2)  # |S^3| = 2 pi^2


@pytest.mark.parametrize("s", [0.5, 1.3])
def test_orbit_volume_of_an_orthonormal_frame(s):
    """W = s [I_3 | 0]: A W = s A, |A|^2 = 2 per generator, so sqrt(det M) = (2 s^2)^(3/2)."""
    W = torch.zeros(3, 5, dtype=torch.float64)
    W[:, :3] = s * torch.eye(3, dtype=torch.float64)
    assert math.isclose(orbit_log_volume(W), math.log(2 * 8 * math.pi**2 * (2 * s * s) ** 1.5), rel_tol=1e-12)


@pytest.mark.parametrize("c, label", [(5, "5"), (6, "6")])
def test_laplace_constant_at_r2_equals_the_zoo_terms(c, label):
    q = zoo.critical_point(c, label)
    census = Census(2, c, CensusSettings(n_prior=0, n_gd=0, frames=False), describe(q.W[None], q.b[None]), 1, 1)
    (mine,) = free_energy_terms(census)
    theirs = o1_terms(c, [label], n_mc=1000)[label]
    assert mine.note == "" and mine.llc == q.llc
    assert math.isclose(mine.laplace, theirs.laplace, rel_tol=1e-10, abs_tol=1e-10)
    assert math.isclose(mine.orbit, theirs.circle + theirs.reflection, rel_tol=1e-12)
    assert math.isclose(mine.log_mult, theirs.log_mult, rel_tol=1e-12)


def test_c1_minima_get_no_laplace_constant_but_a_supplied_lambda():
    q = zoo.critical_point(5, "4")
    census = Census(2, 5, CensusSettings(n_prior=0, n_gd=0, frames=False), describe(q.W[None], q.b[None]), 1, 1)
    (t,) = free_energy_terms(census, {"4": 3.7})
    assert t.laplace is None and "C^1" in t.note and (t.llc, t.llc_source) == (3.7, "supplied")
