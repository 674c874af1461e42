"""The k-gon zoo: critical points of the TMS population loss for r = 2 (SPEC 2, 3).

Families (labels: k, then s plus signs, then, if p > 0, a comma and p minus signs):
  "k"       standard k-gon: k columns of length l* at angles 2*pi*j/k sharing the bias b*;
            the other c - k columns are zero with a strictly negative bias (flat: any
            negative value gives the same loss).
  "k+..+"   s of the zero columns carry the positive bias beta = 1/(2c) that is optimal
            for a constant output (derived in `plus_bias`).
  "4+..,-.." (4-gons only) p of the polygon's own vertices are switched off by a bias at or
            below -l*^2 (default exactly -l*^2, the least-norm point of that flat set).

(l*, b*) is the regular k-gon's critical point (tms.theory.kgon). Findings the tests pin
down: k^{s+} with both + columns and negative-bias zero columns (0 < s < c - k) is a saddle
(the + output on a zero column's input is (mu W_z.W_z' + beta)^2, bilinear in the two
columns), so it has no lambda; 3-gons and 4-gons (b* = 0 next to zero columns) are only C^1.

Column layout of every zoo point: polygon vertices 0..k-1 (switched-off vertices are the
first p of them, adjacent), then s positive-bias zero columns, then negative-bias zeros.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from tms.core import progress as progress_bar
from tms.core import checks
from tms.theory.kgon import DTYPE, kgon_roots, solve_kgon
from tms.theory.loss import (batched_grad, batched_hessian, flatten_params, is_smooth, population_loss,
                             unflatten_params)

R = 2  # the zoo lives in r = 2


# ---- families -------------------------------------------------------------------------------


def plus_bias(c: int) -> float:
    """Optimal bias of a zero column with positive bias (SPEC 2).

    Its output is beta on every input: the error is beta^2 on the c - 1 other classes and
    (mu - beta)^2 on its own, so its part of L is beta^2 - beta/c + 1/(3c) (E mu = 1/2,
    E mu^2 = 1/3), minimised at beta = 1/(2c) (lowering L by 1/(4c^2) from the dead 1/(3c)).
    """
    return 1.0 / (2 * c)


def make_label(k: int, s: int = 0, p: int = 0) -> str:
    """"6", "5+", "4++", "4+,--"."""
    return f"{k}{'+' * s}" + (f",{'-' * p}" if p else "")


def parse_label(label: str) -> tuple[int, int, int]:
    """Inverse of make_label: "4+,--" -> (4, 1, 2). ValueError on a malformed label."""
    head, _, tail = str(label).partition(",")
    digits = head.rstrip("+")
    s = len(head) - len(digits)
    if not digits.isdigit() or (tail and set(tail) != {"-"}) or ("," in label and not tail):
        raise ValueError(f"malformed zoo label {label!r}; expected e.g. '6', '5+', '4++', '4+,--'")
    return int(digits), s, len(tail)


def kgon_params(k: int, c: int, s: int = 0, p: int = 0, *, zero_bias: float = -1.0,
                off_bias: float | None = None, rotation: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """W (2, c), b (c,) float64 of the zoo point k^{s+, p-} (column layout in the module doc).

    zero_bias: bias of the negative-bias zero columns (any value < 0, SPEC 2).
    off_bias: bias of switched-off vertices (default -l*^2; any value <= -l*^2).
    rotation: global angle of the polygon (vertex j at 2 pi j / k + rotation).
    """
    checks.positive_int(c, "c")
    checks.positive_int(k, "k", minimum=3)
    if k > c or s < 0 or s > c - k or p < 0 or p > k:
        raise ValueError(f"need 3 <= k <= c, 0 <= s <= c - k, 0 <= p <= k; got k={k}, c={c}, s={s}, p={p}")
    if p and k != 4:
        raise ValueError(f"switched-off vertices (p > 0) are defined for 4-gons only, got k = {k}")
    if not zero_bias < 0:
        raise ValueError(f"zero_bias must be < 0 (flat negative-bias zero columns), got {zero_bias}")
    l, bstar = solve_kgon(k)
    off = -l * l if off_bias is None else float(off_bias)
    if off > -l * l:
        raise ValueError(f"off_bias must be <= -l*^2 = {-l * l}, got {off_bias}")
    W = torch.zeros(R, c, dtype=DTYPE)
    ang = 2 * math.pi * torch.arange(k, dtype=DTYPE) / k + rotation
    W[0, :k], W[1, :k] = l * torch.cos(ang), l * torch.sin(ang)
    b = torch.full((c,), float(zero_bias), dtype=DTYPE)
    b[:k] = bstar
    b[:p] = off
    b[k : k + s] = plus_bias(c)
    return W, b


@dataclass
class CriticalPoint:
    """One zoo point k^{s+, p-} at a given c (r = 2), verified.

    W: (2, c) float64, b: (c,) float64. prior = (1/2)||w||^2 with the flat negative biases
    of zero columns counted as 0 (SPEC 3). hessian_eigs/hessian_rank are None where L is
    not C^2 (smooth False). llc = rank/2 where the point is a local minimum whose Hessian
    null space is tangent to a manifold of zero loss increase (minimally singular, checked
    numerically), else None.
    """

    label: str
    k: int
    s: int
    p: int
    c: int
    W: torch.Tensor
    b: torch.Tensor
    loss: float
    prior: float
    grad_norm: float
    smooth: bool
    hessian_eigs: torch.Tensor | None
    hessian_rank: int | None
    rank_tol: float
    llc: float | None
    l: float = 0.0
    bias: float = 0.0
    minimally_singular: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def d(self) -> int:
        return R * self.c + self.c

    def as_record(self) -> dict:
        """JSON-ready: label, k, s, p, loss, llc, prior, hessian_rank, rank_tol, grad_norm, smooth,
        minimally_singular, l, bias, W and b (nested lists), notes (what `tms zoo --json` prints
        and the zoo stage of `tms reproduce` saves)."""
        return dict(label=self.label, k=self.k, s=self.s, p=self.p, loss=self.loss, llc=self.llc, prior=self.prior,
                    hessian_rank=self.hessian_rank, rank_tol=self.rank_tol, grad_norm=self.grad_norm,
                    smooth=self.smooth, minimally_singular=self.minimally_singular, l=self.l, bias=self.bias,
                    W=np.asarray(self.W).tolist(), b=np.asarray(self.b).tolist(), notes=list(self.notes))


def prior_term(W: torch.Tensor, b: torch.Tensor, zero_tol: float = 0.0) -> torch.Tensor:
    """(1/2)||w||^2 with the bias of zero columns (norm <= zero_tol) that is negative counted as 0.

    W (..., r, c), b (..., c) -> (...). SPEC 3: the flat negative biases do not enter c_alpha.
    """
    zero = W.norm(dim=-2) <= zero_tol
    bb = torch.where(zero & (b < 0), torch.zeros_like(b), b)
    return 0.5 * ((W**2).sum((-2, -1)) + (bb**2).sum(-1))


def minimally_singular(W: torch.Tensor, b: torch.Tensor, null: torch.Tensor, rng: torch.Generator,
                        t: float = 0.05, tol: float = 1e-11, loss_fn=population_loss) -> bool:
    """Do the Hessian's null directions span a manifold of zero loss increase?

    For each null basis vector and two random null combinations v, start at theta* + t v and
    minimise L over the Hessian's range (Newton, the range block is positive definite near
    theta*). On a minimally singular point L returns to L(theta*) (the zero set is a graph
    over the null space); a higher-order direction (e.g. L ~ x^4) leaves an increase ~ t^4.
    """
    r, c = W.shape
    theta0 = flatten_params(W, b)
    d, m = theta0.shape[-1], null.shape[1]
    if m == 0:
        return True
    V = torch.cat([null.T, (torch.randn(2, m, generator=rng, dtype=DTYPE) @ null.T)], 0)
    V = V / V.norm(dim=-1, keepdim=True)
    Q, _ = torch.linalg.qr(torch.cat([null, torch.randn(d, d - m, generator=rng, dtype=DTYPE)], 1))
    Rg = Q[:, m:]  # orthonormal complement of the null space
    L0 = float(loss_fn(W, b))
    theta = theta0 + t * V  # (n_dir, d)
    for _ in range(15):
        Wt, bt = unflatten_params(theta, r, c)
        _, gW, gb = batched_grad(loss_fn, Wt, bt)
        g = flatten_params(gW, gb) @ Rg
        H = Rg.T @ batched_hessian(loss_fn, Wt, bt) @ Rg
        step = torch.linalg.solve(H, g.unsqueeze(-1)).squeeze(-1)
        theta = theta - step @ Rg.T
        if float(step.norm(dim=-1).max()) < 1e-12:
            break
    Lt = loss_fn(*unflatten_params(theta, r, c))
    return bool(((Lt - L0).abs() <= tol).all())


def _build(k: int, s: int, p: int, c: int, zero_bias: float = -1.0) -> CriticalPoint:
    W, b = kgon_params(k, c, s, p, zero_bias=zero_bias)
    l, bstar = solve_kgon(k)
    L, gW, gb = batched_grad(population_loss, W, b)
    gnorm = float(flatten_params(gW, gb).norm())
    smooth = bool(is_smooth(W, b))
    prior = float(prior_term(W, b))
    eigs = rank = llc = ms = None
    notes = []
    H = batched_hessian(population_loss, W, b)
    ev, vec = torch.linalg.eigh(H)
    rank_tol = 1e-8 * max(1.0, float(ev.abs().max()))
    if smooth:
        eigs = ev
        rank = int((ev.abs() > rank_tol).sum())
        if bool((ev < -rank_tol).any()):
            notes.append(f"saddle: {int((ev < -rank_tol).sum())} negative Hessian eigenvalues")
        else:
            rng = torch.Generator().manual_seed(1234 + 100 * k + 10 * s + p)
            ms = minimally_singular(W, b, vec[:, ev.abs() <= rank_tol], rng)
            if ms:
                llc = rank / 2
            else:
                notes.append("Hessian null space exceeds the zero-loss-increase manifold (not minimally singular)")
    else:
        notes.append("L is only C^1 here (some output at g = 0 = b, or a vertex at the b = -|W_i|^2 edge)")
    return CriticalPoint(make_label(k, s, p), k, s, p, c, W, b, float(L), prior, gnorm, smooth, eigs, rank,
                         rank_tol, llc, l, bstar, ms, notes)


def family_members(c: int, kmin: int = 3) -> list[tuple[int, int, int]]:
    """(k, s, p) of every family at c: k = kmin..c with a regular critical point, s = 0..c-k,
    and p = 0..4 for 4-gons."""
    checks.positive_int(c, "c", minimum=kmin)
    out = []
    for k in range(kmin, c + 1):
        if not kgon_roots(k):
            continue
        for s in range(c - k + 1):
            for p in range(5 if k == 4 else 1):
                out.append((k, s, p))
    return out


_ZOO: dict[tuple[int, int], tuple[CriticalPoint, ...]] = {}  # cache of _critical_points


def _critical_points(c: int, kmin: int, progress: bool = False) -> tuple[CriticalPoint, ...]:
    if (c, kmin) not in _ZOO:
        checks.positive_int(c, "c", minimum=kmin)
        for k in progress_bar.bar(range(kmin, c + 1), desc=f"k-gon roots (c = {c})", leave=False, disable=not progress):
            kgon_roots(k)  # cached: the slow part at large c
        members = family_members(c, kmin)
        pts = [_build(k, s, p, c) for k, s, p in progress_bar.bar(members, desc=f"zoo points (c = {c})", leave=False,
                                                          disable=not progress)]
        # coincident losses (e.g. 3^{s+} and 4^{s+,-}) are ordered larger k first, deterministically
        _ZOO[(c, kmin)] = tuple(sorted(pts, key=lambda q: (round(q.loss, 12), -q.k, q.s, q.p)))
    return _ZOO[(c, kmin)]


def _copy(q: CriticalPoint) -> CriticalPoint:

    return dataclasses.replace(q, W=q.W.clone(), b=q.b.clone(),
                               hessian_eigs=None if q.hessian_eigs is None else q.hessian_eigs.clone(),
                               notes=list(q.notes))


def critical_points(c: int, kmin: int = 3, progress: bool = False) -> list[CriticalPoint]:
    """Every zoo point at c (r = 2), sorted by loss (ties: larger k first). Cached; copies
    returned. The first call at a c solves the zoo (seconds; ~9 s at c = 16): `progress` shows bars."""
    return [_copy(q) for q in _critical_points(c, kmin, progress)]


def critical_point(c: int, label: str) -> CriticalPoint:
    """The zoo point with this label at c; ValueError listing the valid labels otherwise."""
    for q in _critical_points(c, 3):
        if q.label == label:
            return _copy(q)
    valid = ", ".join(repr(q.label) for q in _critical_points(c, 3))
    raise ValueError(f"unknown zoo label {label!r} for c = {c}; valid labels: {valid}")


def labels(c: int) -> list[str]:
    """Labels of the zoo at c, sorted by loss."""
    return [q.label for q in _critical_points(c, 3)]


# ---- free energy and critical sample sizes (SPEC 3) --------------------------------------------


def critical_sample_size(alpha: CriticalPoint, beta: CriticalPoint, prior: bool = True,
                         lam_alpha: float | None = None, lam_beta: float | None = None,
                         beta_lik: float = 1.0) -> float | None:
    """n_c of the Bayesian transition alpha -> beta (SPEC 3).

    With likelihood exp(-beta_lik n L_n) the local free energy is
    F_n = m L + lambda log m + c with m = beta_lik * n (the lambda log m term comes from the
    tempered likelihood), so n_c = m_c / beta_lik where m_c is the root of
    f(m) = m dL + dlambda log m + dc = 0 (d = beta - alpha) at which the posterior switches
    from preferring alpha (f > 0) to beta (f < 0), m >= 1. beta_lik = 1 is SPEC 3's convention.

    dc = prior(beta) - prior(alpha) (prior=False: dc = 0). lam_* override the zoo's lambda
    (needed where it is None, e.g. 4-gons). Returns None when dL >= 0 (no switch to beta
    at large n), when beta is preferred already at every m >= 1, or a lambda is missing.
    """
    checks.positive_float(beta_lik, "beta_lik")
    la = alpha.llc if lam_alpha is None else float(lam_alpha)
    lb = beta.llc if lam_beta is None else float(lam_beta)
    if la is None or lb is None:
        return None
    dL = beta.loss - alpha.loss
    dlam = lb - la
    dc = (beta.prior - alpha.prior) if prior else 0.0
    m_c = _root(dL, dlam, dc)
    return None if m_c is None else m_c / beta_lik


def _root(dL: float, dlam: float, dc: float) -> float | None:
    """Largest n >= 1 with n dL + dlam log n + dc = 0 crossing from + to -; None if none."""
    from scipy.optimize import brentq  # here only: scipy.optimize costs ~0.4 s to import (test_architecture LAZY)

    if not dL < 0:
        return None
    f = lambda n: n * dL + dlam * math.log(n) + dc  # noqa: E731
    # f' = dL + dlam / n: f rises up to n0 = dlam / |dL| (if dlam > 0), then falls to -inf.
    lo = max(1.0, dlam / -dL) if dlam > 0 else 1.0
    if not f(lo) > 0:
        return None
    hi = 2 * lo
    while f(hi) > 0:
        hi *= 2
    return float(brentq(f, lo, hi, xtol=1e-12 * hi, rtol=1e-14, maxiter=500))


@dataclass(frozen=True)
class TransitionRow:
    """A Bayesian transition alpha -> beta between zoo points (SPEC 3): losses, lambdas, the
    differences dL = L_beta - L_alpha < 0, dlambda > 0, dc (prior terms; 0 without prior) and
    n_c, the critical sample size (None: no crossing at n >= 1)."""

    alpha: str
    beta: str
    L_alpha: float
    L_beta: float
    dL: float
    lam_alpha: float
    lam_beta: float
    dlambda: float
    dc: float
    n_c: float | None


def transition_table(c: int, llcs: dict[str, float] | None = None, prior: bool = True,
                     beta_lik: float = 1.0) -> list[TransitionRow]:
    """Every ordered pair (alpha, beta) of zoo points at c with dL < 0 and dlambda > 0, sorted
    by n_c (no crossing last).

    llcs: lambda per label overriding/supplying the zoo's (e.g. SGLD estimates for 4-gons);
    labels without a lambda are skipped. `dataclasses.asdict(row)` gives a row as JSON.
    """
    llcs = dict(llcs or {})
    pts = _critical_points(c, 3)
    lam = {q.label: llcs.get(q.label, q.llc) for q in pts}
    rows = []
    for a in pts:
        for bq in pts:
            la, lb = lam[a.label], lam[bq.label]
            if la is None or lb is None or not (bq.loss < a.loss - 1e-14) or not (lb > la):
                continue
            n_c = critical_sample_size(a, bq, prior, la, lb, beta_lik)
            rows.append(TransitionRow(alpha=a.label, beta=bq.label, L_alpha=a.loss, L_beta=bq.loss,
                                      dL=bq.loss - a.loss, lam_alpha=la, lam_beta=lb, dlambda=lb - la,
                                      dc=(bq.prior - a.prior) if prior else 0.0, n_c=n_c))
    return sorted(rows, key=lambda r: (math.inf if r.n_c is None else r.n_c, r.alpha, r.beta))


# ---- orbit multiplicity (an O(1) term of the free energy, SPEC 2-3) ------------------------------


def stabilizer_order(label: str, c: int) -> int:
    """Order of the group of feature permutations that map the zoo point `label` to itself
    modulo O(2): the dihedral symmetries of the k-gon (order 2k) that keep the set of
    switched-off vertices (the first p, adjacent), times s! (the + columns) times
    (c - k - s)! (the flat negative-bias zero columns, whose biases are immaterial)."""
    k, s, p = parse_label(label)
    if k > c or s > c - k or p > k:
        raise ValueError(f"label {label!r} is not a zoo family at c = {c}")
    off = set(range(p))
    keep = sum(1 for rot in range(k) for flip in (1, -1) if {(flip * j + rot) % k for j in off} == off)
    return keep * math.factorial(s) * math.factorial(c - k - s)


def orbit_multiplicity(label: str, c: int) -> int:
    """Distinct copies of the critical set of `label` that the c! feature permutations
    produce, counted modulo O(2): c! / stabilizer_order (SPEC 2: every critical point is an
    orbit). The posterior mass of a phase sums over the copies, so its free energy carries
    -log(orbit_multiplicity), a term the asymptotic formula drops (SPEC 3).
    E.g. c = 6: 60 for '6', 72 for '5' and '5+', 45 for '4' and '4++', 90 for '4+'."""
    return math.factorial(c) // stabilizer_order(label, c)
