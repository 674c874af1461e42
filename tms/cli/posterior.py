"""`tms posterior`: posterior phase mass against n (SPEC 3), saved point by point, and its figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tms.cli import common
from tms.cli.common import MAX_GRID, MAX_N, parse_grid
from tms.core import checks, io
from tms.experiments import reproduce
from tms.theory import zoo

NAME = "posterior"
HELP = "Bayesian phase transitions: posterior phase mass against the sample size n (resumable)"

FLAGS = dict(n_chains="--n-chains", n_temps="--temps", n_warmup="--warmup", n_draws="--draws", max_steps="--max-steps",
             plain_draws="--plain-draws", min_draws="--min-draws")  # phase_sweep setting -> its option
BOUNDS = dict(n_chains=10**5, seeds=1000, replicas=10**4, n_temps=1000, n_warmup=10**6, n_draws=10**6,
              max_steps=4096, plain_draws=10**6, min_draws=10**6)  # stated in --help; each multiplies the sampling time


def add_arguments(p) -> None:
    p.add_argument("--c", type=int, default=6, help="number of features (r = 2)")
    p.add_argument("--n", help="n-grid, start:stop:step or comma list (default: 100..2000 for c = 6, 100..600 else; "
                               "the full scale's grid is finer)")
    p.add_argument("--scale", choices=("quick", "full"), default="quick",
                   help="sampler settings and grid: quick (default) or full, the paper's scale (more data sets, "
                        "chains, ladders, draws)")
    p.add_argument("--n-chains", type=int,
                   help="plain HMC chains per data set (chain occupancy)")
    p.add_argument("--seeds", type=int, help="data sets per n")
    p.add_argument("--replicas", type=int, help="independent replica-exchange ladders per data set")
    p.add_argument("--temps", type=int, help="temperatures per ladder (1: no tempering, so the 'mass' is chain "
                                            "occupancy and is labelled so)")
    p.add_argument("--beta-min", type=float, help="hottest relative inverse temperature of the ladder")
    p.add_argument("--warmup", type=int, help="warm-up rounds (step sizes, trajectory lengths and the ladder adapted)")
    p.add_argument("--draws", type=int, help="budget: most sampling rounds per data set (a draw per round)")
    p.add_argument("--min-draws", type=int, help="fewest sampling rounds before the precision target may stop a data set")
    p.add_argument("--target-se", type=float,
                   help="stop a data set once every phase mass has a Monte Carlo standard error below this "
                        "(default 0.02; across its replica ladders), or at the --draws budget")
    p.add_argument("--plain-draws", type=int, help="draws of the plain chains (chain occupancy)")
    p.add_argument("--max-steps", type=int, help="leapfrog ticks per round = cap on a trajectory's length")
    p.epilog = ("bounds: n <= %d, %d n values; " % (MAX_N, MAX_GRID)
                + ", ".join(f"{FLAGS.get(k, '--' + k.replace('_', '-'))} <= {v}" for k, v in BOUNDS.items()))
    p.add_argument("--beta-lik", type=float, default=1.0, help="likelihood inverse temperature (1 = SPEC convention)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-points", type=int,
                   help="n values sampled per batched call (default all; each n is saved as soon as it is finished)")
    p.add_argument("--out", default="results/posterior",
                   help="results directory (finished n are skipped; an interrupted run resumes there)")
    p.add_argument("--figure", help="figure path (default results/figures/posterior_c{c}.png)")
    p.add_argument("--llc", action="append", default=[], metavar="LABEL=VALUE",
                   help="lambda for a zoo label the zoo lacks (e.g. a 4-gon SGLD estimate); repeatable")
    p.add_argument("--llc-estimate", action="store_true",
                   help="estimate by SGLD (population loss) the lambda of phases seen that the zoo lacks (4-gons)")
    p.add_argument("--no-predict", action="store_true", help="skip the predicted n_c (no zoo)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--no-progress", action="store_true")
    common.add_arguments(p)


def parse_llcs(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        label, sep, val = item.partition("=")
        try:
            if not sep or not label:
                raise ValueError
            out[label] = float(val)
        except ValueError:
            raise ValueError(f"--llc must be LABEL=VALUE (e.g. 4=3.5), got {item!r}") from None
        checks.positive_float(out[label], f"--llc {label}=VALUE", allow_zero=True)
    return out


def _validate(args, cfg: dict) -> tuple[Path, list[str]]:
    """Options, sampler settings and output paths checked before any sampling; returns the
    figure path and warnings."""
    checks.positive_int(args.c, "--c", minimum=3, maximum=16)
    checks.seed(args.seed, "--seed")
    checks.threads(args.threads)
    checks.positive_float(args.beta_lik, "--beta-lik")
    if args.batch_points is not None:
        checks.positive_int(args.batch_points, "--batch-points")
    for key, top in BOUNDS.items():
        checks.positive_int(cfg[key], FLAGS.get(key, f"--{key}"), minimum=4 if key == "n_warmup" else 1, maximum=top)
    if not 0 < checks.positive_float(cfg["beta_min"], "--beta-min") < 1:
        raise ValueError(f"--beta-min must lie in (0, 1), got {cfg['beta_min']!r}")
    if not 0 < checks.positive_float(cfg["target_se"], "--target-se") < 1:
        raise ValueError(f"--target-se must lie in (0, 1), got {cfg['target_se']!r}")
    checks.device(args.device)
    llcs = parse_llcs(args.llc)
    if llcs:
        zoo.critical_points(args.c, progress=True)  # solved once (seconds at large c), then cached
        valid = zoo.labels(args.c)
        unknown = sorted(set(llcs) - set(valid))
        if unknown:
            raise ValueError(f"--llc: unknown zoo label(s) {', '.join(unknown)} at c = {args.c}; valid: {', '.join(valid)}")
    checks.output_dir(args.out, "--out")
    fig = checks.output_file(args.figure or f"results/figures/posterior_c{args.c}.png", "--figure",
                             suffixes=checks.FIGURE_SUFFIXES)
    notes = []
    if cfg["n_temps"] == 1:
        notes.append("--temps 1: no tempering, so replica exchange is plain HMC and its 'posterior mass' is "
                     "chain occupancy (basins of the start), not posterior mass; labelled so below and on the figure")
    return fig, notes


OVERRIDES = dict(n_chains="n_chains", seeds="seeds", replicas="replicas", n_temps="temps", beta_min="beta_min",
                 n_warmup="warmup", n_draws="draws", max_steps="max_steps", target_se="target_se",
                 min_draws="min_draws", plain_draws="plain_draws")  # phase_sweep setting: args attribute


def run(args) -> int:
    where = common.options(args)  # checked first
    ns = parse_grid(args.n) if args.n else reproduce.posterior_grid(args.c, args.scale)
    overrides = {k: getattr(args, a) for k, a in OVERRIDES.items() if getattr(args, a) is not None}
    fig_path, notes = _validate(args, {**reproduce.posterior_settings(args.scale), **overrides})
    for note in notes:
        checks.warn(note)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = reproduce.posterior_sweep(args.c, ns, scale=args.scale, beta_lik=args.beta_lik, seed=args.seed,
                                    out=args.out, figure=fig_path, llcs=parse_llcs(args.llc),
                                    llc_estimate=args.llc_estimate, predict=not args.no_predict,
                                    batch_points=args.batch_points, device=args.device,
                                    progress=not args.no_progress, **where, **overrides)
    for note in res["notes"]:
        if note.startswith("lambda by SGLD"):
            print(note)
    print(f"posterior c={args.c}, beta_lik={args.beta_lik:g}: {len(ns)} n values, results in {res['run_dir']}")
    _print_tables(res, res["settings"]["n_temps"] > 1)
    print(f"figure: {fig_path}")
    return 0


def _print_tables(res: dict, tempered: bool) -> None:
    head = "n      " + "  ".join(f"{p:>16s}" for p in res["phases"])
    print("posterior mass (replica exchange) +- s.e.:" if tempered else
          "chain occupancy of the ladder chains (--temps 1: no tempering, NOT posterior mass) +- s.e.:")
    print(head)
    for i, n in enumerate(res["ns"]):
        print(f"{n:<6d} " + "  ".join(f"{m:7.3f} +- {s:5.3f}" for m, s in zip(res["mass"][i], res["mass_se"][i])))
    print("chain occupancy (plain chains, NOT posterior mass):")
    print(head)
    for i, n in enumerate(res["ns"]):
        print(f"{n:<6d} " + "  ".join(f"{m:16.3f}" for m in res["occupancy"][i]))
    print("diagnostics (ladders: accept, divergences, min swap rate, round trips per ladder, rounds sampled, "
          "largest Monte Carlo s.e. of a mass, min ESS of the mass indicators; "
          "plain chains: per phase max split R-hat / min ESS of invariant summaries):")
    for pt in res["points"]:
        d = pt["diag"]
        ess = [v for vals in d["mass_indicator_ess"].values() for v in vals if v is not None]
        ph = "; ".join(f"{k}: {v.get('max_rhat', float('nan')):.2f}/{v.get('min_ess', float('nan')):.0f} ({v['chains']})"
                       for s in map(io.jsonable, d["plain_phase_diagnostics"])  # typed when fresh, dicts when loaded
                       for k, v in s.items() if k != "_mixed" and v["chains"] >= 2)
        trips = np.mean(d.get("round_trips_seed", [[np.nan]]))
        print(f"n={pt['n']:<5d} accept {np.mean(d['pt_accept']):.2f}, div {int(np.sum(d['pt_divergences']))}, "
              f"swap {min(d['swap_rate'], default=float('nan')):.2f}, trips {trips:.1f}, "
              f"rounds {max(d.get('pt_rounds', [0]))}, se {d.get('mass_mc_se_max', float('nan')):.3f}, "
              f"ess {min(ess, default=float('nan')):.0f} | {ph}")
    _print_draw_flags(res["points"])
    for t in res["transitions"]:
        print(f"predicted n_c {t['alpha']} -> {t['beta']}: {t['n_c']:.0f}")
    if res.get("transitions_error"):
        print(f"no predicted n_c: {res['transitions_error']}")


def _print_draw_flags(points: list[dict]) -> None:
    """Data sets whose saved beta = 1 draws fail a rank diagnostic (R-hat > 1.01, bulk or tail
    ESS < 100, of their loss and energy across the ladders)."""
    bad = [f"n={pt['n']} s{s}: {', '.join(f)}" for pt in points
           for s, f in enumerate(pt["diag"].get("draws", {}).get("flags", [])) if f]
    total = sum(len(pt["diag"].get("draws", {}).get("flags", [])) for pt in points)
    print(f"saved draws (rank R-hat, bulk / tail ESS of loss and energy): {len(bad)} of {total} data sets flagged"
          + (": " + "; ".join(bad[:12]) + (f"; ... {len(bad) - 12} more" if len(bad) > 12 else "") if bad else ""))
