"""`tms zoo`: the k-gon critical points of a given c, their losses, LLCs and a figure: a shell
over tms.experiments.zoo.run."""
from __future__ import annotations

import json
import sys

from tms.theory import zoo
from tms.experiments import zoo as zoo_command
from tms.experiments.zoo import MAX_KGONS

DEVICE_HELP = ("checked and accepted so one --device can go to every command; the zoo's Newton solves are "
               "a few tiny problems and always run on the CPU")
NAME = "zoo"
HELP = "k-gon critical points for c features (r = 2): loss, lambda, prior term, Hessian rank; figure"


def add_arguments(p) -> None:
    p.add_argument("--c", type=int, default=6, help="number of features (default 6)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    p.add_argument("--out", default=None, help="figure path (default results/figures/zoo_c<c>.png)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="do not write the figure")
    p.add_argument("--kgons", type=int, default=0, metavar="KMAX",
                   help=f"also report which k in 3..KMAX have a regular k-gon critical point "
                        f"(KMAX <= {MAX_KGONS}: about a second per k near 16, more beyond)")


def run(args) -> int:
    res = zoo_command.run(args.c, kgons=args.kgons, out=args.out, plot=args.plot, device=args.device,
                             progress=args.progress)
    if args.json:
        json.dump(res.as_record(), sys.stdout, indent=1)
        print()
        return 0
    c, pts, report, out = res.c, res.points, res.kgons, res.figure
    print(f"k-gon zoo, r = 2, c = {c} (d = {3 * c} parameters), sorted by population loss")
    print(f"{'label':10s} {'loss':>12s} {'lambda':>7s} {'prior':>8s} {'rank':>5s} {'|grad|':>9s}  note")
    for q in pts:
        lam = f"{q.llc:7.1f}" if q.llc is not None else f"{'-':>7s}"
        rank = f"{q.hessian_rank:5d}" if q.hessian_rank is not None else f"{'-':>5s}"
        if not q.smooth:
            note = "L only C^1 here: no Hessian, lambda needs an estimate (SGLD)"
        else:
            note = "; ".join(q.notes)
        print(f"{q.label:10s} {q.loss:12.8f} {lam} {q.prior:8.4f} {rank} {q.grad_norm:9.1e}  {note}")
    print(f"lambda = rank/2 at minimally singular local minima (Hessian rank tol 1e-8 * max|eig|); "
          f"zero columns carry bias -1 (flat), + columns 1/(2c) = {zoo.plus_bias(c):.6g}, "
          f"prior = |w|^2/2 without the flat biases")
    if report:
        print("\nregular k-gon critical points (restricted to the ansatz, c = k):")
        for r in report:
            if not r.exists:
                print(f"  k={r.k:2d}: none found")
                continue
            kind = "local min" if r.full_saddle is False else ("saddle" if r.full_saddle else "C^1 point")
            print(f"  k={r.k:2d}: l*={r.l:.10f} b*={r.b:+.10f} L/feature={r.loss_per_feature:.8f} "
                  f"{kind}, {r.interfering} of {r.k - 1} neighbours interfere")
    if out:
        print(f"figure: {out}")
    return 0
