"""The O(1) terms the asymptotic formula drops (docs/SPEC.md sections 2-3): the flat prior mass
and finite-n volume of the zero columns, the orbit and Laplace terms per phase, and the exact
data term of each data set."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from tms.bayes.free_energy.estimators import Record
from tms.bayes.posterior import data_seed
from tms.core import rng
from tms.theory import zoo
from tms.theory.data import sample_inputs
from tms.theory.loss import (SortedData, empirical_loss_and_grad_sorted, empirical_loss_sorted, population_loss,
                             sorted_data, stack_sorted, use_compiled)
from tms.theory.phases import classify

MAX_PERM_C = 8  # the data term enumerates all c! permutations up to this c


@dataclass(frozen=True)
class O1Terms(Record):
    """The O(1) part of F_n at one zoo point (o1_terms), term by term: its loss and lambda
    (None where L is only C^1), the prior |w*|^2/2, the orbit multiplicity m and -log m, and
    where the point is smooth and minimally singular the rest of the Laplace constant
    (half_logdet, circle, reflection, flat with flat_se, gauss) and their sum `laplace`
    (None elsewhere, and so are those terms)."""

    OPTIONAL = ("half_logdet", "circle", "reflection", "flat", "flat_se", "gauss")

    loss: float
    llc: float | None
    prior: float
    multiplicity: int
    log_mult: float
    laplace: float | None = None
    half_logdet: float | None = None
    circle: float | None = None
    reflection: float | None = None
    flat: float | None = None
    flat_se: float | None = None
    gauss: float | None = None


def _zero_column_draws(c: int, label: str, n_mc: int, seed: int):
    """w* of `label` with its negative-bias zero columns (W_z, b_z) drawn from the prior:
    W (n_mc, 2, c), b (n_mc, c) and the population-loss increase dL (n_mc,); None when the
    point has no such column. dL is computed once per (c, label, n_mc, seed) and shared
    (flat_prior_mass and flat_volume read the same draws): do not change it in place."""
    k, s, p = zoo.parse_label(label)
    W, b = zoo.kgon_params(k, c, s, p)
    z = list(range(k + s, c))
    if not z:
        return None
    gen = torch.Generator().manual_seed(int(rng.key(seed, c, len(z))) & 0x7FFFFFFF)
    Ws, bs = W.expand(n_mc, 2, c).clone(), b.expand(n_mc, c).clone()
    Ws[:, :, z] = torch.randn(n_mc, 2, len(z), generator=gen, dtype=W.dtype)
    bs[:, z] = torch.randn(n_mc, len(z), generator=gen, dtype=W.dtype)
    return Ws, bs, _loss_increase(c, label, n_mc, seed, Ws, bs, W, b)


_INCREASES: dict = {}  # (c, label, n_mc, seed) -> dL (n_mc,) of the last few draws
_INCREASES_MAX = 8


def _loss_increase(c: int, label: str, n_mc: int, seed: int, Ws, bs, W, b) -> torch.Tensor:
    """L(Ws, bs) - L(W, b) (n_mc,) of _zero_column_draws' draws, kept for the next call."""
    key = (c, label, n_mc, seed, Ws.dtype)
    if key not in _INCREASES:
        L0 = float(population_loss(W, b))
        _INCREASES[key] = torch.cat([population_loss(Wc, bc) - L0 for Wc, bc in zip(Ws.split(20000), bs.split(20000))])
        while len(_INCREASES) > _INCREASES_MAX:
            _INCREASES.pop(next(iter(_INCREASES)))
    return _INCREASES[key]


def flat_prior_mass(c: int, label: str, n_mc: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Prior mass of the flat region of the negative-bias zero columns of `label`.

    Their (W_z, b_z) are drawn from the prior N(0, I) with the rest of w* fixed; the region
    is where the population loss stays exactly at L(w*) (|dL| <= 1e-12). Returns (P_flat,
    its Monte Carlo s.e.); (1, 0) when the point has no such column."""
    draws = _zero_column_draws(c, label, n_mc, seed)
    if draws is None:
        return 1.0, 0.0
    P = float((draws[2].abs() <= 1e-12).double().mean())
    return P, math.sqrt(max(P * (1 - P), 1e-300) / n_mc)


def flat_volume(c: int, label: str, ns, n_mc: int = 200_000, seed: int = 0, beta_lik: float = 1.0) -> np.ndarray:
    """The zero-column volume at finite n: -log E_prior[exp(-beta_lik n dL) 1[zoo reading = label]]
    at each n of ns (N,), the polygon held at w* (population loss, exact). It tends to
    -log P_flat as n grows, slowly, since past the flat region the loss rises gently (no
    quadratic rise is assumed). Zeros (N,) when the point has no such column."""
    draws = _zero_column_draws(c, label, n_mc, seed)
    ns = np.asarray(ns, dtype=float)
    if draws is None:
        return np.zeros_like(ns)
    Ws, bs, dL = draws
    inside = torch.from_numpy(classify(Ws, bs) == label) & (dL >= -1e-12)  # lower-loss draws belong elsewhere
    x = dL.clamp(min=0.0)[inside]
    return np.array([-(torch.logsumexp(-beta_lik * n * x, 0) - math.log(len(dL))).item() for n in ns])


def o1_terms(c: int, labels, n_mc: int = 200_000, seed: int = 0) -> dict[str, O1Terms]:
    """The O(1) part of F_n(alpha) = n L + lambda log n + const, term by term (SPEC 3).

    Per label: prior (|w*|^2/2, zero-column negative biases as 0: the lab's c_alpha),
    multiplicity m (tms.theory.zoo.orbit_multiplicity, term -log m), and where L is C^2 and the
    point minimally singular with null space = O(2) rotation + flat zero columns, the rest
    of the Laplace constant: half_logdet = (1/2) log det'H, circle = -log(2 pi |W*|_F)
    (length of the SO(2) orbit), reflection = -log 2, flat = -log P_flat (prior mass of the
    flat zero-column region, with flat_se), gauss = (1/2) log 2 pi (from (2 pi)^(-d_p/2)
    (2 pi / n)^(r/2), r = d_p - 1). laplace = their sum + prior - log m (None elsewhere).
    """
    pts = {q.label: q for q in zoo.critical_points(c)}
    out = {}
    for lab in labels:
        q = pts[lab]
        m = zoo.orbit_multiplicity(lab, c)
        base = dict(loss=q.loss, llc=q.llc, prior=q.prior, multiplicity=m, log_mult=-math.log(m))
        n_zero_cols = c - q.k - q.s
        if q.llc is None or q.hessian_rank != q.d - 3 * n_zero_cols - 1:
            out[lab] = O1Terms(**base)
            continue
        ev = q.hessian_eigs[q.hessian_eigs.abs() > q.rank_tol]
        P, Pse = flat_prior_mass(c, lab, n_mc, seed)
        rest = dict(half_logdet=0.5 * float(ev.log().sum()), circle=-math.log(2 * math.pi * float(q.W.norm())),
                    reflection=-math.log(2.0), flat=-math.log(P), flat_se=Pse / P, gauss=0.5 * math.log(2 * math.pi))
        laplace = (q.prior + base["log_mult"] + rest["half_logdet"] + rest["circle"] + rest["reflection"]
                   + rest["flat"] + rest["gauss"])
        out[lab] = O1Terms(**base, laplace=laplace, **rest)
    return out


def _perm_points(c: int, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Every feature permutation of every zoo point: W (L, c!, 2, c), b (L, c!, c)."""
    perms = torch.tensor(list(itertools.permutations(range(c))), dtype=torch.long)  # (c!, c)
    Ws, bs = [], []
    for lab in labels:
        W, b = zoo_point(lab, c)
        Ws.append(W[:, perms].permute(1, 0, 2))
        bs.append(b[perms])
    return torch.stack(Ws), torch.stack(bs)


def zoo_point(label: str, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W (2, c), b (c,) of the zoo point `label` (tms.theory.zoo.kgon_params layout)."""
    k, s, p = zoo.parse_label(label)
    return zoo.kgon_params(k, c, s, p)


def sorted_losses(W: torch.Tensor, b: torch.Tensor, data: SortedData) -> torch.Tensor:
    """L_n of W (..., r, c), b (..., c) on sorted data (batch dims broadcasting) -> (B...): the
    compiled fused kernel where it runs (tms.theory.loss.use_compiled; its gradient unused),
    else empirical_loss_sorted; the two agree to rounding (SPEC 1)."""
    if use_compiled(None, W):
        return empirical_loss_and_grad_sorted(W, b, data)[0]
    return empirical_loss_sorted(W, b, data)


def data_term(data: SortedData, c: int, labels) -> np.ndarray | None:
    """The data term of each phase per data set: -log mean_sigma exp(-n (L_n(sigma w*) - L(w*))).

    data: S data sets (batch (S,)); labels (L,) zoo labels. The mean runs over all c!
    feature permutations sigma (equal weight per copy of the critical set); L_n is
    O(2)-invariant, so this is exactly the spread of n L_n over the copies, which the
    posterior resolves by preferring the copy of lowest empirical loss (an O(sqrt n) term,
    zero in expectation only for phases whose copies all have equal L_n, e.g. the c-gon).
    Returns (S, L) float64, or None for c > MAX_PERM_C (c! too large).
    """
    if c > MAX_PERM_C:
        return None
    W, b = _perm_points(c, labels)  # (L, P, 2, c)
    Lpop = torch.tensor([float(population_loss(*zoo_point(lab, c))) for lab in labels], dtype=W.dtype)
    out = []
    for s in range(data.mu.shape[0]):
        one = SortedData(*(t[s] for t in data))
        Ln = sorted_losses(W.to(one.mu.dtype), b.to(one.mu.dtype), one)  # (L, P)
        x = -one.n * (Ln - Lpop[:, None].to(Ln.dtype))
        out.append(-(torch.logsumexp(x, -1) - math.log(x.shape[-1])))
    return torch.stack(out).double().numpy()


def data_term_curve(c: int, labels, ns, n_sets: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """E over data sets of `data_term` at each n of ns: mean (N, L) and s.e. (N, L), from
    n_sets synthetic data sets per n (seeds independent of the sweep's)."""
    if c > MAX_PERM_C:
        return None
    means, ses = [], []
    for n in ns:
        X = [sample_inputs(int(n), c, data_seed(seed + 7919, int(n), s)) for s in range(n_sets)]
        t = data_term(stack_sorted([sorted_data(x) for x in X]), c, labels)
        means.append(t.mean(0))
        ses.append(t.std(0, ddof=1) / math.sqrt(n_sets))
    return np.array(means), np.array(ses)

