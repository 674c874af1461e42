"""`tms posterior`: posterior phase mass against n (SPEC 3), saved point by point, and its figure;
a shell over tms.experiments.posterior.run (one flag per field of tms.bayes.settings.PosteriorSettings)."""
from __future__ import annotations

import numpy as np

from tms.bayes.posterior import PhaseSweep
from tms.bayes.settings import PosteriorSettings
from tms.cli import common
from tms.cli.common import MAX_GRID, MAX_N, parse_grid
from tms.core import checks, io
from tms.experiments import posterior as experiment
from tms.samplers import diagnostics

NAME = "posterior"
HELP = "Bayesian phase transitions: posterior phase mass against the sample size n (resumable)"


def add_arguments(p) -> None:
    p.add_argument("--c", type=int, default=6, help="number of features (r = 2), 3..16")
    p.add_argument("--ns", help="n-grid, start:stop:step or comma list (default: 100..2000 for c = 6, 100..600 else; "
                                "the full scale's grid is finer)")
    p.add_argument("--scale", choices=tuple(experiment.PRESETS), default="quick",
                   help="sampler settings and grid: quick (default) or full, the paper's scale (more data sets, "
                        "chains, ladders, draws); the flags below override it")
    common.add_settings(p, PosteriorSettings, preset=experiment.QUICK)
    p.epilog = f"bounds: n <= {MAX_N}, {MAX_GRID} n values; every setting is checked before any sampling"
    p.add_argument("--beta-lik", type=float, default=1.0, help="likelihood inverse temperature (1 = SPEC convention)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-points", type=int,
                   help="n values sampled per batched call (default all; each n is saved as soon as it is finished)")
    p.add_argument("--out", default="results/posterior",
                   help="results directory (finished n are skipped; an interrupted run resumes there)")
    p.add_argument("--figure", help="figure path (default results/figures/posterior_c{c}.png)")
    p.add_argument("--llc", action="append", default=[], metavar="LABEL=VALUE",
                   help="lambda for a zoo label the zoo lacks (e.g. a 4-gon SGLD estimate); repeatable; a label "
                        "with a zoo theory lambda needs --llc-override")
    p.add_argument("--llc-override", action="store_true",
                   help="let --llc replace the zoo's theory lambda of a label (else that is an error)")
    common.add_force(p)
    p.add_argument("--llc-estimate", action="store_true",
                   help="estimate by SGLD (population loss) the lambda of phases seen that the zoo lacks (4-gons)")
    p.add_argument("--no-predict", action="store_true", help="skip the predicted n_c (no zoo)")
    common.add_threads(p)
    p.add_argument("--save-every", type=float, default=60.0, metavar="SECONDS",
                   help="save the unfinished points' sampler state (NAME_partial_nN) every this many seconds, and "
                        "on Ctrl-C or SIGTERM, so a killed run resumes there (default 60; 0 = after every step)")
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


def run(args) -> int:
    where = common.options(args)  # checked first
    settings = common.settings_from(args, experiment.PRESETS[args.scale])
    if args.min_draws is not None and settings.min_draws > settings.n_draws:
        raise ValueError(f"--min-draws {settings.min_draws} exceeds --n-draws {settings.n_draws}: the precision "
                         "target could never stop a data set before its budget ends")
    ns = parse_grid(args.ns) if args.ns else experiment.posterior_grid(args.c, args.scale)
    figure = args.figure or f"results/figures/posterior_c{args.c}.png"
    res = experiment.run(args.c, ns, settings, scale=args.scale, beta_lik=args.beta_lik, seed=args.seed,
                         out=args.out, figure=figure, llcs=parse_llcs(args.llc), llc_estimate=args.llc_estimate,
                         predict=not args.no_predict, batch_points=args.batch_points, save_every=args.save_every,
                         device=args.device, threads=args.threads, progress=args.progress,
                         llc_override=args.llc_override, force=args.force, **where)
    for note in res.notes:
        if note.startswith("lambda by SGLD"):
            print(note)
    print(f"posterior c={args.c}, beta_lik={args.beta_lik:g}: {len(ns)} n values, results in {res.run_dir}")
    _print_tables(res.sweep, settings.n_temps > 1)
    print(f"figure: {figure}")
    return 0


def _print_tables(res: PhaseSweep, tempered: bool) -> None:
    head = "n      " + "  ".join(f"{p:>16s}" for p in res.phases)
    print("posterior mass (replica exchange) +- s.e.:" if tempered else
          "chain occupancy of the ladder chains (--n-temps 1: no tempering, NOT posterior mass) +- s.e.:")
    print(head)
    for i, n in enumerate(res.ns):
        unsupported = not _mass_ess(io.jsonable(res.points[i].diag))
        print(f"{n:<6d} " + "  ".join(f"{m:7.3f} +- {_se(s)}" for m, s in zip(res.mass[i], res.mass_se[i]))
              + ("  [no mass indicator has a defined ESS: these errors are not supported]" if unsupported else ""))
    if not np.isfinite(res.mass_se).all():
        print("  n/a: no standard error (one data set and one ladder whose phase indicator has no defined ESS, "
              "e.g. it never changed): the mass is NOT resolved; use --seeds >= 2 or --replicas >= 2")
    print("chain occupancy (plain chains, NOT posterior mass):")
    print(head)
    for i, n in enumerate(res.ns):
        print(f"{n:<6d} " + "  ".join(f"{m:16.3f}" for m in res.occupancy[i]))
    print("diagnostics (ladders: accept, divergences, min swap rate, round trips per ladder, rounds sampled, "
          "largest Monte Carlo s.e. of a mass, min ESS of the mass indicators; "
          "plain chains: per phase max split R-hat / min ESS of invariant summaries):")
    for pt in res.points:
        print(_diagnostics_line(pt.n, io.jsonable(pt.diag)))  # typed when fresh, dicts when loaded
    _print_draw_flags(res.points)
    for t in res.transitions:
        print(f"predicted n_c {t.alpha} -> {t.beta}: {t.n_c:.0f}")
    if res.transitions_error:
        print(f"no predicted n_c: {res.transitions_error}")


def _mass_ess(d: dict) -> list[float]:
    """The defined ESS values of the mass indicators in a point's diagnostics."""
    return [v for vals in d.get("mass_indicator_ess", {}).values() for v in vals
            if v is not None and np.isfinite(v)]


def _se(s: float) -> str:
    """A standard error in 5 columns, 'n/a' when there is none."""
    return f"{s:5.3f}" if np.isfinite(s) else "  n/a"


def _diagnostics_line(n: int, d: dict) -> str:
    ess = _mass_ess(d)
    ph = "; ".join(f"{k}: {v.get('max_rhat', float('nan')):.2f}/{v.get('min_ess', float('nan')):.0f} ({v['chains']})"
                   for s in d["plain_phase_diagnostics"] for k, v in s.items() if k != "_mixed" and v["chains"] >= 2)
    trips = np.mean(d.get("round_trips_seed", [[np.nan]]))
    return (f"n={n:<5d} accept {np.mean(d['pt_accept']):.2f}, div {int(np.sum(d['pt_divergences']))}, "
            f"swap {min(d['swap_rate'], default=float('nan')):.2f}, trips {trips:.1f}, "
            f"rounds {max(d.get('pt_rounds', [0]))}, se {d.get('mass_mc_se_max', float('nan')):.3f}, "
            f"ess {f'{min(ess):.0f}' if ess else 'n/a (undefined)'} | {ph}")


def _print_draw_flags(points: list) -> None:
    """Data sets whose saved beta = 1 draws fail a rank diagnostic (tms.samplers.diagnostics.
    failing: R-hat above RHAT_MAX, bulk or tail ESS below ESS_MIN, of their loss and energy
    across the ladders)."""
    flags = [(pt.n, s, f) for pt in points for s, f in enumerate(pt.diag.get("draws", {}).get("flags", []))]
    bad = [f"n={n} s{s}: {', '.join(f)}" for n, s, f in flags if f]
    print(f"saved draws (rank R-hat > {diagnostics.RHAT_MAX}, bulk / tail ESS < {diagnostics.ESS_MIN} of loss and "
          f"energy): {len(bad)} of {len(flags)} data sets flagged"
          + (": " + "; ".join(bad[:12]) + (f"; ... {len(bad) - 12} more" if len(bad) > 12 else "") if bad else ""))
