"""`tms free-energy`: measured free energy of every phase (docs/SPEC.md section 3), the O(1)
terms the lab's formula drops, lambda three ways, and the figure (resumable): a shell over
tms.experiments.free_energy.run. The flags are the fields of tms.bayes.settings.
FreeEnergySettings: its sweep's bare (--n-draws is sweep.n_draws), the phase-confined ladders'
as --local-* and the SGLD lambdas' as --sgld-*."""
from __future__ import annotations

from tms.bayes.free_energy.measure import report_section
from tms.bayes.settings import FreeEnergySettings, FreeEnergySweep, LocalLadders
from tms.cli import common
from tms.cli.common import parse_grid
from tms.experiments import free_energy as experiment
from tms.llc.estimator import LLCSettings

NAME = "free-energy"
HELP = "measured free-energy differences of the phases, lambda from the ladder, the O(1) terms that move n_c"


def add_arguments(p) -> None:
    quick = experiment.QUICK
    p.add_argument("--c", type=int, default=6, help="number of features (r = 2), 4..8 (the data term enumerates c!)")
    p.add_argument("--ns", help="n-grid, start:stop:step or comma list (default: 200..650 for c = 6, 100..400 else)")
    p.add_argument("--data", help="a .npz of your own data sets instead of seeds: arrays X (n, c), any names; "
                                  "data sets of one n form one grid point")
    p.add_argument("--scale", choices=tuple(experiment.PRESETS), default="quick",
                   help="full: more data sets, ladders, temperatures, draws; the flags below override it")
    common.add_settings(p, FreeEnergySweep, preset=quick.sweep)
    common.add_settings(p, LocalLadders, preset=quick.local, prefix="local")
    common.add_settings(p, LLCSettings, preset=quick.sgld, prefix="sgld", skip=("batch_size", "seed"))
    common.add_settings(p, FreeEnergySettings, preset=quick)
    p.add_argument("--labels", help="phases of the lambda table, comma list (default: p = 0 families, k >= c - 2)")
    p.add_argument("--batch-points", type=int, help="n values sampled (and saved) per batched call (default all)")
    p.add_argument("--reading", choices=("zoo", "hull"), default="zoo",
                   help="reading of the samples shown on the figure (both are saved and reported)")
    p.add_argument("--beta-lik", type=float, default=1.0, help="likelihood inverse temperature (1 = SPEC convention)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/free_energy", help="results directory (finished pieces are skipped)")
    common.add_force(p)
    p.add_argument("--figure", help="figure path (default results/figures/free_energy_c{c}.png)")
    common.add_threads(p)
    p.add_argument("--save-every", type=float, default=60.0, metavar="SECONDS",
                   help="save the unfinished points' sampler state (NAME_partial_nN) every this many seconds, and "
                        "on Ctrl-C or SIGTERM, so a killed run resumes there (default 60; 0 = after every step)")


def settings_from(args) -> FreeEnergySettings:
    """The preset of --scale with every settings flag given."""
    preset = experiment.PRESETS[args.scale]
    return common.settings_from(args, preset).replace(
        sweep=common.settings_from(args, preset.sweep), local=common.settings_from(args, preset.local, prefix="local"),
        sgld=common.settings_from(args, preset.sgld, prefix="sgld"))


def run(args) -> int:
    labels = [s.strip() for s in args.labels.split(",") if s.strip()] if args.labels is not None else None
    res = experiment.run(args.c, parse_grid(args.ns) if args.ns else None, settings_from(args), scale=args.scale,
                         data=args.data, labels=labels, batch_points=args.batch_points, reading=args.reading,
                         beta_lik=args.beta_lik, seed=args.seed, out=args.out, figure=args.figure,
                         save_every=args.save_every, threads=args.threads, progress=args.progress, device=args.device,
                         force=args.force)
    print("\n".join(report_section(res.summary)))
    if res.summary.sgld_error:
        print(f"SGLD estimates failed: {res.summary.sgld_error}")
    print(f"results in {res.out}; figure ({args.reading} reading): {res.figure}")
    return 0
