"""`tms llc`: LLC estimates (SPEC 5) with standard errors and diagnostics.

    tms llc --c 6 --point 5+                 a zoo point (exact population loss by default)
    tms llc --checkpoints run.npz            every checkpoint of a saved trajectory (tms train),
                                             full batch on the run's own training set
Options set nbeta (default n / log n), eps, gamma, chains, steps; --out saves the result
(tms.io format), --plot draws the loss traces from the saved result.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tms import checks, io
from tms.data import sample_inputs
from tms.llc import default_nbeta, estimate_llc

NAME = "llc"
HELP = "estimate local learning coefficients (SGLD) at zoo points or saved checkpoints"


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--point", help="zoo label at --c, e.g. 5+, 6, 4++ (see tms zoo)")
    src.add_argument("--checkpoints", help="saved trajectory (.npz/.json from tms train): arrays W (..., r, c), "
                                           "b (..., c) and optionally X, the training set")
    p.add_argument("--c", type=int, default=6, help="number of features for --point (default 6)")
    p.add_argument("--loss", choices=["population", "empirical"],
                   help="population (exact L; default for --point) or empirical (L_n; default for --checkpoints)")
    p.add_argument("--n", type=float, default=1000,
                   help=f"sample size: sets nbeta = n/log n, and the data set size when one is drawn "
                        f"(default 1000, at most {checks.MAX_N})")
    p.add_argument("--nbeta", type=float, help="override nbeta (default n / log n)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of a drawn data set (empirical loss, no X given)")
    p.add_argument("--eps", type=float, default=1e-3, help=f"SGLD step size (default 1e-3, at most {checks.MAX_EPS:g})")
    p.add_argument("--gamma", type=float, default=1.0, help="localisation strength (default 1)")
    p.add_argument("--chains", type=int, default=8, help=f"chains per centre (default 8, at most {checks.MAX_CHAINS})")
    p.add_argument("--steps", type=int, default=500, help=f"SGLD steps per chain (default 500, at most {checks.MAX_STEPS})")
    p.add_argument("--burnin", type=int, default=0, help="initial steps discarded (default 0)")
    p.add_argument("--batch-size", type=int, help="minibatch size (default: full batch)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--every", type=int, default=1, help="--checkpoints: use every k-th checkpoint (default 1)")
    p.add_argument("--threads", type=int, help="torch threads, 1..1024 (default: torch's choice)")
    p.add_argument("--rows", type=int, default=30, help="centres printed in the table (default 30)")
    p.add_argument("--out", help="save the result here (tms.io: PATH.npz + PATH.json)")
    p.add_argument("--plot", help="draw the loss traces to this image file (from the saved result)")


def _centres(args):
    """(W, b, X or None, labels, loss mode, extra record)."""
    if args.point is not None:
        from tms import zoo

        zoo.parse_label(args.point)  # a malformed label fails before the zoo is solved
        zoo.critical_points(args.c, progress=True)  # solved once (seconds at large c), then cached
        q = zoo.critical_point(args.c, args.point)
        loss = args.loss or "population"
        X = None
        if loss == "empirical":
            X = sample_inputs(int(args.n), args.c, args.data_seed)
        rec = dict(point=q.label, c=args.c, zoo_loss=q.loss, zoo_llc=q.llc, hessian_rank=q.hessian_rank)
        return q.W, q.b, X, [q.label], loss, rec
    path = Path(args.checkpoints)
    arrays, record = checks.checkpoints_result(path, "--checkpoints")
    W = torch.from_numpy(arrays["W"]).to(torch.float64)
    b = torch.from_numpy(arrays["b"]).to(torch.float64)
    if W.dim() > 2 and args.every > 1:
        W, b = W[:: args.every], b[:: args.every]
    loss = args.loss or "empirical"
    X = None
    n = args.n
    if loss == "empirical":
        if "X" in arrays:
            X = torch.from_numpy(arrays["X"]).to(torch.float64)
        else:
            X = sample_inputs(int(args.n), W.shape[-1], args.data_seed)
        n = X.shape[-2]
    shape = tuple(W.shape[:-2])
    steps = arrays.get("steps")
    if steps is not None and len(shape) >= 1 and len(steps) >= 1:
        steps = steps[:: args.every] if args.every > 1 else steps
    labels = []
    for idx in (torch.cartesian_prod(*[torch.arange(s) for s in shape]).reshape(-1, len(shape)).tolist()
                if shape else [[]]):
        if steps is not None and idx and len(steps) == shape[0]:
            labels.append(f"t={int(steps[idx[0]])}" + (f",r{idx[1]}" if len(idx) > 1 else ""))
        else:
            labels.append(str(tuple(idx)))
    steps_list = [int(s) for s in steps] if steps is not None and len(shape) >= 1 and len(steps) == shape[0] else None
    return W, b, X, labels, loss, dict(checkpoints=str(path), n=n, train_record=record, steps=steps_list)


def _validate(args) -> list[str]:
    """Every option checked before any work; returns warnings. Output paths are probed."""
    checks.seed(args.seed, "--seed")
    checks.seed(args.data_seed, "--data-seed")
    checks.threads(args.threads)
    if args.point is not None:
        checks.positive_int(args.c, "--c", minimum=3, maximum=16)
    n = checks.positive_float(args.n, "--n", maximum=checks.MAX_N)
    if n < 2:
        raise ValueError(f"--n must be >= 2 (nbeta = n / log n), got {args.n!r}")
    if args.nbeta is not None:
        checks.positive_float(args.nbeta, "--nbeta")
    notes = checks.sgld_hyper(args.eps, args.gamma)
    checks.positive_int(args.chains, "--chains", maximum=checks.MAX_CHAINS)
    checks.positive_int(args.steps, "--steps", minimum=2, maximum=checks.MAX_STEPS)
    checks.positive_int(args.burnin, "--burnin", minimum=0, maximum=args.steps - 2)
    if args.batch_size is not None:
        checks.positive_int(args.batch_size, "--batch-size")
    checks.positive_int(args.every, "--every")
    checks.positive_int(args.rows, "--rows")
    if args.out:
        checks.output_stem(args.out, "--out")
    if args.plot:
        checks.output_file(args.plot, "--plot", suffixes=checks.FIGURE_SUFFIXES)
        if not args.out:
            checks.output_stem(str(Path(args.plot).with_suffix("")) + "_llc", "--plot (its result)")
    return notes


def _check_batch(args, X) -> None:
    if args.batch_size is not None and X is not None and args.batch_size > X.shape[-2]:
        raise ValueError(f"--batch-size {args.batch_size} exceeds the data set size n = {X.shape[-2]}; "
                         "use at most n, or leave it out for full batch")


def run(args) -> int:
    notes = _validate(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = checks.device(args.device)
    W, b, X, labels, loss, rec = _centres(args)
    W, b, X = W.to(dev), b.to(dev), None if X is None else X.to(dev)
    _check_batch(args, X)
    for note in notes:
        checks.warn(note)
    n = rec.get("n", args.n) if X is not None else args.n
    nbeta = args.nbeta if args.nbeta is not None else default_nbeta(n)
    res = estimate_llc(W, b, X, nbeta=nbeta, eps=args.eps, gamma=args.gamma, n_chains=args.chains,
                       n_steps=args.steps, n_burnin=args.burnin, loss=loss, batch_size=args.batch_size,
                       generator=args.seed, progress=True)
    print(res.summary(max_rows=args.rows, labels=labels))
    if "zoo_llc" in rec:
        theory = rec["zoo_llc"]
        print(f"zoo point {rec['point']} (c = {rec['c']}): L = {rec['zoo_loss']:.10g}, Hessian rank "
              f"{rec['hessian_rank']}, theory lambda = rank/2 = {theory if theory is not None else 'n/a (not C^2)'}"
              f"; nbeta = {nbeta:.6g}" + (f" (= n/log n, n = {n:g})" if args.nbeta is None else ""))
    out = args.out
    if args.plot and not out:
        out = str(Path(args.plot).with_suffix("")) + "_llc"
    if out:
        record = dict(res.settings, labels=labels, **{k: v for k, v in rec.items() if k != "train_record"})
        if "train_record" in rec:
            record["train_record"] = rec["train_record"]
        record["nbeta"] = nbeta
        record["shape"] = list(res.llc.shape)
        io.save_result(out, res.arrays(), record)
        print(f"saved {out}.npz / .json")
    if args.plot:
        from tms.plots.llc import plot_traces

        plot_traces(out, args.plot)
        print(f"plot: {args.plot}")
        if args.checkpoints is not None and res.llc.dim() >= 1:
            from tms.plots.llc import plot_llc_checkpoints

            along = str(Path(args.plot).with_suffix("")) + "_vs_checkpoint" + Path(args.plot).suffix
            plot_llc_checkpoints(out, along, steps=rec.get("steps"))
            print(f"plot: {along}")
    bad = int((~res.trustworthy).sum())
    if bad:
        print(f"warning: {bad} of {res.llc.numel()} estimates flagged (see the flags column)")
    return 0
