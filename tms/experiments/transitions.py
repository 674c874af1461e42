"""`tms transitions`: plateaus on zoo levels, the LLC along SGD trajectories and the
Bayesian-antecedent table of a saved training result (SPEC 4), saved, with its figures.

    run("results/sgd/train", llc_points=40, n_chains=8)        # tms transitions --llc-points 40 --n-chains 8
    run("results/sgd/train", TransitionsSettings(...), out=..., figures=None)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from tms.core import checks, io
from tms.core.cluster import check_cluster
from tms.dynamics.analysis import TransitionsResult, TransitionsSettings, analyse_training
from tms.dynamics.train import load_train
from tms.report.plots.sgd import sgd_many, sgd_trajectory

FIGURES = ("sgd_trajectory.png", "sgd_many.png")


def run(input: str | Path = "results/sgd/train", settings: TransitionsSettings | None = None, *,
        out: str | Path | None = None, figures: str | Path | None = "results/figures", device=None,
        threads: int | None = None, progress: bool = True, scheduler: str | None = None,
        workers: int | None = None, force: bool = False, **changes) -> TransitionsResult:
    """Plateaus, transitions, LLC along the trajectories and the Bayesian-antecedent table of
    a saved `tms train` result at INPUT (tms.dynamics.analysis.analyse_training), saved to OUT
    (default INPUT_transitions; the LLC estimates at OUT_llc, reused when their settings
    match) as a TransitionsResult, with the figures sgd_trajectory.png and sgd_many.png in
    `figures` (None: no figures).

    settings: a TransitionsSettings (default TransitionsSettings()) with `changes` applied
    (its field names, the flags of `tms transitions`: n_chains=8, llc=False, ...). threads:
    the run's threads (None: every core for the compiled SGLD, one for torch; the numbers do
    not depend on it). scheduler / workers: the LLC checkpoint blocks as Dask
    tasks (tms.core.cluster; the same numbers). OUT (and OUT_llc) never is the input, and an
    analysis with other settings, or another kind of record, there is a ValueError naming it
    (tms.core.io.claim_output); force=True replaces an analysis of other settings.
    """
    settings = (settings or TransitionsSettings()).replace(**changes)
    check_cluster(scheduler, workers)
    threads = checks.threads(threads, "threads")
    train = load_train(input, "input")
    out_path, fig_dir = _check_paths(input, out, figures, settings, train.W.shape[1])
    io.claim_output(out_path, "transitions", settings, inputs=(input,), force=force)
    io.claim_output(out_path.with_name(out_path.stem + "_llc"), "transitions", inputs=(input,),
                    name="out (its LLC result)")
    with checks.torch_threads(threads, torch_cap=1), io.recording_kind("transitions"):
        result = analyse_training(train, settings, llc_path=out_path.with_name(out_path.stem + "_llc"),
                                  device=device, progress=progress, scheduler=scheduler, workers=workers)
        result = dataclasses.replace(result, input=str(input))
        result.save(out_path)  # inside: provenance records the threads it ran with
    if fig_dir is not None:
        fig_dir.mkdir(parents=True, exist_ok=True)
        sgd_trajectory(input, out_path, fig_dir / FIGURES[0], run=result.figure_run)
        sgd_many(input, out_path, fig_dir / FIGURES[1])
    return result


def _check_paths(input, out, figures, settings: TransitionsSettings, n_runs: int) -> tuple[Path, Path | None]:
    """The output paths checked before any work, and the settings against the input's R runs;
    (result path, figures folder or None). Warnings on the SGLD settings go to stderr."""
    if settings.figure_run is not None and settings.figure_run >= n_runs:
        raise ValueError(f"figure_run must be a run of the input, 0..{n_runs - 1}, got {settings.figure_run}")
    if settings.llc:
        for note in checks.sgld_hyper(settings.eps, settings.gamma, eps_name="eps", gamma_name="gamma"):
            checks.warn(note)
    inp = checks.result_stem(input)
    out_path = checks.output_stem(out or inp.with_name(inp.stem + "_transitions"), "out")
    checks.output_stem(out_path.with_name(out_path.stem + "_llc"), "out (its LLC result)")
    if figures is None:
        return out_path, None
    fig_dir = checks.output_dir(figures, "figures")
    for name in FIGURES:
        checks.output_file(fig_dir / name, "figures")
    return out_path, fig_dir
