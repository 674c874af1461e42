"""`tms beyond-r2`: the r = 3 study (docs/beyond_r2.md), a shell over tms.experiments.beyond_r2.run:
the census's lowest minima with rank/2 and the SGLD lambda, the predicted n_c between them, the
posterior phase mass against n read by the census with its observed crossings, SGD plateaus on
census levels with their antecedents, and the figures of `tms reproduce --scale full`'s stage.
Every part is saved under --out and reused or resumed. Settings flags: the fields of
tms.experiments.beyond_r2.BeyondR2Settings (--n-minima is n_minima) over the preset of --scale."""
from __future__ import annotations

from pathlib import Path

from tms.cli import common
from tms.experiments import beyond_r2 as experiment

NAME = "beyond-r2"
HELP = ("the r = 3 study: census minima with rank/2 and SGLD lambda, predicted n_c, posterior phase mass and "
        "observed crossings, SGD plateaus on census levels")
DEVICE_HELP = "checked and accepted so one --device can go to every command; the study runs on the CPU"
MASS_SHOWN = 0.05  # phases printed in the mass table: those holding this much mass at some n


def add_arguments(p) -> None:
    p.add_argument("--scale", choices=tuple(experiment.PRESETS), default="quick",
                   help="the study's preset: tiny (a smoke run, r = 3, c = 5: about a minute), quick (default: "
                        "r = 3, c = 7, minutes), full (tms reproduce --scale full's stage); the flags below "
                        "override it")
    common.add_settings(p, experiment.BeyondR2Settings, preset=experiment.QUICK)
    p.add_argument("--out", default="results/beyond_r2",
                   help="results folder (every finished part is reused, an unfinished posterior resumed)")
    p.add_argument("--figures", default="results/figures/beyond_r2",
                   help="folder for census.png, census_columns.png and posterior.png")
    common.add_force(p)
    common.add_threads(p)


def run(args) -> int:
    settings = common.settings_from(args, experiment.PRESETS[args.scale])
    res = experiment.run(settings, out=args.out, figures=args.figures, progress=args.progress, threads=args.threads,
                         device=args.device, force=args.force)
    s = res.settings
    print(f"r = {s.r}, c = {s.c} study (--scale {args.scale}, seed {s.seed}): census {len(res.census.points)} "
          f"points ({s.census_scale} census), SGLD at the {len(res.llcs)} lowest minima")
    _minima(res)
    _predicted(res)
    _posterior(res)
    _sgd(res)
    print(f"saved {Path(args.out) / 'summary'}.npz / .json; figures: {', '.join(str(f) for f in res.figures)}")
    return 0


def _minima(res) -> None:
    by = {q.label: q for q in res.census.points}
    print(f"\nlowest local minima: rank/2 where L is C^2 and minimally singular; SGLD lambda (the lab's protocol, "
          f"{res.settings.llc_chains} chains, +- s.e.)")
    print(f"{'point':24s} {'L':>12s} {'kind':>5s} {'rank/2':>7s} {'SGLD lambda':>16s} {'prior':>8s} {'mult':>6s}")
    for q in res.llcs:
        rank = f"{q.rank_llc:7.1f}" if q.rank_llc is not None else f"{'-':>7s}"
        print(f"{q.label:24s} {q.loss:12.9f} {q.kind:>5s} {rank} {common.plus_minus(q.sgld, q.sgld_se):>16s} "
              f"{by[q.label].prior:8.4f} {by[q.label].multiplicity:6d}")


def _predicted(res) -> None:
    print("\npredicted n_c (F_n = n L + lambda log n + |w*|^2/2; rank/2, else the SGLD lambda):")
    if not res.transitions:
        print("  none (fewer than two minima with a lambda, or no pair with dL < 0 and dlambda > 0)")
    for t in res.transitions:
        n_c = f"{t.n_c:.0f}" if t.n_c is not None else "none"
        print(f"  {t.alpha} -> {t.beta}: dL {t.dL:+.5f}, dlambda {t.dlambda:+.2f}, dc {t.dc:+.3f}, n_c {n_c}")


def _posterior(res) -> None:
    sw = res.posterior
    shown = [i for i, p in enumerate(sw.phases) if sw.mass[:, i].max() >= MASS_SHOWN]
    print(f"\nposterior phase mass (mean over data sets +- s.e.; phases holding {MASS_SHOWN:g} somewhere):")
    print(f"{'n':>6s} " + " ".join(f"{sw.phases[i]:>22s}" for i in shown))
    for k, n in enumerate(sw.ns):
        print(f"{int(n):6d} " + " ".join(f"{common.plus_minus(sw.mass[k, i], sw.mass_se[k, i], '.3f'):>22s}"
                                         for i in shown))
    print("observed crossings (log-linear interpolation, delta-method s.e.):")
    if not res.crossings:
        print("  none on this grid")
    for x in res.crossings:
        print(f"  {x.alpha} -> {x.beta} at n = {common.plus_minus(x.n, x.n_se, '.0f')}")


def _sgd(res) -> None:
    if res.sgd is None:
        print("\nSGD: none (--sgd-runs 0)")
        return
    print(f"\nSGD from random starts ({res.sgd.n_runs} runs, sigma {res.settings.sigma:g}, {res.settings.epochs} "
          f"epochs): plateau sequences on census levels")
    for seq, n in res.sgd.sequence_counts().most_common():
        print(f"  {n:4d} x {' -> '.join(seq) if seq else '(no plateau)'}")
    print("transitions and their Bayesian antecedents (n_c; none where dlambda <= 0 or a lambda is unknown):")
    if not res.sgd_counts:
        print("  none observed")
    for (name, n), t in zip(res.sgd_counts.items(), res.antecedents):
        n_c = f"{t.n_c:.0f}" if t.n_c is not None else "none"
        print(f"  {n:4d} x {name}: dL {t.dL:+.5f}, n_c {n_c}")
