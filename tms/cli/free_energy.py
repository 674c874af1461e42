"""`tms free-energy`: measured free energy of every phase (docs/SPEC.md section 3), the O(1)
terms the lab's formula drops, lambda three ways, and the figure (resumable): a shell over
tms.experiments.free_energy.run."""
from __future__ import annotations

from tms.cli.common import parse_grid
from tms.experiments.free_energy import BOUNDS, report_section, run as run_free_energy

NAME = "free-energy"
HELP = "measured free-energy differences of the phases, lambda from the ladder, the O(1) terms that move n_c"

SWEEP_FLAGS = dict(seeds="--seeds", replicas="--replicas", n_temps="--temps", beta_min="--beta-min",
                   n_warmup="--warmup", n_draws="--draws", max_steps="--max-steps")
LAMBDA_FLAGS = dict(n="--lambda-n", seeds="--lambda-seeds", replicas="--lambda-replicas", n_temps="--lambda-temps",
                    beta_lo="--lambda-beta-lo", n_warmup="--lambda-warmup", n_draws="--lambda-draws")


def add_arguments(p) -> None:
    p.add_argument("--c", type=int, default=6, help="number of features (r = 2), 4..8 (the data term enumerates c!)")
    p.add_argument("--n", help="n-grid, start:stop:step or comma list (default: 200..650 for c = 6, 100..400 else)")
    p.add_argument("--data", help="a .npz of your own data sets instead of seeds: arrays X (n, c), any names; "
                                  "data sets of one n form one grid point")
    p.add_argument("--scale", choices=("quick", "full"), default="quick",
                   help="full: more data sets, ladders, temperatures, draws")
    for key, flag in SWEEP_FLAGS.items():
        p.add_argument(flag, type=float if key == "beta_min" else int, dest=f"sweep_{key}",
                       help=f"posterior sweep: {key.replace('n_', '')} (replica exchange)")
    for key, flag in LAMBDA_FLAGS.items():
        what = "sample size n" if key == "n" else key.replace("n_", "")
        p.add_argument(flag, type=float if key == "beta_lo" else int, dest=f"lam_{key}",
                       help=f"ladders confined to a phase, for lambda_Bayes: {what}")
    p.add_argument("--labels", help="phases of the lambda table, comma list (default: p = 0 families, k >= c - 2)")
    p.add_argument("--mc-draws", type=int, default=200_000,
                   help="prior draws for the zero-column volumes (Monte Carlo, the O(1) terms)")
    p.add_argument("--batch-points", type=int, help="n values sampled (and saved) per batched call (default all)")
    p.add_argument("--sgld-chains", type=int, help="SGLD chains per phase (default 8)")
    p.add_argument("--sgld-burnin", type=int, help="SGLD steps discarded per chain (default: tms.llc.estimator's protocol)")
    p.add_argument("--sgld-draws", type=int, help="SGLD draws kept per chain (default: tms.llc.estimator's protocol)")
    p.add_argument("--reading", choices=("zoo", "hull"), default="zoo",
                   help="reading of the samples shown on the figure (both are saved and reported)")
    p.add_argument("--beta-lik", type=float, default=1.0, help="likelihood inverse temperature (1 = SPEC convention)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/free_energy", help="results directory (finished pieces are skipped)")
    p.add_argument("--figure", help="figure path (default results/figures/free_energy_c{c}.png)")
    p.add_argument("--threads", type=int, help="torch threads (default 1: the work is many small tensor ops, "
                                               "which extra threads slow down)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.epilog = "bounds: " + ", ".join(f"{k.replace('n_', '')} <= {v}" for k, v in BOUNDS.items())


def run(args) -> int:
    labels = [s.strip() for s in args.labels.split(",") if s.strip()] if args.labels is not None else None
    res = run_free_energy(
        args.c, parse_grid(args.n) if args.n else None, data=args.data, scale=args.scale,
        sweep={k: getattr(args, f"sweep_{k}") for k in SWEEP_FLAGS}, lam={k: getattr(args, f"lam_{k}") for k in LAMBDA_FLAGS},
        labels=labels, mc_draws=args.mc_draws, batch_points=args.batch_points, sgld_chains=args.sgld_chains,
        sgld_burnin=args.sgld_burnin, sgld_draws=args.sgld_draws, reading=args.reading, beta_lik=args.beta_lik, seed=args.seed, out=args.out,
        figure=args.figure, threads=args.threads, progress=args.progress, device=args.device)
    print("\n".join(report_section(res)))
    if res.get("sgld_error"):
        print(f"SGLD estimates failed: {res['sgld_error']}")
    print(f"results in {res['out']}; figure ({args.reading} reading): {res['figure']}")
    return 0
