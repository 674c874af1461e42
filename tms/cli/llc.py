"""`tms llc`: LLC estimates (SPEC 5) with standard errors and diagnostics (tms.experiments.llc.run).

    tms llc --c 6 --point 5+                 a zoo point (exact population loss by default)
    tms llc --checkpoints run.npz            every checkpoint of a saved trajectory (tms train),
                                             full batch on the run's own training set
Sampler flags: the fields of tms.llc.estimator.LLCSettings (--n-draws is n_draws), defaults
PROTOCOL (eps 1e-3, gamma 1, 8 chains, 4000 burn-in + 4000 draws, nbeta = n / log n, n = 1000); its measured bias against theory at the zoo points 6, 5+, 5 is in tms.llc.estimator's
docstring (reproduce: python benchmarks/bench_llc.py --bias). --out saves the result
(tms.core.io format, and the draws as ArviZ InferenceData in PATH.nc), --plot draws the loss
traces from the saved result.
"""
from __future__ import annotations

from pathlib import Path

from tms.cli import common
from tms.core import checks
from tms.llc.estimator import PROTOCOL, LLCSettings
from tms.experiments import llc
from tms.report.plots.llc import plot_llc_checkpoints, plot_traces

NAME = "llc"
HELP = "estimate local learning coefficients (SGLD) at zoo points or saved checkpoints"


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--point", help="zoo label at --c, e.g. 5+, 6, 4++ (see tms zoo)")
    src.add_argument("--checkpoints", help="saved trajectory (.npz/.json from tms train): arrays W (..., r, c), "
                                           "b (..., c) and optionally X, the training set")
    p.add_argument("--c", type=int, default=None, help="number of features for --point (default 6; --checkpoints "
                                                       "fix c by their W)")
    p.add_argument("--loss", choices=["population", "empirical"],
                   help="population (exact L; default for --point) or empirical (L_n; default for --checkpoints)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of a drawn data set (empirical loss, no X given)")
    common.add_settings(p, LLCSettings, preset=PROTOCOL)
    p.add_argument("--every", type=int, default=1, help="--checkpoints: use every k-th checkpoint (default 1)")
    common.add_threads(p)
    p.add_argument("--rows", type=int, default=30, help="centres printed in the table (default 30)")
    p.add_argument("--out", help="save the result here (tms.core.io: PATH.npz + PATH.json; the draws as ArviZ "
                                 "InferenceData: PATH.nc)")
    p.add_argument("--plot", help="draw the loss traces to this image file (from the saved result)")
    common.add_force(p)


def _validate(args, settings: LLCSettings) -> list[str]:
    """The options llc.run does not see, checked before any work; returns warnings."""
    checks.threads(args.threads)
    checks.positive_int(args.rows, "--rows")
    if args.out:
        checks.output_stem(args.out, "--out")
    if args.plot:
        checks.output_file(args.plot, "--plot", suffixes=checks.FIGURE_SUFFIXES)
        if not args.out:
            checks.output_stem(str(Path(args.plot).with_suffix("")) + "_llc", "--plot (its result)")
    return checks.sgld_hyper(settings.eps, settings.gamma)


def _print_theory(rec: dict) -> None:
    theory = rec["zoo_llc"]
    print(f"zoo point {rec['point']} (c = {rec['c']}): L = {rec['zoo_loss']:.10g}, Hessian rank "
          f"{rec['hessian_rank']}, theory lambda = rank/2 = {theory if theory is not None else 'n/a (not C^2)'}"
          f"; nbeta = {rec['nbeta']:.6g}" + (f" (= n/log n, n = {rec['n']:g})" if rec["nbeta_default"] else ""))


def _plot(args, out: str, run) -> None:
    plot_traces(out, args.plot)
    print(f"plot: {args.plot}")
    if args.checkpoints is not None and run.result.llc.dim() >= 1:
        along = str(Path(args.plot).with_suffix("")) + "_vs_checkpoint" + Path(args.plot).suffix
        plot_llc_checkpoints(out, along, steps=run.record.get("steps"))
        print(f"plot: {along}")


def run(args) -> int:
    settings = common.settings_from(args, PROTOCOL)
    for note in _validate(args, settings):
        checks.warn(note)
    out = args.out or (str(Path(args.plot).with_suffix("")) + "_llc" if args.plot else None)
    result = llc.run(point=args.point, checkpoints=args.checkpoints, c=args.c, loss=args.loss, data_seed=args.data_seed,
                     every=args.every, settings=settings, device=checks.device(args.device), threads=args.threads,
                     progress=args.progress, out=out, force=args.force)
    print(result.result.summary(max_rows=args.rows, labels=result.labels))
    if "zoo_llc" in result.record:
        _print_theory(result.record)
    if out:
        print(f"saved {out}.npz / .json / .nc (ArviZ InferenceData of the draws)")
    if args.plot:
        _plot(args, out, result)
    return 0
