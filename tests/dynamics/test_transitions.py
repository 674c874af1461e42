"""Plateau segmentation and the Bayesian-antecedent table (SPEC 4)."""
import numpy as np
import pytest

from tms.dynamics.train import checkpoint_steps
from tms.theory import phases
from tms.dynamics.transitions import make_levels, segment

LEVELS = make_levels(["A", "B", "C", "D"], [0.10, 0.09, 0.06, 0.03])
TOL = 0.003


def _sigmoid_path(logs, points):
    """Loss along log10(step+1) moving between plateaus: points = [(value, until_log10), ...]
    with smooth (width 0.05 decade) steps at each `until`."""
    y = np.full_like(logs, points[0][0])
    for (v0, t), (v1, _) in zip(points[:-1], points[1:]):
        y = y + (v1 - v0) / (1 + np.exp(-(logs - t) / 0.05))
    return y


def _synthetic(seed=0):
    steps = checkpoint_steps(100_000).numpy()
    logs = np.log10(steps + 1.0)
    rng = np.random.default_rng(seed)
    runs = [
        _sigmoid_path(logs, [(0.10, 3.0), (0.09, 4.3), (0.06, 9)]),  # A -> B -> C
        _sigmoid_path(logs, [(0.10, 9)]),  # never leaves A
        _sigmoid_path(logs, [(0.20, 0.8), (0.06, 9)]),  # from off-level straight to C (passes A, B fast)
        _sigmoid_path(logs, [(0.10, 2.0), (0.09, 9)]),  # A -> B with a spike at step ~5000
        _sigmoid_path(logs, [(0.10, 2.0), (0.06, 3.5), (0.03, 9)]),  # A -> C -> D
        0.09 + 0.03 * np.exp(-steps / 300),  # exponential descent through A onto B (like 4 -> 4++)
        np.maximum(0.06, 0.12 - 0.015 * logs),  # slow log-linear descent (passes A, B), flat on C
    ]
    L = np.stack(runs, 1) + rng.normal(0, TOL / 10, (len(steps), len(runs)))
    spike = (steps > 4500) & (steps < 5500)
    assert 1 <= spike.sum() <= 3
    L[spike, 3] += 0.02
    return steps, L


def test_segmentation_finds_known_plateaus():
    steps, L = _synthetic()
    seg = segment(L, steps, LEVELS, tol=TOL)
    assert seg.sequences() == [("A", "B", "C"), ("A",), ("C",), ("A", "B"), ("A", "C", "D"), ("B",), ("C",)]
    # without the flatness condition the passages of runs 5 and 6 would count as plateaus
    loose = segment(L, steps, LEVELS, tol=TOL, slope_tol=1.0).sequences()
    assert loose[5] == ("A", "B") and loose[6] == ("A", "B", "C")
    # transitions at the sigmoid midpoints (10^3, 10^4.3 for run 0; 10^2, 10^3.5 for run 4),
    # located to the next checkpoint (< 10% later); the plateaus end/start within a factor 3
    # (the flatness window is 0.3 decades, a factor 2).
    expect = {(0, "A", "B"): 1e3, (0, "B", "C"): 10**4.3, (3, "A", "B"): 1e2, (4, "A", "C"): 1e2, (4, "C", "D"): 10**3.5}
    got = {(t.run, t.src, t.dst): t for t in seg.transitions}
    assert set(got) == set(expect)
    for key, mid in expect.items():
        t = got[key]
        assert mid <= t.step <= 1.1 * mid, (key, t)
        assert mid / 3 <= t.left_step <= mid <= t.arrive_step <= 3 * mid, (key, t)
        assert t.dL == pytest.approx(LEVELS.loss[LEVELS.labels.index(key[2])] - LEVELS.loss[LEVELS.labels.index(key[1])])
    # the spike of run 3 is merged: one B plateau to the end
    b3 = [p for p in seg.plateaus if p.run == 3 and p.label == "B"]
    assert len(b3) == 1 and b3[0].end == len(steps) - 1
    assert seg.transition_counts() == {("A", "B"): 2, ("B", "C"): 1, ("A", "C"): 1, ("C", "D"): 1}


def test_segmentation_independent_of_run_order():
    steps, L = _synthetic(1)
    perm = np.array([3, 0, 6, 4, 2, 5, 1])
    a = segment(L, steps, LEVELS, tol=TOL).sequences()
    b = segment(L[:, perm], steps, LEVELS, tol=TOL).sequences()
    assert [a[i] for i in perm] == b


def test_segment_rejects_bad_input():
    steps, L = _synthetic()
    with pytest.raises(ValueError, match="tol"):
        segment(L, steps, LEVELS, tol=0)
    with pytest.raises(ValueError, match="increasing"):
        segment(L, steps[::-1], LEVELS, tol=TOL)
    with pytest.raises(ValueError, match="T = len"):
        segment(L[:-1], steps, LEVELS, tol=TOL)


# ---- zoo levels, LLC per plateau, antecedent table ---------------------------------------

from scipy.optimize import brentq  # noqa: E402

from tms.theory import zoo  # noqa: E402
from tms.dynamics.antecedents import PlateauLLC, antecedent_table, plateau_llc  # noqa: E402
from tms.dynamics.transitions import zoo_levels  # noqa: E402


def _zoo_runs(levels, paths, seed=0):
    """Synthetic trajectories on zoo levels: paths = [[(label, until_log10), ...], ...]."""
    steps = checkpoint_steps(100_000).numpy()
    logs = np.log10(steps + 1.0)
    loss = {lab: L for lab, L in zip(levels.labels, levels.loss)}
    rng = np.random.default_rng(seed)
    L = np.stack([_sigmoid_path(logs, [(loss[lab], t) for lab, t in p]) for p in paths], 1)
    return steps, L + rng.normal(0, 2e-5, L.shape)


def test_plateau_llc_averages_trustworthy_estimates_per_plateau():
    levels = make_levels(["A", "B"], [0.10, 0.05])
    steps, L = checkpoint_steps(10_000).numpy(), None
    logs = np.log10(steps + 1.0)
    L = np.stack([_sigmoid_path(logs, [(0.10, 2.0), (0.05, 9)]), _sigmoid_path(logs, [(0.10, 3.0), (0.05, 9)])], 1)
    seg = segment(L, steps, levels, tol=0.005)
    assert seg.sequences() == [("A", "B"), ("A", "B")]
    idx = np.arange(0, len(steps), 5)
    rng = np.random.default_rng(0)
    lab = np.where(L[idx] > 0.075, 3.0, 7.0)  # true lambda 3 on A, 7 on B
    llc = lab + rng.normal(0, 0.1, lab.shape)
    se = np.full(lab.shape, 0.1)
    ok = rng.random(lab.shape) > 0.2
    llc[~ok] = 100.0  # flagged estimates must not enter
    est = plateau_llc(seg, idx, llc, se, ok)
    for name in ("A", "B"):
        per = []
        for p in (p for p in seg.plateaus if p.label == name):
            j = (idx >= p.start) & (idx <= p.end) & ok[:, p.run]
            per.append(llc[j, p.run].mean())
        assert est[name].mean == pytest.approx(np.mean(per), rel=1e-12)
        assert est[name].se == pytest.approx(np.std(per, ddof=1) / np.sqrt(2), rel=1e-12)
        assert est[name].n_plateaus == 2
    assert abs(est["A"].mean - 3.0) < 0.2 and abs(est["B"].mean - 7.0) < 0.2


def test_antecedent_table_against_an_independent_root():
    levels = zoo_levels(6)
    assert levels.labels[:4] == ["6", "5+", "5", "4++"]
    paths = [[("4++", 3.0), ("5+", 9)], [("4++", 3.5), ("5+", 9)], [("5", 3.0), ("5+", 9)],
             [("5+", 3.0), ("4++", 9)], [("4++", 9)]]
    steps, L = _zoo_runs(levels, paths)
    seg = segment(L, steps, levels, tol=1.5e-3)
    assert seg.sequences() == [("4++", "5+"), ("4++", "5+"), ("5", "5+"), ("5+", "4++"), ("4++",)]
    est = {"4++": PlateauLLC(5.0, 0.1, 3, 30)}
    rows, unseen = antecedent_table(seg, 6, est)
    by = {(r.src, r.dst): r for r in rows}
    assert by[("4++", "5+")].count == 2 and by[("5", "5+")].count == 1
    pts = {q.label: q for q in zoo.critical_points(6)}
    for (a, b), lam_a in ((("4++", "5+"), 5.0), (("5", "5+"), pts["5"].llc)):
        r = by[(a, b)]
        dL = pts[b].loss - pts[a].loss
        dlam = pts[b].llc - lam_a
        dc = pts[b].prior - pts[a].prior
        f = lambda n: n * dL + dlam * np.log(n) + dc  # noqa: E731
        n_c = brentq(f, max(1.0, dlam / -dL), 1e7, xtol=1e-10)
        assert r.dL == pytest.approx(dL, abs=1e-15) and r.dlambda == pytest.approx(dlam, abs=1e-12)
        assert r.n_c == pytest.approx(n_c, rel=1e-9)
        assert r.antecedent == "yes"
    assert by[("4++", "5+")].lam_src_from == "estimate" and by[("4++", "5+")].dlambda_se == pytest.approx(0.1)
    assert by[("5", "5+")].lam_src_from == "theory" and by[("5", "5+")].dlambda_se == 0.0
    assert by[("5+", "4++")].antecedent == "uphill" and by[("5+", "4++")].n_c is None
    # without an estimate for the 4-gon level the verdict is unknown, not guessed
    rows2, _ = antecedent_table(seg, 6, {})
    assert {(r.src, r.dst): r.antecedent for r in rows2}[("4++", "5+")] == "unknown"
    # unseen: Bayesian transitions out of visited phases (4++, 5, 5+) that SGD did not make
    pairs = {(r.alpha, r.beta) for r in unseen}
    assert ("4++", "6") in pairs and ("4++", "5+") not in pairs and ("5", "5+") not in pairs
    assert all(r.alpha in {"4++", "5", "5+"} and r.n_c is not None and r.dL < 0 for r in unseen)


@pytest.mark.parametrize("c", [4, 5, 6, 7])
def test_one_energy_level_table(c):
    """tms.dynamics.transitions.zoo_levels and tms.theory.phases.nearest_level name every level alike (at c = 6
    the level L = 0.159722 shared by 3+ and 4+,- was "3+" in one and "4+,-" in the other)."""
    levels = zoo_levels(c)
    assert levels.labels == [names[0] for _, names in phases.energy_levels(c)]
    assert phases.nearest_level(levels.loss, c).tolist() == levels.labels
    for lab, L in zip(levels.labels, levels.loss):
        assert L == pytest.approx(phases.level_loss(lab, c), abs=1e-15)
