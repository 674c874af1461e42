"""`tms census --r R --c C`: the census of the critical points of the population loss at any
(r, c), a shell over tms.experiments.census.run. Prints the table sorted by loss and saves the
census (PATH.npz + PATH.json; a rerun with the same settings reuses it, an interrupted one resumes).
Settings flags: the fields of tms.theory.census.CensusSettings (--n-prior is n_prior)."""
from __future__ import annotations

import json
import sys

from tms.cli import common
from tms.core import checks, io
from tms.experiments import census as census_command
from tms.theory.census import GRAD_TOL, QUICK, CensusSettings
from tms.theory.census_points import RANK_RTOL

NAME = "census"
HELP = "census of the critical points at any (r, c): loss, Hessian index and rank, lambda, prior, multiplicity"
DEVICE_HELP = ("checked and accepted so one --device can go to every command; the census solves many tiny "
               "float64 problems and runs on the CPU")


def add_arguments(p) -> None:
    p.add_argument("--r", type=int, default=3, help="hidden dimensions (default 3)")
    p.add_argument("--c", type=int, default=7, help="number of features (default 7)")
    common.add_settings(p, CensusSettings, preset=QUICK)
    p.add_argument("--out", default=None, help="result path (default results/census/r<r>_c<c>)")
    common.add_force(p)
    p.add_argument("--threads", type=int, help="torch threads, 1..1024 (default: torch's choice)")
    p.add_argument("--rows", type=int, default=40, help="points printed, lowest loss first (default 40)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")


def _row(q) -> str:
    lam = f"{q.llc:7.1f}" if q.llc is not None else f"{'-':>7s}"
    rank = f"{q.rank:5d}" if q.rank is not None else f"{'-':>5s}"
    return (f"{q.label:24s} {q.loss:12.9f} {q.index:5d} {rank} {lam} {q.prior:8.4f} {q.multiplicity:6d} "
            f"{q.found:6d}  {q.kind}")


def run(args) -> int:
    settings = common.settings_from(args, QUICK)
    checks.positive_int(args.rows, "--rows")
    res = census_command.run(args.r, args.c, settings=settings, out=args.out, device=args.device,
                             threads=args.threads, force=args.force, progress=args.progress)
    if args.json:
        json.dump(io.jsonable(dict(r=res.r, c=res.c, settings=res.settings, n_starts=res.n_starts,
                                   n_critical=res.n_critical, points=[q.as_record() for q in res.points])),
                  sys.stdout, indent=1)
        print()
        return 0
    print(f"census r = {res.r}, c = {res.c} (d = {res.r * res.c + res.c}): {res.n_starts} starts, {res.n_critical} "
          f"reached |grad| < {GRAD_TOL:g}, {len(res.points)} distinct modulo O({res.r}) x permutations")
    print(f"{'label':24s} {'loss':>12s} {'index':>5s} {'rank':>5s} {'lambda':>7s} {'prior':>8s} {'mult':>6s} "
          f"{'found':>6s}  kind")
    for q in res.points[: args.rows]:
        print(_row(q))
    if len(res.points) > args.rows:
        print(f"... {len(res.points) - args.rows} more (--rows)")
    print(f"index/rank: Hessian eigenvalues below -tol / beyond tol, tol = {RANK_RTOL:g} * max(1, max|eig|); "
          f"lambda = rank/2 at minimally singular C^2 minima; kind 'min?': no descent found to second order "
          f"(L only C^1 there, or not minimally singular); prior = |w|^2/2 without the flat biases; mult = c!/|Aut|")
    print(f"saved {args.out or census_command.default_out(res.r, res.c)}.npz / .json")
    return 0
