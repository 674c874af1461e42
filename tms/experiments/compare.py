"""`tms compare`: the SGD transitions of a `tms reproduce` run beside their Bayesian
counterparts (SPEC 3-4), read from its saved results only.

    rows = tms.compare(results="results/reproduce", sgd="sgd")   # list of CompareRow
"""
from __future__ import annotations

from pathlib import Path

from tms.core.records import CompareRow
from tms.report.comparison import compare

SGD_STARTS = ("sgd", "sgd_random")  # the reproduce sub-folders: 4-gon start, random start


def run(results: str | Path = "results/reproduce", sgd: str = "sgd", sweep: str | None = None) -> list[CompareRow]:
    """Every transition SGD made in RESULTS/SGD beside the critical sample size n_c the free
    energy predicts and the n where the measured posterior masses cross (one CompareRow each).
    sweep: the posterior sweep's run folder (c6_quick_b1_s0) when RESULTS holds several at
    that c; several without it is a ValueError naming them (never a silent pick)."""
    if sgd not in SGD_STARTS:
        raise ValueError(f"sgd must be one of {', '.join(SGD_STARTS)}, got {sgd!r}")
    return compare(results=results, sgd=sgd, sweep=sweep)
