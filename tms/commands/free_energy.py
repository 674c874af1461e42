"""`tms free-energy`: measured free energy of every phase (SPEC 3), the O(1) terms the lab's
formula drops, lambda three ways, and the figure (resumable)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tms import checks

NAME = "free-energy"
HELP = "measured free-energy differences of the phases, lambda from the ladder, the O(1) terms that move n_c"

SWEEP_FLAGS = dict(seeds="--seeds", replicas="--replicas", n_temps="--temps", beta_min="--beta-min",
                   n_warmup="--warmup", n_draws="--draws", max_steps="--max-steps")
LAMBDA_FLAGS = dict(n="--lambda-n", seeds="--lambda-seeds", replicas="--lambda-replicas", n_temps="--lambda-temps",
                    beta_lo="--lambda-beta-lo", n_warmup="--lambda-warmup", n_draws="--lambda-draws")
BOUNDS = dict(seeds=1000, replicas=10**4, n_temps=1000, n_warmup=10**6, n_draws=10**6, max_steps=4096, n=10**6)


def add_arguments(p) -> None:
    p.add_argument("--c", type=int, default=6, help="number of features (r = 2), 4..8 (the data term enumerates c!)")
    p.add_argument("--n", help="n-grid, start:stop:step or comma list (default: 200..650 for c = 6, 100..400 else)")
    p.add_argument("--data", help="a .npz of your own data sets instead of seeds: arrays X (n, c), any names; "
                                  "data sets of one n form one grid point")
    p.add_argument("--paper", action="store_true", help="larger scale: more data sets, ladders, temperatures, draws")
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
    p.add_argument("--sgld-steps", type=int, help="SGLD steps per chain (default 1000)")
    p.add_argument("--reading", choices=("zoo", "hull"), default="zoo",
                   help="reading of the samples shown on the figure (both are saved and reported)")
    p.add_argument("--beta-lik", type=float, default=1.0, help="likelihood inverse temperature (1 = SPEC convention)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/free_energy", help="results directory (finished pieces are skipped)")
    p.add_argument("--figure", help="figure path (default figures/free_energy_c{c}.png)")
    p.add_argument("--threads", type=int, help="torch threads (default 1: the work is many small tensor ops, "
                                               "which extra threads slow down)")
    p.add_argument("--no-progress", action="store_true")
    p.epilog = "bounds: " + ", ".join(f"{k.replace('n_', '')} <= {v}" for k, v in BOUNDS.items())


def _overrides(args, prefix: str, flags: dict) -> dict:
    out = {}
    for key, flag in flags.items():
        v = getattr(args, f"{prefix}_{key}")
        if v is None:
            continue
        if key in ("beta_min", "beta_lo"):
            if not 0 < checks.positive_float(v, flag) < 1:
                raise ValueError(f"{flag} must lie in (0, 1), got {v!r}")
        else:
            low = 4 if key == "n_warmup" else 2 if key in ("replicas", "n_temps", "n") else 1
            checks.positive_int(v, flag, minimum=low, maximum=BOUNDS[key])
        out[key] = v
    return out


def load_datasets(path: str, c: int) -> list[list[np.ndarray]]:
    """The arrays X (n, c) of a .npz, grouped by n (ascending): one grid point per n."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [np.asarray(z[k], dtype=np.float64) for k in sorted(z.files)]
    except (OSError, ValueError) as err:
        raise ValueError(f"--data {path}: not a readable .npz of arrays ({err})") from None
    bad = [a.shape for a in arrays if a.ndim != 2 or a.shape[1] != c or a.shape[0] < 2]
    if not arrays or bad:
        raise ValueError(f"--data must hold arrays X of shape (n >= 2, c = {c}); got shapes {bad or 'none'}")
    groups: dict[int, list] = {}
    for a in arrays:
        groups.setdefault(a.shape[0], []).append(a)
    return [groups[n] for n in sorted(groups)]


def _validate(args) -> Path:
    checks.positive_int(args.c, "--c", minimum=4, maximum=8)
    checks.seed(args.seed, "--seed")
    checks.threads(args.threads)
    checks.positive_float(args.beta_lik, "--beta-lik")
    for flag, v in (("--sgld-chains", args.sgld_chains), ("--sgld-steps", args.sgld_steps)):
        if v is not None:
            checks.positive_int(v, flag, minimum=2 if flag == "--sgld-chains" else 10, maximum=10**6)
    checks.positive_int(args.mc_draws, "--mc-draws", minimum=1000, maximum=10**7)
    if args.batch_points is not None:
        checks.positive_int(args.batch_points, "--batch-points", maximum=1000)
    if args.n and args.data:
        raise ValueError("give --n (synthetic data sets) or --data (your own), not both")
    checks.output_dir(args.out, "--out")
    return checks.output_file(args.figure or f"figures/free_energy_c{args.c}.png", "--figure",
                              suffixes=checks.FIGURE_SUFFIXES)


def run(args) -> int:
    from tms import free_energy, zoo
    from tms.commands.posterior import parse_grid
    from tms.plots.free_energy import plot_free_energy

    fig_path = _validate(args)
    device = checks.device(getattr(args, "device", "cpu"))
    sweep, lam = _overrides(args, "sweep", SWEEP_FLAGS), _overrides(args, "lam", LAMBDA_FLAGS)
    sgld = {k: v for k, v in (("n_chains", args.sgld_chains), ("n_steps", args.sgld_steps)) if v is not None}
    ns = parse_grid(args.n) if args.n else None
    datasets = load_datasets(args.data, args.c) if args.data else None
    labels = None
    if args.labels:
        labels = [s.strip() for s in args.labels.split(",") if s.strip()]
        unknown = sorted(set(labels) - set(zoo.labels(args.c)))
        if unknown or not labels:
            raise ValueError(f"--labels: unknown zoo label(s) {', '.join(unknown)} at c = {args.c}; "
                             f"valid: {', '.join(zoo.labels(args.c))}")
    torch.set_num_threads(args.threads or 1)
    tag = ("paper" if args.paper else "quick") + ("_data" if datasets is not None else "")
    out = Path(args.out) / f"c{args.c}_{tag}_b{args.beta_lik:g}_s{args.seed}"
    res = free_energy.measure(args.c, ns, seed=args.seed, paper=args.paper, out_dir=out, datasets=datasets,
                              beta_lik=args.beta_lik, progress=not args.no_progress, sweep=sweep, lam=lam, sgld=sgld,
                              labels=labels, batch_points=args.batch_points, n_mc=args.mc_draws,
                              device=device)
    res["settings"]["reading"] = args.reading
    free_energy.save_summary(out / f"summary_c{args.c}", res)
    fig = plot_free_energy(out / f"summary_c{args.c}", fig_path, reading=args.reading)
    print("\n".join(free_energy.report_section(res)))
    if res.get("sgld_error"):
        print(f"SGLD estimates failed: {res['sgld_error']}")
    print(f"results in {out}; figure ({args.reading} reading): {fig}")
    return 0
