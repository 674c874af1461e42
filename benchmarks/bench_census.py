"""The census at (r, c) and its convergence check: the census with N prior starts per scale and
N_gd gradient-descent starts, then with twice as many (the first N of each scale are the same
starts: counter-based keys), and whether the doubled census adds a point among the lowest levels.

    python benchmarks/bench_census.py --r 3 --c 7 --n-prior 128 --n-gd 32 --levels 6 --threads 1

Prints both tables' lowest rows, the time of each census and the verdict. The points are matched
modulo O(r) x feature permutations (tms.theory.canonical.match on the canonical pairs)."""
from __future__ import annotations

import argparse
import time

import torch

from tms.theory import canonical
from tms.theory.census import census


def lowest_levels(points, levels: int):
    """The points on the `levels` lowest distinct losses (losses equal to 1e-9 share a level)."""
    out, seen = [], []
    for q in points:
        if not any(abs(q.loss - x) <= 1e-9 for x in seen):
            if len(seen) == levels:
                break
            seen.append(q.loss)
        out.append(q)
    return out


def contains(points, q) -> bool:
    pair = canonical.canonical_pair(q.W, q.b)
    return any(abs(p.loss - q.loss) <= 1e-9 and canonical.match(*pair, *canonical.canonical_pair(p.W, p.b)) is not None
               for p in points)


def show(res, rows: int) -> None:
    print(f"r = {res.r}, c = {res.c}: {res.n_starts} starts, {res.n_critical} critical, {len(res.points)} distinct")
    print(f"  {'label':24s} {'loss':>12s} {'index':>5s} {'rank':>5s} {'lambda':>7s} {'prior':>8s} {'mult':>6s} "
          f"{'found':>6s} kind   found by")
    for q in res.points[:rows]:
        lam = f"{q.llc:7.1f}" if q.llc is not None else f"{'-':>7s}"
        rank = f"{q.rank:5d}" if q.rank is not None else f"{'-':>5s}"
        by = " ".join(f"{k}={v}" for k, v in q.found_by.items() if v)
        print(f"  {q.label:24s} {q.loss:12.9f} {q.index:5d} {rank} {lam} {q.prior:8.4f} {q.multiplicity:6d} "
              f"{q.found:6d} {q.kind:6s} {by}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--r", type=int, default=3)
    ap.add_argument("--c", type=int, default=7)
    ap.add_argument("--n-prior", type=int, default=128)
    ap.add_argument("--n-gd", type=int, default=32)
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for k in (1, 2):
        t = time.perf_counter()
        res = census(args.r, args.c, n_prior=k * args.n_prior, n_gd=k * args.n_gd, progress=True)
        print(f"\ncensus with n_prior = {k * args.n_prior} per scale, n_gd = {k * args.n_gd}: "
              f"{time.perf_counter() - t:.1f} s")
        show(res, args.rows)
        runs.append(res)
    low = lowest_levels(runs[1].points, args.levels)
    new = [q for q in low if not contains(runs[0].points, q)]
    print(f"\nlowest {args.levels} levels of the doubled census: {len(low)} points; new ones: "
          + (", ".join(f"{q.label} (L = {q.loss:.9f})" for q in new) if new else "none"))
    best = runs[1].points[0]
    print(f"lowest loss {best.loss:.12f} ({best.label}), found by {best.found} of {runs[1].n_starts} starts "
          f"({runs[0].points[0].found} of {runs[0].n_starts} before doubling)")


if __name__ == "__main__":
    main()
