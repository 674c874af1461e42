"""`tms train`: vectorised SGD over many runs (SPEC 4), checkpoints saved resumably; a shell
over tms.experiments.train.run (one flag per field of tms.dynamics.train.TrainSettings)."""
from __future__ import annotations

from pathlib import Path

from tms.cli import common
from tms.dynamics.train import TrainSettings
from tms.experiments import train as experiment

NAME = "train"
HELP = "SGD on the TMS for many runs at once (SPEC 4); quick scale by default, --scale full for the paper"


def add_arguments(p) -> None:
    full, quick = experiment.FULL, experiment.QUICK
    p.add_argument("--scale", choices=tuple(experiment.PRESETS), default="quick",
                   help=f"full: the paper's scale, {full.runs} runs x {full.epochs} epochs ({full.total_steps:,} "
                        f"steps); quick (default): {quick.runs} runs x {quick.epochs} epochs; the flags below "
                        "override it")
    common.add_settings(p, TrainSettings, preset=quick)
    common.add_threads(p)
    p.add_argument("--save-every", type=float, default=60.0, metavar="SECONDS",
                   help="save the unfinished run (PATH_partial) at the first epoch-block boundary after this many "
                        "seconds, and on Ctrl-C or SIGTERM, so a killed run resumes there (default 60; 0 = at every "
                        "block)")
    p.add_argument("--out", default="results/sgd/train",
                   help="result path (.npz + .json); an existing result is reused, a partial one resumed")
    common.add_force(p)
    common.add_arguments(p)


def run(args) -> int:
    where = common.options(args)  # checked first
    settings = common.settings_from(args, experiment.PRESETS[args.scale])
    res = experiment.run(settings, out=args.out, device=args.device, threads=args.threads,
                         save_every=args.save_every, force=args.force, progress=args.progress, **where)
    s, L = res.settings, res.pop_loss[-1]
    print(f"{len(res.run_ids)} runs x {s.total_steps} steps ({s.epochs} epochs, n={s.n}, batch {s.batch_size}, "
          f"lr {s.lr}, init {s.init}) -> {Path(args.out)}.npz/.json")
    print(f"final population loss: min {L.min():.5f}, median {L.median():.5f}, max {L.max():.5f}")
    print(f"next: tms transitions --input {args.out}")
    return 0
