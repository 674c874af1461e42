"""Typed result records passed between analyses, the report, the plots and the commands.

A record is a dataclass with `save(path)` / `load(path)` over tms.core.io's checksummed
PATH.npz + PATH.json pair: arrays go to the .npz, every other field to the .json. Readers
use attributes, never keys of a JSON dict, so a field renamed in one place cannot be read
under its old name in another. `load` checks the files' integrity and fields, and raises a
ValueError naming the file and what is missing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tms.core import checks, io


@dataclass
class Antecedent:
    """One observed SGD transition src -> dst (all runs) and its Bayesian counterpart (SPEC 3-4).

    lam_*: lambda used (zoo theory where it has one, else the plateau estimate), *_se its s.e.
    and *_from "theory" | "estimate" | "none"; lam_*_est: the plateau estimate whatever the
    source (a check of the estimator where theory exists). n_c: predicted critical sample
    size (None: no root). antecedent: "yes" | "no" | "uphill" | "unknown", plus
    " (sign uncertain)" when |dlambda| < 2 s.e. geometry_*: share of the plateau checkpoints
    that tms.theory.phases.classify gives the level's label (None when not computed).
    """

    src: str
    dst: str
    count: int
    first_step: int
    median_step: float
    L_src: float
    L_dst: float
    dL: float
    lam_src: float | None
    lam_src_se: float | None
    lam_src_from: str
    lam_dst: float | None
    lam_dst_se: float | None
    lam_dst_from: str
    lam_src_est: float | None
    lam_src_est_se: float | None
    lam_dst_est: float | None
    lam_dst_est_se: float | None
    dlambda: float | None
    dlambda_se: float | None
    dc: float
    n_c: float | None
    antecedent: str
    geometry_src: float | None = None
    geometry_dst: float | None = None


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


TRANSITION_ARRAYS = dict(level_index=((2,), "iu"), on_level=((2,), "b"), plateau_run=((1,), "iu"),
                         plateau_level=((1,), "iu"), plateau_start=((1,), "iu"), plateau_end=((1,), "iu"))


@dataclass
class TransitionsResult:
    """What `tms.experiments.transitions.analyse` finds in a `tms train` result (SPEC 4).

    arrays: level_index, on_level (T, R); plateau_run/level/start/end (P,); classify_label,
    level_label (T, R) str; with LLC also llc_index (T',), llc, llc_se, llc_ok (T', R).
    levels: {labels, loss, llc, prior} of the zoo energy table used; plateaus/transitions:
    lists of tms.dynamics.transitions.Plateau / Transition fields; sequence_counts: [[labels], runs];
    plateau_llc: {label: [mean, se, n_plateaus, n_estimates]}; antecedents: Antecedent rows;
    bayesian_unseen: zoo transitions out of visited phases never seen along SGD.
    """

    arrays: dict
    input: str
    train: dict
    tol: float
    min_points: int
    min_span: float
    prior: bool
    beta_lik: float
    levels: dict
    plateau_labels: list
    plateaus: list
    transitions: list
    sequence_counts: list
    classify_agreement: dict
    classify_other: dict
    antecedents: list
    bayesian_unseen: list
    llc_settings: dict | None = None
    plateau_llc: dict = field(default_factory=dict)
    segmented_on: str = "population loss"
    figure_run: int | None = None  # the run drawn in sgd_trajectory.png

    def save(self, path) -> None:
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "arrays"}
        record["antecedents"] = [dataclasses.asdict(a) for a in self.antecedents]
        io.save_result(path, self.arrays, record)

    @classmethod
    def load(cls, path, name: str = "--input") -> "TransitionsResult":
        keys = tuple(f.name for f in dataclasses.fields(cls) if f.name != "arrays" and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
        arrays, record = checks.result_file(path, name, what="`tms transitions` result", keys=keys,
                                            arrays=TRANSITION_ARRAYS)
        rows = record.get("antecedents")
        fields = {f.name for f in dataclasses.fields(Antecedent)}
        if not isinstance(rows, list) or not all(isinstance(r, dict) and set(r) <= fields for r in rows):
            raise ValueError(f"{name}: {Path(path)}.json: antecedents must be a list of Antecedent rows")
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in record.items() if k in known}
        kw["antecedents"] = [Antecedent(**r) for r in rows]
        return cls(arrays={k: np.asarray(v) for k, v in arrays.items()}, **kw)

    @property
    def c(self) -> int:
        return int(self.train["c"])
