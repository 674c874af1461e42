"""Typed result records shared by the report and the commands.

A result a function returns is a dataclass beside that function (tms.dynamics.train.TrainResult,
tms.dynamics.analysis.TransitionsResult, ...); here are the records of no single package:
`CompareRow`, a row of the SGD-beside-Bayes comparison (tms.report.comparison) that
`tms compare` prints. Readers use attributes, never keys of a JSON dict, so a field renamed in
one place cannot be read under its old name in another.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CompareRow:
    """An SGD transition beside its Bayesian counterpart at the same c (`tms compare`):
    the predicted n_c and the crossing of the measured posterior masses (text: a number,
    '< n_min', '> n_max' or '-')."""

    c: int
    src: str
    dst: str
    sgd_count: int
    median_step: float
    dL: float
    dlambda: float | None
    dlambda_se: float | None
    n_c: float | None
    posterior_crossing: str
    antecedent: str
