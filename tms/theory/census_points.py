"""What the census reports about each critical point it found (tms.theory.census): loss,
Hessian spectrum and index, rank, lambda, prior term, orbit multiplicity, label.

Hessian. The exact autograd Hessian of the closed form (tms.theory.loss.batched_hessian). L is
C^2 except where some output sits at g_ij = 0 = b_j or a vertex at b_i = -|W_i|^2 (SPEC 2;
tms.theory.loss.is_smooth): there autograd returns the Hessian of one of the polynomial pieces
that meet (a one-sided Hessian), so `smooth` is False, the rank and lambda are None (as in
tms.theory.zoo), and the index is that piece's; such a point is called a saddle only when L
decreases along one of that piece's negative directions (checked at steps 1e-2, 1e-3, 1e-4).

Index and rank use the zoo's tolerance: an eigenvalue counts as negative below -tol and as
nonzero beyond tol, tol = RANK_RTOL * max(1, max |eigenvalue|). lambda = rank / 2 at a C^2 local
minimum (index 0) whose Hessian null space is tangent to a set of zero loss increase
(minimally singular, checked numerically by the zoo's test); otherwise None and `note` says why.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from tms.theory import canonical, zoo
from tms.theory.loss import batched_grad, batched_hessian, flatten_params, is_smooth, population_loss
from tms.theory.zoo import minimally_singular, prior_term

RANK_RTOL = 1e-8  # the zoo's Hessian rank tolerance, relative to max(1, max |eigenvalue|)
PROBE_STEPS = (1e-2, 1e-3, 1e-4)  # step lengths of the descent probe at C^1 points
MS_SEED = 1234  # the random null-space combinations of the minimal-singularity check
C1_NOTE = "L only C^1 here: one-sided Hessian, lambda needs an estimate (SGLD)"


@dataclass
class CensusPoint:
    """One critical point of the census, in its canonical form (tms.theory.census).

    W (r, c), b (c,) float64; loss; grad_norm (autograd, < 1e-10); smooth (L is C^2 here);
    hessian_eigs (d,) ascending (one-sided where not smooth); index (negative eigenvalues);
    rank (None where not smooth); llc = rank/2 where minimally singular, else None; kind:
    'saddle', 'min' (C^2, index 0, minimally singular) or 'min?' (no descent found to second
    order: L only C^1 there, or a C^2 point that is not minimally singular); prior = |w|^2/2 without the flat biases;
    multiplicity = c!/|Aut|; label (the zoo's label where the point is an embedded zoo point:
    zoo_label); found: how many starts converged to it, found_by: per start family.
    """

    label: str
    zoo_label: str | None
    W: torch.Tensor
    b: torch.Tensor
    loss: float
    grad_norm: float
    smooth: bool
    hessian_eigs: torch.Tensor
    index: int
    rank: int | None
    llc: float | None
    kind: str
    note: str
    prior: float
    multiplicity: int
    found: int = 0
    found_by: dict[str, int] = field(default_factory=dict)

    def as_record(self) -> dict:
        """JSON-ready: every scalar field, W and b as nested lists, the eigenvalues as a list."""
        return dict(label=self.label, zoo_label=self.zoo_label, loss=self.loss, grad_norm=self.grad_norm,
                    smooth=self.smooth, index=self.index, rank=self.rank, llc=self.llc, kind=self.kind,
                    note=self.note, prior=self.prior, multiplicity=self.multiplicity, found=self.found,
                    found_by=dict(self.found_by), W=self.W.tolist(), b=self.b.tolist(),
                    hessian_eigs=self.hessian_eigs.tolist())


def _descends(W: torch.Tensor, b: torch.Tensor, eigs: torch.Tensor, vecs: torch.Tensor, tol: float) -> bool:
    """Does L drop along +-v, v an eigenvector of a negative eigenvalue, at a PROBE_STEPS length?"""
    neg = vecs[:, eigs < -tol].T  # (m, d)
    if not len(neg):
        return False
    r, c = W.shape
    theta0 = flatten_params(W, b)
    steps = torch.tensor(PROBE_STEPS, dtype=W.dtype)[:, None, None] * torch.cat([neg, -neg])  # (3, 2m, d)
    Wt, bt = (theta0 + steps).split([r * c, c], -1)
    L = population_loss(Wt.unflatten(-1, (r, c)), bt)
    return bool((L < population_loss(W, b) - 1e-13).any())


def _curvature(W, b, smooth: bool, eigs, vecs) -> tuple[str, int | None, float | None, str]:
    """(kind, rank, llc, note) of one point from its Hessian eigen-decomposition."""
    tol = RANK_RTOL * max(1.0, float(eigs.abs().max()))
    index = int((eigs < -tol).sum())
    if not smooth:
        if _descends(W, b, eigs, vecs, tol):
            return "saddle", None, None, f"{C1_NOTE}; L decreases along a negative direction"
        return "min?", None, None, C1_NOTE
    rank = int((eigs.abs() > tol).sum())
    if index:
        return "saddle", rank, None, f"saddle: {index} negative Hessian eigenvalues"
    null = vecs[:, eigs.abs() <= tol]
    if minimally_singular(W, b, null, torch.Generator().manual_seed(MS_SEED)):
        return "min", rank, rank / 2, ""
    return "min?", rank, None, "Hessian null space exceeds the zero-loss-increase manifold (not minimally singular)"


def zoo_labels(W: torch.Tensor, b: torch.Tensor) -> list[str | None]:
    """The zoo label of each point W (P, r, c), b (P, c) that is an embedded r = 2 zoo point
    (same orbit, tms.theory.canonical.match), else None."""
    c = W.shape[-1]
    ref = zoo.critical_points(c)
    ref_pairs = [canonical.canonical_pair(q.W, q.b) for q in ref]
    ref_sig = canonical.signature(torch.stack([q.W for q in ref]), torch.stack([q.b for q in ref]))
    sig = canonical.signature(W, b)
    out = []
    for i in range(len(W)):
        pair = canonical.canonical_pair(W[i], b[i])
        near = torch.nonzero(canonical.signature_distance(sig[i], ref_sig) <= canonical.MATCH_TOL).flatten()
        out.append(next((ref[j].label for j in near.tolist() if canonical.match(*pair, *ref_pairs[j]) is not None),
                        None))
    return out


def _labels(W: torch.Tensor, b: torch.Tensor, zoo_names: list[str | None]) -> list[str]:
    """Zoo labels where known, else geometry labels; a geometry label that occurs more than once
    (or is a zoo label) is numbered '#1', '#2', ... in the given order."""
    geo = [z or canonical.geometry_label(W[i], b[i]) for i, z in enumerate(zoo_names)]
    taken = {z for z in zoo_names if z}
    counts: dict[str, int] = {}
    out = []
    for name, z in zip(geo, zoo_names):
        if z is None and (name in taken or geo.count(name) > 1):
            counts[name] = counts.get(name, 0) + 1
            name = f"{name}#{counts[name]}"
        out.append(name)
    return out


def describe(W: torch.Tensor, b: torch.Tensor) -> list[CensusPoint]:
    """Every point W (P, r, c), b (P, c) (canonical critical points, in the order given) described:
    loss, autograd gradient, Hessian, kind, lambda, prior term, multiplicity, labels."""
    if not len(W):
        return []
    L, gW, gb = batched_grad(population_loss, W, b)
    gnorm = flatten_params(gW, gb).norm(dim=-1)
    smooth = is_smooth(W, b)
    eigs, vecs = torch.linalg.eigh(batched_hessian(population_loss, W, b))
    prior = prior_term(W, b)
    zoo_names = zoo_labels(W, b)
    labels = _labels(W, b, zoo_names)
    out = []
    for i in range(len(W)):
        kind, rank, llc, note = _curvature(W[i], b[i], bool(smooth[i]), eigs[i], vecs[i])
        tol = RANK_RTOL * max(1.0, float(eigs[i].abs().max()))
        out.append(CensusPoint(labels[i], zoo_names[i], W[i], b[i], float(L[i]), float(gnorm[i]), bool(smooth[i]),
                               eigs[i], int((eigs[i] < -tol).sum()), rank, llc, kind, note, float(prior[i]),
                               canonical.orbit_multiplicity(*canonical.canonical_pair(W[i], b[i]))))
    return out


# ---- saved form --------------------------------------------------------------------------------------

TEXT_FIELDS = ("label", "zoo_label", "kind", "note")


def points_to_arrays(points: list[CensusPoint], families: tuple[str, ...]) -> tuple[dict, dict]:
    """(arrays, record) of a list of points for tms.core.io.save_result: numbers as arrays
    (rank -1 and llc NaN where None), text fields in the record."""
    get = lambda name: [getattr(q, name) for q in points]  # noqa: E731
    arrays = dict(W=torch.stack(get("W")), b=torch.stack(get("b")), loss=np.array(get("loss")),
                  grad_norm=np.array(get("grad_norm")), smooth=np.array(get("smooth")),
                  hessian_eigs=torch.stack(get("hessian_eigs")), index=np.array(get("index")),
                  rank=np.array([-1 if x is None else x for x in get("rank")]),
                  llc=np.array([np.nan if x is None else x for x in get("llc")]), prior=np.array(get("prior")),
                  multiplicity=np.array(get("multiplicity")), found=np.array(get("found")),
                  found_by=np.array([[q.found_by.get(f, 0) for f in families] for q in points]
                                    ).reshape(-1, len(families)))
    return arrays, {name: get(name) for name in TEXT_FIELDS}


def points_from_arrays(arrays: dict, record: dict, families: tuple[str, ...]) -> list[CensusPoint]:
    """Inverse of points_to_arrays."""
    out = []
    for i in range(len(arrays["loss"])):
        rank, llc = int(arrays["rank"][i]), float(arrays["llc"][i])
        out.append(CensusPoint(record["label"][i], record["zoo_label"][i], torch.from_numpy(arrays["W"][i]),
                               torch.from_numpy(arrays["b"][i]), float(arrays["loss"][i]),
                               float(arrays["grad_norm"][i]), bool(arrays["smooth"][i]),
                               torch.from_numpy(arrays["hessian_eigs"][i]), int(arrays["index"][i]),
                               None if rank < 0 else rank, None if np.isnan(llc) else llc, record["kind"][i],
                               record["note"][i], float(arrays["prior"][i]), int(arrays["multiplicity"][i]),
                               int(arrays["found"][i]),
                               {f: int(n) for f, n in zip(families, arrays["found_by"][i])}))
    return out
