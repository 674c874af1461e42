"""`tms census --r R --c C`: the census of the critical points of the population loss at any
(r, c), a shell over tms.experiments.census.run. Prints the table sorted by loss and saves the
census (PATH.npz + PATH.json; a rerun with the same settings reuses it, an interrupted one resumes).
Settings flags: the fields of tms.theory.census.CensusSettings (--n-prior is n_prior) and of
tms.experiments.census.CensusLLCSettings (--llc-points K: the SGLD lambda of the K lowest points
in a column beside rank/2; a saddle among them is 'saddle: n/a', not estimated)."""
from __future__ import annotations

import dataclasses
import json
import sys

from tms.cli import common
from tms.core import checks, io
from tms.experiments import census as census_command
from tms.theory.census import GRAD_TOL, PHASE_KINDS, QUICK, CensusSettings
from tms.theory.census_points import RANK_RTOL

NAME = "census"
HELP = "census of the critical points at any (r, c): loss, Hessian index and rank, lambda, prior, multiplicity"
DEVICE_HELP = ("checked and accepted so one --device can go to every command; the census solves many tiny "
               "float64 problems and runs on the CPU")


def add_arguments(p) -> None:
    p.add_argument("--r", type=int, default=3, help="hidden dimensions (default 3)")
    p.add_argument("--c", type=int, default=7, help="number of features (default 7)")
    common.add_settings(p, CensusSettings, preset=QUICK)
    common.add_settings(p, census_command.CensusLLCSettings)
    p.add_argument("--out", default=None, help="result path (default results/census/r<r>_c<c>)")
    common.add_force(p)
    p.add_argument("--threads", type=int, default=None,
                   help="threads of the run, 1..1024: chunks of starts converged at once, torch one thread each "
                        "(default: every core); results do not depend on it")
    p.add_argument("--rows", type=int, default=40, help="points printed, lowest loss first (default 40)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")


def _row(q, sgld: str | None) -> str:
    lam = f"{q.llc:7.1f}" if q.llc is not None else f"{'-':>7s}"
    rank = f"{q.rank:5d}" if q.rank is not None else f"{'-':>5s}"
    col = "" if sgld is None else f" {sgld:>15s}"
    return (f"{q.label:24s} {q.loss:12.9f} {q.index:5d} {rank} {lam}{col} {q.prior:8.4f} {q.multiplicity:6d} "
            f"{q.found:6d}  {q.kind}")


def _sgld_column(res, k: int) -> list[str]:
    """The SGLD column's text of each point: 'value +- se' at the estimated minima among the k lowest
    points, 'saddle: n/a' at the saddles among them, '-' beyond them."""
    est = iter(res.llcs)  # the minima among the k lowest points, in order (tms.llc.census.point_llcs)
    col = []
    for i, q in enumerate(res.points):
        if i >= k:
            col.append("-")
        elif q.kind not in PHASE_KINDS:
            col.append("saddle: n/a")
        else:
            e = next(est)
            col.append(common.plus_minus(e.sgld, e.sgld_se))
    return col


def run(args) -> int:
    settings = common.settings_from(args, QUICK)
    checks.positive_int(args.rows, "--rows")
    sgld = common.settings_from(args, census_command.CensusLLCSettings())
    res = census_command.run(args.r, args.c, settings=settings, out=args.out, device=args.device,
                             threads=args.threads, force=args.force, progress=args.progress, **sgld.as_record())
    if args.json:
        json.dump(io.jsonable(dict(r=res.r, c=res.c, settings=res.settings, n_starts=res.n_starts,
                                   n_critical=res.n_critical, points=[q.as_record() for q in res.points],
                                   llcs=[dataclasses.asdict(q) for q in res.llcs])),
                  sys.stdout, indent=1)
        print()
        return 0
    _table(res, args.rows, sgld.llc_points)
    print(f"saved {args.out or census_command.default_out(res.r, res.c)}.npz / .json")
    return 0


def _table(res, rows: int, k: int) -> None:
    print(f"census r = {res.r}, c = {res.c} (d = {res.r * res.c + res.c}): {res.n_starts} starts, {res.n_critical} "
          f"reached |grad| < {GRAD_TOL:g}, {len(res.points)} distinct modulo O({res.r}) x permutations")
    col = _sgld_column(res, k) if k else [None] * len(res.points)
    head = f" {'SGLD lambda':>15s}" if k else ""
    print(f"{'label':24s} {'loss':>12s} {'index':>5s} {'rank':>5s} {'lambda':>7s}{head} {'prior':>8s} {'mult':>6s} "
          f"{'found':>6s}  kind")
    for q, text in zip(res.points[:rows], col):
        print(_row(q, text))
    if len(res.points) > rows:
        print(f"... {len(res.points) - rows} more (--rows)")
    print(f"index/rank: Hessian eigenvalues below -tol / beyond tol, tol = {RANK_RTOL:g} * max(1, max|eig|); "
          f"lambda = rank/2 at minimally singular C^2 minima; kind 'min?': no descent found to second order "
          f"(L only C^1 there, or not minimally singular); prior = |w|^2/2 without the flat biases; mult = c!/|Aut|")
    if k:
        print(f"SGLD lambda: the lab's protocol (population loss, nbeta = 1000/log 1000, eps 1e-3, gamma 1; "
              f"+- s.e. over chains) at the {k} lowest points; saddles n/a (SGLD at a saddle is not a local LLC)")
