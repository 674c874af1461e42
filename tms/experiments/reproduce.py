"""The staged pipeline behind `tms reproduce`: every result of the lab, its figures and REPORT.md.

    tms.reproduce(scale="quick", seed=0, out="results/reproduce", figures="results/figures")

Stages (docs/SPEC.md sections in brackets):
  zoo           critical points of c = 4, 5, 6 and their figures (SPEC 2)
  zoo_llc       SGLD estimates of lambda at the zoo points where L is only C^1 (SPEC 5)
  posterior_cC  posterior phase mass against n for c = 4, 5, 6 (SPEC 3), saved per n
  train, transitions               SGD from the 4-gon start and its analysis (SPEC 4)
  train_random, transitions_random the same from random starts, W ~ N(0, 1) (SPEC 4)
  free_energy   measured free-energy differences at c = 6 (SPEC 3)
  susceptibility  feature susceptibilities and the BIF from the posterior stages' draws (SPEC 7)
  report        REPORT.md beside the figures, from the saved results (always rewritten)

Reuse: tms.experiments.stages (a finished stage is reused while its settings and files hold).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from tms.core import checks, cluster, io
from tms.dynamics import tasks as dynamics_tasks
from tms.bayes.free_energy import measure as free_energy
from tms.dynamics.analysis import TransitionsSettings
from tms.dynamics.train import TrainSettings
from tms.experiments import free_energy as free_energy_run
from tms.experiments import posterior as posterior_run
from tms.experiments import beyond_r2, train, transitions
from tms.experiments import stages
from tms.experiments.stages import Pipeline, Stage
from tms.experiments import susceptibility as susceptibility_run
from tms.theory import zoo
from tms.llc import zoo as llc_zoo
from tms.llc.estimator import PROTOCOL
from tms.report.plots.census import plot_beyond_r2
from tms.report.plots.free_energy import plot_free_energy
from tms.report.plots.posterior import plot_phase_sweep
from tms.report.plots.sgd import sgd_many, sgd_trajectory
from tms.report.plots.susceptibility import plot_susceptibility
from tms.report.plots.zoo import plot_zoo
from tms.report import background
from tms.report.markdown import write_report

CS = (4, 5, 6)
SCALE_NAMES = ("tiny", "quick", "full")  # tiny: a smoke test of the pipeline (tests; numbers meaningless)

_FE = free_energy_run.QUICK
_TINY_FREE_ENERGY = dict(ns=(200, 500), settings=_FE.replace(
    sweep=_FE.sweep.replace(seeds=1, replicas=2, n_temps=3, n_warmup=6, n_draws=6, max_steps=4),
    local=_FE.local.replace(seeds=1, replicas=2, n_temps=2, n_warmup=6, n_draws=6),
    sgld=_FE.sgld.replace(n_chains=2, n_burnin=8, n_draws=32), mc_draws=2000))

# Per-scale settings of every stage: quick, a few minutes on 2 cores; full, the paper's scale.
SCALES = {
    "tiny": dict(zoo_llc=dict(n_chains=2, n_burnin=8, n_draws=32, n=600),
                 posterior=dict(scale="quick", ns={4: [100, 300], 5: [100, 300], 6: [100, 600]},
                                settings=posterior_run.QUICK.replace(seeds=1, n_chains=4, replicas=2, n_temps=3,
                                                                     n_warmup=8, n_draws=6, max_steps=4, plain_draws=4,
                                                                     min_draws=4)),
                 train=TrainSettings(runs=2, epochs=5), train_random=TrainSettings(runs=2, epochs=5),
                 transitions=TransitionsSettings(llc_points=2, n_chains=2, n_draws=20), free_energy=_TINY_FREE_ENERGY),
    "quick": dict(zoo_llc=dict(n_chains=8, n_burnin=1000, n_draws=2000, n=600),
                  posterior=dict(scale="quick", ns={}, settings=posterior_run.QUICK),
                  train=train.QUICK, train_random=train.QUICK, transitions=TransitionsSettings(),
                  free_energy=dict(settings=_FE.replace(sweep=_FE.sweep.replace(seeds=2, n_draws=80),
                                                        local=_FE.local.replace(seeds=1, n_draws=60)))),
    # free energy keeps its quick scale here: its paper scale alone takes about an hour
    "full": dict(zoo_llc=dict(n_chains=16, n_burnin=PROTOCOL.n_burnin, n_draws=PROTOCOL.n_draws, n=600),
                 posterior=dict(scale="full", ns={}, settings=posterior_run.FULL),
                 train=train.FULL, train_random=train.FULL,
                 transitions=TransitionsSettings(llc_points=40, n_chains=8), free_energy=dict(settings=_FE),
                 beyond_r2=beyond_r2.FULL),  # the r = 3 study (tiny, quick: none; quick stays within minutes)
}


class _Ctx(NamedTuple):
    """What the stage builders need: folders, this scale's settings, seed, device, progress."""

    out: Path
    figs: Path
    cfg: dict
    seed: int
    device: str
    progress: bool
    where: dict | None = None  # scheduler= / workers= of tms.core.cluster (None: in-process)


def _zoo_figure(out: Path, figs: Path, c: int) -> Path:
    return plot_zoo(io.load_json(out / "zoo" / f"zoo_c{c}.json")["points"], figs / f"zoo_c{c}.png", c)


def _transition_figures(train_path: Path, tr_path: Path, fig_dir: Path) -> list[Path]:
    fig_dir.mkdir(parents=True, exist_ok=True)
    shown = io.load_json(tr_path.with_suffix(".json"))["figure_run"]
    sgd_trajectory(str(train_path), str(tr_path), fig_dir / "sgd_trajectory.png", run=shown)
    sgd_many(str(train_path), str(tr_path), fig_dir / "sgd_many.png")
    return [fig_dir / "sgd_trajectory.png", fig_dir / "sgd_many.png"]


def _zoo_stages(x: _Ctx) -> list[Stage]:
    """The zoo of c = 4, 5, 6 (SPEC 2), and SGLD lambdas where the zoo has none (SPEC 5)."""
    def zoo_compute():
        for c in CS:
            if not io.result_exists(x.out / "zoo" / f"zoo_c{c}"):  # resumed stage: the c already done are kept
                rows = [q.as_record() for q in zoo.critical_points(c)]
                io.save_result(x.out / "zoo" / f"zoo_c{c}", {}, dict(c=c, r=2, points=rows))

    zl = x.cfg["zoo_llc"]

    def zoo_llc_compute():
        for c in CS:
            path = x.out / "zoo_llc" / f"zoo_llc_c{c}"
            if not io.result_exists(path):  # resumed stage: the c already done are kept
                io.save_result(path, {}, llc_zoo.zoo_llc(c, seed=x.seed, **zl).as_record())

    zoo_draw = background.calls(*((_zoo_figure, x.out, x.figs, c) for c in CS))
    return [Stage("zoo", dict(cs=CS), [x.out / "zoo"], zoo_compute, zoo_draw),
            Stage("zoo_llc", dict(zl, seed=x.seed, cs=CS), [x.out / "zoo_llc"], zoo_llc_compute)]


def _posterior_stage(x: _Ctx, c: int) -> Stage:
    """Posterior phase mass against n at c (SPEC 3), with the zoo_llc lambdas for the 4-gons."""
    pc = x.cfg["posterior"]
    usable = io.load_json(x.out / "zoo_llc" / f"zoo_llc_c{c}.json")["usable"]
    llcs = {lab: round(float(v), 4) for lab, v in sorted(usable.items())}
    ns = list(pc["ns"].get(c, posterior_run.posterior_grid(c, pc["scale"])))
    folder = x.out / f"posterior_c{c}"
    run_dir = posterior_run.posterior_run_dir(folder, c, pc["scale"], 1.0, x.seed)

    compute = functools.partial(posterior_run.run, c, ns, pc["settings"], scale=pc["scale"], seed=x.seed, out=folder,
                                figure=None, llcs=llcs, device=x.device, progress=x.progress, **(x.where or {}))
    draw = background.calls((plot_phase_sweep, run_dir / f"summary_c{c}", x.figs / f"posterior_c{c}.png"))
    ident = dict(c=c, ns=ns, scale=pc["scale"], settings=pc["settings"], seed=x.seed, llcs=llcs)
    return Stage(f"posterior_c{c}", ident, [folder], compute, draw)


def _sgd_stages(x: _Ctx, init: str, sub: str) -> list[Stage]:
    """SGD runs from one start and their transition analysis (SPEC 4)."""
    tc = x.cfg[f"train{sub}"].replace(init=init, seed=x.seed)
    trc = x.cfg["transitions"].replace(seed=x.seed)
    train_path = x.out / f"sgd{sub}" / "train"
    tr_path = train_path.with_name("train_transitions")
    fig_dir = x.figs / "random" if sub else x.figs

    where = x.where or {}
    train_compute = functools.partial(dynamics_tasks.train_sgd, tc, path=train_path, device=x.device,
                                      progress=x.progress, **where)
    tr_compute = functools.partial(transitions.run, str(train_path), trc, out=str(tr_path), figures=None,
                                   device=x.device, progress=x.progress, **where)

    tr_draw = background.calls((_transition_figures, train_path, tr_path, fig_dir))
    t_ident = dict(settings=tc)
    train_paths = [train_path, train_path.with_name("train_partial"), train_path.with_name("train_blocks")]
    return [Stage(f"train{sub}", t_ident, train_paths, train_compute),
            Stage(f"transitions{sub}", dict(settings=trc, train=tc),
                   [tr_path, tr_path.with_name("train_transitions_llc"),
                    tr_path.with_name("train_transitions_llc_blocks")], tr_compute, tr_draw)]


def _free_energy_compute(fc: dict, seed: int, run_dir: Path, progress: bool, device: str) -> None:
    res = free_energy.measure(6, fc.get("ns"), fc["settings"], seed=seed, out_dir=run_dir, progress=progress,
                              device=device)
    res.settings["reading"] = "zoo"
    free_energy.save_summary(run_dir / "summary_c6", res)


def _free_energy_stage(x: _Ctx) -> Stage:
    """Measured free energies of the c = 6 phases and the terms that move n_c (SPEC 3)."""
    fc = x.cfg["free_energy"]
    run_dir = x.out / "free_energy" / f"c6_quick_b1_s{x.seed}"
    summary = run_dir / "summary_c6"

    compute = functools.partial(_free_energy_compute, fc, x.seed, run_dir, x.progress, x.device)
    draw = background.calls((functools.partial(plot_free_energy, reading="zoo"), summary, x.figs / "free_energy_c6.png"))
    ident = dict(ns=fc.get("ns"), settings=fc["settings"], c=6, seed=x.seed)
    return Stage("free_energy", ident, [x.out / "free_energy"], compute, draw)


def _susceptibility_stage(x: _Ctx) -> Stage:
    """Feature susceptibilities and the BIF at every c from the posterior stages' saved draws (SPEC 7)."""
    pc, settings = x.cfg["posterior"], susceptibility_run.QUICK
    folder = x.out / "susceptibility"

    def compute():
        for c in CS:
            if not io.result_exists(folder / f"susceptibility_c{c}"):  # resumed stage: the c already done are kept
                run_dir = posterior_run.posterior_run_dir(x.out / f"posterior_c{c}", c, pc["scale"], 1.0, x.seed)
                susceptibility_run.run(run_dir, settings, out=folder)

    draw = background.calls(*((plot_susceptibility, folder / f"susceptibility_c{c}", x.figs / f"susceptibility_c{c}.png")
                              for c in CS))
    posterior = {c: dict(ns=list(pc["ns"].get(c, posterior_run.posterior_grid(c, pc["scale"]))), scale=pc["scale"],
                         settings=pc["settings"]) for c in CS}
    return Stage("susceptibility", dict(settings=settings, posterior=posterior, seed=x.seed, cs=CS), [folder],
                  compute, draw)


def _beyond_r2_stage(x: _Ctx) -> Stage:
    """The r = 3 study (docs/beyond_r2.md): census, SGLD lambdas, posterior and SGD at r = 3, c = 7."""
    settings = x.cfg["beyond_r2"].replace(seed=x.seed)
    folder = x.out / "beyond_r2"

    compute = functools.partial(beyond_r2.run, settings, out=folder, progress=x.progress)
    return Stage("beyond_r2", dict(settings=settings), [folder], compute,
                  background.calls((plot_beyond_r2, folder, x.figs / "beyond_r2")))


def _later_stages(pipe: Pipeline, x: _Ctx, aside: bool) -> None:
    """Every stage after the zoo's: one after another, with some beside the posteriors in the
    pipeline's lane (aside), or feeding a cluster at once (`run`)."""
    xa = x._replace(progress=x.progress and not aside)  # one process's progress bars on the terminal
    # each reads the zoo_llc results; c = 4 may run in the lane
    posterior_st = [_posterior_stage(xa if c == CS[0] else x, c) for c in CS]
    sgd_st = _sgd_stages(xa, "4gon", "") + _sgd_stages(xa, "random", "_random")
    later = [_free_energy_stage(xa)] + ([_beyond_r2_stage(xa)] if x.cfg.get("beyond_r2") is not None else [])
    if aside:  # the lane takes the largest units first; what it has not reached runs here at the end
        units = [[st] for st in later[1:]] + [posterior_st[:1], later[:1], sgd_st[:2], sgd_st[2:]]
        pipe.run_beside(units, posterior_st[1:], x.device)
        pipe.run(_susceptibility_stage(x))  # after every posterior stage
    elif (x.where or {}).get("scheduler") is None:  # one stage after another
        for st in posterior_st + sgd_st + later[:1] + [_susceptibility_stage(x)] + later[1:]:
            pipe.run(st)
    else:  # on a cluster: independent stages feed it at once
        pipe.run_together(posterior_st + sgd_st[::2])
        pipe.run_together(sgd_st[1::2])
        for st in later[:1] + [_susceptibility_stage(x)] + later[1:]:
            pipe.run(st)


@dataclass(frozen=True)
class ReproduceRun:
    """What `tms reproduce` did: its scale and seed, the results and figures folders, REPORT.md's
    path and each stage's status (reused | ran | resumed | repaired)."""

    scale: str
    seed: int
    out: Path
    figures: Path
    report: Path
    stages: dict[str, str]


def run(scale: str = "quick", *, seed: int = 0, out: str | Path = "results/reproduce",
        figures: str | Path = "results/figures", device: str | torch.device = "cpu", force: bool = False,
        threads: int | None = None, progress: bool = False, log: Callable[[str], None] | None = print,
        scheduler: str | None = None, workers: int | None = None,
        figures_in_background: bool = True, stages_aside: bool | None = None) -> ReproduceRun:
    """Every stage of the lab at scale tiny | quick | full (SCALES), results under `out`,
    figures and REPORT.md in `figures`; finished stages are reused (module docstring).

    threads: threads while it runs (None: every core for the compiled sampler, one for torch,
    whose tensors here are small; tms.core.checks.torch_threads); the caller's settings are
    restored at the end. Results do not depend on it.
    log: where the one-line stage messages go (None: nowhere). scheduler / workers: the
    stages' sweeps as Dask tasks on one cluster for the whole run (tms.core.cluster.session), and
    the stages that do not depend on each other (the three posterior sweeps and both
    trainings, then both transition analyses) at once. figures_in_background: a stage's
    figures are drawn in a worker process while the next stages compute
    (tms.report.background), else here, after the stage. stages_aside: on the CPU, with no
    cluster and two threads or more, the r = 3 study, the c = 4 posterior, free energies, SGD
    and its transitions run in a second process on one thread while the other posterior stages
    take the other threads here (tms.experiments.stages.Pipeline.run_beside): both cores stay
    busy through the sampler's bookkeeping (None: at the full scale; at the smaller ones the
    second process's start-up, a few seconds, costs more than it saves). Returns a ReproduceRun.
    """
    checks.scale(scale, SCALE_NAMES)
    seed, threads = checks.seed(seed, "seed"), checks.threads(threads, "threads")
    out, figs = checks.output_dir(out, "out"), checks.output_dir(figures, "figures")
    dev = str(checks.device(device))
    out.mkdir(parents=True, exist_ok=True)
    figs.mkdir(parents=True, exist_ok=True)
    cluster.check_cluster(scheduler, workers)
    queue = background.JobQueue(background=figures_in_background)
    lane = background.JobQueue(quiet=False, shared=stages.claims())
    pipe = Pipeline(out, figs, force, log or (lambda _: None), queue, lane)
    with io.recording_device(dev), checks.torch_threads(threads, torch_cap=1), queue, lane, \
            cluster.session(scheduler, workers) as where:
        x = _Ctx(out, figs, SCALES[scale], seed, dev, progress, where)
        aside = (scale == "full" if stages_aside is None else stages_aside) and where.get("scheduler") is None \
            and dev == "cpu" and checks.cores() >= 2
        if aside:
            pipe.start_lane((__name__,))  # its imports meanwhile
        for st in _zoo_stages(x):
            pipe.run(st)
        _later_stages(pipe, x, aside)
        queue.wait()  # every figure drawn before the report that shows them
        report = write_report(out, figs, scale=scale, seed=seed, cs=CS)  # cheap: always rewritten
    return ReproduceRun(scale=scale, seed=seed, out=out, figures=figs, report=report, stages=dict(pipe.status))
