"""`tms transitions`: plateaus, transitions, LLC staircases and Bayesian antecedents of a
saved `tms train` result (docs/SPEC.md section 4), with figures: a shell over
tms.experiments.transitions.run (one flag per field of tms.dynamics.analysis.TransitionsSettings)."""
from __future__ import annotations

from tms.cli import common
from tms.dynamics.analysis import TransitionsResult, TransitionsSettings
from tms.dynamics.antecedents import format_antecedents
from tms.experiments import transitions as experiment

NAME = "transitions"
HELP = "plateaus on zoo levels, LLC along SGD trajectories, Bayesian-antecedent table, figures"


def add_arguments(p) -> None:
    p.add_argument("--input", default="results/sgd/train", help="a `tms train` result")
    p.add_argument("--out", default=None, help="analysis result path (default: <input>_transitions)")
    p.add_argument("--figures", default="results/figures",
                   help="folder for sgd_trajectory.png and sgd_many.png (the README's figures only when asked: --figures figures)")
    common.add_settings(p, TransitionsSettings)
    common.add_threads(p)
    common.add_force(p)
    common.add_arguments(p)


def run(args) -> int:
    where = common.options(args)  # checked first
    settings = common.settings_from(args, TransitionsSettings())
    res = experiment.run(args.input, settings, out=args.out, figures=args.figures, device=args.device,
                         threads=args.threads, force=args.force, progress=args.progress, **where)
    _print(res)
    return 0


def _print(res: TransitionsResult) -> None:
    s, R = res.settings, res.arrays["level_index"].shape[1]
    print(f"{R} runs, {int(res.train['total_steps'])} steps; plateaus within {res.tol:.2g} of a zoo level of L "
          f"(>= {s.min_points} checkpoints spanning x{s.min_span:g} in steps)")
    print("plateau sequences (runs):")
    for seq, k in res.sequence_counts:
        print(f"  {' -> '.join(seq) if seq else '(no plateau)':40s} {k}")
    agree, other = res.classify_agreement, res.classify_other
    if agree:
        print("geometry check (tms.theory.phases.classify label = plateau level label), per level: " + ", ".join(
            f"{k} {100 * v:.0f}%" + (f" (else {', '.join(f'{a} x{n}' for a, n in other[k].items())})" if other[k] else "")
            for k, v in sorted(agree.items())))
    if res.llc_settings is not None:
        ok = res.arrays["llc_ok"]
        print(f"LLC: {int((~ok.astype(bool)).sum())} of {ok.size} estimates flagged (escaped chains, step size, "
              "unconverged or non-finite) and left out of the plateau averages")
    if res.plateau_llc:
        print("estimated LLC per plateau label (mean over plateaus +- se): " + ", ".join(
            f"{k} {common.plus_minus(v.mean, v.se, why='no s.e.')} ({v.n_plateaus} plateaus)"
            for k, v in sorted(res.plateau_llc.items())))
    print(f"observed transitions and their Bayesian antecedents (n_c = m/{s.beta_lik:g}, m the root of m dL + "
          f"dlambda log m + dc = 0, likelihood exp(-{s.beta_lik:g} n L_n), {'with' if s.prior else 'without'} "
          "the prior term; other O(1) terms dropped):")
    print(format_antecedents(res.antecedents, res.bayesian_unseen))
    if res.figure_run is not None:
        print(f"sgd_trajectory.png shows run {res.figure_run}")
