"""`tms reproduce`: every result of the lab in one command, figures and a report.

Stages (each reused when its settings are unchanged, unless --force):
  zoo           critical points of c = 4, 5, 6, tables and zoo figures (SPEC 2)
  zoo_llc       SGLD estimates of lambda at the zoo points where L is only C^1 (4-gon
                families), used for the n_c predictions that need them (SPEC 3, 5)
  posterior_cC  posterior phase mass against n for c = 4, 5, 6 (SPEC 3)
  train         SGD runs from the 4-gon start (SPEC 4)
  transitions   plateaus, LLC staircases and the Bayesian-antecedent table (SPEC 4)
  train_random, transitions_random   the same from random starts, W ~ N(0, 1) (SPEC 4)
  free_energy   measured free-energy differences at c = 6, lambda from the ladder, the O(1)
                terms that move the 5 -> 6 crossing (tms free-energy)
  report        figures/REPORT.md from the saved results
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import NamedTuple

from tms import checks, io

NAME = "reproduce"
HELP = "run the whole lab (zoo, Bayesian sweeps c = 4, 5, 6, SGD + LLC, antecedents) and write figures/REPORT.md"

CS = (4, 5, 6)

# Per-scale settings of every stage. quick: a few minutes on 2 cores; full: the paper's scale;
# tiny: a smoke test of the pipeline (tests only, results meaningless).
SCALES = {
    "tiny": dict(
        zoo_llc=dict(n_chains=2, n_steps=40, n_ref=600),
        posterior=dict(args=["--seeds", "1", "--chains", "4", "--replicas", "2", "--temps", "3", "--warmup", "8",
                             "--draws", "6", "--max-steps", "4", "--plain-draws", "4", "--min-draws", "4"],
                       ns={4: "100,300", 5: "100,300", 6: "100,600"}),
        train=["--runs", "2", "--epochs", "5"],
        transitions=["--llc-points", "2", "--chains", "2", "--sgld-steps", "20"],
        train_random=["--runs", "2", "--epochs", "5"],
        free_energy=["--n", "200,500", "--seeds", "1", "--replicas", "2", "--temps", "3", "--warmup", "6",
                     "--draws", "6", "--max-steps", "4", "--lambda-seeds", "1", "--lambda-replicas", "2",
                     "--lambda-temps", "2", "--lambda-warmup", "6", "--lambda-draws", "6", "--sgld-chains", "2",
                     "--sgld-steps", "40", "--mc-draws", "2000"],
    ),
    "quick": dict(
        zoo_llc=dict(n_chains=8, n_steps=1000, n_ref=600),
        posterior=dict(args=[], ns={}),
        train=[],
        transitions=[],
        train_random=[],
        free_energy=["--seeds", "2", "--draws", "80", "--lambda-seeds", "1", "--lambda-draws", "60"],
    ),
    "full": dict(
        zoo_llc=dict(n_chains=16, n_steps=3000, n_ref=600),
        posterior=dict(args=["--paper"], ns={}),
        train=["--full"],
        transitions=["--llc-points", "40", "--chains", "8"],
        train_random=["--full"],
        free_energy=[],  # its own default scale: `tms free-energy --c 6 --paper` alone takes about an hour
    ),
}


def add_arguments(p) -> None:
    p.add_argument("--full", action="store_true", help="the paper's scale instead of the quick default (see README)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default="results/reproduce", help="results directory (finished stages are reused)")
    p.add_argument("--figures", default="figures", help="where the figures and REPORT.md go")
    p.add_argument("--force", action="store_true", help="rerun every stage even if its results exist")
    p.add_argument("--seed", type=int, default=0, help="seed of every random stage")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the tensors are small, extra threads mostly wait on each other)")


def _cli(argv: list[str]) -> None:
    """Run a `tms` subcommand in-process; a failure stops the pipeline with its message."""
    from tms.cli import main

    code = main(argv)
    if code != 0:
        raise ValueError(f"stage `tms {' '.join(argv)}` failed with exit code {code}")


class _Stage:
    """A stage's marker out/stages/NAME.json holds its settings and status.

    Same settings and "done": reused. Same settings and "running" (an interrupted run):
    rerun over the partial results, which the sub-commands resume point by point. Otherwise
    (new, changed settings, or --force): its result paths are cleared first.
    """

    def __init__(self, out: Path, name: str, settings: dict, force: bool, paths: list[Path]):
        self.marker = out / "stages" / f"{name}.json"
        self.settings = io._jsonable(settings)
        try:
            rec = io.load_json(self.marker) if self.marker.exists() else {}
        except ValueError:  # a damaged marker is not trusted: the stage runs again
            rec = {}
        rec = rec if isinstance(rec, dict) else {}
        same = not force and rec.get("settings") == self.settings
        self.skip = same and rec.get("status") == "done"
        self.resume = same and rec.get("status") == "running"
        if self.skip:
            return
        if not self.resume:
            for p in paths:  # stale or forced: start clean so nothing old is mixed in
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        io.save_json(self.marker, dict(settings=self.settings, status="running"))

    def done(self, seconds: float) -> None:
        io.save_json(self.marker, dict(settings=self.settings, status="done", seconds=round(seconds, 1),
                                       finished=time.strftime("%Y-%m-%d %H:%M:%S")))


class _Pipeline(NamedTuple):
    """What every stage needs: results and figure folders, scale settings, seed, device."""

    out: Path
    figs: Path
    cfg: dict
    seed: int
    dev: str
    force: bool

    def stage(self, name: str, settings: dict, paths: list[Path], fn) -> None:
        st = _Stage(self.out, name, settings, self.force, paths)
        if st.skip:
            print(f"[{name}] reused (settings unchanged; --force to rerun)")
            return
        print(f"[{name}] {'resuming' if st.resume else 'running'} ...", flush=True)
        t0 = time.perf_counter()
        fn()
        st.done(time.perf_counter() - t0)
        print(f"[{name}] done in {time.perf_counter() - t0:.0f} s", flush=True)


def _zoo_stages(p: _Pipeline) -> None:
    """The zoo of c = 4, 5, 6 (SPEC 2), and SGLD lambdas where the zoo has none (SPEC 5)."""
    def zoo_stage():
        from tms import zoo
        from tms.plots.zoo import plot_zoo

        for c in CS:
            rows = zoo.as_numpy_table(zoo.critical_points(c))
            plot_zoo(rows, p.figs / f"zoo_c{c}.png", c)
            io.save_json(p.out / "zoo" / f"zoo_c{c}.json", dict(c=c, r=2, points=rows))

    p.stage("zoo", dict(cs=CS), [p.out / "zoo"], zoo_stage)
    zl = p.cfg["zoo_llc"]

    def zoo_llc_stage():
        from tms.zoo_llc import zoo_llc_estimates

        for c in CS:
            res = zoo_llc_estimates(c, n_ref=zl["n_ref"], n_chains=zl["n_chains"], n_steps=zl["n_steps"], seed=p.seed)
            io.save_json(p.out / "zoo_llc" / f"zoo_llc_c{c}.json", res)

    p.stage("zoo_llc", dict(zl, seed=p.seed, cs=CS), [p.out / "zoo_llc"], zoo_llc_stage)


def _posterior_stages(p: _Pipeline) -> None:
    """Posterior phase mass against n for c = 4, 5, 6 (SPEC 3)."""
    for c in CS:
        est = io.load_json(p.out / "zoo_llc" / f"zoo_llc_c{c}.json")["usable"]
        argv = ["posterior", "--c", str(c), "--seed", str(p.seed), "--device", p.dev,
                "--out", str(p.out / f"posterior_c{c}"), "--figure", str(p.figs / f"posterior_c{c}.png"),
                *p.cfg["posterior"]["args"]]
        if c in p.cfg["posterior"]["ns"]:
            argv += ["--n", p.cfg["posterior"]["ns"][c]]
        for label, lam in sorted(est.items()):
            argv += ["--llc", f"{label}={lam:.4f}"]
        p.stage(f"posterior_c{c}", dict(argv=argv), [p.out / f"posterior_c{c}"], lambda argv=argv: _cli(argv))


def _sgd_stages(p: _Pipeline) -> None:
    """SGD runs and their transition analysis, from the 4-gon and the random start (SPEC 4)."""
    for init, sub in (("4gon", ""), ("random", "_random")):
        train_path = p.out / f"sgd{sub}" / "train"
        argv_train = ["train", "--seed", str(p.seed), "--init", init, "--device", p.dev, "--out", str(train_path),
                      *p.cfg[f"train{sub}"]]
        p.stage(f"train{sub}", dict(argv=argv_train), [p.out / f"sgd{sub}"], lambda a=argv_train: _cli(a))
        argv_tr = ["transitions", "--input", str(train_path), "--figures", str(p.figs / init if sub else p.figs),
                   "--seed", str(p.seed), "--device", p.dev, *p.cfg["transitions"]]
        p.stage(f"transitions{sub}", dict(argv=argv_tr, train=io.load_json(p.out / "stages" / f"train{sub}.json")),
                [p.out / f"sgd{sub}" / "train_transitions.npz", p.out / f"sgd{sub}" / "train_transitions.json"],
                lambda a=argv_tr: _cli(a))


def _free_energy_stage(p: _Pipeline) -> None:
    """Measured free energies of the c = 6 phases and the terms that move n_c (issue 11)."""
    argv = ["free-energy", "--c", "6", "--seed", str(p.seed), "--device", p.dev, "--out", str(p.out / "free_energy"),
            "--figure", str(p.figs / "free_energy_c6.png"), "--no-progress", *p.cfg["free_energy"]]
    p.stage("free_energy", dict(argv=argv), [p.out / "free_energy"], lambda: _cli(argv))


def run(args) -> int:
    import torch

    from tms.report import write_report

    scale = "tiny" if args.tiny else ("full" if args.full else "quick")
    seed = checks.seed(args.seed, "--seed")
    threads = checks.threads(args.threads)
    out, figs = checks.output_dir(args.out, "--out"), checks.output_dir(args.figures, "--figures")
    dev = str(checks.device(args.device))
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    figs.mkdir(parents=True, exist_ok=True)
    print(f"tms reproduce: scale {scale}, seed {seed}, device {dev}, results in {out}, figures in {figs}")
    pipe = _Pipeline(out, figs, SCALES[scale], seed, dev, args.force)
    _zoo_stages(pipe)
    _posterior_stages(pipe)
    _sgd_stages(pipe)
    _free_energy_stage(pipe)
    # the report is always rewritten: cheap, and it reads only saved results
    path = write_report(out, figs, scale=scale, seed=seed, cs=CS)
    print(f"report: {path}")
    return 0
