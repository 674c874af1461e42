"""`tms reproduce`: every result of the lab in one command, figures and a report; a shell over
tms.experiments.reproduce.run (its docstring lists the stages and how finished ones are reused)."""
from __future__ import annotations

import argparse

from tms.cli import common
from tms.core import checks
from tms.experiments import reproduce

NAME = "reproduce"
HELP = ("run the whole lab (zoo, Bayesian sweeps c = 4, 5, 6, SGD + LLC, antecedents, free energy) and write "
        "the figures and REPORT.md")


def add_arguments(p) -> None:
    p.add_argument("--scale", choices=("quick", "full"), default="quick",
                   help="quick: minutes on 2 cores (default); full: the paper's scale (see README)")
    p.add_argument("--tiny", dest="scale", action="store_const", const="tiny", help=argparse.SUPPRESS)
    p.add_argument("--out", default="results/reproduce",
                   help="results folder (finished stages are reused, also after the folder is moved)")
    p.add_argument("--figures", default="results/figures",
                   help="where the figures and REPORT.md go (the README's figures only when asked: --figures figures)")
    p.add_argument("--force", action="store_true", help="rerun every stage even if its results exist")
    p.add_argument("--seed", type=int, default=0, help="seed of every random stage")
    common.add_threads(p)
    common.add_arguments(p)


def run(args) -> int:
    where = common.options(args)  # checked first
    checks.seed(args.seed, "--seed")
    checks.threads(args.threads, "--threads")
    checks.output_dir(args.out, "--out")
    checks.output_dir(args.figures, "--figures")
    print(f"tms reproduce: scale {args.scale}, seed {args.seed}, device {args.device}, results in {args.out}, "
          f"figures in {args.figures}", flush=True)
    res = reproduce.run(args.scale, seed=args.seed, out=args.out, figures=args.figures, device=args.device,
                        force=args.force, threads=args.threads, progress=args.progress,
                        log=lambda line: print(line, flush=True), **where)
    print(f"report: {res.report}")
    return 0
