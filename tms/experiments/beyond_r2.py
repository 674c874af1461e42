"""The r = 3 study (docs/beyond_r2.md): the census of (r, c) (default r = 3, c = 7), SGLD lambdas at
its lowest local minima, the free-energy terms and predicted n_c between census minima, the
posterior phase mass against n read by the census, and SGD from random starts with plateaus on
census levels and their Bayesian antecedents. Every part is saved under `out` and reused.

    from tms.experiments import beyond_r2
    res = beyond_r2.run(beyond_r2.QUICK, out="results/beyond_r2")
    res.transitions, res.crossings, res.sgd_counts
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tms.bayes import posterior
from tms.bayes.posterior import PhaseSweep
from tms.bayes.settings import PosteriorSettings
from tms.core import checks, io
from tms.core.settings import Settings, setting
from tms.dynamics.train import TrainResult, TrainSettings, train_sgd
from tms.dynamics.transitions import Segmentation, census_levels, default_tol, segment
from tms.llc.estimator import PROTOCOL, estimate_llc
from tms.theory import census as census_mod
from tms.theory import census_free_energy
from tms.theory.census import Census, CensusSettings
from tms.theory.zoo import TransitionRow

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
class CensusLLC:
    """The SGLD lambda of one census minimum (tms.llc, the lab's protocol on the population loss)
    beside rank / 2 (None where L is only C^1 or the point is not minimally singular)."""

    label: str
    loss: float
    kind: str
    rank_llc: float | None
    sgld: float
    sgld_se: float


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
    antecedent rows (n_c of each observed dL < 0 step; None where dlambda <= 0 or unknown)."""

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


def census_llcs(census: Census, n_minima: int, n_chains: int, steps: int, seed: int, *,
                out: Path | None = None) -> list[CensusLLC]:
    """SGLD lambdas at the n_minima lowest local minima, one batched call (population loss,
    nbeta = n / log n at n = 1000, eps 1e-3, gamma 1: tms.llc.estimator.PROTOCOL); saved at `out`
    and reused there (tms.core.io.reuse_problem: the same census and sampler settings)."""
    pts = [q for q in census.points if q.kind in census_mod.PHASE_KINDS][:n_minima]
    ident = dict(census=census.identity(), labels=[q.label for q in pts], n_chains=n_chains, steps=steps, seed=seed)
    if out is not None and io.reuse_problem(out, ident) is None:
        return [CensusLLC(**row) for row in io.load_result(out)[1]["rows"]]
    rows = _sgld(pts, n_chains, steps, seed)
    if out is not None:
        io.save_result(out, {}, dict(settings=ident, rows=[dataclasses.asdict(q) for q in rows]))
    return rows


def _sgld(pts: list, n_chains: int, steps: int, seed: int) -> list[CensusLLC]:
    if not pts:
        return []
    res = estimate_llc(torch.stack([q.W for q in pts]), torch.stack([q.b for q in pts]),
                       nbeta=PROTOCOL.nbeta_for(PROTOCOL.n), eps=PROTOCOL.eps, gamma=PROTOCOL.gamma,
                       n_chains=n_chains, n_burnin=steps, n_draws=steps, loss="population", seed=seed)
    return [CensusLLC(q.label, q.loss, q.kind, q.llc, float(m), float(se))
            for q, m, se in zip(pts, res.llc.tolist(), res.llc_se.tolist())]


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


def run(settings: BeyondR2Settings = QUICK, *, out: str | Path = "results/beyond_r2", progress: bool = False,
        threads: int | None = None, **changes) -> BeyondR2Run:
    """The r = 3 study with `settings` (and `changes`), every part saved under `out` and reused:
    census (out/census), posterior points (out/posterior), SGD (out/sgd), the summary (out/summary)."""
    settings = settings.replace(**changes) if changes else settings
    out = Path(checks.output_dir(out, "out"))
    with checks.torch_threads(checks.threads(threads, "threads")):
        cs = census_mod.census(settings.r, settings.c, CENSUS_PRESETS[settings.census_scale], out=out / "census",
                               progress=progress)
        llcs = census_llcs(cs, settings.n_minima, settings.llc_chains, settings.llc_steps, settings.seed,
                           out=out / "llc")
        supplied = {q.label: q.sgld for q in llcs if q.rank_llc is None and math.isfinite(q.sgld)}
        sweep = posterior.phase_sweep(settings.c, list(settings.ns), settings.posterior_settings(), r=settings.r,
                                      seed=settings.seed, out_dir=out / "posterior", census=cs, llcs=supplied,
                                      progress=progress)
        seg, counts, antecedents = _sgd(settings, cs, supplied, out, progress)
    result = BeyondR2Run(settings, cs, llcs, census_free_energy.free_energy_terms(cs, supplied),
                         census_free_energy.census_transitions(cs, supplied), sweep,
                         observed_crossings(sweep.ns, sweep.phases, sweep.mass, sweep.mass_se), seg, counts,
                         antecedents, out)
    posterior.save_summary(out / "posterior_summary", sweep)  # the phase-mass figure's input
    save_summary(out / "summary", result)
    return result


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
