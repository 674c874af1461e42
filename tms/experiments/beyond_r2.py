"""The r = 3 study (docs/beyond_r2.md): the census of (r, c) (default r = 3, c = 7), SGLD lambdas at
its lowest local minima, the free-energy terms and predicted n_c between census minima, the
posterior phase mass against n read by the census, and SGD from random starts with plateaus on
census levels and their Bayesian antecedents. Every part is saved under `out` and reused.

    from tms.experiments import beyond_r2
    res = beyond_r2.run(beyond_r2.QUICK, out="results/beyond_r2")    # tms beyond-r2
    res = beyond_r2.run(beyond_r2.TINY, out="x", figures="x/figs", seed=1)  # tms beyond-r2 --scale tiny --seed 1
    res.transitions, res.crossings, res.sgd_counts
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tms.bayes import posterior
from tms.bayes.posterior import PhaseSweep
from tms.bayes.settings import PosteriorSettings
from tms.core import checks, io
from tms.core.settings import Settings, setting
from tms.dynamics.train import TrainResult, TrainSettings, train_sgd
from tms.dynamics.transitions import Segmentation, census_levels, default_tol, segment
from tms.llc.census import CensusLLC, census_llcs
from tms.report.plots.census import plot_beyond_r2
from tms.theory import census as census_mod
from tms.theory import census_free_energy
from tms.theory.census import Census, CensusSettings
from tms.theory.zoo import TransitionRow

KIND = "beyond-r2"  # the command that makes the study's records (tms.core.io.recording_kind)
SGD_LEVEL_GAP = 2e-3  # census levels closer than this share one SGD level (an SGD plateau sits O(1/n) above its level)
CENSUS_PRESETS = dict(tiny=CensusSettings(n_prior=0, n_gd=0, frames=False, max_iter=60), quick=census_mod.QUICK,
                      full=census_mod.FULL)


@dataclass(frozen=True)
class BeyondR2Settings(Settings):
    """Every setting of the r = 3 study (module docstring); presets TINY, QUICK, FULL."""

    r: int = setting(3, "hidden dims", minimum=2, maximum=census_mod.MAX_R)
    c: int = setting(7, "features", minimum=3, maximum=census_mod.MAX_C)
    census_scale: str = setting("quick", "census preset (tms.theory.census)", choices=tuple(CENSUS_PRESETS))
    n_minima: int = setting(5, "lowest local minima of the census given an SGLD lambda", minimum=0, maximum=100)
    llc_chains: int = setting(8, "SGLD chains per census minimum", minimum=1, maximum=1024)
    llc_steps: int = setting(4000, "SGLD burn-in steps and as many kept draws (the lab's protocol: 4000)",
                             minimum=20, maximum=10**6)
    ns: tuple[int, ...] = setting((200, 400, 700, 1000, 1500, 2500, 4000), "posterior n-grid", positive=True)
    seeds: int = setting(2, "posterior data sets per n", minimum=1, maximum=100)
    replicas: int = setting(4, "replica-exchange ladders per data set", minimum=1, maximum=1000)
    n_temps: int = setting(8, "temperatures per ladder", minimum=1, maximum=100)
    n_warmup: int = setting(60, "posterior warm-up rounds", minimum=4, maximum=10**5)
    n_draws: int = setting(100, "posterior sampling rounds (budget)", minimum=4, maximum=10**5)
    sgd_runs: int = setting(16, "SGD runs from random starts (0: no SGD)", minimum=0, maximum=10**4)
    epochs: int = setting(1000, "SGD epochs (n = 1000, batch 20, lr 0.005: SPEC 4)", minimum=1, maximum=10**5)
    sigma: float = setting(1.0, "std of the random SGD start's W entries", positive=True)
    seed: int = setting(0, "seed of every part", minimum=0)

    def posterior_settings(self) -> PosteriorSettings:
        """The posterior sweep's sampler: the quick preset with this study's sizes."""
        return PosteriorSettings(seeds=self.seeds, replicas=self.replicas, n_temps=self.n_temps,
                                 n_warmup=self.n_warmup, n_draws=self.n_draws,
                                 min_draws=min(self.n_draws, PosteriorSettings().min_draws),
                                 block=min(self.n_draws, PosteriorSettings().block))

    def train_settings(self) -> TrainSettings:
        return TrainSettings(runs=max(self.sgd_runs, 1), epochs=self.epochs, init="random", sigma=self.sigma,
                             r=self.r, c=self.c, seed=self.seed)


TINY = BeyondR2Settings(r=3, c=5, census_scale="tiny", n_minima=2, llc_chains=2, llc_steps=40, ns=(100, 400),
                        seeds=1, replicas=2, n_temps=3, n_warmup=6, n_draws=6, sgd_runs=2, epochs=3)
QUICK = BeyondR2Settings()  # minutes on 2 shared CPU cores
FULL = BeyondR2Settings(census_scale="full", n_minima=8, llc_chains=16, ns=(100, 200, 300, 400, 500, 700, 1000, 1300,
                                                                             1600, 2000, 2500, 3000, 4000, 5000),
                        seeds=4, replicas=8, n_temps=16, n_warmup=200, n_draws=300, sgd_runs=32, epochs=4500)
PRESETS = dict(tiny=TINY, quick=QUICK, full=FULL)


@dataclass(frozen=True)
class Crossing:
    """An observed crossing of two phase masses: beta overtakes alpha at n (log-linear
    interpolation on the grid), n_se by the delta method from the masses' standard errors
    (covariance of the two masses ignored)."""

    alpha: str
    beta: str
    n: float
    n_se: float


@dataclass
class BeyondR2Run:
    """run's result: the census, SGLD lambdas, free-energy terms, predicted transitions (n_c), the
    posterior sweep with observed crossings, and SGD plateaus with transition counts and their
    antecedent rows (n_c of each observed dL < 0 step; None where dlambda <= 0 or unknown); the
    figures drawn (empty unless run was given figures=)."""

    settings: BeyondR2Settings
    census: Census
    llcs: list[CensusLLC]
    terms: list[census_free_energy.CensusTerms]
    transitions: list[TransitionRow]
    posterior: PhaseSweep
    crossings: list[Crossing]
    sgd: Segmentation | None
    sgd_counts: dict
    antecedents: list[TransitionRow]
    out: Path
    figures: list[Path] = field(default_factory=list)


def observed_crossings(ns, phases: list[str], mass: np.ndarray, mass_se: np.ndarray) -> list[Crossing]:
    """Every strict sign change of mass[beta] - mass[alpha] from - to + between grid neighbours (N,),
    for every pair of phases holding 5% of the mass somewhere; 'other' excluded."""
    x = np.log(np.asarray(ns, dtype=float))
    keep = [i for i, p in enumerate(phases) if p != "other" and mass[:, i].max() >= 0.05]
    out = []
    for a in keep:
        for b in keep:
            d = mass[:, b] - mass[:, a]
            s = np.sqrt(mass_se[:, a] ** 2 + mass_se[:, b] ** 2)
            for i in np.flatnonzero((d[:-1] < 0) & (d[1:] > 0)):  # two vanishing masses do not cross
                d0, d1, dx = d[i], d[i + 1], x[i + 1] - x[i]
                xc = x[i] + dx * -d0 / (d1 - d0)
                se_x = dx * math.hypot(d1 * s[i], d0 * s[i + 1]) / (d1 - d0) ** 2
                out.append(Crossing(phases[a], phases[b], float(math.exp(xc)), float(math.exp(xc) * se_x)))
    return sorted(out, key=lambda c: c.n)


def _sgd(settings: BeyondR2Settings, census: Census, llcs: dict, out: Path, progress: bool):
    """SGD from random starts, segmented on census levels (tms.dynamics.transitions.census_levels)."""
    if not settings.sgd_runs:
        return None, {}, []
    tr: TrainResult = train_sgd(settings.train_settings(), path=out / "sgd", progress=progress)
    levels = census_levels(census, llcs, tie=SGD_LEVEL_GAP)
    seg = segment(tr.pop_loss.numpy(), tr.steps.numpy(), levels, tol=default_tol(levels))
    counts = {f"{a} -> {b}": n for (a, b), n in seg.transition_counts().items()}
    by = {q.label: q for q in census.points}
    lam = {lab: v for lab, v in zip(levels.labels, levels.llc)}
    rows = [census_free_energy.transition_row(by[a], by[b], _finite(lam.get(a)), _finite(lam.get(b)))
            for a, b in seg.transition_counts()]
    return seg, counts, rows


def _finite(v) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def run(settings: BeyondR2Settings = QUICK, *, out: str | Path = "results/beyond_r2", figures: str | Path | None = None,
        progress: bool = False, threads: int | None = None, device=None, force: bool = False,
        **changes) -> BeyondR2Run:
    """The r = 3 study with `settings` (and `changes`, field names of BeyondR2Settings), every part
    saved under `out` and reused: census (out/census), SGLD lambdas (out/llc), posterior points
    (out/posterior), SGD (out/sgd), the summary (out/summary). figures: a folder for census.png,
    census_columns.png and posterior.png (tms.report.plots.census.plot_beyond_r2; None: none).
    A study of other settings in `out` is an error unless force=True (tms.core.io.claim_output;
    then its parts are recomputed). device is checked and accepted: the study runs on the CPU."""
    settings = settings.replace(**changes) if changes else settings
    out = Path(checks.output_dir(out, "out"))
    figs = None if figures is None else Path(checks.output_dir(figures, "figures"))
    checks.device(device)
    threads = checks.threads(threads, "threads")
    _claim(out, settings, force)
    with checks.torch_threads(threads, torch_cap=1), io.recording_kind(KIND):
        result = _compute(settings, out, progress)
        posterior.save_summary(out / "posterior_summary", result.posterior)  # the phase-mass figure's input
        save_summary(out / "summary", result)
    if figs is not None:
        result.figures = plot_beyond_r2(out, figs)
    return result


def _claim(out: Path, settings: BeyondR2Settings, force: bool) -> None:
    """out holds nothing but this study (tms.core.io.claim_output on its summary); with force, an
    SGD result of other settings (which train_sgd refuses to overwrite) is removed first, and every
    other part is recomputed over its old one by its own reuse rule."""
    io.claim_output(out / "summary", KIND, settings, force=force)
    found = io.output_problem(out / "sgd", KIND, settings.train_settings())
    if force and found is not None and found.overridable:
        io.remove_result(out / "sgd")


def _compute(settings: BeyondR2Settings, out: Path, progress: bool) -> BeyondR2Run:
    cs = census_mod.census(settings.r, settings.c, CENSUS_PRESETS[settings.census_scale], out=out / "census",
                           progress=progress)
    llcs = census_llcs(cs, settings.n_minima, settings.llc_chains, settings.llc_steps, settings.seed, out=out / "llc")
    supplied = {q.label: q.sgld for q in llcs if q.rank_llc is None and math.isfinite(q.sgld)}
    sweep = posterior.phase_sweep(settings.c, list(settings.ns), settings.posterior_settings(), r=settings.r,
                                  seed=settings.seed, out_dir=out / "posterior", census=cs, llcs=supplied,
                                  progress=progress)
    seg, counts, antecedents = _sgd(settings, cs, supplied, out, progress)
    return BeyondR2Run(settings, cs, llcs, census_free_energy.free_energy_terms(cs, supplied),
                       census_free_energy.census_transitions(cs, supplied), sweep,
                       observed_crossings(sweep.ns, sweep.phases, sweep.mass, sweep.mass_se), seg, counts,
                       antecedents, out)


def save_summary(path: Path, res: BeyondR2Run) -> None:
    """The study's numbers (tms.core.io): phase mass arrays, and every table as JSON rows."""
    arrays = dict(ns=res.posterior.ns, mass=res.posterior.mass, mass_se=res.posterior.mass_se,
                  occupancy=res.posterior.occupancy)
    asdict = dataclasses.asdict
    record = dict(settings=res.settings.as_record(), phases=list(res.posterior.phases),
                  llcs=[asdict(q) for q in res.llcs], terms=[asdict(t) for t in res.terms],
                  transitions=[asdict(t) for t in res.transitions], crossings=[asdict(x) for x in res.crossings],
                  sgd_counts=res.sgd_counts, antecedents=[asdict(t) for t in res.antecedents],
                  census=[dict(label=q.label, loss=q.loss, kind=q.kind, index=q.index, rank=q.rank, llc=q.llc,
                               prior=q.prior, multiplicity=q.multiplicity, found=q.found) for q in res.census.points])
    io.save_result(path, arrays, record)
