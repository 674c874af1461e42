"""`tms train`: vectorised SGD over many runs (SPEC 4), checkpoints saved resumably."""
from __future__ import annotations

from pathlib import Path

import torch

from tms.cli import common
from tms.core import checks, io
from tms.dynamics import tasks as dynamics_tasks
from tms.dynamics.train import SCALES, partial_path

NAME = "train"
HELP = "SGD on the TMS for many runs at once (SPEC 4); quick scale by default, --scale full for the paper"

QUICK, FULL = SCALES["quick"], SCALES["full"]
MAX_RUNS, MAX_EPOCHS, MAX_C = 10**4, 10**6, 100
MAX_TOTAL_STEPS = 10**8  # epochs * (n // batch size): about a day for 32 runs on one core


def add_arguments(p) -> None:
    p.add_argument("--scale", choices=("quick", "full"), default="quick",
                   help=f"full: the paper's scale, {FULL['runs']} runs x {FULL['epochs']} epochs (225,000 steps); "
                        f"quick (default): {QUICK['runs']} runs x {QUICK['epochs']} epochs")
    p.add_argument("--runs", type=int, help=f"number of runs (overrides the scale; at most {MAX_RUNS})")
    p.add_argument("--epochs", type=int, help=f"epochs per run (overrides the scale; at most {MAX_EPOCHS}, and "
                                             f"epochs * (n // batch size) <= {MAX_TOTAL_STEPS:.0e} steps)")
    p.add_argument("--init", choices=["4gon", "random"], default="4gon", help="start near a 4-gon, or W ~ N(0, sigma^2)")
    p.add_argument("--sigma", type=float, default=1.0, help="std of W entries for --init random")
    p.add_argument("--radius", type=float, default=0.9, help="4-gon start: column length")
    p.add_argument("--noise", type=float, default=0.01, help="4-gon start: std of the noise on every W entry")
    p.add_argument("--n", type=int, default=1000, help="training set size")
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--c", type=int, default=6, help="features")
    p.add_argument("--r", type=int, default=2, help="hidden dims")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shared-data", action="store_true", help="one training set for all runs (default: one per run)")
    p.add_argument("--float32", action="store_true", help="train in float32 (default float64)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, 1..1024 (1 is fastest at these sizes)")
    p.add_argument("--save-every", type=float, default=60.0, metavar="SECONDS",
                   help="save the unfinished run (PATH_partial) at the first epoch-block boundary after this many "
                        "seconds, and on Ctrl-C or SIGTERM, so a killed run resumes there (default 60; 0 = at every "
                        "block)")
    p.add_argument("--out", default="results/sgd/train",
                   help="result path (.npz + .json); an existing result is reused, a partial one resumed")
    common.add_arguments(p)


def _validate(args, runs: int, epochs: int) -> None:
    """Every option checked before any work (train_sgd checks the rest); the output probed."""
    checks.positive_int(runs, "--runs", maximum=MAX_RUNS)
    checks.positive_int(epochs, "--epochs", maximum=MAX_EPOCHS)
    checks.positive_int(args.n, "--n", maximum=checks.MAX_N)
    checks.positive_int(args.batch_size, "--batch-size", maximum=args.n)
    checks.positive_int(args.c, "--c", maximum=MAX_C)
    checks.positive_int(args.r, "--r", maximum=args.c)
    if epochs * (args.n // args.batch_size) > MAX_TOTAL_STEPS:
        raise ValueError(f"--epochs {epochs} x {args.n // args.batch_size} steps per epoch exceeds "
                         f"{MAX_TOTAL_STEPS:.0e} SGD steps; lower --epochs or raise --batch-size")
    checks.positive_float(args.lr, "--lr")
    checks.positive_float(args.sigma, "--sigma", allow_zero=True)
    checks.positive_float(args.radius, "--radius")
    checks.positive_float(args.noise, "--noise", allow_zero=True)
    checks.positive_float(args.save_every, "--save-every", allow_zero=True)
    checks.seed(args.seed, "--seed")
    checks.threads(args.threads)
    checks.output_stem(args.out, "--out")


def _tidy(out) -> None:
    """A finished result makes an unfinished one (left by a kill after the final save) stale."""
    if io.result_exists(out):
        partial = partial_path(out)
        for f in (Path(out).with_suffix(".npz"), Path(out).with_suffix(".json"),
                  partial.with_suffix(".npz"), partial.with_suffix(".json")):
            io.remove_temp_files(f)
        for f in (partial.with_suffix(".npz"), partial.with_suffix(".json")):
            f.unlink(missing_ok=True)


def run(args) -> int:
    where = common.options(args)  # checked first
    scale = SCALES[args.scale]
    runs = args.runs if args.runs is not None else scale["runs"]
    epochs = args.epochs if args.epochs is not None else scale["epochs"]
    _validate(args, runs, epochs)
    res = dynamics_tasks.train_sgd(
        runs, seed=args.seed, n=args.n, batch_size=args.batch_size, lr=args.lr, epochs=epochs,
        init=args.init, radius=args.radius, noise=args.noise, sigma=args.sigma, r=args.r, c=args.c,
        shared_data=args.shared_data, dtype=torch.float32 if args.float32 else torch.float64,
        path=args.out, num_threads=args.threads, save_every=args.save_every, device=checks.device(args.device),
        **where,
    )
    _tidy(args.out)
    rec = res.record
    L = res.pop_loss[-1]
    print(f"{len(rec['runs'])} runs x {rec['total_steps']} steps ({rec['epochs']} epochs, n={rec['n']}, "
          f"batch {rec['batch_size']}, lr {rec['lr']}, init {rec['init']}) -> {Path(args.out)}.npz/.json")
    print(f"final population loss: min {L.min():.5f}, median {L.median():.5f}, max {L.max():.5f}")
    print(f"next: tms transitions --input {args.out}")
    return 0
