"""`tms free-energy` as one function (SPEC 3): the measured free-energy differences of the
phases at one c, lambda three ways, the O(1) terms, the summary and its figure, resumable from
the pieces saved under `out` (tms.bayes.free_energy.measure.measure).

    run(6, ns=[200, 300, 400])                          # tms free-energy --ns 200,300,400
    run(6, scale="full", mc_draws=10**6)                # tms free-energy --scale full --mc-draws 1000000
    run(6, settings=QUICK.replace(local=QUICK.local.replace(n=2000)))   # --local-n 2000
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tms.bayes.free_energy.measure import FreeEnergySummary, measure, save_summary
from tms.bayes.settings import FreeEnergySettings, FreeEnergySweep, LocalLadders
from tms.core import checks, io
from tms.report.plots.free_energy import plot_free_energy
from tms.theory import zoo

QUICK = FreeEnergySettings()  # minutes on 2 CPU cores
FULL = FreeEnergySettings(  # the paper's scale: about an hour on 2 cores
    sweep=FreeEnergySweep(seeds=8, replicas=8, n_temps=12, beta_min=0.005, n_warmup=200, n_draws=600, max_steps=48),
    local=LocalLadders(n=2000, seeds=4, replicas=6, n_temps=8, beta_lo=0.2, n_warmup=150, n_draws=500, max_steps=48))
PRESETS = dict(quick=QUICK, full=FULL)


@dataclass(frozen=True)
class FreeEnergyRun:
    """What `tms free-energy` made: the summary (as saved), its folder and the figure."""

    summary: FreeEnergySummary
    out: Path
    figure: Path


def load_datasets(path: str, c: int) -> list[list[np.ndarray]]:
    """The arrays X (n, c) of a .npz, grouped by n (ascending): one grid point per n."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [np.asarray(z[k], dtype=np.float64) for k in sorted(z.files)]
    except (OSError, ValueError) as err:
        raise ValueError(f"data {path}: not a readable .npz of arrays ({err})") from None
    bad = [a.shape for a in arrays if a.ndim != 2 or a.shape[1] != c or a.shape[0] < 2]
    if not arrays or bad:
        raise ValueError(f"data must hold arrays X of shape (n >= 2, c = {c}); got shapes {bad or 'none'}")
    groups: dict[int, list] = {}
    for a in arrays:
        groups.setdefault(a.shape[0], []).append(a)
    return [groups[n] for n in sorted(groups)]


def _seeds_of_data(settings: FreeEnergySettings, preset: FreeEnergySettings, datasets: list, data: str):
    """settings with sweep.seeds = the data sets per n of `data` (what the sweep samples); a
    seeds value given that differs from it (and from the preset's) is an error naming both."""
    counts = sorted({len(group) for group in datasets})
    if settings.sweep.seeds not in (preset.sweep.seeds, *counts):
        raise ValueError(f"seeds {settings.sweep.seeds} conflicts with data: {data} holds "
                         f"{'/'.join(map(str, counts))} data set(s) per n, which replace the seeds (give one of "
                         "--seeds and --data)")
    if len(counts) > 1:
        return settings
    return settings.replace(sweep=settings.sweep.replace(seeds=counts[0]))


def _check(c, ns, data, labels, batch_points, save_every, beta_lik, seed, threads, out, figure, reading) -> Path:
    """run's arguments beside its settings, checked before any work; the figure path."""
    checks.positive_int(c, "c", minimum=4, maximum=8)
    checks.seed(seed, "seed")
    checks.threads(threads)
    checks.positive_float(beta_lik, "beta_lik")
    if batch_points is not None:
        checks.positive_int(batch_points, "batch_points", maximum=1000)
    checks.positive_float(save_every, "save_every", allow_zero=True)
    if ns is not None and data is not None:
        raise ValueError("give ns (synthetic data sets) or data (your own), not both")
    if reading not in ("zoo", "hull"):
        raise ValueError(f"reading must be 'zoo' or 'hull', got {reading!r}")
    unknown = sorted(set(labels or ()) - set(zoo.labels(c)))
    if unknown or (labels is not None and not labels):
        raise ValueError(f"labels: unknown zoo label(s) {', '.join(unknown)} at c = {c}; "
                         f"valid: {', '.join(zoo.labels(c))}")
    checks.output_dir(out, "out")
    return checks.output_file(figure or f"results/figures/free_energy_c{c}.png", "figure",
                              suffixes=checks.FIGURE_SUFFIXES)


def run(c: int = 6, ns: list[int] | None = None, settings: FreeEnergySettings | None = None, *, scale: str = "quick",
        data: str | None = None, labels: list[str] | None = None, batch_points: int | None = None,
        reading: str = "zoo", beta_lik: float = 1.0, seed: int = 0, out: str = "results/free_energy",
        figure: str | None = None, save_every: float = 60.0, threads: int | None = None, progress: bool = True,
        device=None, force: bool = False, **changes) -> FreeEnergyRun:
    """Measure and save the free energies at c (tms.bayes.free_energy.measure.measure) under
    OUT/c{c}_{scale}[_data]_b{beta_lik}_s{seed}, write its summary and the figure (default
    results/figures/free_energy_c{c}.png, `reading` "zoo" or "hull"). settings: the
    measurement's (default the preset of `scale`, quick | full) with `changes` applied (field
    names of tms.bayes.settings.FreeEnergySettings: mc_draws=, sweep=, local=, sgld=; the
    flags of `tms free-energy`). save_every: seconds between checkpoints of the sweep's
    sampler state. ns: the n-grid (default
    tms.bayes.free_energy.measure.QUICK_NS[c]); data: a .npz of your own data sets instead of
    seeds. threads: torch threads during the run (default 1: many small tensor ops; the
    caller's count is restored). A measurement of other settings in the run folder is an error
    unless force=True (tms.core.io.claim_output); with data, settings.sweep.seeds is the data
    sets per n the file holds (another value given is an error)."""
    checks.scale(scale, tuple(PRESETS))
    settings = (PRESETS[scale] if settings is None else settings).replace(**changes)
    fig_path = _check(c, ns, data, labels, batch_points, save_every, beta_lik, seed, threads, out, figure, reading)
    datasets = load_datasets(data, c) if data is not None else None
    if datasets is not None:
        settings = _seeds_of_data(settings, PRESETS[scale], datasets, data)
    device = checks.device(device)
    run_dir = Path(out) / f"c{c}_{scale}{'_data' if datasets is not None else ''}_b{beta_lik:g}_s{seed}"
    io.claim_output(run_dir / f"summary_c{c}", "free-energy",
                    dict(c=c, seed=seed, beta_lik=beta_lik, **settings.as_record()), force=force)
    with checks.torch_threads(threads, torch_cap=1), io.recording_kind("free-energy"):
        res = measure(c, ns, settings, seed=seed, scale=scale, out_dir=run_dir, datasets=datasets, beta_lik=beta_lik,
                      progress=progress, labels=labels, batch_points=batch_points, save_every=save_every,
                      device=device)
    res.settings["reading"] = reading
    with io.recording_kind("free-energy"), checks.torch_threads(threads, torch_cap=1):  # provenance: threads it ran with
        save_summary(run_dir / f"summary_c{c}", res)
    return FreeEnergyRun(res, run_dir, plot_free_energy(run_dir / f"summary_c{c}", fig_path, reading=reading))
