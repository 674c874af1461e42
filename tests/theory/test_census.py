"""The census of critical points for any (r, c) (tms.theory.census, tms.theory.canonical,
tms.theory.census_points): against the r = 2 zoo, against gradients and Hessians computed by
other code paths, and against the symmetries it claims to quotient out."""
import math

import numpy as np
import pytest
import torch

from reference.quadrature import population_loss_quad
from tms.core import checks, io
from tms.theory import canonical, phases, zoo
from tms.theory import census as census_mod
from tms.theory.census import Census, CensusSettings, census, census_starts, converge, solve_critical
from tms.theory.loss import (batched_grad, flatten_params, population_loss, population_loss_and_grad,
                             unflatten_params, use_compiled)

SMALL = CensusSettings(n_prior=8, n_gd=4, gd_steps=500, max_iter=150)
ZOO_ONLY = CensusSettings(n_prior=0, n_gd=0, frames=False)


@pytest.fixture(scope="module")
def r2_census():
    return {c: census(2, c, SMALL) for c in (4, 5, 6)}


@pytest.fixture(scope="module")
def r3_embedded():
    return census(3, 6, ZOO_ONLY)


def random_symmetry(W, b, gen):
    """(Q W P, P b) for a random Q in O(r) (either determinant) and feature permutation P, and
    the permutation: column i of the result is column perm[i] of W."""
    r, c = W.shape
    Q, _ = torch.linalg.qr(torch.randn(r, r, generator=gen, dtype=torch.float64))
    Q[:, 0] *= -1 if torch.rand(1, generator=gen) < 0.5 else 1
    perm = torch.randperm(c, generator=gen)
    return Q @ W[:, perm], b[perm], perm


def fd_hessian(W, b, h=1e-5):
    """Central differences of the analytic gradient (no autograd): (d, d)."""
    r, c = W.shape
    theta = flatten_params(W, b)
    steps = h * torch.eye(len(theta), dtype=torch.float64)

    def g(t):
        return flatten_params(*population_loss_and_grad(*unflatten_params(t, r, c), compiled=False)[1:])

    H = (g(theta + steps) - g(theta - steps)) / (2 * h)
    return (H + H.T) / 2


# ---- the census against the r = 2 zoo ---------------------------------------------------------------


@pytest.mark.parametrize("c", [4, 5, 6])
def test_r2_census_finds_every_zoo_point(r2_census, c):
    by = {q.label: q for q in r2_census[c].points}
    for z in zoo.critical_points(c):
        q = by[z.label]
        assert q.zoo_label == z.label
        assert abs(q.loss - z.loss) < 1e-10
        assert (q.rank, q.llc, q.smooth) == (z.hessian_rank, z.llc, z.smooth), z.label
        assert q.multiplicity == zoo.orbit_multiplicity(z.label, c)
        assert abs(q.prior - z.prior) < 1e-9
    assert len(r2_census[c].points) > len(zoo.critical_points(c))  # and other critical points


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")  # quad at a kink; the value is checked
@pytest.mark.parametrize("c", [4, 5, 6])
def test_every_reported_point_is_critical_by_other_code_paths(r2_census, c):
    pts = r2_census[c].points
    W, b = torch.stack([q.W for q in pts]), torch.stack([q.b for q in pts])
    kernel = use_compiled(None, W)  # the numba kernel where it loads, else the eager formula
    L, gW, gb = population_loss_and_grad(W, b, compiled=kernel)
    assert float(flatten_params(gW, gb).norm(dim=-1).max()) < 1e-10
    _, gW, gb = batched_grad(population_loss, W, b)
    assert float(flatten_params(gW, gb).norm(dim=-1).max()) < 1e-10
    assert np.allclose(L.numpy(), [q.loss for q in pts], rtol=0, atol=1e-13)
    for q in pts[:6]:
        assert abs(population_loss_quad(q.W.numpy(), q.b.numpy()) - q.loss) < 1e-10


@pytest.mark.parametrize("c", [4, 6])
def test_reported_points_are_distinct_modulo_symmetry(r2_census, c):
    pts = r2_census[c].points
    pairs = [canonical.canonical_pair(q.W, q.b) for q in pts]
    for i in range(len(pts)):
        for j in range(i):
            if abs(pts[i].loss - pts[j].loss) < 1e-9:
                assert canonical.match(*pairs[i], *pairs[j]) is None, (pts[i].label, pts[j].label)
    labels = [q.label for q in pts]
    assert len(set(labels)) == len(labels)


# ---- the canonical form ------------------------------------------------------------------------


@pytest.mark.parametrize("r", [2, 3, 4])
def test_canonical_form_is_invariant_under_orthogonal_maps_permutations_and_flat_biases(r):
    gen = torch.Generator().manual_seed(r)
    c = 6
    W = torch.randn(r, c, generator=gen, dtype=torch.float64)
    b = 0.3 * torch.randn(c, generator=gen, dtype=torch.float64)
    W[:, 0], b[0] = 0.0, -0.4  # a dead zero column
    b[1] = -float(canonical.firing_threshold(W.T @ W)[1]) - 0.2  # a switched-off column
    sig, pair = canonical.signature(W, b), canonical.canonical_pair(W, b)
    label, mult = canonical.geometry_label(W, b), canonical.orbit_multiplicity(*pair)
    for _ in range(5):
        W2, b2, perm = random_symmetry(W, b, gen)
        dead = b2 <= -canonical.firing_threshold(W2.T @ W2)
        b2 = torch.where(dead, b2 - 1.5 * torch.rand(c, generator=gen, dtype=torch.float64), b2)  # move flat biases
        assert float(canonical.signature_distance(canonical.signature(W2, b2), sig)) < 1e-12
        pair2 = canonical.canonical_pair(W2, b2)
        p = canonical.match(*pair2, *pair)
        assert p is not None and torch.equal(torch.as_tensor(p), perm)  # a generic point: one match
        assert canonical.geometry_label(W2, b2) == label and canonical.orbit_multiplicity(*pair2) == mult
    W3 = W.clone()
    W3[0, 2] += 1e-3  # not a symmetry
    assert canonical.match(*canonical.canonical_pair(W3, b), *pair) is None


@pytest.mark.parametrize("c", [5, 6])
def test_canonical_form_separates_distinct_zoo_points(c):
    pts = zoo.critical_points(c)
    sig = canonical.signature(torch.stack([q.W for q in pts]), torch.stack([q.b for q in pts]))
    pairs = [canonical.canonical_pair(q.W, q.b) for q in pts]
    for i in range(len(pts)):
        for j in range(i):
            assert float(canonical.signature_distance(sig[i], sig[j])) > 1e-2, (pts[i].label, pts[j].label)
            assert canonical.match(*pairs[i], *pairs[j]) is None


def test_symmetry_counts_and_frame_names_by_hand():
    U = canonical.cross(3, 3)  # octahedron: |Aut| = 2^3 3! = 48
    G, bt = canonical.canonical_pair(U, torch.zeros(6, dtype=torch.float64))
    order, orbits = canonical.symmetry(G, bt)
    assert order == 48 and orbits == [list(range(6))]
    assert canonical.frame_name(U) == "cross6" and canonical.frame_name(canonical.simplex(4, 3)) == "simplex4"
    assert canonical.frame_name(2 * canonical.antiprism(3, 0.4, 3)) == "antiprism6"
    W = canonical.bipyramid(5, 3)
    W[:, 5:] *= 0.7  # poles shorter than the ring: still a bipyramid
    assert canonical.frame_name(W) == "bipyramid7"
    assert canonical.symmetry(*canonical.canonical_pair(W, torch.zeros(7, dtype=torch.float64)))[0] == 20  # D5 x Z2


# ---- any r ----------------------------------------------------------------------------------------------


def test_every_zoo_point_embedded_in_r3_is_critical_with_its_index(r3_embedded):
    by = {q.zoo_label: q for q in r3_embedded.points if q.zoo_label}
    assert set(by) == {z.label for z in zoo.critical_points(6)}
    for label, q in by.items():
        assert q.grad_norm < 1e-10 and q.W.shape == (3, 6) and q.index >= 0
        if q.smooth:  # the index against a finite-difference Hessian of the analytic gradient
            ev = torch.linalg.eigvalsh(fd_hessian(q.W, q.b))
            assert int((ev < -1e-6).sum()) == q.index, label
            assert (q.kind == "saddle") == (q.index > 0)
            assert q.llc is None if q.index else q.llc == q.rank / 2
    assert by["5"].index > 0 and by["5"].kind == "saddle"  # the 5-gon is a minimum at r = 2 only


def test_solver_goes_to_saddles_too(r3_embedded):
    saddles = [q for q in r3_embedded.points if q.smooth and q.index > 0]
    assert saddles
    q = saddles[0]
    gen = torch.Generator().manual_seed(0)
    theta0 = flatten_params(q.W, q.b)
    starts = theta0 + 1e-3 * torch.randn(4, len(theta0), generator=gen, dtype=torch.float64)
    theta, gnorm = converge(starts, 3, 6, 100)
    assert float(gnorm.max()) < 1e-10
    pair = canonical.canonical_pair(q.W, q.b)
    for t in theta:
        assert canonical.match(*canonical.canonical_pair(*unflatten_params(t, 3, 6)), *pair, tol=1e-6) is not None


def test_a_start_converges_alike_alone_and_in_any_batch():
    few = CensusSettings(n_prior=2, n_gd=2, gd_steps=50, frames=False, zoo=False, scales=(0.5, 1.0))
    more = few.replace(n_prior=4, n_gd=4)
    s, big = census_starts(3, 7, few), census_starts(3, 7, more)
    assert torch.equal(s.theta[:2], big.theta[:2]) and torch.equal(s.theta[2:4], big.theta[4:6])
    theta_all, g_all = converge(s.theta, 3, 7, 60)
    theta_one, g_one = converge(s.theta[3:4], 3, 7, 60)
    assert torch.equal(theta_all[3:4], theta_one) and torch.equal(g_all[3:4], g_one)


def test_chunks_on_two_threads_give_the_census_of_one(tmp_path, monkeypatch):
    few = CensusSettings(n_prior=6, n_gd=2, gd_steps=20, frames=False, max_iter=40)
    monkeypatch.setattr(census_mod, "CHUNK", 5)  # several chunks, converged two at a time
    with checks.kernel_threads_set(1):
        one = census_mod._converge_chunks(census_starts(2, 5, few), 2, 5, few, None, False)
    with checks.kernel_threads_set(2):
        two = census_mod._converge_chunks(census_starts(2, 5, few), 2, 5, few, tmp_path / "c", False)
    assert len(list((tmp_path / "c_starts").glob("chunk*.npz"))) > 2
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_solve_critical_holds_frozen_coordinates():
    W, b = zoo.kgon_params(5, 6)
    theta = flatten_params(W, b) + 1e-3
    frozen = torch.zeros_like(theta, dtype=torch.bool)
    frozen[-1] = True
    out, _ = solve_critical(theta[None], 2, 6, max_iter=30, frozen=frozen[None])
    assert out[0, -1] == theta[-1]


# ---- saving, resuming, reading ------------------------------------------------------------------------


def test_census_saves_reuses_and_resumes(tmp_path, monkeypatch):
    tiny = CensusSettings(n_prior=2, n_gd=1, gd_steps=20, max_iter=40)
    out = tmp_path / "c4"
    first = census(2, 4, tiny, out=out)
    assert io.result_exists(out)
    loaded = Census.load(out)
    assert [(q.label, q.loss, q.found, q.index) for q in loaded.points] == \
        [(q.label, q.loss, q.found, q.index) for q in first.points]
    assert loaded.settings == tiny and loaded.n_starts == first.n_starts

    def no_work(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(census_mod, "converge", no_work)
    assert [q.label for q in census(2, 4, tiny, out=out).points] == [q.label for q in first.points]  # reused
    for f in (out.with_suffix(".npz"), out.with_suffix(".json")):
        f.unlink()
    resumed = census(2, 4, tiny, out=out)  # from the saved chunks of converged starts
    assert [(q.label, q.loss) for q in resumed.points] == [(q.label, q.loss) for q in first.points]
    with pytest.raises(AssertionError, match="recomputed"):
        census(2, 4, tiny.replace(seed=1), out=out)  # other settings: nothing reused


def perturbed(W, b, n, gen, sigma):
    """n noisy copies of (W, b) (r = 2) under random rotations, reflections and permutations."""
    outs = [random_symmetry(W, b, gen)[:2] for _ in range(n)]
    Wn, bn = torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
    return (Wn + sigma * torch.randn(Wn.shape, generator=gen, dtype=torch.float64),
            bn + sigma * torch.randn(bn.shape, generator=gen, dtype=torch.float64))


def test_phase_reading_agrees_with_the_zoo_reading_at_r2(r2_census):
    c, res, gen = 6, r2_census[6], torch.Generator().manual_seed(3)
    labels = [z.label for z in zoo.critical_points(c)]
    data = [perturbed(z.W, z.b, 50, gen, 0.01) for z in zoo.critical_points(c)]
    W, b = torch.stack([d[0] for d in data]), torch.stack([d[1] for d in data])  # (P, 50, 2, c)
    mine, theirs = res.read(W, b), phases.classify(W, b)
    assert mine.shape == (len(labels), 50)
    assert float((mine == theirs).mean()) >= 0.99
    assert float((mine == np.array(labels)[:, None]).mean()) >= 0.99
    junk = 3 * torch.randn(10, 2, c, generator=gen, dtype=torch.float64)
    assert set(res.read(junk, torch.ones(c, dtype=torch.float64)).tolist()) == {phases.OTHER}


def test_phase_reading_at_r3_gives_each_census_point_its_label(r3_embedded):
    gen = torch.Generator().manual_seed(4)
    moved = [random_symmetry(q.W, q.b, gen)[:2] for q in r3_embedded.points]
    W, b = torch.stack([m[0] for m in moved]), torch.stack([m[1] for m in moved])
    assert r3_embedded.read(W, b).tolist() == [q.label for q in r3_embedded.points]
    with pytest.raises(ValueError, match="W must be"):
        r3_embedded.read(W[:, :2], b)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="scales"):
        CensusSettings(scales=(0.5, -1.0))
    with pytest.raises(ValueError, match="r must be"):
        census(1, 4, ZOO_ONLY)
    assert math.isclose(SMALL.replace(gd_lr=0.01).gd_lr, 0.01)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_r3_c7_quick_census_finds_a_regular_minimum_below_every_frame():
    """r = 3, c = 7, where superposition is forced: the QUICK census (~15 s) finds a C^2 minimum,
    7 columns as an axis and two triangles (symmetry group of order 6), below the pentagonal
    bipyramid and every embedded zoo point; its Hessian null space is O(3)'s 3 directions only,
    so lambda = 25/2. benchmarks/bench_census.py doubles the starts to check the lowest levels."""
    res = census(3, 7)
    best = res.points[0]
    assert best.label.startswith("7[r3:2x3+1]") and best.kind == "min" and best.index == 0
    assert (best.rank, best.llc, best.multiplicity) == (25, 12.5, math.factorial(7) // 6)
    assert abs(population_loss_quad(best.W.numpy(), best.b.numpy()) - best.loss) < 1e-10
    _, gW, gb = population_loss_and_grad(best.W, best.b, compiled=use_compiled(None, best.W))
    assert float(flatten_params(gW, gb).norm()) < 1e-10
    frames = {q.label: q.loss for q in res.points}
    assert best.loss < frames["bipyramid7"] - 3e-3
    assert best.loss < min(q.loss for q in res.points if q.zoo_label) / 5
    assert abs(best.loss - 0.0076397828) < 1e-9
