"""The k-gon zoo (SPEC 2): every family member is a critical point of the exact loss,
its losses, Hessians and learning coefficients are right, and n_c solves its equation."""
import dataclasses
import math

import pytest
import torch

from tms.theory import kgon, zoo
from tms.theory.loss import batched_grad, batched_hessian, flatten_params, population_loss


@pytest.mark.parametrize("c", [4, 5, 6, 7, 8])
def test_full_gradient_vanishes(c):
    # all r*c + c coordinates, autograd on the exact closed form (independent of the solver's
    # restricted 2-D gradient)
    pts = zoo.critical_points(c)
    assert len(pts) > 0
    for q in pts:
        _, gW, gb = batched_grad(population_loss, q.W, q.b)
        g = flatten_params(gW, gb).norm().item()
        assert g <= 1e-8, (c, q.label, g)
        assert q.grad_norm <= 1e-8
        assert q.W.dtype == torch.float64 and q.W.shape == (2, c) and q.b.shape == (c,)


def test_family_losses_match_hand_derivation():
    # 4^{s+,p-}: p + c - 4 dead features at 1/(3c) each, each + column saves 1/(4c^2)
    # (constant output beta = 1/(2c): beta^2 - beta/c + 1/(3c)), the 4 vertices otherwise exact.
    for c in (4, 6, 7):
        for q in zoo.critical_points(c):
            if q.k == 4:
                want = (c - 4 + q.p) / (3 * c) - q.s / (4 * c * c)
                assert abs(q.loss - want) < 1e-14, (c, q.label)
    # the + bias is optimal: minimise the exact loss over it numerically
    from scipy.optimize import minimize_scalar

    W, b = zoo.kgon_params(5, 6, 1)

    def f(beta):
        bb = b.clone()
        bb[5] = beta
        return float(population_loss(W, bb))

    res = minimize_scalar(f, bounds=(0.0, 0.5), method="bounded", options={"xatol": 1e-12})
    assert abs(res.x - zoo.plus_bias(6)) < 1e-7


def test_negative_bias_zero_columns_are_flat():
    q = zoo.critical_point(6, "5")
    j = 5  # the zero column
    assert float(q.W[:, j].norm()) == 0 and q.b[j] < 0
    for beta in (-1e-3, -0.5, -7.0, -100.0):
        b = q.b.clone()
        b[j] = beta
        L, gW, gb = batched_grad(population_loss, q.W, b)
        assert abs(L.item() - q.loss) < 1e-15
        assert flatten_params(gW, gb).norm().item() < 1e-8
    # at exactly 0 the point is not critical: the right derivative in that bias is -1/c
    b = q.b.clone()
    b[j] = 0.0
    h = 1e-7
    b2 = b.clone()
    b2[j] = h
    right = (population_loss(q.W, b2) - population_loss(q.W, b)).item() / h
    assert abs(right - (-1 / 6)) < 1e-5


def _fd_hessian(W, b, h=1e-4):
    """Second differences of loss VALUES (no autograd): (d, d)."""
    from tms.theory.loss import unflatten_params

    r, c = W.shape
    th = flatten_params(W, b)
    d = th.numel()
    E = torch.eye(d, dtype=torch.float64) * h
    pp = th + E[:, None] + E[None, :]
    pm = th + E[:, None] - E[None, :]
    mp = th - E[:, None] + E[None, :]
    mm = th - E[:, None] - E[None, :]
    f = lambda t: population_loss(*unflatten_params(t, r, c))  # noqa: E731
    return (f(pp) - f(pm) - f(mp) + f(mm)) / (4 * h * h)


@pytest.mark.parametrize("c", [5, 6, 7, 8])
def test_hessian_at_smooth_points(c):
    for q in zoo.critical_points(c):
        if q.k < 5 or q.p:
            assert not q.smooth and q.llc is None and q.hessian_rank is None
            continue
        assert q.smooth
        H = batched_hessian(population_loss, q.W, q.b)
        Hfd = _fd_hessian(q.W, q.b)
        assert (H - Hfd).abs().max().item() < 1e-5, q.label
        ev, vec = torch.linalg.eigh(H)
        neg_zero = c - q.k - q.s
        if q.s and neg_zero:
            # a + column next to a negative-bias zero column: the + output on that column's
            # input is (mu W_z.W_z' + beta)^2, bilinear in (W_z, W_z'): a saddle. Check it
            # from loss values alone: L decreases along the most negative eigenvector.
            assert q.llc is None and any("saddle" in n for n in q.notes), q.label
            v = vec[:, 0]
            from tms.theory.loss import unflatten_params

            th = flatten_params(q.W, q.b)
            Lt = population_loss(*unflatten_params(th + 1e-2 * v, 2, c)).item()
            assert Lt < q.loss - 1e-9, q.label
            continue
        assert ev.min().item() > -q.rank_tol, q.label  # PSD
        # null directions: 1 rotation + 3 per negative-bias zero column (W_z, b_z), all flat
        assert q.d - q.hessian_rank == 1 + 3 * neg_zero, q.label
        assert q.llc == q.hessian_rank / 2 and q.minimally_singular
        # the Hessian rows of a negative-bias zero column vanish exactly
        for j in range(q.k + q.s, c):
            idx = [j, c + j, 2 * c + j]  # W[0, j], W[1, j], b[j] in flatten order
            assert H[idx].abs().max().item() == 0.0
        # the gap between null and nonzero eigenvalues is wide compared to rank_tol
        nz = ev[ev.abs() > q.rank_tol].abs().min().item()
        assert nz > 1e3 * q.rank_tol, (q.label, nz)


def test_smoothness_flag_matches_one_sided_second_differences():
    # L is C^2 at a point iff along every coordinate the one-sided second differences agree
    h = 1e-4
    for q in zoo.critical_points(6):
        th = flatten_params(q.W, q.b)
        d = th.numel()
        E = torch.eye(d, dtype=torch.float64)
        from tms.theory.loss import unflatten_params

        f = lambda t: population_loss(*unflatten_params(t, 2, 6))  # noqa: E731
        L0 = f(th)
        right = (f(th + 2 * h * E) - 2 * f(th + h * E) + L0) / h**2
        left = (f(th - 2 * h * E) - 2 * f(th - h * E) + L0) / h**2
        jump = (right - left).abs().max().item()
        if q.smooth:
            assert jump < 1e-3, (q.label, jump)
        else:
            assert jump > 1e-2, (q.label, jump)


def test_critical_sample_size_closed_form():
    from scipy.special import lambertw

    base = zoo.critical_point(6, "5")
    for dL, dlam, dc in [(-0.01, 1.5, 0.3), (-0.002, 3.0, -1.0), (-0.05, 0.5, 2.0)]:
        a = dataclasses.replace(base, loss=0.1, llc=2.0, prior=1.0)
        b = dataclasses.replace(base, loss=0.1 + dL, llc=2.0 + dlam, prior=1.0 + dc)
        n = zoo.critical_sample_size(a, b)
        # n dL + dlam log n + dc = 0  <=>  n = -(dlam / -dL) W_{-1}(-(-dL / dlam) exp(-dc / dlam))
        z = -(-dL / dlam) * math.exp(-dc / dlam)
        want = -(dlam / -dL) * lambertw(z, -1).real
        assert n == pytest.approx(want, rel=1e-10)
        n0 = zoo.critical_sample_size(a, b, prior=False)
        z0 = -(-dL / dlam)
        assert n0 == pytest.approx(-(dlam / -dL) * lambertw(z0, -1).real, rel=1e-10)
    # dlam = 0: linear, n = dc / -dL
    a = dataclasses.replace(base, loss=0.1, llc=2.0, prior=1.0)
    b = dataclasses.replace(base, loss=0.09, llc=2.0, prior=1.5)
    assert zoo.critical_sample_size(a, b) == pytest.approx(50.0, rel=1e-12)
    # beta preferred at every n >= 1 (lower loss and lower prior, no crossing): None
    b = dataclasses.replace(base, loss=0.09, llc=1.0, prior=0.5)
    assert zoo.critical_sample_size(a, b) is None
    # higher loss: never a transition to beta
    b = dataclasses.replace(base, loss=0.2, llc=3.0, prior=1.0)
    assert zoo.critical_sample_size(a, b) is None
    # overrides where the zoo has no lambda (4-gons)
    q4, q5 = zoo.critical_point(6, "4"), zoo.critical_point(6, "5")
    assert zoo.critical_sample_size(q4, q5) is None
    n = zoo.critical_sample_size(q4, q5, lam_alpha=5.0)
    dL, dlam, dc = q5.loss - q4.loss, q5.llc - 5.0, q5.prior - q4.prior
    assert abs(n * dL + dlam * math.log(n) + dc) < 1e-9


def test_transition_table_rows():
    rows = zoo.transition_table(6, llcs={"4": 5.0, "4+": 5.5, "4++": 6.0})
    assert rows
    for r in rows:
        assert r.dL < 0 and r.dlambda > 0 and r.dL == r.L_beta - r.L_alpha and r.dlambda == r.lam_beta - r.lam_alpha
        if r.n_c is not None:
            n = r.n_c
            assert abs(n * r.dL + r.dlambda * math.log(n) + r.dc) < 1e-8
    pairs = {(r.alpha, r.beta) for r in rows}
    assert ("5", "6") in pairs and ("4", "5") in pairs


def test_unknown_label_lists_valid_ones():
    with pytest.raises(ValueError, match="valid labels: .*'5\\+'"):
        zoo.critical_point(6, "7")
    assert zoo.parse_label("4+,--") == (4, 1, 2)
    assert zoo.make_label(4, 1, 2) == "4+,--"


def test_minimal_singularity_check_tells_manifold_from_higher_order():
    # synthetic losses in theta = (W (1, 2), b (2,)): the null direction is W[0, 0] in both
    rng = torch.Generator().manual_seed(0)
    W0, b0 = torch.zeros(1, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    null = torch.zeros(4, 1, dtype=torch.float64)
    null[0, 0] = 1.0

    def quartic(W, b):  # K = x^4 + y^2 + b^2: not minimally singular (lambda = 1/4 + 1)
        return W[..., 0, 0] ** 4 + W[..., 0, 1] ** 2 + (b**2).sum(-1)

    def curved_valley(W, b):  # K = (y - x^2)^2 + b^2: zero set is a smooth curve (minimally singular)
        return (W[..., 0, 1] - W[..., 0, 0] ** 2) ** 2 + (b**2).sum(-1)

    assert not zoo.minimally_singular(W0, b0, null, rng, loss_fn=quartic)
    assert zoo.minimally_singular(W0, b0, null, rng, loss_fn=curved_valley)


def test_prior_term_by_hand():
    # SPEC 3: (1/2)|w|^2 with the flat negative biases of zero columns counted as 0;
    # + columns count beta^2, switched-off vertices their bias -l^2
    c = 6
    for q in zoo.critical_points(c):
        l, bstar = kgon.solve_kgon(q.k)
        on = q.k - q.p
        want = 0.5 * (q.k * l * l + on * bstar**2 + q.p * l**4 + q.s * zoo.plus_bias(c) ** 2)
        assert abs(q.prior - want) < 1e-12, q.label


def test_kgon_params_rejects_bad_families():
    with pytest.raises(ValueError, match="4-gons only"):
        zoo.kgon_params(5, 6, 0, 1)
    with pytest.raises(ValueError, match="zero_bias"):
        zoo.kgon_params(5, 6, zero_bias=0.0)
    with pytest.raises(ValueError, match="off_bias"):
        zoo.kgon_params(4, 6, 0, 1, off_bias=-0.5)
    with pytest.raises(ValueError, match="k <= c"):
        zoo.kgon_params(7, 6)
    with pytest.raises(ValueError, match="malformed"):
        zoo.parse_label("4,+")


def test_critical_sample_size_tempered_likelihood_scales_as_one_over_beta():
    # With likelihood exp(-beta n L_n): F = (beta n) L + lambda log(beta n) + c (SPEC 3), so the
    # crossing in m = beta n is the beta = 1 root and n_c = m_c / beta. Checked by brentq here.
    import math

    from scipy.optimize import brentq

    from tms.theory import zoo

    a, b = zoo.critical_point(6, "5"), zoo.critical_point(6, "6")
    for beta in (0.5, 1.0, 2.0):
        F = lambda n, q: beta * n * q.loss + q.llc * math.log(beta * n) + q.prior  # noqa: E731
        ref = brentq(lambda n: F(n, b) - F(n, a), 50.0, 1e5, xtol=1e-9)
        assert zoo.critical_sample_size(a, b, beta_lik=beta) == pytest.approx(ref, rel=1e-9)
