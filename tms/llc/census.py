"""SGLD estimates of lambda at census points (tms.theory.census; SPEC 5, 6), for the places where
rank/2 is silent (most local minima at r = 3 are only C^1).

The lab's protocol (tms.llc.estimator.PROTOCOL) on the exact population loss: nbeta = n / log n
at n = 1000, eps 1e-3, gamma 1, n_chains chains of `steps` burn-in steps and as many kept draws.
Only local minima (kinds PHASE_KINDS: min, min?) are estimated: at a saddle SGLD is not sampling a
local posterior (the chains leave along the descent direction), so its number is not a local
learning coefficient; a saddle among the points asked for is skipped (its row is absent), and
tables say 'saddle: n/a'.

    rows = census_llcs(cs, 5, n_chains=8, steps=4000, seed=0, out="results/x_llc")
    rows = point_llcs(cs, cs.points[:4], 8, 4000, 0)     # the 4 lowest points, saddles skipped
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from tms.core import io
from tms.llc.estimator import PROTOCOL, estimate_llc
from tms.theory.census import PHASE_KINDS, Census


@dataclass(frozen=True)
class CensusLLC:
    """The SGLD lambda of one census minimum (tms.llc, the lab's protocol on the population loss)
    beside rank / 2 (None where L is only C^1 or the point is not minimally singular)."""

    label: str
    loss: float
    kind: str
    rank_llc: float | None
    sgld: float
    sgld_se: float


def census_llcs(census: Census, n_minima: int, n_chains: int, steps: int, seed: int, *,
                out: str | Path | None = None) -> list[CensusLLC]:
    """SGLD lambdas at the n_minima lowest local minima of the census (point_llcs)."""
    return point_llcs(census, [q for q in census.points if q.kind in PHASE_KINDS][:n_minima], n_chains, steps,
                      seed, out=out)


def point_llcs(census: Census, points: list, n_chains: int, steps: int, seed: int, *,
               out: str | Path | None = None) -> list[CensusLLC]:
    """SGLD lambdas at the local minima among `points` (census points; saddles skipped: module
    docstring), in their order, one batched call; saved at `out` and reused there
    (tms.core.io.reuse_problem: the same census, points and sampler settings)."""
    pts = [q for q in points if q.kind in PHASE_KINDS]
    ident = dict(census=census.identity(), labels=[q.label for q in pts], n_chains=n_chains, steps=steps, seed=seed)
    if out is not None and io.reuse_problem(out, ident) is None:
        return [CensusLLC(**row) for row in io.load_result(out)[1]["rows"]]
    rows = _sgld(pts, n_chains, steps, seed)
    if out is not None:
        io.save_result(out, {}, dict(settings=ident, rows=[dataclasses.asdict(q) for q in rows]))
    return rows


def _sgld(pts: list, n_chains: int, steps: int, seed: int) -> list[CensusLLC]:
    if not pts:
        return []
    res = estimate_llc(torch.stack([q.W for q in pts]), torch.stack([q.b for q in pts]),
                       nbeta=PROTOCOL.nbeta_for(PROTOCOL.n), eps=PROTOCOL.eps, gamma=PROTOCOL.gamma,
                       n_chains=n_chains, n_burnin=steps, n_draws=steps, loss="population", seed=seed)
    return [CensusLLC(q.label, q.loss, q.kind, q.llc, float(m), float(se))
            for q, m, se in zip(pts, res.llc.tolist(), res.llc_se.tolist())]
