"""SGD transitions beside Bayesian ones, from saved results (`tms compare`, SPEC 3-4).

`compare` pairs every transition SGD made (a `tms transitions` result) with its Bayesian
counterpart at the same c: the critical sample size n_c the free energy predicts and the n
where the measured posterior masses (a `tms posterior` sweep) cross.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tms.core import checks
from tms.core.records import CompareRow
from tms.dynamics.analysis import TransitionsResult


def mass_crossing(ns: np.ndarray, mass: np.ndarray, phases: list[str], alpha: str, beta: str,
                  min_mass: float = 0.05) -> str:
    """Where the posterior mass of beta first overtakes alpha's on the n-grid (log-linear
    interpolation), as text: a number, '< n_min', '> n_max', or '-' when a phase is not seen
    or never holds min_mass of the posterior (a crossing of two negligible masses means nothing)."""
    if alpha not in phases or beta not in phases:
        return "-"
    if min(mass[:, phases.index(alpha)].max(), mass[:, phases.index(beta)].max()) < min_mass:
        return "-"
    diff = mass[:, phases.index(beta)] - mass[:, phases.index(alpha)]
    if diff[0] >= 0:
        return f"< {ns[0]}" if diff[-1] >= 0 else "-"
    for i in range(1, len(ns)):
        if diff[i] >= 0 > diff[i - 1]:
            x0, x1 = math.log(ns[i - 1]), math.log(ns[i])
            x = x0 + (x1 - x0) * (-diff[i - 1]) / (diff[i] - diff[i - 1])
            return f"{math.exp(x):.0f}"
    return f"> {ns[-1]}"


def posterior_summaries(out: Path, c: int) -> list[Path]:
    """The posterior sweep summaries (.json) at c saved under out/posterior_c{c}, sorted."""
    return sorted((Path(out) / f"posterior_c{c}").glob("**/summary_c*.json"))


def load_posterior_summary(out: Path, c: int, sweep: str | None = None):
    """(arrays, record) of the posterior sweep at c saved under out/posterior_c{c}, or None;
    sweep: the name of its run folder (c6_quick_b1_s0) when there are several (else a
    ValueError naming them)."""
    summ = posterior_summaries(out, c)
    if sweep is not None:
        summ = [p for p in summ if p.parent.name == sweep]
        if not summ:
            raise ValueError(f"sweep: no posterior sweep {sweep!r} under {Path(out) / f'posterior_c{c}'}")
    if len(summ) > 1:
        raise ValueError(f"results: {len(summ)} posterior sweeps at c = {c} ("
                         + ", ".join(p.parent.name for p in summ) + "); give sweep (--sweep) to pick one")
    if not summ:
        return None
    return checks.result_file(summ[0].with_suffix(""), "--results", what="posterior summary",
                              arrays=dict(ns=((1,), "iu"), mass=((2,), "f")), keys=("phases",))


def compare(results: str | Path = "results/reproduce", sgd: str = "sgd", sweep: str | None = None) -> list[CompareRow]:
    """Every SGD transition observed in RESULTS/SGD (sgd: 4-gon start, sgd_random: random
    start) beside its Bayesian counterpart at the same c: predicted n_c (free energy, SPEC 3)
    and the crossing of the measured posterior masses. Reads saved `tms reproduce` results;
    sweep: which posterior sweep (its run folder's name) where several are saved."""
    out = Path(results)
    tr_path = out / sgd / "train_transitions"
    if not (tr_path.with_suffix(".npz").exists() or tr_path.with_suffix(".json").exists()):
        raise ValueError(f"results: no `tms transitions` result at {tr_path}.npz/.json; run tms reproduce first")
    tr = TransitionsResult.load(tr_path, "results")  # checks its training settings too
    post = load_posterior_summary(out, tr.c, sweep)
    return [CompareRow(c=tr.c, src=r.src, dst=r.dst, sgd_count=r.count, median_step=r.median_step, dL=r.dL,
                       dlambda=r.dlambda, dlambda_se=r.dlambda_se, n_c=r.n_c, antecedent=r.antecedent,
                       posterior_crossing="-" if post is None else mass_crossing(
                           post[0]["ns"], post[0]["mass"], post[1]["phases"], r.src, r.dst))
            for r in tr.antecedents]
