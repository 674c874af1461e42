"""`tms posterior` as one function (SPEC 3): posterior phase mass against n at one c, saved
point by point and resumable, its summary and figure (tms.bayes.posterior.phase_sweep, on a
Dask cluster with scheduler= / workers=: tms.bayes.tasks.phase_sweep).

    run(6)                                         # tms posterior --c 6
    run(6, ns=[100, 300, 600], n_draws=200)        # tms posterior --ns 100,300,600 --n-draws 200
    run(6, scale="full", figure="post.png")        # tms posterior --scale full --figure post.png
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tms.bayes import posterior, predictions
from tms.bayes import tasks as bayes_tasks
from tms.bayes.posterior import PhaseSweep
from tms.bayes.settings import PosteriorSettings
from tms.core import checks, io, progress as progress_bar, work
from tms.llc.estimator import PROTOCOL
from tms.llc.zoo import zoo_llc
from tms.report.plots.posterior import plot_phase_sweep
from tms.theory import zoo

QUICK = PosteriorSettings()  # minutes on 2 CPU cores
# paper scale: grids of SPEC 3, 4 data sets per n, 12 ladders each; rounds of 40 leapfrog ticks (a
# trajectory is at most 40 steps: the measured U-turn lengths are ~25), at most 400 sampling rounds
# per data set, fewer where every mass is within target_se
FULL = PosteriorSettings(seeds=4, n_chains=64, replicas=12, n_temps=16, beta_min=0.003, n_warmup=200, n_draws=400,
                         max_steps=40, plain_draws=200, target_se=0.02, block=50, min_draws=150)
PRESETS = dict(quick=QUICK, full=FULL)
# n-grids per scale (SPEC 3): c = 6 up to 2000, other c (key 0) up to 600
GRIDS = dict(quick={6: (100, 200, 300, 450, 600, 800, 1100, 1500, 2000), 0: (100, 150, 200, 300, 400, 600)},
             full={6: tuple(range(100, 2001, 100)), 0: tuple(range(100, 601, 50))})


def posterior_grid(c: int, scale: str = "quick") -> list[int]:
    """The default n-grid of the posterior sweep at c for scale quick | full (SPEC 3)."""
    checks.scale(scale, tuple(GRIDS))
    return list(GRIDS[scale].get(c, GRIDS[scale][0]))


def posterior_settings(scale: str = "quick") -> PosteriorSettings:
    """The sampler settings of scale quick | full (QUICK, FULL)."""
    return PRESETS[checks.scale(scale, tuple(PRESETS))]


def posterior_run_dir(out: str | Path, c: int, scale: str, beta_lik: float, seed: int) -> Path:
    """Where run keeps the points and summary of one sweep under `out`."""
    return Path(out) / f"c{c}_{scale}_b{beta_lik:g}_s{seed}"


def _check(c, beta_lik, seed, threads, batch_points, save_every, llcs, out, figure) -> Path | None:
    """run's arguments beside its settings, checked before any sampling; the figure path."""
    checks.positive_int(c, "c", minimum=3, maximum=16)
    checks.seed(seed, "seed")
    checks.threads(threads, "threads")
    checks.positive_float(beta_lik, "beta_lik")
    if batch_points is not None:
        checks.positive_int(batch_points, "batch_points")
    checks.positive_float(save_every, "save_every", allow_zero=True)
    for label, value in llcs.items():
        checks.positive_float(value, f"llcs[{label!r}]", allow_zero=True)
    if llcs:
        zoo.critical_points(c)  # solved once (seconds at large c), then cached
        unknown = sorted(set(llcs) - set(zoo.labels(c)))
        if unknown:
            raise ValueError(f"llcs: unknown zoo label(s) {', '.join(unknown)} at c = {c}; "
                             f"valid: {', '.join(zoo.labels(c))}")
    checks.output_dir(out, "out")
    return None if figure is None else checks.output_file(figure, "figure", suffixes=checks.FIGURE_SUFFIXES)


def _check_options(c: int, settings: PosteriorSettings, llcs: dict, llc_override: bool, given: set) -> None:
    """Options that contradict each other or the zoo: ValueErrors naming both. min_draws is
    judged when given (a preset's floor above a small n_draws only means no early stop)."""
    if "min_draws" in given and settings.min_draws > settings.n_draws:
        raise ValueError(f"min_draws {settings.min_draws} exceeds n_draws {settings.n_draws}: the precision "
                         "target cannot stop a data set before its budget ends (--min-draws, --n-draws)")
    if llcs and not llc_override:
        theory = {q.label: q.llc for q in zoo.critical_points(c) if q.llc is not None}
        clash = sorted(set(llcs) & set(theory))
        if clash:
            raise ValueError("llcs (--llc) " + ", ".join(f"{lab}={llcs[lab]:g}" for lab in clash) + " would replace "
                             "the zoo's theory lambda " + ", ".join(f"{lab} = {theory[lab]:g}" for lab in clash)
                             + "; --llc is for labels the zoo lacks: give llc_override (--llc-override) to replace")


@dataclass
class PosteriorRun:
    """What `tms posterior` made: the sweep (tms.bayes.posterior.PhaseSweep), the folder of its
    points and summary, the summary's path, and the notes said on the figure and printed."""

    sweep: PhaseSweep
    run_dir: Path
    summary: Path
    notes: list


def _note(res: PhaseSweep, text: str) -> None:
    """Append a line to the note the figure prints under the sweep (omitted_transitions)."""
    res.omitted_transitions = (res.omitted_transitions + "\n" if res.omitted_transitions else "") + text


def _lambda_notes(res: PhaseSweep, c: int, beta_lik: float, seed: int, llcs: dict, estimate: bool) -> list[str]:
    """Lines naming the lambdas not from zoo theory behind the predicted n_c: supplied ones,
    and (estimate) SGLD estimates (tms.llc.zoo.zoo_llc, the lab's protocol with 16 chains) of
    those still missing among the phases seen."""
    notes = []
    used = sorted({lab for t in res.transitions for lab in (t.alpha, t.beta)} & set(llcs))
    if used:
        notes.append("lambda supplied with --llc (not zoo theory): "
                     + ", ".join(f"{lab} = {llcs[lab]:.2f}" for lab in used))
    if estimate:
        todo = [lab for lab in predictions.missing_llc_labels(c, res) if lab not in llcs]
        est = zoo_llc(c, todo, PROTOCOL.replace(n_chains=16, seed=seed)).estimates() if todo else {}
        llcs.update({lab: v for lab, (v, _) in est.items() if np.isfinite(v)})
        predictions.add_predictions(res, c, beta_lik, llcs)
        if est:
            notes.append("lambda by SGLD at the zoo point (population loss, nbeta = 1000/log 1000, eps 1e-3, "
                         "gamma 1): " + ", ".join(_estimate_text(lab, v, se) for lab, (v, se) in est.items()))
    return notes


def _estimate_text(label: str, value: float, se: float) -> str:
    """'lambda(L) = v +- se', or why there is no s.e. (flagged by the estimator)."""
    if np.isfinite(se):
        return f"lambda({label}) = {value:.2f} +- {se:.2f}"
    return f"lambda({label}) = {value:.2f} (no standard error: fewer than 2 chains kept; FLAGGED, not trusted)"


def _announce_reused(run_dir: Path, c: int, ns: list, fresh: list) -> None:
    """`reused: K of N posterior points ... from RUN_DIR` when this run did not write all of them."""
    names = {Path(p).name for p in fresh}
    reused = [n for n in ns if f"posterior_c{c}_n{n}" not in names]
    if reused:
        which = ", ".join(map(str, reused[:6])) + (", ..." if len(reused) > 6 else "")
        progress_bar.reused(f"{len(reused)} of {len(ns)} posterior points (n = {which}; same settings)", run_dir)


def run(c: int = 6, ns=None, settings: PosteriorSettings | None = None, *, scale: str = "quick",
        beta_lik: float = 1.0, seed: int = 0, out: str | Path = "results/posterior", figure: str | Path | None = None,
        llcs: dict[str, float] | None = None, llc_estimate: bool = False, predict: bool = True,
        batch_points: int | None = None, save_every: float = 60.0, device: str | torch.device = "cpu",
        threads: int | None = None, progress: bool = False, scheduler: str | None = None, workers: int | None = None,
        llc_override: bool = False, force: bool = False, **changes) -> PosteriorRun:
    """The posterior sweep of `tms posterior` at c: settings (default the preset of `scale`,
    quick | full) with `changes` applied (fields of tms.bayes.settings.PosteriorSettings, the
    command's flags: n_draws=200, ...), over ns (default posterior_grid(c, scale)), saved
    point by point under OUT/c{c}_{scale}_b{beta_lik}_s{seed} (resumable, checkpointed every
    save_every seconds), its summary there and the figure at `figure` (None: no figure).

    llcs: lambdas for zoo labels the zoo lacks (said on the figure); one for a label with a zoo
    theory lambda is an error unless llc_override=True. force: replace a sweep of other
    settings in the run folder (without it that is an error, tms.core.io.claim_output).
    llc_estimate: estimate by
    SGLD the ones still missing among the phases seen. save_every: seconds between
    checkpoints of the unfinished points' sampler state. threads: torch threads while it runs
    (None: unchanged). scheduler / workers: the n-grid as Dask tasks (the same numbers).
    Returns a PosteriorRun."""
    settings = (posterior_settings(scale) if settings is None else settings).replace(**changes)
    ns = posterior_grid(c, scale) if ns is None else list(ns)
    llcs = dict(llcs or {})
    fig = _check(c, beta_lik, seed, threads, batch_points, save_every, llcs, out, figure)
    _check_options(c, settings, llcs, llc_override, given=set(changes))
    run_dir = posterior_run_dir(out, c, scale, beta_lik, seed)
    io.claim_output(run_dir / f"summary_c{c}", "posterior", dict(c=c, beta_lik=float(beta_lik), seed=seed,
                                                                 **settings.as_record()), force=force)
    work.announce(work.posterior(points=len(ns), seeds=settings.seeds, replicas=settings.replicas,
                                 n_temps=settings.n_temps, rounds=settings.n_warmup + settings.n_draws,
                                 max_steps=settings.max_steps, n_chains=settings.n_chains,
                                 plain_draws=settings.plain_draws), progress=progress)
    if settings.n_temps == 1:
        checks.warn("n_temps 1: no tempering, so replica exchange is plain HMC and its 'posterior mass' is chain "
                    "occupancy (basins of the start), not posterior mass; labelled so on the figure")
    n_before = len(io.written())
    with checks.torch_threads(threads, torch_cap=1), io.recording_kind("posterior"):
        res = bayes_tasks.phase_sweep(c, ns, settings, beta_lik=beta_lik, seed=seed, out_dir=run_dir,
                                      progress=progress, batch_points=batch_points, save_every=save_every,
                                      device=checks.device(device),
                                      predict=predict, llcs=llcs, scheduler=scheduler, workers=workers)
        notes = _lambda_notes(res, c, beta_lik, seed, llcs, llc_estimate and predict)
    if scheduler is None and workers is None:  # a Dask worker's writes are not seen in this process
        _announce_reused(run_dir, c, ns, io.written()[n_before:])
    if settings.n_temps == 1:
        notes.append("n_temps 1: no tempering; the 'posterior mass' shown is chain occupancy of the ladder chains")
    for line in notes:
        _note(res, line)
    summary = run_dir / f"summary_c{c}"
    with io.recording_kind("posterior"), checks.torch_threads(threads, torch_cap=1):  # provenance: the threads it ran with
        posterior.save_summary(summary, res)
    if fig is not None:
        plot_phase_sweep(summary, fig)
    return PosteriorRun(res, run_dir, summary, notes)
