"""`tms compare`: dynamical (SGD) transitions beside Bayesian ones, from saved results: a
shell over tms.experiments.compare.run."""
from __future__ import annotations

from tms.cli import common
from tms.core import checks
from tms.experiments import compare

DEVICE_HELP = "checked and accepted so one --device can go to every command; compare reads saved results only"
NAME = "compare"
HELP = "SGD transitions beside their Bayesian counterparts (predicted n_c, posterior crossing) from `tms reproduce` results"


def add_arguments(p) -> None:
    p.add_argument("--results", default="results/reproduce", help="a `tms reproduce --out` directory")
    p.add_argument("--sgd", default="sgd", choices=compare.SGD_STARTS, help="which SGD start: 4-gon or random")
    p.add_argument("--sweep", default=None, help="the posterior sweep's run folder (e.g. c6_quick_b1_s0) where "
                                                 "--results holds several (else that is an error)")


def run(args) -> int:
    checks.device(args.device)
    rows = compare.run(results=args.results, sgd=args.sgd, sweep=args.sweep)
    if not rows:
        print("no SGD transition observed in these results")
        return 0
    print(f"c = {rows[0].c}: observed SGD transitions and their Bayesian counterparts "
          "(n_c: root of n dL + dlambda log n + dc = 0, other O(1) terms dropped)")
    print(f"{'transition':>12} {'runs':>5} {'median step':>11} {'dL':>9} {'dlambda':>13} {'n_c':>7} "
          f"{'posterior':>10}  antecedent")
    for r in rows:
        dl = "-" if r.dlambda is None else (f"{r.dlambda:.2f}" if not r.dlambda_se
                                            else common.plus_minus(r.dlambda, r.dlambda_se))
        nc = "-" if r.n_c is None else f"{r.n_c:.0f}"
        print(f"{r.src + ' -> ' + r.dst:>12} {r.sgd_count:5d} {r.median_step:11.0f} {r.dL:9.5f} "
              f"{dl:>13} {nc:>7} {r.posterior_crossing:>10}  {r.antecedent}")
    print("posterior: n where the measured posterior mass of the later phase overtakes the earlier one")
    return 0
