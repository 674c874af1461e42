"""The posterior sweep at r = 3 (tms.bayes.posterior.phase_sweep with a census): it runs, reads its
draws by the census (nearest local minimum, checked here against a brute-force loop over the
census minima), saves the census's identity, and predicts n_c from census points."""
import math

import numpy as np
import pytest
import torch

from tms.bayes.posterior import phase_sweep
from tms.theory import canonical, zoo
from tms.theory.census import POSTERIOR_THRESHOLD, PHASE_KINDS, Census, CensusSettings
from tms.theory.census_free_energy import census_transitions
from tms.theory.census_points import describe
from tms.theory.loss import unflatten_params

TINY = dict(seeds=1, n_chains=2, replicas=2, n_temps=3, n_warmup=6, n_draws=6, max_steps=4, plain_draws=4,
            min_draws=4, block=6)


@pytest.fixture(scope="module")
def r3_census():
    """A census of (3, 5) from embedded zoo points (each checked critical by describe)."""
    pts = [zoo.critical_point(5, lab) for lab in ("5", "4", "3", "4+")]
    W = torch.zeros(len(pts), 3, 5, dtype=torch.float64)
    W[:, :2] = torch.stack([q.W for q in pts])
    points = sorted(describe(W, torch.stack([q.b for q in pts])), key=lambda q: q.loss)
    return Census(3, 5, CensusSettings(n_prior=0, n_gd=0, frames=False), points, len(pts), len(pts))


def brute_force_reading(theta: np.ndarray, census: Census) -> list[str]:
    """Nearest census minimum by signature distance, one draw and one point at a time."""
    out = []
    for t in torch.as_tensor(theta, dtype=torch.float64).reshape(-1, theta.shape[-1]):
        W, b = unflatten_params(t, census.r, census.c)
        sig = canonical.signature(W, b)
        best, name = math.inf, "other"
        for q in census.points:
            if q.kind not in PHASE_KINDS:
                continue
            d = float(canonical.signature_distance(sig, canonical.signature(q.W, q.b)))
            if d < best:
                best, name = d, q.label
        out.append(name if best <= POSTERIOR_THRESHOLD else "other")
    return out


def test_r3_sweep_runs_and_reads_draws_by_the_census(r3_census):
    assert {q.kind for q in r3_census.points} >= {"saddle", "min?"}
    res = phase_sweep(5, [100, 400], r=3, census=r3_census, predict=False, **TINY)
    assert res.settings["census"] == r3_census.identity() and res.settings["r"] == 3
    minima = {q.label for q in r3_census.points if q.kind in PHASE_KINDS}
    assert set(res.phases) <= minima | {"other"}
    for pt in res.points:
        for kept in pt.draws:
            theta = np.asarray(kept["theta"])  # (R, T, d)
            labels = np.asarray(kept["phase_labels"])[kept["phase"]]  # (R, T)
            assert labels.reshape(-1).tolist() == brute_force_reading(theta, r3_census)
    np.testing.assert_allclose(res.mass.sum(1), 1.0, atol=1e-12)


def test_r3_sweep_needs_a_census_of_its_shape(r3_census):
    with pytest.raises(ValueError, match="needs a census"):
        phase_sweep(5, [100], r=3, **TINY)
    with pytest.raises(ValueError, match="census is of"):
        phase_sweep(6, [100], r=3, census=r3_census, **TINY)


def test_census_predictions_solve_the_free_energy_balance(r3_census):
    """n_c from census points: n dL + dlambda log n + dc = 0 at the root (lambdas supplied)."""
    llcs = {"4": 3.0, "3": 2.0}
    rows = census_transitions(r3_census, llcs)
    assert [(r.alpha, r.beta) for r in rows] == [("3", "4")]
    row = rows[0]
    assert abs(row.n_c * row.dL + row.dlambda * math.log(row.n_c) + row.dc) < 1e-8
    res = phase_sweep(5, [100], r=3, census=r3_census, llcs=llcs, **TINY)
    assert [(t.alpha, t.beta, t.n_c) for t in res.transitions] == [("3", "4", row.n_c)]


def test_posterior_reading_gives_noisy_minima_their_label_and_never_a_saddle(r3_census):
    gen = torch.Generator().manual_seed(0)
    for q in r3_census.points:
        W = q.W + 0.05 * torch.randn(20, 3, 5, generator=gen, dtype=torch.float64)
        b = q.b + 0.05 * torch.randn(20, 5, generator=gen, dtype=torch.float64)
        labels = set(r3_census.read_posterior(W, b).tolist())
        if q.kind in PHASE_KINDS:
            assert labels == {q.label}
        else:
            assert q.label not in labels


def test_local_ladders_at_r3_stay_in_their_census_phase(r3_census):
    """lambda_Bayes ladders at r = 3 (tms.bayes.free_energy.ladders.local_lambda with a census):
    they start at the census point and the census reading's wall keeps every draw in its phase."""
    from tms.bayes.free_energy.ladders import local_lambda
    from tms.bayes.settings import LocalLadders

    tiny = LocalLadders(seeds=1, replicas=2, n_temps=2, n_warmup=4, n_draws=8, max_steps=4, n=300)
    minima = [q.label for q in r3_census.points if q.kind in PHASE_KINDS]
    lam = local_lambda(5, minima, tiny, r=3, census=r3_census, seed=1)
    assert lam.settings["census"] == r3_census.identity() and lam.settings["r"] == 3
    for label in minima:
        assert np.allclose(lam.per_label[label].frac, 1.0)
