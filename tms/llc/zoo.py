"""SGLD estimates of lambda at zoo points, for the places where theory is silent (SPEC 2, 5).

At 4-gon families L is only C^1 and the zoo has no theoretical lambda; the free-energy
predictions of SPEC 3 still need one, so it is estimated with the batched LLC estimator on
the exact population loss at a stated nbeta (n / log n unless given). The same call
estimates the points that do have theory, as a check of the estimator beside them (its
measured bias against theory at the default protocol: tms.llc.estimator's module docstring).

One function, `zoo_llc`, serves every use: the zoo_llc stage of `tms reproduce` (every point
of c), the posterior's and the free energies' estimates of the lambdas they miss (the labels
they name). Its defaults are the lab's protocol, tms.llc.estimator.PROTOCOL.

    est = zoo_llc(6, ["4", "4+"], n_chains=16)     # PROTOCOL with 16 chains
    est.estimates()                                # {label: (lambda_hat, s.e.)}
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from tms.core import checks
from tms.llc.estimator import PROTOCOL, LLCSettings, estimate_llc
from tms.theory import zoo


@dataclass(frozen=True)
class ZooLLCRow:
    """One zoo point's estimate: its loss and theoretical lambda (None where L is not C^2),
    the estimate and its standard error across chains, whether the diagnostics raised no
    flag (and the estimate is finite), the flags raised (tms.llc.result), the chains that
    escaped and the mean MALA acceptance."""

    label: str
    loss: float
    theory: float | None
    estimate: float
    se: float
    trustworthy: bool
    flags: tuple[str, ...]
    escaped: int
    acceptance: float


@dataclass(frozen=True)
class ZooLLC:
    """Estimates at zoo points of c: one row per label (in the order asked, or the zoo's
    order by loss); nbeta the inverse temperature used; settings the sampler settings."""

    c: int
    nbeta: float
    settings: LLCSettings
    rows: tuple[ZooLLCRow, ...]

    @property
    def usable(self) -> dict[str, float]:
        """{label: estimate} at the points without theory whose estimate no flag questions."""
        return {r.label: r.estimate for r in self.rows if r.theory is None and r.trustworthy}

    def estimates(self) -> dict[str, tuple[float, float]]:
        """{label: (estimate, standard error)} of every row (NaN where every chain was excluded)."""
        return {r.label: (r.estimate, r.se) for r in self.rows}

    def as_record(self) -> dict:
        """JSON-ready: c, nbeta, loss ("population"), settings (whole), rows, usable."""
        rows = [dict(dataclasses.asdict(r), flags=list(r.flags)) for r in self.rows]
        return dict(c=self.c, nbeta=self.nbeta, loss="population", settings=self.settings.as_record(), rows=rows,
                    usable=self.usable)


def _rows(points: list, res) -> tuple[ZooLLCRow, ...]:
    """The ZooLLCRow of each point from the batched LLCResult over them."""
    rows = []
    for i, q in enumerate(points):
        est, se = float(res.llc[i]), float(res.llc_se[i])
        rows.append(ZooLLCRow(label=q.label, loss=q.loss, theory=q.llc, estimate=est, se=se,
                              trustworthy=bool(res.trustworthy[i]) and math.isfinite(est),
                              flags=tuple(res.flags.raised(i)), escaped=int(res.n_escaped[i]),
                              acceptance=float(res.acceptance[i])))
    return tuple(rows)


def zoo_llc(c: int, labels: list[str] | None = None, settings: LLCSettings = PROTOCOL, **changes) -> ZooLLC:
    """Estimate lambda at the zoo points `labels` of c (None: every point), all in one batched
    call on the exact population loss, nbeta = settings.nbeta_for(settings.n).

    settings: the sampler settings (default PROTOCOL), with `changes` applied (e.g. n_chains=16,
    n=600, seed=3); batch_size must be None (the population loss is exact, no minibatches).
    Centre i of the batch is labels[i], so a label's numbers depend on its place in the list
    (counter-based keys per centre, tms.llc.estimator.centre_keys).
    """
    settings = settings.replace(**changes) if changes else settings
    if settings.batch_size is not None:
        raise ValueError(f"batch_size must be None for the zoo's population loss, got {settings.batch_size}")
    checks.positive_int(c, "c", minimum=3)
    pts = zoo.critical_points(c) if labels is None else [zoo.critical_point(c, lab) for lab in labels]
    nbeta = settings.nbeta_for(settings.n)
    if not pts:
        return ZooLLC(c, nbeta, settings, ())
    W = torch.stack([q.W for q in pts])
    b = torch.stack([q.b for q in pts])
    res = estimate_llc(W, b, nbeta=nbeta, eps=settings.eps, gamma=settings.gamma, n_chains=settings.n_chains,
                       n_burnin=settings.n_burnin, n_draws=settings.n_draws, loss="population", seed=settings.seed)
    return ZooLLC(c, nbeta, settings, _rows(pts, res))
