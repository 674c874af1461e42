"""`tms transitions`: plateaus, transitions, LLC staircases and Bayesian antecedents of a
saved `tms train` result (SPEC 4), with figures."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from tms import checks, io
from tms.train import load_train
from tms.transitions import (
    Levels,
    antecedent_table,
    default_tol,
    format_antecedents,
    label_checkpoints,
    llc_checkpoints,
    plateau_llc,
    segment,
    trajectory_llc,
    zoo_levels,
)

NAME = "transitions"
HELP = "plateaus on zoo levels, LLC along SGD trajectories, Bayesian-antecedent table, figures"


def add_arguments(p) -> None:
    p.add_argument("--input", default="results/sgd/train", help="a `tms train` result")
    p.add_argument("--out", default=None, help="analysis result path (default: <input>_transitions)")
    p.add_argument("--figures", default="figures", help="folder for sgd_trajectory.png and sgd_many.png")
    p.add_argument("--run", type=int, default=None, help="run for sgd_trajectory.png (default: most plateaus)")
    p.add_argument("--tol", type=float, default=None,
                   help="loss tolerance around a level (default: a quarter of the smallest level gap, <= 2e-3)")
    p.add_argument("--min-points", type=int, default=3, help="fewest checkpoints on a plateau")
    p.add_argument("--min-span", type=float, default=1.25, help="a plateau spans at least this factor in steps")
    p.add_argument("--no-llc", action="store_true", help="skip the LLC estimates")
    p.add_argument("--llc-points", type=int, default=20,
                   help="checkpoints per run with an LLC estimate (half log-spaced, half evenly in steps; "
                        "a number >= the checkpoint count takes them all)")
    p.add_argument("--chains", type=int, default=4, help="SGLD chains per checkpoint")
    p.add_argument("--sgld-steps", type=int, default=500)
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=1.0)
    p.add_argument("--nbeta", type=float, default=None, help="n * beta (default n / log n)")
    p.add_argument("--seed", type=int, default=0, help="SGLD seed")
    p.add_argument("--no-prior", action="store_true", help="drop the prior term c_alpha from n_c")
    p.add_argument("--inv-temp", type=float, default=1.0,
                   help="likelihood inverse temperature for n_c (1: exp(-n L_n), SPEC 3; 0.5: unit-variance Gaussian)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: leave as is)")


def _validate(args) -> tuple[Path, list[str]]:
    """Every option, the input record and the output paths checked before any work.
    Returns the analysis result path and warnings."""
    checks.seed(args.seed, "--seed")
    checks.threads(args.threads)
    if args.tol is not None:
        checks.positive_float(args.tol, "--tol")
    checks.positive_int(args.min_points, "--min-points")
    if checks.positive_float(args.min_span, "--min-span") < 1:
        raise ValueError(f"--min-span must be >= 1 (a factor in steps), got {args.min_span!r}")
    checks.positive_int(args.llc_points, "--llc-points")
    checks.positive_int(args.chains, "--chains", maximum=checks.MAX_CHAINS)
    checks.positive_int(args.sgld_steps, "--sgld-steps", minimum=2, maximum=checks.MAX_STEPS)
    notes = [] if args.no_llc else checks.sgld_hyper(args.eps, args.gamma)
    if args.nbeta is not None:
        checks.positive_float(args.nbeta, "--nbeta")
    checks.positive_float(args.inv_temp, "--inv-temp")
    data, _ = checks.train_result(args.input, "--input")
    if args.run is not None:
        checks.positive_int(args.run, "--run", minimum=0, maximum=data["W"].shape[1] - 1)
    inp = Path(args.input)
    inp = inp.with_suffix("") if inp.suffix in (".npz", ".json") else inp
    out = checks.output_stem(args.out or inp.with_name(inp.stem + "_transitions"), "--out")
    checks.output_stem(out.with_name(out.stem + "_llc"), "--out (its LLC result)")
    fig = checks.output_dir(args.figures, "--figures")
    for name in ("sgd_trajectory.png", "sgd_many.png"):
        checks.output_file(fig / name, "--figures")
    return out, notes


def _geometry(seg, cls) -> tuple[dict, dict]:
    """Cross-check of the level labels by geometry: per plateau label, the fraction of its
    checkpoints that tms.phases.classify gives the same label, and what it says otherwise."""
    agree, other = {}, {}
    for p in seg.plateaus:
        got = cls[p.start : p.end + 1, p.run]
        agree.setdefault(p.label, []).extend((got == p.label).tolist())
        other.setdefault(p.label, Counter()).update(got[got != p.label].tolist())
    return {k: float(np.mean(v)) for k, v in agree.items()}, {k: dict(v.most_common(3)) for k, v in other.items()}


def _llc(args, res, out: Path) -> tuple[dict, dict]:
    """LLC at a subset of checkpoints (reused from OUT_llc when its settings match):
    (arrays llc_index, llc, llc_se, llc_ok; settings)."""
    rec, n = res.record, int(res.record["n"])
    idx = llc_checkpoints(res.steps.numpy(), args.llc_points)
    nbeta = args.nbeta if args.nbeta is not None else n / np.log(n)
    settings = dict(nbeta=float(nbeta), eps=args.eps, gamma=args.gamma, n_chains=args.chains,
                    n_steps=args.sgld_steps, seed=args.seed, loss="empirical (full batch, training set)",
                    checkpoints=idx.tolist(), input=str(args.input), train=rec)
    llc_path = out.with_name(out.stem + "_llc")
    if io.result_exists(llc_path) and io.load_json(llc_path.with_suffix(".json")) == io._jsonable(settings):
        la, _ = io.load_result(llc_path)
        print(f"LLC estimates reused from {llc_path}")
    else:
        ii = torch.from_numpy(idx)
        print(f"LLC at {len(idx)} checkpoints x {res.W.shape[1]} runs x {args.chains} chains, "
              f"{args.sgld_steps} SGLD steps ...")
        dev = checks.device(args.device)
        lr = trajectory_llc(res.W[ii].to(dev), res.b[ii].to(dev), res.X.to(dev), nbeta=nbeta, eps=args.eps, gamma=args.gamma,
                            n_chains=args.chains, n_steps=args.sgld_steps, seed=args.seed, progress=True)
        la = dict(llc_index=idx, llc=lr.llc, llc_se=lr.llc_se, llc_ok=lr.trustworthy,
                  n_escaped=lr.n_escaped, acceptance=lr.acceptance)
        io.save_result(llc_path, la, settings)
        la = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in la.items()}
    nflag = int((~la["llc_ok"].astype(bool)).sum())
    print(f"LLC: {nflag} of {la['llc_ok'].size} estimates flagged (escaped chains, step size or non-finite) "
          f"and left out of the plateau averages")
    return {k: la[k] for k in ("llc_index", "llc", "llc_se", "llc_ok")}, settings


def run(args) -> int:
    out, notes = _validate(args)
    for note in notes:
        checks.warn(note)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = load_train(args.input)
    rec = res.record
    c = int(rec["c"])
    levels: Levels = zoo_levels(c)
    tol = default_tol(levels) if args.tol is None else args.tol
    seg = segment(res.pop_loss, res.steps, levels, tol=tol, min_points=args.min_points, min_span=args.min_span)
    arrays = dict(level_index=seg.level_index, on_level=seg.on_level,
                  plateau_run=np.array([p.run for p in seg.plateaus], dtype=np.int64),
                  plateau_level=np.array([p.level for p in seg.plateaus], dtype=np.int64),
                  plateau_start=np.array([p.start for p in seg.plateaus], dtype=np.int64),
                  plateau_end=np.array([p.end for p in seg.plateaus], dtype=np.int64))
    cls, near = label_checkpoints(res.W, res.b, res.pop_loss, levels)
    arrays.update(classify_label=cls, level_label=near)
    agree, other = _geometry(seg, cls)
    llc_est, llc_settings = {}, None
    if not args.no_llc:
        la, llc_settings = _llc(args, res, out)
        arrays.update(la)
        llc_est = plateau_llc(seg, la["llc_index"], la["llc"], la["llc_se"], la["llc_ok"])
    rows, unseen = antecedent_table(seg, c, llc_est, prior=not args.no_prior, inv_temp=args.inv_temp)
    for r in rows:
        r.update(geometry_src=agree.get(r["src"]), geometry_dst=agree.get(r["dst"]))
    seq_counts = sorted(Counter(seg.sequences()).items(), key=lambda kv: -kv[1])
    record = dict(input=str(args.input), train=rec, tol=tol, min_points=args.min_points, min_span=args.min_span,
                  segmented_on="population loss", prior=not args.no_prior, inv_temp=args.inv_temp,
                  levels=dict(labels=levels.labels, loss=levels.loss.tolist(),
                              llc=[None if np.isnan(v) else float(v) for v in levels.llc], prior=levels.prior.tolist()),
                  plateau_labels=[p.label for p in seg.plateaus],
                  plateaus=[p._asdict() for p in seg.plateaus], transitions=[t._asdict() for t in seg.transitions],
                  sequence_counts=[[list(s), k] for s, k in seq_counts], classify_agreement=agree, classify_other=other,
                  llc_settings=llc_settings, plateau_llc={k: list(v) for k, v in llc_est.items()},
                  antecedents=rows, bayesian_unseen=unseen)
    io.save_result(out, arrays, record)
    _print(args, rec, res.W.shape[1], tol, seq_counts, agree, other, llc_est, rows, unseen)
    return _figures(args, out)


def _print(args, rec, R, tol, seq_counts, agree, other, llc_est, rows, unseen) -> None:
    print(f"{R} runs, {int(rec['total_steps'])} steps; plateaus within {tol:.2g} of a zoo level of L "
          f"(>= {args.min_points} checkpoints spanning x{args.min_span:g} in steps)")
    print("plateau sequences (runs):")
    for s, k in seq_counts:
        print(f"  {' -> '.join(s) if s else '(no plateau)':40s} {k}")
    if agree:
        print("geometry check (tms.phases.classify label = plateau level label), per level: " + ", ".join(
            f"{k} {100 * v:.0f}%" + (f" (else {', '.join(f'{a} x{n}' for a, n in other[k].items())})" if other[k] else "")
            for k, v in sorted(agree.items())))
    if llc_est:
        print("estimated LLC per plateau label (mean over plateaus +- se): " + ", ".join(
            f"{k} {v[0]:.2f}+-{v[1]:.2f} ({v[2]} plateaus)" for k, v in sorted(llc_est.items())))
    print(f"observed transitions and their Bayesian antecedents (n_c = m/{args.inv_temp:g}, m the root of m dL + dlambda log m "
          f"+ dc = 0, likelihood exp(-{args.inv_temp:g} n L_n), {'with' if not args.no_prior else 'without'} "
          "the prior term; other O(1) terms dropped):")
    print(format_antecedents(rows, unseen))


def _figures(args, out: Path) -> int:
    from tms.plots.sgd import sgd_many, sgd_trajectory

    fig = Path(args.figures)
    fig.mkdir(parents=True, exist_ok=True)
    shown = sgd_trajectory(args.input, out, fig / "sgd_trajectory.png", run=args.run)
    sgd_many(args.input, out, fig / "sgd_many.png")
    print(f"saved {out}.npz/.json; figures {fig / 'sgd_trajectory.png'} (run {shown}), {fig / 'sgd_many.png'}")
    return 0
