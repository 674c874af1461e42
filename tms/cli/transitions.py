"""`tms transitions`: plateaus, transitions, LLC staircases and Bayesian antecedents of a
saved `tms train` result (docs/SPEC.md section 4), with figures: a shell over
tms.experiments.transitions.analyse."""
from __future__ import annotations

from tms.cli import common
from tms.dynamics.transitions import format_antecedents
from tms.experiments.transitions import analyse

NAME = "transitions"
HELP = "plateaus on zoo levels, LLC along SGD trajectories, Bayesian-antecedent table, figures"


def add_arguments(p) -> None:
    p.add_argument("--input", default="results/sgd/train", help="a `tms train` result")
    p.add_argument("--out", default=None, help="analysis result path (default: <input>_transitions)")
    p.add_argument("--figures", default="results/figures",
                   help="folder for sgd_trajectory.png and sgd_many.png (the README's figures only when asked: --figures figures)")
    p.add_argument("--run", type=int, default=None, help="run for sgd_trajectory.png (default: most plateaus)")
    p.add_argument("--tol", type=float, default=None,
                   help="loss tolerance around a level (default: a quarter of the smallest level gap, <= 2e-3)")
    p.add_argument("--min-points", type=int, default=3, help="fewest checkpoints on a plateau")
    p.add_argument("--min-span", type=float, default=1.25, help="a plateau spans at least this factor in steps")
    p.add_argument("--no-llc", dest="llc", action="store_false", help="skip the LLC estimates")
    p.add_argument("--llc-points", type=int, default=20,
                   help="checkpoints per run with an LLC estimate (half log-spaced, half evenly in steps; "
                        "a number >= the checkpoint count takes them all)")
    p.add_argument("--n-chains", type=int, default=4, help="SGLD chains per checkpoint")
    p.add_argument("--n-burnin", type=int, default=0, help="SGLD steps discarded per chain")
    p.add_argument("--n-draws", type=int, default=500, help="SGLD steps kept per chain (after the burn-in)")
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=1.0)
    p.add_argument("--nbeta", type=float, default=None, help="n * beta (default n / log n)")
    p.add_argument("--seed", type=int, default=0, help="SGLD seed")
    p.add_argument("--no-prior", dest="prior", action="store_false", help="drop the prior term c_alpha from n_c")
    p.add_argument("--beta-lik", type=float, default=1.0,
                   help="likelihood inverse temperature for n_c (1: exp(-n L_n), docs/SPEC.md section 3; "
                        "0.5: unit-variance Gaussian)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: leave as is)")
    common.add_arguments(p)


KWARGS = ("input", "out", "figures", "run", "tol", "min_points", "min_span", "llc", "llc_points", "n_chains",
          "n_burnin", "n_draws", "eps", "gamma", "nbeta", "seed", "prior", "beta_lik", "device", "threads")


def run(args) -> int:
    where = common.options(args)  # checked first
    res = analyse(**{k: getattr(args, k) for k in KWARGS}, **where)
    _print(res)
    return 0


def _print(res) -> None:
    rec, R = res.train, res.arrays["level_index"].shape[1]
    print(f"{R} runs, {int(rec['total_steps'])} steps; plateaus within {res.tol:.2g} of a zoo level of L "
          f"(>= {res.min_points} checkpoints spanning x{res.min_span:g} in steps)")
    print("plateau sequences (runs):")
    for s, k in res.sequence_counts:
        print(f"  {' -> '.join(s) if s else '(no plateau)':40s} {k}")
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
            f"{k} {v[0]:.2f}+-{v[1]:.2f} ({v[2]} plateaus)" for k, v in sorted(res.plateau_llc.items())))
    print(f"observed transitions and their Bayesian antecedents (n_c = m/{res.beta_lik:g}, m the root of m dL + "
          f"dlambda log m + dc = 0, likelihood exp(-{res.beta_lik:g} n L_n), {'with' if res.prior else 'without'} "
          "the prior term; other O(1) terms dropped):")
    print(format_antecedents(res.antecedents, res.bayesian_unseen))
    if res.figure_run is not None:
        print(f"sgd_trajectory.png shows run {res.figure_run}")
