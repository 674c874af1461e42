"""SGLD estimates of lambda at zoo points, for the places where theory is silent (SPEC 2, 5).

At 4-gon families L is only C^1 and the zoo has no theoretical lambda; the free-energy
predictions of SPEC 3 still need one, so it is estimated with the batched LLC estimator on
the exact population loss at a stated nbeta. The same call estimates the points that do
have theory, as a check of the estimator beside them (its measured bias against theory at
the default protocol: tms.llc.estimator's module docstring).
"""
from __future__ import annotations

import math

import torch

from tms.core import checks
from tms.theory import zoo
from tms.llc.estimator import PROTOCOL, estimate_llc


def zoo_llc_estimates(c: int, *, n_ref: int = 600, n_chains: int = PROTOCOL["n_chains"],
                      n_burnin: int = PROTOCOL["n_burnin"], n_draws: int = PROTOCOL["n_draws"],
                      eps: float = PROTOCOL["eps"], gamma: float = PROTOCOL["gamma"], seed: int = 0) -> dict:
    """Estimate lambda at every zoo point of c in one batched call.

    nbeta = n_ref / log(n_ref) on the population loss; defaults: tms.llc.estimator.PROTOCOL.
    Returns a JSON-ready dict: settings, rows (label, theory, estimate, se, trustworthy,
    flags raised, escaped chains, acceptance) and `usable` = {label: estimate} for the
    points without theory whose estimate the diagnostics do not flag.
    """
    checks.positive_int(n_ref, "n_ref", minimum=2)
    pts = zoo.critical_points(c)
    W = torch.stack([q.W for q in pts])
    b = torch.stack([q.b for q in pts])
    nbeta = n_ref / math.log(n_ref)
    res = estimate_llc(W, b, nbeta=nbeta, eps=eps, gamma=gamma, n_chains=n_chains, n_burnin=n_burnin,
                       n_draws=n_draws, loss="population", seed=seed)
    ok, flags = res.trustworthy, res.flags
    rows, usable = [], {}
    for i, q in enumerate(pts):
        est, se = float(res.llc[i]), float(res.llc_se[i])
        trusted = bool(ok[i]) and math.isfinite(est)
        rows.append(dict(label=q.label, loss=q.loss, theory=q.llc, estimate=est, se=se, trustworthy=trusted,
                         flags=[k for k, v in flags.items() if v[i]], escaped=int(res.n_escaped[i]),
                         acceptance=float(res.acceptance[i])))
        if q.llc is None and trusted:
            usable[q.label] = est
    settings = dict(c=c, n_ref=n_ref, nbeta=nbeta, eps=eps, gamma=gamma, n_chains=n_chains, n_burnin=n_burnin,
                    n_draws=n_draws, loss="population", seed=seed)
    return dict(settings=settings, rows=rows, usable=usable)
