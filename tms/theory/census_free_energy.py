"""The free energy at census points of any (r, c) (docs/SPEC.md section 3): the critical sample
sizes n_c between local minima of the census, and the O(1) terms the asymptotic formula drops
where they are computable.

F_n(alpha) ~ n L_alpha + lambda_alpha log n + c_alpha, c_alpha = |w*_alpha|^2 / 2 (flat biases of
dead columns as the census's canonical values; SPEC 3). Only local minima are phases: 'min'
points (C^2, lambda = rank / 2) and 'min?' points (L only C^1, or not minimally singular) for
which a lambda is supplied (an SGLD estimate, tms.llc). Saddles are not.

The Laplace constant (`free_energy_terms`), at a 'min' point whose Hessian null space is the
tangent space of its O(r) orbit alone (rank = d - r(r-1)/2, no zero columns), from
Z = m int phi(w) exp(-n L(w)) dw near the orbit:
  c_alpha = prior - log m + (1/2) log det'H - log(2 vol(SO(r)) sqrt(det M)) + (r(r-1)/4) log 2 pi,
m the orbit multiplicity under feature permutations, det'H the product of the nonzero Hessian
eigenvalues (L unhalved, so exp(-n dw^T H dw / 2)), vol(SO(r)) = prod_{k=2..r} |S^{k-1}| in the
metric where the generators E_ij - E_ji have unit length, the two components of O(r), and
M_ab = <A_a W, A_b W> the metric the orbit map Q -> Q W induces on those generators (r = 2:
2 pi |W|_F and log 2, as tms.bayes.free_energy.terms). Elsewhere (C^1 points, extra null
directions, flat zero columns whose prior volume needs a Monte Carlo) it is None and `note`
says why.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from tms.theory.census import PHASE_KINDS
from tms.theory.zoo import TransitionRow, critical_sample_size


def _lambdas(census, llcs: dict | None) -> dict[str, float | None]:
    """lambda of every local minimum of the census: llcs[label] where given, else rank/2 (None)."""
    llcs = dict(llcs or {})
    return {q.label: llcs.get(q.label, q.llc) for q in census.points if q.kind in PHASE_KINDS}


def census_transitions(census, llcs: dict[str, float] | None = None, *, prior: bool = True,
                       beta_lik: float = 1.0, constants: dict[str, float] | None = None) -> list[TransitionRow]:
    """Every ordered pair alpha -> beta of census minima with dL < 0 and dlambda > 0, sorted by
    n_c (no crossing last): the root of n dL + dlambda log n + dc = 0 (tms.theory.zoo.
    critical_sample_size), divided by beta_lik. llcs: lambdas overriding or supplying the
    census's (e.g. SGLD at C^1 points); constants: O(1) terms c_alpha in place of the prior term
    (e.g. `laplace` of free_energy_terms; pairs without one are skipped)."""
    lam = _lambdas(census, llcs)
    pts = [q for q in census.points if lam.get(q.label) is not None]
    if constants is not None:
        pts = [q for q in pts if constants.get(q.label) is not None]
    rows = [transition_row(a, b, lam[a.label], lam[b.label], prior=prior, beta_lik=beta_lik, constants=constants)
            for a, b in itertools.permutations(pts, 2)
            if b.loss < a.loss - 1e-14 and lam[b.label] > lam[a.label]]
    return sorted(rows, key=lambda r: (math.inf if r.n_c is None else r.n_c, r.alpha, r.beta))


def transition_row(a, b, lam_a: float | None, lam_b: float | None, *, prior: bool = True, beta_lik: float = 1.0,
                   constants: dict[str, float] | None = None) -> TransitionRow:
    """The row alpha -> beta of two census points (any kinds, e.g. the ends of an SGD drop) with
    lambdas lam_a, lam_b: n_c None where a lambda is missing or no crossing exists (dL >= 0 or
    dlambda too small, SPEC 3); lam_* None are written NaN."""
    const = (lambda q: constants[q.label]) if constants is not None else (lambda q: q.prior)  # noqa: E731
    dc = const(b) - const(a)
    n_c = None
    if lam_a is not None and lam_b is not None:
        n_c = critical_sample_size(_Level(a.loss, lam_a, const(a)), _Level(b.loss, lam_b, const(b)), prior,
                                   beta_lik=beta_lik)
    nan = float("nan")
    la, lb = (nan if lam_a is None else lam_a), (nan if lam_b is None else lam_b)
    return TransitionRow(alpha=a.label, beta=b.label, L_alpha=a.loss, L_beta=b.loss, dL=b.loss - a.loss,
                         lam_alpha=la, lam_beta=lb, dlambda=lb - la, dc=dc if prior else 0.0, n_c=n_c)


@dataclass(frozen=True)
class _Level:
    """What critical_sample_size reads of a point: loss, lambda and the O(1) term (as `prior`)."""

    loss: float
    llc: float
    prior: float


def so_volume(r: int) -> float:
    """Volume of SO(r) with unit-length generators E_ij - E_ji: prod_{k=2..r} 2 pi^(k/2) / Gamma(k/2)
    (r = 2: 2 pi; r = 3: 8 pi^2)."""
    return math.prod(2 * math.pi ** (k / 2) / math.gamma(k / 2) for k in range(2, r + 1))


def orbit_log_volume(W: torch.Tensor) -> float:
    """log of the volume of the O(r) orbit of W (r, c): log(2 vol(SO(r)) sqrt(det M)), M (o, o) the
    Gram matrix of A_a W over the o = r(r-1)/2 generators A_a = E_ij - E_ji."""
    r = W.shape[0]
    gens = []
    for i, j in itertools.combinations(range(r), 2):
        A = torch.zeros(r, r, dtype=W.dtype)
        A[i, j], A[j, i] = 1.0, -1.0
        gens.append((A @ W).flatten())
    V = torch.stack(gens)  # (o, r c)
    return math.log(2 * so_volume(r)) + 0.5 * float(torch.logdet(V @ V.T))


@dataclass(frozen=True)
class CensusTerms:
    """The O(1) part of F_n at one census minimum, term by term (module docstring): loss, lambda
    (with its source: 'rank/2', 'supplied' or None), prior, multiplicity and -log m, and where
    computable half_logdet, orbit (-log of the O(r) orbit volume), gauss and their sum laplace."""

    label: str
    loss: float
    llc: float | None
    llc_source: str | None
    prior: float
    multiplicity: int
    log_mult: float
    half_logdet: float | None = None
    orbit: float | None = None
    gauss: float | None = None
    laplace: float | None = None
    note: str = ""


def _laplace_note(q, r: int, c: int) -> str:
    """Why the Laplace constant of point q is not computable ('' when it is)."""
    if q.kind != "min":
        return "no Laplace constant: " + ("L only C^1 here" if not q.smooth else "not minimally singular")
    if bool((q.W.norm(dim=0) <= 1e-9).any()):
        return "no Laplace constant: flat zero columns (their prior volume needs a Monte Carlo)"
    if q.rank != r * c + c - r * (r - 1) // 2:
        return "no Laplace constant: Hessian null space larger than the O(r) orbit"
    return ""


def free_energy_terms(census, llcs: dict[str, float] | None = None) -> list[CensusTerms]:
    """CensusTerms of every local minimum of the census (kinds 'min', 'min?'), in census order."""
    r, c = census.r, census.c
    out = []
    for q in census.points:
        if q.kind not in PHASE_KINDS:
            continue
        lam = (llcs or {}).get(q.label, q.llc)
        source = None if lam is None else ("supplied" if q.label in (llcs or {}) else "rank/2")
        base = dict(label=q.label, loss=q.loss, llc=lam, llc_source=source, prior=q.prior,
                    multiplicity=q.multiplicity, log_mult=-math.log(q.multiplicity))
        note = _laplace_note(q, r, c)
        if note:
            out.append(CensusTerms(**base, note=note))
            continue
        tol = 1e-8 * max(1.0, float(q.hessian_eigs.abs().max()))
        ev = q.hessian_eigs[q.hessian_eigs.abs() > tol]
        half_logdet, orbit = 0.5 * float(ev.log().sum()), -orbit_log_volume(q.W)
        gauss = r * (r - 1) / 4 * math.log(2 * math.pi)
        out.append(CensusTerms(**base, half_logdet=half_logdet, orbit=orbit, gauss=gauss,
                               laplace=q.prior + base["log_mult"] + half_logdet + orbit + gauss))
    return out
