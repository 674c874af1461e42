"""`tms susceptibility` as one function (docs/SPEC.md section 7): the feature susceptibilities
and the grouped Bayesian influence function at every n of a posterior sweep, from the beta = 1
ladder draws it saved (a `tms posterior` run folder), their summary and figure.

    run("results/posterior/c6_quick_b1_s0")                          # tms susceptibility --run ...
    run("results/posterior/c6_quick_b1_s0", n_batches=8, figure="s.png")
    run("results/posterior/c6_quick_b1_s0", local="6")    # also local SGLD at the 6-gon (--local 6)

Each data set is regenerated from the data seed its point recorded (tms.theory.data.
sample_inputs, as the sweep made it), so the per-sample losses are those the posterior saw.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tms.bayes import posterior_point, predictions
from tms.bayes.feature_response import FeatureResponse, SusceptibilitySettings, feature_response
from tms.bayes.local_response import LocalResponse, local_feature_response
from tms.core import checks, io
from tms.llc.estimator import LLCSettings
from tms.report.comparison import mass_crossing
from tms.report.plots.susceptibility import OBSERVABLES, plot_susceptibility
from tms.theory import zoo
from tms.theory.data import sample_inputs

QUICK = SusceptibilitySettings()


@dataclass
class Crossing:
    """A pair of phases alpha -> beta with the n where the measured posterior mass of beta
    overtakes alpha's (tms.report.comparison.mass_crossing: a number, '< n', '> n' or '-')."""

    alpha: str
    beta: str
    n: str


@dataclass
class SusceptibilityRun:
    """What `tms susceptibility` made: ns (N,), the FeatureResponse of every n, the measured mass
    crossings, the predicted transitions (tms.theory.zoo.TransitionRow, n_c scaled by beta_lik;
    empty with the reason in transitions_error when none could be predicted), the summary's
    path and the figure's (None: none drawn); local: the same from SGLD localised at the zoo
    point settings.local (None: not asked for)."""

    ns: np.ndarray
    responses: list[FeatureResponse]
    crossings: list[Crossing]
    transitions: list
    transitions_error: str | None
    summary: Path
    figure: Path | None
    local: LocalResponse | None = None


def sweep_summary(run_dir: Path) -> tuple[int, dict, dict]:
    """(c, arrays, record) of the posterior sweep summary in run_dir, or a ValueError."""
    found = sorted(Path(run_dir).glob("summary_c*.json"))
    if not found:
        raise ValueError(f"run_dir: no posterior sweep summary (summary_c*.json) in {run_dir}; "
                         "give a `tms posterior` run folder")
    arrays, rec = io.load_result(found[0].with_suffix(""))
    return int(rec["settings"]["c"]), arrays, rec


def point_draws(run_dir: Path, c: int, n: int) -> tuple[list[np.ndarray], list[np.ndarray], torch.Tensor, dict]:
    """The saved draws of point n: W[s] (R, T, r, c), b[s] (R, T, c) per data set s, the data
    sets X (S, n, c) regenerated from their recorded seeds, and the point's settings."""
    path = posterior_point.point_path(run_dir, c, n)
    if not posterior_point.point_done(run_dir, c, n):
        raise ValueError(f"run_dir: point n = {n} is not complete on disk ({path}); finish the sweep first")
    point = posterior_point.load_point(path)  # checks the result's files
    settings = io.load_json(path.with_suffix(".json"))["settings"]
    r = int(settings["r"])
    thetas = [np.asarray(d["theta"], dtype=np.float64) for d in point.draws]  # (R, T, d) each
    W = [t[..., : r * c].reshape(t.shape[:2] + (r, c)) for t in thetas]
    b = [t[..., r * c:] for t in thetas]
    X = torch.stack([sample_inputs(n, c, int(seed), dtype=torch.float64) for seed in settings["ids"]])
    return W, b, X, settings


def measured_crossings(ns: np.ndarray, mass: np.ndarray, phases: list[str], pairs: list[tuple]) -> list[Crossing]:
    """Mass crossings of the given pairs and of every change of the dominant phase on the grid."""
    top = [phases[i] for i in mass.argmax(1)]
    pairs = list(dict.fromkeys(list(pairs) + [(a, b) for a, b in zip(top, top[1:]) if a != b]))
    return [Crossing(a, b, mass_crossing(ns, mass, phases, a, b)) for a, b in pairs]


def _predicted(c: int, beta_lik: float, predict: bool) -> tuple[list, str | None]:
    if not predict:
        return [], "not asked for (predict=False)"
    try:
        return predictions.predicted_transitions(c, beta_lik), None
    except (ImportError, AttributeError, ValueError, TypeError) as err:
        return [], f"{type(err).__name__}: {err}"


def _summary_arrays(ns: np.ndarray, responses: list[FeatureResponse], prefix: str = "") -> dict:
    """Per observable (norm, bias, feature_loss): the symmetrised self and cross responses (N,)
    with their errors; the BIF's too (influence), and the BIF matrix per n (N, c, c) with its
    errors (influence_matrix). Keys start with prefix ("local_": the local SGLD estimate)."""
    arrays = {} if prefix else dict(ns=ns)
    for name in OBSERVABLES + ("influence",):
        sym = [getattr(resp, name).symmetric for resp in responses]
        for part in ("diagonal", "off_diagonal", "uniform", "contrast"):
            arrays[f"{prefix}{name}_{part}"] = np.array([getattr(s, part) for s in sym])
            arrays[f"{prefix}{name}_{part}_se"] = np.array([getattr(s, f"{part}_se") for s in sym])
    arrays[f"{prefix}influence_matrix"] = np.stack([resp.influence.bif for resp in responses])
    arrays[f"{prefix}influence_matrix_se"] = np.stack([resp.influence.se for resp in responses])
    return arrays


def local_responses(c: int, X_by_n: list[torch.Tensor], data_seeds: list[list[int]], beta_lik: float, seed: int,
                    settings: SusceptibilitySettings) -> LocalResponse:
    """The feature responses from SGLD localised at the zoo point settings.local, on the data
    sets X_by_n[i] (S, n_i, c) of every n of the sweep (data_seeds: theirs), at its
    nbeta = n beta_lik (tms.bayes.local_response)."""
    point = zoo.critical_point(c, settings.local)
    sampler = LLCSettings(n_chains=settings.n_chains, n_burnin=settings.n_burnin, n_draws=settings.n_draws,
                          eps=settings.eps, gamma=settings.gamma, seed=seed)
    return local_feature_response(settings.local, point.W, point.b, X_by_n, data_seeds, beta_lik, sampler,
                                  thin=settings.thin, n_batches=settings.batches())


def run(run_dir: str | Path, settings: SusceptibilitySettings | None = None, *, out: str | Path | None = None,
        figure: str | Path | None = None, predict: bool = True, threads: int | None = None,
        force: bool = False, **changes) -> SusceptibilityRun:
    """Feature susceptibilities at every n of the posterior sweep saved in run_dir (a
    `tms posterior` run folder: its summary and points with their draws), settings (default
    QUICK) with `changes` applied (n_batches=...). Saves the summary (symmetrised self, cross,
    uniform and contrast responses per n with errors; crossings, predicted n_c and run_dir
    relative to OUT in the record, so a moved results folder gives the same record) at
    OUT/susceptibility_c{c} (out default run_dir) and the figure at `figure` (None: none).
    predict: the zoo's predicted n_c (tms.bayes.predictions). A summary of other settings there
    is an error unless force=True (tms.core.io.claim_output). Returns a SusceptibilityRun."""
    settings = (QUICK if settings is None else settings).replace(**changes)
    checks.threads(threads, "threads")
    c, sweep_arrays, sweep_rec = sweep_summary(Path(run_dir))
    fig = None if figure is None else checks.output_file(figure, "figure", suffixes=checks.FIGURE_SUFFIXES)
    out = Path(run_dir) if out is None else Path(checks.output_dir(out, "out"))
    io.claim_output(out / f"susceptibility_c{c}", "susceptibility", settings, force=force)
    ns, beta_lik = np.asarray(sweep_arrays["ns"]), float(sweep_rec["settings"]["beta_lik"])
    if settings.local is not None:
        zoo.critical_point(c, settings.local)  # an unknown label fails before any work
    with checks.torch_threads(threads, torch_cap=1):
        responses, X_by_n, data_seeds = [], [], []
        for n in ns:
            W, b, X, point_settings = point_draws(Path(run_dir), c, int(n))
            responses.append(feature_response(W, b, X, beta_lik, n_batches=settings.batches()))
            X_by_n.append(X)
            data_seeds.append([int(s) for s in point_settings["ids"]])
        local = None if settings.local is None else local_responses(
            c, X_by_n, data_seeds, beta_lik, int(sweep_rec["settings"].get("seed", 0)), settings)
    transitions, why = _predicted(c, beta_lik, predict)
    crossings = measured_crossings(ns, sweep_arrays["mass"], list(sweep_rec["phases"]),
                                   [(t.alpha, t.beta) for t in transitions])
    summary = out / f"susceptibility_c{c}"
    arrays = _summary_arrays(ns, responses)
    if local is not None:
        arrays.update(_summary_arrays(ns, local.responses, "local_"), local_acceptance=local.acceptance)
    with io.recording_kind("susceptibility"), checks.torch_threads(threads, torch_cap=1):  # provenance: the threads it ran with
        io.save_result(summary, arrays, dict(
            settings=settings.as_record(), sweep=sweep_rec["settings"], run_dir=os.path.relpath(run_dir, out), c=c,
            beta_lik=beta_lik, crossings=[dataclasses.asdict(x) for x in crossings],
            transitions=[dataclasses.asdict(t) for t in transitions], transitions_error=why, local=settings.local))
    if fig is not None:
        plot_susceptibility(summary, fig)
    return SusceptibilityRun(ns, responses, crossings, transitions, why, summary, fig, local)
