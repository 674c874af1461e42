"""The regular k-gon (SPEC 2): the restricted critical points (l*, b*) solve the quadrature
loss's equations, converge to 1e-10, and exist beyond the paper's ansatz."""
import math

import pytest
import torch

from tms.theory import kgon
from tms.theory.loss import batched_grad, flatten_params, population_loss


def _restricted_loss_quad(k, l, b):
    """L(l U_k, b 1) at c = k by scipy quadrature of the definition (independent of the closed form)."""
    from scipy.integrate import quad

    ang = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    g = (l * l) * torch.cos(ang[:, None] - ang[None, :])
    total = 0.0
    for i in range(k):
        for j in range(k):
            d = 1.0 if i == j else 0.0
            gij = float(g[i, j])
            f = lambda mu: (d * mu - max(mu * gij + b, 0.0)) ** 2  # noqa: E731
            pts = [t for t in ([-b / gij] if gij != 0 else []) if 0 < t < 1]
            total += quad(f, 0, 1, points=pts or None, epsabs=1e-14, epsrel=1e-13)[0]
    return total / k


@pytest.mark.parametrize("k", [4, 5, 6, 8])
def test_solve_kgon_is_a_critical_point_of_the_quadrature_loss(k):
    l, b = kgon.solve_kgon(k)
    h = 1e-5
    dl = (_restricted_loss_quad(k, l + h, b) - _restricted_loss_quad(k, l - h, b)) / (2 * h)
    db = (_restricted_loss_quad(k, l, b + h) - _restricted_loss_quad(k, l, b - h)) / (2 * h)
    # at the 4-gon L is only C^1 (one side ~ b^2): the central difference is then O(h)
    tol = 10 * h if k == 4 else 1e-7
    assert abs(dl) < tol and abs(db) < tol, (k, dl, db)
    if k == 4:  # SPEC 2: the 4-gon is (1, 0)
        assert abs(l - 1) < 1e-10 and abs(b) < 1e-10


@pytest.mark.parametrize("k", [3, 5, 6, 7, 8])
def test_solve_kgon_converged_to_1e10(k):
    # distance to the root <= |g| / (smallest restricted-Hessian eigenvalue)
    l, b = kgon.solve_kgon(k)
    _, g, H = kgon._restricted(k, torch.tensor([l, b], dtype=torch.float64))
    m = torch.linalg.eigvalsh(H).min().item()
    assert m > 0
    assert g.norm().item() / m < 1e-10


@pytest.mark.parametrize("k", [9, 11])
def test_regular_kgons_beyond_eight_are_critical(k):
    # SPEC 2 last bullet: regular k-gon critical points beyond the paper's ansatz
    l, b = kgon.solve_kgon(k)
    W = l * torch.stack([torch.cos(2 * math.pi * torch.arange(k) / k), torch.sin(2 * math.pi * torch.arange(k) / k)])
    _, gW, gb = batched_grad(population_loss, W.double(), torch.full((k,), b, dtype=torch.float64))
    assert flatten_params(gW, gb).norm().item() < 1e-8
    (root,) = [r for r in kgon.kgon_roots(k) if r.l == l]
    assert root.smooth
    if k == 9:
        assert root.full_negative_eigs == 0  # a local minimum of the full loss at c = 9
    else:
        assert root.full_negative_eigs > 0  # a saddle of the full loss at c = 11


def test_kgon_report_rows():
    rows = kgon.kgon_report(range(5, 7))
    for k in (5, 6):
        l, b = kgon.solve_kgon(k)
        (row,) = [r for r in rows if r.k == k and r.l == l]
        (root,) = [r for r in kgon.kgon_roots(k) if r.l == l]
        assert row.exists and row.b == b and row.loss_per_feature == root.loss_per_feature
        assert row.restricted_min and row.full_saddle is False  # local minima of the full loss at c = k <= 9
        assert 0 <= row.interfering <= k - 1
        assert row.as_record()["l"] == l and set(row.as_record()) == set(vars(row))
    assert kgon.KgonReportRow(2, exists=False).as_record() == {"k": 2, "exists": False}
